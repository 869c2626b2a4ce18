//! Dedupe stores: remember which dedupe keys a consumer group has handled, for a retention
//! window, so that redelivered and replayed events have their effect once.
//!
//! The key is the envelope's dedupe key (from `#[event(dedupe)]` fields) or, by default, its id.
//! [`MemoryDedupe`] lives in the process; [`SqlDedupe`] in an SQL database: `SqliteDedupe`
//! in the engine's file, `PgDedupe` in PostgreSQL. When the handler writes to the same database, the consumer
//! instead claims the key inside the handler's transaction (the inbox pattern, see
//! [`crate::consumer`]), so the mark and the effect commit together.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::transport::{TransportError, now_ms};

/// Remembers handled dedupe keys per consumer group.
pub trait DedupeStore: Send + Sync + 'static {
    /// Whether `key` was already marked for `group` within the retention window.
    fn seen(
        &self,
        group: &str,
        key: &str,
    ) -> impl Future<Output = Result<bool, TransportError>> + Send;
    /// Marks `key` handled for `group`.
    fn mark(
        &self,
        group: &str,
        key: &str,
    ) -> impl Future<Output = Result<(), TransportError>> + Send;
    /// Forgets marks older than `retention`; returns how many were removed.
    fn purge_older_than(
        &self,
        retention: Duration,
    ) -> impl Future<Output = Result<u64, TransportError>> + Send;
}

/// Dedupe marks in memory, lost on restart.
#[derive(Clone, Debug, Default)]
pub struct MemoryDedupe {
    // group -> key -> when marked; nested so that a lookup borrows instead of allocating.
    marks: Arc<Mutex<HashMap<String, HashMap<String, i64>>>>,
}

impl MemoryDedupe {
    /// An empty store.
    pub fn new() -> Self {
        MemoryDedupe::default()
    }
}

impl DedupeStore for MemoryDedupe {
    async fn seen(&self, group: &str, key: &str) -> Result<bool, TransportError> {
        let marks = self
            .marks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(marks.get(group).is_some_and(|keys| keys.contains_key(key)))
    }

    async fn mark(&self, group: &str, key: &str) -> Result<(), TransportError> {
        let mut marks = self
            .marks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match marks.get_mut(group) {
            Some(keys) => keys.insert(key.to_owned(), now_ms()),
            None => marks
                .entry(group.to_owned())
                .or_default()
                .insert(key.to_owned(), now_ms()),
        };
        Ok(())
    }

    async fn purge_older_than(&self, retention: Duration) -> Result<u64, TransportError> {
        let cutoff = now_ms() - retention.as_millis() as i64;
        let mut marks = self
            .marks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut removed = 0;
        for keys in marks.values_mut() {
            let before = keys.len();
            keys.retain(|_, seen| *seen >= cutoff);
            removed += before - keys.len();
        }
        Ok(removed as u64)
    }
}

/// Dedupe marks in an SQL database (`evt_dedupe`): [`SqliteDedupe`] in the engine's file,
/// [`PgDedupe`] in PostgreSQL (created if missing). With [`crate::GroupOptions::inbox`] the
/// consumer claims the key inside the handler's transaction ([`crate::Context::transaction`]),
/// so the mark and the effect commit together. One implementation for both databases.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
#[derive(Clone)]
pub struct SqlDedupe<DB: crate::store::Dialect> {
    pool: sqlx::Pool<DB>,
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl<DB: crate::store::Dialect> std::fmt::Debug for SqlDedupe<DB> {
    // Never the pool's options: they hold the connection settings (and the password).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlDedupe").finish_non_exhaustive()
    }
}

/// Dedupe marks in the engine's SQLite file.
#[cfg(feature = "sqlite")]
pub type SqliteDedupe = SqlDedupe<sqlx::Sqlite>;

/// Dedupe marks in PostgreSQL.
#[cfg(feature = "postgres")]
pub type PgDedupe = SqlDedupe<sqlx::Postgres>;

#[cfg(feature = "sqlite")]
impl SqlDedupe<sqlx::Sqlite> {
    /// The store in the same file as `transport`.
    pub fn new(transport: &crate::transport::sqlite::SqliteTransport) -> Self {
        SqlDedupe {
            pool: transport.pool().clone(),
        }
    }
}

#[cfg(feature = "postgres")]
impl SqlDedupe<sqlx::Postgres> {
    /// The store on `pool`; creates its table if missing.
    ///
    /// # Errors
    ///
    /// When the schema cannot be created. The message never holds the connection URL.
    pub async fn new(pool: sqlx::PgPool) -> Result<Self, TransportError> {
        crate::store::postgres::ensure_schema(&pool).await?;
        Ok(SqlDedupe { pool })
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl<DB: crate::store::Dialect> SqlDedupe<DB> {
    /// Claims `key` for `group` on `conn` (inside the handler's transaction): `true` if this
    /// is the first time, `false` if it was already handled. Rolled back with the transaction;
    /// a concurrent claim of the same key waits for this transaction to end.
    ///
    /// # Errors
    ///
    /// The database error.
    pub async fn claim(
        conn: &mut DB::Connection,
        group: &str,
        key: &str,
    ) -> Result<bool, TransportError> {
        crate::store::dedupe::claim::<DB>(conn, group, key).await
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl<DB: crate::store::Dialect> DedupeStore for SqlDedupe<DB> {
    async fn seen(&self, group: &str, key: &str) -> Result<bool, TransportError> {
        crate::store::dedupe::seen(&self.pool, group, key).await
    }

    async fn mark(&self, group: &str, key: &str) -> Result<(), TransportError> {
        crate::store::dedupe::mark(&self.pool, group, key).await
    }

    async fn purge_older_than(&self, retention: Duration) -> Result<u64, TransportError> {
        crate::store::dedupe::purge_older_than(&self.pool, retention).await
    }
}
