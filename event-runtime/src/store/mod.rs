//! The stores an app keeps beside the log — dead letters (with redrive and replay requests and
//! the audit trail), dedupe marks, the inbox and the transactional outbox — each written once.
//!
//! The shape is sqlx's (`sqlx-core` with `sqlx-sqlite` / `sqlx-postgres`): every lifecycle lives
//! in one module of its own, over a small private row-level interface, and each database only
//! contributes its SQL dialect.
//!
//! ```text
//!   DeadLetters · dedupe · inbox · Outbox        (public facades: dlq, dedupe, consumer, outbox)
//!        │ one lifecycle each: letters.rs, dedupe.rs, inbox.rs, outbox.rs (+ lease.rs)
//!        ▼
//!   LetterTx (row-level, one transaction)  ──►  memory.rs       (no SQL at all)
//!        │                                  └►  sql_letters.rs  (every SQL database, once)
//!        ▼                                        │ Exec + Sql (sql.rs): the dialect
//!                                          sqlite.rs · postgres.rs
//! ```
//!
//! The transactional outbox ([`crate::outbox`]) is written once too, over the same interface:
//! each dialect adds its staging statement, how its relays exclude each other (PostgreSQL's
//! advisory lock, SQLite's lease row in `evt_leases`, [`lease`]) and how a relay learns of new
//! rows (PostgreSQL's `LISTEN`, SQLite's polling).
//!
//! A [`Dialect`] is a database the stores can live in: [`sqlx::Sqlite`] with the `sqlite`
//! feature, [`sqlx::Postgres`] with the `postgres` feature. It is what
//! [`crate::Context::transaction`] is generic over.

#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) mod dedupe;
pub(crate) mod inbox;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) mod lease;
pub(crate) mod letters;
pub(crate) mod memory;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) mod sql;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) mod sql_letters;
#[cfg(feature = "sqlite")]
pub(crate) mod sqlite;

#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use sql::Dialect;

use std::sync::Arc;
use std::time::Duration;

/// Columns added to the stores' tables after the tables' first release, as `(table, column,
/// declaration)`: a store opened on a database created before adds each one that is missing
/// (the declaration reads the same in SQLite and PostgreSQL; the migrations create new tables
/// with them).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("evt_sagas", "state_version", "BIGINT NOT NULL DEFAULT 1"),
    // A dedupe claim's holder and when it lapses (both NULL for a mark).
    ("evt_dedupe", "holder", "TEXT"),
    ("evt_dedupe", "lease_ms", "BIGINT"),
];

/// Indexes added after their tables' first release (some over [`ADDED_COLUMNS`]), as `(name,
/// statement)`, created after the columns when missing. Not in the migrations: a database
/// created before would otherwise re-run the whole PostgreSQL schema script beside live writers.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) const ADDED_INDEXES: &[(&str, &str)] = &[
    (
        "evt_dedupe_held",
        // Only the claims: a renewal finds its holder's without reading the marks.
        "CREATE INDEX IF NOT EXISTS evt_dedupe_held ON evt_dedupe (holder, grp) \
         WHERE holder IS NOT NULL",
    ),
    (
        "evt_saga_history_message",
        // The transitions of one message (`evt trace`).
        "CREATE INDEX IF NOT EXISTS evt_saga_history_message ON evt_saga_history (message_id)",
    ),
];

use crate::dedupe::{DedupeStore, MemoryDedupe};
use crate::transport::TransportError;

/// Where an app's stores are: one database for its dead letters, dedupe marks, inbox and
/// outbox. Cloning shares it.
#[derive(Clone)]
pub(crate) enum Db {
    /// In the process, lost with it.
    Memory(Arc<MemoryDb>),
    /// In an SQLite file.
    #[cfg(feature = "sqlite")]
    Sqlite(sqlite::SqliteDb),
    /// In PostgreSQL.
    #[cfg(feature = "postgres")]
    Postgres(postgres::PgDb),
}

impl std::fmt::Debug for Db {
    // Never the pool's options: they hold the connection settings (and the password).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Db::Memory(_) => "Memory",
            #[cfg(feature = "sqlite")]
            Db::Sqlite(_) => "Sqlite",
            #[cfg(feature = "postgres")]
            Db::Postgres(_) => "Postgres",
        })
    }
}

/// The stores in memory.
#[derive(Debug, Default)]
pub(crate) struct MemoryDb {
    pub(crate) letters: memory::MemoryLetters,
    pub(crate) dedupe: MemoryDedupe,
}

impl Db {
    /// Stores in memory.
    pub(crate) fn memory() -> Self {
        Db::Memory(Arc::default())
    }

    /// Stores in the SQLite file of `file`.
    #[cfg(feature = "sqlite")]
    pub(crate) fn sqlite(file: &crate::transport::sqlite::SqliteTransport) -> Self {
        Db::Sqlite(sqlite::SqliteDb::of(file))
    }

    /// Stores in PostgreSQL, on `pool` (tables created if missing).
    #[cfg(feature = "postgres")]
    pub(crate) async fn postgres(pool: sqlx::PgPool) -> Result<Self, TransportError> {
        postgres::ensure_schema(&pool).await?;
        Ok(Db::Postgres(postgres::PgDb::new(pool)))
    }

    /// The database a group in inbox mode runs its inbox on, for an app on `transport`: these
    /// stores when they are PostgreSQL; the log's own file when the engine is SQLite (the
    /// emitted events are then appended to the log in the inbox transaction); these stores when
    /// they are SQLite under another engine (the emitted events then go through the file's
    /// outbox). `None`: no inbox, the group uses the dedupe store.
    pub(crate) fn inbox_for<T: 'static>(&self, transport: &T) -> Option<inbox::Inbox> {
        let stores = |db: &Db| inbox::Inbox {
            db: db.clone(),
            local_log: false,
        };
        #[cfg(feature = "postgres")]
        if let Db::Postgres(_) = self {
            return Some(stores(self));
        }
        #[cfg(feature = "sqlite")]
        {
            let transport: &dyn std::any::Any = transport;
            if let Some(file) =
                transport.downcast_ref::<crate::transport::sqlite::SqliteTransport>()
            {
                return Some(inbox::Inbox {
                    db: Db::sqlite(file),
                    local_log: true,
                });
            }
            if let Db::Sqlite(_) = self {
                return Some(stores(self));
            }
        }
        let _ = (transport, stores);
        None
    }

    // The SQL arms of these methods are boxed, so that their (large) sqlx futures do not make
    // every caller's future as large, memory stores included.
    /// Claims `key` of `group` for `holder` for `lease` ([`DedupeStore::claim`]).
    pub(crate) async fn claim(
        &self,
        group: &Arc<str>,
        key: &str,
        holder: &Arc<str>,
        lease: Duration,
    ) -> Result<crate::dedupe::Claim, TransportError> {
        match self {
            Db::Memory(memory) => Ok(memory.dedupe.claim_now(group, key, holder, lease)),
            #[cfg(feature = "sqlite")]
            Db::Sqlite(db) => Box::pin(db.dedupe.claim(group, key, holder, lease)).await,
            #[cfg(feature = "postgres")]
            Db::Postgres(pg) => Box::pin(pg.dedupe.claim(group, key, holder, lease)).await,
        }
    }

    /// Extends `holder`'s claims on `keys` in `group` to `lease` from now; how many.
    pub(crate) async fn renew(
        &self,
        group: &str,
        holder: &str,
        keys: &[&str],
        lease: Duration,
    ) -> Result<u64, TransportError> {
        match self {
            Db::Memory(memory) => Ok(memory.dedupe.renew_now(group, holder, keys, lease)),
            #[cfg(feature = "sqlite")]
            Db::Sqlite(db) => Box::pin(dedupe::renew(&db.pool, group, holder, keys, lease)).await,
            #[cfg(feature = "postgres")]
            Db::Postgres(postgres::PgDb { pool, .. }) => {
                Box::pin(dedupe::renew(pool, group, holder, keys, lease)).await
            }
        }
    }

    /// Releases `holder`'s claim on `key` without waiting (from a drop): a lost release only
    /// leaves the claim to lapse.
    pub(crate) fn release_later(&self, group: &Arc<str>, key: &str, holder: &Arc<str>) {
        match self {
            Db::Memory(memory) => memory.dedupe.release_now(group, key, holder),
            #[cfg(feature = "sqlite")]
            Db::Sqlite(db) => db.dedupe.release_later(group, Arc::from(key), holder),
            #[cfg(feature = "postgres")]
            Db::Postgres(pg) => pg.dedupe.release_later(group, Arc::from(key), holder),
        }
    }

    /// Marks `key` handled for `group`.
    pub(crate) async fn mark(&self, group: &str, key: &str) -> Result<(), TransportError> {
        match self {
            Db::Memory(memory) => memory.dedupe.mark(group, key).await,
            #[cfg(feature = "sqlite")]
            Db::Sqlite(db) => Box::pin(db.dedupe.mark(group, key)).await,
            #[cfg(feature = "postgres")]
            Db::Postgres(pg) => Box::pin(pg.dedupe.mark(group, key)).await,
        }
    }

    /// Whether `key` is marked handled for `group` ([`DedupeStore::seen`]).
    pub(crate) async fn seen(&self, group: &str, key: &str) -> Result<bool, TransportError> {
        match self {
            Db::Memory(memory) => memory.dedupe.seen(group, key).await,
            #[cfg(feature = "sqlite")]
            Db::Sqlite(db) => Box::pin(dedupe::seen(&db.pool, group, key)).await,
            #[cfg(feature = "postgres")]
            Db::Postgres(postgres::PgDb { pool, .. }) => {
                Box::pin(dedupe::seen(pool, group, key)).await
            }
        }
    }

    /// Deletes saga instances finished more than `age` ago, with their history; how many.
    pub(crate) async fn purge_finished_sagas(&self, age: Duration) -> Result<u64, TransportError> {
        let cutoff =
            crate::transport::now_ms() - i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
        match self {
            Db::Memory(_) => {
                let _ = cutoff;
                Ok(0)
            }
            #[cfg(feature = "sqlite")]
            Db::Sqlite(db) => Box::pin(crate::saga::store::purge_finished(&db.pool, cutoff)).await,
            #[cfg(feature = "postgres")]
            Db::Postgres(postgres::PgDb { pool, .. }) => {
                Box::pin(crate::saga::store::purge_finished(pool, cutoff)).await
            }
        }
    }

    /// Forgets dedupe marks older than `retention`; how many.
    pub(crate) async fn purge_dedupe(&self, retention: Duration) -> Result<u64, TransportError> {
        match self {
            Db::Memory(memory) => memory.dedupe.purge_older_than(retention).await,
            #[cfg(feature = "sqlite")]
            Db::Sqlite(db) => Box::pin(dedupe::purge_older_than(&db.pool, retention)).await,
            #[cfg(feature = "postgres")]
            Db::Postgres(postgres::PgDb { pool, .. }) => {
                Box::pin(dedupe::purge_older_than(pool, retention)).await
            }
        }
    }
}

/// Removes anything that looks like a connection URL (`postgres://user:password@host/db`) from
/// `text`. Returns whether something was removed.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn scrub_urls(text: &str) -> (String, bool) {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut scrubbed = false;
    while let Some(at) = rest.find("://") {
        // The scheme: the letters, digits, `+`, `-` and `.` right before `://`.
        let scheme_start = rest[..at]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |i| i + 1);
        let after = &rest[at + 3..];
        let end = after
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | ')' | '>'))
            .unwrap_or(after.len());
        out.push_str(&rest[..scheme_start]);
        if scheme_start < at {
            out.push_str(&rest[scheme_start..at]);
            out.push_str("://<redacted>");
        } else {
            out.push_str("<redacted url>");
        }
        scrubbed = true;
        rest = &after[end..];
    }
    out.push_str(rest);
    (out, scrubbed)
}

#[cfg(all(test, any(feature = "sqlite", feature = "postgres")))]
mod scrub_tests {
    use super::scrub_urls;

    #[test]
    fn urls_are_scrubbed() {
        let (text, scrubbed) =
            scrub_urls("error connecting to postgres://bob:s3cret@db:5432/app (refused)");
        assert!(scrubbed);
        assert_eq!(text, "error connecting to postgres://<redacted> (refused)");
        assert!(!text.contains("s3cret"));
        let (text, scrubbed) = scrub_urls("relation \"evt_dedupe\" does not exist");
        assert!(!scrubbed);
        assert_eq!(text, "relation \"evt_dedupe\" does not exist");
        let (text, _) = scrub_urls("a postgresql://x:y@h/d and postgres://u:p@h2");
        assert_eq!(text, "a postgresql://<redacted> and postgres://<redacted>");
    }
}

#[cfg(all(test, feature = "sqlite"))]
mod dedupe_tests {
    use super::Db;
    use crate::transport::sqlite::SqliteTransport;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// The batched dedupe writer runs on the runtime that used the store first; when that
    /// runtime is gone, the next use starts a writer on its own runtime instead of failing for
    /// ever.
    #[test]
    fn dedupe_writes_outlive_the_runtime_that_started_the_writer() {
        let path = std::env::temp_dir().join(format!(
            "evt-dedupe-runtimes-{}-{}.db",
            std::process::id(),
            crate::transport::now_ms()
        ));
        let first = runtime();
        let file = first.block_on(SqliteTransport::open(&path)).unwrap();
        let db = Db::sqlite(&file);
        first.block_on(db.mark("billing", "k-1")).unwrap();
        drop(first);
        let second = runtime();
        second.block_on(async {
            use crate::dedupe::Claim;
            db.mark("billing", "k-2").await.unwrap();
            let (billing, shipping, me) = (
                std::sync::Arc::from("billing"),
                std::sync::Arc::from("shipping"),
                std::sync::Arc::from("i"),
            );
            let lease = std::time::Duration::from_secs(60);
            for (group, key, found) in [
                (&billing, "k-1", Claim::Done),
                (&billing, "k-2", Claim::Done),
                (&billing, "k-3", Claim::Claimed),
                (&shipping, "k-1", Claim::Claimed),
            ] {
                assert_eq!(
                    db.claim(group, key, &me, lease).await.unwrap(),
                    found,
                    "{group} {key}"
                );
            }
        });
        drop(second);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }
}
