use event_runtime::DomainEvent;
use serde::{Deserialize, Serialize};

#[derive(DomainEvent, Serialize, Deserialize)]
#[event(context = "orders", deprecated(since = "2026-11-01", sunset = "2027-02-30"))]
struct OrderPlaced {
    order_id: String,
}

fn main() {}
