use event_runtime::DomainEvent;
use serde::Deserialize;

#[derive(DomainEvent, Deserialize)]
#[event(context = "shipping")]
enum ShipmentEvent {
    Packed { shipment_id: String },
    Lost { shipment_id: String },
}

fn main() {}
