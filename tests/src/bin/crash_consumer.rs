//! A consumer process for the crash test (`tests/tests/crash.rs`): it consumes `ledger.entry`
//! events from the SQLite log in inbox mode, writing one ledger row per event in the handler's
//! transaction, and exits 0 once it has caught up with `expected` events. The test kills it with
//! SIGKILL at random points and starts it again.
//!
//! Usage: `crash_consumer <db> <expected> <per-event-delay-ms>`

use std::time::Duration;

use event_runtime::app::GroupOptions;
use event_runtime::{App, Context, DomainEvent, Envelope, HandlerError};
use serde::{Deserialize, Serialize};

/// One ledger entry.
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone)]
#[event(context = "ledger", name = "ledger.entry")]
struct Entry {
    #[event(key)]
    account: String,
    seq: u32,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, db, expected, delay_ms] = args.as_slice() else {
        return Err("usage: crash_consumer <db> <expected> <per-event-delay-ms>".into());
    };
    let expected: i64 = expected.parse()?;
    let delay = Duration::from_millis(delay_ms.parse()?);
    let mut app = App::embedded(db).await?;
    app.group_options(
        "ledger-writer",
        GroupOptions {
            inbox: true,
            concurrency: 4,
            batch: 16,
            ..GroupOptions::default()
        },
    )
    .subscribe::<Entry, _>(
        "ledger-writer",
        move |event: Envelope<Entry>, ctx: Context| async move {
            tokio::time::sleep(delay).await;
            let mut tx = ctx.transaction().await.ok_or("inbox mode expected")?;
            sqlx::query("INSERT INTO ledger (event_id, account, seq) VALUES (?, ?, ?)")
                .bind(event.id.to_string())
                .bind(&event.data.account)
                .bind(event.data.seq)
                .execute(&mut **tx)
                .await?;
            Ok::<(), HandlerError>(())
        },
    );
    let running = app.start().await?;
    let pool = running.transport().pool().clone();
    loop {
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(DISTINCT event_id) FROM ledger")
            .fetch_one(&pool)
            .await?;
        if rows >= expected && running.wait_idle(Duration::from_millis(1)).await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    running.stop().await;
    Ok(())
}
