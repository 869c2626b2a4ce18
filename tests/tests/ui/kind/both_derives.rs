use event_runtime::{Command, DomainEvent};
use serde::{Deserialize, Serialize};

#[derive(DomainEvent, Command, Serialize, Deserialize)]
#[event(context = "payments")]
#[command(context = "payments")]
struct ChargeCard {
    order_id: String,
}

fn main() {}
