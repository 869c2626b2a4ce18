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
//! catalog, redrives the order, and finishes by itself, printing the causal tree of two flows
//! (what `evt trace` prints) from its own records.
//!
//! Beside it, the same steps orchestrated: a checkout saga (`Checkout`, declared with
//! `#[saga]`) holds stock, charges the card with a payment timeout and books a shipment (the
//! pivot), and compensates in reverse order (refunds the card, releases the stock) when a step
//! fails. Its state, the commands it sends and its timers commit in one transaction per message:
//!
//! ```text
//! CheckoutRequested ─► HoldStock ─► StockHeld ─► ChargeCard ─► CardCharged ─► BookShipment ─► ShipmentBooked: completed
//!                                                    │ CardDeclined ─► ReleaseStock: failed
//!                                                    │ no answer in 3 s ─► RefundCard, ReleaseStock: failed
//!                                                    └─────────── ShipmentRefused ─► RefundCard, ReleaseStock: failed
//! ```
//!
//! Run it with `cargo run -p event-examples --bin quickstart`.
//!
//! `quickstart serve <instance> [--orders N] [--for SECONDS]` runs the shop's consumers alone,
//! as one instance of the service: start two (or more) and they share every group's partitions,
//! each step of each order running once, on one of them; `--orders` also places orders and
//! checkouts. With `EVT_NATS_URL` they meet on NATS JetStream, otherwise in one SQLite file
//! (see [`serve`]):
//!
//! ```sh
//! export EVT_NATS_URL=nats://127.0.0.1:4222
//! cargo run -p event-examples --bin quickstart -- serve shop-1 --orders 20 &
//! cargo run -p event-examples --bin quickstart -- serve shop-2
//! ```

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use event_runtime::dlq::{LetterFilter, Selection};
use event_runtime::saga::Orchestrated;
use event_runtime::transport::sqlite::SqliteTransport;
use event_runtime::transport::{Bytes, OutgoingRecord, Transport};
use event_runtime::{
    App, Command, Context, DomainEvent, Envelope, HandlerError, Stores, handler, saga,
};
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

/// The id of the instance serving (`quickstart serve <instance>`), shared state of every
/// handler: each line it prints names it.
struct Serving(String);

/// The head of a handler's line: the flow's correlation id (its last group of digits), after
/// the instance's id when several serve.
fn corr(ctx: &Context) -> String {
    let id = ctx.causation().correlation_id.clone().unwrap_or_default();
    let flow = id.rsplit('-').next().unwrap_or_default();
    match ctx.state::<Serving>() {
        Some(serving) => format!("{} {flow}", serving.0),
        None => flow.to_owned(),
    }
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

// ---------------------------------------------------------------------------------------------
// The orchestrated checkout: a saga and its participants.
// ---------------------------------------------------------------------------------------------

/// A customer checked out; the checkout saga takes it from here.
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone)]
#[event(
    context = "checkout",
    owner(team = "checkout", contact = "#checkout-oncall")
)]
struct CheckoutRequested {
    #[event(key)]
    order_id: String,
    customer: String,
    lines: Vec<Line>,
    total_cents: u64,
    address: String,
}

/// Inventory: hold the stock of an order.
#[derive(Command, Serialize, Deserialize, Debug, Clone)]
#[command(context = "inventory")]
struct HoldStock {
    #[command(key)]
    order_id: String,
    lines: Vec<Line>,
}

/// Inventory: release what was held for an order (a compensation).
#[derive(Command, Serialize, Deserialize, Debug, Clone)]
#[command(context = "inventory")]
struct ReleaseStock {
    #[command(key)]
    order_id: String,
}

/// Inventory held the stock of an order.
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone)]
#[event(context = "inventory")]
struct StockHeld {
    #[event(key)]
    order_id: String,
}

/// Payments: charge the customer's card.
#[derive(Command, Serialize, Deserialize, Debug, Clone)]
#[command(context = "payments")]
struct ChargeCard {
    #[command(key)]
    order_id: String,
    customer: String,
    amount_cents: u64,
}

/// Payments: give the money back (a compensation).
#[derive(Command, Serialize, Deserialize, Debug, Clone)]
#[command(context = "payments")]
struct RefundCard {
    #[command(key)]
    order_id: String,
    amount_cents: u64,
}

/// The card was charged.
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone)]
#[event(context = "payments")]
struct CardCharged {
    #[event(key)]
    order_id: String,
}

/// The card was declined.
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone)]
#[event(context = "payments")]
struct CardDeclined {
    #[event(key)]
    order_id: String,
    reason: String,
}

/// Shipping: book a carrier to the address.
#[derive(Command, Serialize, Deserialize, Debug, Clone)]
#[command(context = "shipping")]
struct BookShipment {
    #[command(key)]
    order_id: String,
    address: String,
}

/// A carrier was booked.
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone)]
#[event(context = "shipping")]
struct ShipmentBooked {
    #[event(key)]
    order_id: String,
    carrier: String,
}

/// No carrier takes the order.
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone)]
#[event(context = "shipping")]
struct ShipmentRefused {
    #[event(key)]
    order_id: String,
    reason: String,
}

/// One order's checkout: what its steps and their compensations need to know.
#[derive(Serialize, Deserialize, Debug)]
struct Checkout {
    order_id: String,
    customer: String,
    lines: Vec<Line>,
    total_cents: u64,
    address: String,
    carrier: Option<String>,
}

/// Hold the stock, charge the card, book a carrier: each step a command that expects a reply,
/// a fault or a timeout. The booking is the pivot: once a carrier is booked the order ships,
/// and before that a failure undoes what was done, in reverse order.
#[saga(key = order_id)]
impl Checkout {
    #[start]
    fn requested(event: &CheckoutRequested) -> Self {
        Checkout {
            order_id: event.order_id.clone(),
            customer: event.customer.clone(),
            lines: event.lines.clone(),
            total_cents: event.total_cents,
            address: event.address.clone(),
            carrier: None,
        }
    }

    #[step(reply = StockHeld, fault = none, timeout = "5s", compensate = release_stock)]
    fn hold_stock(&self) -> HoldStock {
        HoldStock {
            order_id: self.order_id.clone(),
            lines: self.lines.clone(),
        }
    }

    fn release_stock(&self) -> ReleaseStock {
        ReleaseStock {
            order_id: self.order_id.clone(),
        }
    }

    // A timeout refunds too: the charge may have gone through (payments refunds only what
    // it charged).
    #[step(
        reply = CardCharged,
        fault = CardDeclined,
        on_fault = declined,
        timeout = "3s",
        compensate = refund_card
    )]
    fn charge_card(&self) -> ChargeCard {
        ChargeCard {
            order_id: self.order_id.clone(),
            customer: self.customer.clone(),
            amount_cents: self.total_cents,
        }
    }

    fn declined(&self, event: &CardDeclined) -> String {
        format!("card declined: {}", event.reason)
    }

    fn refund_card(&self) -> RefundCard {
        RefundCard {
            order_id: self.order_id.clone(),
            amount_cents: self.total_cents,
        }
    }

    #[step(
        pivot,
        reply = ShipmentBooked,
        on_reply = booked,
        fault = ShipmentRefused,
        on_fault = refused,
        timeout = "5s"
    )]
    fn book_shipment(&self) -> BookShipment {
        BookShipment {
            order_id: self.order_id.clone(),
            address: self.address.clone(),
        }
    }

    fn booked(&mut self, event: &ShipmentBooked) {
        self.carrier = Some(event.carrier.clone());
    }

    fn refused(&self, event: &ShipmentRefused) -> String {
        format!("shipping refused: {}", event.reason)
    }
}

/// Inventory holds stock for a checkout.
#[handler(group = "inventory")]
async fn hold_stock(command: Envelope<HoldStock>, ctx: Context) -> Result<(), HandlerError> {
    println!(
        "[{}] inventory  held {} line(s) for {}",
        corr(&ctx),
        command.data.lines.len(),
        command.data.order_id
    );
    ctx.publish(StockHeld {
        order_id: command.data.order_id,
    })?;
    Ok(())
}

/// Inventory releases a checkout's stock.
#[handler(group = "inventory")]
async fn release_stock(command: Envelope<ReleaseStock>, ctx: Context) -> Result<(), HandlerError> {
    println!(
        "[{}] inventory  released the stock of {}",
        corr(&ctx),
        command.data.order_id
    );
    Ok(())
}

/// Payments charges a checkout's card: mallory's card is stolen, oscar's bank never answers.
#[handler(group = "payments")]
async fn charge_card(command: Envelope<ChargeCard>, ctx: Context) -> Result<(), HandlerError> {
    let ChargeCard {
        order_id,
        customer,
        amount_cents,
    } = command.data;
    match customer.as_str() {
        "mallory" => {
            println!("[{}] payments   declined {order_id}", corr(&ctx));
            ctx.publish(CardDeclined {
                order_id,
                reason: "card reported stolen".into(),
            })?;
        }
        "oscar" => println!(
            "[{}] payments   no answer from the bank for {order_id}",
            corr(&ctx)
        ),
        _ => {
            println!(
                "[{}] payments   charged {:>6.2} EUR for {order_id}",
                corr(&ctx),
                amount_cents as f64 / 100.0
            );
            ctx.publish(CardCharged { order_id })?;
        }
    }
    Ok(())
}

/// Payments refunds a checkout.
#[handler(group = "payments")]
async fn refund_card(command: Envelope<RefundCard>, ctx: Context) -> Result<(), HandlerError> {
    println!(
        "[{}] payments   refunded {:>6.2} EUR for {}",
        corr(&ctx),
        command.data.amount_cents as f64 / 100.0,
        command.data.order_id
    );
    Ok(())
}

/// Shipping books a carrier, except to Atlantis.
#[handler(group = "shipping")]
async fn book_shipment(command: Envelope<BookShipment>, ctx: Context) -> Result<(), HandlerError> {
    let BookShipment { order_id, address } = command.data;
    if address == "Atlantis" {
        println!(
            "[{}] shipping   no carrier goes to {address} for {order_id}",
            corr(&ctx)
        );
        ctx.publish(ShipmentRefused {
            order_id,
            reason: format!("no carrier delivers to {address}"),
        })?;
    } else {
        println!("[{}] shipping   booked parcel for {order_id}", corr(&ctx));
        ctx.publish(ShipmentBooked {
            order_id,
            carrier: "parcel".into(),
        })?;
    }
    Ok(())
}

fn checkout(
    id: &str,
    customer: &str,
    total_cents: u64,
    address: &str,
) -> Envelope<CheckoutRequested> {
    Envelope::event(CheckoutRequested {
        order_id: id.into(),
        customer: customer.into(),
        lines: vec![Line {
            sku: "mug".into(),
            quantity: 1,
        }],
        total_cents,
        address: address.into(),
    })
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
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("serve") {
        return serve(&args[1..]).await;
    }
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

/// The shop's consumers, as instance `instance` of the service: the choreography's handlers
/// and the checkout saga with its participants.
fn register<T: Transport>(app: &mut App<T>, instance: &str, catalog: Catalog) {
    app.instance(instance)
        .partitions(4)
        .with_state(catalog)
        .register(charge)
        .register(reserve)
        .register(ship)
        .register(hold_stock)
        .register(release_stock)
        .register(charge_card)
        .register(refund_card)
        .register(book_shipment)
        .saga::<Orchestrated<Checkout>>();
}

/// The groups of the shop's choreography, whose partitions instances share.
const GROUPS: [&str; 3] = ["payments", "inventory", "shipping"];

/// `quickstart serve <instance> [--orders N] [--for SECONDS]`: the shop's consumers as one
/// instance of the service, beside others started the same way: they share every group's
/// partitions (and the checkout saga's), and each order is handled once by one of them. With
/// `--orders`, it also places N orders and N checkouts, spread over the first half of its run.
/// The instances meet on NATS JetStream with `EVT_NATS_URL` (namespace `EVT_QUICKSTART_PREFIX`,
/// default `quickstart_serve`) or in one SQLite file (`EVT_QUICKSTART_DB`, default
/// `target/quickstart-serve.db`), which also keeps the stores; the log is not reset.
async fn serve(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let usage = "usage: quickstart serve <instance> [--orders N] [--for SECONDS]";
    let instance = args.first().ok_or(usage)?.clone();
    let (mut orders, mut run_for) = (0u32, Duration::from_secs(10));
    for pair in args[1..].chunks(2) {
        match pair {
            [flag, value] if flag == "--orders" => orders = value.parse()?,
            [flag, value] if flag == "--for" => {
                run_for = Duration::try_from_secs_f64(value.parse()?)
                    .map_err(|_| format!("--for {value}: not a number of seconds"))?;
            }
            _ => return Err(usage.into()),
        }
    }
    let db = match std::env::var("EVT_QUICKSTART_DB") {
        Ok(path) => std::path::PathBuf::from(path),
        Err(_) => {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/quickstart-serve.db")
        }
    };
    let catalog = Catalog(Arc::new(Mutex::new(
        ["mug", "teapot", "kettle"]
            .into_iter()
            .map(String::from)
            .collect(),
    )));
    match std::env::var("EVT_NATS_URL") {
        Ok(url) => {
            let mut config = event_nats::NatsConfig::new(url);
            config.prefix = std::env::var("EVT_QUICKSTART_PREFIX")
                .unwrap_or_else(|_| "quickstart_serve".into());
            let transport = event_nats::NatsTransport::connect(config).await?;
            let file = SqliteTransport::open(&db).await?;
            let mut app = App::new(transport, Stores::sqlite(&file));
            register(&mut app, &instance, catalog);
            serving(app, &instance, orders, run_for).await
        }
        Err(_) => {
            let mut app = App::embedded(&db).await?;
            register(&mut app, &instance, catalog);
            serving(app, &instance, orders, run_for).await
        }
    }
}

async fn serving<T: Transport>(
    mut app: App<T>,
    instance: &str,
    orders: u32,
    run_for: Duration,
) -> Result<(), Box<dyn std::error::Error>> {
    app.with_state(Serving(instance.to_owned()));
    let running = app.start().await?;
    let publisher = running.publisher();
    // Ids unique to this run (the log and the stores are not reset between runs).
    let run = format!(
        "{instance}-{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis()
    );
    let (me, pace) = (run.clone(), run_for / 2 / orders.max(1));
    let placing = tokio::spawn(async move {
        for n in 0..orders {
            let id = format!("{me}-{n}");
            publisher
                .publish(order(&format!("o-{id}"), "ada", &[("mug", 1)], 1_240))
                .await?;
            publisher
                .publish(checkout(&format!("c-{id}"), "ada", 1_240, "Lyon"))
                .await?;
            tokio::time::sleep(pace).await;
        }
        Ok::<(), event_runtime::app::PublishError>(())
    });
    // What it owns, printed when it changes: `group: topic[partitions] ...` (a group reads the
    // topics of every message type it handles).
    let mut owned = String::new();
    let deadline = tokio::time::Instant::now() + run_for;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now: Vec<String> = GROUPS
            .iter()
            .map(|group| {
                let mut by_topic: std::collections::BTreeMap<String, Vec<u32>> = Default::default();
                for (topic, partition) in running.owned(group) {
                    by_topic.entry(topic).or_default().push(partition);
                }
                let topics: Vec<String> = by_topic
                    .iter()
                    .map(|(topic, partitions)| format!("{topic}{partitions:?}"))
                    .collect();
                format!("{group}: {}", topics.join(" "))
            })
            .collect();
        let now = now.join("; ");
        if now != owned {
            println!("[{instance}] owns {now}");
            owned = now;
        }
    }
    placing.await??;
    // Its checkouts end whichever instance ran their steps: their state is in the shared
    // stores. Each completes, or fails with its compensations done when a step's answer came
    // later than the step's timeout (a loaded machine).
    if orders > 0 {
        let sagas = running.sagas().expect("the stores are SQL");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let (mut finished, mut completed) = (0, 0);
            for n in 0..orders {
                let key = format!("c-{run}-{n}");
                if let Some(saga) = sagas.instance("checkout", &key).await?
                    && saga.status.is_finished()
                {
                    finished += 1;
                    completed += u32::from(saga.status == event_runtime::saga::Status::Completed);
                }
            }
            if finished == orders || tokio::time::Instant::now() > deadline {
                println!(
                    "[{instance}] {finished} of its {orders} checkouts ended: {completed} completed, \
                     {} failed and compensated",
                    finished - completed
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let handled: Vec<String> = GROUPS
        .iter()
        .map(|group| {
            let handled = running.stats(group).map_or(0, |s| s.handled);
            format!("{group} {handled}")
        })
        .collect();
    running.stop().await;
    println!("[{instance}] done: handled {}", handled.join(", "));
    Ok(())
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
    register(&mut app, "shop-1", catalog.clone());
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
    // Outside an HTTP request, an event's correlation id is its own id: the end of the run
    // draws this order's causal tree by it.
    let gift_card = order("o-1003", "linus", &[("gift-card", 1)], 5_000);
    let gift_card_flow = gift_card.id.to_string();
    publisher.publish(gift_card).await?;

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

    println!("\n== the same steps orchestrated: a checkout saga with compensations");
    let checkouts = [
        checkout("c-2001", "ada", 1_240, "Lyon"),
        checkout("c-2002", "mallory", 990, "Oslo"),
        checkout("c-2003", "oscar", 3_100, "Porto"),
        checkout("c-2004", "nemo", 3_990, "Atlantis"),
    ];
    let refused_flow = checkouts[3].id.to_string();
    for request in checkouts {
        publisher.publish(request).await?;
    }
    let sagas = running.sagas().expect("the stores are SQL");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let finished = loop {
        let all = sagas.list(Some("checkout"), None, 10).await?;
        if all.len() == 4 && all.iter().all(|i| i.status.is_finished()) {
            break all;
        }
        if std::time::Instant::now() > deadline {
            return Err("the checkouts did not finish within 15 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for instance in &finished {
        println!(
            "   saga checkout {} {} after {} transitions{}",
            instance.key,
            instance.status.as_str(),
            instance.version,
            instance
                .reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        );
    }
    if !running.wait_idle(Duration::from_secs(10)).await {
        return Err("the compensations did not finish within 10 s".into());
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
    let mut behind: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    for lag in running.lag().await?.iter().filter(|l| l.end > 0) {
        let group = behind.entry(lag.group.clone()).or_default();
        group.0 += lag.lag();
        group.1 += lag.end;
    }
    for (group, (lag, records)) in behind {
        println!("   group {group:<13} {lag} of {records} record(s) behind");
    }
    // The causal trees, from the app's own records (the log, the groups' positions, the
    // dead letters, the saga tables): what `evt trace <correlation-id>` prints.
    for (what, flow) in [
        (
            "order o-1003 (dead-lettered, then redriven)",
            &gift_card_flow,
        ),
        ("checkout c-2004 (compensated)", &refused_flow),
    ] {
        println!("\n== the causal tree of {what}");
        running
            .trace(flow)
            .await?
            .write_text(&mut std::io::stdout().lock())?;
    }
    println!(
        "\ninspect the log: cargo run -p evt-cli -- dlq list --db {}",
        db.display()
    );
    println!(
        "one flow:        cargo run -p evt-cli -- trace {refused_flow} --db {}",
        db.display()
    );
    println!(
        "and the sagas:   cargo run -p evt-cli -- saga show checkout c-2004 --db {}",
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
