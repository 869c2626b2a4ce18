include!("messages.in");

#[derive(Serialize, Deserialize)]
struct Checkout { order_id: String }

#[saga(key = order_id)]
impl Checkout {
    #[step(reply = StockHeld, fault = StockShort, timeout = "5s", compensate = none)]
    fn hold(&self) -> HoldStock { HoldStock { order_id: self.order_id.clone() } }
}

fn main() {}
