//! Several instances of one service, on every engine this machine runs: handler-bound
//! throughput with 1, 2 and 4 instances (the ratio to one instance in the same run; goals: at
//! least 0.9 x N for N = 2 and 0.8 x N for N = 4), and the failover time after an instance
//! dies (p50 and p99 over 5 deaths).
//!
//! Each instance has the capacity a real one has: its handler takes one of `PERMITS` permits
//! (its connection pool, say) and awaits 5 ms, so one instance handles at most
//! `PERMITS / 5 ms` events per second and more instances can only go faster by sharing the
//! partitions. The instances are apps in this process on one engine (a new namespace per run).
//! An instance "dies" by being dropped without stopping: its claims stay until they lapse, as a
//! SIGKILLed process's do (`tests/tests/crash.rs` kills processes; here the timing is the
//! point). On Kafka a dropped app's member client leaves its group as it closes, which is not a
//! crash, so there the dying instance is a process of its own (`src/bin/bench_member.rs`), which
//! is SIGKILLed: on tansu, where a death whose partitions do not move within 60 s is counted
//! apart (tansu 0.6's coordinator sometimes keeps dealing them to the dead member), and on
//! librdkafka's mock cluster (hosted here).
//!
//! `cargo bench -p event-tests --bench instances` (or `scripts/bench.sh instances`, which starts
//! NATS and Kafka). Prints; fails only when an engine never settles or drains.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use event_bench_support::env_or;
use event_runtime::app::Running;
use event_runtime::transport::Transport;
use event_runtime::transport::memory::MemoryTransport;
use event_runtime::{App, Envelope, Stores};
use event_tests::billing::{self, KEYS, Order, PARTITIONS, PERMITS, WORK};

/// One engine: a fresh namespace per call of `app`'s maker.
#[derive(Clone)]
enum Engine {
    Memory(MemoryTransport),
    Sqlite(std::path::PathBuf),
    Nats(String, String),
    Kafka(String, String),
}

/// What handlers record: events handled, and the time each partition was last handled.
#[derive(Default)]
struct Tally {
    handled: AtomicU64,
    /// Per partition, the first time it was handled since `mark`.
    since_mark: Mutex<Vec<Option<Instant>>>,
}

impl Tally {
    fn mark(&self) {
        *self.since_mark.lock().unwrap() = vec![None; PARTITIONS as usize];
    }
}

async fn instance(
    engine: &Engine,
    id: &str,
    tally: &Arc<Tally>,
    claim_ttl: Duration,
) -> Box<dyn Instance> {
    fn wire<T: Transport>(
        app: App<T>,
        id: &str,
        tally: &Arc<Tally>,
        claim_ttl: Duration,
    ) -> App<T> {
        let tally = tally.clone();
        billing::wire(app, id, claim_ttl, move |partition| {
            tally.handled.fetch_add(1, Ordering::Relaxed);
            if let Some(slot) = tally.since_mark.lock().unwrap().get_mut(partition as usize) {
                slot.get_or_insert_with(Instant::now);
            }
        })
    }
    match engine {
        Engine::Memory(t) => {
            let app = App::new(t.clone(), Stores::in_memory().await.unwrap());
            Box::new(wire(app, id, tally, claim_ttl).start().await.unwrap())
        }
        Engine::Sqlite(path) => {
            let app = App::embedded(path).await.unwrap();
            Box::new(wire(app, id, tally, claim_ttl).start().await.unwrap())
        }
        Engine::Nats(url, prefix) => {
            let t =
                event_nats::NatsTransport::connect(event_nats::NatsConfig::new(url).prefix(prefix))
                    .await
                    .unwrap();
            let app = App::new(t, Stores::in_memory().await.unwrap());
            Box::new(wire(app, id, tally, claim_ttl).start().await.unwrap())
        }
        Engine::Kafka(servers, prefix) => {
            let config = event_kafka::KafkaConfig::new(servers)
                .prefix(prefix)
                .client_option("batch.num.messages", "1");
            let t = event_kafka::KafkaTransport::connect(config).unwrap();
            let app = App::new(t, Stores::in_memory().await.unwrap());
            Box::new(wire(app, id, tally, claim_ttl).start().await.unwrap())
        }
    }
}

type Pending<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>>;

/// A running instance, whatever its engine.
trait Instance: Send + Sync {
    fn owned(&self) -> Vec<u32>;
    fn publish(&self, orders: Vec<Envelope<Order>>) -> Pending<'_>;
}

impl<T: Transport> Instance for Running<T> {
    fn owned(&self) -> Vec<u32> {
        self.owned("billing").into_iter().map(|(_, p)| p).collect()
    }

    fn publish(&self, orders: Vec<Envelope<Order>>) -> Pending<'_> {
        Box::pin(async move {
            for chunk in orders.chunks(100) {
                self.publisher().publish_all(chunk.to_vec()).await.unwrap();
            }
        })
    }
}

fn orders(from: u64, n: u64) -> Vec<Envelope<Order>> {
    (from..from + n)
        .map(|i| {
            Envelope::event(Order {
                order_id: format!("o-{}", i % KEYS),
            })
        })
        .collect()
}

/// Waits until the instances own disjoint shares covering every partition.
async fn settled(instances: &[Box<dyn Instance>]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let shares: Vec<Vec<u32>> = instances.iter().map(|i| i.owned()).collect();
        let all: BTreeSet<u32> = shares.iter().flatten().copied().collect();
        let total: usize = shares.iter().map(Vec::len).sum();
        if total == PARTITIONS as usize
            && all.len() == total
            && shares.iter().all(|s| !s.is_empty())
        {
            return;
        }
        assert!(Instant::now() < deadline, "never settled: {shares:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Events per second with `n` instances on a fresh namespace of `fresh`.
async fn throughput(fresh: &dyn Fn() -> Engine, n: usize, events: u64, ttl: Duration) -> f64 {
    let engine = fresh();
    let tally = Arc::new(Tally::default());
    let mut instances = Vec::new();
    for i in 0..n {
        instances.push(instance(&engine, &format!("inst-{i}"), &tally, ttl).await);
    }
    settled(&instances).await;
    let start = Instant::now();
    instances[0].publish(orders(0, events)).await;
    while tally.handled.load(Ordering::Relaxed) < events {
        assert!(start.elapsed() < Duration::from_secs(300), "did not drain");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    events as f64 / start.elapsed().as_secs_f64()
}

/// Seconds from an instance's death until every partition it owned is handled again, over
/// `deaths` deaths: two instances under a steady load, one dropped.
async fn failovers(fresh: &dyn Fn() -> Engine, deaths: usize, ttl: Duration) -> Vec<f64> {
    let mut out = Vec::new();
    for round in 0..deaths {
        let engine = fresh();
        let tally = Arc::new(Tally::default());
        let survivor = instance(&engine, "survivor", &tally, ttl).await;
        let victim = instance(&engine, &format!("victim-{round}"), &tally, ttl).await;
        let both = [survivor, victim];
        settled(&both).await;
        let [survivor, victim] = both;
        let lost = victim.owned();
        let moved = after_death(survivor, &tally, &lost, || drop(victim)).await;
        out.push(moved.expect("no failover within 60 s").as_secs_f64());
    }
    out
}

/// Under a steady load on every key, published by `survivor`, runs `die` and times until
/// every partition of `lost` is handled again (`None`: not within 60 s). The survivor is
/// dropped before it returns, while the runtime runs (a Kafka member's revocation waits for
/// it).
async fn after_death(
    survivor: Box<dyn Instance>,
    tally: &Arc<Tally>,
    lost: &[u32],
    die: impl FnOnce(),
) -> Option<Duration> {
    let load = tokio::spawn(async move {
        let mut from = 0;
        loop {
            survivor.publish(orders(from, KEYS)).await;
            from += KEYS;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    tally.mark();
    die();
    let died = Instant::now();
    let moved = loop {
        let seen = tally.since_mark.lock().unwrap().clone();
        if lost.iter().all(|p| seen[*p as usize].is_some()) {
            break lost
                .iter()
                .map(|p| seen[*p as usize].unwrap().duration_since(died))
                .max();
        }
        if died.elapsed() > Duration::from_secs(60) {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    load.abort();
    if let Err(err) = load.await
        && err.is_panic()
    {
        std::panic::resume_unwind(err.into_panic());
    }
    moved
}

/// A `bench_member` process (`src/bin/bench_member.rs`), SIGKILLed when dropped.
struct Member(std::process::Child);

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Seconds from the SIGKILL of an instance's process until every partition it owned is handled
/// again, over `deaths` deaths, on the Kafka broker at `bootstrap` (`config` makes its
/// settings, the topic's creation included), with a survivor in this process and the victim in
/// a process of its own, under a steady load. `None` for a death whose partitions were not
/// handled again within 60 s.
async fn kafka_failovers(
    bootstrap: &str,
    config: &dyn Fn() -> event_kafka::KafkaConfig,
    deaths: usize,
    ttl: Duration,
) -> Vec<Option<f64>> {
    let mut out = Vec::new();
    for round in 0..deaths {
        let prefix = format!("benchkill{round}x{}", uuid::Uuid::now_v7().simple());
        event_kafka::KafkaTransport::connect(config().prefix(&prefix))
            .unwrap()
            .ensure_topic("bench_orders", PARTITIONS)
            .await
            .unwrap();
        let engine = Engine::Kafka(bootstrap.to_owned(), prefix.clone());
        let tally = Arc::new(Tally::default());
        let survivor = instance(&engine, "survivor", &tally, ttl).await;
        let victim = Member(
            std::process::Command::new(env!("CARGO_BIN_EXE_bench_member"))
                .env("BENCH_KAFKA_BOOTSTRAP", bootstrap)
                .env("BENCH_PREFIX", &prefix)
                .env("BENCH_INSTANCE", format!("victim-{round}"))
                .env("BENCH_CLAIM_TTL_MS", ttl.as_millis().to_string())
                // It exits when its stdin closes: with this process, however it ends.
                .stdin(std::process::Stdio::piped())
                .spawn()
                .expect("the member starts"),
        );
        // Settled: the survivor kept a share, unchanged for 4 s (longer than the coordinator's
        // 3 s rebalance delay), so the victim was dealt the rest.
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut kept: (Vec<u32>, Instant) = (survivor.owned(), Instant::now());
        loop {
            let now = survivor.owned();
            if now != kept.0 {
                kept = (now, Instant::now());
            } else if (1..PARTITIONS as usize).contains(&kept.0.len())
                && kept.1.elapsed() > Duration::from_secs(4)
            {
                break;
            }
            assert!(Instant::now() < deadline, "never shared: {:?}", kept.0);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let lost: Vec<u32> = (0..PARTITIONS).filter(|p| !kept.0.contains(p)).collect();
        let moved = after_death(survivor, &tally, &lost, || drop(victim)).await;
        out.push(moved.map(|d| d.as_secs_f64()));
    }
    out
}

fn print_kafka_failovers(session: Duration, deaths: &[Option<f64>]) {
    let moved: Vec<f64> = deaths.iter().flatten().copied().collect();
    let stuck = deaths.len() - moved.len();
    if moved.is_empty() {
        println!("   failover after a SIGKILL, session {session:?}: none within 60 s");
        return;
    }
    println!(
        "   failover after a SIGKILL, session {session:?}: p50 {:.2} s, p99 {:.2} s ({moved:.2?}){}",
        percentile(&moved, 0.5),
        percentile(&moved, 0.99),
        if stuck > 0 {
            format!("; {stuck} of {} not within 60 s", deaths.len())
        } else {
            String::new()
        }
    );
}

fn percentile(values: &[f64], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn report(name: &str, fresh: &dyn Fn() -> Engine, ttl: Duration, crash: bool) {
    let events = env_or("EVT_BENCH_EVENTS", 3_000) as u64;
    println!(
        "== {name} ({events} events, {PARTITIONS} partitions, {PERMITS} permits x {WORK:?} per instance)"
    );
    let one = throughput(fresh, 1, events, ttl).await;
    println!("   1 instance : {one:8.0} events/s");
    for n in [2usize, 4] {
        let rate = throughput(fresh, n, events, ttl).await;
        let goal = if n == 2 { 0.9 } else { 0.8 } * n as f64;
        println!(
            "   {n} instances: {rate:8.0} events/s = {:.2}x one instance (goal >= {goal:.1}x)",
            rate / one
        );
    }
    if crash {
        let deaths = failovers(fresh, 5, ttl).await;
        println!(
            "   failover after a death, claim_ttl {ttl:?}: p50 {:.2} s, p99 {:.2} s ({deaths:.2?})",
            percentile(&deaths, 0.5),
            percentile(&deaths, 0.99),
        );
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let ttl = Duration::from_secs(1);
        report(
            "memory",
            &|| Engine::Memory(MemoryTransport::new()),
            ttl,
            true,
        )
        .await;
        let dir = std::env::temp_dir().join(format!("evt-bench-instances-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let counter = AtomicU64::new(0);
        let sqlite = || {
            let n = counter.fetch_add(1, Ordering::Relaxed);
            Engine::Sqlite(dir.join(format!("run-{n}.db")))
        };
        report("SQLite (one file)", &sqlite, ttl, true).await;
        let _ = std::fs::remove_dir_all(&dir);
        let prefix = || format!("bench{}", uuid::Uuid::now_v7().simple());
        match std::env::var("EVT_NATS_URL") {
            Ok(url) => {
                let nats = || Engine::Nats(url.clone(), prefix());
                report("NATS JetStream", &nats, ttl, true).await;
            }
            Err(_) => println!("== NATS: skipped (no EVT_NATS_URL)"),
        }
        match std::env::var("EVT_KAFKA_BOOTSTRAP") {
            Ok(servers) => {
                let kafka = || Engine::Kafka(servers.clone(), prefix());
                // Sessions of 6 s: tansu holds a rejoining member for 3 s.
                let ttl = Duration::from_secs(6);
                report("Kafka (tansu)", &kafka, ttl, false).await;
                let config = || event_kafka::KafkaConfig::new(servers.clone());
                let deaths = kafka_failovers(&servers, &config, 5, ttl).await;
                print_kafka_failovers(ttl, &deaths);
            }
            Err(_) => println!("== Kafka: skipped (no EVT_KAFKA_BOOTSTRAP)"),
        }
        // Sessions of 4 s: the mock coordinator holds a group's members for 3 s before it
        // deals the partitions, and times out a member whose session is shorter. Its topics are
        // made through its own API (it does not answer `CreateTopics`).
        let cluster = event_kafka::mock::MockKafka::start(1);
        let ttl = Duration::from_secs(4);
        let deaths =
            kafka_failovers(cluster.bootstrap_servers(), &|| cluster.config(), 5, ttl).await;
        println!("== Kafka (librdkafka's mock cluster)");
        print_kafka_failovers(ttl, &deaths);
    });
    // Instances that died without stopping (the failovers' victims, the rounds' survivors)
    // leave blocking tasks behind, which dropping the runtime would wait for.
    runtime.shutdown_timeout(Duration::from_secs(5));
}
