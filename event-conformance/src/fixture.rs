//! What the cases publish and record: the [`Step`] event, a [`recorder`] handler and its
//! [`Seen`] log; and for an engine's instances, temporary directories, unique prefixes and
//! SQLite stores. Public so that an engine's own tests can reuse them next to the suite.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use event_runtime::transport::sqlite::SqliteTransport;
use event_runtime::{Context, Delivery, DomainEvent, Envelope, HandlerError, Stores};
use serde::{Deserialize, Serialize};

/// A step of an account: the event of the suite (type `ledger.step`, keyed by account, on the
/// topic `ledger`).
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(context = "ledger")]
pub struct Step {
    /// The account: the partition key.
    #[event(key)]
    pub account: String,
    /// The step's number within its account.
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

/// A new empty directory under the system's temporary directory, named after `name`, the
/// process and a fresh UUID (so never one a previous run left). It is not removed: what a
/// failed test leaves is there to look at.
///
/// # Panics
///
/// When the directory cannot be created.
pub fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "evt-{name}-{}-{}",
        std::process::id(),
        uuid::Uuid::now_v7().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Stores (dead letters, dedupe marks) in the SQLite file at `path`, created if missing: what
/// an engine without stores of its own gives its apps, `App::new(transport, sqlite_stores(..))`.
///
/// # Panics
///
/// When the file cannot be opened.
pub async fn sqlite_stores(path: &Path) -> Stores {
    let file = SqliteTransport::open(path).await.unwrap();
    Stores::sqlite(&file)
}

/// A name no other test or run has: a prefix for an engine's topics, streams and groups on a
/// shared server (`t` and a UUID v7 in hex).
pub fn unique_prefix() -> String {
    format!("t{}", uuid::Uuid::now_v7().simple())
}
