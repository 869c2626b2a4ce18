use event_runtime::{Command, Envelope};
use serde::{Deserialize, Serialize};

#[derive(Command, Serialize, Deserialize)]
#[command(context = "payments")]
struct ChargeCard {
    order_id: String,
}

fn main() {
    let _ = Envelope::event(ChargeCard { order_id: "o-1".into() });
}
