use event_runtime::DomainEvent;
use serde::{Deserialize, Serialize};

#[derive(DomainEvent, Serialize, Deserialize)]
#[event(context = "orders", version = 1)]
struct OrderPlacedV1 {
    order_id: String,
}

#[derive(DomainEvent, Serialize, Deserialize)]
#[event(context = "orders", version = 2, upcast_from = OrderPlacedV1)]
struct OrderPlaced {
    order_id: String,
    currency: String,
}

fn main() {}
