use event_runtime::DomainEvent;
use serde::{Deserialize, Serialize};

#[derive(DomainEvent, Serialize, Deserialize)]
#[event]
struct OrderPlaced {
    order_id: String,
}

fn main() {}
