//! The inbox, written once: one transaction of the stores' database claims the dedupe key, holds
//! the handler's writes (reachable through [`crate::Context::transaction`]) and takes the events
//! the handler emitted, then commits — or rolls all three back. Where the emitted events go is
//! the one thing a store decides ([`EmitIn`]): on the SQLite engine (the inbox in the log's own
//! file) into the log itself; otherwise into the stores' transactional outbox
//! ([`crate::outbox`]), whose relay appends them to the log after the commit.

use std::any::Any;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

#[cfg(any(feature = "sqlite", feature = "postgres"))]
use sqlx::{Pool, Transaction};

#[cfg(any(feature = "sqlite", feature = "postgres"))]
use super::sql::Exec;
use crate::handler::Emitted;
use crate::transport::TransportError;

#[cfg(any(feature = "sqlite", feature = "postgres"))]
/// Where the events a handler emitted go, inside the inbox transaction.
pub(crate) trait EmitIn<DB: Exec>: Sync {
    /// The transaction that wrote them committed.
    fn committed(&self) {}

    /// Writes `emitted`, in order, on `conn`.
    fn emit(
        &self,
        conn: &mut DB::Connection,
        emitted: Vec<Emitted>,
    ) -> impl Future<Output = Result<(), TransportError>> + Send;
}

/// One inbox attempt. `call` runs the handler with the transaction (type-erased, so that a
/// [`crate::Context`] can carry it whatever the database) and returns what it emitted; `kept` is
/// the error for a handler that kept its context, and so the transaction, after returning.
/// `Ok(false)`: the key was claimed before (a duplicate), and nothing ran.
///
/// The transaction holds the dedupe key's claim like a lease ([`Exec::begin_leased`], of
/// `lease` but at least [`MIN_LEASE`]): on PostgreSQL the server ends it once it sits idle that
/// long, so an instance paused or cut off in the handler cannot hold the key (which another
/// instance's attempt waits on) for longer; while the handler runs, the transaction is kept
/// alive every sixth of the lease whenever the handler is not holding it.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
#[allow(clippy::too_many_arguments)]
pub(crate) async fn attempt<DB, F, Fut, E>(
    pool: &Pool<DB>,
    writer: Option<&tokio::sync::Mutex<()>>,
    group: &str,
    dedupe_key: &str,
    bypass_dedupe: bool,
    lease: Duration,
    emit: &impl EmitIn<DB>,
    call: F,
    kept: impl FnOnce() -> E,
) -> Result<bool, E>
where
    DB: Exec,
    F: FnOnce(Arc<dyn Any + Send + Sync>) -> Fut,
    Fut: Future<Output = Result<Vec<Emitted>, E>>,
    E: From<TransportError>,
{
    let error = |err| E::from(DB::error(format!("inbox of {group}"), err));
    let lease = lease.max(MIN_LEASE);
    let (_writer, mut tx) = begin(pool, writer, Some(lease)).await.map_err(error)?;
    let claimed = super::dedupe::claim::<DB>(&mut tx, group, dedupe_key).await?;
    if !claimed && !bypass_dedupe {
        tx.rollback().await.map_err(error)?;
        return Ok(false);
    }
    let shared = Arc::new(tokio::sync::Mutex::new(tx));
    let emitted = kept_alive::<DB, _>(
        &shared,
        lease,
        "an inbox transaction (lease: claim_ttl)",
        call(shared.clone()),
    )
    .await?;
    let mut tx = Arc::try_unwrap(shared).map_err(|_| kept())?.into_inner();
    // Dropping `tx` on an error below rolls the effect back, and the emitted events with it.
    emit.emit(&mut tx, emitted).await?;
    crate::crash::point("inbox.before_commit");
    tx.commit().await.map_err(error)?;
    emit.committed();
    crate::crash::point("inbox.after_commit");
    Ok(true)
}

/// The shortest lease of an inbox transaction: several round trips to the database, whatever
/// `claim_ttl` says.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
const MIN_LEASE: Duration = Duration::from_secs(1);

/// Runs `work` (the handler, sharing `tx`), resetting the transaction's idle time every sixth of
/// `lease` whenever `tx` is free (the handler is not holding it), so that a live attempt's
/// [`Exec::begin_leased`] transaction does not end while a slow handler awaits other things. A
/// keep-alive waits at most that long (the handler is not polled meanwhile). A failed one (the
/// server ended the transaction: the instance was paused, or the handler held it idle too long;
/// or a statement of the handler failed in it) is logged and ends the keep-alives.
/// `what` names the transaction in that log event.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) async fn kept_alive<DB: Exec, T>(
    tx: &tokio::sync::Mutex<Transaction<'static, DB>>,
    lease: Duration,
    what: &str,
    work: impl Future<Output = T>,
) -> T {
    let Some(keep_alive) = DB::KEEP_ALIVE else {
        return work.await;
    };
    let every = lease / 6;
    let mut work = std::pin::pin!(work);
    loop {
        tokio::select! {
            done = &mut work => return done,
            () = tokio::time::sleep(every) => {
                // The guard is dropped before the handler is polled again: it locks the
                // transaction itself.
                let failed = match tx.try_lock() {
                    Ok(mut tx) => {
                        match tokio::time::timeout(every, DB::exec(&mut tx, keep_alive, &[])).await
                        {
                            Ok(Err(err)) => Some(err),
                            _ => None,
                        }
                    }
                    Err(_) => None,
                };
                if let Some(err) = failed {
                    tracing::warn!(
                        error = %err,
                        "{what}: its keep-alive failed: the server ended it (it sat idle for \
                         its lease), or a statement failed in it"
                    );
                    return work.await;
                }
            }
        }
    }
}

/// Begins a writing transaction on `pool`, first taking `writer` (SQLite's): one writing
/// transaction at a time per SQLite file in this process (SQLite has one writer anyway), so the
/// others wait here instead of failing on the busy timeout while a slow handler holds the lock.
/// Hold the guard as long as the transaction. With a `lease`, a [`Exec::begin_leased`] one.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
async fn begin<'w, DB: Exec>(
    pool: &Pool<DB>,
    writer: Option<&'w tokio::sync::Mutex<()>>,
    lease: Option<Duration>,
) -> Result<
    (
        Option<tokio::sync::MutexGuard<'w, ()>>,
        Transaction<'static, DB>,
    ),
    sqlx::Error,
> {
    let guard = match writer {
        Some(writer) => Some(writer.lock().await),
        None => None,
    };
    let tx = match lease {
        Some(lease) => DB::begin_leased(pool, lease).await?,
        None => DB::begin_write(pool).await?,
    };
    Ok((guard, tx))
}

/// Work done in one writing transaction of the stores' database, whatever it is (the saga timer
/// poller's): it writes on `conn` and returns the events to emit in the same transaction.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) trait Work: Sync {
    /// Whether there is work: read outside the writing transaction, so that looking for none
    /// never takes the writer's lock.
    fn wanted<DB: Exec>(
        &self,
        pool: &Pool<DB>,
    ) -> impl Future<Output = Result<bool, TransportError>> + Send;
    /// The work, on the transaction's connection; the events to emit with it.
    fn run<DB: Exec>(
        &self,
        conn: &mut DB::Connection,
    ) -> impl Future<Output = Result<Vec<Emitted>, TransportError>> + Send;
}

/// How long a [`transact`] transaction may sit idle before the server ends it (PostgreSQL): its
/// statements run back to back, so only a frozen process comes near it.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
const WORK_LEASE: Duration = Duration::from_secs(10);

/// Runs `work`, when it is wanted, in one writing transaction on `pool`, emits what it returns
/// through `emit` and commits; how many events it emitted.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
async fn transact<DB: Exec>(
    pool: &Pool<DB>,
    writer: Option<&tokio::sync::Mutex<()>>,
    operation: &str,
    emit: &impl EmitIn<DB>,
    work: &impl Work,
) -> Result<usize, TransportError> {
    if !work.wanted::<DB>(pool).await? {
        return Ok(0);
    }
    let error = |err| DB::error(operation.to_owned(), err);
    // Leased: a process frozen inside it (the timer poller holds its timers' rows `FOR UPDATE`)
    // would otherwise keep those rows from every other instance's poller, and block each
    // transition that cancels or reschedules one of them, until its connection died.
    let (_writer, mut tx) = begin(pool, writer, Some(WORK_LEASE)).await.map_err(error)?;
    let emitted = work.run::<DB>(&mut tx).await?;
    let count = emitted.len();
    emit.emit(&mut tx, emitted).await?;
    tx.commit().await.map_err(error)?;
    emit.committed();
    Ok(count)
}

use super::Db;
use crate::publish::Publisher;
use crate::transport::{Transport, TransportErrorKind};

/// Where a SQLite inbox's events go: into the log in the same file (the SQLite engine), or into
/// the file's outbox (another engine).
#[cfg(feature = "sqlite")]
enum SqliteEmit<'a, T> {
    /// The publisher; the log's waiters, and the partitions written, to wake once the records
    /// are committed (a consumer in this process would otherwise find them only at its next
    /// read of the file).
    LocalLog(
        &'a Publisher<T>,
        &'a crate::transport::sqlite::Wakers,
        std::sync::Mutex<Vec<(String, u32)>>,
    ),
    Outbox,
}

#[cfg(feature = "sqlite")]
impl<T: Transport> EmitIn<sqlx::Sqlite> for SqliteEmit<'_, T> {
    fn committed(&self) {
        if let SqliteEmit::LocalLog(_, wakers, written) = self {
            let written = std::mem::take(
                &mut *written
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            );
            for (topic, partition) in written {
                wakers.wake(&topic, partition);
            }
        }
    }

    async fn emit(
        &self,
        conn: &mut sqlx::SqliteConnection,
        emitted: Vec<Emitted>,
    ) -> Result<(), TransportError> {
        match self {
            SqliteEmit::LocalLog(publisher, _, written) => {
                let partitions = publisher.publish_emitted_in(conn, emitted).await?;
                written
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .extend(partitions);
                Ok(())
            }
            SqliteEmit::Outbox => EmitIn::<sqlx::Sqlite>::emit(&ToOutbox, conn, emitted).await,
        }
    }
}

/// Emitted events staged in the database's transactional outbox.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
struct ToOutbox;

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl<DB: Exec> EmitIn<DB> for ToOutbox {
    async fn emit(
        &self,
        conn: &mut DB::Connection,
        emitted: Vec<Emitted>,
    ) -> Result<(), TransportError> {
        crate::outbox::stage_emitted::<DB>(conn, emitted).await
    }
}

/// Where a group in inbox mode runs its inbox, decided once per app ([`Db::inbox_for`]): the
/// database, and whether the emitted events go straight into the log (the SQLite engine, whose
/// file the inbox then is) rather than into that database's outbox.
#[derive(Clone)]
pub(crate) struct Inbox {
    pub(crate) db: Db,
    /// Only the SQLite engine has a local log (read only with the `sqlite` feature).
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    pub(crate) local_log: bool,
}

/// `$body` with `$pool`, `$writer` and `$emit` bound to `$inbox`'s database, its SQLite writer
/// lock and where its emitted events go, whichever the database; `$memory` for stores in
/// memory, which have no transactions.
macro_rules! on_inbox {
    ($inbox:expr, $publisher:expr, |$pool:ident, $writer:ident, $emit:ident| $body:expr, memory => $memory:expr) => {
        match &$inbox.db {
            Db::Memory(_) => $memory,
            #[cfg(feature = "sqlite")]
            Db::Sqlite(db) => {
                let $emit = if $inbox.local_log {
                    SqliteEmit::LocalLog($publisher, &db.wakers, std::sync::Mutex::default())
                } else {
                    SqliteEmit::Outbox
                };
                let ($pool, $writer) = (&db.pool, Some(&*db.writer));
                $body
            }
            #[cfg(feature = "postgres")]
            Db::Postgres(crate::store::postgres::PgDb { pool, .. }) => {
                let ($pool, $writer, $emit) = (pool, None, ToOutbox);
                $body
            }
        }
    };
}

impl Inbox {
    /// Runs `work` in one transaction of the inbox's database, its events emitted where this
    /// inbox emits them (see [`transact`]).
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub(crate) async fn transact<T: Transport>(
        &self,
        publisher: &Publisher<T>,
        operation: &str,
        work: &impl Work,
    ) -> Result<usize, TransportError> {
        let _ = publisher;
        on_inbox!(
            self,
            publisher,
            |pool, writer, emit| transact(pool, writer, operation, &emit, work).await,
            memory => Err(TransportError::new(
                TransportErrorKind::Other,
                operation.to_owned(),
                "stores in memory have no transactions",
            ))
        )
    }

    /// One inbox attempt (see [`attempt`]).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn attempt<T, F, Fut, E>(
        &self,
        publisher: &Publisher<T>,
        group: &str,
        dedupe_key: &str,
        bypass_dedupe: bool,
        lease: Duration,
        call: F,
        kept: impl FnOnce() -> E,
    ) -> Result<bool, E>
    where
        T: Transport,
        F: FnOnce(Arc<dyn Any + Send + Sync>) -> Fut,
        Fut: Future<Output = Result<Vec<Emitted>, E>>,
        E: From<TransportError>,
    {
        let _ = (publisher, dedupe_key, bypass_dedupe, lease, &call, &kept);
        on_inbox!(
            self,
            publisher,
            |pool, writer, emit| attempt(
                pool,
                writer,
                group,
                dedupe_key,
                bypass_dedupe,
                lease,
                &emit,
                call,
                kept
            )
            .await,
            memory => Err(E::from(TransportError::new(
                TransportErrorKind::Other,
                format!("inbox of {group}"),
                "stores in memory have no inbox",
            )))
        )
    }
}
