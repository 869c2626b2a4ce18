include!("messages.in");

#[derive(Serialize, Deserialize)]
struct Checkout { order_id: String }

#[saga(key = order_id)]
impl Checkout {
    #[start]
    fn requested(event: &CheckoutRequested) -> Self { Checkout { order_id: event.order_id.clone() } }

    #[step(reply = StockHeld, fault = StockShort, timeout = "5s", compensate = none)]
    fn hold(&self) -> HoldStock { HoldStock { order_id: self.order_id.clone() } }

    // The same message cannot say both that the stock is held and that the card is charged.
    #[step(pivot, reply = StockHeld, fault = CardDeclined, timeout = "30s")]
    fn charge(&self) -> ChargeCard { ChargeCard { order_id: self.order_id.clone() } }
}

fn main() {}
