//! Several instances of one service: run this binary twice (or more) at once, and the instances
//! share the `billing` group's partitions. Each prints the orders it bills, and at the end the
//! partitions it owned and how many it billed.
//!
//! ```sh
//! cargo run -p event-examples --bin instances -- one --publish 200 &
//! cargo run -p event-examples --bin instances -- two
//! ```
//!
//! The instances meet in one SQLite file (`target/instances.db`, or `EVT_INSTANCES_DB`), or on
//! NATS JetStream with `EVT_NATS_URL` (stores in that file). `--for <seconds>` sets how long an
//! instance runs (default 8). See docs/delivery.md, "Running several instances".

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use event_runtime::transport::Transport;
use event_runtime::transport::sqlite::SqliteTransport;
use event_runtime::{App, Context, DomainEvent, Envelope, HandlerError, Stores};
use serde::{Deserialize, Serialize};

/// A customer placed an order.
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone)]
#[event(context = "orders")]
struct OrderPlaced {
    #[event(key)]
    order_id: String,
}

type Error = Box<dyn std::error::Error>;

struct Args {
    instance: String,
    publish: u32,
    run_for: Duration,
}

fn args() -> Result<Args, Error> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: instances <instance-id> [--publish N] [--for SECONDS]";
    let instance = args.next().ok_or(usage)?;
    let (mut publish, mut run_for) = (0, Duration::from_secs(8));
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(usage)?;
        match flag.as_str() {
            "--publish" => publish = value.parse()?,
            "--for" => run_for = Duration::from_secs_f64(value.parse()?),
            _ => return Err(usage.into()),
        }
    }
    Ok(Args {
        instance,
        publish,
        run_for,
    })
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args = args()?;
    let db = match std::env::var("EVT_INSTANCES_DB") {
        Ok(path) => std::path::PathBuf::from(path),
        Err(_) => std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/instances.db"),
    };
    let file = SqliteTransport::open(&db).await?;
    match std::env::var("EVT_NATS_URL") {
        Ok(url) => {
            let mut config = event_nats::NatsConfig::new(url);
            config.prefix = "instances".into();
            let transport = event_nats::NatsTransport::connect(config).await?;
            run(App::new(transport, Stores::sqlite(&file)), &args).await
        }
        Err(_) => run(App::embedded(&db).await?, &args).await,
    }
}

async fn run<T: Transport>(mut app: App<T>, args: &Args) -> Result<(), Error> {
    let billed = Arc::new(AtomicU64::new(0));
    let (count, me) = (billed.clone(), args.instance.clone());
    app.instance(&args.instance)
        .partitions(6)
        .subscribe::<OrderPlaced, _>(
            "billing",
            move |event: Envelope<OrderPlaced>, _ctx: Context| {
                let (count, me) = (count.clone(), me.clone());
                async move {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    count.fetch_add(1, Ordering::Relaxed);
                    println!("[{me}] billed {}", event.data.order_id);
                    Ok::<(), HandlerError>(())
                }
            },
        );
    let running = app.start().await?;
    // The orders, spread over the first half of the run, so that instances started meanwhile
    // get their share.
    let publisher = running.publisher();
    let (count, pace) = (args.publish, args.run_for / 2 / args.publish.max(1));
    let publishing = tokio::spawn(async move {
        for n in 0..count {
            let order = Envelope::event(OrderPlaced {
                order_id: format!("o-{n}"),
            });
            publisher.publish(order).await?;
            tokio::time::sleep(pace).await;
        }
        Ok::<(), event_runtime::app::PublishError>(())
    });
    let mut owned = Vec::new();
    let deadline = tokio::time::Instant::now() + args.run_for;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now: Vec<u32> = running.owned("billing").iter().map(|(_, p)| *p).collect();
        if now != owned {
            println!(
                "[{}] owns partitions {now:?} of the members {:?}",
                args.instance,
                running.members("billing")
            );
            owned = now;
        }
    }
    publishing.await??;
    running.stop().await;
    println!(
        "[{}] done: billed {}",
        args.instance,
        billed.load(Ordering::Relaxed)
    );
    Ok(())
}
