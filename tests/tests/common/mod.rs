//! Helpers shared by the runtime tests (`runtime.rs`) and the engine conformance suite
//! (`conformance.rs`): the `Step` event, a recording handler and temporary directories.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use event_runtime::{Context, Delivery, DomainEvent, Envelope, HandlerError};
use serde::{Deserialize, Serialize};

/// A step of an account.
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(context = "ledger")]
pub struct Step {
    #[event(key)]
    pub account: String,
    pub seq: u32,
}

/// What a recorder saw: per account, `(seq, delivery)` in handling order.
pub type Seen = Arc<Mutex<BTreeMap<String, Vec<(u32, Delivery)>>>>;
/// A boxed handler future.
pub type HandlerFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), HandlerError>> + Send>>;

/// A handler that records every `Step` it handles in `seen`.
pub fn recorder(
    seen: Seen,
) -> impl Fn(Envelope<Step>, Context) -> HandlerFuture + Send + Sync + 'static {
    move |event: Envelope<Step>, ctx: Context| {
        let seen = seen.clone();
        Box::pin(async move {
            // Yield so that lanes really interleave.
            tokio::task::yield_now().await;
            seen.lock()
                .unwrap()
                .entry(event.data.account.clone())
                .or_default()
                .push((event.data.seq, ctx.delivery()));
            Ok(())
        })
    }
}

/// `per_account` steps of `accounts` accounts, interleaved: seq 0 of every account, then seq 1...
pub fn steps(accounts: u32, per_account: u32) -> Vec<Envelope<Step>> {
    let mut out = Vec::new();
    for seq in 0..per_account {
        for a in 0..accounts {
            out.push(Envelope::event(Step {
                account: format!("acct-{a}"),
                seq,
            }));
        }
    }
    out
}

/// A new empty directory under the system's temporary directory.
pub fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "evt-runtime-{name}-{}-{}",
        std::process::id(),
        uuid::Uuid::now_v7()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The server address in the environment variable `var` (scripts/test.sh starts the servers and
/// sets them), or `None` to skip the test with a message; panics when `CI` is set without it:
/// CI must run every engine.
pub fn server_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => panic!(
            "{var} is not set, but CI is: the tests on that server must run in CI \
             (scripts/test.sh starts it and sets {var})"
        ),
        _ => {
            eprintln!("skipped: {var} is not set (scripts/test.sh starts the servers)");
            None
        }
    }
}

/// A pool on a new, empty schema of the database at `EVT_POSTGRES_URL`, and the schema's name;
/// `None` to skip (see [`server_url`]).
pub async fn postgres_schema() -> Option<(sqlx::PgPool, String)> {
    use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
    let url = server_url("EVT_POSTGRES_URL")?;
    let options: PgConnectOptions = url.parse().expect("EVT_POSTGRES_URL is a PostgreSQL URL");
    let schema = format!("t{}", uuid::Uuid::now_v7().simple());
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options.clone())
        .await
        .expect("connect to EVT_POSTGRES_URL");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .connect_with(options.options([("search_path", schema.as_str())]))
        .await
        .unwrap();
    Some((pool, schema))
}
