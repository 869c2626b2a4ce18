use event_runtime::DomainEvent;
use serde::{Deserialize, Serialize};

#[derive(DomainEvent, Serialize, Deserialize)]
#[event(context = "orders", sla(max_latency = "5 minutes"))]
struct OrderPlaced {
    order_id: String,
}

fn main() {}
