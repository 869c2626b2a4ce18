use event_runtime::DomainEvent;
use serde::Deserialize;

#[derive(DomainEvent, Deserialize)]
#[event(context = "orders")]
struct OrderPlaced {
    order_id: String,
}

fn main() {}
