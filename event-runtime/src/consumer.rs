//! Consumer groups: at-least-once delivery with per-key ordering, idempotency, retries and
//! dead-lettering.
//!
//! For each partition of each topic it reads, a group runs one loop ([`lanes`]): it reads
//! records ahead of its handlers, gives each to the lane of its partition key (records without
//! a key get a lane of their own), and runs lanes of different keys concurrently up to the
//! group's limit while each lane runs its records in order. The position committed is the
//! oldest record read and not yet handled, skipped as a duplicate or dead-lettered. A crash
//! therefore redelivers from there; same-key events are never reordered; and a slow or
//! retrying key delays only its own later events.
//!
//! Each record goes through: header check → CloudEvents decode → handler lookup → sequenced
//! parking → dedupe → handler (with retries). Anything undecodable, unknown, newer than the
//! consumer knows, or failing permanently goes to the dead-letter queue with its reason; the loop
//! never stops for one bad record.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Semaphore, watch};
use tracing::Instrument;

mod lanes;
pub(crate) mod share;

use crate::app::{GroupOptions, Publisher};
use crate::cloudevents::Limits;
use crate::dedupe::Claim;
use crate::dlq::{DeadLetters, NewDeadLetter, ReasonKind, Redelivery, RedeliverySource};
use crate::envelope::{Envelope, RawEnvelope};
use crate::error::{DecodeError, DecodeErrorKind};
use crate::handler::{Context, Delivery, ErrorClass, Handler, HandlerError};
use crate::message::Message;
use crate::registry::Registry;
use crate::retry::jitter_sample;
use crate::transport::{Headers, OutgoingRecord, Record, Transport, TransportError, now_ms};

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why one delivery attempt failed.
pub(crate) enum Failure {
    /// The record cannot become the handler's type: never retried.
    Poison(DecodeError),
    /// The handler failed.
    Handler(HandlerError),
    /// Writing the handler's effects failed (emitted events, inbox commit): retried.
    Infra(TransportError),
}

impl From<TransportError> for Failure {
    fn from(err: TransportError) -> Self {
        Failure::Infra(err)
    }
}

/// A handler with its event type erased, so one group can route many types.
pub(crate) trait ErasedHandler: Send + Sync {
    fn call<'a>(&'a self, raw: &'a RawEnvelope, ctx: Context)
    -> BoxFuture<'a, Result<(), Failure>>;
}

pub(crate) struct Typed<E, H> {
    handler: H,
    _event: PhantomData<fn() -> E>,
}

impl<E, H> Typed<E, H> {
    pub(crate) fn new(handler: H) -> Self {
        Typed {
            handler,
            _event: PhantomData,
        }
    }
}

impl<E: Message, H: Handler<E>> ErasedHandler for Typed<E, H> {
    fn call<'a>(
        &'a self,
        raw: &'a RawEnvelope,
        ctx: Context,
    ) -> BoxFuture<'a, Result<(), Failure>> {
        Box::pin(async move {
            let envelope: Envelope<E> = raw.decode().map_err(Failure::Poison)?;
            // A panicking handler is a bug in that handler: its record is dead-lettered with the
            // panic message, and the partition goes on (it must never stop on one record).
            // Pinned inside this (already boxed) future: no second allocation.
            let handling = std::pin::pin!(self.handler.handle(envelope, ctx));
            match CatchUnwind(handling).await {
                Ok(result) => result.map_err(Failure::Handler),
                Err(panic) => Err(Failure::Handler(HandlerError::permanent(format!(
                    "the handler panicked: {}",
                    panic_message(&*panic)
                )))),
            }
        })
    }
}

/// Polls a pinned future (boxed, or pinned in place with [`std::pin::pin!`]), turning a panic
/// inside it into an `Err` with the panic payload.
struct CatchUnwind<P>(Pin<P>);

impl<P> Future for CatchUnwind<P>
where
    P: std::ops::DerefMut<Target: Future> + Unpin,
{
    type Output = Result<<P::Target as Future>::Output, Box<dyn std::any::Any + Send>>;

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let inner = self.0.as_mut();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Ok(std::task::Poll::Ready(output)) => std::task::Poll::Ready(Ok(output)),
            Err(panic) => std::task::Poll::Ready(Err(panic)),
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "a non-string panic payload".to_owned()
    }
}

/// Counters of one consumer group.
#[derive(Debug, Default)]
pub struct GroupStats {
    /// Records handled successfully.
    pub handled: AtomicU64,
    /// Records skipped because the dedupe store had seen them.
    pub duplicates: AtomicU64,
    /// Records of types this group does not handle.
    pub skipped: AtomicU64,
    /// Records sent to the dead-letter queue.
    pub dead_lettered: AtomicU64,
    /// Records of a type no type in this binary has, skipped.
    pub unknown_types: AtomicU64,
    /// Refused copies of dead letters to the group's dead-letter topic (attempts: a batch read
    /// again after another failure counts its copies again).
    pub dead_letter_copy_failures: AtomicU64,
    /// Retries after transient failures.
    pub retries: AtomicU64,
    /// Replays and redrives processed.
    pub redelivered: AtomicU64,
    /// Times a record waited for its dedupe key because another delivery held the key's claim
    /// (another instance during a handover, or another record with the same dedupe key).
    pub claim_waits: AtomicU64,
    /// Engine or store calls that failed and were retried: reading a position, fetching,
    /// committing, or a delivery whose store could not be reached. Each streak of failures is
    /// also logged (`tracing`, target `event_runtime::consumer`).
    pub engine_errors: AtomicU64,
    /// Deliveries running now (a record's dedupe check, handler with its retries, dead letter).
    pub in_flight: AtomicU64,
    /// How long each delivery took, whatever its outcome (`messaging.process.duration`).
    pub process_duration: crate::telemetry::Histogram,
    /// Dead letters written, by reason ([`ReasonKind::as_str`]).
    pub dead_letters_by_reason: std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>>,
}

/// A snapshot of [`GroupStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Handled.
    pub handled: u64,
    /// Duplicates skipped.
    pub duplicates: u64,
    /// Not subscribed, skipped.
    pub skipped: u64,
    /// Dead-lettered.
    pub dead_lettered: u64,
    /// Skipped because no type in this binary has their type (a type added to the context
    /// later; see [`GroupOptions::dead_letter_unknown_types`]).
    pub unknown_types: u64,
    /// Dead letters the engine refused to copy to the group's dead-letter topic.
    pub dead_letter_copy_failures: u64,
    /// Retries.
    pub retries: u64,
    /// Replays and redrives.
    pub redelivered: u64,
    /// Waits for a dedupe key held by another delivery.
    pub claim_waits: u64,
    /// Failed engine or store calls, retried.
    pub engine_errors: u64,
}

impl GroupStats {
    /// Reads every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            handled: self.handled.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            unknown_types: self.unknown_types.load(Ordering::Relaxed),
            dead_letter_copy_failures: self.dead_letter_copy_failures.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            redelivered: self.redelivered.load(Ordering::Relaxed),
            claim_waits: self.claim_waits.load(Ordering::Relaxed),
            engine_errors: self.engine_errors.load(Ordering::Relaxed),
        }
    }
}

/// Work in progress across every group of an app: lets [`crate::Running::wait_idle`] tell a
/// quiet moment from the instant between a handler emitting an event and the position commit.
#[derive(Debug, Default)]
pub(crate) struct Activity {
    /// Bumped when a batch or redelivery starts and when it ends.
    pub(crate) changes: AtomicU64,
    /// Batches and redeliveries being processed now.
    pub(crate) in_flight: AtomicU64,
}

impl Activity {
    pub(crate) fn begin(&self) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.changes.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn end(&self) {
        self.changes.fetch_add(1, Ordering::SeqCst);
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Counts a delivery in flight while it lives, and records its duration when dropped.
struct Timed<'a> {
    stats: &'a GroupStats,
    started: std::time::Instant,
}

impl<'a> Timed<'a> {
    fn start(stats: &'a GroupStats) -> Self {
        stats.in_flight.fetch_add(1, Ordering::Relaxed);
        Timed {
            stats,
            started: std::time::Instant::now(),
        }
    }
}

impl Drop for Timed<'_> {
    fn drop(&mut self) {
        self.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.stats.process_duration.observe(self.started.elapsed());
    }
}

/// The result of processing one record.
pub(crate) enum Outcome {
    Handled,
    Duplicate,
    Skipped,
    /// Of a type this binary does not know, skipped.
    Unknown,
    Failed(Box<FailedRecord>),
}

pub(crate) struct FailedRecord {
    raw: Option<RawEnvelope>,
    reason_kind: ReasonKind,
    chain: Vec<String>,
    attempts: u32,
    parked_behind: Option<u64>,
    /// When the first attempt failed (earlier than now after retries).
    first_failure_ms: i64,
    /// The record's `process` span, under which the dead letter is settled.
    span: tracing::Span,
}

fn decode_kind(kind: DecodeErrorKind) -> ReasonKind {
    match kind {
        DecodeErrorKind::Malformed | DecodeErrorKind::Attribute | DecodeErrorKind::TooLarge => {
            ReasonKind::Malformed
        }
        DecodeErrorKind::UnknownType => ReasonKind::UnknownType,
        DecodeErrorKind::FutureVersion => ReasonKind::FutureVersion,
        DecodeErrorKind::Upcast => ReasonKind::Upcast,
        _ => ReasonKind::Payload,
    }
}

fn error_chain(err: &dyn std::error::Error) -> Vec<String> {
    let mut chain = vec![err.to_string()];
    let mut next = err.source();
    while let Some(err) = next {
        chain.push(err.to_string());
        next = err.source();
    }
    chain
}

/// One consumer group, shared by its partition loops.
pub(crate) struct GroupRunner<T: Transport> {
    pub(crate) group: Arc<str>,
    /// This instance's id ([`crate::App::instance`]), in logs and audit entries.
    pub(crate) instance: Arc<str>,
    pub(crate) options: GroupOptions,
    pub(crate) handlers: crate::FastMap<String, Arc<dyn ErasedHandler>>,
    pub(crate) transport: Arc<T>,
    pub(crate) publisher: Publisher<T>,
    pub(crate) dlq: DeadLetters,
    pub(crate) stores: crate::store::Db,
    /// Where inbox mode runs (`Db::inbox_for`), if anywhere.
    pub(crate) inbox: Option<crate::store::inbox::Inbox>,
    pub(crate) registry: &'static Registry,
    pub(crate) states: crate::handler::States,
    pub(crate) stats: Arc<GroupStats>,
    pub(crate) activity: Arc<Activity>,
    pub(crate) limits: Limits,
    /// Records read and not yet done across the group's partitions
    /// ([`GroupOptions::max_in_flight_per_group`]).
    pub(crate) in_flight: Arc<Semaphore>,
    /// The dedupe keys this instance holds claims on in this group (with how many deliveries
    /// hold each: one, but for a claim of its own taken over after it lapsed), which
    /// [`Self::run_claim_renewals`] renews. Only these: a claim the instance lost track of
    /// lapses.
    pub(crate) held: std::sync::Mutex<crate::FastMap<Arc<str>, u32>>,
}

/// A dedupe claim held while a record is handled ([`GroupRunner::hold`]): dropped without
/// [`Holding::marked`] (the record was dead-lettered, after its letter was stored, or its
/// handling was abandoned), it releases the claim, so the key's next delivery need not wait
/// for it to lapse.
pub(crate) struct Holding<'a, T: Transport> {
    runner: &'a GroupRunner<T>,
    key: Arc<str>,
    claimed: bool,
}

impl<T: Transport> Holding<'_, T> {
    /// The key is marked: nothing to release.
    fn marked(mut self) {
        self.claimed = false;
    }

    /// The record's dead letter could not be stored (its delivery is retried): the claim is
    /// neither released (a waiting delivery of the key would run before any letter exists)
    /// nor renewed: it lapses within `claim_ttl`, and the retry claims the key again then.
    fn abandoned(mut self) {
        self.claimed = false;
    }
}

impl<T: Transport> Drop for Holding<'_, T> {
    fn drop(&mut self) {
        let runner = self.runner;
        {
            let mut held = runner
                .held
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(count) = held.get_mut(&self.key) {
                *count -= 1;
                if *count == 0 {
                    held.remove(&self.key);
                } else {
                    // Another delivery here holds the key too (it took over this one's claim
                    // after it lapsed): the row is its claim now, not to be released.
                    return;
                }
            }
        }
        if self.claimed {
            runner
                .stores
                .release_later(&runner.group, &self.key, &runner.instance);
        }
    }
}

impl<T: Transport> GroupRunner<T> {
    /// Processes one record and dead-letters it on failure.
    async fn deliver(
        &self,
        record: &Record,
        delivery: Delivery,
        bypass_dedupe: bool,
    ) -> Result<(), TransportError> {
        let _timed = Timed::start(&self.stats);
        // The record's dedupe claim, held until its dead letter (if any) is stored.
        let (outcome, holding) = self.process(record, delivery, bypass_dedupe).await?;
        match outcome {
            Outcome::Handled => self.stats.handled.fetch_add(1, Ordering::Relaxed),
            Outcome::Duplicate => self.stats.duplicates.fetch_add(1, Ordering::Relaxed),
            Outcome::Skipped => self.stats.skipped.fetch_add(1, Ordering::Relaxed),
            Outcome::Unknown => self.stats.unknown_types.fetch_add(1, Ordering::Relaxed),
            Outcome::Failed(failed) => {
                crate::telemetry::failed(&failed.span, failed.reason_kind.as_str());
                *self
                    .stats
                    .dead_letters_by_reason
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .entry(failed.reason_kind.as_str())
                    .or_default() += 1;
                let settle = crate::telemetry::settle_span(
                    &failed.span,
                    &record.topic,
                    failed.reason_kind.as_str(),
                );
                // Boxed: the rare path's futures stay out of every delivery's future.
                let stored =
                    Box::pin(self.dead_letter(record.clone(), *failed).instrument(settle)).await;
                if let Err(err) = stored {
                    if let Some(holding) = holding {
                        holding.abandoned();
                    }
                    return Err(err);
                }
                self.stats.dead_lettered.fetch_add(1, Ordering::Relaxed)
            }
        };
        drop(holding);
        Ok(())
    }

    async fn dead_letter(
        &self,
        record: Record,
        failed: FailedRecord,
    ) -> Result<u64, TransportError> {
        if self.options.dead_letter_topic {
            // First the engine's copy, then the store: a failure in between redelivers the
            // record, the copy is written again (at least once) and the store keeps one letter
            // per open record. An engine that is unavailable fails the batch (retried later); one
            // that refuses the copy for good (no right to create the topic, a topic deleted
            // under us) does not stop the group: the letter is stored and the refusal counted.
            if let Err(err) = self.mirror_letter(&record, &failed).await {
                if err.kind == crate::transport::TransportErrorKind::Unavailable {
                    return Err(err);
                }
                self.stats
                    .dead_letter_copy_failures
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        let raw = failed.raw.as_ref();
        self.dlq
            .put(NewDeadLetter {
                group: self.group.to_string(),
                event_type: raw.map(|r| r.ty.to_string()),
                event_id: raw.map(|r| r.id.to_string()),
                // A record whose headers could not be read still has its record key, so it
                // still blocks its key in sequenced mode.
                partition_key: raw.and_then(|r| r.partition_key.clone()).or_else(|| {
                    record
                        .key
                        .as_deref()
                        .and_then(|key| std::str::from_utf8(key).ok())
                        .map(str::to_owned)
                }),
                reason_kind: failed.reason_kind,
                error_chain: failed.chain,
                attempts: failed.attempts,
                first_failure_ms: failed.first_failure_ms,
                parked_behind: failed.parked_behind,
                instance: Some(self.instance.to_string()),
                record,
            })
            .await
    }

    /// Appends a copy of a dead-lettered record to the group's dead-letter topic on the engine
    /// ([`crate::transport::dead_letter_topic`]): the record's key, headers and payload as they
    /// were, plus `x-evt-dlq-*` headers saying which group gave up on it, where it was, why
    /// and after how many attempts.
    async fn mirror_letter(
        &self,
        record: &Record,
        failed: &FailedRecord,
    ) -> Result<(), TransportError> {
        let topic = crate::transport::dead_letter_topic(&self.group);
        let partitions = self.publisher.partitions_of(&topic).await?;
        let fallback = format!("{}/{}/{}", record.topic, record.partition, record.offset);
        let key_bytes = record.key.as_deref().unwrap_or(fallback.as_bytes());
        let mut error = failed.chain.join(": ");
        if error.len() > 4096 {
            let mut end = 4096;
            while !error.is_char_boundary(end) {
                end -= 1;
            }
            error.truncate(end);
        }
        // A foreign record with nearly 65,535 headers leaves no room for ours in one block: the
        // copy then says so instead of its headers (the dead-letter store keeps them all).
        let mut headers = if record.headers.len() > usize::from(u16::MAX) - 6 {
            let mut headers = Headers::builder();
            headers.push("x-evt-dlq-headers-dropped", b"too many headers to copy");
            headers
        } else {
            record.headers.to_builder()
        };
        headers.push("x-evt-dlq-group", self.group.as_bytes());
        headers.push("x-evt-dlq-source", fallback.as_bytes());
        headers.push("x-evt-dlq-reason", failed.reason_kind.as_str().as_bytes());
        headers.push("x-evt-dlq-error", error.as_bytes());
        headers.push("x-evt-dlq-attempts", failed.attempts.to_string().as_bytes());
        let headers = headers.finish();
        let copy = OutgoingRecord {
            partition: crate::partition::partition_for_key(key_bytes, partitions),
            key: record.key.clone(),
            headers,
            payload: record.payload.clone(),
        };
        self.transport.append(&topic, vec![copy]).await?;
        Ok(())
    }

    fn failed(
        raw: Option<RawEnvelope>,
        reason_kind: ReasonKind,
        chain: Vec<String>,
        attempts: u32,
    ) -> Outcome {
        Outcome::Failed(Box::new(FailedRecord {
            raw,
            reason_kind,
            chain,
            attempts,
            parked_behind: None,
            first_failure_ms: now_ms(),
            span: tracing::Span::none(),
        }))
    }

    /// [`Self::failed`] after retries: the letter records when the first attempt failed.
    fn failed_since(
        first_failure_ms: Option<i64>,
        raw: RawEnvelope,
        reason_kind: ReasonKind,
        chain: Vec<String>,
        attempts: u32,
    ) -> Outcome {
        let mut outcome = Self::failed(Some(raw), reason_kind, chain, attempts);
        if let (Outcome::Failed(failed), Some(first)) = (&mut outcome, first_failure_ms) {
            failed.first_failure_ms = first;
        }
        outcome
    }

    /// Processes one record: its outcome, and the dedupe claim still held for it (a failed
    /// record's, to release once its dead letter is stored).
    pub(crate) async fn process(
        &self,
        record: &Record,
        delivery: Delivery,
        bypass_dedupe: bool,
    ) -> Result<(Outcome, Option<Holding<'_, T>>), TransportError> {
        let (decoded, hop) = crate::cloudevents::record::decode_record_hop(record, &self.limits);
        let raw = match decoded {
            Ok(raw) => raw,
            Err(err) => {
                let failed = Self::failed(None, decode_kind(err.kind()), error_chain(&err), 0);
                return Ok((failed, None));
            }
        };
        self.publisher.deprecations.consumed(&raw.ty, raw.version);
        let processing = crate::telemetry::process_span(
            self.transport.system(),
            &self.group,
            record,
            hop,
            &raw,
            delivery != Delivery::Live,
        );
        let span = processing.span.clone();
        let mut holding = None;
        let mut outcome = processing
            .run(self.process_decoded(record, raw, delivery, bypass_dedupe, &span, &mut holding))
            .await?;
        match &mut outcome {
            Outcome::Handled => crate::telemetry::outcome(&span, "handled"),
            Outcome::Duplicate => crate::telemetry::outcome(&span, "duplicate"),
            Outcome::Skipped => crate::telemetry::outcome(&span, "skipped"),
            Outcome::Unknown => crate::telemetry::outcome(&span, "unknown_type"),
            Outcome::Failed(failed) => failed.span = span,
        }
        Ok((outcome, holding))
    }

    /// [`Self::process`] after the record decoded, in its `process` span `span`.
    ///
    /// The dedupe claim is taken before the sequenced-parking check, so a record that waited
    /// for another delivery's claim sees the letter that one left.
    async fn process_decoded<'a>(
        &'a self,
        record: &Record,
        raw: RawEnvelope,
        delivery: Delivery,
        bypass_dedupe: bool,
        span: &tracing::Span,
        holding: &mut Option<Holding<'a, T>>,
    ) -> Result<Outcome, TransportError> {
        let Some(handler) = self.handlers.get(raw.ty.as_ref()).cloned() else {
            if self.registry.latest(&raw.ty).is_some() {
                return Ok(Outcome::Skipped);
            }
            if !self.options.dead_letter_unknown_types {
                return Ok(Outcome::Unknown);
            }
            let reason = format!(
                "unknown event type `{}`: no type in this binary has that name",
                raw.ty
            );
            return Ok(Self::failed(
                Some(raw),
                ReasonKind::UnknownType,
                vec![reason],
                0,
            ));
        };
        // Shared with the claim held for it (one copy of the key per record).
        let dedupe_key: Arc<str> = Arc::from(raw.effective_dedupe_key().as_ref());
        let inbox = self.options.inbox && self.inbox_capable();
        // The inbox claims the key in the handler's transaction instead.
        if !bypass_dedupe && !inbox {
            match self.hold(&dedupe_key).await? {
                Some(held) => *holding = Some(held),
                None => return Ok(Outcome::Duplicate),
            }
        }
        if self.options.sequenced
            && delivery != Delivery::Redrive
            && let Some(key) = raw.partition_key.clone()
            && let Some(blocking) = self
                .dlq
                .open_for_key(&self.group, &record.topic, &key)
                .await?
        {
            return Ok(Outcome::Failed(Box::new(FailedRecord {
                raw: Some(raw),
                reason_kind: ReasonKind::Parked,
                chain: vec![format!(
                    "parked behind dead letter {blocking} with the same key `{key}` (sequenced mode)"
                )],
                attempts: 0,
                parked_behind: Some(blocking),
                first_failure_ms: now_ms(),
                span: tracing::Span::none(),
            })));
        }

        let mut attempt = 1;
        let mut first_failure = None;
        loop {
            // As an `i64`: an unsigned value would be exported as a string.
            span.record("evt.delivery.attempt", i64::from(attempt));
            let result = self
                .attempt(
                    &*handler,
                    &raw,
                    delivery,
                    attempt,
                    &dedupe_key,
                    inbox,
                    bypass_dedupe,
                )
                .await;
            match result {
                Ok(true) => {
                    if let Some(held) = holding.take() {
                        held.marked();
                    }
                    return Ok(Outcome::Handled);
                }
                Ok(false) => return Ok(Outcome::Duplicate),
                Err(Failure::Poison(err)) => {
                    return Ok(Self::failed(
                        Some(raw),
                        decode_kind(err.kind()),
                        error_chain(&err),
                        0,
                    ));
                }
                Err(Failure::Handler(err)) if err.class() == ErrorClass::Permanent => {
                    return Ok(Self::failed_since(
                        first_failure,
                        raw,
                        ReasonKind::Permanent,
                        err.chain(),
                        attempt,
                    ));
                }
                Err(failure) => {
                    first_failure.get_or_insert_with(now_ms);
                    let chain = match failure {
                        Failure::Handler(err) => err.chain(),
                        Failure::Infra(err) => error_chain(&err),
                        Failure::Poison(_) => unreachable!("handled above"),
                    };
                    match self
                        .options
                        .retry
                        .delay_before(attempt + 1, jitter_sample())
                    {
                        Some(delay) => {
                            self.stats.retries.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(delay).await;
                            attempt += 1;
                        }
                        None => {
                            return Ok(Self::failed_since(
                                first_failure,
                                raw,
                                ReasonKind::RetriesExhausted,
                                chain,
                                attempt,
                            ));
                        }
                    }
                }
            }
        }
    }

    /// Claims `key` for this instance before its handler runs: `None` if it was handled
    /// already. While another delivery holds it (another instance during a handover, a record
    /// with the same dedupe key), waits for that one to mark it, release it, or let it lapse.
    ///
    /// Cancellation (a drained or revoked partition dropping the record) leaves no claim
    /// behind: one granted meanwhile is released (see `store::dedupe::Batcher::claim`).
    async fn hold(&self, key: &Arc<str>) -> Result<Option<Holding<'_, T>>, TransportError> {
        loop {
            let lease = self.options.claim_ttl;
            match self
                .stores
                .claim(&self.group, key, &self.instance, lease)
                .await?
            {
                Claim::Claimed => {
                    *self
                        .held
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .entry(key.clone())
                        .or_default() += 1;
                    return Ok(Some(Holding {
                        runner: self,
                        key: key.clone(),
                        claimed: true,
                    }));
                }
                Claim::Done => return Ok(None),
                Claim::Held { holder, until_ms } => {
                    self.stats.claim_waits.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(
                        group = &*self.group,
                        instance = &*self.instance,
                        key = &**key,
                        holder,
                        "the dedupe key is held by another delivery; waiting"
                    );
                    let left = u64::try_from(until_ms - now_ms()).unwrap_or(0);
                    tokio::time::sleep(Duration::from_millis(left.clamp(10, 250))).await;
                }
            }
        }
    }

    /// Renews the dedupe claims this instance holds in the group (`held`) every third of
    /// `claim_ttl`, for ever: the app aborts it once every other task of it has ended, so the
    /// claims of deliveries still draining are renewed to the last.
    pub(crate) async fn run_claim_renewals(self: Arc<Self>) {
        let ttl = self.options.claim_ttl.max(Duration::from_millis(30));
        let mut failing = false;
        loop {
            tokio::time::sleep(ttl / 3).await;
            let keys: Vec<Arc<str>> = self
                .held
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .keys()
                .cloned()
                .collect();
            if keys.is_empty() {
                continue;
            }
            let keys: Vec<&str> = keys.iter().map(|k| &**k).collect();
            match self
                .stores
                .renew(&self.group, &self.instance, &keys, ttl)
                .await
            {
                Ok(_) => failing = false,
                Err(err) => {
                    self.stats.engine_errors.fetch_add(1, Ordering::Relaxed);
                    if !failing {
                        tracing::warn!(
                            group = &*self.group,
                            instance = &*self.instance,
                            error = %err,
                            "could not renew this instance's dedupe claims; they lapse unless a later round succeeds"
                        );
                    }
                    failing = true;
                }
            }
        }
    }

    fn inbox_capable(&self) -> bool {
        self.inbox.is_some()
    }

    fn context(&self, raw: &RawEnvelope, delivery: Delivery, attempt: u32) -> Context {
        Context {
            group: self.group.clone(),
            delivery,
            attempt,
            causation: raw.causation(),
            incoming_id: raw.id.clone(),
            states: self.states.clone(),
            emitted: Arc::default(),
            inbox: None,
            deprecations: Some(self.publisher.deprecations.clone()),
        }
    }

    /// One attempt. `Ok(false)`: the inbox found the key already claimed (a duplicate).
    #[allow(clippy::too_many_arguments)]
    async fn attempt(
        &self,
        handler: &dyn ErasedHandler,
        raw: &RawEnvelope,
        delivery: Delivery,
        attempt: u32,
        dedupe_key: &str,
        inbox: bool,
        bypass_dedupe: bool,
    ) -> Result<bool, Failure> {
        if inbox && let Some(inbox) = &self.inbox {
            // Boxed: a transaction's future is large, and most groups have no inbox.
            return Box::pin(inbox.attempt(
                &self.publisher,
                &self.group,
                dedupe_key,
                bypass_dedupe,
                self.options.claim_ttl,
                |tx| async move {
                    let mut ctx = self.context(raw, delivery, attempt);
                    ctx.inbox = Some(tx);
                    let emitted = Arc::clone(&ctx.emitted);
                    handler.call(raw, ctx).await?;
                    Ok(std::mem::take(
                        &mut *emitted
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner),
                    ))
                },
                || {
                    Failure::Handler(HandlerError::permanent(
                        "the handler kept its Context (and the inbox transaction) after returning",
                    ))
                },
            ))
            .await;
        }
        let ctx = self.context(raw, delivery, attempt);
        let emitted = Arc::clone(&ctx.emitted);
        handler.call(raw, ctx).await?;
        let emitted = std::mem::take(
            &mut *emitted
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        self.publisher
            .publish_emitted(emitted)
            .await
            .map_err(Failure::Infra)?;
        self.stores
            .mark(&self.group, dedupe_key)
            .await
            .map_err(Failure::Infra)?;
        Ok(true)
    }

    /// Runs the redrive and replay requests of this group until shutdown. Where instances
    /// share partitions (`owned`), each runs the requests of the partitions it owns, so a
    /// request runs on one instance (a request finished twice across a handover is recorded
    /// once: see `letters::finish_redelivery`). The queue is read a page at a time, so any
    /// number of requests for other instances' partitions never hides this one's.
    ///
    /// A request for a partition this instance does not read (`partitions`: a replay of a topic
    /// it does not subscribe to) is left for the instance that does (a newer version of the
    /// service in a rolling deploy, one that knows more partitions), with a warning; where no
    /// other instance shares the group, nobody can run it, and it is dropped (a redrive's
    /// letter going back to `dead`, saying why).
    pub(crate) async fn run_redeliveries(
        self: Arc<Self>,
        partitions: Arc<[(Arc<str>, u32)]>,
        owned: Option<watch::Receiver<share::Shared>>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        const PAGE: u32 = 64;
        let mut after = 0;
        // Requests this instance warned it cannot run: each once, the first 10,000.
        let mut warned: std::collections::HashSet<u64> = std::collections::HashSet::new();
        while !*shutdown.borrow() {
            let page_start = after;
            let pending = self
                .dlq
                .pending_redeliveries_after(&self.group, page_start, PAGE)
                .await
                .unwrap_or_default();
            // The next page, or the queue's start again once this one is its end.
            let full = pending.len() == PAGE as usize;
            after = if full {
                pending.last().map_or(0, |r| r.id)
            } else {
                0
            };
            let mut ran = false;
            for redelivery in pending {
                let readable = partitions
                    .iter()
                    .any(|(t, p)| **t == *redelivery.topic && *p == redelivery.partition);
                if !readable && owned.is_none() {
                    ran = true;
                    if self.drop_unreadable(&redelivery).await.is_err() {
                        after = page_start;
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        break;
                    }
                    continue;
                }
                if !readable {
                    if warned.len() < 10_000 && warned.insert(redelivery.id) {
                        tracing::warn!(
                            group = %self.group,
                            instance = %self.instance,
                            request = redelivery.id,
                            source = ?redelivery.source,
                            topic = %redelivery.topic,
                            partition = redelivery.partition,
                            "a redelivery request names a partition this instance does not read: \
                             left for an instance that does (cancel it with `evt requests cancel` \
                             if none will)"
                        );
                    }
                    continue;
                }
                if let Some(owned) = &owned
                    && !owned
                        .borrow()
                        .owned
                        .iter()
                        .any(|(t, p)| *t == redelivery.topic && *p == redelivery.partition)
                {
                    continue;
                }
                ran = true;
                self.activity.begin();
                let result = self.redeliver(&redelivery).await;
                self.activity.end();
                if result.is_err() {
                    // Retried first, before what follows it in the queue.
                    after = page_start;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    break;
                }
            }
            if !ran {
                // Nothing here for this instance: the next page soon (a long queue of other
                // instances' requests is read at a bounded rate, 50 pages a second), the
                // queue's start later.
                let pause = if full { 20 } else { 50 };
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(pause)) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }

    /// Drops a request for a partition this group does not read, where no other instance shares
    /// the group to run it.
    async fn drop_unreadable(&self, redelivery: &Redelivery) -> Result<(), TransportError> {
        let reason = format!(
            "group {} does not read {}/{}",
            self.group, redelivery.topic, redelivery.partition
        );
        tracing::warn!(
            group = %self.group,
            instance = %self.instance,
            request = redelivery.id,
            source = ?redelivery.source,
            "a redelivery request names a partition this group does not read; dropped: {reason}"
        );
        let failure = (redelivery.source == RedeliverySource::Redrive).then(|| vec![reason]);
        self.dlq
            .finish_redelivery(redelivery, failure.as_deref(), Some(&self.instance))
            .await
    }

    async fn redeliver(&self, redelivery: &Redelivery) -> Result<(), TransportError> {
        self.stats.redelivered.fetch_add(1, Ordering::Relaxed);
        match redelivery.source {
            RedeliverySource::Redrive => {
                let letter = match redelivery.letter_id {
                    Some(id) => self.dlq.get(id).await?,
                    None => None,
                };
                let Some(letter) = letter else {
                    return self
                        .dlq
                        .finish_redelivery(
                            redelivery,
                            Some(&["dead letter not found".to_owned()]),
                            Some(&self.instance),
                        )
                        .await;
                };
                // Purged (its request cancelled) since this batch of requests was read: not run.
                // `finish_redelivery` drops a request left behind without touching the letter.
                if letter.status != crate::dlq::LetterStatus::Redriving {
                    return self
                        .dlq
                        .finish_redelivery(redelivery, None, Some(&self.instance))
                        .await;
                }
                let (outcome, _holding) = self
                    .process(&letter.record, Delivery::Redrive, redelivery.bypass_dedupe)
                    .await?;
                match outcome {
                    Outcome::Failed(failed) => {
                        self.dlq
                            .finish_redelivery(
                                redelivery,
                                Some(&failed.chain),
                                Some(&self.instance),
                            )
                            .await
                    }
                    _ => {
                        self.dlq
                            .finish_redelivery(redelivery, None, Some(&self.instance))
                            .await
                    }
                }
            }
            RedeliverySource::Replay => {
                // Cancelled (`evt requests cancel`) since this batch of requests was read.
                if !self.dlq.redelivery_pending(redelivery.id).await? {
                    return Ok(());
                }
                let records = self
                    .transport
                    .fetch(
                        &redelivery.topic,
                        redelivery.partition,
                        redelivery.offset,
                        1,
                    )
                    .await?;
                if let Some(record) = records.into_iter().find(|r| r.offset == redelivery.offset) {
                    self.deliver(&record, Delivery::Replay, redelivery.bypass_dedupe)
                        .await?;
                }
                self.dlq
                    .finish_redelivery(redelivery, None, Some(&self.instance))
                    .await
            }
        }
    }
}
