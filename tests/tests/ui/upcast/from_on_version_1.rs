use event_runtime::DomainEvent;
use serde::{Deserialize, Serialize};

#[derive(DomainEvent, Serialize, Deserialize)]
#[event(context = "orders", name = "orders.legacy_order_placed")]
struct LegacyOrderPlaced {
    order_id: String,
}

#[derive(DomainEvent, Serialize, Deserialize)]
#[event(context = "orders", upcast_from = LegacyOrderPlaced)]
struct OrderPlaced {
    order_id: String,
}

impl From<LegacyOrderPlaced> for OrderPlaced {
    fn from(old: LegacyOrderPlaced) -> Self {
        OrderPlaced { order_id: old.order_id }
    }
}

fn main() {}
