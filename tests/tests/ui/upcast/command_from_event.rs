use event_runtime::{Command, DomainEvent};
use serde::{Deserialize, Serialize};

#[derive(DomainEvent, Serialize, Deserialize)]
#[event(context = "shipping", version = 1)]
struct ShipOrderRequested {
    order_id: String,
}

// A command upcasts from an older version of itself, never from an event.
#[derive(Command, Serialize, Deserialize)]
#[command(context = "shipping", version = 2, upcast_from = ShipOrderRequested)]
struct ShipOrder {
    order_id: String,
}

impl From<ShipOrderRequested> for ShipOrder {
    fn from(v1: ShipOrderRequested) -> Self {
        ShipOrder { order_id: v1.order_id }
    }
}

fn main() {}
