//! The PostgreSQL inbox consumer against a naive loop, same database, same run, same events.
//!
//! - **framework:** an app's group in inbox mode with PostgreSQL stores (the memory engine as the
//!   log): batches fetched from the log, one lane per key, and per event one PostgreSQL
//!   transaction holding the dedupe claim and the handler's `INSERT`; positions committed per
//!   batch.
//! - **naive:** the same records fetched from the same log, then for each, one after the other:
//!   `BEGIN`, decode, claim the dedupe key (`INSERT .. ON CONFLICT DO NOTHING`), `INSERT` the
//!   row, `COMMIT`.
//!
//! Both sides write the same rows into tables of their own and end with every event handled
//! once. Prints events per second, the ratio framework / naive (median of the rounds), each
//! side's CPU time in this process per event (PostgreSQL's is not in it) and how busy the
//! machine's cores were meanwhile (near 100%: bound by CPU). No assertions. Needs a database:
//! `EVT_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/evt cargo bench -p event-runtime --bench postgres_inbox`
//! (scripts/bench.sh starts one; events per round: `EVT_BENCH_EVENTS`, default 3000; rounds:
//! `EVT_BENCH_ROUNDS`, default 3). Both sides share sqlx's default pool options, which ping a
//! connection before handing it out (`test_before_acquire`): one more round trip per
//! transaction. `EVT_BENCH_PING=off` turns that off for both (docs/delivery.md, "Stores in
//! PostgreSQL").

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use event_bench_support::{Spent, Stopwatch, env_or, median};

use event_runtime::app::GroupOptions;
use event_runtime::transport::Transport as _;
use event_runtime::transport::memory::MemoryTransport;
use event_runtime::{App, Context, DomainEvent, Envelope, HandlerError, Stores};
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

/// A payment to book.
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone)]
#[event(context = "payments")]
struct Paid {
    #[event(key)]
    account: String,
    cents: i64,
}

/// A pool on a new schema with the booking table.
async fn schema(url: &str, tag: &str) -> sqlx::PgPool {
    let options: PgConnectOptions = url.parse().expect("EVT_POSTGRES_URL is a PostgreSQL URL");
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options.clone())
        .await
        .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {tag} CASCADE; CREATE SCHEMA {tag}"
    )))
    .execute(&admin)
    .await
    .unwrap();
    admin.close().await;
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .test_before_acquire(std::env::var("EVT_BENCH_PING").as_deref() != Ok("off"))
        .connect_with(options.options([("search_path", tag)]))
        .await
        .unwrap();
    sqlx::raw_sql(
        "CREATE TABLE bookings (event_id TEXT PRIMARY KEY, account TEXT NOT NULL, cents BIGINT NOT NULL);
         CREATE TABLE naive_dedupe (key TEXT PRIMARY KEY)",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool
}

async fn stored_log(n: usize) -> MemoryTransport {
    let transport = MemoryTransport::new();
    let mut app = App::new(transport.clone(), Stores::in_memory().await.unwrap());
    app.partitions(4);
    let publisher = app.publisher();
    let events: Vec<Envelope<Paid>> = (0..n as i64)
        .map(|i| {
            Envelope::event(Paid {
                account: format!("acct-{}", i % 64),
                cents: 100 + i,
            })
        })
        .collect();
    for chunk in events.chunks(500) {
        publisher.publish_all(chunk.to_vec()).await.unwrap();
    }
    transport
}

async fn framework(url: &str, n: usize, round: usize) -> Spent {
    let pool = schema(url, &format!("bench_fw{round}")).await;
    let transport = stored_log(n).await;
    let mut app = App::new(transport, Stores::postgres(pool.clone()).await.unwrap());
    let handled = Arc::new(AtomicU64::new(0));
    let count = handled.clone();
    app.partitions(4)
        .group_options(
            "bookkeeping",
            GroupOptions {
                inbox: true,
                ..GroupOptions::default()
            },
        )
        .subscribe::<Paid, _>("bookkeeping", move |event: Envelope<Paid>, ctx: Context| {
            let count = count.clone();
            async move {
                let mut tx = ctx
                    .transaction::<sqlx::Postgres>()
                    .await
                    .ok_or_else(|| HandlerError::permanent("inbox expected"))?;
                sqlx::query("INSERT INTO bookings (event_id, account, cents) VALUES ($1, $2, $3)")
                    .bind(event.id.to_string())
                    .bind(&event.data.account)
                    .bind(event.data.cents)
                    .execute(&mut **tx)
                    .await?;
                count.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
        });
    let clock = Stopwatch::start();
    let running = app.start().await.unwrap();
    loop {
        if handled.load(Ordering::Relaxed) >= n as u64
            && running.wait_idle(Duration::from_millis(1)).await
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let spent = clock.spent();
    running.stop().await;
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM bookings")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        rows, n as i64,
        "the framework did not book every event once"
    );
    pool.close().await;
    spent
}

async fn naive(url: &str, n: usize, round: usize) -> Spent {
    let pool = schema(url, &format!("bench_naive{round}")).await;
    let transport = stored_log(n).await;
    let clock = Stopwatch::start();
    for partition in 0..4 {
        let mut from = 0;
        loop {
            let records = transport
                .fetch("payments", partition, from, 256)
                .await
                .unwrap();
            if records.is_empty() {
                break;
            }
            from = records.last().unwrap().offset + 1;
            for record in records {
                let raw = event_runtime::transport::decode_record(
                    &record,
                    &event_runtime::cloudevents::Limits::default(),
                )
                .unwrap();
                let event: Envelope<Paid> = raw.decode().unwrap();
                let mut tx = pool.begin().await.unwrap();
                let claimed = sqlx::query(
                    "INSERT INTO naive_dedupe (key) VALUES ($1) ON CONFLICT DO NOTHING",
                )
                .bind(event.id.to_string())
                .execute(&mut *tx)
                .await
                .unwrap()
                .rows_affected();
                if claimed == 1 {
                    sqlx::query(
                        "INSERT INTO bookings (event_id, account, cents) VALUES ($1, $2, $3)",
                    )
                    .bind(event.id.to_string())
                    .bind(&event.data.account)
                    .bind(event.data.cents)
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                }
                tx.commit().await.unwrap();
            }
        }
    }
    let spent = clock.spent();
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM bookings")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        rows, n as i64,
        "the naive loop did not book every event once"
    );
    pool.close().await;
    spent
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let Ok(url) = std::env::var("EVT_POSTGRES_URL") else {
        println!("skipped: set EVT_POSTGRES_URL to a PostgreSQL database (scripts/bench.sh)");
        return;
    };
    let n = env_or("EVT_BENCH_EVENTS", 3_000);
    let rounds = env_or("EVT_BENCH_ROUNDS", 3).max(1);
    println!("PostgreSQL inbox, {n} events per round, {rounds} rounds, median of each");
    let (mut fw, mut nv, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let (mut cpu, mut busy) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        // The side that goes first alternates.
        let (f, v) = if round % 2 == 0 {
            let f = framework(&url, n, round).await;
            (f, naive(&url, n, round).await)
        } else {
            let v = naive(&url, n, round).await;
            (framework(&url, n, round).await, v)
        };
        fw.push(f.rate(n));
        nv.push(v.rate(n));
        ratios.push(f.rate(n) / v.rate(n));
        cpu.push((f.cpu_micros(n), v.cpu_micros(n)));
        busy.push((f.machine_busy() * 100.0, v.machine_busy() * 100.0));
    }
    println!(
        "{:<44} {:>12} {:>12} {:>8} {:>16} {:>12}",
        "path", "framework/s", "naive/s", "ratio", "CPU us/event f/n", "busy f/n"
    );
    println!(
        "{:<44} {:>12.0} {:>12.0} {:>7.2}x {:>7.1} / {:<6.1} {:>4.0}% / {:.0}%",
        "inbox consume (batched lanes vs 1 tx/message)",
        median(fw),
        median(nv),
        median(ratios),
        median(cpu.iter().map(|c| c.0).collect()),
        median(cpu.iter().map(|c| c.1).collect()),
        median(busy.iter().map(|b| b.0).collect()),
        median(busy.iter().map(|b| b.1).collect()),
    );
}
