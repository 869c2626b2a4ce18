include!("messages.in");

// No Serialize / Deserialize: the state could not be stored between messages.
struct Checkout { order_id: String }

#[saga(key = order_id)]
impl Checkout {
    #[start]
    fn requested(event: &CheckoutRequested) -> Self { Checkout { order_id: event.order_id.clone() } }

    #[step(pivot, reply = CardCharged, fault = CardDeclined, timeout = "30s")]
    fn charge(&self) -> ChargeCard { ChargeCard { order_id: self.order_id.clone() } }
}

fn main() {}
