//! SQLite's dialect of the stores: `?` placeholders as written, `BEGIN IMMEDIATE` (the writer
//! holds the whole file, so no per-key locks and no `FOR UPDATE`), busy and locked answers
//! classed as unavailable, and the stores' tables (`migrations/sqlite.sql`), created with the
//! engine's own when a file is opened.

use std::sync::Arc;
use std::time::Duration;

use sqlx::{Pool, Sqlite, Transaction};
use tokio::sync::{Notify, watch};

use super::sql::Sql;
use crate::transport::{TransportError, TransportErrorKind};

/// The stores' tables in an SQLite file: dedupe marks, dead letters, their audit trail and
/// redelivery requests. Idempotent.
pub(crate) const SCHEMA: &str = include_str!("../../migrations/sqlite.sql");

/// A [`TransportError`] for an SQLite error; "busy" and "locked" are transient.
pub(crate) fn db_error(operation: impl Into<String>, err: sqlx::Error) -> TransportError {
    let kind = match &err {
        sqlx::Error::Database(db)
            if db.message().contains("locked") || db.message().contains("busy") =>
        {
            TransportErrorKind::Unavailable
        }
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) => TransportErrorKind::Unavailable,
        _ => TransportErrorKind::Other,
    };
    TransportError::new(kind, operation, err.to_string()).with_source(err)
}

impl Sql for Sqlite {
    // SQLite has no row locks (the writer holds the whole file): `FOR UPDATE` is dropped.
    fn sql(text: &'static str) -> &'static str {
        text.strip_suffix(" FOR UPDATE SKIP LOCKED")
            .or_else(|| text.strip_suffix(" FOR UPDATE"))
            .unwrap_or(text)
    }

    const LOCK_KEY: Option<&'static str> = None;

    async fn begin_write(pool: &Pool<Self>) -> Result<Transaction<'static, Self>, sqlx::Error> {
        pool.begin_with("BEGIN IMMEDIATE").await
    }

    async fn begin_leased(
        pool: &Pool<Self>,
        _lease: std::time::Duration,
    ) -> Result<Transaction<'static, Self>, sqlx::Error> {
        // SQLite has no idle bound: a process paused inside a writing transaction holds the
        // file's lock until it goes on or dies.
        Self::begin_write(pool).await
    }

    const KEEP_ALIVE: Option<&'static str> = None;

    fn error(operation: String, err: sqlx::Error) -> TransportError {
        db_error(operation, err)
    }

    fn rows_affected(result: &Self::QueryResult) -> u64 {
        result.rows_affected()
    }

    fn sql_owned(text: String) -> String {
        text
    }

    fn undefined_table(err: &sqlx::Error) -> bool {
        matches!(err, sqlx::Error::Database(db) if db.message().starts_with("no such table"))
    }

    const STAGE_OUTBOX: &'static str = "INSERT INTO evt_outbox \
         (topic, event_id, record_key, headers, payload, created_ms, attempts) \
         VALUES (?, ?, ?, ?, ?, ?, 0) RETURNING id";

    // A lock of the file would stop every other writer, the log's appends among them.
    const RELAY_LOCK: Option<&'static str> = None;

    // A read of an indexed, usually empty table in a local file: cheap enough to ask often.
    const OUTBOX_POLL: Duration = Duration::from_millis(25);

    // SQLite cannot tell another connection (or process) that a transaction committed.
    async fn watch_outbox(_pool: Pool<Self>, _wake: Arc<Notify>, _shutdown: watch::Receiver<bool>) {
    }
}

/// The stores in an SQLite file: its pool and the lock that serialises this process's inbox
/// transactions on the file.
#[derive(Clone, Debug)]
pub(crate) struct SqliteDb {
    pub(crate) pool: sqlx::SqlitePool,
    pub(crate) writer: std::sync::Arc<tokio::sync::Mutex<()>>,
    /// Dedupe checks and marks, written in batches (an autocommitted mark per record was a
    /// write transaction per record).
    pub(crate) dedupe: std::sync::Arc<super::dedupe::Batcher<Sqlite>>,
    /// Wakes the file's waiting consumers (after an inbox transaction appended to its log).
    pub(crate) wakers: std::sync::Arc<crate::transport::sqlite::Wakers>,
}

impl SqliteDb {
    pub(crate) fn of(file: &crate::transport::sqlite::SqliteTransport) -> Self {
        SqliteDb {
            pool: file.pool().clone(),
            writer: file.inbox_lock_arc(),
            dedupe: std::sync::Arc::new(super::dedupe::Batcher::new(file.pool().clone())),
            wakers: file.wakers(),
        }
    }
}
