use event_runtime::DomainEvent;
use serde::{Deserialize, Serialize};

#[derive(DomainEvent, Serialize, Deserialize)]
#[event(
    context = "orders",
    deprecated(since = "2027-03-01", sunset = "2027-01-31", note = "use orders.order_placed v3")
)]
struct OrderPlaced {
    order_id: String,
}

fn main() {}
