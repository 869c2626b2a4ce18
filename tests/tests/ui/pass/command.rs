use event_runtime::message::MessageKind;
use event_runtime::{Command, Envelope, Message};
use serde::{Deserialize, Serialize};

/// Charge a card for an order.
#[derive(Command, Serialize, Deserialize)]
#[command(context = "payments", name = "payments.charge-card", description = "Charges a card.")]
struct ChargeCard {
    #[command(key)]
    order_id: String,
    amount_cents: u64,
}

#[derive(Command, Serialize, Deserialize)]
#[command(context = "payments", key = self.card.last4)]
struct RefundCard {
    card: Card,
}

#[derive(Serialize, Deserialize)]
struct Card {
    last4: u16,
}

fn main() {
    let d = &ChargeCard::DESCRIPTORS[0];
    assert_eq!((d.kind, d.name, d.version), (MessageKind::Command, "payments.charge-card", 1));
    let envelope = Envelope::command(ChargeCard { order_id: "o-1".into(), amount_cents: 5 });
    assert_eq!(envelope.partition_key.as_deref(), Some("o-1"));
    assert_eq!(envelope.data.amount_cents, 5);
    let refund = Envelope::command(RefundCard { card: Card { last4: 4242 } });
    assert_eq!(refund.partition_key.as_deref(), Some("4242"));
}
