//! Traces after the OpenTelemetry messaging semantic conventions.
//!
//! The runtime opens [`tracing`] spans (target `event_runtime::telemetry`); any subscriber sees
//! them, and with the `otel` feature and `tracing-opentelemetry`'s layer installed they become
//! OpenTelemetry spans of one trace across processes:
//!
//! | span | kind | when |
//! |---|---|---|
//! | `send {topic}` | producer | an append of one or more envelopes (publish, emitted events, the outbox relay) |
//! | `process {topic}` | consumer | one record delivered to a group: dedupe, the handler with its retries, its emitted events |
//! | `settle {topic}` | internal | a record given up on: the dead letter written |
//! | `saga {name}` | internal | one saga transition, under its message's `process` span ([`crate::saga`]) |
//!
//! Attributes: `messaging.system`, `messaging.operation.type` and `messaging.operation.name`,
//! `messaging.destination.name` (the topic), `messaging.destination.partition.id`,
//! `messaging.consumer.group.name`, `messaging.message.id`,
//! `messaging.message.conversation_id` (the correlation id), `messaging.batch.message_count`
//! (send), `error.type` (the dead letter's reason; on a failed `send`, `encode` or the engine's
//! error kind, with an error status); ours: `evt.type`, `evt.delivery.attempt`,
//! `evt.causation_id`, `evt.replay` (a replay or redrive), `evt.outcome` (`handled`,
//! `duplicate`, `skipped`, `unknown_type`, `dead_lettered`); on `saga` spans `evt.saga.name`,
//! `evt.saga.key`, `evt.saga.version` (after the transition), `evt.saga.status` and
//! `evt.saga.decision` (`applied`, `dropped`: a stale timer, `discarded`). These names are
//! frozen by a snapshot test: dashboards depend on them.
//!
//! **Context per hop.** An envelope's CloudEvents `traceparent` is the context it was created in
//! (the request's, or the `process` span of the handler that emitted it) and never changes. The
//! `send` span's own context rides beside it in the record's protocol header `traceparent` (and
//! `tracestate`), rewritten at every hop. The outbox relay writes no such header (its `send`
//! is a root span linked to each row's creation context), so the relay is never a consumer's
//! parent: the row keeps the context the event was created in.
//!
//! **Parent or link.** A record delivered live within [`PARENT_WITHIN`] of its creation is
//! processed as a child of its producer (the header's context, else the envelope's). An older
//! record, a replay or a redrive starts a new trace with a link to the producer: a backlog
//! drained an hour later, or a replay next week, would otherwise stretch one trace over hours.
//! A malformed `traceparent` or `tracestate` is ignored (W3C Trace Context), never fatal.
//!
//! **Not sampled, no span.** With the `otel` feature, a live record whose producer's context
//! is not sampled is processed in that context with no `process` span ([`record_unsampled`]).

use std::time::Duration;

use crate::cloudevents::record::Hop;
use crate::envelope::{RawEnvelope, TraceContext};
#[cfg(any(feature = "sqlite", feature = "postgres"))]
use crate::transport::Headers;

/// How young a live record must be to be processed as a child of its producer; older ones are
/// processed in a new trace, linked to the producer.
pub const PARENT_WITHIN: Duration = Duration::from_secs(60);

/// Whether a record whose producer's context is not sampled still gets a `process` span
/// ([`record_unsampled`]).
static RECORD_UNSAMPLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// With the `otel` feature, a live record whose producer's context (the W3C `traceparent`
/// it arrives with) is **not sampled** is processed without a `process` span: its handler runs
/// in that remote context (the OpenTelemetry context current while it is polled), so the
/// spans it opens and the events it emits stay in the producer's unsampled trace, as a
/// parent-based sampler (OpenTelemetry's default) would decide anyway, and the record costs
/// no span. Work a handler spawns keeps that context when it is handed on with
/// `opentelemetry::context::FutureExt::with_current_context` (`in_current_span` carries no
/// span here). `record_unsampled(true)` gives every record its span again: for a sampler that
/// overrides its parent's decision, or for `tracing` layers (logs) that want the span's
/// fields on every record. Process-wide; read per record.
pub fn record_unsampled(record: bool) {
    RECORD_UNSAMPLED.store(record, std::sync::atomic::Ordering::Relaxed);
}

/// Where one record is processed: in its `process` span, or (not sampled, see
/// [`record_unsampled`]) in its producer's unsampled context with no span.
pub(crate) struct Processing {
    /// The `process` span; disabled when not sampled.
    pub(crate) span: tracing::Span,
    /// The producer's unsampled context, current while the record is processed.
    #[cfg(feature = "otel")]
    unsampled: Option<opentelemetry::Context>,
}

impl Processing {
    /// `future` in the span (or the unsampled context), wrapped once: the handler's future is
    /// large, and each move of it is a copy.
    #[cfg(feature = "otel")]
    pub(crate) fn run<F: std::future::Future>(
        &self,
        future: F,
    ) -> futures_util::future::Either<
        opentelemetry::context::WithContext<F>,
        tracing::instrument::Instrumented<F>,
    > {
        use futures_util::future::Either;
        use tracing::Instrument as _;
        match &self.unsampled {
            Some(cx) => Either::Left(opentelemetry::context::FutureExt::with_context(
                future,
                cx.clone(),
            )),
            None => Either::Right(future.instrument(self.span.clone())),
        }
    }

    /// `future` in the span.
    #[cfg(not(feature = "otel"))]
    pub(crate) fn run<F: std::future::Future>(
        &self,
        future: F,
    ) -> tracing::instrument::Instrumented<F> {
        use tracing::Instrument as _;
        future.instrument(self.span.clone())
    }
}

/// The `process` span of `record`, delivered to `group` (not entered). Its remote parent (or
/// link) is the previous hop's context from the protocol header `traceparent` (`hop`, read
/// with the record), else the envelope's creation context. No span when that parent is not
/// sampled ([`record_unsampled`]).
pub(crate) fn process_span(
    system: &'static str,
    group: &str,
    record: &crate::transport::Record,
    hop: Hop<'_>,
    raw: &RawEnvelope,
    replay: bool,
) -> Processing {
    let young = || {
        !replay
            && (time::OffsetDateTime::now_utc() - raw.time)
                < time::Duration::try_from(PARENT_WITHIN).unwrap_or(time::Duration::MAX)
    };
    #[cfg(feature = "otel")]
    if tracing::span_enabled!(target: "event_runtime::telemetry", tracing::Level::INFO)
        && !RECORD_UNSAMPLED.load(std::sync::atomic::Ordering::Relaxed)
        && let Some(cx) = otel::unsampled_parent(hop, raw)
        && young()
    {
        return Processing {
            span: tracing::Span::none(),
            unsampled: Some(cx),
        };
    }
    let span = tracing::info_span!(
        target: "event_runtime::telemetry",
        "process",
        otel.name = %format_args!("process {}", record.topic),
        otel.kind = "consumer",
        otel.status_code = tracing::field::Empty,
        messaging.system = system,
        messaging.operation.type = "process",
        messaging.operation.name = "process",
        messaging.destination.name = &*record.topic,
        messaging.destination.partition.id = %record.partition,
        messaging.consumer.group.name = group,
        messaging.message.id = %raw.id,
        messaging.message.conversation_id = raw.correlation_id.as_deref(),
        evt.r#type = raw.ty.as_ref(),
        evt.causation_id = raw.causation_id.as_deref(),
        evt.replay = replay,
        evt.delivery.attempt = tracing::field::Empty,
        evt.outcome = tracing::field::Empty,
        error.r#type = tracing::field::Empty,
    );
    if !span.is_disabled() {
        let hop = hop_context(hop);
        otel::join(&span, hop.as_ref().or(raw.trace.as_ref()), young());
    }
    Processing {
        span,
        #[cfg(feature = "otel")]
        unsampled: None,
    }
}

/// The `saga` span of one transition of instance `key` of saga `name`, under the current span
/// (the message's `process` span); its outcome fields are recorded by the transition.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn saga_span(name: &str, key: &str) -> tracing::Span {
    tracing::info_span!(
        target: "event_runtime::telemetry",
        "saga",
        otel.name = %format_args!("saga {name}"),
        otel.kind = "internal",
        evt.saga.name = name,
        evt.saga.key = key,
        evt.saga.version = tracing::field::Empty,
        evt.saga.status = tracing::field::Empty,
        evt.saga.decision = tracing::field::Empty,
    )
}

/// The `settle` span of a record given up on, under its `process` span.
pub(crate) fn settle_span(parent: &tracing::Span, topic: &str, reason: &str) -> tracing::Span {
    if parent.is_disabled() {
        // No `process` span (none sampled, or no subscriber): a `settle` span would be a root.
        return tracing::Span::none();
    }
    tracing::info_span!(
        target: "event_runtime::telemetry",
        parent: parent,
        "settle",
        otel.name = %format_args!("settle {topic}"),
        otel.kind = "internal",
        messaging.operation.type = "settle",
        messaging.operation.name = "dead_letter",
        messaging.destination.name = topic,
        error.r#type = reason,
    )
}

/// A `send` span of `count` envelopes to `topic`, with the parent given (`parent: None` for a
/// root) or the current span's.
macro_rules! send_span {
    ($system:expr, $topic:expr, $count:expr $(, parent: $parent:expr)?) => {
        tracing::info_span!(
            target: "event_runtime::telemetry",
            $(parent: $parent,)?
            "send",
            otel.name = %format_args!("send {}", $topic),
            otel.kind = "producer",
            messaging.system = $system,
            messaging.operation.type = "send",
            messaging.operation.name = "send",
            messaging.destination.name = $topic,
            // An integer, as the conventions type it (a `usize` would be exported as a string:
            // `tracing-opentelemetry` records unsigned values through `Debug`).
            messaging.batch.message_count = i64::try_from($count).unwrap_or(i64::MAX),
            otel.status_code = tracing::field::Empty,
            error.r#type = tracing::field::Empty,
        )
    };
}

/// Records a `send` span's failure: `error.type` (`encode`, or the engine's error kind) and an
/// error status.
pub(crate) fn send_failed(span: &tracing::Span, kind: &str) {
    span.record("error.type", kind);
    span.record("otel.status_code", "error");
}

/// The `send` span of one topic of a multi-topic batch (a `publish_all`, a handler's emitted
/// events) while its send may still not happen: from its creation, before any topic is
/// appended (the records carry its context), until its append starts; in the SQLite inbox,
/// where topics are appended one by one in the handler's transaction, from its append until
/// the last topic's ([`PendingSend::release`]). Dropped before that (another topic's encode,
/// partition lookup or append failed, or the call was cancelled), it ends as a failed send
/// with `error.type` `aborted`: a trace never shows a send that did not happen as a success. (A
/// commit of the SQLite inbox that fails after every append succeeded leaves the spans as
/// successes.)
pub(crate) struct PendingSend(Option<tracing::Span>);

impl PendingSend {
    pub(crate) fn new(span: tracing::Span) -> Self {
        PendingSend(Some(span))
    }

    /// The span, no longer to be marked `aborted`.
    pub(crate) fn release(mut self) -> tracing::Span {
        self.0.take().unwrap_or_else(tracing::Span::none)
    }
}

impl Drop for PendingSend {
    fn drop(&mut self) {
        if let Some(span) = self.0.take() {
            send_failed(&span, "aborted");
        }
    }
}

/// Records a `send` span's failed append: [`send_failed`] with the engine's error kind.
pub(crate) fn append_failed(span: &tracing::Span, err: &crate::transport::TransportError) {
    use crate::transport::TransportErrorKind;
    let kind = match err.kind {
        TransportErrorKind::Unavailable => "unavailable",
        TransportErrorKind::UnknownTopic => "unknown_topic",
        TransportErrorKind::InvalidPartition => "invalid_partition",
        TransportErrorKind::Corrupt => "corrupt",
        TransportErrorKind::Other => "other",
    };
    send_failed(span, kind);
}

/// The `send` span of an append of `count` envelopes to `topic` (not entered): a child of the
/// current span, or outside any of the envelopes' creation context `created`.
pub(crate) fn send_span(
    system: &'static str,
    topic: &str,
    count: usize,
    created: Option<&TraceContext>,
) -> tracing::Span {
    let span = send_span!(system, topic, count);
    if created.is_some() && !span.is_disabled() && otel::current().is_none() {
        otel::join(&span, created, true);
    }
    span
}

/// The `send` span of the outbox relay appending `records` to `topic`: a root, linked to each
/// record's creation context (its CloudEvents `traceparent`). It stamps no `traceparent`
/// header: the consumer's parent stays the context the event was created in.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn relay_span(
    system: &'static str,
    topic: &str,
    records: &[crate::transport::OutgoingRecord],
) -> tracing::Span {
    let span = send_span!(system, topic, records.len(), parent: None);
    if !span.is_disabled() {
        for record in records {
            let created = trace_in(&record.headers, "ce_traceparent", "ce_tracestate");
            otel::join(&span, created.as_ref(), false);
        }
    }
    span
}

/// Records how a `process` span ended.
pub(crate) fn outcome(span: &tracing::Span, outcome: &'static str) {
    span.record("evt.outcome", outcome);
}

/// Records a `process` span's failure: `error.type` and an error status.
pub(crate) fn failed(span: &tracing::Span, reason: &str) {
    span.record("evt.outcome", "dead_lettered");
    span.record("error.type", reason);
    span.record("otel.status_code", "error");
}

/// The trace context of the current span, when there is an OpenTelemetry one: what envelopes
/// created now carry as their creation context.
pub(crate) fn current_trace() -> Option<TraceContext> {
    otel::current()
}

/// The context of a `send` span, which the records of its append carry in their protocol
/// headers ([`stamp`]); `None` when it has none (disabled, or no OpenTelemetry layer).
pub(crate) fn hop_of(span: &tracing::Span) -> Option<TraceContext> {
    if span.is_disabled() {
        return None;
    }
    otel::of(span)
}

/// Writes a `send` span's context `hop` ([`hop_of`]) into the protocol headers `traceparent`
/// and `tracestate` of a record being encoded (the encoder writes the creation context as the
/// CloudEvents attribute, `ce_traceparent`, and never these): written once, with the rest.
pub(crate) fn stamp(headers: &mut crate::transport::HeadersBuilder, hop: Option<&TraceContext>) {
    if let Some(hop) = hop {
        headers.push("traceparent", hop.traceparent.as_bytes());
        if let Some(state) = &hop.tracestate {
            headers.push("tracestate", state.as_bytes());
        }
    }
}

/// The previous hop's context from the protocol headers, if well formed.
fn hop_context(hop: Hop<'_>) -> Option<TraceContext> {
    trace_of(hop.traceparent?, hop.tracestate)
}

/// The trace context in the headers `parent` and `state`, if well formed.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn trace_in(headers: &Headers, parent: &str, state: &str) -> Option<TraceContext> {
    let (parent, state) = headers.get_pair(parent, state);
    trace_of(parent?, state)
}

/// The trace context of header values `parent` and `state`, if well formed.
fn trace_of(parent: &[u8], state: Option<&[u8]>) -> Option<TraceContext> {
    let traceparent = std::str::from_utf8(parent).ok()?;
    if !crate::request::valid_traceparent(traceparent) {
        return None;
    }
    Some(TraceContext {
        traceparent: traceparent.to_owned(),
        tracestate: state
            .and_then(|s| std::str::from_utf8(s).ok())
            .map(str::to_owned),
    })
}

#[cfg(feature = "otel")]
mod otel {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    use crate::envelope::TraceContext;

    /// Makes `span` a child of `remote` (`parent`) or links it to `remote` (a new trace).
    pub(super) fn join(span: &tracing::Span, remote: Option<&TraceContext>, parent: bool) {
        let Some(remote) = remote.and_then(parse) else {
            return;
        };
        if parent {
            let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
        } else {
            span.add_link(remote);
        }
    }

    /// The current span's context, when valid; else the current OpenTelemetry context's (an
    /// unsampled record's producer, see [`super::record_unsampled`]).
    pub(super) fn current() -> Option<TraceContext> {
        of(&tracing::Span::current()).or_else(|| {
            opentelemetry::Context::map_current(|cx| {
                cx.has_active_span()
                    .then(|| text(&cx.span().span_context().clone()))
                    .flatten()
            })
        })
    }

    /// The producer's context of a record (the header `traceparent`, else the envelope's
    /// creation context) as the current context to process it in, when it is well formed and
    /// **not** sampled; `None` otherwise (a sampled or absent parent: the record gets a span).
    pub(super) fn unsampled_parent(
        hop: crate::cloudevents::record::Hop<'_>,
        raw: &crate::envelope::RawEnvelope,
    ) -> Option<opentelemetry::Context> {
        // As `hop_context`: the header when well formed, else the envelope's.
        if let Some(parent) = hop.traceparent
            && let Ok(decided) = decide(
                parent,
                hop.tracestate.and_then(|s| std::str::from_utf8(s).ok()),
            )
        {
            return decided;
        }
        let trace = raw.trace.as_ref()?;
        decide(trace.traceparent.as_bytes(), trace.tracestate.as_deref()).ok()?
    }

    /// The context to process in for producer context `parent` (`state`): `None` when
    /// sampled; `Err` when malformed.
    fn decide(parent: &[u8], state: Option<&str>) -> Result<Option<opentelemetry::Context>, ()> {
        // The records of one append share their producer's context: parse it once.
        LAST_UNSAMPLED.with_borrow_mut(|last| {
            if let Some((p, s, cx)) = last.as_ref()
                && p.as_slice() == parent
                && s.as_deref() == state
            {
                return Ok(Some(cx.clone()));
            }
            let remote = span_context(parent, state).ok_or(())?;
            if remote.is_sampled() {
                return Ok(None);
            }
            let cx = opentelemetry::Context::new().with_remote_span_context(remote);
            *last = Some((parent.to_vec(), state.map(str::to_owned), cx.clone()));
            Ok(Some(cx))
        })
    }

    /// An unsampled producer context: its `traceparent`, `tracestate`, and the context made
    /// of them.
    type Unsampled = (Vec<u8>, Option<String>, opentelemetry::Context);

    thread_local! {
        /// The last unsampled producer context read on this thread (only unsampled ones are kept).
        static LAST_UNSAMPLED: std::cell::RefCell<Option<Unsampled>> =
            const { std::cell::RefCell::new(None) };
    }

    /// `span`'s context, when valid.
    pub(super) fn of(span: &tracing::Span) -> Option<TraceContext> {
        let cx = span.context();
        let span = cx.span();
        text(span.span_context())
    }

    /// A span context as `traceparent` and `tracestate`, when valid.
    fn text(sc: &SpanContext) -> Option<TraceContext> {
        if !sc.is_valid() {
            return None;
        }
        let state = sc.trace_state().header();
        Some(TraceContext {
            traceparent: format!(
                "00-{}-{}-{:02x}",
                sc.trace_id(),
                sc.span_id(),
                sc.trace_flags().to_u8()
            ),
            tracestate: (!state.is_empty()).then_some(state),
        })
    }

    /// A well-formed `traceparent` (and `tracestate`, dropped when malformed) as a remote span
    /// context.
    fn parse(trace: &TraceContext) -> Option<SpanContext> {
        span_context(trace.traceparent.as_bytes(), trace.tracestate.as_deref())
    }

    /// See [`parse`].
    fn span_context(traceparent: &[u8], tracestate: Option<&str>) -> Option<SpanContext> {
        let (trace_id, span_id, flags) = crate::request::parse_traceparent(traceparent)?;
        let (trace_id, span_id) = (TraceId::from(trace_id), SpanId::from(span_id));
        let state = tracestate
            .and_then(|s| s.parse::<TraceState>().ok())
            .unwrap_or_default();
        Some(SpanContext::new(
            trace_id,
            span_id,
            TraceFlags::new(flags & 1),
            true,
            state,
        ))
    }
}

#[cfg(not(feature = "otel"))]
mod otel {
    use crate::envelope::TraceContext;

    pub(super) fn join(_: &tracing::Span, _: Option<&TraceContext>, _: bool) {}

    pub(super) fn current() -> Option<TraceContext> {
        None
    }

    pub(super) fn of(_: &tracing::Span) -> Option<TraceContext> {
        None
    }
}

/// The upper bounds, in seconds, of the buckets of every duration histogram the runtime keeps
/// (OpenTelemetry's recommended boundaries for messaging durations, from 5 ms to 10 s, with
/// finer ones below).
pub const DURATION_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// A duration histogram with the fixed [`DURATION_BUCKETS`]: a few relaxed atomic adds per
/// observation, read at scrape time.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last counts those above every bound.
    buckets: [std::sync::atomic::AtomicU64; DURATION_BUCKETS.len() + 1],
    sum_nanos: std::sync::atomic::AtomicU64,
}

/// A read of a [`Histogram`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HistogramSnapshot {
    /// `(upper bound, observations at or below it)`, cumulative, for each of
    /// [`DURATION_BUCKETS`].
    pub buckets: Vec<(f64, u64)>,
    /// Every observation.
    pub count: u64,
    /// Their sum, in seconds.
    pub sum: f64,
}

impl Histogram {
    /// Records one duration.
    pub fn observe(&self, duration: Duration) {
        use std::sync::atomic::Ordering::Relaxed;
        let seconds = duration.as_secs_f64();
        let bucket = DURATION_BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(DURATION_BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Relaxed);
        self.sum_nanos.fetch_add(
            u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX),
            Relaxed,
        );
    }

    /// Reads it.
    pub fn snapshot(&self) -> HistogramSnapshot {
        use std::sync::atomic::Ordering::Relaxed;
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(DURATION_BUCKETS.len());
        for (bound, count) in DURATION_BUCKETS.iter().zip(&self.buckets) {
            cumulative += count.load(Relaxed);
            buckets.push((*bound, cumulative));
        }
        let count = cumulative + self.buckets[DURATION_BUCKETS.len()].load(Relaxed);
        HistogramSnapshot {
            buckets,
            count,
            sum: self.sum_nanos.load(Relaxed) as f64 / 1e9,
        }
    }
}

/// What a publisher sent, per topic: records and the duration of each append.
#[derive(Debug, Default)]
pub(crate) struct Sent {
    topics: std::sync::Mutex<std::collections::BTreeMap<String, std::sync::Arc<SentTo>>>,
}

/// What was sent to one topic.
#[derive(Debug, Default)]
pub struct SentTo {
    /// Records appended.
    pub records: std::sync::atomic::AtomicU64,
    /// Appends that failed.
    pub errors: std::sync::atomic::AtomicU64,
    /// The duration of each append (`send`).
    pub duration: Histogram,
}

impl Sent {
    /// The counters of `topic`.
    pub(crate) fn to(&self, topic: &str) -> std::sync::Arc<SentTo> {
        let mut topics = self
            .topics
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(sent) = topics.get(topic) {
            return sent.clone();
        }
        topics.entry(topic.to_owned()).or_default().clone()
    }

    /// Every topic's counters.
    #[cfg(feature = "prometheus")]
    pub(crate) fn all(&self) -> Vec<(String, std::sync::Arc<SentTo>)> {
        self.topics
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(t, s)| (t.clone(), s.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `traceparent` as W3C Trace Context reads it: lowercase hex, fixed widths, ids not all
    /// zeros, version `ff` invalid.
    #[test]
    fn a_traceparent_is_read_in_place_or_refused() {
        let good = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            crate::request::parse_traceparent(good),
            Some((
                0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736,
                0x00f0_67aa_0ba9_02b7,
                1
            ))
        );
        // A later version may carry more after the 55 characters, behind a dash.
        assert_eq!(
            crate::request::parse_traceparent(
                b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-future-field"
            ),
            Some((
                0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736,
                0x00f0_67aa_0ba9_02b7,
                0
            ))
        );
        for bad in [
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "",
        ] {
            assert_eq!(
                crate::request::parse_traceparent(bad.as_bytes()),
                None,
                "{bad}"
            );
            assert!(!crate::request::valid_traceparent(bad), "{bad}");
        }
    }

    #[test]
    fn a_histogram_counts_cumulatively_per_bound() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(20));
        let s = h.snapshot();
        assert_eq!(s.count, 4);
        assert_eq!(s.buckets[0], (0.0005, 1));
        assert_eq!(s.buckets[3], (0.005, 3));
        assert_eq!(
            s.buckets.last(),
            Some(&(10.0, 3)),
            "20 s is above every bound"
        );
        assert!((s.sum - 20.0063).abs() < 1e-9, "{}", s.sum);
    }
}
