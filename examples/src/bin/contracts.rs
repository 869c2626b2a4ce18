//! A tour of the contracts layer on a small shop: three bounded contexts declare their events and
//! commands as plain Rust types; the program shows what goes over the wire, how a flow keeps one
//! correlation id, how an old payload is lifted to the current version, where each key lands, and
//! how a poison message is refused with a typed reason instead of a panic.
//!
//! Run it with `cargo run -p event-examples --bin contracts`.

use event_runtime::cloudevents::{self, Limits, binary::Binding};
use event_runtime::error::DecodeError;
use event_runtime::partition::partition_for_key;
use event_runtime::registry::Registry;
use event_runtime::{Command, DomainEvent, Envelope};
use serde::{Deserialize, Serialize};

/// First shape of the order event; kept so that old payloads stay readable.
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone)]
#[event(context = "orders", version = 1)]
struct OrderPlacedV1 {
    #[event(key)]
    order_id: String,
    /// Whole euros.
    total: u64,
}

/// A customer placed an order.
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone)]
#[event(context = "orders", version = 2, upcast_from = OrderPlacedV1, sla(max_latency = "500ms"))]
struct OrderPlaced {
    #[event(key)]
    order_id: String,
    total_cents: u64,
    currency: String,
}

impl From<OrderPlacedV1> for OrderPlaced {
    fn from(v1: OrderPlacedV1) -> Self {
        OrderPlaced {
            order_id: v1.order_id,
            total_cents: v1.total * 100,
            currency: "EUR".into(),
        }
    }
}

/// Payments is asked to charge the customer's card.
#[derive(Command, Serialize, Deserialize, Debug, Clone)]
#[command(context = "payments")]
struct ChargeCard {
    #[command(key)]
    order_id: String,
    amount_cents: u64,
}

/// What happened to a payment.
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone)]
#[event(context = "payments")]
enum PaymentEvent {
    /// The card was charged.
    Captured {
        #[event(key, dedupe)]
        order_id: String,
        amount_cents: u64,
    },
    /// The card was declined.
    Declined {
        #[event(key)]
        order_id: String,
        reason: String,
    },
}

/// Inventory reserved stock, keyed per warehouse and sku.
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone)]
#[event(context = "inventory")]
struct StockReserved {
    #[event(key)]
    warehouse: u16,
    #[event(key)]
    sku: String,
    order_id: String,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let registry = Registry::global()?;
    println!("== message types linked into this binary");
    for d in registry.iter() {
        println!(
            "  {:<8} {:<26} v{}  owner: {:<10} {}",
            format!("{:?}", d.kind),
            d.name,
            d.version,
            d.context,
            d.description.unwrap_or("")
        );
    }

    println!("\n== one flow, one correlation id");
    let placed = Envelope::event(OrderPlaced {
        order_id: "o-1001".into(),
        total_cents: 4_990,
        currency: "EUR".into(),
    });
    let charge = Envelope::command(ChargeCard {
        order_id: "o-1001".into(),
        amount_cents: 4_990,
    })
    .caused_by(&placed);
    let captured = Envelope::event(PaymentEvent::Captured {
        order_id: "o-1001".into(),
        amount_cents: 4_990,
    })
    .caused_by(&charge);
    let reserved = Envelope::event(StockReserved {
        warehouse: 3,
        sku: "mug-blue".into(),
        order_id: "o-1001".into(),
    })
    .caused_by(&captured);
    for (ty, id, correlation, causation, key) in [
        (
            &placed.ty,
            &placed.id,
            &placed.correlation_id,
            &placed.causation_id,
            &placed.partition_key,
        ),
        (
            &charge.ty,
            &charge.id,
            &charge.correlation_id,
            &charge.causation_id,
            &charge.partition_key,
        ),
        (
            &captured.ty,
            &captured.id,
            &captured.correlation_id,
            &captured.causation_id,
            &captured.partition_key,
        ),
        (
            &reserved.ty,
            &reserved.id,
            &reserved.correlation_id,
            &reserved.causation_id,
            &reserved.partition_key,
        ),
    ] {
        let key = key.as_deref().unwrap_or("-");
        println!(
            "  {ty:<26} id={id} correlation={} caused-by={} key={key} -> partition {} of 12",
            correlation.as_deref().unwrap_or("-"),
            causation.as_deref().unwrap_or("-"),
            partition_for_key(key.as_bytes(), 12)
        );
    }

    println!("\n== the same event as structured CloudEvents JSON");
    let json = cloudevents::to_json(&captured)?;
    println!("  {}", String::from_utf8_lossy(&json));
    let kafka = cloudevents::binary::to_binary(&captured, Binding::Kafka)?;
    println!(
        "== and as Kafka binary mode: key={:?}",
        kafka.key.as_deref().map(String::from_utf8_lossy)
    );
    for (name, value) in &kafka.headers {
        println!("  {name}: {}", String::from_utf8_lossy(value));
    }

    println!("\n== an old version-1 payload is lifted to the current type");
    let old = Envelope::event(OrderPlacedV1 {
        order_id: "o-7".into(),
        total: 12,
    });
    let wire = cloudevents::to_json(&old)?;
    let current = cloudevents::from_json::<OrderPlaced>(&wire, &Limits::default())?;
    println!(
        "  v{} on the wire -> v{}: {:?}",
        old.version, current.version, current.data
    );

    println!("\n== poison messages are refused with a typed reason");
    let mut future = serde_json::from_slice::<serde_json::Value>(&wire)?;
    future["eventversion"] = 9.into();
    let poison: [(&str, Vec<u8>); 3] = [
        ("from the future", serde_json::to_vec(&future)?),
        ("truncated", wire[..wire.len() / 2].to_vec()),
        ("not an event", b"\x00\xffgarbage".to_vec()),
    ];
    for (label, bytes) in poison {
        match cloudevents::from_json::<OrderPlaced>(&bytes, &Limits::default()) {
            Ok(_) => return Err(format!("{label}: poison message was accepted").into()),
            Err(err) => println!("  {label:<16} -> {:?}: {err}", DecodeError::kind(&err)),
        }
    }
    Ok(())
}
