use event_runtime::DomainEvent;
use serde::{Deserialize, Serialize};

#[derive(DomainEvent, Serialize, Deserialize)]
#[event(context = "shipping")]
enum ShipmentEvent {
    Packed {
        shipment_id: String,
    },
    #[event(version = 2, codec = protobuf)]
    Dispatched {
        shipment_id: String,
        carrier: String,
    },
}

fn main() {}
