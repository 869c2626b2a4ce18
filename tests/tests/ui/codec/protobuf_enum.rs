use event_runtime::DomainEvent;
use serde::{Deserialize, Serialize};

#[derive(DomainEvent, Serialize, Deserialize)]
#[event(context = "shipping", codec = protobuf)]
enum ShipmentEvent {
    Packed { shipment_id: String },
    Lost { shipment_id: String },
}

fn main() {}
