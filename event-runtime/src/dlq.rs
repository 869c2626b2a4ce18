//! The dead-letter queue: records a consumer group could not handle, with the reason, the error
//! chain, attempts and failure times; redrive and replay requests; and an audit trail of every
//! operator action.
//!
//! Letters live in the engine's SQLite file (`evt_dead_letters`, `evt_redeliveries`,
//! `evt_dlq_audit`), so the `evt` CLI can list, redrive and purge them while the application runs:
//! a redrive or replay is a request row that the running consumer of that group picks up. They can
//! also live in PostgreSQL ([`DeadLetters::postgres`]): the same tables, the same behaviour.

use std::fmt;
use std::str::FromStr;

use sqlx::Row;
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;

use crate::transport::sqlite::{SqliteTransport, db_error, decode_headers, encode_headers};
use crate::transport::{Record, TransportError, now_ms};

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
    /// Class of failure: `malformed`, `unknown-type`, `future-version`, `payload`, `upcast`,
    /// `permanent`, `retries-exhausted`, `parked`.
    pub reason_kind: String,
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
    pub reason_kind: String,
    /// Error chain, outermost first (the first entry is the reason).
    pub error_chain: Vec<String>,
    /// Attempts.
    pub attempts: u32,
    /// First failure time.
    pub first_failure_ms: i64,
    /// Parked behind, for sequenced mode.
    pub parked_behind: Option<u64>,
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
    fn contains(&self, id: u64) -> bool {
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

/// The dead-letter queue, in the engine's SQLite file or in PostgreSQL.
#[derive(Clone, Debug)]
pub struct DeadLetters {
    backend: Backend,
}

/// Where the letters are.
#[derive(Clone)]
enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl fmt::Debug for Backend {
    // Never the pool's options: they hold the connection settings (and the password).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Backend::Sqlite(_) => f.write_str("Sqlite"),
            Backend::Postgres(_) => f.write_str("Postgres"),
        }
    }
}

fn chain_to_text(chain: &[String]) -> String {
    serde_json::to_string(chain).unwrap_or_else(|_| "[]".to_owned())
}

impl DeadLetters {
    /// The queue in the same file as `transport`.
    pub fn new(transport: &SqliteTransport) -> Self {
        DeadLetters {
            backend: Backend::Sqlite(transport.pool().clone()),
        }
    }

    /// The queue in PostgreSQL, on `pool` (its tables are created if missing, in the pool's
    /// current schema).
    ///
    /// # Errors
    ///
    /// When the schema cannot be created. The message never holds the connection URL.
    pub async fn postgres(pool: PgPool) -> Result<Self, TransportError> {
        crate::postgres::ensure_schema(&pool).await?;
        Ok(DeadLetters {
            backend: Backend::Postgres(pool),
        })
    }

    async fn audit_on(
        conn: &mut sqlx::SqliteConnection,
        letter_id: u64,
        action: &str,
        actor: &str,
        detail: &str,
    ) -> Result<(), TransportError> {
        sqlx::query("INSERT INTO evt_dlq_audit (letter_id, at_ms, action, actor, detail) VALUES (?, ?, ?, ?, ?)")
            .bind(letter_id as i64)
            .bind(now_ms())
            .bind(action)
            .bind(actor)
            .bind(detail)
            .execute(conn)
            .await
            .map_err(|err| db_error("write dead-letter audit", err))?;
        Ok(())
    }

    /// Stores a dead letter; returns its id.
    ///
    /// # Errors
    ///
    /// The database error.
    pub async fn put(&self, letter: NewDeadLetter) -> Result<u64, TransportError> {
        let pool = match &self.backend {
            Backend::Sqlite(pool) => pool,
            Backend::Postgres(pool) => return pg::put(pool, letter).await,
        };
        let mut tx = pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|err| db_error("dead-letter", err))?;
        // The same record of the same group already open (a batch fetched again after another
        // lane's failure): that letter, not a second one.
        let open: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM evt_dead_letters WHERE grp = ? AND topic = ? AND partition = ? \
             AND offset = ? AND status IN ('dead', 'parked', 'redriving') LIMIT 1",
        )
        .bind(&letter.group)
        .bind(&letter.record.topic)
        .bind(i64::from(letter.record.partition))
        .bind(letter.record.offset as i64)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|err| db_error("dead-letter", err))?;
        if let Some(id) = open
            && letter.parked_behind.is_some()
        {
            // Parked behind its key's open letter, and already open itself: nothing changes.
            tx.commit()
                .await
                .map_err(|err| db_error("dead-letter", err))?;
            return Ok(id as u64);
        }
        if let Some(id) = open {
            // It failed again (a replay, or the batch read again): the letter says so.
            let reason = letter.error_chain.first().cloned().unwrap_or_default();
            sqlx::query(
                "UPDATE evt_dead_letters SET reason_kind = ?, reason = ?, error_chain = ?, \
                 attempts = attempts + ?, last_failure_ms = ? WHERE id = ?",
            )
            .bind(&letter.reason_kind)
            .bind(&reason)
            .bind(chain_to_text(&letter.error_chain))
            .bind(i64::from(letter.attempts))
            .bind(now_ms())
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(|err| db_error("dead-letter", err))?;
            Self::audit_on(&mut tx, id as u64, "failed-again", "consumer", &reason).await?;
            tx.commit()
                .await
                .map_err(|err| db_error("dead-letter", err))?;
            return Ok(id as u64);
        }
        let mut letter = letter;
        // A letter to park: the letter it waits for may have been resolved since the consumer
        // looked. Park behind the oldest letter of the key still open, or, if none is, queue it
        // for delivery right away instead of parking it behind nothing.
        let mut release = false;
        if letter.parked_behind.is_some() {
            let blocker: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM evt_dead_letters WHERE grp = ? AND topic = ? AND partition_key = ? \
                 AND status IN ('dead', 'parked', 'redriving') ORDER BY id LIMIT 1",
            )
            .bind(&letter.group)
            .bind(&letter.record.topic)
            .bind(&letter.partition_key)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|err| db_error("dead-letter", err))?;
            match blocker {
                Some(id) => letter.parked_behind = Some(id as u64),
                None => {
                    letter.parked_behind = None;
                    release = true;
                }
            }
        }
        let reason = letter.error_chain.first().cloned().unwrap_or_default();
        let status = if letter.parked_behind.is_some() {
            LetterStatus::Parked
        } else if release {
            LetterStatus::Redriving
        } else {
            LetterStatus::Dead
        };
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO evt_dead_letters (grp, topic, partition, offset, record_ts_ms, record_key, headers, payload, \
             event_type, event_id, partition_key, reason_kind, reason, error_chain, attempts, \
             first_failure_ms, last_failure_ms, parked_behind, status) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(&letter.group)
        .bind(&letter.record.topic)
        .bind(i64::from(letter.record.partition))
        .bind(letter.record.offset as i64)
        .bind(letter.record.timestamp_ms)
        .bind(&letter.record.key)
        .bind(encode_headers(&letter.record.headers))
        .bind(&letter.record.payload)
        .bind(&letter.event_type)
        .bind(&letter.event_id)
        .bind(&letter.partition_key)
        .bind(&letter.reason_kind)
        .bind(&reason)
        .bind(chain_to_text(&letter.error_chain))
        .bind(i64::from(letter.attempts))
        .bind(letter.first_failure_ms)
        .bind(now_ms())
        .bind(letter.parked_behind.map(|id| id as i64))
        .bind(status.as_str())
        .fetch_one(&mut *tx)
        .await
        .map_err(|err| db_error("dead-letter", err))?;
        let consumer = format!("consumer:{}", letter.group);
        Self::audit_on(
            &mut tx,
            id as u64,
            "dead-lettered",
            &consumer,
            &format!("{}: {reason}", letter.reason_kind),
        )
        .await?;
        if release {
            let row = sqlx::query(
                "SELECT id, grp, topic, partition, offset, status FROM evt_dead_letters WHERE id = ?",
            )
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .map_err(|err| db_error("dead-letter", err))?;
            Self::queue_redrive(&mut tx, &row, &consumer).await?;
        }
        tx.commit()
            .await
            .map_err(|err| db_error("dead-letter", err))?;
        Ok(id as u64)
    }

    fn row_to_letter(row: &sqlx::sqlite::SqliteRow) -> DeadLetter {
        let blob: Vec<u8> = row.get("headers");
        let chain: String = row.get("error_chain");
        let status: String = row.get("status");
        DeadLetter {
            id: row.get::<i64, _>("id") as u64,
            group: row.get("grp"),
            record: Record {
                topic: row.get("topic"),
                partition: row.get::<i64, _>("partition") as u32,
                offset: row.get::<i64, _>("offset") as u64,
                timestamp_ms: row.get("record_ts_ms"),
                key: row.get("record_key"),
                headers: decode_headers(&blob).unwrap_or_default(),
                payload: row.get("payload"),
            },
            event_type: row.get("event_type"),
            event_id: row.get("event_id"),
            partition_key: row.get("partition_key"),
            reason_kind: row.get("reason_kind"),
            reason: row.get("reason"),
            error_chain: serde_json::from_str(&chain).unwrap_or_default(),
            attempts: row.get::<i64, _>("attempts") as u32,
            first_failure_ms: row.get("first_failure_ms"),
            last_failure_ms: row.get("last_failure_ms"),
            parked_behind: row
                .get::<Option<i64>, _>("parked_behind")
                .map(|id| id as u64),
            status: status.parse().unwrap_or(LetterStatus::Dead),
        }
    }

    /// Lists letters, oldest first.
    ///
    /// # Errors
    ///
    /// The database error.
    pub async fn list(&self, filter: &LetterFilter) -> Result<Vec<DeadLetter>, TransportError> {
        let pool = match &self.backend {
            Backend::Sqlite(pool) => pool,
            Backend::Postgres(pool) => return pg::list(pool, filter).await,
        };
        let rows = sqlx::query(
            "SELECT * FROM evt_dead_letters WHERE (? IS NULL OR grp = ?) \
             AND (? OR status IN ('dead', 'parked', 'redriving')) ORDER BY id LIMIT ?",
        )
        .bind(&filter.group)
        .bind(&filter.group)
        .bind(filter.include_closed)
        .bind(i64::from(filter.limit.unwrap_or(1000)))
        .fetch_all(pool)
        .await
        .map_err(|err| db_error("list dead letters", err))?;
        Ok(rows.iter().map(Self::row_to_letter).collect())
    }

    /// One letter.
    ///
    /// # Errors
    ///
    /// The database error.
    pub async fn get(&self, id: u64) -> Result<Option<DeadLetter>, TransportError> {
        let pool = match &self.backend {
            Backend::Sqlite(pool) => pool,
            Backend::Postgres(pool) => return pg::get(pool, id).await,
        };
        let row = sqlx::query("SELECT * FROM evt_dead_letters WHERE id = ?")
            .bind(id as i64)
            .fetch_optional(pool)
            .await
            .map_err(|err| db_error(format!("read dead letter {id}"), err))?;
        Ok(row.as_ref().map(Self::row_to_letter))
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
        let pool = match &self.backend {
            Backend::Sqlite(pool) => pool,
            Backend::Postgres(pool) => {
                return pg::open_for_key(pool, group, topic, partition_key).await;
            }
        };
        let id: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM evt_dead_letters WHERE grp = ? AND topic = ? AND partition_key = ? \
             AND status IN ('dead', 'parked', 'redriving') ORDER BY id LIMIT 1",
        )
        .bind(group)
        .bind(topic)
        .bind(partition_key)
        .fetch_optional(pool)
        .await
        .map_err(|err| db_error("read open dead letters", err))?;
        Ok(id.map(|id| id as u64))
    }

    /// The audit trail of a letter, oldest first.
    ///
    /// # Errors
    ///
    /// The database error.
    pub async fn audit(&self, letter_id: u64) -> Result<Vec<AuditEntry>, TransportError> {
        let pool = match &self.backend {
            Backend::Sqlite(pool) => pool,
            Backend::Postgres(pool) => return pg::audit(pool, letter_id).await,
        };
        let rows = sqlx::query("SELECT * FROM evt_dlq_audit WHERE letter_id = ? ORDER BY id")
            .bind(letter_id as i64)
            .fetch_all(pool)
            .await
            .map_err(|err| db_error("read dead-letter audit", err))?;
        Ok(rows
            .iter()
            .map(|row| AuditEntry {
                letter_id,
                at_ms: row.get("at_ms"),
                action: row.get("action"),
                actor: row.get("actor"),
                detail: row.get("detail"),
            })
            .collect())
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
        let pool = match &self.backend {
            Backend::Sqlite(pool) => pool,
            Backend::Postgres(pool) => {
                return pg::request_redrive(pool, group, selection, actor).await;
            }
        };
        let mut tx = pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|err| db_error("request redrive", err))?;
        let rows = sqlx::query(
            "SELECT id, grp, topic, partition, offset, status FROM evt_dead_letters \
             WHERE status = 'dead' AND (? IS NULL OR grp = ?) ORDER BY id",
        )
        .bind(group)
        .bind(group)
        .fetch_all(&mut *tx)
        .await
        .map_err(|err| db_error("request redrive", err))?;
        let mut queued = 0;
        for row in rows {
            let id = row.get::<i64, _>("id") as u64;
            if !selection.contains(id) {
                continue;
            }
            Self::queue_redrive(&mut tx, &row, actor).await?;
            queued += 1;
        }
        tx.commit()
            .await
            .map_err(|err| db_error("request redrive", err))?;
        Ok(queued)
    }

    /// Releases the oldest letter parked behind `letter_id` and parks the others behind it, so
    /// a key's parked events run one at a time, in order: if the released one fails again, the
    /// rest keep waiting behind it.
    async fn release_parked(
        conn: &mut sqlx::SqliteConnection,
        letter_id: u64,
        actor: &str,
    ) -> Result<(), TransportError> {
        let next = sqlx::query(
            "SELECT id, grp, topic, partition, offset, status FROM evt_dead_letters \
             WHERE parked_behind = ? AND status = 'parked' ORDER BY id LIMIT 1",
        )
        .bind(letter_id as i64)
        .fetch_optional(&mut *conn)
        .await
        .map_err(|err| db_error("release parked letters", err))?;
        let Some(next) = next else {
            return Ok(());
        };
        let next_id: i64 = next.get("id");
        sqlx::query(
            "UPDATE evt_dead_letters SET parked_behind = ? WHERE parked_behind = ? AND status = 'parked' AND id <> ?",
        )
        .bind(next_id)
        .bind(letter_id as i64)
        .bind(next_id)
        .execute(&mut *conn)
        .await
        .map_err(|err| db_error("release parked letters", err))?;
        Self::queue_redrive(conn, &next, actor).await
    }

    async fn queue_redrive(
        conn: &mut sqlx::SqliteConnection,
        row: &sqlx::sqlite::SqliteRow,
        actor: &str,
    ) -> Result<(), TransportError> {
        let id: i64 = row.get("id");
        sqlx::query("UPDATE evt_dead_letters SET status = 'redriving' WHERE id = ?")
            .bind(id)
            .execute(&mut *conn)
            .await
            .map_err(|err| db_error("request redrive", err))?;
        sqlx::query(
            "INSERT INTO evt_redeliveries (grp, source, letter_id, topic, partition, offset, bypass_dedupe, requested_ms) \
             VALUES (?, 'redrive', ?, ?, ?, ?, 0, ?)",
        )
        .bind(row.get::<String, _>("grp"))
        .bind(id)
        .bind(row.get::<String, _>("topic"))
        .bind(row.get::<i64, _>("partition"))
        .bind(row.get::<i64, _>("offset"))
        .bind(now_ms())
        .execute(&mut *conn)
        .await
        .map_err(|err| db_error("request redrive", err))?;
        Self::audit_on(conn, id as u64, "redrive-requested", actor, "").await
    }

    /// Marks the selected open letters purged (they stay in the table for the audit trail).
    /// Returns how many.
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
        let pool = match &self.backend {
            Backend::Sqlite(pool) => pool,
            Backend::Postgres(pool) => return pg::purge(pool, group, selection, actor).await,
        };
        let letters = self
            .list(&LetterFilter {
                group: group.map(str::to_owned),
                include_closed: false,
                limit: Some(u32::MAX),
            })
            .await?;
        let mut tx = pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|err| db_error("purge", err))?;
        let mut purged = 0;
        for letter in letters.iter().filter(|l| selection.contains(l.id)) {
            sqlx::query("UPDATE evt_dead_letters SET status = 'purged' WHERE id = ?")
                .bind(letter.id as i64)
                .execute(&mut *tx)
                .await
                .map_err(|err| db_error("purge", err))?;
            Self::audit_on(&mut tx, letter.id, "purged", actor, "").await?;
            // What waited behind a purged letter would otherwise wait forever.
            Self::release_parked(&mut tx, letter.id, actor).await?;
            purged += 1;
        }
        tx.commit().await.map_err(|err| db_error("purge", err))?;
        Ok(purged)
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
        let pool = match &self.backend {
            Backend::Sqlite(pool) => pool,
            Backend::Postgres(pool) => {
                return pg::request_replay(pool, group, records, bypass_dedupe).await;
            }
        };
        let mut tx = pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|err| db_error("request replay", err))?;
        for (topic, partition, offset) in records {
            sqlx::query(
                "INSERT INTO evt_redeliveries (grp, source, letter_id, topic, partition, offset, bypass_dedupe, requested_ms) \
                 VALUES (?, 'replay', NULL, ?, ?, ?, ?, ?)",
            )
            .bind(group)
            .bind(topic)
            .bind(i64::from(*partition))
            .bind(*offset as i64)
            .bind(bypass_dedupe)
            .bind(now_ms())
            .execute(&mut *tx)
            .await
            .map_err(|err| db_error("request replay", err))?;
        }
        tx.commit()
            .await
            .map_err(|err| db_error("request replay", err))?;
        Ok(records.len())
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
        let pool = match &self.backend {
            Backend::Sqlite(pool) => pool,
            Backend::Postgres(pool) => return pg::pending_redeliveries(pool, group, max).await,
        };
        let rows = sqlx::query("SELECT * FROM evt_redeliveries WHERE grp = ? ORDER BY id LIMIT ?")
            .bind(group)
            .bind(i64::from(max))
            .fetch_all(pool)
            .await
            .map_err(|err| db_error("read redeliveries", err))?;
        Ok(rows
            .iter()
            .map(|row| Redelivery {
                id: row.get::<i64, _>("id") as u64,
                group: row.get("grp"),
                source: if row.get::<String, _>("source") == "redrive" {
                    RedeliverySource::Redrive
                } else {
                    RedeliverySource::Replay
                },
                letter_id: row.get::<Option<i64>, _>("letter_id").map(|id| id as u64),
                topic: row.get("topic"),
                partition: row.get::<i64, _>("partition") as u32,
                offset: row.get::<i64, _>("offset") as u64,
                bypass_dedupe: row.get("bypass_dedupe"),
            })
            .collect())
    }

    /// Closes a redelivery. For a redrive, `failure` (the new error chain) sends the letter back
    /// to `dead`; success resolves it and queues the letters parked behind it.
    ///
    /// # Errors
    ///
    /// The database error.
    pub async fn finish_redelivery(
        &self,
        redelivery: &Redelivery,
        failure: Option<&[String]>,
    ) -> Result<(), TransportError> {
        let pool = match &self.backend {
            Backend::Sqlite(pool) => pool,
            Backend::Postgres(pool) => {
                return pg::finish_redelivery(pool, redelivery, failure).await;
            }
        };
        let mut tx = pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|err| db_error("finish redelivery", err))?;
        sqlx::query("DELETE FROM evt_redeliveries WHERE id = ?")
            .bind(redelivery.id as i64)
            .execute(&mut *tx)
            .await
            .map_err(|err| db_error("finish redelivery", err))?;
        if let Some(letter_id) = redelivery.letter_id {
            let actor = format!("consumer:{}", redelivery.group);
            match failure {
                Some(chain) => {
                    sqlx::query(
                        "UPDATE evt_dead_letters SET status = 'dead', attempts = attempts + 1, last_failure_ms = ?, \
                         reason = ?, error_chain = ? WHERE id = ?",
                    )
                    .bind(now_ms())
                    .bind(chain.first().cloned().unwrap_or_default())
                    .bind(chain_to_text(chain))
                    .bind(letter_id as i64)
                    .execute(&mut *tx)
                    .await
                    .map_err(|err| db_error("finish redelivery", err))?;
                    Self::audit_on(
                        &mut tx,
                        letter_id,
                        "redrive-failed",
                        &actor,
                        &chain.join(": "),
                    )
                    .await?;
                }
                None => {
                    sqlx::query("UPDATE evt_dead_letters SET status = 'resolved' WHERE id = ?")
                        .bind(letter_id as i64)
                        .execute(&mut *tx)
                        .await
                        .map_err(|err| db_error("finish redelivery", err))?;
                    Self::audit_on(&mut tx, letter_id, "resolved", &actor, "").await?;
                    Self::release_parked(&mut tx, letter_id, &actor).await?;
                }
            }
        }
        tx.commit()
            .await
            .map_err(|err| db_error("finish redelivery", err))?;
        Ok(())
    }

    /// Open letters per group (for the DLQ-depth metric and `evt lag`).
    ///
    /// # Errors
    ///
    /// The database error.
    pub async fn depth(&self) -> Result<Vec<(String, u64)>, TransportError> {
        let pool = match &self.backend {
            Backend::Sqlite(pool) => pool,
            Backend::Postgres(pool) => return pg::depth(pool).await,
        };
        let rows = sqlx::query(
            "SELECT grp, COUNT(*) AS n FROM evt_dead_letters WHERE status IN ('dead', 'parked', 'redriving') GROUP BY grp ORDER BY grp",
        )
        .fetch_all(pool)
        .await
        .map_err(|err| db_error("count dead letters", err))?;
        Ok(rows
            .iter()
            .map(|row| (row.get::<String, _>("grp"), row.get::<i64, _>("n") as u64))
            .collect())
    }
}

/// The same operations on PostgreSQL: `$n` placeholders, `BEGIN` with row locks where SQLite takes
/// the whole file (`BEGIN IMMEDIATE`), `"offset"` quoted (a reserved word there).
mod pg {
    use sqlx::Row;
    use sqlx::postgres::{PgConnection, PgPool, PgRow};

    use super::{
        AuditEntry, DeadLetter, LetterFilter, LetterStatus, NewDeadLetter, Redelivery,
        RedeliverySource, Selection, chain_to_text,
    };
    use crate::postgres::pg_error;
    use crate::transport::sqlite::{decode_headers, encode_headers};
    use crate::transport::{Record, TransportError, now_ms};

    async fn audit_on(
        conn: &mut PgConnection,
        letter_id: u64,
        action: &str,
        actor: &str,
        detail: &str,
    ) -> Result<(), TransportError> {
        sqlx::query(
            "INSERT INTO evt_dlq_audit (letter_id, at_ms, action, actor, detail) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(letter_id as i64)
        .bind(now_ms())
        .bind(action)
        .bind(actor)
        .bind(detail)
        .execute(conn)
        .await
        .map_err(|err| pg_error("write dead-letter audit", err))?;
        Ok(())
    }

    pub(super) async fn put(pool: &PgPool, letter: NewDeadLetter) -> Result<u64, TransportError> {
        let mut tx = pool
            .begin()
            .await
            .map_err(|err| pg_error("dead-letter", err))?;
        // The same record of the same group already open: that letter (see the SQLite version).
        // Serialised per record: the live lane and a replay may fail it at the same moment.
        sqlx::query(
            "SELECT pg_advisory_xact_lock(hashtext($1 || '/' || $2 || '/' || $3::text || '/' || $4::text))",
        )
        .bind(&letter.group)
        .bind(&letter.record.topic)
        .bind(i64::from(letter.record.partition))
        .bind(letter.record.offset as i64)
        .execute(&mut *tx)
        .await
        .map_err(|err| pg_error("dead-letter", err))?;
        let open: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM evt_dead_letters WHERE grp = $1 AND topic = $2 AND partition = $3 \
             AND \"offset\" = $4 AND status IN ('dead', 'parked', 'redriving') LIMIT 1",
        )
        .bind(&letter.group)
        .bind(&letter.record.topic)
        .bind(i64::from(letter.record.partition))
        .bind(letter.record.offset as i64)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|err| pg_error("dead-letter", err))?;
        if let Some(id) = open
            && letter.parked_behind.is_some()
        {
            tx.commit()
                .await
                .map_err(|err| pg_error("dead-letter", err))?;
            return Ok(id as u64);
        }
        if let Some(id) = open {
            let reason = letter.error_chain.first().cloned().unwrap_or_default();
            sqlx::query(
                "UPDATE evt_dead_letters SET reason_kind = $1, reason = $2, error_chain = $3, \
                 attempts = attempts + $4, last_failure_ms = $5 WHERE id = $6",
            )
            .bind(&letter.reason_kind)
            .bind(&reason)
            .bind(chain_to_text(&letter.error_chain))
            .bind(i64::from(letter.attempts))
            .bind(now_ms())
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(|err| pg_error("dead-letter", err))?;
            audit_on(&mut tx, id as u64, "failed-again", "consumer", &reason).await?;
            tx.commit()
                .await
                .map_err(|err| pg_error("dead-letter", err))?;
            return Ok(id as u64);
        }
        let mut letter = letter;
        let mut release = false;
        if letter.parked_behind.is_some() {
            // Serialise parking per key with resolution (see the SQLite version).
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1 || '/' || $2 || '/' || $3))")
                .bind(&letter.group)
                .bind(&letter.record.topic)
                .bind(letter.partition_key.as_deref().unwrap_or(""))
                .execute(&mut *tx)
                .await
                .map_err(|err| pg_error("dead-letter", err))?;
            let blocker: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM evt_dead_letters WHERE grp = $1 AND topic = $2 AND partition_key = $3 \
                 AND status IN ('dead', 'parked', 'redriving') ORDER BY id LIMIT 1",
            )
            .bind(&letter.group)
            .bind(&letter.record.topic)
            .bind(&letter.partition_key)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|err| pg_error("dead-letter", err))?;
            match blocker {
                Some(id) => letter.parked_behind = Some(id as u64),
                None => {
                    letter.parked_behind = None;
                    release = true;
                }
            }
        }
        let reason = letter.error_chain.first().cloned().unwrap_or_default();
        let status = if letter.parked_behind.is_some() {
            LetterStatus::Parked
        } else if release {
            LetterStatus::Redriving
        } else {
            LetterStatus::Dead
        };
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO evt_dead_letters (grp, topic, partition, \"offset\", record_ts_ms, record_key, headers, payload, \
             event_type, event_id, partition_key, reason_kind, reason, error_chain, attempts, \
             first_failure_ms, last_failure_ms, parked_behind, status) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19) RETURNING id",
        )
        .bind(&letter.group)
        .bind(&letter.record.topic)
        .bind(i64::from(letter.record.partition))
        .bind(letter.record.offset as i64)
        .bind(letter.record.timestamp_ms)
        .bind(&letter.record.key)
        .bind(encode_headers(&letter.record.headers))
        .bind(&letter.record.payload)
        .bind(&letter.event_type)
        .bind(&letter.event_id)
        .bind(&letter.partition_key)
        .bind(&letter.reason_kind)
        .bind(&reason)
        .bind(chain_to_text(&letter.error_chain))
        .bind(i64::from(letter.attempts))
        .bind(letter.first_failure_ms)
        .bind(now_ms())
        .bind(letter.parked_behind.map(|id| id as i64))
        .bind(status.as_str())
        .fetch_one(&mut *tx)
        .await
        .map_err(|err| pg_error("dead-letter", err))?;
        let consumer = format!("consumer:{}", letter.group);
        audit_on(
            &mut tx,
            id as u64,
            "dead-lettered",
            &consumer,
            &format!("{}: {reason}", letter.reason_kind),
        )
        .await?;
        if release {
            let row = sqlx::query(
                "SELECT id, grp, topic, partition, \"offset\", status FROM evt_dead_letters WHERE id = $1",
            )
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .map_err(|err| pg_error("dead-letter", err))?;
            queue_redrive(&mut tx, &row, &consumer).await?;
        }
        tx.commit()
            .await
            .map_err(|err| pg_error("dead-letter", err))?;
        Ok(id as u64)
    }

    fn row_to_letter(row: &PgRow) -> DeadLetter {
        let blob: Vec<u8> = row.get("headers");
        let chain: String = row.get("error_chain");
        let status: String = row.get("status");
        DeadLetter {
            id: row.get::<i64, _>("id") as u64,
            group: row.get("grp"),
            record: Record {
                topic: row.get("topic"),
                partition: row.get::<i64, _>("partition") as u32,
                offset: row.get::<i64, _>("offset") as u64,
                timestamp_ms: row.get("record_ts_ms"),
                key: row.get("record_key"),
                headers: decode_headers(&blob).unwrap_or_default(),
                payload: row.get("payload"),
            },
            event_type: row.get("event_type"),
            event_id: row.get("event_id"),
            partition_key: row.get("partition_key"),
            reason_kind: row.get("reason_kind"),
            reason: row.get("reason"),
            error_chain: serde_json::from_str(&chain).unwrap_or_default(),
            attempts: row.get::<i64, _>("attempts") as u32,
            first_failure_ms: row.get("first_failure_ms"),
            last_failure_ms: row.get("last_failure_ms"),
            parked_behind: row
                .get::<Option<i64>, _>("parked_behind")
                .map(|id| id as u64),
            status: status.parse().unwrap_or(LetterStatus::Dead),
        }
    }

    pub(super) async fn list(
        pool: &PgPool,
        filter: &LetterFilter,
    ) -> Result<Vec<DeadLetter>, TransportError> {
        let rows = sqlx::query(
            "SELECT * FROM evt_dead_letters WHERE ($1::text IS NULL OR grp = $1) \
             AND ($2 OR status IN ('dead', 'parked', 'redriving')) ORDER BY id LIMIT $3",
        )
        .bind(&filter.group)
        .bind(filter.include_closed)
        .bind(i64::from(filter.limit.unwrap_or(1000)))
        .fetch_all(pool)
        .await
        .map_err(|err| pg_error("list dead letters", err))?;
        Ok(rows.iter().map(row_to_letter).collect())
    }

    pub(super) async fn get(pool: &PgPool, id: u64) -> Result<Option<DeadLetter>, TransportError> {
        let row = sqlx::query("SELECT * FROM evt_dead_letters WHERE id = $1")
            .bind(id as i64)
            .fetch_optional(pool)
            .await
            .map_err(|err| pg_error(format!("read dead letter {id}"), err))?;
        Ok(row.as_ref().map(row_to_letter))
    }

    pub(super) async fn open_for_key(
        pool: &PgPool,
        group: &str,
        topic: &str,
        partition_key: &str,
    ) -> Result<Option<u64>, TransportError> {
        let id: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM evt_dead_letters WHERE grp = $1 AND topic = $2 AND partition_key = $3 \
             AND status IN ('dead', 'parked', 'redriving') ORDER BY id LIMIT 1",
        )
        .bind(group)
        .bind(topic)
        .bind(partition_key)
        .fetch_optional(pool)
        .await
        .map_err(|err| pg_error("read open dead letters", err))?;
        Ok(id.map(|id| id as u64))
    }

    pub(super) async fn audit(
        pool: &PgPool,
        letter_id: u64,
    ) -> Result<Vec<AuditEntry>, TransportError> {
        let rows = sqlx::query("SELECT * FROM evt_dlq_audit WHERE letter_id = $1 ORDER BY id")
            .bind(letter_id as i64)
            .fetch_all(pool)
            .await
            .map_err(|err| pg_error("read dead-letter audit", err))?;
        Ok(rows
            .iter()
            .map(|row| AuditEntry {
                letter_id,
                at_ms: row.get("at_ms"),
                action: row.get("action"),
                actor: row.get("actor"),
                detail: row.get("detail"),
            })
            .collect())
    }

    pub(super) async fn request_redrive(
        pool: &PgPool,
        group: Option<&str>,
        selection: Selection<'_>,
        actor: &str,
    ) -> Result<usize, TransportError> {
        let mut tx = pool
            .begin()
            .await
            .map_err(|err| pg_error("request redrive", err))?;
        // FOR UPDATE: a concurrent request (or a consumer finishing a redelivery) waits, so a
        // letter is queued once.
        let rows = sqlx::query(
            "SELECT id, grp, topic, partition, \"offset\", status FROM evt_dead_letters \
             WHERE status = 'dead' AND ($1::text IS NULL OR grp = $1) ORDER BY id FOR UPDATE",
        )
        .bind(group)
        .fetch_all(&mut *tx)
        .await
        .map_err(|err| pg_error("request redrive", err))?;
        let mut queued = 0;
        for row in rows {
            let id = row.get::<i64, _>("id") as u64;
            if !selection.contains(id) {
                continue;
            }
            queue_redrive(&mut tx, &row, actor).await?;
            queued += 1;
        }
        tx.commit()
            .await
            .map_err(|err| pg_error("request redrive", err))?;
        Ok(queued)
    }

    /// See the SQLite version: release the oldest parked letter, park the rest behind it.
    async fn release_parked(
        conn: &mut PgConnection,
        letter_id: u64,
        actor: &str,
    ) -> Result<(), TransportError> {
        let next = sqlx::query(
            "SELECT id, grp, topic, partition, \"offset\", status FROM evt_dead_letters \
             WHERE parked_behind = $1 AND status = 'parked' ORDER BY id LIMIT 1 FOR UPDATE",
        )
        .bind(letter_id as i64)
        .fetch_optional(&mut *conn)
        .await
        .map_err(|err| pg_error("release parked letters", err))?;
        let Some(next) = next else {
            return Ok(());
        };
        let next_id: i64 = next.get("id");
        sqlx::query(
            "UPDATE evt_dead_letters SET parked_behind = $1 WHERE parked_behind = $2 AND status = 'parked' AND id <> $1",
        )
        .bind(next_id)
        .bind(letter_id as i64)
        .execute(&mut *conn)
        .await
        .map_err(|err| pg_error("release parked letters", err))?;
        queue_redrive(conn, &next, actor).await
    }

    async fn queue_redrive(
        conn: &mut PgConnection,
        row: &PgRow,
        actor: &str,
    ) -> Result<(), TransportError> {
        let id: i64 = row.get("id");
        sqlx::query("UPDATE evt_dead_letters SET status = 'redriving' WHERE id = $1")
            .bind(id)
            .execute(&mut *conn)
            .await
            .map_err(|err| pg_error("request redrive", err))?;
        sqlx::query(
            "INSERT INTO evt_redeliveries (grp, source, letter_id, topic, partition, \"offset\", bypass_dedupe, requested_ms) \
             VALUES ($1, 'redrive', $2, $3, $4, $5, FALSE, $6)",
        )
        .bind(row.get::<String, _>("grp"))
        .bind(id)
        .bind(row.get::<String, _>("topic"))
        .bind(row.get::<i64, _>("partition"))
        .bind(row.get::<i64, _>("offset"))
        .bind(now_ms())
        .execute(&mut *conn)
        .await
        .map_err(|err| pg_error("request redrive", err))?;
        audit_on(conn, id as u64, "redrive-requested", actor, "").await
    }

    pub(super) async fn purge(
        pool: &PgPool,
        group: Option<&str>,
        selection: Selection<'_>,
        actor: &str,
    ) -> Result<usize, TransportError> {
        let mut tx = pool.begin().await.map_err(|err| pg_error("purge", err))?;
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM evt_dead_letters WHERE status IN ('dead', 'parked', 'redriving') \
             AND ($1::text IS NULL OR grp = $1) ORDER BY id FOR UPDATE",
        )
        .bind(group)
        .fetch_all(&mut *tx)
        .await
        .map_err(|err| pg_error("purge", err))?;
        let mut purged = 0;
        for id in ids.into_iter().filter(|id| selection.contains(*id as u64)) {
            sqlx::query("UPDATE evt_dead_letters SET status = 'purged' WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(|err| pg_error("purge", err))?;
            audit_on(&mut tx, id as u64, "purged", actor, "").await?;
            release_parked(&mut tx, id as u64, actor).await?;
            purged += 1;
        }
        tx.commit().await.map_err(|err| pg_error("purge", err))?;
        Ok(purged)
    }

    pub(super) async fn request_replay(
        pool: &PgPool,
        group: &str,
        records: &[(String, u32, u64)],
        bypass_dedupe: bool,
    ) -> Result<usize, TransportError> {
        let mut tx = pool
            .begin()
            .await
            .map_err(|err| pg_error("request replay", err))?;
        for (topic, partition, offset) in records {
            sqlx::query(
                "INSERT INTO evt_redeliveries (grp, source, letter_id, topic, partition, \"offset\", bypass_dedupe, requested_ms) \
                 VALUES ($1, 'replay', NULL, $2, $3, $4, $5, $6)",
            )
            .bind(group)
            .bind(topic)
            .bind(i64::from(*partition))
            .bind(*offset as i64)
            .bind(bypass_dedupe)
            .bind(now_ms())
            .execute(&mut *tx)
            .await
            .map_err(|err| pg_error("request replay", err))?;
        }
        tx.commit()
            .await
            .map_err(|err| pg_error("request replay", err))?;
        Ok(records.len())
    }

    pub(super) async fn pending_redeliveries(
        pool: &PgPool,
        group: &str,
        max: u32,
    ) -> Result<Vec<Redelivery>, TransportError> {
        let rows =
            sqlx::query("SELECT * FROM evt_redeliveries WHERE grp = $1 ORDER BY id LIMIT $2")
                .bind(group)
                .bind(i64::from(max))
                .fetch_all(pool)
                .await
                .map_err(|err| pg_error("read redeliveries", err))?;
        Ok(rows
            .iter()
            .map(|row| Redelivery {
                id: row.get::<i64, _>("id") as u64,
                group: row.get("grp"),
                source: if row.get::<String, _>("source") == "redrive" {
                    RedeliverySource::Redrive
                } else {
                    RedeliverySource::Replay
                },
                letter_id: row.get::<Option<i64>, _>("letter_id").map(|id| id as u64),
                topic: row.get("topic"),
                partition: row.get::<i64, _>("partition") as u32,
                offset: row.get::<i64, _>("offset") as u64,
                bypass_dedupe: row.get("bypass_dedupe"),
            })
            .collect())
    }

    pub(super) async fn finish_redelivery(
        pool: &PgPool,
        redelivery: &Redelivery,
        failure: Option<&[String]>,
    ) -> Result<(), TransportError> {
        let mut tx = pool
            .begin()
            .await
            .map_err(|err| pg_error("finish redelivery", err))?;
        sqlx::query("DELETE FROM evt_redeliveries WHERE id = $1")
            .bind(redelivery.id as i64)
            .execute(&mut *tx)
            .await
            .map_err(|err| pg_error("finish redelivery", err))?;
        if let Some(letter_id) = redelivery.letter_id {
            let actor = format!("consumer:{}", redelivery.group);
            // Lock the letter first: a concurrent redrive request waits for this to finish.
            sqlx::query("SELECT id FROM evt_dead_letters WHERE id = $1 FOR UPDATE")
                .bind(letter_id as i64)
                .fetch_optional(&mut *tx)
                .await
                .map_err(|err| pg_error("finish redelivery", err))?;
            match failure {
                Some(chain) => {
                    sqlx::query(
                        "UPDATE evt_dead_letters SET status = 'dead', attempts = attempts + 1, last_failure_ms = $1, \
                         reason = $2, error_chain = $3 WHERE id = $4",
                    )
                    .bind(now_ms())
                    .bind(chain.first().cloned().unwrap_or_default())
                    .bind(chain_to_text(chain))
                    .bind(letter_id as i64)
                    .execute(&mut *tx)
                    .await
                    .map_err(|err| pg_error("finish redelivery", err))?;
                    audit_on(
                        &mut tx,
                        letter_id,
                        "redrive-failed",
                        &actor,
                        &chain.join(": "),
                    )
                    .await?;
                }
                None => {
                    sqlx::query("UPDATE evt_dead_letters SET status = 'resolved' WHERE id = $1")
                        .bind(letter_id as i64)
                        .execute(&mut *tx)
                        .await
                        .map_err(|err| pg_error("finish redelivery", err))?;
                    audit_on(&mut tx, letter_id, "resolved", &actor, "").await?;
                    release_parked(&mut tx, letter_id, &actor).await?;
                }
            }
        }
        tx.commit()
            .await
            .map_err(|err| pg_error("finish redelivery", err))?;
        Ok(())
    }

    pub(super) async fn depth(pool: &PgPool) -> Result<Vec<(String, u64)>, TransportError> {
        let rows = sqlx::query(
            "SELECT grp, COUNT(*) AS n FROM evt_dead_letters WHERE status IN ('dead', 'parked', 'redriving') \
             GROUP BY grp ORDER BY grp",
        )
        .fetch_all(pool)
        .await
        .map_err(|err| pg_error("count dead letters", err))?;
        Ok(rows
            .iter()
            .map(|row| (row.get::<String, _>("grp"), row.get::<i64, _>("n") as u64))
            .collect())
    }
}
