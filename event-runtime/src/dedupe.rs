//! Dedupe stores: remember which dedupe keys a consumer group has handled, for a retention
//! window, so that redelivered and replayed events have their effect once.
//!
//! The key is the envelope's dedupe key (from `#[event(dedupe)]` fields) or, by default, its id.
//! [`MemoryDedupe`] lives in the process; [`SqliteDedupe`] lives in the engine's file;
//! [`PgDedupe`] lives in PostgreSQL. When the handler writes to the same database, the consumer
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
#[derive(Clone, Default)]
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

#[cfg(feature = "sqlite")]
pub use sqlite::SqliteDedupe;

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;
    use crate::transport::sqlite::{SqliteTransport, db_error};

    /// Dedupe marks in the engine's SQLite file (`evt_dedupe`).
    #[derive(Clone, Debug)]
    pub struct SqliteDedupe {
        pool: sqlx::SqlitePool,
    }

    impl SqliteDedupe {
        /// The store in the same file as `transport`.
        pub fn new(transport: &SqliteTransport) -> Self {
            SqliteDedupe {
                pool: transport.pool().clone(),
            }
        }

        /// Claims `key` for `group` on `conn` (inside the handler's transaction): `true` if this
        /// is the first time, `false` if it was already handled. Rolled back with the transaction.
        ///
        /// # Errors
        ///
        /// The database error.
        pub async fn claim(
            conn: &mut sqlx::SqliteConnection,
            group: &str,
            key: &str,
        ) -> Result<bool, TransportError> {
            let done = sqlx::query("INSERT INTO evt_dedupe (grp, key, seen_ms) VALUES (?, ?, ?) ON CONFLICT (grp, key) DO NOTHING")
                .bind(group)
                .bind(key)
                .bind(now_ms())
                .execute(conn)
                .await
                .map_err(|err| db_error(format!("claim dedupe key for {group}"), err))?;
            Ok(done.rows_affected() == 1)
        }
    }

    impl DedupeStore for SqliteDedupe {
        async fn seen(&self, group: &str, key: &str) -> Result<bool, TransportError> {
            let found: Option<i64> =
                sqlx::query_scalar("SELECT 1 FROM evt_dedupe WHERE grp = ? AND key = ?")
                    .bind(group)
                    .bind(key)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|err| db_error(format!("read dedupe key for {group}"), err))?;
            Ok(found.is_some())
        }

        async fn mark(&self, group: &str, key: &str) -> Result<(), TransportError> {
            let mut conn = self
                .pool
                .acquire()
                .await
                .map_err(|err| db_error(format!("mark dedupe key for {group}"), err))?;
            Self::claim(&mut conn, group, key).await.map(|_| ())
        }

        async fn purge_older_than(&self, retention: Duration) -> Result<u64, TransportError> {
            let cutoff = now_ms() - retention.as_millis() as i64;
            let done = sqlx::query("DELETE FROM evt_dedupe WHERE seen_ms < ?")
                .bind(cutoff)
                .execute(&self.pool)
                .await
                .map_err(|err| db_error("purge dedupe keys", err))?;
            Ok(done.rows_affected())
        }
    }
}

#[cfg(feature = "sqlite")]
pub use postgres::PgDedupe;

#[cfg(feature = "sqlite")]
mod postgres {
    use super::*;
    use crate::postgres::pg_error;

    /// Dedupe marks in PostgreSQL (`evt_dedupe`, created if missing). With
    /// [`crate::GroupOptions::inbox`] the consumer claims the key inside the handler's PostgreSQL
    /// transaction ([`crate::Context::pg_transaction`]), so the mark and the effect commit together.
    #[derive(Clone)]
    pub struct PgDedupe {
        pool: sqlx::PgPool,
    }

    impl std::fmt::Debug for PgDedupe {
        // Never the pool's options: they hold the connection settings (and the password).
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("PgDedupe").finish_non_exhaustive()
        }
    }

    impl PgDedupe {
        /// The store on `pool`; creates its table if missing.
        ///
        /// # Errors
        ///
        /// When the schema cannot be created. The message never holds the connection URL.
        pub async fn new(pool: sqlx::PgPool) -> Result<Self, TransportError> {
            crate::postgres::ensure_schema(&pool).await?;
            Ok(PgDedupe { pool })
        }

        pub(crate) fn pool(&self) -> &sqlx::PgPool {
            &self.pool
        }

        /// Claims `key` for `group` on `conn` (inside the handler's transaction): `true` if this
        /// is the first time, `false` if it was already handled. Rolled back with the transaction;
        /// a concurrent claim of the same key waits for this transaction to end.
        ///
        /// # Errors
        ///
        /// The database error.
        pub async fn claim(
            conn: &mut sqlx::PgConnection,
            group: &str,
            key: &str,
        ) -> Result<bool, TransportError> {
            let done = sqlx::query(
                "INSERT INTO evt_dedupe (grp, key, seen_ms) VALUES ($1, $2, $3) \
                 ON CONFLICT (grp, key) DO NOTHING",
            )
            .bind(group)
            .bind(key)
            .bind(now_ms())
            .execute(conn)
            .await
            .map_err(|err| pg_error(format!("claim dedupe key for {group}"), err))?;
            Ok(done.rows_affected() == 1)
        }
    }

    impl DedupeStore for PgDedupe {
        async fn seen(&self, group: &str, key: &str) -> Result<bool, TransportError> {
            let found: Option<i32> =
                sqlx::query_scalar("SELECT 1 FROM evt_dedupe WHERE grp = $1 AND key = $2")
                    .bind(group)
                    .bind(key)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|err| pg_error(format!("read dedupe key for {group}"), err))?;
            Ok(found.is_some())
        }

        async fn mark(&self, group: &str, key: &str) -> Result<(), TransportError> {
            let mut conn = self
                .pool
                .acquire()
                .await
                .map_err(|err| pg_error(format!("mark dedupe key for {group}"), err))?;
            Self::claim(&mut conn, group, key).await.map(|_| ())
        }

        async fn purge_older_than(&self, retention: Duration) -> Result<u64, TransportError> {
            let cutoff = now_ms() - retention.as_millis() as i64;
            let done = sqlx::query("DELETE FROM evt_dedupe WHERE seen_ms < $1")
                .bind(cutoff)
                .execute(&self.pool)
                .await
                .map_err(|err| pg_error("purge dedupe keys", err))?;
            Ok(done.rows_affected())
        }
    }
}
