//! Replay: choose records from the log by position, time, type, key or correlation id and
//! re-deliver them to one consumer group.
//!
//! [`plan`] only reads (a dry run lists what it returns); [`request`] queues the plan for the
//! group, whose running consumer delivers each record with [`crate::Delivery::Replay`]. Replays
//! go through the group's dedupe store, so they have no effect on records it already handled,
//! unless the request bypasses dedupe on purpose.

use crate::cloudevents::Limits;
use crate::dlq::DeadLetters;
use crate::transport::{Record, Transport, TransportError};

/// Which records to replay. Every field left `None` matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplayFilter {
    /// The topic to read.
    pub topic: String,
    /// Only this partition.
    pub partition: Option<u32>,
    /// From this offset (inclusive).
    pub from_offset: Option<u64>,
    /// Up to this offset (inclusive).
    pub to_offset: Option<u64>,
    /// Appended at or after this time, ms since the epoch.
    pub since_ms: Option<i64>,
    /// Appended at or before this time, ms since the epoch.
    pub until_ms: Option<i64>,
    /// Only this CloudEvents `type`.
    pub event_type: Option<String>,
    /// Only this partition key.
    pub key: Option<String>,
    /// Only this correlation id.
    pub correlation_id: Option<String>,
}

impl ReplayFilter {
    /// Whether `record` matches. Records whose headers cannot be read match only filters that do
    /// not look at headers.
    pub fn matches(&self, record: &Record) -> bool {
        if self.partition.is_some_and(|p| p != record.partition)
            || self.from_offset.is_some_and(|o| record.offset < o)
            || self.to_offset.is_some_and(|o| record.offset > o)
            || self.since_ms.is_some_and(|t| record.timestamp_ms < t)
            || self.until_ms.is_some_and(|t| record.timestamp_ms > t)
        {
            return false;
        }
        if self.event_type.is_none() && self.key.is_none() && self.correlation_id.is_none() {
            return true;
        }
        let Ok(raw) = crate::transport::decode_record(record, &Limits::default()) else {
            return false;
        };
        self.event_type.as_deref().is_none_or(|t| raw.ty == t)
            && self
                .key
                .as_deref()
                .is_none_or(|k| raw.partition_key.as_deref() == Some(k))
            && self
                .correlation_id
                .as_deref()
                .is_none_or(|c| raw.correlation_id.as_deref() == Some(c))
    }
}

/// The records `filter` selects, in partition then offset order.
///
/// # Errors
///
/// The engine's error (an unknown topic included).
pub async fn plan<T: Transport>(
    transport: &T,
    filter: &ReplayFilter,
) -> Result<Vec<Record>, TransportError> {
    let ends = transport.end_offsets(&filter.topic).await?;
    let mut selected = Vec::new();
    for (partition, end) in ends.into_iter().enumerate() {
        let partition = partition as u32;
        if filter.partition.is_some_and(|p| p != partition) {
            continue;
        }
        let mut next = filter.from_offset.unwrap_or(0);
        let last = filter
            .to_offset
            .map_or(end, |to| to.saturating_add(1).min(end));
        // A time window starts at the engine's time lookup, not a scan from 0. Its end is found
        // by scanning with the filter: record times need not increase along a partition (Kafka
        // stamps each record with its producer's clock), so a lookup could stop short of a
        // record inside the window.
        if let Some(since) = filter.since_ms {
            next = next.max(
                transport
                    .offset_for_time(&filter.topic, partition, since)
                    .await?,
            );
        }
        while next < last {
            let batch = transport.fetch(&filter.topic, partition, next, 512).await?;
            let Some(tail) = batch.last().map(|r| r.offset) else {
                break;
            };
            selected.extend(
                batch
                    .into_iter()
                    .filter(|r| r.offset < last && filter.matches(r)),
            );
            next = tail + 1;
        }
    }
    Ok(selected)
}

/// Queues `records` for redelivery to `group`; returns how many were queued.
///
/// # Errors
///
/// The database error.
pub async fn request(
    dlq: &DeadLetters,
    group: &str,
    records: &[Record],
    bypass_dedupe: bool,
) -> Result<usize, TransportError> {
    let positions: Vec<(String, u32, u64)> = records
        .iter()
        .map(|r| (r.topic.to_string(), r.partition, r.offset))
        .collect();
    dlq.request_replay(group, &positions, bypass_dedupe).await
}
