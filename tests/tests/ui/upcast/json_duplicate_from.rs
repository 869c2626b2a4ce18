use event_runtime::DomainEvent;
use event_runtime::error::UpcastError;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(DomainEvent, Serialize, Deserialize)]
#[event(
    context = "orders",
    version = 2,
    upcast_json(from = 1, with = rename_total),
    upcast_json(from = 1, with = add_currency)
)]
struct OrderPlaced {
    order_id: String,
}

fn rename_total(v: Value) -> Result<Value, UpcastError> {
    Ok(v)
}

fn add_currency(v: Value) -> Result<Value, UpcastError> {
    Ok(v)
}

fn main() {}
