//! An orchestrated saga with every step attribute compiles without a warning.
#![deny(warnings)]

include!("../saga/messages.in");

#[derive(Serialize, Deserialize)]
struct Checkout {
    order_id: String,
    charged: bool,
}

#[saga(name = "checkout", key = order_id: String, attempts = 3)]
impl Checkout {
    #[start]
    fn requested(event: &CheckoutRequested) -> Self {
        Checkout { order_id: event.order_id.clone(), charged: false }
    }

    #[step(reply = StockHeld, fault = StockShort, timeout = "5s", compensate = release, compensated = StockReleased)]
    fn hold(&self) -> HoldStock {
        HoldStock { order_id: self.order_id.clone() }
    }

    fn release(&self) -> ReleaseStock {
        ReleaseStock { order_id: self.order_id.clone() }
    }

    #[step(pivot, reply = CardCharged, on_reply = charged, fault = CardDeclined, on_fault = declined, timeout = "30s")]
    fn charge(&self) -> ChargeCard {
        ChargeCard { order_id: self.order_id.clone() }
    }

    fn charged(&mut self, _: &CardCharged) {
        self.charged = true;
    }

    fn declined(&self, _: &CardDeclined) -> String {
        "declined".to_owned()
    }
}

/// The release's acknowledgement, keyed like the others.
#[derive(DomainEvent, Serialize, Deserialize)]
#[event(context = "inventory")]
pub struct StockReleased {
    #[event(key)]
    pub order_id: String,
}

fn main() {
    use event_runtime::saga::Steps;
    assert_eq!(<Checkout as Steps>::STEPS.len(), 2);
}
