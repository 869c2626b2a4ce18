use event_runtime::DomainEvent;
use serde::{Deserialize, Serialize};

#[derive(DomainEvent, Serialize, Deserialize)]
#[event(context = "orders", version = 1)]
struct OrderPlacedV1 {
    order_id: String,
}

#[derive(DomainEvent, Serialize, Deserialize)]
#[event(context = "orders", version = 3, upcast_from = OrderPlacedV1)]
struct OrderPlaced {
    order_id: String,
    currency: String,
}

impl From<OrderPlacedV1> for OrderPlaced {
    fn from(v1: OrderPlacedV1) -> Self {
        OrderPlaced { order_id: v1.order_id, currency: "EUR".into() }
    }
}

fn main() {}
