use event_runtime::Command;
use serde::{Deserialize, Serialize};

#[derive(Command, Serialize, Deserialize)]
#[command(context = "payments", version = 2)]
struct ChargeCard {
    order_id: String,
}

fn main() {}
