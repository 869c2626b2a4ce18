//! Dedupe stores: remember which dedupe keys a consumer group has handled, for a retention
//! window, so that redelivered and replayed events have their effect once.
//!
//! A consumer claims a key before its handler runs ([`DedupeStore::claim`]): the claim names
//! the instance that holds it and lapses at a wall-clock time unless the holder renews it
//! ([`DedupeStore::renew`], every third of [`crate::GroupOptions::claim_ttl`] while it holds
//! any). Marking ([`DedupeStore::mark`]) turns the claim into a mark for good; releasing it
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

use std::collections::HashMap;
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
    /// Claims `key` for `group` on behalf of `holder` (an instance id) until `until_ms`: the
    /// key must be neither marked nor held by a claim that has not lapsed. A lapsed claim (its
    /// holder died) is taken over.
    fn claim(
        &self,
        group: &str,
        key: &str,
        holder: &str,
        until_ms: i64,
    ) -> impl Future<Output = Result<Claim, TransportError>> + Send;
    /// Extends every claim `holder` holds in `group` to `until_ms`; how many.
    fn renew(
        &self,
        group: &str,
        holder: &str,
        until_ms: i64,
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
    keys: HashMap<String, HashMap<String, State>>,
    // group -> holder -> its lease: one per holder, as a renewal extends all of a holder's
    // claims at once (so a renewal does not walk the marks).
    leases: HashMap<String, HashMap<Arc<str>, Lease>>,
}

#[derive(Debug, Default)]
struct Lease {
    /// When the holder's claims lapse unless renewed.
    lapses: i64,
    /// How many keys it holds.
    held: u64,
}

impl Keys {
    /// `holder` no longer holds one key of `group`.
    fn let_go(&mut self, group: &str, holder: &str) {
        if let Some(lease) = self.leases.get_mut(group).and_then(|l| l.get_mut(holder)) {
            lease.held = lease.held.saturating_sub(1);
        }
    }
}

#[derive(Debug)]
enum State {
    /// Handled, at this time.
    Marked(i64),
    /// Claimed by this holder.
    Held(Arc<str>),
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
        until_ms: i64,
    ) -> Claim {
        let mut guard = self.keys();
        let Keys { keys, leases } = &mut *guard;
        let leases = entry(leases, group);
        let now = now_ms();
        let of_group = entry(keys, group);
        match of_group.get_mut(key) {
            Some(State::Marked(_)) => return Claim::Done,
            Some(State::Held(by)) => {
                let lease = leases.get_mut(&**by);
                let lapses = lease.as_ref().map_or(i64::MIN, |l| l.lapses);
                if lapses >= now {
                    return Claim::Held {
                        holder: by.to_string(),
                        until_ms: lapses,
                    };
                }
                // Its holder died: taken over.
                if let Some(lease) = lease {
                    lease.held = lease.held.saturating_sub(1);
                }
                *by = holder.clone();
            }
            None => {
                of_group.insert(key.to_owned(), State::Held(holder.clone()));
            }
        }
        // The holder's lease covers this claim from now on: a lapsed or missing one starts
        // here; a live one is kept fresh by the holder's renewals.
        match leases.get_mut(&**holder) {
            Some(lease) => {
                lease.lapses = if lease.lapses >= now {
                    lease.lapses.max(until_ms)
                } else {
                    until_ms
                };
                lease.held += 1;
            }
            None => {
                leases.insert(
                    holder.clone(),
                    Lease {
                        lapses: until_ms,
                        held: 1,
                    },
                );
            }
        }
        Claim::Claimed
    }

    /// [`DedupeStore::release`], at once.
    pub(crate) fn release_now(&self, group: &str, key: &str, holder: &str) {
        let mut keys = self.keys();
        if let Some(of_group) = keys.keys.get_mut(group)
            && matches!(of_group.get(key), Some(State::Held(by)) if &**by == holder)
        {
            of_group.remove(key);
            keys.let_go(group, holder);
        }
    }

    fn keys(&self) -> std::sync::MutexGuard<'_, Keys> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// `map[group]`, created if missing, without allocating the group's name when it is there.
fn entry<'m, V>(map: &'m mut HashMap<String, V>, group: &str) -> &'m mut V
where
    V: Default,
{
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
        until_ms: i64,
    ) -> Result<Claim, TransportError> {
        Ok(self.claim_now(group, key, &Arc::from(holder), until_ms))
    }

    async fn renew(&self, group: &str, holder: &str, until_ms: i64) -> Result<u64, TransportError> {
        let mut keys = self.keys();
        match keys.leases.get_mut(group).and_then(|l| l.get_mut(holder)) {
            // Claims it still holds (not taken over) hold again, as in SQL.
            Some(lease) if lease.held > 0 => {
                lease.lapses = until_ms;
                Ok(lease.held)
            }
            _ => Ok(0),
        }
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
        let held = match of_group.get_mut(key) {
            Some(state) => match std::mem::replace(state, State::Marked(now_ms())) {
                State::Held(by) => Some(by),
                State::Marked(_) => None,
            },
            None => {
                of_group.insert(key.to_owned(), State::Marked(now_ms()));
                None
            }
        };
        if let Some(by) = held {
            keys.let_go(group, &by);
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
        until_ms: i64,
    ) -> Result<Claim, TransportError> {
        let wanted = crate::store::dedupe::Wanted {
            group,
            key,
            holder,
            until_ms,
        };
        let mut claims = crate::store::dedupe::claim_all(&self.pool, &[wanted]).await?;
        Ok(claims.pop().expect("one answer per claim"))
    }

    async fn renew(&self, group: &str, holder: &str, until_ms: i64) -> Result<u64, TransportError> {
        crate::store::dedupe::renew(&self.pool, group, holder, until_ms).await
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
