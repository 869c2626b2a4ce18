use event_runtime::Command;
use serde::{Deserialize, Serialize};

// A service-level target belongs to a published fact, not to a request.
#[derive(Command, Serialize, Deserialize)]
#[command(context = "payments", sla(max_latency = "1s"))]
struct ChargeCard {
    order_id: String,
}

fn main() {}
