//! The transport abstraction: partitioned, append-only topics with consumer-group positions.
//!
//! The model is the one Kafka and NATS JetStream share: a topic has a fixed number of partitions;
//! each partition is an ordered log addressed by offset; a consumer group commits, per partition,
//! the next offset it wants. Records are CloudEvents in binary content mode (attributes in
//! [`Record::headers`], data in [`Record::payload`]), or in structured content mode on an engine
//! that stores that ([`Transport::structured_records`]), so every engine carries bytes a foreign
//! client can read.
//!
//! At-least-once delivery follows from the contract: the runtime commits a position only after
//! every record before it was handled (or dead-lettered), so a crash redelivers from the last
//! commit.
//!
//! Engines: [`memory::MemoryTransport`] (tests, demos), with the `sqlite` feature
//! [`sqlite::SqliteTransport`] (durable, the default of [`crate::App::embedded`]), and the
//! `event-nats` crate's `NatsTransport` (NATS JetStream). `App::new(transport, stores)` runs an
//! app on any of them.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub use bytes::Bytes;

mod headers;
pub mod memory;
#[cfg(feature = "sqlite")]
pub mod sqlite;

pub use headers::{Headers, HeadersBuilder, Iter as HeadersIter};

/// A record to append.
///
/// Key, headers and payload are shared buffers ([`Bytes`], [`Headers`]): an engine that keeps
/// records in memory, or hands them to a client that takes [`Bytes`] (async-nats), stores them
/// without copying.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct OutgoingRecord {
    /// Target partition, chosen by the caller with [`crate::partition::partition_for_key`].
    pub partition: u32,
    /// The record key (the CloudEvents `partitionkey`).
    pub key: Option<Bytes>,
    /// Binary-mode CloudEvents headers.
    pub headers: Headers,
    /// The event payload.
    pub payload: Bytes,
}

/// A stored record.
///
/// Cloning one copies no bytes: the topic, key, headers and payload are shared buffers, and the
/// in-memory engine hands out the very buffers it stores.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Topic.
    pub topic: Arc<str>,
    /// Partition.
    pub partition: u32,
    /// Offset in the partition, from 0.
    pub offset: u64,
    /// Append time, milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// The record key.
    pub key: Option<Bytes>,
    /// Binary-mode CloudEvents headers (in structured mode: `content-type` and any headers
    /// that are not attributes).
    pub headers: Headers,
    /// The payload.
    pub payload: Bytes,
}

/// Where a record was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Position {
    /// Partition.
    pub partition: u32,
    /// Offset.
    pub offset: u64,
}

/// How much of a topic's log an embedded engine keeps ([`Transport::delete_records`]); the app
/// applies them from [`crate::app::Retention`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogLimits {
    /// Records appended longer ago than this are deleted. `None`: no age limit. Default 7 days
    /// (Kafka's default `retention.ms`).
    pub max_age: Option<Duration>,
    /// Per partition: the oldest records are deleted while the partition's records take more
    /// than this many bytes (key, headers and payload). `None` (the default): no size limit.
    pub max_bytes: Option<u64>,
    /// Keep every record that a consumer group with a committed position on this log has not
    /// committed past yet (the default), so retention never takes what a known group still has
    /// to read; `false` deletes by age and size alone, as Kafka does. A group that never
    /// committed is not known.
    pub keep_unconsumed: bool,
}

impl Default for LogLimits {
    fn default() -> Self {
        LogLimits {
            max_age: Some(Duration::from_secs(7 * 24 * 3600)),
            max_bytes: None,
            keep_unconsumed: true,
        }
    }
}

/// How the instances of one consumer group share an engine's partitions
/// ([`Transport::sharing`]; docs/delivery.md, "Running several instances").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sharing {
    /// They do not: every instance consumes every partition.
    None,
    /// Through claims in the partitions' slots ([`Transport::slot`], [`Transport::swap_slot`]),
    /// dealt by the runtime over the live members ([`Transport::beat`]): memory, SQLite, NATS.
    Claims,
    /// The engine assigns the partitions to the members itself ([`Transport::assignment`]):
    /// Kafka's consumer-group protocol. A slot's claim is this instance's while the partition
    /// is assigned to it, and a write of it succeeds only then.
    Engine,
}

/// A consumer group's position on one partition, with the instance that claims the partition:
/// what the instances of one service share partitions through ([`Transport::slot`]).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Slot {
    /// The next offset the group will read.
    pub next_offset: u64,
    /// The instance that owns the partition, if any claimed it.
    pub claim: Option<Claim>,
    /// The engine's revision of the slot, which every write changes: 0 when it was never
    /// written. [`Transport::swap_slot`] writes only over the revision it was given.
    pub revision: u64,
}

/// An instance's claim on a partition, until a time it renews.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// The instance (see [`crate::App::instance`]).
    pub owner: String,
    /// The claim lapses at this time (ms since the Unix epoch) unless renewed.
    pub until_ms: i64,
}

impl Claim {
    /// Whether the claim still holds at `now_ms`.
    pub fn live_at(&self, now_ms: i64) -> bool {
        self.until_ms > now_ms
    }
}

/// Why a transport call failed.
#[derive(Debug, thiserror::Error)]
#[error("{kind:?} on {operation}: {message}")]
pub struct TransportError {
    /// Class of failure.
    pub kind: TransportErrorKind,
    /// The operation, e.g. `publish to orders`.
    pub operation: String,
    /// What went wrong, without credentials.
    pub message: String,
    /// The engine's error.
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// Class of a [`TransportError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransportErrorKind {
    /// The engine is unreachable or busy; retrying may succeed.
    Unavailable,
    /// The topic does not exist.
    UnknownTopic,
    /// A partition outside the topic's range.
    InvalidPartition,
    /// Stored data cannot be read back.
    Corrupt,
    /// Anything else.
    Other,
}

impl TransportError {
    /// A new error.
    pub fn new(
        kind: TransportErrorKind,
        operation: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        TransportError {
            kind,
            operation: operation.into(),
            message: message.into(),
            source: None,
        }
    }

    /// Attaches the engine's error.
    #[must_use]
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }
}

/// A partitioned log with consumer-group positions. See the module docs.
///
/// Every method is cancel-safe in the sense that dropping the future leaves the log consistent:
/// an append is either stored whole or not at all, and a commit either happened or not.
pub trait Transport: Send + Sync + 'static {
    /// Whether this engine stores events in CloudEvents' structured content mode (NATS, whose
    /// protocol binding defines only that mode). Then [`crate::Publisher`] hands it the events
    /// it publishes already written so, which spares the engine rewriting binary mode: the
    /// payload is the JSON event format, with the headers `content-type:
    /// application/cloudevents+json` and `ce_id` (the event id, for an engine that dedupes
    /// appends by id; the payload carries it too), and the key as in binary mode. Records from
    /// elsewhere (events emitted by handlers, the outbox relay, dead-letter copies, tools) still
    /// come in binary mode or as they were stored. Default `false`: binary mode.
    fn structured_records(&self) -> bool {
        false
    }

    /// How the instances of a group share this engine's partitions. The default
    /// [`Sharing::None`]: every instance consumes every partition, so run one instance per group
    /// on such an engine.
    fn sharing(&self) -> Sharing {
        Sharing::None
    }

    /// The engine's name in telemetry: OpenTelemetry's `messaging.system` (`kafka`, `nats`;
    /// `evt_memory` and `evt_sqlite` for the embedded engines). Default `evt`.
    fn system(&self) -> &'static str {
        "evt"
    }

    /// Where the engine assigns partitions itself ([`Sharing::Engine`]): joins `group` as
    /// `instance` to consume `topics` (with their partition counts) on the first call, losing
    /// its membership when it stops answering for `ttl`, and returns the partitions assigned to
    /// this instance now, as `(topic, partition)`. A partition being revoked is no longer
    /// listed; the engine waits for its release ([`Transport::swap_slot`] without a claim)
    /// before it hands it to another member.
    fn assignment(
        &self,
        group: &str,
        instance: &str,
        topics: &[(String, u32)],
        ttl: Duration,
    ) -> impl Future<Output = Result<Vec<(String, u32)>, TransportError>> + Send {
        let _ = (instance, topics, ttl);
        std::future::ready(Err(TransportError::new(
            TransportErrorKind::Other,
            format!("join {group}"),
            "this engine does not assign partitions",
        )))
    }

    /// The slot of `group` on `partition`: its committed position with its claim and revision.
    /// The default reads [`Transport::committed`], with no claim and revision 0.
    fn slot(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> impl Future<Output = Result<Slot, TransportError>> + Send {
        async move {
            Ok(Slot {
                next_offset: self.committed(group, topic, partition).await?,
                claim: None,
                revision: 0,
            })
        }
    }

    /// Writes the slot of `group` on `partition` (its position and claim) if its revision is
    /// still `expected` (0: never written), and returns the new revision; `None` when the slot
    /// changed since (another instance claimed it, or a plain [`Transport::commit`] wrote it).
    /// Required where [`Transport::sharing`] is not [`Sharing::None`].
    fn swap_slot(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        next_offset: u64,
        claim: Option<&Claim>,
        expected: u64,
    ) -> impl Future<Output = Result<Option<u64>, TransportError>> + Send {
        let _ = (partition, next_offset, claim, expected);
        std::future::ready(Err(TransportError::new(
            TransportErrorKind::Other,
            format!("claim a partition of {topic} for {group}"),
            "this engine does not share partitions between instances",
        )))
    }

    /// Announces `instance` as a member of `group` until `until_ms`, and returns the members
    /// whose announcement still holds, sorted. Required for [`Sharing::Claims`]; the default
    /// answers `instance` alone.
    fn beat(
        &self,
        group: &str,
        instance: &str,
        until_ms: i64,
    ) -> impl Future<Output = Result<Vec<String>, TransportError>> + Send {
        let _ = (group, until_ms);
        std::future::ready(Ok(vec![instance.to_owned()]))
    }

    /// Withdraws `instance` from `group` (it stopped), so the others take its share at once.
    fn leave(
        &self,
        group: &str,
        instance: &str,
    ) -> impl Future<Output = Result<(), TransportError>> + Send {
        let _ = (group, instance);
        std::future::ready(Ok(()))
    }

    /// Creates `topic` with `partitions` partitions if it does not exist, and returns its actual
    /// partition count (an existing topic keeps its count).
    fn ensure_topic(
        &self,
        topic: &str,
        partitions: u32,
    ) -> impl Future<Output = Result<u32, TransportError>> + Send;

    /// Appends `records` to `topic` atomically, in order; returns their positions. An engine
    /// that cannot append several records atomically (NATS JetStream 2.9) appends them in order
    /// and says so in its docs.
    fn append(
        &self,
        topic: &str,
        records: Vec<OutgoingRecord>,
    ) -> impl Future<Output = Result<Vec<Position>, TransportError>> + Send;

    /// Up to `max` records of one partition from offset `from`, in offset order.
    fn fetch(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
        max: usize,
    ) -> impl Future<Output = Result<Vec<Record>, TransportError>> + Send;

    /// Waits until `partition` has a record at or after `from`, or `timeout` passes.
    fn wait(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
        timeout: Duration,
    ) -> impl Future<Output = ()> + Send;

    /// The next offset `group` will read from `partition` (0 if it never committed).
    fn committed(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> impl Future<Output = Result<u64, TransportError>> + Send;

    /// Commits `next_offset` as the next offset `group` will read from `partition`.
    fn commit(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        next_offset: u64,
    ) -> impl Future<Output = Result<(), TransportError>> + Send;

    /// The next offset to be written in every partition of `topic` (the high watermarks).
    fn end_offsets(
        &self,
        topic: &str,
    ) -> impl Future<Output = Result<Vec<u64>, TransportError>> + Send;

    /// Every topic with its partition count.
    fn topics(&self) -> impl Future<Output = Result<Vec<(String, u32)>, TransportError>> + Send;

    /// Deletes the oldest records of every partition of `topic` beyond `limits` and returns
    /// how many. The newest record of a partition is always kept, so offsets never restart;
    /// what is deleted leaves a gap below it, as Kafka's retention does, which readers skip.
    ///
    /// The SQLite engine implements it. A broker keeps records by its own retention (NATS
    /// `NatsConfig::max_age`, Kafka's `retention.ms`), and the in-memory engine keeps
    /// everything until the process ends: the default deletes nothing.
    fn delete_records(
        &self,
        topic: &str,
        limits: &LogLimits,
    ) -> impl Future<Output = Result<u64, TransportError>> + Send {
        let _ = (topic, limits);
        std::future::ready(Ok(0))
    }

    /// The offset of the first record of `partition` appended at or after `timestamp_ms` (ms
    /// since the epoch), or the end offset when there is none: where a replay by time starts.
    ///
    /// The default searches by bisection over [`Transport::fetch`], in O(log n) single-record
    /// reads, assuming append timestamps do not decrease along a partition (true of the memory
    /// and SQLite engines and of a JetStream stream). Kafka overrides it with the broker's time
    /// index (`offsets_for_times`).
    fn offset_for_time(
        &self,
        topic: &str,
        partition: u32,
        timestamp_ms: i64,
    ) -> impl Future<Output = Result<u64, TransportError>> + Send {
        offset_for_time_by_bisection(self, topic, partition, timestamp_ms)
    }
}

/// [`Transport::offset_for_time`] by bisection over single-record fetches: the default, and a
/// fallback for engines whose own time lookup proves wrong. Assumes append timestamps do not
/// decrease along the partition.
///
/// # Errors
///
/// The engine's; [`TransportErrorKind::InvalidPartition`] for a partition outside the topic.
pub async fn offset_for_time_by_bisection<T: Transport + ?Sized>(
    transport: &T,
    topic: &str,
    partition: u32,
    timestamp_ms: i64,
) -> Result<u64, TransportError> {
    let ends = transport.end_offsets(topic).await?;
    let end = ends.get(partition as usize).copied().ok_or_else(|| {
        TransportError::new(
            TransportErrorKind::InvalidPartition,
            format!("offset for time in {topic}"),
            format!("partition {partition} is outside 0..{}", ends.len()),
        )
    })?;
    // The first offset in `lo..end` whose record is at or after the time.
    let (mut lo, mut hi) = (0u64, end);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match transport.fetch(topic, partition, mid, 1).await?.first() {
            // A record before the time, possibly past a gap (records removed by retention).
            Some(record) if record.timestamp_ms < timestamp_ms => lo = record.offset.max(mid) + 1,
            _ => hi = mid,
        }
    }
    Ok(lo)
}

/// The topic events owned by `context` are published to: the context's name, so that all events
/// of one entity share a log and keep their per-key order.
pub fn event_topic(context: &str) -> String {
    context.to_owned()
}

/// The topic commands for `context` are sent to: `<context>.commands`.
pub fn command_topic(context: &str) -> String {
    format!("{context}.commands")
}

/// The topic on the engine where `group`'s dead letters are copied: `<group>.dlq` (see
/// [`crate::GroupOptions::dead_letter_topic`]). The dead-letter store stays the one to act on
/// (redrive, purge, audit); the topic lets engine-native tools (the `nats` CLI, Kafka consumers,
/// `evt tail`) and alerting see what failed.
pub fn dead_letter_topic(group: &str) -> String {
    format!("{group}.dlq")
}

/// The header a transport puts on a record whose stored headers cannot be read, holding the
/// reason; the consumer dead-letters such records as `malformed`.
pub const CORRUPT_HEADERS: &str = "x-evt-corrupt-headers";

pub use crate::cloudevents::decode_record;

/// Milliseconds since the Unix epoch, now: the clock of record timestamps and claims, for every
/// engine.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
