use event_runtime::{Context, DomainEvent, Envelope, handler};
use serde::{Deserialize, Serialize};

#[derive(DomainEvent, Serialize, Deserialize)]
#[event(context = "orders")]
struct OrderPlaced {
    order_id: String,
}

#[handler(group = "billing")]
async fn bill(_event: Envelope<OrderPlaced>, _ctx: Context) -> Result<(), String> {
    Ok(())
}

fn main() {}
