include!("messages.in");

#[derive(Serialize, Deserialize)]
struct Checkout { order_id: String }

#[saga(key = order_id)]
impl Checkout {
    #[start]
    fn requested(event: &CheckoutRequested) -> Self { Checkout { order_id: event.order_id.clone() } }

    #[step(pivot, reply = CardCharged, fault = CardDeclined, timeout = "30s")]
    fn charge(&self) -> ChargeCard {
        let card = std::fs::read_to_string("card.txt").unwrap_or_default();
        std::thread::spawn(move || drop(card));
        ChargeCard { order_id: self.order_id.clone() }
    }
}

fn main() {}
