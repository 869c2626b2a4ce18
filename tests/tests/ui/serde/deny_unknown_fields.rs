use event_runtime::DomainEvent;
use serde::{Deserialize, Serialize};

#[derive(DomainEvent, Serialize, Deserialize)]
#[event(context = "orders")]
#[serde(deny_unknown_fields)]
struct OrderPlaced {
    order_id: String,
}

fn main() {}
