use event_runtime::DomainEvent;
use serde::{Deserialize, Serialize};

#[derive(DomainEvent, Serialize, Deserialize)]
#[event(context = "orders", key_with = order_key)]
struct OrderPlaced {
    order_id: String,
}

fn order_key(id: &str) -> String {
    id.to_owned()
}

fn main() {}
