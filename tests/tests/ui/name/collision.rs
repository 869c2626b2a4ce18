use event_runtime::DomainEvent;
use serde::{Deserialize, Serialize};

#[derive(DomainEvent, Serialize, Deserialize)]
#[event(context = "orders", name = "orders.placed", version = 2)]
struct OrderPlaced {
    order_id: String,
}

#[derive(DomainEvent, Serialize, Deserialize)]
#[event(context = "orders", name = "orders.placed", version = 2)]
struct OrderSubmitted {
    order_id: String,
}

fn main() {}
