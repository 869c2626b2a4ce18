//! Crash tests: a consumer process is killed with SIGKILL at random points while it consumes, and
//! started again, several times, on each engine: the SQLite log (inbox in the same file), NATS
//! JetStream and Kafka (inbox in PostgreSQL), and NATS with the stores in SQLite (inbox and
//! outbox in the file). A ledger written in inbox mode proves that every
//! event was handled, none was lost, none had its effect twice, and per-key order held.
//!
//! Several instances: three processes share a group on NATS and on Kafka and one is SIGKILLed;
//! two share one and one is SIGSTOPped past its claims (NATS) or its session (Kafka, on
//! librdkafka's mock cluster, which this process hosts on a loopback port).
//!
//! The NATS, Kafka and PostgreSQL servers come from `EVT_NATS_URL`, `EVT_KAFKA_BOOTSTRAP` and
//! `EVT_POSTGRES_URL` (scripts/test.sh starts them); without them those tests are skipped with a
//! message, except under `CI`, where they fail.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use event_runtime::transport::Transport;
use event_runtime::{App, DomainEvent, Envelope, Stores};
use serde::{Deserialize, Serialize};

mod common;
use common::Running;

/// The same wire type the consumer binary reads.
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone)]
#[event(context = "ledger", name = "ledger.entry")]
struct Entry {
    #[event(key)]
    account: String,
    seq: u32,
}

/// What the consumer emits per booked entry (the binary's type).
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone)]
#[event(context = "postings", name = "postings.posted")]
struct Posted {
    #[event(key)]
    account: String,
    seq: u32,
}

const EVENTS: u32 = 300;
const ACCOUNTS: u32 = 12;
const KILLS: usize = 5;

/// Where the ledger is: the SQLite file of the log, or a PostgreSQL schema.
enum Ledger {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Ledger {
    async fn handled(&self) -> i64 {
        let sql = "SELECT COUNT(*) FROM ledger";
        match self {
            Ledger::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
            Ledger::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
        }
        .unwrap_or(0)
    }

    /// Ledger rows per instance.
    async fn by_instance(&self) -> std::collections::BTreeMap<String, i64> {
        let sql = "SELECT instance, COUNT(*) FROM ledger GROUP BY instance";
        let rows: Vec<(String, i64)> = match self {
            Ledger::Sqlite(pool) => sqlx::query_as(sql).fetch_all(pool).await,
            Ledger::Postgres(pool) => sqlx::query_as(sql).fetch_all(pool).await,
        }
        .unwrap_or_default();
        rows.into_iter().collect()
    }

    async fn rows(&self) -> Vec<(String, String, i64)> {
        let sql = "SELECT event_id, account, seq FROM ledger ORDER BY row_id";
        match self {
            Ledger::Sqlite(pool) => sqlx::query_as(sql).fetch_all(pool).await,
            Ledger::Postgres(pool) => sqlx::query_as(sql).fetch_all(pool).await,
        }
        .unwrap()
    }
}

/// The events of a run, published on `app`'s engine.
async fn produce<T: Transport>(app: &App<T>) -> Vec<Envelope<Entry>> {
    let publisher = app.publisher();
    let events: Vec<Envelope<Entry>> = (0..EVENTS)
        .map(|seq| {
            Envelope::event(Entry {
                account: format!("acct-{}", seq % ACCOUNTS),
                seq,
            })
        })
        .collect();
    for chunk in events.chunks(50) {
        publisher.publish_all(chunk.to_vec()).await.unwrap();
    }
    events
}

/// The events of a run, published on the NATS server `nats` under a new prefix: the transport,
/// the prefix and the events.
async fn produce_on_nats(nats: &str) -> (event_nats::NatsTransport, String, Vec<Envelope<Entry>>) {
    let prefix = format!("crash{}", uuid::Uuid::now_v7().simple());
    let transport =
        event_nats::NatsTransport::connect(event_nats::NatsConfig::new(nats).prefix(&prefix))
            .await
            .unwrap();
    let app = App::new(transport.clone(), Stores::in_memory().await.unwrap());
    let events = produce(&app).await;
    (transport, prefix, events)
}

/// A pool on the SQLite file `db` (created if missing) with the ledger table.
async fn sqlite_ledger(db: &std::path::Path) -> sqlx::SqlitePool {
    let pool = common::sqlite_pool(db).await;
    sqlx::query("CREATE TABLE ledger (row_id INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL, account TEXT NOT NULL, seq INTEGER NOT NULL, instance TEXT NOT NULL)")
        .execute(&pool)
        .await
        .unwrap();
    pool
}

/// A PostgreSQL pool on a new schema with the ledger table, and the schema's name.
async fn ledger_schema() -> (sqlx::PgPool, String) {
    let (pool, schema) = common::postgres_schema()
        .await
        .expect("EVT_POSTGRES_URL was checked");
    sqlx::raw_sql(
        "CREATE TABLE ledger (row_id BIGSERIAL PRIMARY KEY, event_id TEXT NOT NULL, account TEXT NOT NULL, seq BIGINT NOT NULL, instance TEXT NOT NULL)",
    )
    .execute(&pool)
    .await
    .unwrap();
    (pool, schema)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_consumer_killed_at_random_points_loses_nothing_and_doubles_nothing() {
    let db = common::tempdir("crash").join("log.db");
    let app = App::embedded(&db).await.unwrap();
    let events = produce(&app).await;
    let pool = sqlite_ledger(&db).await;
    drop(app);
    let env = vec![("CRASH_DB", db.display().to_string())];
    kill_and_restart("sqlite", &env, &Ledger::Sqlite(pool), &events).await;
    let log = event_runtime::transport::sqlite::SqliteTransport::open(&db)
        .await
        .unwrap();
    check_postings(&log, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_consumer_killed_at_random_points_loses_nothing_and_doubles_nothing() {
    let (Some(nats), Some(pg)) = (
        common::server_url("EVT_NATS_URL"),
        common::server_url("EVT_POSTGRES_URL"),
    ) else {
        return;
    };
    let (pool, schema) = ledger_schema().await;
    let (transport, prefix, events) = produce_on_nats(&nats).await;
    let env = vec![
        ("CRASH_NATS_URL", nats),
        ("CRASH_PREFIX", prefix),
        ("CRASH_POSTGRES_URL", pg),
        ("CRASH_SCHEMA", schema),
    ];
    kill_and_restart("nats", &env, &Ledger::Postgres(pool), &events).await;
    check_postings(&transport, true).await;
}

/// NATS with the stores in a SQLite file: the inbox books in the file and stages the postings in
/// its outbox, whose relay (a lease, not an advisory lock) publishes them to NATS after a kill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_consumer_with_sqlite_stores_killed_at_random_points_loses_nothing_and_doubles_nothing()
 {
    let Some(nats) = common::server_url("EVT_NATS_URL") else {
        return;
    };
    let db = common::tempdir("crash-nats-sqlite").join("stores.db");
    let pool = sqlite_ledger(&db).await;
    let (transport, prefix, events) = produce_on_nats(&nats).await;
    let env = vec![
        ("CRASH_NATS_URL", nats),
        ("CRASH_PREFIX", prefix),
        ("CRASH_DB", db.display().to_string()),
    ];
    kill_and_restart("nats+sqlite", &env, &Ledger::Sqlite(pool), &events).await;
    check_postings(&transport, true).await;
}

/// The Kafka consumer's environment on a new prefix and ledger schema with the events
/// published: the transport, the environment, the ledger and the events.
async fn kafka_run() -> Option<(
    event_kafka::KafkaTransport,
    Vec<(&'static str, String)>,
    Ledger,
    Vec<Envelope<Entry>>,
)> {
    let (Some(kafka), Some(pg)) = (
        common::server_url("EVT_KAFKA_BOOTSTRAP"),
        common::server_url("EVT_POSTGRES_URL"),
    ) else {
        return None;
    };
    let prefix = format!("crash{}", uuid::Uuid::now_v7().simple());
    let (pool, schema) = ledger_schema().await;
    // One record per produce batch: tansu 0.6's ListOffsets counts a batch as one record (see
    // the conformance suite).
    let config = event_kafka::KafkaConfig::new(&kafka)
        .prefix(&prefix)
        .client_option("batch.num.messages", "1");
    let transport = event_kafka::KafkaTransport::connect(config).unwrap();
    let app = App::new(transport.clone(), Stores::in_memory().await.unwrap());
    let events = produce(&app).await;
    drop(app);
    let env = vec![
        ("CRASH_KAFKA_BOOTSTRAP", kafka),
        ("CRASH_PREFIX", prefix),
        ("CRASH_POSTGRES_URL", pg),
        ("CRASH_SCHEMA", schema),
    ];
    Some((transport, env, Ledger::Postgres(pool), events))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_consumer_killed_at_random_points_loses_nothing_and_doubles_nothing() {
    let Some((transport, mut env, ledger, events)) = kafka_run().await else {
        return;
    };
    // A restarted process is a new member of the Kafka group: it gets the partitions once the
    // killed one's session lapses.
    env.push(("CRASH_CLAIM_TTL_MS", "2000".to_owned()));
    kill_and_restart("kafka", &env, &ledger, &events).await;
    check_postings(&transport, true).await;
}

/// Per-event handler delay of the consumer, in ms: slow enough that a kill lands mid-stream
/// (lanes run in parallel across partitions, so the engines with a partition fetch each run
/// many at once).
fn delay_ms(engine: &str) -> &'static str {
    if engine == "sqlite" { "4" } else { "20" }
}

/// The `postings.posted` events the consumer emitted: one per entry, each with a single id (a
/// copy appended again by the outbox relay after a kill keeps its id), in order per account.
/// Copies are allowed only through the outbox (`relayed`); on SQLite the emission commits with
/// the booking, so there is exactly one record per entry.
async fn check_postings<T: Transport>(log: &T, relayed: bool) {
    use std::collections::BTreeMap;
    let limits = event_runtime::cloudevents::Limits::default();
    let ends = log.end_offsets("postings").await.unwrap();
    let mut ids: BTreeMap<(String, u32), Vec<String>> = BTreeMap::new();
    let mut order: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for (partition, end) in ends.iter().enumerate() {
        let mut next = 0;
        let deadline = Instant::now() + Duration::from_secs(60);
        while next < *end {
            let records = log
                .fetch("postings", partition as u32, next, 512)
                .await
                .unwrap();
            let Some(last) = records.last().map(|r| r.offset) else {
                // Stored but not delivered yet (an engine read that timed out): again.
                assert!(
                    Instant::now() < deadline,
                    "postings {next}..{end} not readable"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            for record in &records {
                let raw = event_runtime::transport::decode_record(record, &limits).unwrap();
                let posted: Envelope<Posted> = raw.decode().unwrap();
                let (account, seq) = (posted.data.account.clone(), posted.data.seq);
                let copies = ids.entry((account.clone(), seq)).or_default();
                if copies.is_empty() {
                    order.entry(account).or_default().push(seq);
                }
                copies.push(posted.id.to_string());
            }
            next = last + 1;
        }
    }
    assert_eq!(
        ids.len(),
        EVENTS as usize,
        "one posting per entry, none lost"
    );
    for ((account, seq), copies) in &ids {
        assert!(
            copies.iter().all(|id| *id == copies[0]),
            "{account}/{seq} was emitted twice with different ids: {copies:?}"
        );
        assert!(relayed || copies.len() == 1, "{account}/{seq}: {copies:?}");
    }
    for (account, seqs) in &order {
        let mut sorted = seqs.clone();
        sorted.sort_unstable();
        assert_eq!(seqs, &sorted, "postings out of order for {account}");
    }
}

fn spawn(engine: &str, env: &[(&str, String)]) -> Child {
    spawn_with(engine, env, delay_ms(engine))
}

fn spawn_with(engine: &str, env: &[(&str, String)], delay_ms: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_crash_consumer"))
        .arg(engine)
        .arg(EVENTS.to_string())
        .arg(delay_ms)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .spawn()
        .expect("consumer binary starts")
}

/// Starts the consumer, kills it at random points after it made progress, `KILLS` times, then
/// runs it to completion, and checks the ledger: every event once, in order per account.
async fn kill_and_restart(
    engine: &str,
    env: &[(&str, String)],
    ledger: &Ledger,
    events: &[Envelope<Entry>],
) {
    let mut seed = common::seed();
    let mut kills_mid_stream = 0;
    for round in 0..KILLS {
        let before = ledger.handled().await;
        let mut child = spawn(engine, env);
        // Wait until this process has made progress, then kill it at a random point after that.
        let deadline = Instant::now() + Duration::from_secs(30);
        while ledger.handled().await == before && Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("{engine} consumer exited early in round {round}: {status}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(common::random(&mut seed, 150))).await;
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        let after = ledger.handled().await;
        if after > before && after < i64::from(EVENTS) {
            kills_mid_stream += 1;
        }
        eprintln!("round {round}: killed with {after} of {EVENTS} handled");
    }
    assert!(
        kills_mid_stream >= 3,
        "only {kills_mid_stream} kills landed mid-stream"
    );

    // A last run to completion.
    let mut child = spawn(engine, env);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the consumer did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success());
    check_ledger(ledger, events).await;
}

/// The ledger holds every event exactly once, in order per account.
async fn check_ledger(ledger: &Ledger, events: &[Envelope<Entry>]) {
    // Every event exactly once...
    let rows = ledger.rows().await;
    let mut ids: Vec<&str> = rows.iter().map(|(id, _, _)| id.as_str()).collect();
    ids.sort_unstable();
    let before_dedup = ids.len();
    ids.dedup();
    assert_eq!(before_dedup, ids.len(), "an event had its effect twice");
    let mut expected: Vec<String> = events.iter().map(|e| e.id.to_string()).collect();
    expected.sort_unstable();
    assert_eq!(
        ids,
        expected.iter().map(String::as_str).collect::<Vec<_>>(),
        "events were lost"
    );
    // ...and in order per account.
    for account in 0..ACCOUNTS {
        let seqs: Vec<i64> = rows
            .iter()
            .filter(|(_, a, _)| *a == format!("acct-{account}"))
            .map(|(_, _, seq)| *seq)
            .collect();
        let mut sorted = seqs.clone();
        sorted.sort_unstable();
        assert_eq!(seqs, sorted, "order broken for acct-{account}");
    }
}

/// The NATS consumer's environment on a new prefix and ledger schema with `events` published:
/// the transport, the environment and the ledger.
async fn nats_run() -> Option<(
    event_nats::NatsTransport,
    Vec<(&'static str, String)>,
    Ledger,
    Vec<Envelope<Entry>>,
)> {
    let (Some(nats), Some(pg)) = (
        common::server_url("EVT_NATS_URL"),
        common::server_url("EVT_POSTGRES_URL"),
    ) else {
        return None;
    };
    let (pool, schema) = ledger_schema().await;
    let (transport, prefix, events) = produce_on_nats(&nats).await;
    let env = vec![
        ("CRASH_NATS_URL", nats),
        ("CRASH_PREFIX", prefix),
        ("CRASH_POSTGRES_URL", pg),
        ("CRASH_SCHEMA", schema),
    ];
    Some((transport, env, Ledger::Postgres(pool), events))
}

/// Starts instance `id` of the consumer on `engine` with claims (or Kafka sessions) of `ttl_ms`
/// and a 100 ms handler.
fn instance_on(engine: &str, env: &[(&'static str, String)], id: &str, ttl_ms: u64) -> Child {
    let mut env = env.to_vec();
    env.push(("CRASH_INSTANCE", id.to_owned()));
    env.push(("CRASH_CLAIM_TTL_MS", ttl_ms.to_string()));
    spawn_with(engine, &env, "100")
}

/// Waits until every instance of `ids` has booked something.
async fn all_booked(ledger: &Ledger, ids: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let counts = ledger.by_instance().await;
        if ids
            .iter()
            .all(|id| counts.get(*id).copied().unwrap_or(0) > 0)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not every instance booked: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sends `child` the signal `sig` (`STOP`, `CONT`).
fn signal(sig: &str, child: &Child) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()
        .expect("kill(1)");
    assert!(status.success());
}

/// Waits for `child` to exit successfully.
async fn finishes(child: &mut Child, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{name} exited with {status}");
            return;
        }
        assert!(Instant::now() < deadline, "{name} did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The owners of the ledger topic's partitions for the consumer's group, as claimed now.
async fn owners(transport: &event_nats::NatsTransport) -> Vec<Option<String>> {
    let mut owners = Vec::new();
    for partition in 0..8 {
        let slot = transport
            .slot("ledger-writer", "ledger", partition)
            .await
            .unwrap();
        owners.push(slot.claim.map(|c| c.owner));
    }
    owners
}

/// Waits until the partitions' owners satisfy `settled`, failing with `what` and the owners
/// `secs` seconds after `since`.
async fn owned_until(
    transport: &event_nats::NatsTransport,
    since: Instant,
    secs: u64,
    what: &str,
    settled: impl Fn(&[Option<String>]) -> bool,
) {
    let deadline = since + Duration::from_secs(secs);
    loop {
        let owned = owners(transport).await;
        if settled(&owned) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {owned:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Three processes of one service on NATS share the group's partitions (each books a share),
/// and when one is SIGKILLed mid-stream the other two take its partitions once its claims lapse:
/// the inbox ledger ends with every event exactly once, in order per account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nats_instances_share_the_work_and_survive_a_kill() {
    let Some((transport, env, ledger, events)) = nats_run().await else {
        return;
    };
    second_of_three_killed("nats", &env, 1500, Some(&transport), &ledger, &events).await;
}

/// Starts instances `one`, `two` and `three` on `engine` (claims or sessions of `ttl_ms`), waits
/// until each booked (and, with `slots`, until each owns 2 or 3 of the 8 partitions), SIGKILLs
/// `two` mid-stream (with `slots`: waits until the others own its partitions), and checks that
/// the other two finish with every event booked exactly once, in order per account.
async fn second_of_three_killed(
    engine: &str,
    env: &[(&'static str, String)],
    ttl_ms: u64,
    slots: Option<&event_nats::NatsTransport>,
    ledger: &Ledger,
    events: &[Envelope<Entry>],
) {
    let mut one = Running(instance_on(engine, env, "one", ttl_ms));
    let mut two = Running(instance_on(engine, env, "two", ttl_ms));
    let mut three = Running(instance_on(engine, env, "three", ttl_ms));
    if let Some(transport) = slots {
        owned_until(transport, Instant::now(), 20, "no even shares", |owned| {
            let shares = ["one", "two", "three"]
                .map(|id| owned.iter().filter(|o| o.as_deref() == Some(id)).count());
            shares.iter().all(|n| (2..=3).contains(n)) && shares.iter().sum::<usize>() == 8
        })
        .await;
    }
    all_booked(ledger, &["one", "two", "three"]).await;
    two.kill().expect("SIGKILL");
    two.wait().unwrap();
    let killed = Instant::now();
    let at_kill = ledger.handled().await;
    assert!(at_kill < i64::from(EVENTS), "the kill landed after the end");
    if let Some(transport) = slots {
        // The survivors own every partition within the claim's time and a few rounds.
        owned_until(
            transport,
            killed,
            10,
            "two's partitions did not move",
            |owned| {
                owned
                    .iter()
                    .all(|o| matches!(o.as_deref(), Some("one" | "three")))
            },
        )
        .await;
        eprintln!("partitions moved {:?} after the kill", killed.elapsed());
    }
    finishes(&mut one, "one").await;
    finishes(&mut three, "three").await;
    check_ledger(ledger, events).await;
    eprintln!(
        "killed at {at_kill} booked; booked per instance: {:?}",
        ledger.by_instance().await
    );
}

/// An instance SIGSTOPped past its claims' time loses its partitions to the other, which books
/// every remaining event while it is stopped; SIGCONTed, it abandons what it lost (no position,
/// no new handler there) and books nothing more; the ledger has every event exactly once, in
/// order per account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_instance_paused_past_its_claims_loses_them_and_doubles_nothing() {
    let Some((transport, env, ledger, events)) = nats_run().await else {
        return;
    };
    paused_past_its_lease("nats", &env, 1000, Some(&transport), &ledger, &events).await;
}

/// Starts instances `one` and `two` on `engine` (claims or sessions of `ttl_ms`), SIGSTOPs `one`
/// once both booked, and checks that `two` books every remaining event while `one` is stopped
/// (with `slots`: after it owns every partition), that `one`, SIGCONTed, books nothing more, and
/// that the ledger ends with every event exactly once, in order per account.
///
/// `two` can book the keys `one` was handling only once PostgreSQL ends `one`'s inbox
/// transactions, which held them: they sit idle past their lease (`claim_ttl`).
async fn paused_past_its_lease(
    engine: &str,
    env: &[(&'static str, String)],
    ttl_ms: u64,
    slots: Option<&event_nats::NatsTransport>,
    ledger: &Ledger,
    events: &[Envelope<Entry>],
) {
    let mut one = Running(instance_on(engine, env, "one", ttl_ms));
    let mut two = Running(instance_on(engine, env, "two", ttl_ms));
    all_booked(ledger, &["one", "two"]).await;
    signal("STOP", &one);
    let stopped = Instant::now();
    // A commit `one` sent just before the stop still lands: read once the counts settled.
    let mut at_stop = ledger.by_instance().await;
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = ledger.by_instance().await;
        if now.get("one") == at_stop.get("one") {
            break;
        }
        at_stop = now;
    }
    assert!(
        at_stop.values().sum::<i64>() < i64::from(EVENTS),
        "the stop landed after the end"
    );
    if let Some(transport) = slots {
        owned_until(
            transport,
            stopped,
            10,
            "one's partitions did not move",
            |owned| owned.iter().all(|o| o.as_deref() == Some("two")),
        )
        .await;
        eprintln!("partitions moved {:?} after the stop", stopped.elapsed());
    }
    let deadline = stopped + Duration::from_secs(30);
    while ledger.handled().await < i64::from(EVENTS) {
        assert!(
            Instant::now() < deadline,
            "two did not book every event while one was stopped: {at_stop:?} at the stop, {:?} now",
            ledger.by_instance().await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("all booked {:?} after the stop", stopped.elapsed());
    let while_stopped = ledger.by_instance().await;
    assert_eq!(
        while_stopped.get("one"),
        at_stop.get("one"),
        "a stopped instance booked"
    );
    signal("CONT", &one);
    finishes(&mut one, "one").await;
    finishes(&mut two, "two").await;
    check_ledger(ledger, events).await;
    // Resumed, `one` booked nothing more: its transactions had ended, and it no longer owns
    // the partitions.
    assert_eq!(ledger.by_instance().await, while_stopped);
    eprintln!("booked at the stop {at_stop:?}, at the end {while_stopped:?}");
}

/// Three processes of one service on Kafka are members of one consumer group whose coordinator
/// deals them the partitions (each books a share); one is SIGKILLed mid-stream, and once its
/// session lapses the others get its partitions: the inbox ledger ends with every event exactly
/// once, in order per account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_kafka_instances_share_the_work_and_survive_a_kill() {
    let Some((_, env, ledger, events)) = kafka_run().await else {
        return;
    };
    second_of_three_killed("kafka", &env, 3000, None, &ledger, &events).await;
}

/// A Kafka instance SIGSTOPped past its session loses its partitions to the other, which books
/// every remaining event while it is stopped; SIGCONTed, it learns it was removed, abandons what
/// it lost (no commit, no handler there) and the ledger still ends with every event exactly
/// once, in order per account.
///
/// The broker is librdkafka's mock cluster, hosted by this test process on a loopback port the
/// consumer processes connect to: tansu 0.6 keeps dealing a silent member (its connection open)
/// its partitions (`docs/delivery.md`, "Running several instances"), so the SIGSTOP case is not
/// run there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_instance_paused_past_its_session_loses_its_partitions_and_doubles_nothing() {
    let Some(pg) = common::server_url("EVT_POSTGRES_URL") else {
        return;
    };
    let cluster = event_kafka::mock::MockKafka::start(1);
    let prefix = format!("crash{}", uuid::Uuid::now_v7().simple());
    let (pool, schema) = ledger_schema().await;
    let ledger = Ledger::Postgres(pool);
    let transport = event_kafka::KafkaTransport::connect(cluster.config().prefix(&prefix)).unwrap();
    let app = App::new(transport.clone(), Stores::in_memory().await.unwrap());
    let events = produce(&app).await;
    drop(app);
    // The consumers' emitted events' topic, made here: the mock cluster does not answer the
    // admin API's `CreateTopics`, so the consumer processes find every topic made.
    let partitions = transport.ensure_topic("ledger", 1).await.unwrap();
    transport
        .ensure_topic("postings", partitions)
        .await
        .unwrap();
    let env = vec![
        (
            "CRASH_KAFKA_BOOTSTRAP",
            cluster.bootstrap_servers().to_owned(),
        ),
        ("CRASH_PREFIX", prefix),
        ("CRASH_POSTGRES_URL", pg),
        ("CRASH_SCHEMA", schema),
    ];
    // Sessions of 4 s: the mock coordinator holds a new group's first members for 3 s (its
    // `group.initial.rebalance.delay.ms`) and times out a member whose session is shorter.
    paused_past_its_lease("kafka", &env, 4000, None, &ledger, &events).await;
}
