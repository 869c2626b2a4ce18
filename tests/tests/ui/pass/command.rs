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

/// Commands have versions and upcasters, like events: the target context reads what older
/// senders still send.
#[derive(Command, Serialize, Deserialize)]
#[command(context = "shipping", version = 1, deprecated(since = "2026-01-01"))]
struct ShipOrderV1 {
    #[command(key)]
    order_id: String,
}

#[derive(Command, Serialize, Deserialize)]
#[command(context = "shipping", version = 2, upcast_from = ShipOrderV1, compatibility = "full")]
struct ShipOrder {
    #[command(key)]
    order_id: String,
    #[serde(default)]
    express: bool,
}

impl From<ShipOrderV1> for ShipOrder {
    fn from(v1: ShipOrderV1) -> Self {
        ShipOrder { order_id: v1.order_id, express: false }
    }
}

fn main() {
    let d = &ChargeCard::DESCRIPTORS[0];
    assert_eq!((d.kind, d.name, d.version), (MessageKind::Command, "payments.charge-card", 1));
    let envelope = Envelope::command(ChargeCard { order_id: "o-1".into(), amount_cents: 5 });
    assert_eq!(envelope.partition_key.as_deref(), Some("o-1"));
    assert_eq!(envelope.data.amount_cents, 5);
    let refund = Envelope::command(RefundCard { card: Card { last4: 4242 } });
    assert_eq!(refund.partition_key.as_deref(), Some("4242"));

    let d = &ShipOrder::DESCRIPTORS[0];
    assert_eq!((d.kind, d.name, d.version), (MessageKind::Command, "shipping.ship_order", 2));
    assert_eq!(d.oldest_readable_version, 1);
    assert!(ShipOrderV1::DESCRIPTORS[0].deprecated.is_some());
    let lifted = ShipOrder::decode_payload("shipping.ship_order", 1, br#"{"order_id":"o-7"}"#)
        .expect("v1 is upcast");
    assert_eq!((lifted.order_id.as_str(), lifted.express), ("o-7", false));
}
