include!("messages.in");

#[derive(Serialize, Deserialize)]
struct Checkout { order_id: String }

#[saga(key = order_id)]
impl Checkout {
    #[start]
    fn requested(event: &CheckoutRequested) -> Self { Checkout { order_id: event.order_id.clone() } }

    #[step(pivot, reply = CardCharged, timeout = "30s")]
    fn charge(&self) -> ChargeCard { ChargeCard { order_id: self.order_id.clone() } }
}

fn main() {}
