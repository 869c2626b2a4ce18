use event_runtime::DomainEvent;
use serde::{Deserialize, Serialize};

#[derive(DomainEvent, Serialize, Deserialize)]
#[event(context = "orders", owner(contact = "#checkout-oncall"))]
struct OrderPlaced {
    order_id: String,
}

fn main() {}
