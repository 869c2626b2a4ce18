use event_runtime::DomainEvent;
use serde::{Deserialize, Serialize};

#[derive(DomainEvent, Serialize, Deserialize)]
#[event(context = "orders")]
struct OrderPlaced<T> {
    order_id: String,
    payload: T,
}

fn main() {}
