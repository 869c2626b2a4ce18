//! A consumer process for the crash tests (`tests/tests/crash.rs`): it consumes `ledger.entry`
//! events in inbox mode, writing one ledger row per event in the handler's transaction and
//! emitting one `postings.posted` event in that same transaction, and exits 0 once it has caught
//! up with `expected` events and is idle (the outbox relayed). The tests kill it with SIGKILL at
//! random points and start it again.
//!
//! Usage: `crash_consumer <engine> <expected> <per-event-delay-ms>`, the engine being one of
//!
//! - `sqlite`: the log, the inbox and the `ledger` table in the SQLite file `CRASH_DB`;
//! - `nats`: the log on the NATS server `CRASH_NATS_URL` under the prefix `CRASH_PREFIX`;
//! - `nats+sqlite`: the log on NATS as for `nats`, the stores (dedupe claims, dead letters, the
//!   outbox) and the `ledger` table in the SQLite file `CRASH_DB`: the inbox transaction is the
//!   file's, and the emitted events reach NATS through the SQLite outbox;
//! - `kafka`: the log on the Kafka broker `CRASH_KAFKA_BOOTSTRAP` under the prefix `CRASH_PREFIX`.
//!
//! For `nats` and `kafka` the stores (dedupe claims, dead letters) and the `ledger` table are in
//! PostgreSQL, at `CRASH_POSTGRES_URL` in the schema `CRASH_SCHEMA`: the inbox transaction is a
//! PostgreSQL one.
//!
//! `CRASH_INSTANCE` names the instance (default `crash-consumer`: one instance, restarted), which
//! each ledger row records; `CRASH_CLAIM_TTL_MS` sets `GroupOptions::claim_ttl`. Several
//! processes with different instances share the group's partitions (`tests/tests/instances.rs`).

use std::time::Duration;

use event_runtime::app::GroupOptions;
use event_runtime::transport::Transport;
use event_runtime::{App, Context, DomainEvent, Envelope, HandlerError, Stores};
use serde::{Deserialize, Serialize};

/// One ledger entry.
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone)]
#[event(context = "ledger", name = "ledger.entry")]
struct Entry {
    #[event(key)]
    account: String,
    seq: u32,
}

/// What the handler emits for each entry it books, in the same transaction as the booking (the
/// SQLite log itself, or the stores' outbox).
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone)]
#[event(context = "postings", name = "postings.posted")]
struct Posted {
    #[event(key)]
    account: String,
    seq: u32,
}

type Error = Box<dyn std::error::Error + Send + Sync>;

fn var(name: &str) -> Result<String, Error> {
    std::env::var(name).map_err(|_| format!("{name} is not set").into())
}

fn options() -> GroupOptions {
    GroupOptions {
        inbox: true,
        concurrency: 4,
        batch: 16,
        claim_ttl: std::env::var("CRASH_CLAIM_TTL_MS")
            .ok()
            .and_then(|ms| ms.parse().ok())
            .map_or(GroupOptions::default().claim_ttl, Duration::from_millis),
        ..GroupOptions::default()
    }
}

/// This instance's id: `CRASH_INSTANCE`, or `crash-consumer` (one instance restarted).
fn instance() -> String {
    std::env::var("CRASH_INSTANCE").unwrap_or_else(|_| "crash-consumer".to_owned())
}

/// A pool on the PostgreSQL schema of the test.
async fn postgres() -> Result<sqlx::PgPool, Error> {
    let options: sqlx::postgres::PgConnectOptions = var("CRASH_POSTGRES_URL")?.parse()?;
    let schema = var("CRASH_SCHEMA")?;
    Ok(sqlx::postgres::PgPoolOptions::new()
        .max_connections(8)
        .connect_with(options.options([("search_path", schema.as_str())]))
        .await?)
}

/// Runs `app` until `rows` reports `expected` distinct events handled and the app is idle.
async fn until_caught_up<T, F, Fut>(mut app: App<T>, expected: i64, rows: F) -> Result<(), Error>
where
    T: Transport,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<i64, sqlx::Error>>,
{
    // The id of this instance across its restarts (a pod name would do), so a restart after a
    // SIGKILL takes its partitions back at once instead of waiting for its claims to lapse.
    app.instance(&instance());
    let running = app.start().await?;
    loop {
        if rows().await? >= expected && running.wait_idle(Duration::from_millis(1)).await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    running.stop().await;
    Ok(())
}

/// The app on `transport` with PostgreSQL stores, writing the ledger through the PostgreSQL
/// inbox transaction.
async fn on_postgres<T: Transport>(
    transport: T,
    expected: i64,
    delay: Duration,
) -> Result<(), Error> {
    let pool = postgres().await?;
    let mut app = App::new(transport, Stores::postgres(pool.clone()).await?);
    app.group_options("ledger-writer", options())
        .subscribe::<Entry, _>(
            "ledger-writer",
            move |event: Envelope<Entry>, ctx: Context| async move {
                tokio::time::sleep(delay).await;
                let mut tx = ctx
                    .transaction::<sqlx::Postgres>()
                    .await
                    .ok_or("inbox mode expected")?;
                sqlx::query(
                    "INSERT INTO ledger (event_id, account, seq, instance) VALUES ($1, $2, $3, $4)",
                )
                .bind(event.id.to_string())
                .bind(&event.data.account)
                .bind(i64::from(event.data.seq))
                .bind(instance())
                .execute(&mut **tx)
                .await?;
                drop(tx);
                ctx.publish(Posted {
                    account: event.data.account.clone(),
                    seq: event.data.seq,
                })?;
                Ok::<(), HandlerError>(())
            },
        );
    until_caught_up(app, expected, || async {
        sqlx::query_scalar("SELECT COUNT(DISTINCT event_id) FROM ledger")
            .fetch_one(&pool)
            .await
    })
    .await
}

/// Subscribes the ledger writer, booking through the SQLite inbox transaction.
fn book_in_sqlite<T: Transport>(app: &mut App<T>, delay: Duration) {
    app.group_options("ledger-writer", options())
        .subscribe::<Entry, _>(
            "ledger-writer",
            move |event: Envelope<Entry>, ctx: Context| async move {
                tokio::time::sleep(delay).await;
                let mut tx = ctx
                    .transaction::<sqlx::Sqlite>()
                    .await
                    .ok_or("inbox mode expected")?;
                sqlx::query(
                    "INSERT INTO ledger (event_id, account, seq, instance) VALUES (?, ?, ?, ?)",
                )
                .bind(event.id.to_string())
                .bind(&event.data.account)
                .bind(event.data.seq)
                .bind(instance())
                .execute(&mut **tx)
                .await?;
                drop(tx);
                ctx.publish(Posted {
                    account: event.data.account.clone(),
                    seq: event.data.seq,
                })?;
                Ok::<(), HandlerError>(())
            },
        );
}

/// Runs `app` (booking in the SQLite file `CRASH_DB`) until the ledger holds `expected` events.
async fn until_booked_in_sqlite<T: Transport>(app: App<T>, expected: i64) -> Result<(), Error> {
    let pool = event_runtime::transport::sqlite::SqliteTransport::open(var("CRASH_DB")?)
        .await?
        .pool()
        .clone();
    until_caught_up(app, expected, || async {
        sqlx::query_scalar("SELECT COUNT(DISTINCT event_id) FROM ledger")
            .fetch_one(&pool)
            .await
    })
    .await
}

/// The embedded app: log, inbox and ledger in one SQLite file.
async fn on_sqlite(expected: i64, delay: Duration) -> Result<(), Error> {
    let mut app = App::embedded(var("CRASH_DB")?).await?;
    book_in_sqlite(&mut app, delay);
    until_booked_in_sqlite(app, expected).await
}

/// The app on `transport` with SQLite stores in `CRASH_DB`: the inbox transaction is the file's,
/// and the emitted events reach `transport` through the file's outbox.
async fn on_sqlite_stores<T: Transport>(
    transport: T,
    expected: i64,
    delay: Duration,
) -> Result<(), Error> {
    let file = event_runtime::transport::sqlite::SqliteTransport::open(var("CRASH_DB")?).await?;
    let mut app = App::new(transport, Stores::sqlite(&file));
    book_in_sqlite(&mut app, delay);
    until_booked_in_sqlite(app, expected).await
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Error> {
    // The runtime's warnings (failed writes, lost claims), tagged with the instance; more with
    // `CRASH_LOG` (`info`: the Kafka member's rebalances).
    let level = std::env::var("CRASH_LOG")
        .ok()
        .and_then(|level| level.parse().ok())
        .unwrap_or(tracing_subscriber::filter::LevelFilter::WARN);
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let args: Vec<String> = std::env::args().collect();
    let [_, engine, expected, delay_ms] = args.as_slice() else {
        return Err(
            "usage: crash_consumer <sqlite|nats|nats+sqlite|kafka> <expected> <per-event-delay-ms>"
                .into(),
        );
    };
    let expected: i64 = expected.parse()?;
    let delay = Duration::from_millis(delay_ms.parse()?);
    match engine.as_str() {
        "sqlite" => on_sqlite(expected, delay).await,
        "nats" => {
            let config =
                event_nats::NatsConfig::new(var("CRASH_NATS_URL")?).prefix(var("CRASH_PREFIX")?);
            on_postgres(
                event_nats::NatsTransport::connect(config).await?,
                expected,
                delay,
            )
            .await
        }
        "nats+sqlite" => {
            let config =
                event_nats::NatsConfig::new(var("CRASH_NATS_URL")?).prefix(var("CRASH_PREFIX")?);
            on_sqlite_stores(
                event_nats::NatsTransport::connect(config).await?,
                expected,
                delay,
            )
            .await
        }
        "kafka" => {
            // One record per produce batch: tansu 0.6's ListOffsets counts a batch as one
            // record (see the conformance suite).
            let config = event_kafka::KafkaConfig::new(var("CRASH_KAFKA_BOOTSTRAP")?)
                .prefix(var("CRASH_PREFIX")?)
                .client_option("batch.num.messages", "1");
            on_postgres(
                event_kafka::KafkaTransport::connect(config)?,
                expected,
                delay,
            )
            .await
        }
        other => {
            Err(format!("unknown engine `{other}`: sqlite, nats, nats+sqlite or kafka").into())
        }
    }
}
