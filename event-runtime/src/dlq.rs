//! The dead-letter queue: records a consumer group could not handle, with the reason, the error
//! chain, attempts and failure times; redrive and replay requests; and an audit trail of every
//! operator action.
//!
//! Letters live where the app's stores are: in the engine's SQLite file (`evt_dead_letters`,
//! `evt_redeliveries`, `evt_dlq_audit`), so the `evt` CLI can list, redrive and purge them while
//! the application runs (a redrive or replay is a request row that the running consumer of that
//! group picks up); in PostgreSQL ([`DeadLetters::postgres`]), the same tables; or in memory
//! ([`DeadLetters::in_memory`]). The lifecycle is written once (`store::letters`) over the rows
//! each of them contributes, so all three behave the same.

use std::fmt;
use std::str::FromStr;

use crate::store::Db;
use crate::store::letters;
use crate::transport::{Record, TransportError};

/// Where a dead letter is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LetterStatus {
    /// Failed; waiting for an operator.
    Dead,
    /// Not attempted: an earlier event with the same key is dead (sequenced mode).
    Parked,
    /// A redrive was requested and not yet attempted.
    Redriving,
    /// Redriven successfully.
    Resolved,
    /// Removed by an operator (kept for the audit trail).
    Purged,
}

impl LetterStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            LetterStatus::Dead => "dead",
            LetterStatus::Parked => "parked",
            LetterStatus::Redriving => "redriving",
            LetterStatus::Resolved => "resolved",
            LetterStatus::Purged => "purged",
        }
    }

    /// Whether the letter still blocks its key in sequenced mode.
    pub fn is_open(self) -> bool {
        matches!(
            self,
            LetterStatus::Dead | LetterStatus::Parked | LetterStatus::Redriving
        )
    }
}

impl fmt::Display for LetterStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LetterStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "dead" => LetterStatus::Dead,
            "parked" => LetterStatus::Parked,
            "redriving" => LetterStatus::Redriving,
            "resolved" => LetterStatus::Resolved,
            "purged" => LetterStatus::Purged,
            other => return Err(format!("unknown dead-letter status `{other}`")),
        })
    }
}

/// Why a record was dead-lettered: the class of its failure. Stored, shown by `evt dlq` and sent
/// in the `x-evt-dlq-reason` header of the engine's dead-letter copy under [`ReasonKind::as_str`]'s
/// names; the letter's `reason` and `error_chain` say the particulars.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ReasonKind {
    /// The record is not a CloudEvent we can read: bad headers or attributes, or over the limits.
    Malformed,
    /// Its `type` is no type of this binary (with `dead_letter_unknown_types`).
    UnknownType,
    /// Its version is newer than the newest this binary knows.
    FutureVersion,
    /// Its payload does not decode into the type.
    Payload,
    /// An upcaster failed to lift it to the current version.
    Upcast,
    /// The handler failed with a permanent error.
    Permanent,
    /// The handler kept failing with transient errors until the retry policy gave up.
    RetriesExhausted,
    /// Not attempted: parked behind an open letter with the same key (sequenced mode).
    Parked,
}

impl ReasonKind {
    /// Every kind, in declaration order.
    pub const ALL: [ReasonKind; 8] = [
        ReasonKind::Malformed,
        ReasonKind::UnknownType,
        ReasonKind::FutureVersion,
        ReasonKind::Payload,
        ReasonKind::Upcast,
        ReasonKind::Permanent,
        ReasonKind::RetriesExhausted,
        ReasonKind::Parked,
    ];

    /// The stored name (`malformed`, `unknown-type`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonKind::Malformed => "malformed",
            ReasonKind::UnknownType => "unknown-type",
            ReasonKind::FutureVersion => "future-version",
            ReasonKind::Payload => "payload",
            ReasonKind::Upcast => "upcast",
            ReasonKind::Permanent => "permanent",
            ReasonKind::RetriesExhausted => "retries-exhausted",
            ReasonKind::Parked => "parked",
        }
    }
}

impl fmt::Display for ReasonKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ReasonKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ReasonKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = ReasonKind::ALL.iter().map(|k| k.as_str()).collect();
                format!(
                    "unknown dead-letter reason kind `{s}` (known: {})",
                    known.join(", ")
                )
            })
    }
}

/// One dead letter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    /// Id in the queue.
    pub id: u64,
    /// Consumer group that failed.
    pub group: String,
    /// The original record, exactly as read (its position, key, headers and payload).
    pub record: Record,
    /// CloudEvents `type`, if the headers could be read.
    pub event_type: Option<String>,
    /// CloudEvents `id`, if the headers could be read.
    pub event_id: Option<String>,
    /// Partition key, if any.
    pub partition_key: Option<String>,
    /// Class of failure.
    pub reason_kind: ReasonKind,
    /// The top-level reason.
    pub reason: String,
    /// The error and its sources, outermost first.
    pub error_chain: Vec<String>,
    /// Handler attempts made (0 for poison that was never handed to a handler).
    pub attempts: u32,
    /// First failure, ms since the epoch.
    pub first_failure_ms: i64,
    /// Last failure, ms since the epoch.
    pub last_failure_ms: i64,
    /// The dead letter this one is parked behind (sequenced mode).
    pub parked_behind: Option<u64>,
    /// Status.
    pub status: LetterStatus,
}

/// A new dead letter, before it has an id.
#[derive(Clone, Debug)]
pub struct NewDeadLetter {
    /// Consumer group.
    pub group: String,
    /// The record.
    pub record: Record,
    /// CloudEvents `type`.
    pub event_type: Option<String>,
    /// CloudEvents `id`.
    pub event_id: Option<String>,
    /// Partition key.
    pub partition_key: Option<String>,
    /// Class of failure.
    pub reason_kind: ReasonKind,
    /// Error chain, outermost first (the first entry is the reason).
    pub error_chain: Vec<String>,
    /// Attempts.
    pub attempts: u32,
    /// First failure time.
    pub first_failure_ms: i64,
    /// Parked behind, for sequenced mode.
    pub parked_behind: Option<u64>,
    /// The instance that dead-lettered it ([`crate::App::instance`]): the audit entry's actor is
    /// `consumer:<group>@<instance>` (`consumer:<group>` without one).
    pub instance: Option<String>,
}

/// An operator action on a letter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    /// Letter.
    pub letter_id: u64,
    /// When, ms since the epoch.
    pub at_ms: i64,
    /// `dead-lettered`, `redrive-requested`, `resolved`, `redrive-failed`, `failed-again` (the
    /// record failed again while its letter was open: a replay, or its batch read again),
    /// `purged`.
    pub action: String,
    /// Who: a user name, `consumer:<group>` or `cli`.
    pub actor: String,
    /// Free text.
    pub detail: String,
}

/// Why a record is being delivered again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RedeliverySource {
    /// A dead letter redriven by an operator.
    Redrive,
    /// A replay request.
    Replay,
}

/// A pending redelivery for one group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redelivery {
    /// Request id.
    pub id: u64,
    /// Group.
    pub group: String,
    /// Redrive or replay.
    pub source: RedeliverySource,
    /// The dead letter being redriven.
    pub letter_id: Option<u64>,
    /// Topic of the record.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// Offset.
    pub offset: u64,
    /// Deliver even if the dedupe store has seen it.
    pub bypass_dedupe: bool,
}

/// Which letters an operator action applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Selection<'a> {
    /// Every open letter (of the group, if one is given).
    All,
    /// Exactly these letters.
    Ids(&'a [u64]),
}

impl Selection<'_> {
    pub(crate) fn contains(&self, id: u64) -> bool {
        match self {
            Selection::All => true,
            Selection::Ids(ids) => ids.contains(&id),
        }
    }
}

/// Which letters to list.
#[derive(Clone, Debug, Default)]
pub struct LetterFilter {
    /// Only this group.
    pub group: Option<String>,
    /// Include resolved and purged letters.
    pub include_closed: bool,
    /// At most this many (default 1000).
    pub limit: Option<u32>,
}

/// The dead-letter queue, in memory, in an SQLite file or in PostgreSQL. Cloning shares it.
#[derive(Clone, Debug)]
pub struct DeadLetters {
    db: Db,
}

/// Runs `$body` on a letters transaction of `$db` (`write` or `read`) and commits it.
macro_rules! in_tx {
    ($db:expr, $kind:ident, $operation:literal, |$tx:ident| $body:expr) => {
        match $db {
            Db::Memory(memory) => {
                let mut $tx = memory.letters.begin().await;
                let out = $body?;
                letters::LetterTx::commit($tx).await?;
                Ok(out)
            }
            // The SQL arms are boxed: their futures (sqlx's) are kilobytes, and unboxed they
            // would make every caller's future as large, memory stores included.
            #[cfg(feature = "sqlite")]
            Db::Sqlite(sqlite) => {
                Box::pin(async move {
                    let mut $tx =
                        crate::store::sql_letters::SqlTx::$kind(&sqlite.pool, $operation).await?;
                    let out = $body?;
                    letters::LetterTx::commit($tx).await?;
                    Ok(out)
                })
                .await
            }
            #[cfg(feature = "postgres")]
            Db::Postgres(crate::store::postgres::PgDb { pool, .. }) => {
                Box::pin(async move {
                    let mut $tx = crate::store::sql_letters::SqlTx::$kind(pool, $operation).await?;
                    let out = $body?;
                    letters::LetterTx::commit($tx).await?;
                    Ok(out)
                })
                .await
            }
        }
    };
}

impl DeadLetters {
    pub(crate) fn on(db: Db) -> Self {
        DeadLetters { db }
    }

    /// The queue in memory, lost with the process.
    pub fn in_memory() -> Self {
        DeadLetters::on(Db::memory())
    }

    /// The queue in the same file as `transport`.
    #[cfg(feature = "sqlite")]
    pub fn new(transport: &crate::transport::sqlite::SqliteTransport) -> Self {
        DeadLetters::on(Db::sqlite(transport))
    }

    /// The queue in PostgreSQL, on `pool` (its tables are created if missing, in the pool's
    /// current schema).
    ///
    /// # Errors
    ///
    /// When the schema cannot be created. The message never holds the connection URL.
    #[cfg(feature = "postgres")]
    pub async fn postgres(pool: sqlx::PgPool) -> Result<Self, TransportError> {
        Ok(DeadLetters::on(Db::postgres(pool).await?))
    }

    /// The saga instances kept in the same stores ([`crate::saga`]), for operators.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub fn sagas(&self) -> crate::saga::Sagas {
        crate::saga::Sagas {
            db: self.db.clone(),
        }
    }

    /// The transactional outbox kept in the same stores ([`crate::outbox`]), for operators;
    /// `None` for stores in memory.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub fn outbox(&self) -> Option<crate::outbox::Outbox> {
        crate::outbox::Outbox::of(&self.db)
    }

    /// Whether `group`'s dedupe store holds the mark of `key` (kept beside the letters).
    pub(crate) async fn dedupe_seen(&self, group: &str, key: &str) -> Result<bool, TransportError> {
        self.db.seen(group, key).await
    }

    /// Stores a dead letter; returns its id. The same record of the same group still open is
    /// that letter, updated (it failed again), not a second one; a letter to park behind its
    /// key's open letter is parked behind the oldest one still open, or queued for delivery
    /// right away when none is.
    ///
    /// # Errors
    ///
    /// The database error.
    pub async fn put(&self, letter: NewDeadLetter) -> Result<u64, TransportError> {
        in_tx!(&self.db, write, "dead-letter", |tx| letters::put(
            &mut tx, letter
        )
        .await)
    }

    /// Lists letters, oldest first.
    ///
    /// # Errors
    ///
    /// The database error.
    pub async fn list(&self, filter: &LetterFilter) -> Result<Vec<DeadLetter>, TransportError> {
        in_tx!(&self.db, read, "list dead letters", |tx| {
            letters::LetterTx::list(&mut tx, filter).await
        })
    }

    /// One letter.
    ///
    /// # Errors
    ///
    /// The database error.
    pub async fn get(&self, id: u64) -> Result<Option<DeadLetter>, TransportError> {
        in_tx!(&self.db, read, "read a dead letter", |tx| {
            letters::LetterTx::get(&mut tx, id).await
        })
    }

    /// The oldest open letter of `group` for `partition_key` on `topic`, if any (sequenced mode).
    ///
    /// # Errors
    ///
    /// The database error.
    pub async fn open_for_key(
        &self,
        group: &str,
        topic: &str,
        partition_key: &str,
    ) -> Result<Option<u64>, TransportError> {
        in_tx!(&self.db, read, "read open dead letters", |tx| {
            letters::LetterTx::oldest_open_for_key(&mut tx, group, topic, Some(partition_key)).await
        })
    }

    /// The audit trail of a letter, oldest first.
    ///
    /// # Errors
    ///
    /// The database error.
    pub async fn audit(&self, letter_id: u64) -> Result<Vec<AuditEntry>, TransportError> {
        in_tx!(&self.db, read, "read dead-letter audit", |tx| {
            letters::LetterTx::audit_of(&mut tx, letter_id).await
        })
    }

    /// Requests a redrive of the selected `dead` letters (of `group`, if given). Parked letters
    /// are redriven after the letter they wait for resolves; letters in other states are left as
    /// they are. Returns how many were queued.
    ///
    /// # Errors
    ///
    /// The database error.
    pub async fn request_redrive(
        &self,
        group: Option<&str>,
        selection: Selection<'_>,
        actor: &str,
    ) -> Result<usize, TransportError> {
        in_tx!(&self.db, write, "request redrive", |tx| {
            letters::request_redrive(&mut tx, group, selection, actor).await
        })
    }

    /// Marks the selected open letters purged (they stay in the table for the audit trail),
    /// cancels a redrive queued for one of them, and releases what was parked behind them.
    /// Returns how many. A redrive already running on an instance when its letter is purged
    /// may still run its handler once; its outcome is not recorded (the letter stays purged).
    ///
    /// # Errors
    ///
    /// The database error.
    pub async fn purge(
        &self,
        group: Option<&str>,
        selection: Selection<'_>,
        actor: &str,
    ) -> Result<usize, TransportError> {
        in_tx!(&self.db, write, "purge", |tx| letters::purge(
            &mut tx, group, selection, actor
        )
        .await)
    }

    /// Queues records for redelivery to `group` as a replay. Returns how many were queued.
    ///
    /// # Errors
    ///
    /// The database error.
    pub async fn request_replay(
        &self,
        group: &str,
        records: &[(String, u32, u64)],
        bypass_dedupe: bool,
    ) -> Result<usize, TransportError> {
        in_tx!(&self.db, write, "request replay", |tx| {
            letters::request_replay(&mut tx, group, records, bypass_dedupe).await
        })
    }

    /// The oldest pending redeliveries of `group`.
    ///
    /// # Errors
    ///
    /// The database error.
    pub async fn pending_redeliveries(
        &self,
        group: &str,
        max: u32,
    ) -> Result<Vec<Redelivery>, TransportError> {
        self.pending_redeliveries_after(group, 0, max).await
    }

    /// The oldest pending redeliveries of `group` after the request `after` (ids grow): a
    /// consumer pages through the queue with it, so requests it cannot run (another instance's
    /// partitions) never hide the ones it can.
    ///
    /// # Errors
    ///
    /// The database error.
    pub async fn pending_redeliveries_after(
        &self,
        group: &str,
        after: u64,
        max: u32,
    ) -> Result<Vec<Redelivery>, TransportError> {
        in_tx!(&self.db, read, "read redeliveries", |tx| {
            letters::LetterTx::redeliveries(&mut tx, Some(group), after, max).await
        })
    }

    /// Every pending redrive and replay request, oldest first (of `group` only, if given): what
    /// `evt requests` lists.
    ///
    /// # Errors
    ///
    /// The database error.
    pub async fn pending_requests(
        &self,
        group: Option<&str>,
        max: u32,
    ) -> Result<Vec<Redelivery>, TransportError> {
        in_tx!(&self.db, read, "read redeliveries", |tx| {
            letters::LetterTx::redeliveries(&mut tx, group, 0, max).await
        })
    }

    /// Whether the redrive or replay request `id` is still pending: a consumer checks it before
    /// delivering a replay it loaded earlier, so that a cancelled one is not delivered.
    ///
    /// # Errors
    ///
    /// The database error.
    pub async fn redelivery_pending(&self, id: u64) -> Result<bool, TransportError> {
        in_tx!(&self.db, read, "read a redelivery", |tx| {
            letters::LetterTx::redelivery_pending(&mut tx, id).await
        })
    }

    /// Cancels pending replay requests: those of `ids` (every one: `None`), of `group` if
    /// given, before their consumer delivers them; returns the ids cancelled. Redrive requests
    /// are not cancelled (their letter waits in `redriving` for the consumer's outcome). A replay
    /// its consumer has read but not yet delivered is not delivered (the consumer checks before
    /// each one); one being delivered at that moment completes.
    ///
    /// # Errors
    ///
    /// The database error.
    pub async fn cancel_replays(
        &self,
        group: Option<&str>,
        ids: Option<&[u64]>,
    ) -> Result<Vec<u64>, TransportError> {
        in_tx!(&self.db, write, "cancel replay requests", |tx| {
            letters::cancel_replays(&mut tx, group, ids).await
        })
    }

    /// Closes a redelivery. For a redrive, `failure` (the new error chain) sends the letter back
    /// to `dead`; success resolves it and queues the letters parked behind it. `instance` (the
    /// instance that ran it) goes into the audit entry's actor, as in [`NewDeadLetter::instance`].
    ///
    /// # Errors
    ///
    /// The database error.
    pub async fn finish_redelivery(
        &self,
        redelivery: &Redelivery,
        failure: Option<&[String]>,
        instance: Option<&str>,
    ) -> Result<(), TransportError> {
        in_tx!(&self.db, write, "finish redelivery", |tx| {
            letters::finish_redelivery(&mut tx, redelivery, failure, instance).await
        })
    }

    /// Open letters per group (for the DLQ-depth metric and `evt lag`).
    ///
    /// # Errors
    ///
    /// The database error.
    pub async fn depth(&self) -> Result<Vec<(String, u64)>, TransportError> {
        in_tx!(&self.db, read, "count dead letters", |tx| {
            letters::LetterTx::depth(&mut tx).await
        })
    }

    /// Deletes the closed letters (resolved or purged) whose last audit entry (the redrive that
    /// resolved it, the purge) is older than `age`, with their audit trail; returns how many.
    /// Open letters are never deleted. The app's retention task calls this
    /// ([`crate::app::Retention::closed_letters`]).
    ///
    /// # Errors
    ///
    /// The database error.
    pub async fn delete_closed(&self, age: std::time::Duration) -> Result<u64, TransportError> {
        let before_ms = crate::transport::now_ms()
            .saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX));
        in_tx!(&self.db, write, "delete closed dead letters", |tx| {
            letters::LetterTx::delete_closed(&mut tx, before_ms).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::ReasonKind;

    #[test]
    fn reason_kinds_round_trip_through_their_stored_names() {
        for kind in ReasonKind::ALL {
            assert_eq!(kind.as_str().parse::<ReasonKind>(), Ok(kind));
            assert_eq!(kind.to_string(), kind.as_str());
        }
        let names: std::collections::BTreeSet<&str> =
            ReasonKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), ReasonKind::ALL.len(), "names are distinct");
        let err = "exploded".parse::<ReasonKind>().unwrap_err();
        assert!(
            err.contains("`exploded`") && err.contains("retries-exhausted"),
            "{err}"
        );
    }
}
