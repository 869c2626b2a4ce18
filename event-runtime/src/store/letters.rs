//! The dead-letter lifecycle, written once: a letter is stored (or, if the same record of the
//! same group is still open, updated), parked behind the open letter of its key in sequenced
//! mode, redriven on request, resolved or sent back to `dead` by the consumer, purged; each step
//! leaves an audit entry; resolving or purging a letter releases the oldest letter parked
//! behind it.
//!
//! Every function here runs on one [`LetterTx`]: a transaction of whichever store holds the
//! letters (memory, SQLite, PostgreSQL), which contributes the rows and nothing else.

use std::future::Future;

use crate::dlq::{
    AuditEntry, DeadLetter, LetterFilter, LetterStatus, NewDeadLetter, Redelivery,
    RedeliverySource, Selection,
};
use crate::transport::TransportError;

/// The columns of a letter that a redelivery request copies.
#[derive(Clone, Debug)]
pub(crate) struct LetterRef {
    pub(crate) id: u64,
    pub(crate) group: String,
    pub(crate) topic: String,
    pub(crate) partition: u32,
    pub(crate) offset: u64,
}

/// The row-level operations of the letters' tables inside one transaction. [`put`] serialises
/// itself per record and, when parking, per key with [`LetterTx::lock`] (a no-op where the
/// transaction holds the whole store); the `*_for_update` reads lock what they return until the
/// commit.
pub(crate) trait LetterTx: Send {
    /// Serialises this transaction with every other one that locks `key`.
    fn lock(&mut self, key: &str) -> impl Future<Output = Result<(), TransportError>> + Send;
    /// The open letter of this record and group, if any.
    fn open_for_record(
        &mut self,
        group: &str,
        topic: &str,
        partition: u32,
        offset: u64,
    ) -> impl Future<Output = Result<Option<u64>, TransportError>> + Send;
    /// The oldest open letter of this key of `group` on `topic`.
    fn oldest_open_for_key(
        &mut self,
        group: &str,
        topic: &str,
        partition_key: Option<&str>,
    ) -> impl Future<Output = Result<Option<u64>, TransportError>> + Send;
    /// The letter failed again: new reason and chain, more attempts, a new last failure.
    fn failed_again(
        &mut self,
        id: u64,
        letter: &NewDeadLetter,
    ) -> impl Future<Output = Result<(), TransportError>> + Send;
    /// A new letter with `status`; its id.
    fn insert(
        &mut self,
        letter: &NewDeadLetter,
        status: LetterStatus,
    ) -> impl Future<Output = Result<u64, TransportError>> + Send;
    /// An audit entry, stamped now.
    fn audit(
        &mut self,
        letter_id: u64,
        action: &str,
        actor: &str,
        detail: &str,
    ) -> impl Future<Output = Result<(), TransportError>> + Send;
    /// The letter `id`, locked.
    fn letter_for_update(
        &mut self,
        id: u64,
    ) -> impl Future<Output = Result<Option<LetterRef>, TransportError>> + Send;
    /// The `dead` letters (of `group`, if given), oldest first, locked.
    fn dead_for_update(
        &mut self,
        group: Option<&str>,
    ) -> impl Future<Output = Result<Vec<LetterRef>, TransportError>> + Send;
    /// The ids of the open letters (of `group`, if given), oldest first, locked.
    fn open_for_update(
        &mut self,
        group: Option<&str>,
    ) -> impl Future<Output = Result<Vec<u64>, TransportError>> + Send;
    /// The oldest letter parked behind `id`, locked.
    fn first_parked_behind(
        &mut self,
        id: u64,
    ) -> impl Future<Output = Result<Option<LetterRef>, TransportError>> + Send;
    /// Parks every letter parked behind `from` behind `to` instead (except `to` itself).
    fn repark(
        &mut self,
        from: u64,
        to: u64,
    ) -> impl Future<Output = Result<(), TransportError>> + Send;
    /// Sets the status of `id`.
    fn set_status(
        &mut self,
        id: u64,
        status: LetterStatus,
    ) -> impl Future<Output = Result<(), TransportError>> + Send;
    /// A redrive came back failed: `dead` again, one more attempt, the new chain.
    fn redrive_failed(
        &mut self,
        id: u64,
        chain: &[String],
    ) -> impl Future<Output = Result<(), TransportError>> + Send;
    /// A redelivery request.
    fn insert_redelivery(
        &mut self,
        group: &str,
        source: RedeliverySource,
        letter_id: Option<u64>,
        record: (&str, u32, u64),
        bypass_dedupe: bool,
    ) -> impl Future<Output = Result<(), TransportError>> + Send;
    /// Deletes the redelivery `id`; whether it was there.
    fn delete_redelivery(
        &mut self,
        id: u64,
    ) -> impl Future<Output = Result<bool, TransportError>> + Send;
    /// Deletes the redrive requests of the letter `letter_id`; how many there were.
    fn delete_redrives_of(
        &mut self,
        letter_id: u64,
    ) -> impl Future<Output = Result<u64, TransportError>> + Send;
    /// Whether the redelivery `id` is still pending (not delivered, not cancelled).
    fn redelivery_pending(
        &mut self,
        id: u64,
    ) -> impl Future<Output = Result<bool, TransportError>> + Send;

    /// Letters, oldest first.
    fn list(
        &mut self,
        filter: &LetterFilter,
    ) -> impl Future<Output = Result<Vec<DeadLetter>, TransportError>> + Send;
    /// One letter.
    fn get(
        &mut self,
        id: u64,
    ) -> impl Future<Output = Result<Option<DeadLetter>, TransportError>> + Send;
    /// The audit trail of a letter, oldest first.
    fn audit_of(
        &mut self,
        letter_id: u64,
    ) -> impl Future<Output = Result<Vec<AuditEntry>, TransportError>> + Send;
    /// The oldest pending redeliveries of `group` (of every group: `None`) after the request
    /// `after` (`0`: from the first).
    fn redeliveries(
        &mut self,
        group: Option<&str>,
        after: u64,
        max: u32,
    ) -> impl Future<Output = Result<Vec<Redelivery>, TransportError>> + Send;
    /// Open letters per group.
    fn depth(&mut self) -> impl Future<Output = Result<Vec<(String, u64)>, TransportError>> + Send;
    /// Deletes the closed letters (resolved or purged) whose last audit entry is older than
    /// `before_ms`, with their audit trail; how many letters.
    fn delete_closed(
        &mut self,
        before_ms: i64,
    ) -> impl Future<Output = Result<u64, TransportError>> + Send;

    /// Makes the transaction's changes durable and visible.
    fn commit(self) -> impl Future<Output = Result<(), TransportError>> + Send;
}

/// The key serialising writers of one record of one group. The same text as releases before
/// the store was written once, so old and new processes sharing a database still serialise.
fn record_key(group: &str, topic: &str, partition: u32, offset: u64) -> String {
    format!("{group}/{topic}/{partition}/{offset}")
}

/// The key serialising parking of one partition key of one group (same text as before, too).
fn partition_key_lock(group: &str, topic: &str, partition_key: Option<&str>) -> String {
    format!("{group}/{topic}/{}", partition_key.unwrap_or(""))
}

/// Stores a dead letter; returns its id. See [`crate::dlq::DeadLetters::put`].
pub(crate) async fn put(
    tx: &mut impl LetterTx,
    mut letter: NewDeadLetter,
) -> Result<u64, TransportError> {
    let record = &letter.record;
    // The live lane and a replay may fail the same record at the same moment.
    tx.lock(&record_key(
        &letter.group,
        &record.topic,
        record.partition,
        record.offset,
    ))
    .await?;
    // The same record of the same group already open (a batch fetched again after another
    // lane's failure): that letter, not a second one.
    let open = tx
        .open_for_record(
            &letter.group,
            &record.topic,
            record.partition,
            record.offset,
        )
        .await?;
    if let Some(id) = open {
        if letter.parked_behind.is_none() {
            // It failed again (a replay, or the batch read again): the letter says so.
            tx.failed_again(id, &letter).await?;
            let reason = letter.error_chain.first().cloned().unwrap_or_default();
            let consumer = consumer_actor(&letter.group, letter.instance.as_deref());
            tx.audit(id, "failed-again", &consumer, &reason).await?;
        }
        // Parked behind its key's open letter, and already open itself: nothing changes.
        return Ok(id);
    }
    // A letter to park: the letter it waits for may have been resolved since the consumer
    // looked. Park behind the oldest letter of the key still open, or, if none is, queue it for
    // delivery right away instead of parking it behind nothing.
    let mut release = false;
    if letter.parked_behind.is_some() {
        tx.lock(&partition_key_lock(
            &letter.group,
            &letter.record.topic,
            letter.partition_key.as_deref(),
        ))
        .await?;
        let blocker = tx
            .oldest_open_for_key(
                &letter.group,
                &letter.record.topic,
                letter.partition_key.as_deref(),
            )
            .await?;
        letter.parked_behind = blocker;
        release = blocker.is_none();
    }
    let status = if letter.parked_behind.is_some() {
        LetterStatus::Parked
    } else if release {
        LetterStatus::Redriving
    } else {
        LetterStatus::Dead
    };
    let id = tx.insert(&letter, status).await?;
    let reason = letter.error_chain.first().cloned().unwrap_or_default();
    let consumer = consumer_actor(&letter.group, letter.instance.as_deref());
    tx.audit(
        id,
        "dead-lettered",
        &consumer,
        &format!("{}: {reason}", letter.reason_kind),
    )
    .await?;
    if release {
        let record = &letter.record;
        let this = LetterRef {
            id,
            group: letter.group.clone(),
            topic: record.topic.to_string(),
            partition: record.partition,
            offset: record.offset,
        };
        queue_redrive(tx, &this, &consumer).await?;
    }
    Ok(id)
}

/// Marks `letter` redriving and queues its redelivery.
async fn queue_redrive(
    tx: &mut impl LetterTx,
    letter: &LetterRef,
    actor: &str,
) -> Result<(), TransportError> {
    tx.set_status(letter.id, LetterStatus::Redriving).await?;
    tx.insert_redelivery(
        &letter.group,
        RedeliverySource::Redrive,
        Some(letter.id),
        (&letter.topic, letter.partition, letter.offset),
        false,
    )
    .await?;
    tx.audit(letter.id, "redrive-requested", actor, "").await
}

/// Releases the oldest letter parked behind `letter_id` and parks the others behind it, so a
/// key's parked events run one at a time, in order: if the released one fails again, the rest
/// keep waiting behind it.
async fn release_parked(
    tx: &mut impl LetterTx,
    letter_id: u64,
    actor: &str,
) -> Result<(), TransportError> {
    let Some(next) = tx.first_parked_behind(letter_id).await? else {
        return Ok(());
    };
    tx.repark(letter_id, next.id).await?;
    queue_redrive(tx, &next, actor).await
}

/// See [`crate::dlq::DeadLetters::request_redrive`].
pub(crate) async fn request_redrive(
    tx: &mut impl LetterTx,
    group: Option<&str>,
    selection: Selection<'_>,
    actor: &str,
) -> Result<usize, TransportError> {
    let mut queued = 0;
    for letter in tx.dead_for_update(group).await? {
        if selection.contains(letter.id) {
            queue_redrive(tx, &letter, actor).await?;
            queued += 1;
        }
    }
    Ok(queued)
}

/// See [`crate::dlq::DeadLetters::purge`].
pub(crate) async fn purge(
    tx: &mut impl LetterTx,
    group: Option<&str>,
    selection: Selection<'_>,
    actor: &str,
) -> Result<usize, TransportError> {
    let mut purged = 0;
    for id in tx.open_for_update(group).await? {
        if !selection.contains(id) {
            continue;
        }
        tx.set_status(id, LetterStatus::Purged).await?;
        // A redrive queued for it (requested, or released by a letter purged or resolved just
        // before) would run the event the operator has just purged.
        let cancelled = tx.delete_redrives_of(id).await?;
        let detail = if cancelled > 0 {
            "its queued redrive cancelled"
        } else {
            ""
        };
        tx.audit(id, "purged", actor, detail).await?;
        // What waited behind a purged letter would otherwise wait forever.
        release_parked(tx, id, actor).await?;
        purged += 1;
    }
    Ok(purged)
}

/// See [`crate::dlq::DeadLetters::request_replay`].
pub(crate) async fn request_replay(
    tx: &mut impl LetterTx,
    group: &str,
    records: &[(String, u32, u64)],
    bypass_dedupe: bool,
) -> Result<usize, TransportError> {
    for (topic, partition, offset) in records {
        tx.insert_redelivery(
            group,
            RedeliverySource::Replay,
            None,
            (topic, *partition, *offset),
            bypass_dedupe,
        )
        .await?;
    }
    Ok(records.len())
}

/// See [`crate::dlq::DeadLetters::cancel_replays`].
pub(crate) async fn cancel_replays(
    tx: &mut impl LetterTx,
    group: Option<&str>,
    ids: Option<&[u64]>,
) -> Result<Vec<u64>, TransportError> {
    let mut cancelled = Vec::new();
    for request in tx.redeliveries(group, 0, u32::MAX).await? {
        let wanted = ids.is_none_or(|ids| ids.contains(&request.id));
        if wanted && request.source == RedeliverySource::Replay {
            tx.delete_redelivery(request.id).await?;
            cancelled.push(request.id);
        }
    }
    Ok(cancelled)
}

/// The audit actor of a consumer: `consumer:<group>`, with `@<instance>` when known.
fn consumer_actor(group: &str, instance: Option<&str>) -> String {
    match instance {
        Some(instance) => format!("consumer:{group}@{instance}"),
        None => format!("consumer:{group}"),
    }
}

/// See [`crate::dlq::DeadLetters::finish_redelivery`].
pub(crate) async fn finish_redelivery(
    tx: &mut impl LetterTx,
    redelivery: &Redelivery,
    failure: Option<&[String]>,
    instance: Option<&str>,
) -> Result<(), TransportError> {
    // Lock the letter first (a concurrent redrive request or purge waits for this to finish),
    // then the request: the order a purge takes them in, so the two cannot deadlock.
    let letter = match redelivery.letter_id {
        Some(id) => tx.letter_for_update(id).await?.map(|_| id),
        None => None,
    };
    // Gone: cancelled, or finished by another instance (a handover while it ran): its outcome
    // is recorded once.
    let pending = tx.delete_redelivery(redelivery.id).await?;
    let Some(letter_id) = letter.filter(|_| pending) else {
        return Ok(());
    };
    // Purged (or closed otherwise) while its redrive ran: the letter keeps that status.
    if tx
        .get(letter_id)
        .await?
        .is_none_or(|l| l.status != LetterStatus::Redriving)
    {
        return Ok(());
    }
    let actor = consumer_actor(&redelivery.group, instance);
    match failure {
        Some(chain) => {
            tx.redrive_failed(letter_id, chain).await?;
            tx.audit(letter_id, "redrive-failed", &actor, &chain.join(": "))
                .await
        }
        None => {
            tx.set_status(letter_id, LetterStatus::Resolved).await?;
            tx.audit(letter_id, "resolved", &actor, "").await?;
            release_parked(tx, letter_id, &actor).await
        }
    }
}

/// The stored form of an error chain.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn chain_to_text(chain: &[String]) -> String {
    serde_json::to_string(chain).unwrap_or_else(|_| "[]".to_owned())
}

/// The inverse of [`chain_to_text`] (an unreadable chain reads as empty).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn chain_from_text(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}
