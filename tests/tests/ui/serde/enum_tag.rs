use event_runtime::DomainEvent;
use serde::{Deserialize, Serialize};

#[derive(DomainEvent, Serialize, Deserialize)]
#[event(context = "shipping")]
#[serde(tag = "type")]
enum ShipmentEvent {
    Packed { shipment_id: String },
    Lost { shipment_id: String },
}

fn main() {}
