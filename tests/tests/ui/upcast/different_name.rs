use event_runtime::DomainEvent;
use serde::{Deserialize, Serialize};

#[derive(DomainEvent, Serialize, Deserialize)]
#[event(context = "orders", version = 1)]
struct PurchaseMade {
    order_id: String,
}

#[derive(DomainEvent, Serialize, Deserialize)]
#[event(context = "orders", version = 2, upcast_from = PurchaseMade)]
struct OrderPlaced {
    order_id: String,
}

impl From<PurchaseMade> for OrderPlaced {
    fn from(old: PurchaseMade) -> Self {
        OrderPlaced { order_id: old.order_id }
    }
}

fn main() {}
