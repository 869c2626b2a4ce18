//! Behaviour of the derives: names, versions, keys, dedupe keys, upcasting, codecs and the
//! registry, exercised through the public API.

use event_runtime::cloudevents::{self, Limits, binary::Binding};
use event_runtime::error::{DecodeError, DecodeErrorKind, UpcastError};
use event_runtime::registry::Registry;
use event_runtime::{Command, DomainEvent, Envelope, Message};
use serde::{Deserialize, Serialize};

/// A customer placed an order (first shape, kept only to read old payloads).
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(context = "orders", version = 1)]
struct OrderPlacedV1 {
    #[event(key)]
    order_id: String,
    total: u64,
}

/// Second shape: the total became cents and gained a currency.
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(context = "orders", version = 2, upcast_from = OrderPlacedV1)]
struct OrderPlacedV2 {
    #[event(key)]
    order_id: String,
    total_cents: u64,
    currency: String,
}

impl From<OrderPlacedV1> for OrderPlacedV2 {
    fn from(v1: OrderPlacedV1) -> Self {
        OrderPlacedV2 {
            order_id: v1.order_id,
            total_cents: v1.total * 100,
            currency: "EUR".into(),
        }
    }
}

/// A customer placed an order.
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(
    context = "orders",
    version = 3,
    upcast_from = OrderPlacedV2,
    upcast_with = lift_v2,
    sla(max_latency = "500ms", retention = "30d")
)]
struct OrderPlaced {
    #[event(key, dedupe)]
    order_id: String,
    total_cents: u64,
    currency: String,
    #[serde(default)]
    coupon: Option<String>,
}

fn lift_v2(v2: OrderPlacedV2) -> OrderPlaced {
    OrderPlaced {
        order_id: v2.order_id,
        total_cents: v2.total_cents,
        currency: v2.currency,
        coupon: None,
    }
}

/// The events of a shipment, as cqrs-es users write them.
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(context = "shipping")]
enum ShipmentEvent {
    /// A parcel was packed.
    Packed {
        #[event(key)]
        shipment_id: String,
        weight_grams: u32,
    },
    /// The parcel left; version 2 renamed `carrier_code` to `carrier`.
    #[event(version = 2, upcast_json(from = 1, with = rename_carrier))]
    Dispatched {
        #[event(key)]
        shipment_id: String,
        carrier: String,
    },
    /// Delivered.
    #[event(name = "shipping.delivered")]
    Delivered(#[event(key)] String),
    /// Lost in transit.
    Lost,
}

fn rename_carrier(mut v1: serde_json::Value) -> Result<serde_json::Value, UpcastError> {
    let object = v1
        .as_object_mut()
        .ok_or_else(|| UpcastError::new("payload is not an object"))?;
    let carrier = object
        .remove("carrier_code")
        .ok_or_else(|| UpcastError::new("field `carrier_code` is missing"))?;
    object.insert("carrier".into(), carrier);
    Ok(v1)
}

/// Charge a card for an order.
#[derive(Command, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[command(context = "payments")]
struct ChargeCard {
    #[command(key)]
    order_id: String,
    amount_cents: u64,
}

/// A stock reservation keyed by a composite of warehouse and sku.
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(context = "inventory", name = "inventory.stock-reserved")]
struct StockReserved {
    #[event(key)]
    warehouse: u32,
    #[event(key)]
    sku: String,
    quantity: u32,
}

/// Keyed by an expression.
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(context = "billing", key = self.customer.id)]
struct InvoiceIssued {
    customer: Customer,
}

/// Nested key holder.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Customer {
    id: u64,
}

fn order() -> OrderPlaced {
    OrderPlaced {
        order_id: "o-42".into(),
        total_cents: 1999,
        currency: "EUR".into(),
        coupon: Some("WELCOME".into()),
    }
}

#[test]
fn derived_names_versions_and_contexts() {
    let d = &OrderPlaced::DESCRIPTORS[0];
    assert_eq!(
        (d.name, d.version, d.context),
        ("orders.order_placed", 3, "orders")
    );
    assert_eq!(d.description, Some("A customer placed an order."));
    assert_eq!(d.oldest_readable_version, 1);
    assert_eq!(d.sla.max_latency_ms, Some(500));
    assert_eq!(d.sla.retention_secs, Some(30 * 86_400));
    // The embedded log keeps the `orders` topic as long as its events declare.
    let retention = event_runtime::app::Retention::default();
    assert_eq!(
        retention.limits_for("orders").max_age,
        Some(std::time::Duration::from_secs(30 * 86_400))
    );
    assert_eq!(retention.limits_for("elsewhere"), retention.log);
    assert!(d.rust_type.ends_with("::OrderPlaced"), "{}", d.rust_type);
    assert_eq!(OrderPlacedV1::DESCRIPTORS[0].name, "orders.order_placed");

    let names: Vec<_> = ShipmentEvent::DESCRIPTORS
        .iter()
        .map(|d| (d.name, d.version))
        .collect();
    assert_eq!(
        names,
        [
            ("shipping.packed", 1),
            ("shipping.dispatched", 2),
            ("shipping.delivered", 1),
            ("shipping.lost", 1)
        ]
    );
    assert_eq!(ShipmentEvent::DESCRIPTORS[1].oldest_readable_version, 1);
    assert_eq!(ChargeCard::DESCRIPTORS[0].name, "payments.charge_card");
}

#[test]
fn keys_composite_keys_expressions_and_dedupe_keys() {
    assert_eq!(order().partition_key().as_deref(), Some("o-42"));
    assert_eq!(
        order().dedupe_key().as_deref(),
        Some("orders.order_placed:o-42")
    );
    let reserved = StockReserved {
        warehouse: 7,
        sku: "sku-1".into(),
        quantity: 3,
    };
    assert_eq!(reserved.partition_key().as_deref(), Some("7/sku-1"));
    assert_eq!(reserved.dedupe_key(), None);
    let invoice = InvoiceIssued {
        customer: Customer { id: 9 },
    };
    assert_eq!(invoice.partition_key().as_deref(), Some("9"));
    assert_eq!(
        ShipmentEvent::Delivered("s-1".into())
            .partition_key()
            .as_deref(),
        Some("s-1")
    );
    assert_eq!(ShipmentEvent::Lost.partition_key(), None);

    let envelope = Envelope::event(order());
    assert_eq!(envelope.partition_key.as_deref(), Some("o-42"));
    assert_eq!(envelope.effective_dedupe_key(), "orders.order_placed:o-42");
    let envelope = Envelope::event(reserved);
    assert_eq!(envelope.effective_dedupe_key(), envelope.id.to_string());
}

#[test]
fn every_encoding_round_trips() {
    let limits = Limits::default();
    let sent = Envelope::event(order()).with_subject("order/o-42");

    let json = cloudevents::to_json(&sent).unwrap();
    assert_eq!(
        cloudevents::from_json::<OrderPlaced>(&json, &limits).unwrap(),
        sent
    );

    let proto = cloudevents::to_protobuf(&sent).unwrap();
    assert_eq!(
        cloudevents::from_protobuf::<OrderPlaced>(&proto, &limits).unwrap(),
        sent
    );

    for binding in [Binding::Kafka, Binding::Nats] {
        let message = cloudevents::binary::to_binary(&sent, binding).unwrap();
        assert_eq!(message.key.as_deref(), Some(&b"o-42"[..]));
        let prefix = binding.prefix();
        assert_eq!(
            message.header(&format!("{prefix}type")),
            Some(&b"orders.order_placed"[..])
        );
        let raw = cloudevents::binary::decode(&message.headers, &message.payload, binding, &limits)
            .unwrap();
        assert_eq!(raw.decode::<OrderPlaced>().unwrap(), sent);
    }
}

#[test]
fn enum_variants_travel_as_their_own_payloads() {
    let limits = Limits::default();
    for event in [
        ShipmentEvent::Packed {
            shipment_id: "s-1".into(),
            weight_grams: 1200,
        },
        ShipmentEvent::Dispatched {
            shipment_id: "s-1".into(),
            carrier: "DHL".into(),
        },
        ShipmentEvent::Delivered("s-1".into()),
        ShipmentEvent::Lost,
    ] {
        let sent = Envelope::event(event);
        let raw = cloudevents::structured::decode(&cloudevents::to_json(&sent).unwrap(), &limits)
            .unwrap();
        // The payload is the variant's fields, not serde's {"Variant": ...} wrapper.
        let data: serde_json::Value = serde_json::from_slice(&raw.data.0).unwrap();
        if let Some(object) = data.as_object() {
            assert!(!object.contains_key("Packed") && !object.contains_key("Dispatched"));
        }
        assert_eq!(raw.decode::<ShipmentEvent>().unwrap(), sent);
    }
}

fn raw_json(ty: &str, version: u32, data: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "specversion": "1.0",
        "id": "01938f5e-8c2a-7d4e-9b1a-3c5d7e9f1a2b",
        "source": "/legacy",
        "type": ty,
        "time": "2026-11-26T10:00:00Z",
        "eventversion": version,
        "data": data,
    }))
    .unwrap()
}

#[test]
fn old_versions_are_lifted_to_the_current_type() {
    let limits = Limits::default();
    let v1 = raw_json(
        "orders.order_placed",
        1,
        serde_json::json!({"order_id": "o-1", "total": 12}),
    );
    let current = cloudevents::from_json::<OrderPlaced>(&v1, &limits).unwrap();
    assert_eq!(current.version, 3);
    assert_eq!(
        current.data,
        OrderPlaced {
            order_id: "o-1".into(),
            total_cents: 1200,
            currency: "EUR".into(),
            coupon: None
        }
    );

    let dispatched_v1 = raw_json(
        "shipping.dispatched",
        1,
        serde_json::json!({"shipment_id": "s-9", "carrier_code": "UPS"}),
    );
    let lifted = cloudevents::from_json::<ShipmentEvent>(&dispatched_v1, &limits).unwrap();
    assert_eq!(
        lifted.data,
        ShipmentEvent::Dispatched {
            shipment_id: "s-9".into(),
            carrier: "UPS".into()
        }
    );

    let broken_v1 = raw_json(
        "shipping.dispatched",
        1,
        serde_json::json!({"shipment_id": "s-9"}),
    );
    let err = cloudevents::from_json::<ShipmentEvent>(&broken_v1, &limits).unwrap_err();
    assert_eq!(err.kind(), DecodeErrorKind::Upcast);
    assert!(err.to_string().contains("carrier_code"), "{err}");
}

#[test]
fn unknown_fields_are_ignored_and_future_versions_are_typed_errors() {
    let limits = Limits::default();
    let with_extra = raw_json(
        "orders.order_placed",
        3,
        serde_json::json!({"order_id": "o-1", "total_cents": 5, "currency": "EUR", "gift_wrap": true}),
    );
    let decoded = cloudevents::from_json::<OrderPlaced>(&with_extra, &limits).unwrap();
    assert_eq!(decoded.data.total_cents, 5);

    let future = raw_json(
        "orders.order_placed",
        4,
        serde_json::json!({"order_id": "o-1"}),
    );
    match cloudevents::from_json::<OrderPlaced>(&future, &limits) {
        Err(DecodeError::FutureVersion {
            version: 4,
            newest_known: 3,
            ..
        }) => {}
        other => panic!("expected FutureVersion, got {other:?}"),
    }

    let unknown = raw_json("orders.order_cancelled", 1, serde_json::json!({}));
    let err = cloudevents::from_json::<OrderPlaced>(&unknown, &limits).unwrap_err();
    assert_eq!(err.kind(), DecodeErrorKind::UnknownType);

    let v0 = raw_json("shipping.packed", 0, serde_json::json!({}));
    let err = cloudevents::from_json::<ShipmentEvent>(&v0, &limits).unwrap_err();
    assert_eq!(err.kind(), DecodeErrorKind::Malformed, "{err}");
}

#[test]
fn causation_carries_correlation_forward() {
    let placed = Envelope::event(order());
    assert_eq!(placed.correlation_id, Some(placed.id.to_string()));
    let charge = Envelope::command(ChargeCard {
        order_id: "o-42".into(),
        amount_cents: 1999,
    })
    .caused_by(&placed);
    assert_eq!(charge.correlation_id, placed.correlation_id);
    assert_eq!(charge.causation_id, Some(placed.id.to_string()));
    let next = Envelope::event(order()).caused_by(&charge);
    assert_eq!(next.correlation_id, placed.correlation_id);
    assert_eq!(next.causation_id, Some(charge.id.to_string()));
    assert!(placed.id < charge.id, "UUIDv7 ids sort by creation");
}

#[test]
fn the_registry_lists_every_derived_type_and_validates() {
    let registry = Registry::global().expect("no duplicates or broken chains in this binary");
    let versions: Vec<u32> = registry
        .versions("orders.order_placed")
        .iter()
        .map(|d| d.version)
        .collect();
    assert_eq!(versions, [1, 2, 3]);
    assert_eq!(registry.latest("orders.order_placed").unwrap().version, 3);
    assert!(
        registry
            .commands()
            .any(|d| d.name == "payments.charge_card")
    );
    assert!(registry.events().all(|d| d.name != "payments.charge_card"));
    assert!(registry.get("shipping.dispatched", 2).is_some());
}

#[test]
fn start_up_detects_duplicates_conflicts_and_broken_chains() {
    use event_runtime::message::{Descriptor, MessageKind, Sla};
    const fn d(
        name: &'static str,
        version: u32,
        rust_type: &'static str,
        oldest: u32,
        kind: MessageKind,
    ) -> Descriptor {
        Descriptor {
            kind,
            name,
            version,
            context: "orders",
            description: None,
            rust_type,
            content_type: "application/json",
            key_fields: &[],
            dedupe_fields: &[],
            oldest_readable_version: oldest,
            deprecated: None,
            sla: Sla {
                max_latency_ms: None,
                retention_secs: None,
            },
        }
    }
    static BAD: [Descriptor; 5] = [
        d("a", 1, "x::A", 1, MessageKind::Event),
        d("a", 1, "y::A", 1, MessageKind::Event),
        d("b", 1, "x::B1", 1, MessageKind::Event),
        d("b", 2, "x::B2", 2, MessageKind::Event),
        d("b", 3, "x::B3", 2, MessageKind::Command),
    ];
    let err = Registry::from_descriptors(BAD.iter()).unwrap_err();
    let text = err.to_string();
    assert_eq!(err.problems.len(), 3, "{text}");
    assert!(
        text.contains("`a` version 1 is claimed by x::A and y::A"),
        "{text}"
    );
    assert!(text.contains("both an event and a command"), "{text}");
    assert!(text.contains("cannot read version 1"), "{text}");
}

/// A prost message used directly as an event.
#[derive(DomainEvent, Clone, PartialEq, prost::Message)]
#[event(context = "telemetry", codec = protobuf)]
struct ReadingTaken {
    #[prost(string, tag = "1")]
    #[event(key)]
    sensor: String,
    #[prost(sint64, tag = "2")]
    milli_celsius: i64,
}

#[test]
fn prost_messages_are_events_in_every_format() {
    let limits = Limits::default();
    let sent = Envelope::event(ReadingTaken {
        sensor: "t-1".into(),
        milli_celsius: -4_250,
    });
    assert_eq!(sent.content_type, "application/protobuf");
    assert_eq!(sent.partition_key.as_deref(), Some("t-1"));

    // Structured JSON carries a binary payload as data_base64.
    let json = cloudevents::to_json(&sent).unwrap();
    let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert!(value.get("data").is_none());
    assert!(value["data_base64"].is_string());
    assert_eq!(
        cloudevents::from_json::<ReadingTaken>(&json, &limits).unwrap(),
        sent
    );

    let proto = cloudevents::to_protobuf(&sent).unwrap();
    assert_eq!(
        cloudevents::from_protobuf::<ReadingTaken>(&proto, &limits).unwrap(),
        sent
    );

    // In binary mode the body is exactly what prost writes, readable by any protobuf client.
    let message = cloudevents::binary::to_binary(&sent, Binding::Kafka).unwrap();
    assert_eq!(message.payload, prost::Message::encode_to_vec(&sent.data));
    assert_eq!(
        message.header("content-type"),
        Some(&b"application/protobuf"[..])
    );
}

/// `contracts::check_registry` decodes every example of a registry with this binary's newest
/// type of its name: the old versions through the upcasters, a payload the type cannot read
/// as a failure naming the file and the reason, a name no type here has as not linked.
#[test]
fn registry_examples_are_read_through_the_current_types() {
    use event_runtime::contracts::{assert_reads_registry, check_registry};

    let dir = std::env::temp_dir().join(format!("evt-contracts-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let orders = dir.join("orders/orders.order_placed");
    std::fs::create_dir_all(&orders).unwrap();
    std::fs::create_dir_all(dir.join("billing/billing.invoice_sent")).unwrap();
    let write = |path: std::path::PathBuf, text: &str| std::fs::write(path, text).unwrap();
    write(
        orders.join("v1.example.json"),
        r#"{"order_id": "o-1", "total": 42}"#,
    );
    write(
        orders.join("v2.example.json"),
        r#"{"order_id": "o-2", "total_cents": 4200, "currency": "EUR"}"#,
    );
    write(
        orders.join("v3.example.json"),
        r#"{"order_id": "o-3", "total_cents": 1, "currency": "EUR", "coupon": null}"#,
    );
    write(orders.join("v3.schema.json"), "{}"); // not an example: ignored
    write(
        dir.join("billing/billing.invoice_sent/v1.example.json"),
        r#"{"invoice": "i-1"}"#,
    );

    let report = check_registry(&dir).unwrap();
    assert!(report.passed(), "{report}");
    let read: Vec<(u32, &str)> = report
        .read
        .iter()
        .map(|(example, ty)| (example.version, ty.rsplit("::").next().unwrap()))
        .collect();
    assert_eq!(
        read,
        [(1, "OrderPlaced"), (2, "OrderPlaced"), (3, "OrderPlaced")]
    );
    assert_eq!(report.not_linked, ["billing.invoice_sent"]);
    assert_reads_registry(&dir);

    // A v2 payload the current types cannot read (a string where v2 has a number) fails,
    // naming the file and the reason.
    write(
        orders.join("v2.example.json"),
        r#"{"order_id": "o-2", "total_cents": "4200", "currency": "EUR"}"#,
    );
    let report = check_registry(&dir).unwrap();
    assert!(!report.passed());
    assert_eq!(report.failed.len(), 1, "{report}");
    let (example, why) = &report.failed[0];
    assert_eq!(
        (example.name.as_str(), example.version),
        ("orders.order_placed", 2)
    );
    assert!(why.contains("OrderPlaced` (v3) cannot read it"), "{why}");
    let text = report.to_string();
    assert!(text.contains("FAILED orders.order_placed v2"), "{text}");
    assert!(text.contains("v2.example.json"), "{text}");
    let panic = std::panic::catch_unwind(|| assert_reads_registry(&dir)).unwrap_err();
    let message = panic.downcast_ref::<String>().unwrap();
    assert!(message.contains("cannot read"), "{message}");
    std::fs::remove_dir_all(&dir).unwrap();
}
