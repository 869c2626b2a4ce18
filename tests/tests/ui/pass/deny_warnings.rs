#![deny(warnings)]
//! The expansion of every derive feature compiles without a single warning.

use event_runtime::error::UpcastError;
use event_runtime::{Command, DomainEvent, Envelope, Message};
use serde::{Deserialize, Serialize};

/// First shape of an order.
#[derive(DomainEvent, Serialize, Deserialize)]
#[event(context = "orders", version = 1)]
struct OrderPlacedV1 {
    #[event(key)]
    order_id: String,
    total: u64,
}

/// Second shape: cents. Deprecated, with a sunset.
#[derive(DomainEvent, Serialize, Deserialize)]
#[event(
    context = "orders",
    version = 2,
    upcast_from = OrderPlacedV1,
    deprecated(since = "2026-01-01", sunset = "2027-01-01", note = "use v3")
)]
struct OrderPlacedV2 {
    #[event(key)]
    order_id: String,
    total_cents: u64,
}

impl From<OrderPlacedV1> for OrderPlacedV2 {
    fn from(v1: OrderPlacedV1) -> Self {
        OrderPlacedV2 { order_id: v1.order_id, total_cents: v1.total * 100 }
    }
}

/// Current shape: composite key, dedupe key, SLA, lifted with a function.
#[derive(DomainEvent, Serialize, Deserialize)]
#[event(
    context = "orders",
    version = 3,
    upcast_from = OrderPlacedV2,
    upcast_with = lift_v2,
    sla(max_latency = "500ms", retention = "30d")
)]
struct OrderPlaced {
    #[event(key)]
    tenant: u32,
    #[event(key, dedupe)]
    order_id: String,
    total_cents: u64,
}

fn lift_v2(v2: OrderPlacedV2) -> OrderPlaced {
    OrderPlaced { tenant: 0, order_id: v2.order_id, total_cents: v2.total_cents }
}

/// Keyed by an expression; version 2 reads version 1 through a JSON upcaster.
#[derive(DomainEvent, Serialize, Deserialize)]
#[event(context = "billing", version = 2, key = self.customer.id, upcast_json(from = 1, with = add_currency))]
struct InvoiceIssued {
    customer: Customer,
    currency: String,
}

/// Nested key holder.
#[derive(Serialize, Deserialize)]
struct Customer {
    id: u64,
}

fn add_currency(mut v: serde_json::Value) -> Result<serde_json::Value, UpcastError> {
    v.as_object_mut()
        .ok_or_else(|| UpcastError::new("not an object"))?
        .insert("currency".into(), "EUR".into());
    Ok(v)
}

/// Keyed by a function.
#[derive(DomainEvent, Serialize, Deserialize)]
#[event(context = "billing", key_with = refund_key)]
struct RefundIssued {
    invoice: String,
    line: u16,
}

fn refund_key(refund: &RefundIssued) -> String {
    format!("{}#{}", refund.invoice, refund.line)
}

/// An event enum: one event type per variant.
#[derive(DomainEvent, Serialize, Deserialize)]
#[event(context = "shipping")]
enum ShipmentEvent {
    /// Packed.
    Packed {
        #[event(key)]
        shipment_id: String,
        #[event(dedupe)]
        packer: u32,
    },
    /// Dispatched; version 2 renamed a field.
    #[event(version = 2, upcast_json(from = 1, with = rename_carrier), sla(max_latency = "1s"))]
    Dispatched {
        #[event(key)]
        shipment_id: String,
        carrier: String,
    },
    /// Delivered.
    #[event(name = "shipping.handed_over", deprecated)]
    Delivered(#[event(key)] String),
    /// Lost.
    Lost,
}

fn rename_carrier(v: serde_json::Value) -> Result<serde_json::Value, UpcastError> {
    Ok(v)
}

/// A protobuf event, with a protobuf predecessor.
#[derive(DomainEvent, Clone, PartialEq, prost::Message)]
#[event(context = "sensors", codec = protobuf)]
struct ParcelScannedV1 {
    #[prost(string, tag = "1")]
    #[event(key)]
    parcel: String,
}

/// Current protobuf shape.
#[derive(DomainEvent, Clone, PartialEq, prost::Message)]
#[event(context = "sensors", version = 2, codec = protobuf, upcast_from = ParcelScannedV1)]
struct ParcelScanned {
    #[prost(string, tag = "1")]
    #[event(key)]
    parcel: String,
    #[prost(uint32, tag = "2")]
    #[event(dedupe)]
    scanner: u32,
}

impl From<ParcelScannedV1> for ParcelScanned {
    fn from(v1: ParcelScannedV1) -> Self {
        ParcelScanned { parcel: v1.parcel, scanner: 0 }
    }
}

/// A command.
#[derive(Command, Serialize, Deserialize)]
#[command(context = "payments", key = self.order_id)]
struct ChargeCard {
    order_id: String,
    amount_cents: u64,
}

fn main() {
    let v1 = OrderPlacedV1 { order_id: "o-1".into(), total: 1 };
    let OrderPlaced { tenant, order_id, total_cents } = lift_v2(OrderPlacedV2::from(v1));
    assert_eq!((tenant, order_id.as_str(), total_cents), (0, "o-1", 100));
    let placed = Envelope::event(OrderPlaced { tenant: 7, order_id: "o-2".into(), total_cents: 5 });
    assert_eq!(placed.partition_key.as_deref(), Some("7/o-2"));
    assert_eq!(placed.dedupe_key.as_deref(), Some("orders.order_placed:o-2"));
    assert_eq!(OrderPlaced::DESCRIPTORS[0].oldest_readable_version, 1);

    let invoice = InvoiceIssued { customer: Customer { id: 9 }, currency: "EUR".into() };
    assert_eq!(invoice.currency, "EUR");
    assert_eq!(invoice.partition_key().as_deref(), Some("9"));
    assert_eq!(add_currency(serde_json::json!({})).unwrap()["currency"], "EUR");

    let refund = RefundIssued { invoice: "i-1".into(), line: 2 };
    assert_eq!(refund.partition_key().as_deref(), Some("i-1#2"));

    for event in [
        ShipmentEvent::Packed { shipment_id: "s-1".into(), packer: 3 },
        ShipmentEvent::Dispatched { shipment_id: "s-1".into(), carrier: "DHL".into() },
        ShipmentEvent::Delivered("s-1".into()),
        ShipmentEvent::Lost,
    ] {
        match &event {
            ShipmentEvent::Packed { shipment_id, packer } => assert_eq!((shipment_id.as_str(), *packer), ("s-1", 3)),
            ShipmentEvent::Dispatched { shipment_id, carrier } => assert_eq!((shipment_id.as_str(), carrier.as_str()), ("s-1", "DHL")),
            ShipmentEvent::Delivered(shipment_id) => assert_eq!(shipment_id, "s-1"),
            ShipmentEvent::Lost => {}
        }
        let envelope = Envelope::event(event);
        assert!(envelope.to_raw().is_ok());
    }

    let scanned = ParcelScanned::from(ParcelScannedV1 { parcel: "p-1".into() });
    assert_eq!(scanned.scanner, 0);
    let scanned = Envelope::event(scanned);
    assert_eq!(scanned.content_type, "application/protobuf");
    assert_eq!(scanned.dedupe_key.as_deref(), Some("sensors.parcel_scanned:0"));
    let raw = scanned.to_raw().unwrap();
    assert_eq!(raw.decode::<ParcelScanned>().unwrap().data.parcel, "p-1");

    let charge = Envelope::command(ChargeCard { order_id: "o-2".into(), amount_cents: 5 });
    assert_eq!((charge.partition_key.as_deref(), charge.data.amount_cents), (Some("o-2"), 5));
}
