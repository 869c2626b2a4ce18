include!("messages.in");

#[derive(Serialize, Deserialize)]
struct Checkout { order_id: String }

#[saga(key = order_id)]
impl Checkout {
    #[start]
    fn requested(event: &CheckoutRequested) -> Self { Checkout { order_id: event.order_id.clone() } }

    // A step sends a command; CardCharged is an event.
    #[step(pivot, reply = CardCharged, fault = CardDeclined, timeout = "30s")]
    fn charge(&self) -> CardCharged { CardCharged { order_id: self.order_id.clone() } }
}

fn main() {}
