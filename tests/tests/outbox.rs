//! The transactional outbox on PostgreSQL (`event_runtime::outbox`): what is staged and committed
//! reaches the log once, what is rolled back never does, per-key order survives the relay, the
//! PostgreSQL inbox emits only what commits, failed appends keep their rows, and two relays on
//! one database neither duplicate nor reorder.
//!
//! Runs against the database of `EVT_POSTGRES_URL` (each test in a schema of its own). Skipped
//! with a message without it, except when `CI` is set, where the tests fail.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use event_runtime::app::GroupOptions;
use event_runtime::retry::RetryPolicy;
use event_runtime::transport::memory::MemoryTransport;
use event_runtime::transport::{
    OutgoingRecord, Position, Record, Transport, TransportError, TransportErrorKind,
};
use event_runtime::{App, Context, DomainEvent, Envelope, HandlerError, Outbox, Stores};
use serde::{Deserialize, Serialize};

mod common;
use common::{Seen, Step, recorder};

/// What the inbox handler emits.
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(context = "echo")]
struct Echo {
    #[event(key)]
    account: String,
    seq: u32,
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL (tests/tests/common)
// ---------------------------------------------------------------------------------------------

/// A pool on a new, empty schema of the database at `EVT_POSTGRES_URL`, or `None` to skip.
async fn postgres_schema() -> Option<sqlx::PgPool> {
    common::postgres_schema().await.map(|(pool, _)| pool)
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Every record of `topic`, partition by partition, in offset order.
async fn log_of<T: Transport>(transport: &T, topic: &str) -> Vec<Record> {
    let mut out = Vec::new();
    let Ok(ends) = transport.end_offsets(topic).await else {
        return out;
    };
    for (partition, end) in ends.into_iter().enumerate() {
        let mut next = 0;
        while next < end {
            let batch = transport
                .fetch(topic, partition as u32, next, 1024)
                .await
                .unwrap();
            next = batch.last().map_or(end, |r| r.offset + 1);
            out.extend(batch);
        }
    }
    out
}

fn header<'a>(record: &'a Record, name: &str) -> &'a str {
    let value = record
        .headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("record without {name}: {record:?}"));
    std::str::from_utf8(value).unwrap()
}

/// The CloudEvents ids in `records`, asserting none appears twice.
fn unique_ids(records: &[Record]) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for record in records {
        let id = header(record, "ce_id").to_owned();
        assert!(ids.insert(id.clone()), "event {id} is in the log twice");
    }
    ids
}

/// Per key, the `seq` of the `Step`s (or `Echo`s) in `records`, in log order.
fn seqs_by_key(records: &[Record]) -> BTreeMap<String, Vec<u32>> {
    #[derive(Deserialize)]
    struct Seq {
        seq: u32,
    }
    let mut out: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for record in records {
        let key = String::from_utf8(record.key.clone().expect("keyed record")).unwrap();
        let seq: Seq = serde_json::from_slice(&record.payload).unwrap();
        out.entry(key).or_default().push(seq.seq);
    }
    out
}

fn step(account: &str, seq: u32) -> Envelope<Step> {
    Envelope::event(Step {
        account: account.to_owned(),
        seq,
    })
}

/// An app on `transport` with PostgreSQL stores on `pool` whose group `sink` records the steps.
async fn sink_app<T: Transport>(transport: T, pool: &sqlx::PgPool, seen: &Seen) -> App<T> {
    let mut app = App::new(transport, Stores::postgres(pool.clone()).await.unwrap());
    app.partitions(4)
        .subscribe::<Step, _>("sink", recorder(seen.clone()));
    app
}

/// A fault injector around the memory engine: the first `fail` appends are refused (as an
/// unreachable broker would), and every record appended is counted.
#[derive(Clone)]
struct Flaky {
    inner: MemoryTransport,
    fail: Arc<AtomicUsize>,
    refused: Arc<AtomicUsize>,
    appended: Arc<AtomicUsize>,
}

impl Flaky {
    fn new(inner: MemoryTransport, fail: usize) -> Self {
        Flaky {
            inner,
            fail: Arc::new(AtomicUsize::new(fail)),
            refused: Arc::default(),
            appended: Arc::default(),
        }
    }
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
        if self
            .fail
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return Err(TransportError::new(
                TransportErrorKind::Unavailable,
                format!("append to {topic}"),
                "injected failure: broker unreachable",
            ));
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

/// Stages `per_account` steps of each of `accounts` accounts, one task per account, each step
/// in its own transaction (every third transaction stages two steps), while relays run.
async fn stage_concurrently(outbox: &Outbox, pool: &sqlx::PgPool, accounts: u32, per_account: u32) {
    let mut tasks = tokio::task::JoinSet::new();
    for a in 0..accounts {
        let outbox = outbox.clone();
        let pool = pool.clone();
        tasks.spawn(async move {
            let account = format!("acct-{a}");
            let mut seq = 0;
            let mut n = 0;
            while seq < per_account {
                let mut tx = pool.begin().await.unwrap();
                let take = if n % 3 == 2 { 2 } else { 1 };
                for _ in 0..take {
                    if seq < per_account {
                        outbox.stage(&mut tx, step(&account, seq)).await.unwrap();
                        seq += 1;
                    }
                }
                tx.commit().await.unwrap();
                n += 1;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
}

fn expected_order(accounts: u32, per_account: u32) -> BTreeMap<String, Vec<u32>> {
    (0..accounts)
        .map(|a| (format!("acct-{a}"), (0..per_account).collect()))
        .collect()
}

fn seen_seqs(seen: &Seen) -> BTreeMap<String, Vec<u32>> {
    seen.lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.iter().map(|(seq, _)| *seq).collect()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

/// Staged and committed: in the log once and handled once. Staged and rolled back (explicitly,
/// or by dropping the transaction): never. Nothing is relayed before the commit.
#[tokio::test]
async fn committed_is_delivered_once_and_rolled_back_never() {
    let Some(pool) = postgres_schema().await else {
        return;
    };
    let transport = MemoryTransport::new();
    let seen = Seen::default();
    let app = sink_app(transport.clone(), &pool, &seen).await;
    let outbox = app.outbox().expect("PostgreSQL stores have an outbox");
    let running = app.start().await.unwrap();

    let committed: Vec<Envelope<Step>> = (0..3).map(|seq| step("kept", seq)).collect();
    let committed_ids: BTreeSet<String> = committed.iter().map(|e| e.id.to_string()).collect();
    let mut tx = pool.begin().await.unwrap();
    for envelope in committed {
        outbox.stage(&mut tx, envelope).await.unwrap();
    }
    // Well past the relay's poll interval: still nothing, the transaction is open.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        log_of(&transport, "ledger").await.is_empty(),
        "relayed before the commit"
    );
    tx.commit().await.unwrap();

    let mut tx = pool.begin().await.unwrap();
    outbox.stage(&mut tx, step("rolled-back", 0)).await.unwrap();
    outbox.stage(&mut tx, step("rolled-back", 1)).await.unwrap();
    tx.rollback().await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    outbox.stage(&mut tx, step("dropped", 0)).await.unwrap();
    drop(tx);

    assert!(running.wait_idle(Duration::from_secs(20)).await);
    // Give a stray relay pass the time to publish what it should not.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(running.wait_idle(Duration::from_secs(20)).await);

    let log = log_of(&transport, "ledger").await;
    assert_eq!(
        unique_ids(&log),
        committed_ids,
        "exactly the committed events"
    );
    assert_eq!(
        seen_seqs(&seen),
        BTreeMap::from([("kept".to_owned(), vec![0, 1, 2])]),
        "each committed event handled once, nothing rolled back handled"
    );
    assert_eq!(
        outbox.pending().await.unwrap(),
        0,
        "relayed rows are deleted"
    );
    running.stop().await;
}

/// Many events of a few keys, staged in many transactions while the relay runs: the log and the
/// consumer see each key's events in the order they were staged.
#[tokio::test]
async fn the_relay_keeps_per_key_order() {
    let Some(pool) = postgres_schema().await else {
        return;
    };
    let transport = MemoryTransport::new();
    let seen = Seen::default();
    let app = sink_app(transport.clone(), &pool, &seen).await;
    let outbox = app.outbox().unwrap();
    let running = app.start().await.unwrap();
    let (accounts, per_account) = (6, 60);
    stage_concurrently(&outbox, &pool, accounts, per_account).await;
    assert!(running.wait_idle(Duration::from_secs(60)).await);

    let log = log_of(&transport, "ledger").await;
    assert_eq!(unique_ids(&log).len(), (accounts * per_account) as usize);
    let expected = expected_order(accounts, per_account);
    assert_eq!(seqs_by_key(&log), expected, "log order per key");
    assert_eq!(seen_seqs(&seen), expected, "handling order per key");
    running.stop().await;
}

/// The inbox on PostgreSQL: a handler's emitted events are staged in the inbox transaction. An
/// attempt that fails after emitting, and one whose commit fails (a deferred constraint), emit
/// nothing; a successful one emits exactly once.
#[tokio::test]
async fn the_postgres_inbox_emits_only_what_commits() {
    let Some(pool) = postgres_schema().await else {
        return;
    };
    sqlx::raw_sql(
        "CREATE TABLE ledger_rows (account TEXT NOT NULL, seq BIGINT NOT NULL); \
         CREATE TABLE guard (k TEXT, CONSTRAINT guard_k UNIQUE (k) DEFERRABLE INITIALLY DEFERRED); \
         INSERT INTO guard VALUES ('taken');",
    )
    .execute(&pool)
    .await
    .unwrap();
    let transport = MemoryTransport::new();
    let mut app = App::new(
        transport.clone(),
        Stores::postgres(pool.clone()).await.unwrap(),
    );
    let failed_once = Arc::new(AtomicBool::new(false));
    let flag = failed_once.clone();
    app.partitions(2)
        .group_options(
            "pg-inbox",
            GroupOptions {
                inbox: true,
                retry: RetryPolicy {
                    immediate: 2,
                    ..RetryPolicy::none()
                },
                ..GroupOptions::default()
            },
        )
        .subscribe::<Step, _>("pg-inbox", move |event: Envelope<Step>, ctx: Context| {
            let flag = flag.clone();
            async move {
                let mut tx = ctx
                    .transaction::<sqlx::Postgres>()
                    .await
                    .ok_or_else(|| HandlerError::permanent("no PostgreSQL inbox transaction"))?;
                sqlx::query("INSERT INTO ledger_rows (account, seq) VALUES ($1, $2)")
                    .bind(&event.data.account)
                    .bind(i64::from(event.data.seq))
                    .execute(&mut **tx)
                    .await?;
                if event.data.seq == 1 {
                    // Accepted now, refused at COMMIT: the handler succeeds, the commit fails.
                    sqlx::query("INSERT INTO guard VALUES ('taken')")
                        .execute(&mut **tx)
                        .await?;
                }
                drop(tx);
                ctx.publish(Echo {
                    account: event.data.account.clone(),
                    seq: event.data.seq,
                })?;
                if event.data.seq == 0 && !flag.swap(true, Ordering::SeqCst) {
                    // After writing and emitting: the retry must find neither.
                    return Err(HandlerError::transient("database hiccup"));
                }
                Ok(())
            }
        });
    let publisher = app.publisher();
    let running = app.start().await.unwrap();
    for seq in 0..3 {
        publisher.publish(step("acct", seq)).await.unwrap();
    }
    assert!(running.wait_idle(Duration::from_secs(30)).await);
    assert!(
        failed_once.load(Ordering::SeqCst),
        "the failing attempt ran"
    );

    let echoes = log_of(&transport, "echo").await;
    unique_ids(&echoes);
    assert_eq!(
        seqs_by_key(&echoes),
        BTreeMap::from([("acct".to_owned(), vec![0, 2])]),
        "one echo per committed handling, none for the attempts that did not commit"
    );
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT account, seq FROM ledger_rows ORDER BY seq")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(rows, [("acct".to_owned(), 0), ("acct".to_owned(), 2)]);
    let stats = running.stats("pg-inbox").unwrap();
    assert_eq!((stats.handled, stats.dead_lettered), (2, 1), "{stats:?}");
    let outbox: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM evt_outbox")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(outbox, 0);
    running.stop().await;
}

/// The log refuses appends for a while: the rows stay in the outbox with their attempts and last
/// error counted, and once it recovers every event is delivered once, in order.
#[tokio::test]
async fn failed_appends_keep_the_rows_until_the_log_recovers() {
    let Some(pool) = postgres_schema().await else {
        return;
    };
    let memory = MemoryTransport::new();
    // Created up front, so the app's start does not append anything.
    memory.ensure_topic("ledger", 4).await.unwrap();
    let flaky = Flaky::new(memory.clone(), 3);
    let seen = Seen::default();
    let app = sink_app(flaky.clone(), &pool, &seen).await;
    let outbox = app.outbox().unwrap();
    let running = app.start().await.unwrap();

    let mut tx = pool.begin().await.unwrap();
    for seq in 0..5 {
        outbox.stage(&mut tx, step("acct", seq)).await.unwrap();
    }
    tx.commit().await.unwrap();

    // The first refusal is recorded on the rows, which are all still there.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let (rows, attempts, last_error) = loop {
        let (rows, attempts, last_error): (i64, Option<i64>, Option<String>) =
            sqlx::query_as("SELECT COUNT(*), MIN(attempts), MIN(last_error) FROM evt_outbox")
                .fetch_one(&pool)
                .await
                .unwrap();
        if attempts.unwrap_or(0) >= 1 || tokio::time::Instant::now() > deadline {
            break (rows, attempts, last_error);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(rows, 5, "no row is dropped after a failed append");
    assert!(attempts.unwrap_or(0) >= 1, "attempts counted: {attempts:?}");
    let last_error = last_error.expect("last_error recorded");
    assert!(last_error.contains("injected failure"), "{last_error}");
    assert!(
        log_of(&memory, "ledger").await.is_empty(),
        "nothing appended while the log refuses"
    );

    assert!(running.wait_idle(Duration::from_secs(30)).await);
    assert_eq!(
        flaky.refused.load(Ordering::SeqCst),
        3,
        "every injected failure was hit"
    );
    let log = log_of(&memory, "ledger").await;
    assert_eq!(unique_ids(&log).len(), 5, "each event once");
    assert_eq!(flaky.appended.load(Ordering::SeqCst), 5);
    let expected = BTreeMap::from([("acct".to_owned(), vec![0, 1, 2, 3, 4])]);
    assert_eq!(seqs_by_key(&log), expected);
    assert_eq!(seen_seqs(&seen), expected);
    assert_eq!(outbox.pending().await.unwrap(), 0);
    running.stop().await;
}

/// Two apps on one database run two relays over one outbox (and one log): every event is
/// appended once, and each key keeps its order.
#[tokio::test]
async fn two_relays_neither_duplicate_nor_reorder() {
    let Some(pool) = postgres_schema().await else {
        return;
    };
    let memory = MemoryTransport::new();
    let first = Flaky::new(memory.clone(), 0);
    let second = Flaky::new(memory.clone(), 0);
    let seen = Seen::default();
    let app = sink_app(first.clone(), &pool, &seen).await;
    // The second app only relays (a consumer of the same group would share the partitions).
    let mut other = App::new(
        second.clone(),
        Stores::postgres(pool.clone()).await.unwrap(),
    );
    other.partitions(4);
    let outbox = app.outbox().unwrap();

    let (accounts, per_account) = (5, 50);
    // Some rows wait before either relay starts, so both compete for them at once.
    let mut tx = pool.begin().await.unwrap();
    for a in 0..accounts {
        outbox
            .stage(&mut tx, step(&format!("early-{a}"), 0))
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    let (running, other) = tokio::join!(app.start(), other.start());
    let (running, other) = (running.unwrap(), other.unwrap());
    stage_concurrently(&outbox, &pool, accounts, per_account).await;
    assert!(running.wait_idle(Duration::from_secs(60)).await);
    assert!(other.wait_idle(Duration::from_secs(60)).await);

    let total = (accounts * per_account + accounts) as usize;
    let log = log_of(&memory, "ledger").await;
    assert_eq!(unique_ids(&log).len(), total, "each event once in the log");
    let appended = (
        first.appended.load(Ordering::SeqCst),
        second.appended.load(Ordering::SeqCst),
    );
    assert_eq!(appended.0 + appended.1, total, "{appended:?}");
    eprintln!("records appended by each relay: {appended:?}");
    let mut expected = expected_order(accounts, per_account);
    for a in 0..accounts {
        expected.insert(format!("early-{a}"), vec![0]);
    }
    assert_eq!(seqs_by_key(&log), expected, "log order per key");
    assert_eq!(seen_seqs(&seen), expected, "handling order per key");
    other.stop().await;
    running.stop().await;
}
