use event_runtime::Command;
use serde::{Deserialize, Serialize};

#[derive(Command, Serialize, Deserialize)]
struct ChargeCard {
    #[command(key)]
    order_id: String,
    amount_cents: u64,
}

fn main() {}
