//! Dedupe stores: remember which dedupe keys a consumer group has handled, for a retention
//! window, so that redelivered and replayed events have their effect once.
//!
//! A consumer claims a key before its handler runs ([`DedupeStore::claim`]): the claim names
//! the instance that holds it and lapses `lease` after the store wrote it unless the holder
//! renews it ([`DedupeStore::renew`]: the consumer renews the keys it is handling every third of
//! [`crate::GroupOptions::claim_ttl`]). Marking ([`DedupeStore::mark`]) turns the claim into a mark for good; releasing it
//! ([`DedupeStore::release`], when the event was dead-lettered or its handling abandoned)
//! lets the next delivery claim it again. So two instances that both receive one event (during
//! a handover, or as two records with one dedupe key) never run its handler at once: the second
//! waits, then finds it marked; and a holder that dies without marking holds the key only until
//! its claim lapses.
//!
//! The key is the envelope's dedupe key (from `#[event(dedupe)]` fields) or, by default, its id.
//! [`MemoryDedupe`] lives in the process; [`SqlDedupe`] in an SQL database: `SqliteDedupe`
//! in the engine's file, `PgDedupe` in PostgreSQL. When the handler writes to the same database, the consumer
//! instead claims the key inside the handler's transaction (the inbox pattern, see
//! [`crate::consumer`]), so the mark and the effect commit together.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::transport::{TransportError, now_ms};

/// What [`DedupeStore::claim`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Claim {
    /// The key is now claimed by the caller: run the handler, then mark or release it.
    Claimed,
    /// The key was marked: the event was handled.
    Done,
    /// Another claim holds the key until `until_ms` (ms since the Unix epoch) unless renewed.
    Held {
        /// The instance holding it.
        holder: String,
        /// When its claim lapses.
        until_ms: i64,
    },
}

/// Remembers handled dedupe keys per consumer group.
pub trait DedupeStore: Send + Sync + 'static {
    /// Claims `key` for `group` on behalf of `holder` (an instance id) for `lease`, counted
    /// from when the store writes the claim: the key must be neither marked nor held by a
    /// claim that has not lapsed. A lapsed claim (its holder died) is taken over.
    fn claim(
        &self,
        group: &str,
        key: &str,
        holder: &str,
        lease: Duration,
    ) -> impl Future<Output = Result<Claim, TransportError>> + Send;
    /// Extends `holder`'s claims on `keys` in `group` to `lease` from now; how many it still
    /// held. Only the keys named: a claim its holder lost track of (its handling was cancelled
    /// at the wrong moment, its release failed) lapses.
    fn renew(
        &self,
        group: &str,
        holder: &str,
        keys: &[&str],
        lease: Duration,
    ) -> impl Future<Output = Result<u64, TransportError>> + Send;
    /// Drops `holder`'s claim on `key` (not a mark): the next delivery may claim it.
    fn release(
        &self,
        group: &str,
        key: &str,
        holder: &str,
    ) -> impl Future<Output = Result<(), TransportError>> + Send;
    /// Whether `key` was already marked for `group` within the retention window (a claim
    /// that is only held is not a mark).
    fn seen(
        &self,
        group: &str,
        key: &str,
    ) -> impl Future<Output = Result<bool, TransportError>> + Send;
    /// Marks `key` handled for `group` (ending a claim of it, whoever holds it).
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

/// Dedupe marks and claims in memory, lost on restart.
#[derive(Clone, Debug, Default)]
pub struct MemoryDedupe {
    inner: Arc<Mutex<Keys>>,
}

#[derive(Debug, Default)]
struct Keys {
    // group -> key -> its state; nested so that a lookup borrows instead of allocating.
    keys: crate::FastMap<String, crate::FastMap<String, State>>,
}

#[derive(Debug)]
enum State {
    /// Handled, at this time.
    Marked(i64),
    /// Claimed by this holder until this time.
    Held(Arc<str>, i64),
}

/// `lease` from now, in ms since the epoch.
pub(crate) fn lapse_at(lease: Duration) -> i64 {
    now_ms().saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX))
}

impl MemoryDedupe {
    /// An empty store.
    pub fn new() -> Self {
        MemoryDedupe::default()
    }

    /// [`DedupeStore::claim`], at once, sharing `holder`.
    pub(crate) fn claim_now(
        &self,
        group: &str,
        key: &str,
        holder: &Arc<str>,
        lease: Duration,
    ) -> Claim {
        let mut keys = self.keys();
        let of_group = entry(&mut keys.keys, group);
        match of_group.get_mut(key) {
            Some(State::Marked(_)) => Claim::Done,
            Some(State::Held(by, until)) if *until >= now_ms() => Claim::Held {
                holder: by.to_string(),
                until_ms: *until,
            },
            // Its holder died: taken over.
            Some(held) => {
                *held = State::Held(holder.clone(), lapse_at(lease));
                Claim::Claimed
            }
            None => {
                of_group.insert(key.to_owned(), State::Held(holder.clone(), lapse_at(lease)));
                Claim::Claimed
            }
        }
    }

    /// [`DedupeStore::release`], at once.
    pub(crate) fn release_now(&self, group: &str, key: &str, holder: &str) {
        let mut keys = self.keys();
        if let Some(of_group) = keys.keys.get_mut(group)
            && matches!(of_group.get(key), Some(State::Held(by, _)) if &**by == holder)
        {
            of_group.remove(key);
        }
    }

    /// [`DedupeStore::renew`], at once.
    pub(crate) fn renew_now(
        &self,
        group: &str,
        holder: &str,
        keys: &[&str],
        lease: Duration,
    ) -> u64 {
        let until_ms = lapse_at(lease);
        let mut all = self.keys();
        let Some(of_group) = all.keys.get_mut(group) else {
            return 0;
        };
        let mut renewed = 0;
        for key in keys {
            if let Some(State::Held(by, until)) = of_group.get_mut(*key)
                && &**by == holder
            {
                *until = until_ms;
                renewed += 1;
            }
        }
        renewed
    }

    fn keys(&self) -> std::sync::MutexGuard<'_, Keys> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// `map[group]`, created if missing, without allocating the group's name when it is there.
fn entry<'m, V: Default>(map: &'m mut crate::FastMap<String, V>, group: &str) -> &'m mut V {
    if !map.contains_key(group) {
        map.insert(group.to_owned(), V::default());
    }
    map.get_mut(group).expect("inserted above")
}

impl DedupeStore for MemoryDedupe {
    async fn claim(
        &self,
        group: &str,
        key: &str,
        holder: &str,
        lease: Duration,
    ) -> Result<Claim, TransportError> {
        Ok(self.claim_now(group, key, &Arc::from(holder), lease))
    }

    async fn renew(
        &self,
        group: &str,
        holder: &str,
        keys: &[&str],
        lease: Duration,
    ) -> Result<u64, TransportError> {
        Ok(self.renew_now(group, holder, keys, lease))
    }

    async fn release(&self, group: &str, key: &str, holder: &str) -> Result<(), TransportError> {
        self.release_now(group, key, holder);
        Ok(())
    }

    async fn seen(&self, group: &str, key: &str) -> Result<bool, TransportError> {
        Ok(self
            .keys()
            .keys
            .get(group)
            .is_some_and(|of_group| matches!(of_group.get(key), Some(State::Marked(_)))))
    }

    async fn mark(&self, group: &str, key: &str) -> Result<(), TransportError> {
        let mut keys = self.keys();
        let of_group = entry(&mut keys.keys, group);
        match of_group.get_mut(key) {
            Some(state) => *state = State::Marked(now_ms()),
            None => {
                of_group.insert(key.to_owned(), State::Marked(now_ms()));
            }
        }
        Ok(())
    }

    async fn purge_older_than(&self, retention: Duration) -> Result<u64, TransportError> {
        let cutoff = now_ms() - retention.as_millis() as i64;
        let mut keys = self.keys();
        let mut removed = 0;
        for of_group in keys.keys.values_mut() {
            let before = of_group.len();
            of_group.retain(|_, state| !matches!(state, State::Marked(at) if *at < cutoff));
            removed += before - of_group.len();
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
    async fn claim(
        &self,
        group: &str,
        key: &str,
        holder: &str,
        lease: Duration,
    ) -> Result<Claim, TransportError> {
        let wanted = crate::store::dedupe::Wanted {
            group,
            key,
            holder,
            lease,
        };
        let mut claims = crate::store::dedupe::claim_all(&self.pool, &[wanted]).await?;
        Ok(claims.pop().expect("one answer per claim"))
    }

    async fn renew(
        &self,
        group: &str,
        holder: &str,
        keys: &[&str],
        lease: Duration,
    ) -> Result<u64, TransportError> {
        crate::store::dedupe::renew(&self.pool, group, holder, keys, lease).await
    }

    async fn release(&self, group: &str, key: &str, holder: &str) -> Result<(), TransportError> {
        crate::store::dedupe::release(&self.pool, group, key, holder).await
    }

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
