use event_runtime::DomainEvent;
use serde::{Deserialize, Serialize};

#[derive(DomainEvent, Serialize, Deserialize)]
#[event(context = "orders", version = 2, upcast_with = lift_v1)]
struct OrderPlaced {
    order_id: String,
}

fn lift_v1(order_id: String) -> OrderPlaced {
    OrderPlaced { order_id }
}

fn main() {}
