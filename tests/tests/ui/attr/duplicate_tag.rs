use event_runtime::DomainEvent;
use serde::{Deserialize, Serialize};

#[derive(DomainEvent, Serialize, Deserialize)]
#[event(context = "orders")]
struct OrderPlaced {
    #[event(tag = 1)]
    order_id: String,
    #[event(tag = 1)]
    total_cents: u64,
}

fn main() {}
