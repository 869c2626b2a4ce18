//! The transactional outbox (`event_runtime::outbox`), each test on PostgreSQL and on SQLite:
//! what is staged and committed reaches the log once, what is rolled back never does, per-key
//! order survives the relay, the inbox emits only what commits, failed appends keep their rows,
//! and two relays on one database neither duplicate nor reorder. The crash test with SQLite
//! stores under NATS is in `crash.rs`.
//!
//! PostgreSQL is the database of `EVT_POSTGRES_URL` (each test in a schema of its own); without
//! it those tests are skipped with a message, except when `CI` is set, where they fail. SQLite
//! is a new file per test.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use event_runtime::app::GroupOptions;
use event_runtime::dlq::LetterFilter;
use event_runtime::retry::RetryPolicy;
use event_runtime::store::Dialect;
use event_runtime::transport::memory::MemoryTransport;
use event_runtime::transport::sqlite::SqliteTransport;
use event_runtime::transport::{Record, Transport};
use event_runtime::{App, Context, DomainEvent, Envelope, HandlerError, Outbox, Stores};
use serde::{Deserialize, Serialize};

mod common;
use common::{Flaky, Seen, Step, recorder};

/// What the inbox handler emits.
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(context = "echo")]
struct Echo {
    #[event(key)]
    account: String,
    seq: u32,
}

// ---------------------------------------------------------------------------------------------
// The two databases
// ---------------------------------------------------------------------------------------------

/// A database the outbox lives in, empty for each test: every test runs on both.
trait Fixture: Sized + Send + Sync + 'static {
    type DB: Dialect;
    /// A new, empty database, or `None` to skip.
    fn open() -> impl Future<Output = Option<Self>> + Send;
    fn pool(&self) -> &sqlx::Pool<Self::DB>;
    /// The app's stores in this database.
    fn stores(&self) -> impl Future<Output = Stores> + Send;
    /// Stores on the same database opened again, as another process of the app would.
    fn other_stores(&self) -> impl Future<Output = Stores> + Send;
    /// How to open the database again from another runtime (another thread).
    fn reopen(&self) -> Reopen;
    /// Rows, least attempts and least last error of `evt_outbox`.
    fn outbox_rows(&self) -> impl Future<Output = (i64, Option<i64>, Option<String>)> + Send;
    /// The table `ledger_rows (account, seq)`, and a constraint a transaction can break so that
    /// it is refused only at COMMIT.
    fn create_ledger(&self) -> impl Future<Output = ()> + Send;
    /// Books `(account, seq)` in `ledger_rows` on `tx`; with `break_at_commit`, also breaks the
    /// deferred constraint.
    fn book(
        tx: &mut sqlx::Transaction<'static, Self::DB>,
        account: &str,
        seq: u32,
        break_at_commit: bool,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;
    /// `ledger_rows` by `seq`.
    fn ledger(&self) -> impl Future<Output = Vec<(String, i64)>> + Send;
}

/// A fixture's database, to open again on another runtime.
enum Reopen {
    Postgres(Box<sqlx::postgres::PgConnectOptions>),
    Sqlite(std::path::PathBuf),
}

impl Reopen {
    /// The app's stores in the database, on a pool of the current runtime.
    async fn stores(self) -> Stores {
        match self {
            Reopen::Postgres(options) => {
                let pool = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(4)
                    .connect_with(*options)
                    .await
                    .unwrap();
                Stores::postgres(pool).await.unwrap()
            }
            Reopen::Sqlite(path) => Stores::sqlite(&SqliteTransport::open(&path).await.unwrap()),
        }
    }
}

/// A new schema of the database at `EVT_POSTGRES_URL` (skipped without it, failing under `CI`).
struct Postgres(sqlx::PgPool);

impl Fixture for Postgres {
    type DB = sqlx::Postgres;

    async fn open() -> Option<Self> {
        common::postgres_schema()
            .await
            .map(|(pool, _)| Postgres(pool))
    }

    fn pool(&self) -> &sqlx::PgPool {
        &self.0
    }

    async fn stores(&self) -> Stores {
        Stores::postgres(self.0.clone()).await.unwrap()
    }

    async fn other_stores(&self) -> Stores {
        Stores::postgres(self.0.clone()).await.unwrap()
    }

    fn reopen(&self) -> Reopen {
        Reopen::Postgres(Box::new((*self.0.connect_options()).clone()))
    }

    async fn outbox_rows(&self) -> (i64, Option<i64>, Option<String>) {
        sqlx::query_as("SELECT COUNT(*), MIN(attempts), MIN(last_error) FROM evt_outbox")
            .fetch_one(&self.0)
            .await
            .unwrap()
    }

    async fn create_ledger(&self) {
        sqlx::raw_sql(
            "CREATE TABLE ledger_rows (account TEXT NOT NULL, seq BIGINT NOT NULL); \
             CREATE TABLE guard (k TEXT, CONSTRAINT guard_k UNIQUE (k) DEFERRABLE INITIALLY DEFERRED); \
             INSERT INTO guard VALUES ('taken');",
        )
        .execute(&self.0)
        .await
        .unwrap();
    }

    async fn book(
        tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
        account: &str,
        seq: u32,
        break_at_commit: bool,
    ) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT INTO ledger_rows (account, seq) VALUES ($1, $2)")
            .bind(account)
            .bind(i64::from(seq))
            .execute(&mut **tx)
            .await?;
        if break_at_commit {
            sqlx::query("INSERT INTO guard VALUES ('taken')")
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    async fn ledger(&self) -> Vec<(String, i64)> {
        sqlx::query_as("SELECT account, seq FROM ledger_rows ORDER BY seq")
            .fetch_all(&self.0)
            .await
            .unwrap()
    }
}

/// A new SQLite file (the embedded default's database), its stores opened on it.
struct Sqlite {
    path: std::path::PathBuf,
    file: SqliteTransport,
}

impl Fixture for Sqlite {
    type DB = sqlx::Sqlite;

    async fn open() -> Option<Self> {
        let path = common::tempdir("outbox").join("stores.db");
        let file = SqliteTransport::open(&path).await.unwrap();
        Some(Sqlite { path, file })
    }

    fn pool(&self) -> &sqlx::SqlitePool {
        self.file.pool()
    }

    async fn stores(&self) -> Stores {
        Stores::sqlite(&self.file)
    }

    async fn other_stores(&self) -> Stores {
        Stores::sqlite(&SqliteTransport::open(&self.path).await.unwrap())
    }

    fn reopen(&self) -> Reopen {
        Reopen::Sqlite(self.path.clone())
    }

    async fn outbox_rows(&self) -> (i64, Option<i64>, Option<String>) {
        sqlx::query_as("SELECT COUNT(*), MIN(attempts), MIN(last_error) FROM evt_outbox")
            .fetch_one(self.pool())
            .await
            .unwrap()
    }

    async fn create_ledger(&self) {
        // SQLite defers foreign keys, not unique constraints: a dangling reference is accepted
        // when written and refused at COMMIT (sqlx turns `foreign_keys` on).
        sqlx::raw_sql(
            "CREATE TABLE ledger_rows (account TEXT NOT NULL, seq INTEGER NOT NULL); \
             CREATE TABLE parent (k TEXT PRIMARY KEY); \
             CREATE TABLE guard (k TEXT REFERENCES parent (k) DEFERRABLE INITIALLY DEFERRED);",
        )
        .execute(self.pool())
        .await
        .unwrap();
    }

    async fn book(
        tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
        account: &str,
        seq: u32,
        break_at_commit: bool,
    ) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT INTO ledger_rows (account, seq) VALUES (?, ?)")
            .bind(account)
            .bind(i64::from(seq))
            .execute(&mut **tx)
            .await?;
        if break_at_commit {
            sqlx::query("INSERT INTO guard VALUES ('no such parent')")
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    async fn ledger(&self) -> Vec<(String, i64)> {
        sqlx::query_as("SELECT account, seq FROM ledger_rows ORDER BY seq")
            .fetch_all(self.pool())
            .await
            .unwrap()
    }
}

/// Runs each named test (a function generic over [`Fixture`]) on PostgreSQL and on SQLite.
macro_rules! on_both {
    ($($test:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test]
                async fn $test() {
                    if let Some(db) = <super::Postgres as super::Fixture>::open().await {
                        super::$test(db).await;
                    }
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test]
                async fn $test() {
                    if let Some(db) = <super::Sqlite as super::Fixture>::open().await {
                        super::$test(db).await;
                    }
                }
            )*
        }
    };
}

on_both!(
    committed_is_delivered_once_and_rolled_back_never,
    the_relay_keeps_per_key_order,
    the_inbox_emits_only_what_commits,
    failed_appends_keep_the_rows_until_the_log_recovers,
    two_relays_neither_duplicate_nor_reorder,
    the_outbox_backlog_and_its_oldest_age_are_metrics,
);

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
        .find(|(n, _)| *n == name)
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
        let key = String::from_utf8(record.key.clone().expect("keyed record").to_vec()).unwrap();
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

/// An app on `transport` with its stores in `db` whose group `sink` records the steps.
async fn sink_app<T: Transport, F: Fixture>(transport: T, db: &F, seen: &Seen) -> App<T> {
    let mut app = App::new(transport, db.stores().await);
    app.partitions(4)
        .subscribe::<Step, _>("sink", recorder(seen.clone()));
    app
}

/// Stages `per_account` steps of each of `accounts` accounts, one task per account, each step
/// in its own transaction (every third transaction stages two steps), while relays run.
async fn stage_concurrently<DB: Dialect>(
    outbox: &Outbox,
    pool: &sqlx::Pool<DB>,
    accounts: u32,
    per_account: u32,
) {
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
async fn committed_is_delivered_once_and_rolled_back_never<F: Fixture>(db: F) {
    let pool = db.pool();
    let transport = MemoryTransport::new();
    let seen = Seen::default();
    let app = sink_app(transport.clone(), &db, &seen).await;
    let outbox = app.outbox().expect("SQL stores have an outbox");
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
async fn the_relay_keeps_per_key_order<F: Fixture>(db: F) {
    let transport = MemoryTransport::new();
    let seen = Seen::default();
    let app = sink_app(transport.clone(), &db, &seen).await;
    let outbox = app.outbox().unwrap();
    let running = app.start().await.unwrap();
    let (accounts, per_account) = (6, 60);
    stage_concurrently(&outbox, db.pool(), accounts, per_account).await;
    assert!(running.wait_idle(Duration::from_secs(60)).await);

    let log = log_of(&transport, "ledger").await;
    assert_eq!(unique_ids(&log).len(), (accounts * per_account) as usize);
    let expected = expected_order(accounts, per_account);
    assert_eq!(seqs_by_key(&log), expected, "log order per key");
    assert_eq!(seen_seqs(&seen), expected, "handling order per key");
    running.stop().await;
}

/// The inbox on the stores' database under another engine: a handler's emitted events are
/// staged in the inbox transaction. An attempt that fails after emitting, and one whose commit
/// fails (a deferred constraint), emit nothing; a successful one emits exactly once.
async fn the_inbox_emits_only_what_commits<F: Fixture>(db: F) {
    db.create_ledger().await;
    let transport = MemoryTransport::new();
    let mut app = App::new(transport.clone(), db.stores().await);
    let failed_once = Arc::new(AtomicBool::new(false));
    let flag = failed_once.clone();
    app.partitions(2)
        .group_options(
            "inbox",
            GroupOptions {
                inbox: true,
                retry: RetryPolicy {
                    immediate: 2,
                    ..RetryPolicy::none()
                },
                ..GroupOptions::default()
            },
        )
        .subscribe::<Step, _>("inbox", move |event: Envelope<Step>, ctx: Context| {
            let flag = flag.clone();
            async move {
                let mut tx = ctx
                    .transaction::<F::DB>()
                    .await
                    .ok_or_else(|| HandlerError::permanent("no inbox transaction"))?;
                // Seq 1 is accepted now and refused at COMMIT: the handler succeeds, the commit
                // fails.
                F::book(
                    &mut tx,
                    &event.data.account,
                    event.data.seq,
                    event.data.seq == 1,
                )
                .await?;
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
    assert_eq!(
        db.ledger().await,
        [("acct".to_owned(), 0), ("acct".to_owned(), 2)]
    );
    let stats = running.stats("inbox").unwrap();
    assert_eq!((stats.handled, stats.dead_lettered), (2, 1), "{stats:?}");
    let letters = running
        .dead_letters()
        .list(&LetterFilter {
            group: Some("inbox".into()),
            ..LetterFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(
        letters.len(),
        1,
        "the refused commit is dead-lettered: {letters:?}"
    );
    assert_eq!(db.outbox_rows().await.0, 0);
    running.stop().await;
}

/// While the log refuses every append, the metrics show the rows waiting in the outbox and how
/// long the oldest has waited; once none waits, the age is 0.
async fn the_outbox_backlog_and_its_oldest_age_are_metrics<F: Fixture>(db: F) {
    let pool = db.pool();
    let memory = MemoryTransport::new();
    memory.ensure_topic("ledger", 4).await.unwrap();
    let refusing = Flaky::new(memory.clone(), usize::MAX);
    let seen = Seen::default();
    let app = sink_app(refusing, &db, &seen).await;
    let outbox = app.outbox().unwrap();
    let running = app.start().await.unwrap();
    let metrics = running.metrics();
    let idle = metrics.refresh().await.unwrap();
    assert_eq!(
        (idle.outbox_backlog, idle.outbox_oldest_age_seconds),
        (Some(0), Some(0.0))
    );
    // Before the first row is staged: its age can only be shorter than the time since.
    let before = std::time::Instant::now();
    let mut tx = pool.begin().await.unwrap();
    for seq in 0..3 {
        outbox.stage(&mut tx, step("acct", seq)).await.unwrap();
    }
    tx.commit().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let snapshot = metrics.refresh().await.unwrap();
    assert_eq!(
        snapshot.outbox_backlog,
        Some(3),
        "nothing relayed while the log refuses"
    );
    let age = snapshot.outbox_oldest_age_seconds.unwrap();
    assert!(
        age >= 0.3 && age <= before.elapsed().as_secs_f64() + 0.002,
        "the oldest row waited {age} s"
    );
    let text = metrics.encode().await.unwrap();
    assert!(text.lines().any(|l| l == "evt_outbox_backlog 3"), "{text}");
    let exported: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("evt_outbox_oldest_age_seconds "))
        .expect("the age's sample")
        .parse()
        .unwrap();
    assert!(exported >= 0.3, "{text}");
    running.stop().await;
}

/// The log refuses appends for a while: the rows stay in the outbox with their attempts and last
/// error counted, and once it recovers every event is delivered once, in order.
async fn failed_appends_keep_the_rows_until_the_log_recovers<F: Fixture>(db: F) {
    let pool = db.pool();
    let memory = MemoryTransport::new();
    // Created up front, so the app's start does not append anything.
    memory.ensure_topic("ledger", 4).await.unwrap();
    let flaky = Flaky::new(memory.clone(), 3);
    let seen = Seen::default();
    let app = sink_app(flaky.clone(), &db, &seen).await;
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
        let (rows, attempts, last_error) = db.outbox_rows().await;
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
async fn two_relays_neither_duplicate_nor_reorder<F: Fixture>(db: F) {
    let pool = db.pool();
    let memory = MemoryTransport::new();
    let first = Flaky::new(memory.clone(), 0);
    let second = Flaky::new(memory.clone(), 0);
    let seen = Seen::default();
    let app = sink_app(first.clone(), &db, &seen).await;
    // The second app only relays (a consumer of the same group would share the partitions).
    let mut other = App::new(second.clone(), db.other_stores().await);
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
    stage_concurrently(&outbox, pool, accounts, per_account).await;
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

/// Clears a [`Flaky`] freeze when dropped.
struct Thaw(Arc<std::sync::atomic::AtomicBool>);

impl Drop for Thaw {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// Waits until the relay over `transport` is inside an append `transport` holds up.
async fn appending(transport: &Flaky) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while transport.stalling.load(Ordering::SeqCst) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the relay never appended"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A relay frozen in its append while it holds the outbox (a suspended process: here its app
/// runs alone on a runtime of its own, whose one thread the append blocks) loses it within 5 s
/// (on PostgreSQL the server ends its transaction once it sits idle that long, and the advisory
/// lock with it; on SQLite its lease expires), and another relay takes the rows over. Were the
/// frozen append to land later, its copies would carry the same ids, which consumers' dedupe
/// drops.
async fn a_frozen_relay_loses_the_outbox_to_another<F: Fixture>(db: F) {
    let pool = db.pool();
    let frozen = Flaky::new(MemoryTransport::new(), 0);
    let (started, is_started) = std::sync::mpsc::channel();
    let (stop, stopping) = tokio::sync::oneshot::channel::<()>();
    let process = std::thread::spawn({
        let (frozen, reopen) = (frozen.clone(), db.reopen());
        move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async move {
                    let running = App::new(frozen, reopen.stores().await)
                        .start()
                        .await
                        .unwrap();
                    started.send(()).unwrap();
                    let _ = stopping.await;
                    running.stop().await;
                });
        }
    });
    is_started.recv().unwrap();
    frozen.frozen.store(true, Ordering::SeqCst);
    // Thawed however the test ends, so that the frozen thread can stop.
    let _thaw = Thaw(frozen.frozen.clone());
    // Staged through an app that never starts, so only the frozen one's relay reads it first.
    let stager = App::new(MemoryTransport::new(), db.other_stores().await);
    let mut tx = pool.begin().await.unwrap();
    stager
        .outbox()
        .unwrap()
        .stage(&mut tx, step("acct", 0))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    appending(&frozen).await;

    let memory = MemoryTransport::new();
    let mut other = App::new(memory.clone(), db.other_stores().await);
    other.partitions(4);
    let other = other.start().await.unwrap();
    let since = std::time::Instant::now();
    let taken = loop {
        if log_of(&memory, "ledger").await.len() == 1 {
            break true;
        }
        if since.elapsed() > Duration::from_secs(30) {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!("taken over {:?} after the freeze began", since.elapsed());
    frozen.frozen.store(false, Ordering::SeqCst);
    let _ = stop.send(());
    process.join().unwrap();
    assert!(taken, "the frozen relay still holds the outbox");
    assert!(other.wait_idle(Duration::from_secs(10)).await);
    other.stop().await;
}

/// A relay whose append is slow but alive (an engine electing a leader, creating a topic) keeps
/// the outbox on PostgreSQL however long the append takes: its transaction is kept alive, so no
/// other relay appends the rows a second time, and they are appended once.
async fn a_slow_append_keeps_the_outbox() {
    let Some(db) = <Postgres as Fixture>::open().await else {
        return;
    };
    let pool = db.pool();
    let log = MemoryTransport::new();
    let slow = Flaky::new(log.clone(), 0);
    let app = App::new(slow.clone(), db.stores().await);
    let outbox = app.outbox().unwrap();
    let running = app.start().await.unwrap();
    slow.stalled.store(true, Ordering::SeqCst);
    let mut tx = pool.begin().await.unwrap();
    outbox.stage(&mut tx, step("acct", 0)).await.unwrap();
    tx.commit().await.unwrap();
    appending(&slow).await;
    let other_log = MemoryTransport::new();
    let mut other = App::new(other_log.clone(), db.other_stores().await);
    other.partitions(4);
    let other = other.start().await.unwrap();
    // Longer than the 5 s the transaction may sit idle.
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert!(
        log_of(&other_log, "ledger").await.is_empty(),
        "another relay took the outbox from a live one"
    );
    slow.stalled.store(false, Ordering::SeqCst);
    assert!(running.wait_idle(Duration::from_secs(20)).await);
    assert_eq!(log_of(&log, "ledger").await.len(), 1, "appended once");
    assert!(log_of(&other_log, "ledger").await.is_empty());
    assert_eq!(outbox.pending().await.unwrap(), 0);
    other.stop().await;
    running.stop().await;
}

/// The relay tests that need a second thread (a frozen relay blocks its own).
mod relay_failover {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_a_frozen_relay_loses_the_outbox_to_another() {
        if let Some(db) = <super::Postgres as super::Fixture>::open().await {
            super::a_frozen_relay_loses_the_outbox_to_another(db).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_a_frozen_relay_loses_the_outbox_to_another() {
        if let Some(db) = <super::Sqlite as super::Fixture>::open().await {
            super::a_frozen_relay_loses_the_outbox_to_another(db).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_a_slow_append_keeps_the_outbox() {
        super::a_slow_append_keeps_the_outbox().await;
    }
}

/// What only the SQLite outbox has: its relays' lease.
mod lease {
    use super::*;

    fn now_ms() -> i64 {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        i64::try_from(since.as_millis()).unwrap()
    }

    /// A lease another live relay holds (a row in `evt_leases`): this app's relay appends
    /// nothing until it expires, then everything.
    #[tokio::test]
    async fn a_live_foreign_lease_holds_the_relay_back_until_it_expires() {
        let db = Sqlite::open().await.unwrap();
        let until = now_ms() + 1500;
        sqlx::query(
            "INSERT INTO evt_leases (name, holder, until_ms) VALUES ('evt_outbox.relay', 'another process', ?)",
        )
        .bind(until)
        .execute(db.pool())
        .await
        .unwrap();
        let transport = MemoryTransport::new();
        let seen = Seen::default();
        let app = sink_app(transport.clone(), &db, &seen).await;
        let outbox = app.outbox().unwrap();
        let running = app.start().await.unwrap();
        let mut tx = db.pool().begin().await.unwrap();
        outbox.stage(&mut tx, step("acct", 0)).await.unwrap();
        tx.commit().await.unwrap();
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(
            log_of(&transport, "ledger").await.is_empty(),
            "relayed while another relay holds the lease"
        );
        assert!(running.wait_idle(Duration::from_secs(10)).await);
        assert!(now_ms() >= until, "relayed before the lease expired");
        assert_eq!(log_of(&transport, "ledger").await.len(), 1);
        running.stop().await;
    }

    /// A relay that stops gives its lease up: another process's relay takes the next rows within
    /// about a second, not at the lease's expiry (5 s).
    #[tokio::test]
    async fn a_stopped_relay_hands_over_at_once() {
        let db = Sqlite::open().await.unwrap();
        let memory = MemoryTransport::new();
        memory.ensure_topic("ledger", 4).await.unwrap();
        let (first, second) = (Flaky::new(memory.clone(), 0), Flaky::new(memory.clone(), 0));
        let mut app = App::new(first.clone(), db.stores().await);
        app.partitions(4);
        let outbox = app.outbox().unwrap();
        let running = app.start().await.unwrap();
        let mut tx = db.pool().begin().await.unwrap();
        outbox.stage(&mut tx, step("acct", 0)).await.unwrap();
        tx.commit().await.unwrap();
        assert!(running.wait_idle(Duration::from_secs(10)).await);
        assert_eq!(
            first.appended.load(Ordering::SeqCst),
            1,
            "the first relay holds the lease"
        );

        let mut other = App::new(second.clone(), db.other_stores().await);
        other.partitions(4);
        let other = other.start().await.unwrap();
        running.stop().await;
        let staged = std::time::Instant::now();
        let mut tx = db.pool().begin().await.unwrap();
        outbox.stage(&mut tx, step("acct", 1)).await.unwrap();
        tx.commit().await.unwrap();
        while second.appended.load(Ordering::SeqCst) == 0 {
            assert!(
                staged.elapsed() < Duration::from_millis(1500),
                "the second relay did not take over within about a second"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        eprintln!("taken over after {:?}", staged.elapsed());
        assert_eq!(
            seqs_by_key(&log_of(&memory, "ledger").await),
            BTreeMap::from([("acct".to_owned(), vec![0, 1])])
        );
        other.stop().await;
    }

    /// An idle relay only reads: with nothing staged, no lease is taken and nothing is written.
    #[tokio::test]
    async fn an_idle_relay_writes_nothing() {
        let db = Sqlite::open().await.unwrap();
        let app = App::new(MemoryTransport::new(), db.stores().await);
        let running = app.start().await.unwrap();
        // Many poll intervals (25 ms).
        tokio::time::sleep(Duration::from_millis(300)).await;
        let leases: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM evt_leases")
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!(leases, 0, "an idle relay took the lease");
        running.stop().await;
    }

    /// A transaction of the wrong database: refused with an error that says so, nothing staged.
    #[tokio::test]
    async fn staging_on_another_database_is_refused_with_a_clear_error() {
        let db = Sqlite::open().await.unwrap();
        let app = App::new(MemoryTransport::new(), db.stores().await);
        let outbox = app.outbox().unwrap();

        // Another SQLite file, without the stores' tables.
        let path = common::tempdir("outbox-elsewhere").join("app.db");
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true);
        let elsewhere = sqlx::SqlitePool::connect_with(options).await.unwrap();
        let mut tx = elsewhere.begin().await.unwrap();
        let err = outbox
            .stage(&mut tx, step("acct", 0))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no evt_outbox table") && err.contains("ledger"),
            "{err}"
        );
        drop(tx);

        // A PostgreSQL transaction for SQLite stores.
        if let Some(pg) = Postgres::open().await {
            let mut tx = pg.pool().begin().await.unwrap();
            let err = outbox
                .stage(&mut tx, step("acct", 0))
                .await
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("the outbox is in SQLite") && err.contains("PostgreSQL"),
                "{err}"
            );
        }
        assert_eq!(outbox.pending().await.unwrap(), 0);
    }
}
