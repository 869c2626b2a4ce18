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
