use event_runtime::DomainEvent;
use event_runtime::error::UpcastError;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(DomainEvent, Serialize, Deserialize)]
#[event(
    context = "orders",
    version = 4,
    upcast_json(from = 1, with = v1_to_v2),
    upcast_json(from = 3, with = v3_to_v4)
)]
struct OrderPlaced {
    order_id: String,
}

fn v1_to_v2(v: Value) -> Result<Value, UpcastError> {
    Ok(v)
}

fn v3_to_v4(v: Value) -> Result<Value, UpcastError> {
    Ok(v)
}

fn main() {}
