use event_runtime::Command;
use serde::{Deserialize, Serialize};

#[derive(Command, Serialize, Deserialize)]
#[command(context = "payments")]
struct ChargeCard {
    #[command(dedupe)]
    order_id: String,
}

fn main() {}
