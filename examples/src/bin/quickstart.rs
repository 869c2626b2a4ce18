//! The quickstart: a small shop on the durable embedded engine (one SQLite file).
//!
//! Four bounded contexts react to each other's events, with no coordinator (choreography):
//!
//! ```text
//! orders ──OrderPlaced──► payments ──PaymentCaptured──► inventory ──StockReserved──► shipping
//!                                                                                   └─► ShipmentScheduled
//! ```
//!
//! It prints the flow with correlation ids, shows a poison record and an order for a product the
//! warehouse does not stock landing in the dead-letter queue with their reasons, fixes the
//! catalog, redrives the order, and finishes by itself.
//!
//! Run it with `cargo run -p event-examples --bin quickstart`.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use event_runtime::dlq::{LetterFilter, Selection};
use event_runtime::transport::sqlite::SqliteTransport;
use event_runtime::transport::{Bytes, OutgoingRecord, Transport};
use event_runtime::{App, Context, DomainEvent, Envelope, HandlerError, Stores, handler};
use serde::{Deserialize, Serialize};

/// One line of an order.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Line {
    sku: String,
    quantity: u32,
}

/// A customer placed an order.
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone)]
#[event(
    context = "orders",
    owner(team = "checkout", contact = "#checkout-oncall"),
    sla(max_latency = "2s", retention = "30d")
)]
struct OrderPlaced {
    #[event(key)]
    order_id: String,
    customer: String,
    lines: Vec<Line>,
    total_cents: u64,
}

/// Payments captured the money for an order.
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone)]
#[event(
    context = "payments",
    owner(team = "checkout", contact = "#checkout-oncall")
)]
struct PaymentCaptured {
    #[event(key)]
    order_id: String,
    amount_cents: u64,
    lines: Vec<Line>,
}

/// Inventory reserved the stock of an order.
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone)]
#[event(
    context = "inventory",
    owner(team = "fulfilment", contact = "fulfilment@shop.example")
)]
struct StockReserved {
    #[event(key)]
    order_id: String,
    lines: Vec<Line>,
}

/// Shipping booked a carrier.
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone)]
#[event(
    context = "shipping",
    owner(team = "fulfilment", contact = "fulfilment@shop.example")
)]
struct ShipmentScheduled {
    #[event(key)]
    order_id: String,
    carrier: String,
}

/// What the warehouse stocks; shared state of the inventory handler.
#[derive(Clone)]
struct Catalog(Arc<Mutex<BTreeSet<String>>>);

fn corr(ctx: &Context) -> String {
    let id = ctx.causation().correlation_id.clone().unwrap_or_default();
    id.rsplit('-').next().unwrap_or_default().to_owned()
}

/// Payments charges every order.
#[handler(group = "payments")]
async fn charge(event: Envelope<OrderPlaced>, ctx: Context) -> Result<(), HandlerError> {
    let order = event.data;
    println!(
        "[{}] payments   captured {:>6.2} EUR for {} ({})",
        corr(&ctx),
        order.total_cents as f64 / 100.0,
        order.order_id,
        order.customer
    );
    ctx.publish(PaymentCaptured {
        order_id: order.order_id,
        amount_cents: order.total_cents,
        lines: order.lines,
    })?;
    Ok(())
}

/// Inventory reserves stock; an unknown product is a permanent failure.
#[handler(group = "inventory")]
async fn reserve(event: Envelope<PaymentCaptured>, ctx: Context) -> Result<(), HandlerError> {
    let catalog = ctx.state::<Catalog>().expect("catalog state is registered");
    let payment = event.data;
    {
        let stocked = catalog.0.lock().expect("catalog lock");
        if let Some(line) = payment.lines.iter().find(|l| !stocked.contains(&l.sku)) {
            return Err(HandlerError::permanent(format!(
                "order {}: product `{}` is not in the catalog",
                payment.order_id, line.sku
            )));
        }
    }
    let replay = if ctx.is_replay() { " (redriven)" } else { "" };
    println!(
        "[{}] inventory  reserved {} line(s) for {}{replay}",
        corr(&ctx),
        payment.lines.len(),
        payment.order_id
    );
    ctx.publish(StockReserved {
        order_id: payment.order_id,
        lines: payment.lines,
    })?;
    Ok(())
}

/// Shipping books a carrier once stock is reserved.
#[handler(group = "shipping")]
async fn ship(event: Envelope<StockReserved>, ctx: Context) -> Result<(), HandlerError> {
    let carrier = if event.data.lines.len() > 1 {
        "freight"
    } else {
        "parcel"
    };
    println!(
        "[{}] shipping   booked {carrier} for {}",
        corr(&ctx),
        event.data.order_id
    );
    ctx.publish(ShipmentScheduled {
        order_id: event.data.order_id,
        carrier: carrier.into(),
    })?;
    Ok(())
}

fn order(
    id: &str,
    customer: &str,
    lines: &[(&str, u32)],
    total_cents: u64,
) -> Envelope<OrderPlaced> {
    Envelope::event(OrderPlaced {
        order_id: id.into(),
        customer: customer.into(),
        lines: lines
            .iter()
            .map(|(sku, quantity)| Line {
                sku: (*sku).into(),
                quantity: *quantity,
            })
            .collect(),
        total_cents,
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    std::fs::create_dir_all(&target)?;
    let db = target.canonicalize()?.join("quickstart.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    std::fs::create_dir_all(db.parent().expect("target dir"))?;

    // The same application on NATS JetStream: set EVT_NATS_URL, change no code. The log then
    // lives in JetStream; dead letters and dedupe marks stay in the SQLite file.
    match std::env::var("EVT_NATS_URL") {
        Ok(url) => {
            println!(
                "== engine: NATS JetStream at {}",
                event_nats::NatsConfig::new(url.clone()).redacted_url()
            );
            let mut config = event_nats::NatsConfig::new(url);
            // A fresh namespace per run, so earlier runs' records are not in this one's flow.
            config.prefix = format!("quickstart_{}", std::process::id());
            let transport = event_nats::NatsTransport::connect(config).await?;
            let stores = Stores::sqlite(&SqliteTransport::open(&db).await?);
            shop(App::new(transport, stores), &db).await
        }
        Err(_) => {
            println!("== engine: embedded SQLite log at {}", db.display());
            shop(App::embedded(&db).await?, &db).await
        }
    }
}

async fn shop<T: Transport>(
    mut app: App<T>,
    db: &std::path::Path,
) -> Result<(), Box<dyn std::error::Error>> {
    let catalog = Catalog(Arc::new(Mutex::new(
        ["mug", "teapot", "kettle"]
            .into_iter()
            .map(String::from)
            .collect(),
    )));
    // The instance's id (a pod name, say): it names the partitions this process claims and
    // appears in the dead letters' audit entries.
    app.instance("shop-1")
        .partitions(4)
        .with_state(catalog.clone())
        .register(charge)
        .register(reserve)
        .register(ship);
    let running = app.start().await?;
    let publisher = running.publisher();

    println!("== orders flow through payments -> inventory -> shipping");
    println!("   [correlation] context    what happened");
    publisher
        .publish(order("o-1001", "ada", &[("mug", 2)], 2_480))
        .await?;
    publisher
        .publish(order(
            "o-1002",
            "grace",
            &[("teapot", 1), ("kettle", 1)],
            8_990,
        ))
        .await?;
    publisher
        .publish(order("o-1003", "linus", &[("gift-card", 1)], 5_000))
        .await?;

    // A foreign producer writes a record that is not a CloudEvent at all.
    running
        .transport()
        .append(
            "orders",
            vec![OutgoingRecord {
                partition: 0,
                key: Some(Bytes::from_static(b"o-9999")),
                headers: [("ce_type", "orders.order_placed")].into_iter().collect(),
                payload: Bytes::from_static(b"{\"order_id\": \"o-9999\""),
            }],
        )
        .await?;

    if !running.wait_idle(Duration::from_secs(10)).await {
        return Err("the consumers did not catch up within 10 s".into());
    }

    println!("\n== dead letters");
    let dlq = running.dead_letters();
    let letters = dlq.list(&LetterFilter::default()).await?;
    for letter in &letters {
        println!(
            "   #{} group={:<9} {:<16} {}: {}",
            letter.id,
            letter.group,
            letter.event_type.as_deref().unwrap_or("(unreadable)"),
            letter.reason_kind,
            letter.reason
        );
    }

    println!("\n== the warehouse adds gift cards to its catalog; redrive the inventory letters");
    if let Some(catalog_letter) = letters.iter().find(|l| l.group == "inventory") {
        // The handler reads the catalog from shared state: the fix is adding the product.
        catalog
            .0
            .lock()
            .expect("catalog lock")
            .insert("gift-card".into());
        let queued = dlq
            .request_redrive(
                Some("inventory"),
                Selection::Ids(&[catalog_letter.id]),
                "quickstart",
            )
            .await?;
        println!("   queued {queued} redrive(s)");
    }
    if !running.wait_idle(Duration::from_secs(10)).await {
        return Err("the redrive did not finish within 10 s".into());
    }

    println!("\n== state at the end");
    for letter in dlq
        .list(&LetterFilter {
            include_closed: true,
            ..LetterFilter::default()
        })
        .await?
    {
        let trail: Vec<String> = dlq
            .audit(letter.id)
            .await?
            .into_iter()
            .map(|a| format!("{} by {}", a.action, a.actor))
            .collect();
        println!(
            "   #{} {:<9} {}",
            letter.id,
            letter.status.as_str(),
            trail.join(" -> ")
        );
    }
    for lag in running.lag().await?.iter().filter(|l| l.end > 0) {
        println!(
            "   lag {:<9} {:<9} p{} committed {} of {}",
            lag.group, lag.topic, lag.partition, lag.committed, lag.end
        );
    }
    println!(
        "\ninspect the log: cargo run -p evt-cli -- dlq list --db {}",
        db.display()
    );
    running.stop().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    /// Every version in the committed registry, read with this binary's types (the old ones
    /// through their upcasters): a change that could not read what is still on the wire fails
    /// here, in `cargo test`.
    #[test]
    fn reads_every_published_version() {
        event_runtime::contracts::assert_reads_registry(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/schemas"
        ));
    }
}
