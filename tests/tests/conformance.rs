//! The engine conformance kit (`event-conformance`) on the engines of `event-runtime` itself:
//! the memory engine and the SQLite engine run every case; NATS JetStream and Kafka run it from
//! their own crates (`event-nats/tests/conformance.rs`, `event-kafka/tests/conformance.rs`).
//!
//! The store-dependent cases (dead letters, sequenced parking and redrive, replay, dedupe) also
//! run on the memory engine with PostgreSQL stores, in the database of `EVT_POSTGRES_URL` (each
//! test in a schema of its own), and so do the PostgreSQL inbox and credential tests. Skipped
//! without it, except under `CI`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use event_conformance::Engine;
use event_runtime::app::GroupOptions;
use event_runtime::retry::RetryPolicy;
use event_runtime::transport::memory::MemoryTransport;
use event_runtime::transport::sqlite::SqliteTransport;
use event_runtime::{App, Context, Envelope, HandlerError, Stores};

mod common;
use common::{Step, steps, tempdir};

// ---------------------------------------------------------------------------------------------
// Engines
// ---------------------------------------------------------------------------------------------

/// The memory engine with in-memory stores.
struct Memory {
    transport: MemoryTransport,
    stores: Stores,
}

impl Engine for Memory {
    type Transport = MemoryTransport;

    async fn create(_test: &str) -> Option<Self> {
        Some(Memory {
            transport: MemoryTransport::new(),
            stores: Stores::in_memory().await.unwrap(),
        })
    }

    async fn transport(&self) -> MemoryTransport {
        self.transport.clone()
    }

    async fn app(&self) -> App<MemoryTransport> {
        App::new(self.transport.clone(), self.stores.clone())
    }
}

/// The SQLite engine: the log and the stores in one file.
struct Sqlite {
    path: std::path::PathBuf,
}

impl Engine for Sqlite {
    type Transport = SqliteTransport;

    async fn create(test: &str) -> Option<Self> {
        Some(Sqlite {
            path: tempdir(test).join("log.db"),
        })
    }

    async fn transport(&self) -> SqliteTransport {
        SqliteTransport::open(&self.path).await.unwrap()
    }

    async fn app(&self) -> App<SqliteTransport> {
        App::embedded(&self.path).await.unwrap()
    }
}

/// The memory engine with its dead letters and dedupe marks in PostgreSQL, in a schema of its
/// own (created here): tests never see each other's rows.
struct PgStores {
    transport: MemoryTransport,
    stores: Stores,
    pool: sqlx::PgPool,
}

impl Engine for PgStores {
    type Transport = MemoryTransport;

    async fn create(_test: &str) -> Option<Self> {
        let (pool, _) = common::postgres_schema().await?;
        Some(PgStores {
            transport: MemoryTransport::new(),
            stores: Stores::postgres(pool.clone()).await.unwrap(),
            pool,
        })
    }

    async fn transport(&self) -> MemoryTransport {
        self.transport.clone()
    }

    async fn app(&self) -> App<MemoryTransport> {
        App::new(self.transport.clone(), self.stores.clone())
    }
}

mod memory {
    event_conformance::conformance_tests!(crate::Memory);
}

mod sqlite {
    event_conformance::conformance_tests!(crate::Sqlite);
}

/// The cases that depend on the stores (not on the engine), with the stores in PostgreSQL.
mod postgres_stores {
    event_conformance::conformance_tests!(crate::PgStores;
        a_record_has_one_open_dead_letter,
        purging_a_keys_letters_cancels_their_released_redrives,
        a_producer_retry_has_its_effect_once,
        events_sharing_a_dedupe_key_are_handled_once,
        a_dedupe_key_in_flight_is_handled_once,
        poison_goes_to_the_dlq_without_blocking_other_records,
        sequenced_mode_parks_later_events_of_a_failed_key_until_redrive,
        replay_is_idempotent_unless_dedupe_is_bypassed,
        requests_this_instance_cannot_run_never_hold_up_the_others,
        closed_dead_letters_are_deleted_after_their_retention,
    );

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn inbox_has_its_effect_in_postgres_once() {
        event_conformance::run::<crate::PgStores, _, _>(
            "inbox_has_its_effect_in_postgres_once",
            super::postgres_inbox_has_its_effect_once,
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_inbox_transaction_lives_while_its_handler_awaits_and_ends_when_held_idle() {
        event_conformance::run::<crate::PgStores, _, _>(
            "an_inbox_transaction_lives_while_its_handler_awaits_and_ends_when_held_idle",
            super::postgres_inbox_transaction_is_leased,
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn opening_the_stores_beside_a_writing_app_does_not_wait() {
        event_conformance::run::<crate::PgStores, _, _>(
            "opening_the_stores_beside_a_writing_app_does_not_wait",
            super::postgres_open_beside_a_writer,
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_credentials_in_debug_or_errors() {
        event_conformance::run::<crate::PgStores, _, _>(
            "no_credentials_in_debug_or_errors",
            super::postgres_credentials_stay_private,
        )
        .await;
    }
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL stores
// ---------------------------------------------------------------------------------------------

/// The inbox transaction on PostgreSQL is leased for `claim_ttl` (1 s here): a handler that
/// awaits for 2.5 leases without holding it writes on its first attempt (the runtime keeps the
/// transaction alive), while one that holds it idle for as long finds it ended by the server
/// (so a paused instance cannot hold its keys), fails that attempt and writes on the retry. A
/// handler whose statement failed in the transaction (so the keep-alives fail) can still take
/// it again.
async fn postgres_inbox_transaction_is_leased(backend: PgStores) {
    sqlx::raw_sql("CREATE TABLE leased_rows (account TEXT NOT NULL, attempt INT NOT NULL)")
        .execute(&backend.pool)
        .await
        .unwrap();
    let mut app = backend.app().await;
    let held_once = Arc::new(AtomicBool::new(false));
    let aborted_once = Arc::new(AtomicBool::new(false));
    let (flag, aborted) = (held_once.clone(), aborted_once.clone());
    app.partitions(2)
        .group_options(
            "leased",
            GroupOptions {
                inbox: true,
                claim_ttl: Duration::from_secs(1),
                retry: RetryPolicy {
                    immediate: 3,
                    ..RetryPolicy::none()
                },
                ..GroupOptions::default()
            },
        )
        .subscribe::<Step, _>("leased", move |event: Envelope<Step>, ctx: Context| {
            let (flag, aborted) = (flag.clone(), aborted.clone());
            async move {
                if event.data.account == "aborts" && !aborted.swap(true, Ordering::SeqCst) {
                    // A statement fails in the transaction, then the handler awaits without
                    // it (a keep-alive fails meanwhile) and takes it again: it must get it.
                    let mut tx = ctx
                        .transaction::<sqlx::Postgres>()
                        .await
                        .ok_or_else(|| HandlerError::permanent("no inbox transaction"))?;
                    if sqlx::query("SELECT 1 / 0").execute(&mut **tx).await.is_ok() {
                        return Err(HandlerError::permanent("1 / 0 did not fail"));
                    }
                    drop(tx);
                    tokio::time::sleep(Duration::from_millis(600)).await;
                    let _again = ctx.transaction::<sqlx::Postgres>().await;
                    return Err(HandlerError::transient("the transaction is aborted"));
                }
                let first = if event.data.account == "holds" {
                    !flag.swap(true, Ordering::SeqCst)
                } else {
                    false
                };
                if !first {
                    // Awaits without the transaction: kept alive meanwhile.
                    tokio::time::sleep(Duration::from_millis(2500)).await;
                }
                let mut tx = ctx
                    .transaction::<sqlx::Postgres>()
                    .await
                    .ok_or_else(|| HandlerError::permanent("no PostgreSQL inbox transaction"))?;
                if first {
                    // Holds it idle past the lease: the server ends it.
                    tokio::time::sleep(Duration::from_millis(2500)).await;
                }
                sqlx::query("INSERT INTO leased_rows (account, attempt) VALUES ($1, $2)")
                    .bind(&event.data.account)
                    .bind(i32::from(first))
                    .execute(&mut **tx)
                    .await
                    .map_err(HandlerError::transient)?;
                Ok(())
            }
        });
    let publisher = app.publisher();
    for account in ["aborts", "awaits", "holds"] {
        publisher
            .publish(Envelope::event(Step {
                account: account.to_owned(),
                seq: 0,
            }))
            .await
            .unwrap();
    }
    let running = app.start().await.unwrap();
    assert!(running.wait_idle(Duration::from_secs(30)).await);
    let rows: Vec<(String, i32)> =
        sqlx::query_as("SELECT account, attempt FROM leased_rows ORDER BY account")
            .fetch_all(&backend.pool)
            .await
            .unwrap();
    assert_eq!(
        rows,
        [
            ("aborts".to_owned(), 0),
            ("awaits".to_owned(), 0),
            ("holds".to_owned(), 0)
        ],
        "each written once, by an attempt that did not hold its transaction idle"
    );
    let stats = running.stats("leased").unwrap();
    assert_eq!((stats.handled, stats.retries), (3, 2), "{stats:?}");
    assert_eq!(stats.dead_lettered, 0, "{stats:?}");
}

/// Inbox with PostgreSQL stores: the handler writes through `Context::transaction::<sqlx::Postgres>()`; a producer
/// retry (the same event twice) and a failed attempt (its write rolled back) leave one row per
/// event, and the emitted events reach the log.
async fn postgres_inbox_has_its_effect_once(backend: PgStores) {
    sqlx::raw_sql(
        "CREATE TABLE ledger_rows (event_id TEXT NOT NULL, account TEXT NOT NULL, seq BIGINT NOT NULL)",
    )
    .execute(&backend.pool)
    .await
    .unwrap();
    let mut app = backend.app().await;
    let failed_once = Arc::new(AtomicBool::new(false));
    let flag = failed_once.clone();
    app.partitions(2)
        .group_options(
            "pg-inbox",
            GroupOptions {
                inbox: true,
                retry: RetryPolicy {
                    immediate: 3,
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
                sqlx::query("INSERT INTO ledger_rows (event_id, account, seq) VALUES ($1, $2, $3)")
                    .bind(event.id.to_string())
                    .bind(&event.data.account)
                    .bind(i64::from(event.data.seq))
                    .execute(&mut **tx)
                    .await?;
                drop(tx);
                if event.data.seq == 1 && !flag.swap(true, Ordering::SeqCst) {
                    // After the write: the retry must not find it.
                    return Err(HandlerError::transient("database hiccup"));
                }
                if event.data.account == "acct-0" {
                    ctx.publish(Step {
                        account: format!("echo-{}", event.data.seq),
                        seq: event.data.seq,
                    })?;
                }
                Ok(())
            }
        });
    let publisher = app.publisher();
    let events = steps(2, 2);
    publisher.publish_all(events.clone()).await.unwrap();
    // The producer could not confirm and sends everything again: same ids, same dedupe keys.
    publisher.publish_all(events.clone()).await.unwrap();
    let running = app.start().await.unwrap();
    assert!(running.wait_idle(Duration::from_secs(30)).await);
    assert!(
        failed_once.load(Ordering::SeqCst),
        "the failing attempt ran"
    );

    let rows: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT event_id, account, seq FROM ledger_rows ORDER BY account, seq")
            .fetch_all(&backend.pool)
            .await
            .unwrap();
    let mut expected: Vec<(String, String, i64)> = events
        .iter()
        .map(|e| {
            (
                e.id.to_string(),
                e.data.account.clone(),
                i64::from(e.data.seq),
            )
        })
        .collect();
    // The echoes were emitted by this group into the topic it reads: handled (and written) too.
    let echoes: Vec<(String, i64)> = rows
        .iter()
        .filter(|(_, account, _)| account.starts_with("echo-"))
        .map(|(_, account, seq)| (account.clone(), *seq))
        .collect();
    assert_eq!(
        echoes,
        [("echo-0".to_owned(), 0), ("echo-1".to_owned(), 1)],
        "each emitted event once"
    );
    let mut handled: Vec<(String, String, i64)> = rows
        .into_iter()
        .filter(|(_, account, _)| !account.starts_with("echo-"))
        .collect();
    expected.sort_by(|a, b| (&a.1, a.2).cmp(&(&b.1, b.2)));
    handled.sort_by(|a, b| (&a.1, a.2).cmp(&(&b.1, b.2)));
    assert_eq!(handled, expected, "each event's effect exactly once");

    let stats = running.stats("pg-inbox").unwrap();
    // 4 events + 2 echoes handled; 4 copies dropped by the claim; the failed attempt was retried.
    assert_eq!((stats.handled, stats.duplicates), (6, 4), "{stats:?}");
    assert!(stats.retries >= 1, "{stats:?}");
    assert_eq!(stats.dead_lettered, 0, "{stats:?}");
    let marks: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM evt_dedupe WHERE grp = 'pg-inbox'")
        .fetch_one(&backend.pool)
        .await
        .unwrap();
    assert_eq!(marks, 6);
    running.stop().await;
}

/// `evt` opens the stores while the app runs: the open must neither wait for nor deadlock with
/// an app transaction that writes a dead letter and a dedupe mark (it did, when the open ran
/// `CREATE INDEX IF NOT EXISTS`, which locks its table, on every start).
async fn postgres_open_beside_a_writer(backend: PgStores) {
    let mut app = backend.pool.begin().await.unwrap();
    sqlx::query("INSERT INTO evt_dedupe (grp, key, seen_ms) VALUES ('g', 'k', 0)")
        .execute(&mut *app)
        .await
        .unwrap();
    sqlx::query("UPDATE evt_dead_letters SET status = status")
        .execute(&mut *app)
        .await
        .unwrap();
    let opened = tokio::time::timeout(
        Duration::from_secs(5),
        Stores::postgres(backend.pool.clone()),
    )
    .await
    .expect("opening the stores waited for the app's transaction");
    opened.unwrap();
    app.commit().await.unwrap();
}

/// The stores never print or report the connection settings: neither their `Debug` output nor
/// the error of a database that cannot be reached holds the URL or its password.
async fn postgres_credentials_stay_private(backend: PgStores) {
    use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
    let debug = format!("{:?}", backend.stores.dead_letters());
    assert!(
        !debug.contains("127.0.0.1") && !debug.contains("postgres://"),
        "{debug}"
    );

    // A server that is not there, with a password in the URL.
    let secret = "hunter2-secret";
    let url = format!("postgres://evt_user:{secret}@127.0.0.1:1/evt");
    let options: PgConnectOptions = url.parse().unwrap();
    let pool = PgPoolOptions::new()
        .acquire_timeout(Duration::from_secs(2))
        .connect_lazy_with(options);
    let err = event_runtime::dlq::DeadLetters::postgres(pool.clone())
        .await
        .unwrap_err();
    let mut texts = vec![err.to_string(), format!("{err:?}")];
    let mut source = std::error::Error::source(&err);
    while let Some(next) = source {
        texts.push(next.to_string());
        source = next.source();
    }
    for text in &texts {
        assert!(!text.contains(secret), "{text}");
        assert!(!text.contains(&url), "{text}");
    }
    let err = Stores::postgres(pool).await.err().expect("unreachable");
    assert!(!format!("{err} {err:?}").contains(secret));
}
