use event_runtime::DomainEvent;
use serde::{Deserialize, Serialize};

#[derive(DomainEvent, Serialize, Deserialize)]
#[event(version = 1)]
struct OrderPlaced {
    #[event(key)]
    order_id: String,
}

fn main() {}
