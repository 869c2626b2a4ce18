include!("messages.in");

#[derive(Serialize, Deserialize)]
struct Checkout { order_id: String }

// Every message's `order_id` is a String, not the saga's u64.
#[saga(key = order_id: u64)]
impl Checkout {
    #[start]
    fn requested(event: &CheckoutRequested) -> Self { Checkout { order_id: event.order_id.clone() } }

    #[step(reply = StockHeld, fault = StockShort, timeout = "5s", compensate = none)]
    fn hold(&self) -> HoldStock { HoldStock { order_id: self.order_id.clone() } }
}

fn main() {}
