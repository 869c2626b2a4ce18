use event_runtime::error::UpcastError;
use event_runtime::{DomainEvent, Envelope, Message};
use serde::{Deserialize, Serialize};

#[derive(DomainEvent, Serialize, Deserialize)]
#[event(context = "orders", name = "orders.placed", version = 1)]
struct OrderPlacedV1 {
    order_id: String,
}

/// Doc comments are the description unless `description` is given.
#[derive(DomainEvent, Serialize, Deserialize)]
#[event(
    name = "orders.placed",
    version = 2,
    context = "orders",
    description = "A customer placed an order.",
    upcast_from = OrderPlacedV1,
    upcast_with = lift_v1,
    deprecated(since = "2026-11-01", sunset = "2027-06-30", note = "use orders.placed v3"),
    sla(max_latency = "250ms", retention = "7d"),
    codec = json,
    crate = "::event_runtime",
    compatibility = "BACKWARD_TRANSITIVE"
)]
struct OrderPlaced {
    #[event(key)]
    tenant: u32,
    #[event(key, dedupe)]
    order_id: String,
    #[event(dedupe)]
    attempt: u8,
}

fn lift_v1(v1: OrderPlacedV1) -> OrderPlaced {
    OrderPlaced { tenant: 0, order_id: v1.order_id, attempt: 0 }
}

#[derive(DomainEvent, Serialize, Deserialize)]
#[event(context = "billing", key = self.customer.id, codec = "json")]
struct InvoiceIssued {
    customer: Customer,
}

#[derive(Serialize, Deserialize)]
struct Customer {
    id: u64,
}

#[derive(DomainEvent, Serialize, Deserialize)]
#[event(
    context = "billing",
    version = 3,
    key_with = refund_key,
    upcast_json(from = 1, with = v1_to_v2),
    upcast_json(from = 2, with = v2_to_v3)
)]
struct RefundIssued {
    invoice: String,
    line: u16,
}

fn refund_key(refund: &RefundIssued) -> String {
    format!("{}#{}", refund.invoice, refund.line)
}

fn v1_to_v2(v: serde_json::Value) -> Result<serde_json::Value, UpcastError> {
    Ok(v)
}

fn v2_to_v3(v: serde_json::Value) -> Result<serde_json::Value, UpcastError> {
    Ok(v)
}

fn main() {
    let d = &OrderPlaced::DESCRIPTORS[0];
    assert_eq!((d.name, d.version, d.context), ("orders.placed", 2, "orders"));
    assert_eq!(d.description, Some("A customer placed an order."));
    assert_eq!(d.key_fields, ["tenant", "order_id"]);
    assert_eq!(d.dedupe_fields, ["order_id", "attempt"]);
    assert_eq!(d.oldest_readable_version, 1);
    assert_eq!(d.sla.max_latency_ms, Some(250));
    assert_eq!(d.sla.retention_secs, Some(7 * 86_400));
    assert_eq!(d.deprecated.unwrap().sunset, Some("2027-06-30"));
    assert_eq!(d.content_type, "application/json");

    let placed = OrderPlaced { tenant: 7, order_id: "o-1".into(), attempt: 2 };
    assert_eq!(placed.partition_key().as_deref(), Some("7/o-1"));
    assert_eq!(placed.dedupe_key().as_deref(), Some("orders.placed:o-1/2"));
    let envelope = Envelope::event(placed);
    assert_eq!(envelope.ty, "orders.placed");

    let invoice = InvoiceIssued { customer: Customer { id: 9 } };
    assert_eq!(invoice.partition_key().as_deref(), Some("9"));

    let refund = RefundIssued { invoice: "i-1".into(), line: 3 };
    assert_eq!(refund.partition_key().as_deref(), Some("i-1#3"));
    assert_eq!(RefundIssued::DESCRIPTORS[0].oldest_readable_version, 1);
}
