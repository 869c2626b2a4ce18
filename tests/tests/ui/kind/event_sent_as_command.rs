use event_runtime::{DomainEvent, Envelope};
use serde::{Deserialize, Serialize};

#[derive(DomainEvent, Serialize, Deserialize)]
#[event(context = "orders")]
struct OrderPlaced {
    order_id: String,
}

fn main() {
    let _ = Envelope::command(OrderPlaced { order_id: "o-1".into() });
}
