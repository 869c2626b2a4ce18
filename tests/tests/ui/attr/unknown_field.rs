use event_runtime::DomainEvent;
use serde::{Deserialize, Serialize};

#[derive(DomainEvent, Serialize, Deserialize)]
#[event(context = "orders")]
struct OrderPlaced {
    #[event(kye)]
    order_id: String,
}

fn main() {}
