include!("messages.in");

#[derive(Serialize, Deserialize)]
struct Checkout { order_id: String, cents: u64 }

// Instances stored at version 1 could not be read.
#[saga(key = order_id, state_version = 2)]
impl Checkout {
    #[start]
    fn requested(event: &CheckoutRequested) -> Self { Checkout { order_id: event.order_id.clone(), cents: 0 } }

    #[step(pivot, reply = CardCharged, fault = CardDeclined, timeout = "30s")]
    fn charge(&self) -> ChargeCard { ChargeCard { order_id: self.order_id.clone() } }
}

fn main() {}
