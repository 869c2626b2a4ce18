//! Helpers for testing your own handlers.
//!
//! [`assert_idempotent`] delivers a sequence of events once, then again with every event
//! delivered twice and the keys interleaved differently (per-key order kept, as the runtime
//! guarantees), and asserts that the handler's observable effect is the same. It exercises the
//! handler alone, without the dedupe store, so it proves the handler is safe under at-least-once
//! delivery even when a dedupe window has expired or a replay bypasses dedupe.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use event_runtime::{Context, DomainEvent, Envelope, HandlerError, testing};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(DomainEvent, Serialize, Deserialize, Clone, Debug)]
//! #[event(context = "accounts")]
//! struct Deposited { #[event(key)] account: String, amount: u64, #[event(dedupe)] txn: String }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let events: Vec<_> = (0..4)
//!     .map(|i| Envelope::event(Deposited { account: format!("a{}", i % 2), amount: 10, txn: format!("t{i}") }))
//!     .collect();
//! testing::assert_idempotent(&events, || {
//!     // Balance per account, applied once per transaction id: idempotent by design.
//!     let state = Arc::new(Mutex::new((std::collections::BTreeMap::new(), std::collections::BTreeSet::new())));
//!     let handler_state = state.clone();
//!     let handler = move |event: Envelope<Deposited>, _ctx: Context| {
//!         let state = handler_state.clone();
//!         async move {
//!             let mut guard = state.lock().unwrap();
//!             let (balances, seen) = &mut *guard;
//!             if seen.insert(event.data.txn.clone()) {
//!                 *balances.entry(event.data.account.clone()).or_insert(0) += event.data.amount;
//!             }
//!             Ok::<(), HandlerError>(())
//!         }
//!     };
//!     let read = move || state.lock().unwrap().0.clone();
//!     (handler, read)
//! })
//! .await;
//! # }
//! ```

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;

use crate::envelope::Envelope;
use crate::handler::{Context, Delivery, Handler, States};
use crate::message::Message;

pub(crate) fn context(group: &str, envelope: &Envelope<impl Sized>, delivery: Delivery) -> Context {
    Context {
        group: Arc::from(group),
        delivery,
        attempt: 1,
        causation: envelope.causation(),
        incoming_id: envelope.id.clone(),
        states: States::default(),
        emitted: Arc::default(),
        inbox: None,
        deprecations: None,
    }
}

/// Calls `handler` with `envelope` as the runtime would (live delivery, first attempt), for unit
/// tests of one handler. Returns the handler's result.
///
/// # Errors
///
/// The handler's error.
pub async fn deliver<E: Message + Clone, H: Handler<E>>(
    handler: &H,
    envelope: &Envelope<E>,
) -> Result<(), crate::handler::HandlerError> {
    let ctx = context("test", envelope, Delivery::Live);
    handler
        .handle(envelope.with_data(envelope.data.clone()), ctx)
        .await
}

/// The redelivery order used by [`assert_idempotent`]: every event twice, keys interleaved in
/// reverse order of first appearance, each key's events in their original order.
pub fn redelivery_order<E: Message>(events: &[Envelope<E>]) -> Vec<usize> {
    let mut lanes: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    let mut first_seen: Vec<(Option<String>, usize)> = Vec::new();
    for (i, event) in events.iter().enumerate() {
        let key = event.partition_key.clone();
        let lane = match first_seen
            .iter()
            .position(|(k, _)| key.is_some() && *k == key)
        {
            Some(lane) => lane,
            None => {
                first_seen.push((key, i));
                first_seen.len() - 1
            }
        };
        lanes.entry(lane).or_default().push(i);
    }
    let mut order = Vec::with_capacity(events.len() * 2);
    // Reverse lane order, round-robin across lanes, each event twice (a redelivery right away
    // and another after the other lanes moved on).
    let lanes: Vec<Vec<usize>> = lanes.into_values().rev().collect();
    let longest = lanes.iter().map(Vec::len).max().unwrap_or(0);
    for round in 0..longest {
        for lane in &lanes {
            if let Some(i) = lane.get(round) {
                order.push(*i);
                order.push(*i);
            }
        }
    }
    for lane in &lanes {
        order.extend(lane.iter().copied());
    }
    order
}

/// Asserts that `make()`'s handler has the same effect when every event is delivered twice and
/// out of order across keys as when each is delivered once in order. `make` returns a fresh
/// handler and a function that reads its observable effect.
///
/// # Panics
///
/// When a delivery fails or the effects differ; the message shows both effects.
pub async fn assert_idempotent<E, H, R, S>(events: &[Envelope<E>], make: impl Fn() -> (H, R))
where
    E: Message + Clone,
    H: Handler<E>,
    R: Fn() -> S,
    S: PartialEq + Debug,
{
    let (once, read_once) = make();
    for event in events {
        if let Err(err) = deliver(&once, event).await {
            panic!("delivering `{}` once failed: {err}", event.ty);
        }
    }
    let expected = read_once();

    let (twice, read_twice) = make();
    for i in redelivery_order(events) {
        let event = &events[i];
        let ctx = context("test", event, Delivery::Live);
        if let Err(err) = twice.handle(event.with_data(event.data.clone()), ctx).await {
            panic!("redelivering `{}` failed: {err}", event.ty);
        }
    }
    let actual = read_twice();
    assert!(
        actual == expected,
        "the handler is not idempotent: delivered once the effect is\n{expected:#?}\nbut delivered twice and out of order across keys it is\n{actual:#?}"
    );
}
