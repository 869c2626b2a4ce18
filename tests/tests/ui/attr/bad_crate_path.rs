use event_runtime::DomainEvent;
use serde::{Deserialize, Serialize};

#[derive(DomainEvent, Serialize, Deserialize)]
#[event(context = "orders", crate = "not a path")]
struct OrderPlaced {
    order_id: String,
}

fn main() {}
