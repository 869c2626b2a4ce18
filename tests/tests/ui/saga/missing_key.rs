include!("messages.in");

#[derive(Serialize, Deserialize)]
struct Checkout { order_id: String }

#[saga]
impl Checkout {
    #[start]
    fn requested(event: &CheckoutRequested) -> Self { Checkout { order_id: event.order_id.clone() } }

    #[step(pivot, reply = CardCharged, fault = CardDeclined, timeout = "30s")]
    fn charge(&self) -> ChargeCard { ChargeCard { order_id: self.order_id.clone() } }
}

fn main() {}
