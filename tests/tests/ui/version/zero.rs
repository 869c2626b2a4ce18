use event_runtime::DomainEvent;
use serde::{Deserialize, Serialize};

#[derive(DomainEvent, Serialize, Deserialize)]
#[event(version = 0, context = "orders")]
struct OrderPlaced {
    order_id: String,
}

fn main() {}
