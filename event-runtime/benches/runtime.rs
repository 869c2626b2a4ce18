//! Runtime throughput and latency, each against a baseline measured in the same run.
//!
//! - In-memory engine, publish -> handler, vs a tokio mpsc channel carrying the same events
//!   (as structs, and as JSON bytes decoded by the receiver); p50/p99 publish-to-handler latency.
//! - SQLite engine: batched publish, and consume with the dedupe store, in events/s.
//!
//! Run with `cargo bench -p event-runtime --bench runtime` (`EVT_BENCH_ONLY=sqlite`: the SQLite
//! part alone, e.g. under a profiler). Timings are printed, never asserted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use event_runtime::{App, Context, DomainEvent, Envelope, HandlerError};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, Notify};

/// A small order event; `sent_ns` carries the publish time for latency.
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone)]
#[event(context = "bench")]
struct Ordered {
    #[event(key)]
    order_id: String,
    customer: String,
    total_cents: u64,
    sent_ns: u64,
}

const EVENTS: u64 = 20_000;

fn event(i: u64, start: Instant) -> Ordered {
    Ordered {
        order_id: format!("o-{}", i % 64),
        customer: "customer-42".into(),
        total_cents: 1999 + i,
        sent_ns: start.elapsed().as_nanos() as u64,
    }
}

struct Run {
    seconds: f64,
    latencies_ns: Vec<u64>,
}

impl Run {
    fn rate(&self) -> f64 {
        self.latencies_ns.len() as f64 / self.seconds
    }
    fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.latencies_ns.clone();
        sorted.sort_unstable();
        let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        Duration::from_nanos(sorted.get(index).copied().unwrap_or(0))
    }
}

/// Events sent one per millisecond in the latency runs (a steady, unsaturated load).
const PACED: u64 = 1_000;

async fn channel_paced() -> Run {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Ordered>(1024);
    let start = Instant::now();
    let consumer = tokio::spawn(async move {
        let mut latencies = Vec::with_capacity(PACED as usize);
        while let Some(event) = rx.recv().await {
            latencies.push(start.elapsed().as_nanos() as u64 - event.sent_ns);
        }
        latencies
    });
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    for i in 0..PACED {
        tick.tick().await;
        tx.send(event(i, start)).await.unwrap();
    }
    drop(tx);
    let latencies_ns = consumer.await.unwrap();
    Run {
        seconds: start.elapsed().as_secs_f64(),
        latencies_ns,
    }
}

async fn channel_structs() -> Run {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Ordered>(1024);
    let start = Instant::now();
    let consumer = tokio::spawn(async move {
        let mut latencies = Vec::with_capacity(EVENTS as usize);
        while let Some(event) = rx.recv().await {
            latencies.push(start.elapsed().as_nanos() as u64 - event.sent_ns);
        }
        latencies
    });
    for i in 0..EVENTS {
        tx.send(event(i, start)).await.unwrap();
    }
    drop(tx);
    let latencies_ns = consumer.await.unwrap();
    Run {
        seconds: start.elapsed().as_secs_f64(),
        latencies_ns,
    }
}

async fn channel_json() -> Run {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(1024);
    let start = Instant::now();
    let consumer = tokio::spawn(async move {
        let mut latencies = Vec::with_capacity(EVENTS as usize);
        while let Some(bytes) = rx.recv().await {
            let event: Ordered = serde_json::from_slice(&bytes).unwrap();
            latencies.push(start.elapsed().as_nanos() as u64 - event.sent_ns);
        }
        latencies
    });
    for i in 0..EVENTS {
        tx.send(serde_json::to_vec(&event(i, start)).unwrap())
            .await
            .unwrap();
    }
    drop(tx);
    let latencies_ns = consumer.await.unwrap();
    Run {
        seconds: start.elapsed().as_secs_f64(),
        latencies_ns,
    }
}

async fn framework_in_memory() -> Run {
    run_framework(EVENTS, None).await
}

async fn run_framework(events: u64, pace: Option<Duration>) -> Run {
    let mut app = App::in_memory().await.unwrap();
    let start = Instant::now();
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(events as usize)));
    let handled = Arc::new(AtomicU64::new(0));
    let done = Arc::new(Notify::new());
    let (sink, count, signal) = (latencies.clone(), handled.clone(), done.clone());
    app.partitions(4).subscribe::<Ordered, _>(
        "bench",
        move |event: Envelope<Ordered>, _ctx: Context| {
            let (sink, count, signal) = (sink.clone(), count.clone(), signal.clone());
            async move {
                let latency = start.elapsed().as_nanos() as u64 - event.data.sent_ns;
                sink.lock().await.push(latency);
                if count.fetch_add(1, Ordering::SeqCst) + 1 == events {
                    signal.notify_one();
                }
                Ok::<(), HandlerError>(())
            }
        },
    );
    let running = app.start().await.unwrap();
    let publisher = running.publisher();
    let start_run = Instant::now();
    let waiter = done.notified();
    tokio::pin!(waiter);
    waiter.as_mut().enable();
    let mut tick = tokio::time::interval(pace.unwrap_or(Duration::from_millis(1)));
    for i in 0..events {
        if pace.is_some() {
            tick.tick().await;
        }
        publisher
            .publish(Envelope::event(event(i, start)))
            .await
            .unwrap();
    }
    waiter.await;
    let seconds = start_run.elapsed().as_secs_f64();
    running.stop().await;
    let latencies_ns = std::mem::take(&mut *latencies.lock().await);
    Run {
        seconds,
        latencies_ns,
    }
}

async fn sqlite_rates() -> (f64, f64) {
    let dir = std::env::temp_dir().join(format!("evt-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("bench.db");
    let _ = std::fs::remove_file(&db);
    let mut app = App::embedded(&db).await.unwrap();
    let handled = Arc::new(AtomicU64::new(0));
    let count = handled.clone();
    app.partitions(4).subscribe::<Ordered, _>(
        "bench",
        move |_event: Envelope<Ordered>, _ctx: Context| {
            let count = count.clone();
            async move {
                count.fetch_add(1, Ordering::SeqCst);
                Ok::<(), HandlerError>(())
            }
        },
    );
    let publisher = app.publisher();
    let start = Instant::now();
    let events: Vec<Envelope<Ordered>> = (0..EVENTS)
        .map(|i| Envelope::event(event(i, start)))
        .collect();
    let publish_start = Instant::now();
    for chunk in events.chunks(500) {
        publisher.publish_all(chunk.to_vec()).await.unwrap();
    }
    let publish_rate = EVENTS as f64 / publish_start.elapsed().as_secs_f64();
    let consume_start = Instant::now();
    let running = app.start().await.unwrap();
    while handled.load(Ordering::SeqCst) < EVENTS {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let consume_rate = EVENTS as f64 / consume_start.elapsed().as_secs_f64();
    running.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    (publish_rate, consume_rate)
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cpu}, {cores} cores")
}

/// Under callgrind (`scripts/bench.sh callgrind`): `EVT_CALLGRIND=<engine|mpsc>:<events>` runs
/// only that many events through the in-memory engine (or the mpsc baseline) on a
/// current-thread runtime, so that instruction counts repeat exactly; the script runs two
/// counts and divides the difference, which leaves out start-up.
fn callgrind_run(spec: &str) {
    let (what, events) = spec
        .split_once(':')
        .expect("EVT_CALLGRIND is <engine|mpsc>:<events>");
    let events: u64 = events.parse().expect("a number of events");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let handled = runtime.block_on(async {
        match what {
            "engine" => run_framework(events, None).await.latencies_ns.len(),
            "mpsc" => {
                let (tx, mut rx) = tokio::sync::mpsc::channel::<Ordered>(1024);
                let start = Instant::now();
                let consumer = tokio::spawn(async move {
                    let mut count = 0usize;
                    while let Some(event) = rx.recv().await {
                        std::hint::black_box(event);
                        count += 1;
                    }
                    count
                });
                for i in 0..events {
                    tx.send(event(i, start)).await.unwrap();
                }
                drop(tx);
                consumer.await.unwrap()
            }
            other => panic!("EVT_CALLGRIND: unknown run `{other}` (engine, mpsc)"),
        }
    });
    assert_eq!(handled as u64, events, "every event handled");
}

fn main() {
    if let Ok(spec) = std::env::var("EVT_CALLGRIND") {
        callgrind_run(&spec);
        return;
    }
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing we need.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // `EVT_BENCH_ONLY=sqlite`: only the SQLite part (to profile it alone).
    let only_sqlite = std::env::var("EVT_BENCH_ONLY").is_ok_and(|part| part == "sqlite");
    runtime.block_on(async {
        println!("machine: {}", machine());
        println!("{EVENTS} events per run\n");
        if !only_sqlite {
            in_memory().await;
        }
        let (publish, consume) = sqlite_rates().await;
        println!(
            "\nSQLite engine: batched publish {publish:.0} events/s, consume with dedupe {consume:.0} events/s = {:.2}x of publish (goal >= 0.8x)",
            consume / publish
        );
    });
}

/// The in-memory engine against tokio channels, saturated and paced.
async fn in_memory() {
    let channel = channel_structs().await;
    let channel_json = channel_json().await;
    let framework = framework_in_memory().await;
    let line = |name: &str, run: &Run| {
        println!(
            "{name:<42} {:>10.0} events/s   p50 {:>9.1?}   p99 {:>9.1?}",
            run.rate(),
            run.percentile(0.50),
            run.percentile(0.99)
        );
    };
    line("tokio mpsc, structs (baseline)", &channel);
    line("tokio mpsc, JSON bytes decoded (baseline)", &channel_json);
    line("in-memory engine, publish -> handler", &framework);
    println!("\nlatency at a steady 1000 events/s (not saturated):");
    line("tokio mpsc, structs (baseline)", &channel_paced().await);
    line(
        "in-memory engine, publish -> handler",
        &run_framework(PACED, Some(Duration::from_millis(1))).await,
    );
    println!(
        "\nratio vs mpsc structs: {:.3}x   vs mpsc JSON: {:.3}x   (goal >= 0.5x of the channel: {})",
        framework.rate() / channel.rate(),
        framework.rate() / channel_json.rate(),
        if framework.rate() / channel.rate() >= 0.5 {
            "met"
        } else {
            "not met"
        }
    );
}
