//! Saga crash tests: the coordinator process (`src/bin/crash_saga.rs`: the hand-written `order`
//! saga, the `#[saga]` `checkout` with an awaited compensation, and their participants) first
//! aborts at each named boundary (before an inbox commit, after it before the record is
//! acknowledged, and on NATS and Kafka between an outbox append and its delete), then is killed
//! with SIGKILL at random points while sagas are in flight, and started again each time: on the
//! SQLite engine (everything in one file), and with PostgreSQL stores on NATS and on Kafka.
//! Afterwards every `order` has completed, every `checkout` has completed or fully compensated
//! (odd orders are declined), every step's and compensation's effect is in the participants'
//! ledger exactly once, the timers survived, and nothing was dead-lettered. On NATS with
//! PostgreSQL, an instance frozen with due timers locked in its poller's transaction hands them
//! to another instance once the transaction's lease ends.

use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use event_runtime::dlq::{DeadLetters, LetterFilter};
use event_runtime::saga::Status;
use event_runtime::transport::Transport;
use event_runtime::{App, DomainEvent, Envelope, Stores};
use serde::{Deserialize, Serialize};

mod common;

/// The same wire type the coordinator binary reads.
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone)]
#[event(context = "crash_orders", name = "crash_orders.opened")]
struct Opened {
    #[event(key)]
    order: String,
}

/// Orders opened per test (each starts both sagas).
const SAGAS: u64 = 200;
const KILLS: usize = 5;

/// The participants' ledger: the SQLite file, or a PostgreSQL schema.
enum Ledger {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

const CREATE_LEDGER: &str = "CREATE TABLE saga_ledger (step TEXT NOT NULL, order_id TEXT NOT NULL, command_id TEXT NOT NULL)";
const COUNT_ROWS: &str = "SELECT COUNT(*) FROM saga_ledger";
const PER_STEP: &str =
    "SELECT step, COUNT(*), COUNT(DISTINCT order_id) FROM saga_ledger GROUP BY step ORDER BY step";

impl Ledger {
    async fn rows(&self) -> i64 {
        match self {
            Ledger::Sqlite(pool) => sqlx::query_scalar(COUNT_ROWS).fetch_one(pool).await,
            Ledger::Postgres(pool) => sqlx::query_scalar(COUNT_ROWS).fetch_one(pool).await,
        }
        .unwrap()
    }

    /// `(step, rows, distinct orders)` per step.
    async fn per_step(&self) -> Vec<(String, i64, i64)> {
        match self {
            Ledger::Sqlite(pool) => sqlx::query_as(PER_STEP).fetch_all(pool).await,
            Ledger::Postgres(pool) => sqlx::query_as(PER_STEP).fetch_all(pool).await,
        }
        .unwrap()
    }
}

async fn open_some<T: Transport>(app: &App<T>, sagas: u64) {
    let publisher = app.publisher();
    for n in 0..sagas {
        publisher
            .publish(Envelope::event(Opened {
                order: format!("o-{n}"),
            }))
            .await
            .unwrap();
    }
}

fn spawn(engine: &str, env: &[(&str, String)]) -> Child {
    spawn_for(engine, SAGAS, env)
}

fn spawn_for(engine: &str, sagas: u64, env: &[(&str, String)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_crash_saga"))
        .arg(engine)
        .arg(sagas.to_string())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .spawn()
        .expect("the coordinator binary starts")
}

/// Every step's and compensation's effect for `sagas` orders, once each: `order` books
/// reserve, charge and ship; `checkout` books hold and pay, and unhold for the declined (odd)
/// half.
const fn effects(sagas: u64) -> i64 {
    5 * sagas as i64 + sagas as i64 / 2
}

const TOTAL: i64 = effects(SAGAS);

/// The ledger's [`Ledger::per_step`] once every step of `sagas` orders is booked once: each
/// step once per order, the unhold once per declined (odd) order.
fn each_step_once(sagas: u64) -> Vec<(String, i64, i64)> {
    let (all, half) = (sagas as i64, sagas as i64 / 2);
    [
        ("charge", all),
        ("hold", all),
        ("pay", all),
        ("reserve", all),
        ("ship", all),
        ("unhold", half),
    ]
    .into_iter()
    .map(|(step, n)| (step.to_owned(), n, n))
    .collect()
}

/// Aborts the coordinator at each of `points` (the `crash-points` boundaries: a random hit of
/// each), then kills it at random points after it made progress, `KILLS` times (fewer if the
/// sagas all finish first), runs it to completion, then checks the sagas, the ledger and the
/// dead letters.
async fn kill_and_restart(
    engine: &str,
    env: &[(&str, String)],
    points: &[&str],
    ledger: &Ledger,
    dlq: &DeadLetters,
) {
    let mut seed = common::seed();
    for point in points {
        let before = ledger.rows().await;
        // An outbox hit is a whole relayed batch (on Kafka ten of them once relayed nearly all
        // the work, leaving none for the kills that follow): fewer of those.
        let most = if *point == "outbox.after_append" {
            3
        } else {
            10
        };
        let after_hits = 1 + common::random(&mut seed, most);
        let mut crash_env = env.to_vec();
        crash_env.push(("EVT_CRASH_POINT", (*point).to_owned()));
        crash_env.push(("EVT_CRASH_AFTER", after_hits.to_string()));
        let mut child = spawn(engine, &crash_env);
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{engine} coordinator never reached {point}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert_eq!(
            status.signal(),
            Some(6),
            "{engine} coordinator should abort at {point} (hit {after_hits}): {status:?}"
        );
        eprintln!(
            "{point} (hit {after_hits}): aborted with {} of {TOTAL} effects booked (was {before})",
            ledger.rows().await
        );
    }
    let mut mid_stream = 0;
    for round in 0..KILLS {
        let before = ledger.rows().await;
        if before == TOTAL {
            break;
        }
        let mut child = spawn(engine, env);
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut exited = false;
        while ledger.rows().await == before && Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                assert!(
                    status.success(),
                    "{engine} coordinator failed in round {round}"
                );
                exited = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if !exited {
            tokio::time::sleep(Duration::from_millis(common::random(&mut seed, 300))).await;
            child.kill().expect("SIGKILL");
        }
        child.wait().unwrap();
        let after = ledger.rows().await;
        if after > before && after < TOTAL {
            mid_stream += 1;
        }
        eprintln!("round {round}: killed with {after} of {TOTAL} effects booked");
    }
    assert!(mid_stream >= 2, "only {mid_stream} kills landed mid-stream");

    let started = Instant::now();
    let mut child = spawn(engine, env);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let mut counts = dlq.sagas().counts().await.unwrap();
            counts.sort();
            let letters = dlq.list(&LetterFilter::default()).await.unwrap();
            panic!(
                "the sagas did not finish in 60 s: sagas {counts:?}, ledger {:?}, {} dead letter(s): {:?}",
                ledger.per_step().await,
                letters.len(),
                letters
                    .iter()
                    .map(|l| (&l.group, &l.reason))
                    .take(3)
                    .collect::<Vec<_>>()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success());
    eprintln!(
        "the last run finished the sagas left in flight in {} ms",
        started.elapsed().as_millis()
    );

    let mut counts = dlq.sagas().counts().await.unwrap();
    counts.sort();
    assert_eq!(
        counts,
        [
            ("checkout".to_owned(), Status::Completed, SAGAS / 2),
            ("checkout".to_owned(), Status::Failed, SAGAS / 2),
            ("order".to_owned(), Status::Completed, SAGAS),
        ],
        "every order completed, every checkout completed or compensated, none left running"
    );
    assert_eq!(
        ledger.per_step().await,
        each_step_once(SAGAS),
        "each step's effect once per order"
    );
    let letters = dlq.list(&LetterFilter::default()).await.unwrap();
    assert!(letters.is_empty(), "{letters:?}");
}

/// A fresh SQLite engine file with `sagas` orders opened and an empty ledger: the engine, the
/// ledger and the coordinator's environment.
async fn on_sqlite(
    name: &str,
    sagas: u64,
) -> (
    event_runtime::transport::sqlite::SqliteTransport,
    Ledger,
    Vec<(&'static str, String)>,
) {
    let db = common::tempdir(name).join("log.db");
    let app = App::embedded(&db).await.unwrap();
    open_some(&app, sagas).await;
    drop(app);
    let file = event_runtime::transport::sqlite::SqliteTransport::open(&db)
        .await
        .unwrap();
    sqlx::query(CREATE_LEDGER)
        .execute(file.pool())
        .await
        .unwrap();
    let ledger = Ledger::Sqlite(file.pool().clone());
    (file, ledger, vec![("CRASH_DB", db.display().to_string())])
}

/// The bound this test states: 1,000 checkouts in flight (and the 1,000 orders beside them)
/// finish within it after a restart, on the SQLite engine of this 2-core machine.
const RESUME_BOUND: Duration = Duration::from_secs(45);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_thousand_sagas_in_flight_resume_within_the_bound_after_a_kill() {
    const THOUSAND: u64 = 1_000;
    let (file, ledger, env) = on_sqlite("saga-thousand", THOUSAND).await;
    let total = effects(THOUSAND);
    // Killed once a fifth of the effects are booked: most sagas are started and not finished.
    let mut child = spawn_for("sqlite", THOUSAND, &env);
    let deadline = Instant::now() + Duration::from_secs(120);
    while ledger.rows().await < total / 5 {
        assert!(Instant::now() < deadline, "no progress before the kill");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    let sagas = DeadLetters::new(&file).sagas();
    let in_flight: u64 = sagas
        .counts()
        .await
        .unwrap()
        .iter()
        .filter(|(_, status, _)| !status.is_finished())
        .map(|(_, _, n)| n)
        .sum();
    let started = Instant::now();
    let mut child = spawn_for("sqlite", THOUSAND, &env);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > RESUME_BOUND {
            let _ = child.kill();
            panic!(
                "{in_flight} sagas in flight did not finish within {RESUME_BOUND:?}: ledger {:?}",
                ledger.per_step().await
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success());
    let unbooked_at_restart = total - total / 5;
    eprintln!(
        "{in_flight} sagas in flight after the kill (up to {unbooked_at_restart} effects to book) finished in {} ms (bound {RESUME_BOUND:?})",
        started.elapsed().as_millis()
    );
    assert!(
        in_flight >= 500,
        "only {in_flight} sagas were in flight at the kill"
    );
    assert_eq!(ledger.rows().await, total, "each effect once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_saga_coordinator_killed_at_random_points_completes_every_saga_once() {
    let (file, ledger, env) = on_sqlite("saga-crash", SAGAS).await;
    let points = ["inbox.before_commit", "inbox.after_commit"];
    kill_and_restart("sqlite", &env, &points, &ledger, &DeadLetters::new(&file)).await;
}

/// On `engine` (`nats` or `kafka`, whose transport `open` builds under a prefix) with
/// PostgreSQL stores and ledger: opens the orders, then aborts and kills the coordinator.
async fn on_postgres<T: Transport>(
    engine: &str,
    server: (&str, String),
    open: impl std::future::Future<Output = (T, String)>,
    extra: &[(&str, String)],
) {
    let Some(pg) = common::server_url("EVT_POSTGRES_URL") else {
        return;
    };
    let (pool, schema) = common::postgres_schema()
        .await
        .expect("EVT_POSTGRES_URL was checked");
    sqlx::query(CREATE_LEDGER).execute(&pool).await.unwrap();
    let (transport, prefix) = open.await;
    let app = App::new(transport, Stores::in_memory().await.unwrap());
    open_some(&app, SAGAS).await;
    drop(app);
    let mut env = vec![
        server,
        ("CRASH_PREFIX", prefix),
        ("CRASH_POSTGRES_URL", pg),
        ("CRASH_SCHEMA", schema),
    ];
    env.extend(extra.iter().cloned());
    let dlq = DeadLetters::postgres(pool.clone()).await.unwrap();
    kill_and_restart(engine, &env, &OUTBOX_POINTS, &Ledger::Postgres(pool), &dlq).await;
}

/// A fresh topic prefix.
fn prefix() -> String {
    format!("sagacrash{}", uuid::Uuid::now_v7().simple())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_saga_coordinator_with_postgres_killed_at_random_points_completes_every_saga_once() {
    let Some(nats) = common::server_url("EVT_NATS_URL") else {
        return;
    };
    let open = async {
        let prefix = prefix();
        let config = event_nats::NatsConfig::new(nats.clone()).prefix(&prefix);
        (
            event_nats::NatsTransport::connect(config).await.unwrap(),
            prefix,
        )
    };
    on_postgres("nats", ("CRASH_NATS_URL", nats.clone()), open, &[]).await;
}

/// Whether process `pid` is stopped (SIGSTOP): the state in `/proc/<pid>/stat`.
fn stopped(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('T'))
    })
}

/// An instance frozen (SIGSTOP) inside its timer poller's transaction, holding due timers'
/// rows `FOR UPDATE` (deleted, not committed), on NATS with PostgreSQL stores: a second
/// instance takes its partitions once their claims lapse, and fires those timers once
/// PostgreSQL ends the frozen transaction (the poller's 10 s lease). Without the lease the
/// rows stay locked while the frozen process keeps its connection, the orders waiting on them
/// never ship, and the second instance never finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_a_frozen_timer_poller_hands_its_timers_to_another_instance() {
    const ORDERS: u64 = 20;
    let (Some(nats), Some(pg)) = (
        common::server_url("EVT_NATS_URL"),
        common::server_url("EVT_POSTGRES_URL"),
    ) else {
        return;
    };
    let (pool, schema) = common::postgres_schema()
        .await
        .expect("EVT_POSTGRES_URL was checked");
    sqlx::query(CREATE_LEDGER).execute(&pool).await.unwrap();
    let prefix = prefix();
    let transport = event_nats::NatsTransport::connect(
        event_nats::NatsConfig::new(nats.clone()).prefix(&prefix),
    )
    .await
    .unwrap();
    let app = App::new(transport, Stores::in_memory().await.unwrap());
    open_some(&app, ORDERS).await;
    drop(app);
    let env = [
        ("CRASH_NATS_URL", nats),
        ("CRASH_PREFIX", prefix),
        ("CRASH_POSTGRES_URL", pg),
        ("CRASH_SCHEMA", schema),
        ("CRASH_CLAIM_TTL_MS", "3000".to_owned()),
    ];
    let ledger = Ledger::Postgres(pool.clone());

    let mut frozen_env = env.to_vec();
    frozen_env.extend([
        ("CRASH_INSTANCE", "frozen".to_owned()),
        ("EVT_CRASH_POINT", "timers.taken".to_owned()),
        ("EVT_CRASH_ACTION", "stop".to_owned()),
    ]);
    let mut frozen = common::Running(spawn_for("nats", ORDERS, &frozen_env));
    let started = Instant::now();
    while !stopped(frozen.id()) {
        assert!(
            frozen.try_wait().unwrap().is_none(),
            "the first instance exited before its timer poller took a timer"
        );
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the first instance's timer poller never took a timer"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The frozen transaction holds its timers' rows: no other transaction can take them.
    let taken: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM (SELECT 1 FROM evt_saga_timers FOR UPDATE SKIP LOCKED) AS free",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let all: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM evt_saga_timers")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(
        taken < all,
        "{all} timer rows, none locked by the frozen poller"
    );
    eprintln!(
        "frozen with {} of {} timers locked, {} of {TOTAL_ORDERS} effects booked",
        all - taken,
        all,
        ledger.rows().await,
        TOTAL_ORDERS = effects(ORDERS)
    );

    let mut second_env = env.to_vec();
    second_env.push(("CRASH_INSTANCE", "second".to_owned()));
    let handover = Instant::now();
    let mut second = common::Running(spawn_for("nats", ORDERS, &second_env));
    let status = loop {
        if let Some(status) = second.try_wait().unwrap() {
            break status;
        }
        if handover.elapsed() > Duration::from_secs(90) {
            panic!(
                "the second instance did not finish the orders in 90 s: ledger {:?}",
                ledger.per_step().await
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    frozen.kill().expect("SIGKILL");
    frozen.wait().unwrap();
    assert!(status.success());
    let took = handover.elapsed();
    eprintln!(
        "the second instance finished every order {} ms after the freeze was seen",
        took.as_millis()
    );
    // The locked timers came back when the server ended the frozen transaction, its 10 s
    // lease after the freeze (seen within milliseconds), not sooner.
    assert!(
        took >= Duration::from_secs(8),
        "the frozen instance's timers were freed after {took:?}, before its transaction's lease ended"
    );
    assert_eq!(
        ledger.per_step().await,
        each_step_once(ORDERS),
        "each step's effect once per order, every timed shipment included"
    );
}

/// The boundaries of an engine whose stores are not its log: the outbox's too.
const OUTBOX_POINTS: [&str; 3] = [
    "inbox.before_commit",
    "inbox.after_commit",
    "outbox.after_append",
];

/// On tansu the coordinator produces one record per batch (tansu 0.6 reads a partition from the
/// first batch at or after the offset asked for, so a reader resuming inside a batch of several
/// records would skip the rest of it) and holds 6 s sessions (tansu pauses a rejoining member
/// for 3 s without counting it as contact: shorter sessions expire during the join).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_saga_coordinator_with_postgres_killed_at_random_points_completes_every_saga_once() {
    let Some(bootstrap) = common::server_url("EVT_KAFKA_BOOTSTRAP") else {
        return;
    };
    let open = async {
        let prefix = prefix();
        let config = event_kafka::KafkaConfig::new(bootstrap.clone()).prefix(&prefix);
        (
            event_kafka::KafkaTransport::connect(config).unwrap(),
            prefix,
        )
    };
    // A killed process's group session lapses in 6 s, so the next one gets its partitions.
    let session = [("CRASH_CLAIM_TTL_MS", "6000".to_owned())];
    on_postgres(
        "kafka",
        ("CRASH_KAFKA_BOOTSTRAP", bootstrap.clone()),
        open,
        &session,
    )
    .await;
}
