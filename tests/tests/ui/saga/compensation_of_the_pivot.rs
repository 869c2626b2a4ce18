include!("messages.in");

#[derive(Serialize, Deserialize)]
struct Checkout { order_id: String }

#[saga(key = order_id)]
impl Checkout {
    #[start]
    fn requested(event: &CheckoutRequested) -> Self { Checkout { order_id: event.order_id.clone() } }

    #[step(pivot, reply = StockHeld, fault = StockShort, timeout = "5s", compensate = release)]
    fn hold(&self) -> HoldStock { HoldStock { order_id: self.order_id.clone() } }

    fn release(&self) -> ReleaseStock { ReleaseStock { order_id: self.order_id.clone() } }
}

fn main() {}
