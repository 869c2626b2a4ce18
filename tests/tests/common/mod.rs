//! Helpers shared by the runtime tests (`runtime.rs`, `outbox.rs`, `crash.rs`) and the engine
//! conformance tests (`conformance.rs`): the conformance kit's `Step` event, recording handler
//! and temporary directories, its lookup of the shared servers, and a fault injector around the
//! memory engine (`Flaky`).
#![allow(unused_imports, unreachable_pub, dead_code)] // each test binary uses a part

pub use event_conformance::fixture::{HandlerFuture, Seen, Step, recorder, steps, tempdir};
pub use event_conformance::servers::{postgres_schema, server_url};

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use event_runtime::transport::memory::MemoryTransport;
use event_runtime::transport::{
    OutgoingRecord, Position, Record, Transport, TransportError, TransportErrorKind,
};

/// A fault injector around the memory engine: the next `appends`, `fetches` and `commits` calls
/// (budgets, counted down) fail as an unreachable broker's would; refused appends and appended
/// records are counted. While `stalled` is set, appends wait (an engine slow to answer); while
/// `frozen` is set, they block their thread, so nothing else in their task runs either (a
/// frozen process, for a task on a multi-threaded runtime); both are counted in `stalling`.
#[derive(Clone)]
pub struct Flaky {
    pub inner: MemoryTransport,
    pub appends: Arc<AtomicUsize>,
    pub fetches: Arc<AtomicUsize>,
    pub commits: Arc<AtomicUsize>,
    pub refused: Arc<AtomicUsize>,
    pub appended: Arc<AtomicUsize>,
    pub stalled: Arc<std::sync::atomic::AtomicBool>,
    pub frozen: Arc<std::sync::atomic::AtomicBool>,
    pub stalling: Arc<AtomicUsize>,
}

impl Flaky {
    /// `inner`, refusing its first `appends` appends.
    pub fn new(inner: MemoryTransport, appends: usize) -> Self {
        Flaky {
            inner,
            appends: Arc::new(AtomicUsize::new(appends)),
            fetches: Arc::default(),
            commits: Arc::default(),
            refused: Arc::default(),
            appended: Arc::default(),
            stalled: Arc::default(),
            frozen: Arc::default(),
            stalling: Arc::default(),
        }
    }

    /// Also fails the next `n` fetches.
    pub fn failing_fetches(self, n: usize) -> Self {
        self.fetches.store(n, Ordering::SeqCst);
        self
    }

    /// Also fails the next `n` commits.
    pub fn failing_commits(self, n: usize) -> Self {
        self.commits.store(n, Ordering::SeqCst);
        self
    }
}

/// Takes one failure of `budget`, if any is left.
fn take(budget: &AtomicUsize) -> bool {
    budget
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

fn unreachable(operation: String) -> TransportError {
    TransportError::new(
        TransportErrorKind::Unavailable,
        operation,
        "injected failure: broker unreachable",
    )
}

impl Transport for Flaky {
    async fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<u32, TransportError> {
        self.inner.ensure_topic(topic, partitions).await
    }

    async fn append(
        &self,
        topic: &str,
        records: Vec<OutgoingRecord>,
    ) -> Result<Vec<Position>, TransportError> {
        if take(&self.appends) {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return Err(unreachable(format!("append to {topic}")));
        }
        if self.stalled.load(Ordering::SeqCst) {
            self.stalling.fetch_add(1, Ordering::SeqCst);
            while self.stalled.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            self.stalling.fetch_sub(1, Ordering::SeqCst);
        }
        if self.frozen.load(Ordering::SeqCst) {
            self.stalling.fetch_add(1, Ordering::SeqCst);
            while self.frozen.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(20));
            }
            self.stalling.fetch_sub(1, Ordering::SeqCst);
        }
        let count = records.len();
        let positions = self.inner.append(topic, records).await?;
        self.appended.fetch_add(count, Ordering::SeqCst);
        Ok(positions)
    }

    async fn fetch(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
        max: usize,
    ) -> Result<Vec<Record>, TransportError> {
        if take(&self.fetches) {
            return Err(unreachable(format!("fetch from {topic}")));
        }
        self.inner.fetch(topic, partition, from, max).await
    }

    async fn wait(&self, topic: &str, partition: u32, from: u64, timeout: Duration) {
        self.inner.wait(topic, partition, from, timeout).await;
    }

    async fn committed(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<u64, TransportError> {
        self.inner.committed(group, topic, partition).await
    }

    async fn commit(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        next_offset: u64,
    ) -> Result<(), TransportError> {
        if take(&self.commits) {
            return Err(unreachable(format!("commit on {topic}")));
        }
        self.inner
            .commit(group, topic, partition, next_offset)
            .await
    }

    async fn end_offsets(&self, topic: &str) -> Result<Vec<u64>, TransportError> {
        self.inner.end_offsets(topic).await
    }

    async fn topics(&self) -> Result<Vec<(String, u32)>, TransportError> {
        self.inner.topics().await
    }
}

/// A seed for [`random`], from the clock.
pub fn seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// A pseudo-random number in `0..bound` (SplitMix64 over a seed from [`seed`]).
pub fn random(state: &mut u64, bound: u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) % bound
}

/// An app on the NATS server at `EVT_NATS_URL` under a fresh prefix, with PostgreSQL stores in
/// a fresh schema; `None` without those servers.
pub async fn nats_with_postgres() -> Option<event_runtime::App<event_nats::NatsTransport>> {
    let url = server_url("EVT_NATS_URL")?;
    let (pool, _) = postgres_schema().await?;
    let prefix = format!("app{}", uuid::Uuid::now_v7().simple());
    let config = event_nats::NatsConfig::new(url).prefix(&prefix);
    let transport = event_nats::NatsTransport::connect(config).await.unwrap();
    let stores = event_runtime::Stores::postgres(pool).await.unwrap();
    Some(event_runtime::App::new(transport, stores))
}

/// An app on the Kafka broker at `EVT_KAFKA_BOOTSTRAP` under a fresh prefix (one record per
/// produce batch, for tansu 0.6: see docs/architecture.md), with PostgreSQL stores in a fresh
/// schema; `None` without those servers.
pub async fn kafka_with_postgres() -> Option<event_runtime::App<event_kafka::KafkaTransport>> {
    let bootstrap = server_url("EVT_KAFKA_BOOTSTRAP")?;
    let (pool, _) = postgres_schema().await?;
    let prefix = format!("app{}", uuid::Uuid::now_v7().simple());
    let config = event_kafka::KafkaConfig::new(bootstrap)
        .prefix(&prefix)
        .client_option("batch.num.messages", "1");
    let transport = event_kafka::KafkaTransport::connect(config).unwrap();
    let stores = event_runtime::Stores::postgres(pool).await.unwrap();
    Some(event_runtime::App::new(transport, stores))
}

/// A child process (a crash test's consumer or coordinator), continued if stopped and killed
/// if the test ends (or fails) before it exits.
pub struct Running(pub std::process::Child);

impl std::ops::Deref for Running {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = std::process::Command::new("kill")
                .arg("-CONT")
                .arg(self.0.id().to_string())
                .status();
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A pool on the embedded engine's file at `path` (the app's own is not public): for the tests'
/// own tables and statements beside the app.
pub async fn sqlite_pool(path: impl AsRef<std::path::Path>) -> sqlx::SqlitePool {
    event_runtime::transport::sqlite::SqliteTransport::open(path)
        .await
        .unwrap()
        .pool()
        .clone()
}
