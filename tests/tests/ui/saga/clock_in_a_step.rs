include!("messages.in");

#[derive(Serialize, Deserialize)]
struct Checkout { order_id: String, started: u64 }

#[saga(key = order_id)]
impl Checkout {
    #[start]
    fn requested(event: &CheckoutRequested) -> Self {
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        Checkout { order_id: event.order_id.clone(), started }
    }

    #[step(pivot, reply = CardCharged, fault = CardDeclined, timeout = "30s")]
    fn charge(&self) -> ChargeCard { ChargeCard { order_id: self.order_id.clone() } }
}

fn main() {}
