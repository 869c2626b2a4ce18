use event_runtime::{Context, DomainEvent, HandlerError, handler};
use serde::{Deserialize, Serialize};

#[derive(DomainEvent, Serialize, Deserialize)]
#[event(context = "orders")]
struct OrderPlaced {
    order_id: String,
}

#[handler(group = "billing")]
async fn bill(_event: OrderPlaced, _ctx: Context) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
