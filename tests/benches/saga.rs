//! Saga transitions against the same transaction written by hand, and timer lateness.
//!
//! **Transitions.** `EVENTS` events over `KEYS` keys, published before the app starts, then
//! drained by one group in inbox mode on the same engine and stores:
//! - `saga`: saga `counter` (`On<Bump>`: start, then `n + 1`): the runtime loads the instance
//!   (`FOR UPDATE` on PostgreSQL), decides, writes the row at its version, a history row;
//! - `hand`: a handler that does the same with sqlx through `Context::transaction`: `SELECT ...
//!   FOR UPDATE` of its own state row, JSON decode, `INSERT` or `UPDATE ... WHERE version = ?`,
//!   a history row.
//!
//! Both run the inbox's dedupe claim and commit, so the ratio is the saga layer's cost. Rounds
//! are interleaved, the median kept; p50/p99 per transition come from the group's process
//! duration histogram (bucket upper bounds). Goal: >= 0.7x.
//!
//! **Timer lateness.** `TIMERS` instances, each with one pending timer, written straight into
//! the SQLite stores, due evenly over `SPREAD` (100 a second); the app runs for `WATCH` and each
//! timeout records how late it ran (its transition's `now` minus the due time): lateness with
//! 100,000 timers pending. Goal: p99 <= 1 s.
//!
//! `cargo bench -p event-tests --bench saga` (or `scripts/bench.sh saga`; PostgreSQL from
//! `EVT_POSTGRES_URL`, skipped without it). Prints the figures; asserts nothing.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use event_bench_support::median;
use event_runtime::app::GroupOptions;
use event_runtime::saga::{Messages, On, Saga, Step, Transition, Unknown};
use event_runtime::transport::Transport;
use event_runtime::{App, Context, DomainEvent, Envelope, HandlerError, Stores};
use serde::{Deserialize, Serialize};

#[path = "../tests/common/mod.rs"]
mod common;

#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone)]
#[event(context = "bench_saga")]
struct Bump {
    #[event(key)]
    key: String,
}

const EVENTS: u64 = 4_000;
const KEYS: u64 = 64;
const ROUNDS: usize = 3;
const TIMERS: u64 = 100_000;
/// The timers are due evenly over this span: 100 per second.
const SPREAD: Duration = Duration::from_secs(1_000);
/// How long the lateness run watches them fire.
const WATCH: Duration = Duration::from_secs(15);

#[derive(Serialize, Deserialize, Debug)]
struct Counter {
    n: u64,
}

/// For the lateness run: when timer `t0` is due (ms since the epoch); `t{n}` is due `n` steps
/// of `SPREAD / TIMERS` later.
static BASE_MS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

fn due_ms(key: &str) -> i64 {
    let n: i64 = key[1..].parse().expect("t<n>");
    BASE_MS.load(std::sync::atomic::Ordering::Acquire)
        + n * SPREAD.as_millis() as i64 / TIMERS as i64
}

impl Saga for Counter {
    const NAME: &'static str = "counter";

    fn messages(on: &mut Messages<Self>) {
        on.on::<Bump>();
    }

    fn timeout(self, _: &str, step: &mut Step<'_>) -> Result<Transition<Self>, HandlerError> {
        let now = step
            .now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        LATENESS.lock().unwrap().push(now - due_ms(step.key()));
        Ok(Transition::complete(self))
    }
}

/// How late each timeout ran, in ms (the lateness run only).
static LATENESS: Mutex<Vec<i64>> = Mutex::new(Vec::new());

impl On<Bump> for Counter {
    const UNKNOWN: Unknown = Unknown::Start;

    fn key(event: &Bump) -> String {
        event.key.clone()
    }

    fn start(_: &Bump, _: &mut Step<'_>) -> Result<Transition<Self>, HandlerError> {
        Ok(Transition::next(Counter { n: 1 }))
    }

    fn handle(self, _: &Bump, _: &mut Step<'_>) -> Result<Transition<Self>, HandlerError> {
        Ok(Transition::next(Counter { n: self.n + 1 }))
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Saga,
    Hand,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Db {
    Sqlite,
    Postgres,
}

const HAND_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS hand_state (key TEXT PRIMARY KEY, version BIGINT NOT NULL, state TEXT NOT NULL); \
     CREATE TABLE IF NOT EXISTS hand_history (key TEXT NOT NULL, version BIGINT NOT NULL, at_ms BIGINT NOT NULL)";

/// The hand-written transition, in the inbox transaction `tx`, with the statements of one
/// dialect.
macro_rules! by_hand {
    ($tx:expr, $key:expr, $select:literal, $insert:literal, $update:literal, $history:literal) => {{
        let tx = $tx;
        let row: Option<(i64, String)> = sqlx::query_as($select)
            .bind($key)
            .fetch_optional(&mut **tx)
            .await?;
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let version = match row {
            None => {
                let state = serde_json::to_string(&Counter { n: 1 })?;
                sqlx::query($insert)
                    .bind($key)
                    .bind(state)
                    .execute(&mut **tx)
                    .await?;
                1
            }
            Some((version, state)) => {
                let counter: Counter = serde_json::from_str(&state)?;
                let state = serde_json::to_string(&Counter { n: counter.n + 1 })?;
                let done = sqlx::query($update)
                    .bind(version + 1)
                    .bind(state)
                    .bind($key)
                    .bind(version)
                    .execute(&mut **tx)
                    .await?;
                if done.rows_affected() != 1 {
                    return Err(HandlerError::transient("changed meanwhile"));
                }
                version + 1
            }
        };
        sqlx::query($history)
            .bind($key)
            .bind(version)
            .bind(now)
            .execute(&mut **tx)
            .await?;
    }};
}

async fn hand(event: Envelope<Bump>, ctx: Context) -> Result<(), HandlerError> {
    let key = event.data.key;
    if let Some(mut tx) = ctx.transaction::<sqlx::Sqlite>().await {
        by_hand!(
            &mut *tx,
            &key,
            "SELECT version, state FROM hand_state WHERE key = ?",
            "INSERT INTO hand_state (key, version, state) VALUES (?, 1, ?)",
            "UPDATE hand_state SET version = ?, state = ? WHERE key = ? AND version = ?",
            "INSERT INTO hand_history (key, version, at_ms) VALUES (?, ?, ?)"
        );
        return Ok(());
    }
    let mut tx = ctx
        .transaction::<sqlx::Postgres>()
        .await
        .ok_or("inbox mode expected")?;
    by_hand!(
        &mut *tx,
        &key,
        "SELECT version, state FROM hand_state WHERE key = $1 FOR UPDATE",
        "INSERT INTO hand_state (key, version, state) VALUES ($1, 1, $2)",
        "UPDATE hand_state SET version = $1, state = $2 WHERE key = $3 AND version = $4",
        "INSERT INTO hand_history (key, version, at_ms) VALUES ($1, $2, $3)"
    );
    Ok(())
}

/// The result of one drain.
struct Drained {
    seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// The upper bound of the bucket holding quantile `q` of `h`, in ms.
fn quantile(h: &event_runtime::telemetry::HistogramSnapshot, q: f64) -> f64 {
    let rank = (q * h.count as f64).ceil() as u64;
    h.buckets
        .iter()
        .find(|(_, cumulative)| *cumulative >= rank)
        .map_or(f64::INFINITY, |(bound, _)| bound * 1000.0)
}

async fn drain<T: Transport>(mut app: App<T>, mode: Mode) -> Drained {
    let group = match mode {
        Mode::Saga => {
            app.saga::<Counter>();
            "saga.counter"
        }
        Mode::Hand => {
            app.group_options(
                "hand",
                GroupOptions {
                    inbox: true,
                    ..GroupOptions::default()
                },
            )
            .subscribe::<Bump, _>("hand", hand);
            "hand"
        }
    };
    let publisher = app.publisher();
    for chunk in (0..EVENTS).collect::<Vec<_>>().chunks(500) {
        let batch = chunk
            .iter()
            .map(|n| {
                Envelope::event(Bump {
                    key: format!("k{}", n % KEYS),
                })
            })
            .collect();
        publisher.publish_all(batch).await.unwrap();
    }
    let started = Instant::now();
    let running = app.start().await.unwrap();
    assert!(running.wait_idle(Duration::from_secs(300)).await);
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(running.stats(group).unwrap().handled, EVENTS);
    let snapshot = running.metrics().refresh().await.unwrap();
    let h = &snapshot
        .groups
        .iter()
        .find(|g| g.group == group)
        .unwrap()
        .process_duration;
    let drained = Drained {
        seconds,
        p50_ms: quantile(h, 0.5),
        p99_ms: quantile(h, 0.99),
    };
    running.stop().await;
    drained
}

async fn round(db: Db, mode: Mode) -> Drained {
    match db {
        Db::Sqlite => {
            let dir = common::tempdir("bench-saga");
            let app = App::embedded(dir.join("log.db")).await.unwrap();
            let file = event_runtime::transport::sqlite::SqliteTransport::open(dir.join("log.db"))
                .await
                .unwrap();
            sqlx::raw_sql(HAND_SCHEMA)
                .execute(file.pool())
                .await
                .unwrap();
            drain(app, mode).await
        }
        Db::Postgres => {
            let (pool, _) = common::postgres_schema().await.expect("EVT_POSTGRES_URL");
            sqlx::raw_sql(HAND_SCHEMA).execute(&pool).await.unwrap();
            let app = App::new(
                event_runtime::transport::memory::MemoryTransport::new(),
                Stores::postgres(pool).await.unwrap(),
            );
            drain(app, mode).await
        }
    }
}

/// `TIMERS` instances with a timer each, due over `SPREAD` from now, written into a fresh
/// embedded file; the app runs for `WATCH`. The lateness percentiles and maximum, in ms, and
/// how many fired.
async fn lateness() -> (i64, i64, i64, usize) {
    let dir = common::tempdir("bench-saga-timers");
    let mut app = App::embedded(dir.join("log.db")).await.unwrap();
    // The tables exist once the stores are opened; write the rows in one transaction.
    let file = event_runtime::transport::sqlite::SqliteTransport::open(dir.join("log.db"))
        .await
        .unwrap();
    let pool = file.pool().clone();
    // Written due in a far future, then moved in one statement to start a second from now, so
    // the time the inserts take does not make the first timers late.
    let far = i64::MAX / 4;
    let mut tx = pool.begin().await.unwrap();
    let state = serde_json::to_vec(&Counter { n: 0 }).unwrap();
    for n in 0..TIMERS {
        let key = format!("t{n}");
        let due = far + (n as i64 * SPREAD.as_millis() as i64) / TIMERS as i64;
        sqlx::query("INSERT INTO evt_sagas (saga, key, version, status, state, timers, reason, created_ms, updated_ms) VALUES ('counter', ?, 1, 'running', ?, '{\"t\":1}', NULL, 0, 0)")
            .bind(&key)
            .bind(&state)
            .execute(&mut *tx)
            .await
            .unwrap();
        sqlx::query("INSERT INTO evt_saga_timers (saga, key, name, token, due_ms, correlation_id, causation_id) VALUES ('counter', ?, 't', 1, ?, NULL, NULL)")
            .bind(&key)
            .bind(due)
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    let base = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        + 1_000;
    BASE_MS.store(base, std::sync::atomic::Ordering::Release);
    sqlx::query("UPDATE evt_saga_timers SET due_ms = due_ms - ?")
        .bind(far - base)
        .execute(&pool)
        .await
        .unwrap();
    LATENESS.lock().unwrap().clear();
    app.saga::<Counter>();
    let running = app.start().await.unwrap();
    tokio::time::sleep(WATCH).await;
    running.stop().await;
    let mut late = LATENESS.lock().unwrap().clone();
    assert!(!late.is_empty(), "no timer fired");
    late.sort_unstable();
    let at = |q: f64| late[((q * late.len() as f64) as usize).min(late.len() - 1)];
    (at(0.5), at(0.99), *late.last().unwrap(), late.len())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut dbs = vec![Db::Sqlite];
    if common::server_url("EVT_POSTGRES_URL").is_some() {
        dbs.push(Db::Postgres);
    } else {
        println!("PostgreSQL skipped: EVT_POSTGRES_URL is not set (scripts/bench.sh saga sets it)");
    }
    for db in dbs {
        round(db, Mode::Saga).await; // warm-up
        let mut saga = Vec::new();
        let mut hand = Vec::new();
        for _ in 0..ROUNDS {
            saga.push(round(db, Mode::Saga).await);
            hand.push(round(db, Mode::Hand).await);
        }
        let rate = |d: &[Drained]| EVENTS as f64 / median(d.iter().map(|d| d.seconds).collect());
        let (s, h) = (rate(&saga), rate(&hand));
        let p = |d: &[Drained], f: fn(&Drained) -> f64| median(d.iter().map(f).collect());
        println!(
            "{db:?}: {EVENTS} transitions over {KEYS} keys, median of {ROUNDS} interleaved rounds:\n  \
             saga {s:>8.0}/s  p50 <= {:.1} ms  p99 <= {:.1} ms\n  \
             hand {h:>8.0}/s  p50 <= {:.1} ms  p99 <= {:.1} ms\n  \
             saga / hand: {:.2}x (goal >= 0.70x)",
            p(&saga, |d| d.p50_ms),
            p(&saga, |d| d.p99_ms),
            p(&hand, |d| d.p50_ms),
            p(&hand, |d| d.p99_ms),
            s / h
        );
    }
    let (p50, p99, max, fired) = lateness().await;
    println!(
        "timer lateness with {TIMERS} timers pending (due {} a second) on the embedded engine, \
         {fired} fired in {} s: p50 {p50} ms, p99 {p99} ms (goal <= 1000 ms), max {max} ms",
        TIMERS / SPREAD.as_secs(),
        WATCH.as_secs()
    );
}
