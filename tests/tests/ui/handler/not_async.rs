use event_runtime::{Context, DomainEvent, Envelope, HandlerError, handler};
use serde::{Deserialize, Serialize};

#[derive(DomainEvent, Serialize, Deserialize)]
#[event(context = "orders")]
struct OrderPlaced {
    order_id: String,
}

#[handler(group = "billing")]
fn bill(_event: Envelope<OrderPlaced>, _ctx: Context) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
