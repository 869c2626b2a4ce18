use event_runtime::DomainEvent;
use serde::{Deserialize, Serialize};

#[derive(DomainEvent, Serialize, Deserialize)]
#[event(context = "shipping")]
enum ShipmentEvent {
    #[event(name = "shipping.moved")]
    Dispatched { shipment_id: String },
    #[event(name = "shipping.moved")]
    Delivered { shipment_id: String },
}

fn main() {}
