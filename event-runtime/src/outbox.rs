//! The transactional outbox: publish events atomically with your own database writes, on SQLite
//! (the embedded default) and on PostgreSQL.
//!
//! An application that writes to its database and must publish an event about that write
//! (insert an order, publish `OrderPlaced`) cannot do both atomically: the log (memory, SQLite,
//! NATS, Kafka) is another system, or another transaction. [`Outbox::stage`] writes the event
//! into the table `evt_outbox` **on the caller's own connection**, inside the caller's
//! transaction: it becomes visible only when the caller commits, and disappears if the caller
//! rolls back. A relay task, started by [`crate::App::start`] when the app's stores are SQL
//! ([`crate::Stores::sqlite`], [`crate::Stores::postgres`]), then appends the committed rows to
//! the log, in the order they were staged, and deletes them.
//!
//! On the embedded default, the outbox is in the app's own SQLite file, so your tables live
//! beside it and one transaction on [`crate::transport::sqlite::SqliteTransport::pool`] holds
//! both (a doc test of its own, `standalone_crate`: the app's registry must see one
//! `OrderPlaced`):
//!
//! ```standalone_crate
//! use event_runtime::{App, DomainEvent, Envelope};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(DomainEvent, Serialize, Deserialize, Debug)]
//! #[event(context = "orders")]
//! struct OrderPlaced { #[event(key)] order_id: String }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = std::env::temp_dir().join(format!("evt-outbox-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir)?;
//! let app = App::embedded(dir.join("shop.db")).await?;
//! let outbox = app.outbox().expect("SQLite stores have an outbox");
//! let running = app.start().await?; // also starts the relay
//! let pool = running.transport().pool();
//! sqlx::query("CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY)").execute(pool).await?;
//!
//! // The order row and its event commit together, or neither does.
//! let mut tx = pool.begin().await?;
//! sqlx::query("INSERT INTO orders (id) VALUES (?)").bind("o-1").execute(&mut *tx).await?;
//! outbox.stage(&mut tx, Envelope::event(OrderPlaced { order_id: "o-1".into() })).await?;
//! tx.commit().await?; // now the relay publishes it
//!
//! assert!(running.wait_idle(std::time::Duration::from_secs(10)).await);
//! assert_eq!(outbox.pending().await?, 0);
//! running.stop().await;
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(()) }
//! ```
//!
//! On PostgreSQL, the outbox is in the stores' database, beside your tables:
//!
//! ```no_run
//! use event_runtime::{App, DomainEvent, Envelope, Stores};
//! use event_runtime::transport::memory::MemoryTransport;
//! # use serde::{Deserialize, Serialize};
//! # #[derive(DomainEvent, Serialize, Deserialize, Debug)]
//! # #[event(context = "orders")]
//! # struct OrderPlaced { #[event(key)] order_id: String }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let pool = sqlx::PgPool::connect("postgres://localhost/shop").await?;
//! let app = App::new(MemoryTransport::new(), Stores::postgres(pool.clone()).await?);
//! let outbox = app.outbox().expect("PostgreSQL stores have an outbox");
//! let running = app.start().await?;
//!
//! let mut tx = pool.begin().await?;
//! sqlx::query("INSERT INTO orders (id) VALUES ($1)").bind("o-1").execute(&mut *tx).await?;
//! outbox.stage(&mut tx, Envelope::event(OrderPlaced { order_id: "o-1".into() })).await?;
//! tx.commit().await?;
//!
//! running.stop().await;
//! # Ok(()) }
//! ```
//!
//! # Guarantees
//!
//! - **Nothing before the commit, nothing after a rollback.** A staged row is part of the
//!   caller's transaction.
//! - **At least once after the commit.** The relay appends a batch, then deletes its rows. A
//!   crash (or a lost connection) between the append and the deletion leaves the rows, and a
//!   relay appends them again: the copies carry the same CloudEvents id and dedupe key (the
//!   record is encoded once, when staged), so consumers' dedupe drops them.
//! - **Order.** Rows are relayed in `id` order (assigned when staged) and one relay at a time
//!   drains a database (the other processes' relays skip), so the events of one key keep the
//!   order of the transactions that staged them — as long as those transactions are serialised
//!   (SQLite serialises every writer; on PostgreSQL, lock the entity's row before staging, or
//!   stage from one consumer lane, as the inbox does). Partitions are computed exactly as
//!   [`crate::Publisher::publish`] computes them.
//! - **One relay at a time.** On PostgreSQL, the relay drains in a transaction holding an
//!   advisory lock, which dies with its connection. SQLite has no such lock (locking the file
//!   would stop the log's own writers), so the relay holds a lease in `evt_leases` for 5 s at a
//!   time, taken only when rows wait and renewed a third of the way through: a relay that dies
//!   is replaced within 5 s, one that stops gives the lease up and is replaced within a second.
//!   A drain that outlasts the lease (an append or a wait for the file's write lock of more than
//!   about 3 s, a suspended process) may have its batch appended again by another process's
//!   relay; the copies keep their ids, as above, and the first copy of each keeps its order.
//!   Deleting rows already appended is retried (a busy file) rather than appending them again.
//! - **Failures.** When the log refuses an append, the rows stay, their `attempts` and
//!   `last_error` columns are updated, and the relay retries with a bounded exponential backoff
//!   (100 ms to 5 s). Rows are never dropped; a row that can never be appended holds back the
//!   rows behind it, and `last_error` says why.
//! - **Latency.** On PostgreSQL, [`Outbox::stage`] issues `pg_notify('evt_outbox')`, delivered
//!   on commit; the relay listens on that channel and polls every 200 ms, so a missed
//!   notification only delays delivery. SQLite cannot signal a commit to another connection: the
//!   relay looks every 25 ms.
//!
//! The inbox ([`crate::GroupOptions::inbox`]) stages the events a handler emits here, in the
//! inbox transaction, so the handler's effect, the dedupe claim and the emitted events commit
//! together: on PostgreSQL stores, and on SQLite stores under another engine (on the SQLite
//! engine, the inbox appends them to the log itself, in the same file).

use std::any::TypeId;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

use sqlx::{Pool, Transaction};
use tokio::sync::{Notify, watch};

use crate::cloudevents::binary::{self, Binding};
use crate::consumer::Activity;
use crate::envelope::{Envelope, RawEnvelope};
use crate::handler::Emitted;
use crate::message::{Command, DomainEvent};
use crate::publish::{PublishError, Publisher};
use crate::store::lease::Lease;
use crate::store::sql::{Exec, Value, args};
use crate::store::{Db, Dialect, scrub_urls};
use crate::transport::{
    Headers, OutgoingRecord, Transport, TransportError, TransportErrorKind, command_topic,
    event_topic, now_ms,
};

/// Rows read per drain.
const BATCH: i64 = 256;
/// How long a relay's lease lasts where it needs one (SQLite; renewed a third of the way), and
/// how long the drain's transaction may sit idle where it holds a lock instead (PostgreSQL).
const LEASE: Duration = Duration::from_secs(5);
/// The lease's name in `evt_leases`.
const LEASE_NAME: &str = "evt_outbox.relay";
/// Attempts at deleting rows already appended, where that is a transaction of its own (SQLite).
const SETTLE_TRIES: u32 = 8;
/// Backoff after a failed append: from the first to the last value, doubling.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// The transactional outbox in the stores' database (table `evt_outbox`): stage events in your
/// own transaction, and the app's relay publishes them once you commit. Obtain it from
/// [`crate::Stores::outbox`], [`crate::App::outbox`] or [`crate::Running::outbox`] (or
/// [`Outbox::new`] for a PostgreSQL pool); cheap to clone. See the [module docs](self) for the
/// guarantees.
#[derive(Clone)]
pub struct Outbox {
    db: Db,
}

/// A row of the outbox waiting for the relay ([`Outbox::staged`]).
#[derive(Clone, Debug)]
pub struct Staged {
    /// The row's id (the relay's order).
    pub id: i64,
    /// The record the relay will append; its `timestamp_ms` is when it was staged.
    pub record: crate::transport::Record,
    /// Appends tried and failed so far.
    pub attempts: u32,
    /// Why the last one failed.
    pub last_error: Option<String>,
}

impl std::fmt::Debug for Outbox {
    // Never the pool's options: they hold the connection settings (and the password).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("db", &self.db)
            .finish_non_exhaustive()
    }
}

mod sealed {
    pub trait Sealed {}
}

/// A connection [`Outbox::stage`] writes on: a transaction (`&mut tx`) or a connection of
/// SQLite or PostgreSQL. Sealed.
pub trait Staging: sealed::Sealed + Send {
    /// Its database.
    type Database: Dialect;
    /// The connection itself.
    #[doc(hidden)]
    fn connection(&mut self) -> &mut <Self::Database as sqlx::Database>::Connection;
}

impl<DB: Dialect> sealed::Sealed for Transaction<'_, DB> {}
impl<DB: Dialect> Staging for Transaction<'_, DB> {
    type Database = DB;
    fn connection(&mut self) -> &mut DB::Connection {
        self
    }
}

impl<DB: Dialect> sealed::Sealed for sqlx::pool::PoolConnection<DB> {}
impl<DB: Dialect> Staging for sqlx::pool::PoolConnection<DB> {
    type Database = DB;
    fn connection(&mut self) -> &mut DB::Connection {
        self
    }
}

#[cfg(feature = "sqlite")]
impl sealed::Sealed for sqlx::SqliteConnection {}
#[cfg(feature = "sqlite")]
impl Staging for sqlx::SqliteConnection {
    type Database = sqlx::Sqlite;
    fn connection(&mut self) -> &mut sqlx::SqliteConnection {
        self
    }
}

#[cfg(feature = "postgres")]
impl sealed::Sealed for sqlx::PgConnection {}
#[cfg(feature = "postgres")]
impl Staging for sqlx::PgConnection {
    type Database = sqlx::Postgres;
    fn connection(&mut self) -> &mut sqlx::PgConnection {
        self
    }
}

/// Runs `$body` with `$pool` the SQL pool of `$db` and `$DB` its database type, or evaluates
/// `$memory` for stores in memory (which have no outbox).
macro_rules! on_sql {
    ($db:expr, |$pool:ident: $DB:ident| $body:expr, memory => $memory:expr) => {
        match $db {
            #[cfg(feature = "sqlite")]
            Db::Sqlite(db) => {
                type $DB = sqlx::Sqlite;
                let $pool = &db.pool;
                $body
            }
            #[cfg(feature = "postgres")]
            Db::Postgres(crate::store::postgres::PgDb { pool, .. }) => {
                type $DB = sqlx::Postgres;
                let $pool = pool;
                $body
            }
            Db::Memory(_) => $memory,
        }
    };
}

impl Outbox {
    /// The outbox on a PostgreSQL `pool`; creates the stores' tables (`evt_outbox` among them)
    /// if missing. Rows staged through it are relayed by any running app whose stores are
    /// [`crate::Stores::postgres`] on the same database schema.
    ///
    /// # Errors
    ///
    /// When the schema cannot be created. The message never holds the connection URL.
    #[cfg(feature = "postgres")]
    pub async fn new(pool: sqlx::PgPool) -> Result<Self, TransportError> {
        crate::store::postgres::ensure_schema(&pool).await?;
        Ok(Outbox {
            db: Db::Postgres(crate::store::postgres::PgDb::new(pool)),
        })
    }

    /// The outbox of stores `db`, if they are SQL.
    pub(crate) fn of(db: &Db) -> Option<Self> {
        match db {
            Db::Memory(_) => None,
            _ => Some(Outbox { db: db.clone() }),
        }
    }

    /// Stages `envelope` for its context's topic (the topic [`crate::Publisher::publish`] uses),
    /// on `conn` — pass your transaction (`&mut tx`): it is published after you commit, never if
    /// you roll back. Returns the row's id (the relay's order).
    ///
    /// ```no_run
    /// # use event_runtime::{DomainEvent, Envelope, outbox::Outbox};
    /// # #[derive(DomainEvent, serde::Serialize, serde::Deserialize, Debug)]
    /// # #[event(context = "orders")]
    /// # struct OrderPlaced { #[event(key)] order_id: String }
    /// # async fn run(pool: sqlx::SqlitePool, outbox: Outbox) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut tx = pool.begin().await?;
    /// outbox.stage(&mut tx, Envelope::event(OrderPlaced { order_id: "o-1".into() })).await?;
    /// tx.commit().await?;
    /// # Ok(()) }
    /// ```
    ///
    /// Cancellation: dropping the future may leave the row written in `conn`'s transaction, or
    /// not; roll back (or drop) the transaction to be sure of neither.
    ///
    /// # Errors
    ///
    /// [`PublishError::Encode`] when the payload cannot be encoded, [`PublishError::Transport`]
    /// when the row cannot be written (the caller's transaction is then aborted on PostgreSQL),
    /// or when `conn` is of another database than the outbox (nothing is written).
    pub async fn stage<E: DomainEvent, C: Staging>(
        &self,
        conn: &mut C,
        envelope: Envelope<E>,
    ) -> Result<i64, PublishError> {
        let topic = event_topic(envelope.data.descriptor().context);
        self.stage_raw(conn, &topic, &envelope.to_raw()?).await
    }

    /// Stages the command `envelope` for its target context's command topic (the topic
    /// [`crate::Publisher::send`] uses), on `conn`, like [`Outbox::stage`].
    ///
    /// # Errors
    ///
    /// As [`Outbox::stage`].
    pub async fn stage_command<C: Command, S: Staging>(
        &self,
        conn: &mut S,
        envelope: Envelope<C>,
    ) -> Result<i64, PublishError> {
        let topic = command_topic(envelope.data.descriptor().context);
        self.stage_raw(conn, &topic, &envelope.to_raw()?).await
    }

    /// Stages an already-encoded envelope for `topic`, on `conn`, like [`Outbox::stage`].
    ///
    /// # Errors
    ///
    /// As [`Outbox::stage`].
    pub async fn stage_raw<C: Staging>(
        &self,
        conn: &mut C,
        topic: &str,
        envelope: &RawEnvelope,
    ) -> Result<i64, PublishError> {
        let ours = on_sql!(&self.db, |_pool: DB| (TypeId::of::<DB>(), <DB as sqlx::Database>::NAME), memory => unreachable!("an outbox is on SQL stores"));
        if ours.0 != TypeId::of::<C::Database>() {
            return Err(PublishError::Transport(TransportError::new(
                TransportErrorKind::Other,
                format!("stage an event for {topic} in the outbox"),
                format!(
                    "the outbox is in {}, but the connection given is {}'s: stage on a \
                     transaction of the stores' database",
                    ours.1,
                    <C::Database as sqlx::Database>::NAME
                ),
            )));
        }
        stage_on::<C::Database>(conn.connection(), topic, envelope).await
    }

    /// Rows committed and not yet relayed.
    ///
    /// # Errors
    ///
    /// The database error (never with a connection URL).
    pub async fn pending(&self) -> Result<u64, TransportError> {
        Ok(self.backlog().await?.0)
    }

    /// The rows waiting for the relay, and when the oldest of them was staged (ms since the
    /// epoch; `None` when there is none).
    ///
    /// # Errors
    ///
    /// The database's error.
    pub async fn backlog(&self) -> Result<(u64, Option<i64>), TransportError> {
        on_sql!(&self.db, |pool: DB| {
            let error = |err| <DB as crate::store::sql::Sql>::error("count the outbox's rows".into(), err);
            let mut conn = pool.acquire().await.map_err(error)?;
            let row = DB::row(
                &mut conn,
                "SELECT COUNT(*) AS n, MIN(created_ms) AS oldest FROM evt_outbox",
                &[],
            )
            .await
            .map_err(error)?;
            let (count, oldest) = match row {
                Some(row) => (
                    DB::int(&row, "n").map_err(error)?,
                    DB::opt_int(&row, "oldest").map_err(error)?,
                ),
                None => (0, None),
            };
            Ok((u64::try_from(count).unwrap_or_default(), oldest))
        }, memory => Ok((0, None)))
    }

    /// The rows waiting for the relay after row `after` (0 for the first), oldest first, at
    /// most `limit`, each as the record the relay will append (partition and offset 0: the
    /// engine assigns them) with its attempts so far and the last error: what `evt trace`
    /// shows as not relayed yet. A row whose stored headers are corrupt is left out (the relay
    /// reports it, and stops at it).
    ///
    /// # Errors
    ///
    /// The database's error. Cancelling it only stops the read.
    pub async fn staged(&self, after: i64, limit: usize) -> Result<Vec<Staged>, TransportError> {
        on_sql!(&self.db, |pool: DB| {
            let error = |err| <DB as crate::store::sql::Sql>::error("read the outbox's rows".into(), err);
            let mut conn = pool.acquire().await.map_err(error)?;
            let rows = DB::rows(
                &mut conn,
                <DB as crate::store::sql::Sql>::sql(
                    "SELECT id, topic, record_key, headers, payload, created_ms, attempts, \
                     last_error FROM evt_outbox WHERE id > ? ORDER BY id LIMIT ?",
                ),
                args![after, i64::try_from(limit).unwrap_or(i64::MAX)],
            )
            .await
            .map_err(error)?;
            let mut staged = Vec::with_capacity(rows.len());
            for row in &rows {
                let id = DB::int(row, "id").map_err(error)?;
                let topic = DB::text(row, "topic").map_err(error)?;
                let Ok(headers) = Headers::from_blob(DB::blob(row, "headers").map_err(error)?)
                else {
                    continue;
                };
                let created_ms = DB::int(row, "created_ms").map_err(error)?;
                staged.push(Staged {
                    id,
                    record: crate::transport::Record {
                        topic: topic.into(),
                        partition: 0,
                        offset: 0,
                        timestamp_ms: created_ms,
                        key: DB::opt_blob(row, "record_key").map_err(error)?.map(Into::into),
                        headers,
                        payload: DB::blob(row, "payload").map_err(error)?.into(),
                    },
                    attempts: u32::try_from(DB::int(row, "attempts").map_err(error)?)
                        .unwrap_or(u32::MAX),
                    last_error: DB::opt_text(row, "last_error").map_err(error)?,
                });
            }
            Ok(staged)
        }, memory => Ok(Vec::new()))
    }

    /// Whether any row waits for the relay (cheaper than [`Outbox::pending`]).
    pub(crate) async fn has_pending(&self) -> Result<bool, TransportError> {
        on_sql!(&self.db, |pool: DB| any_row::<DB>(pool).await, memory => Ok(false))
    }

    /// The relay of this outbox into `publisher`'s log, until `shutdown` turns true.
    pub(crate) fn relay<T: Transport>(
        &self,
        publisher: Publisher<T>,
        activity: Arc<Activity>,
        shutdown: watch::Receiver<bool>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        match &self.db {
            #[cfg(feature = "sqlite")]
            Db::Sqlite(db) => Box::pin(
                Relay::<T, sqlx::Sqlite> {
                    pool: db.pool.clone(),
                    writer: Some(db.writer.clone()),
                    publisher,
                    activity,
                }
                .run(shutdown),
            ),
            #[cfg(feature = "postgres")]
            Db::Postgres(crate::store::postgres::PgDb { pool, .. }) => Box::pin(
                Relay::<T, sqlx::Postgres> {
                    pool: pool.clone(),
                    writer: None,
                    publisher,
                    activity,
                }
                .run(shutdown),
            ),
            Db::Memory(_) => Box::pin(async {}),
        }
    }
}

/// Whether `evt_outbox` of `pool` holds any row.
async fn any_row<DB: Exec>(pool: &Pool<DB>) -> Result<bool, TransportError> {
    let error = |err| DB::error("read the outbox".into(), err);
    let mut conn = pool.acquire().await.map_err(error)?;
    let row = DB::row(&mut conn, "SELECT id FROM evt_outbox LIMIT 1", &[])
        .await
        .map_err(error)?;
    Ok(row.is_some())
}

/// Writes one row on `conn`: the record encoded once, in the CloudEvents binary mode (Kafka
/// binding) the publisher uses, so every relay attempt appends the same bytes and the same
/// event id.
async fn stage_on<DB: Exec>(
    conn: &mut DB::Connection,
    topic: &str,
    envelope: &RawEnvelope,
) -> Result<i64, PublishError> {
    let message = binary::encode(envelope, Binding::Kafka)?;
    let operation = || format!("stage an event for {topic} in the outbox");
    let error = |err| DB::error(operation(), err);
    let event_id = envelope.id.to_string();
    let row = DB::row(
        conn,
        DB::sql(DB::STAGE_OUTBOX),
        args![
            topic,
            &event_id,
            &message.key,
            &message.headers,
            &message.payload,
            now_ms()
        ],
    )
    .await
    .map_err(|err| {
        if DB::undefined_table(&err) {
            TransportError::new(
                TransportErrorKind::Other,
                operation(),
                format!(
                    "the connection's {} database has no evt_outbox table: stage on a \
                     transaction of the stores' database (the app's SQLite file, or the \
                     PostgreSQL schema of its stores)",
                    <DB as sqlx::Database>::NAME
                ),
            )
        } else {
            error(err)
        }
    })?;
    let row = row.ok_or_else(|| {
        TransportError::new(
            TransportErrorKind::Other,
            format!("stage an event for {topic} in the outbox"),
            "the insert returned no id",
        )
    })?;
    Ok(DB::int(&row, "id").map_err(error)?)
}

/// Stages the events a handler emitted (the inbox), in order, on `conn`.
pub(crate) async fn stage_emitted<DB: Exec>(
    conn: &mut DB::Connection,
    emitted: Vec<Emitted>,
) -> Result<(), TransportError> {
    for item in emitted {
        stage_on::<DB>(conn, &item.topic, &item.envelope)
            .await
            .map_err(|err| match err {
                PublishError::Transport(err) => err,
                other => TransportError::new(
                    TransportErrorKind::Other,
                    format!("stage an event for {} in the outbox", item.topic),
                    other.to_string(),
                ),
            })?;
    }
    Ok(())
}

/// What one drain did.
enum Drain {
    /// Rows were appended and deleted; there may be more.
    Relayed,
    /// The outbox was empty.
    Empty,
    /// Another relay drains.
    Busy,
}

/// Marks the relay's work in [`Activity`], so `Running::wait_idle` never reports idle between
/// an append and the deletion of its rows.
struct Busy<'a>(&'a Activity);

impl<'a> Busy<'a> {
    fn begin(activity: &'a Activity) -> Self {
        activity.begin();
        Busy(activity)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// The relay of one app: drains `evt_outbox` of one database into the app's transport.
struct Relay<T: Transport, DB: Exec> {
    pool: Pool<DB>,
    /// This process's writer lock on an SQLite file, taken for the deletions so that they queue
    /// behind the inbox transactions instead of failing on the busy timeout.
    writer: Option<Arc<tokio::sync::Mutex<()>>>,
    publisher: Publisher<T>,
    activity: Arc<Activity>,
}

/// `?, ?, ...`: `n` placeholders.
fn placeholders(n: usize) -> String {
    let mut out = String::with_capacity(n * 3);
    for i in 0..n {
        if i > 0 {
            out.push_str(", ");
        }
        out.push('?');
    }
    out
}

impl<T: Transport, DB: Exec> Relay<T, DB> {
    /// Runs until `shutdown` turns true: drains, then waits for a wake-up or the poll interval;
    /// after a failure, backs off. Gives its lease up when it ends.
    async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let wake = Arc::new(Notify::new());
        // Aborted when the relay ends, also when the app is dropped without `stop`.
        let watcher = AbortOnDrop(tokio::spawn(DB::watch_outbox(
            self.pool.clone(),
            wake.clone(),
            shutdown.clone(),
        )));
        let mut lease = Lease::new(LEASE_NAME, LEASE);
        let mut backoff = BACKOFF_MIN;
        while !*shutdown.borrow() {
            let pause = match self.drain(&mut lease).await {
                Ok(Drain::Relayed) => {
                    backoff = BACKOFF_MIN;
                    continue;
                }
                Ok(Drain::Empty | Drain::Busy) => {
                    backoff = BACKOFF_MIN;
                    tokio::select! {
                        () = wake.notified() => {}
                        () = tokio::time::sleep(DB::OUTBOX_POLL) => {}
                        _ = shutdown.changed() => {}
                    }
                    continue;
                }
                Err(_) => backoff,
            };
            backoff = (backoff * 2).min(BACKOFF_MAX);
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                _ = shutdown.changed() => {}
            }
        }
        drop(watcher);
        // Best effort: a lease not given up expires.
        let _ = lease.release(&self.pool).await;
    }

    /// One drain: take the lock (or the lease) or skip, read a batch in id order, append it,
    /// delete what was appended (or count the failed attempt), commit.
    async fn drain(&self, lease: &mut Lease) -> Result<Drain, TransportError> {
        let pool = &self.pool;
        let error = |what: &str| {
            let what = what.to_owned();
            move |err| DB::error(what, err)
        };
        // Where the database has a lock that dies with its connection, the whole drain is one
        // transaction holding it; elsewhere, a lease. The transaction is leased too (the server
        // ends it once it sits idle for `LEASE`): a relay frozen mid-drain, or stalled in an
        // append, would otherwise keep the lock, and every other relay out, until its connection
        // died, which for a frozen process or a vanished host can take hours.
        let mut held: Option<Transaction<'static, DB>> = None;
        match DB::RELAY_LOCK {
            Some(lock) => {
                let mut tx = DB::begin_leased(pool, LEASE)
                    .await
                    .map_err(error("relay the outbox"))?;
                let row = DB::row(&mut tx, lock, &[])
                    .await
                    .map_err(error("lock the outbox"))?;
                let locked = match &row {
                    Some(row) => DB::flag(row, "locked").map_err(error("lock the outbox"))?,
                    None => false,
                };
                if !locked {
                    tx.rollback().await.map_err(error("relay the outbox"))?;
                    return Ok(Drain::Busy);
                }
                held = Some(tx);
            }
            None => {
                // Nothing to relay: no lease taken, nothing written (an idle app does not
                // write to its file).
                if !any_row::<DB>(pool).await? {
                    return Ok(Drain::Empty);
                }
                // Queued behind this process's inbox transactions rather than failing on the
                // busy timeout while one holds the file.
                let _writer = match &self.writer {
                    Some(writer) => Some(writer.lock().await),
                    None => None,
                };
                if !lease.hold(pool).await? {
                    return Ok(Drain::Busy);
                }
            }
        }
        let select = DB::sql(
            "SELECT id, topic, event_id, record_key, headers, payload FROM evt_outbox \
             ORDER BY id LIMIT ?",
        );
        let rows = match held.as_mut() {
            Some(tx) => DB::rows(tx, select, args![BATCH]).await,
            None => {
                let mut conn = pool.acquire().await.map_err(error("read the outbox"))?;
                DB::rows(&mut conn, select, args![BATCH]).await
            }
        }
        .map_err(error("read the outbox"))?;
        if rows.is_empty() {
            if let Some(tx) = held {
                tx.commit().await.map_err(error("relay the outbox"))?;
            }
            return Ok(Drain::Empty);
        }
        let _busy = Busy::begin(&self.activity);

        // Consecutive rows of one topic form one append (atomic per call on the embedded
        // engines); runs are appended in id order and the first failure stops the batch, so a
        // row is never appended before the rows staged ahead of it.
        let mut runs: Vec<(String, Vec<i64>, Vec<OutgoingRecord>)> = Vec::new();
        let mut failure: Option<(Vec<i64>, TransportError)> = None;
        for row in &rows {
            let id = DB::int(row, "id").map_err(error("read the outbox"))?;
            let topic = DB::text(row, "topic").map_err(error("read the outbox"))?;
            let record = match self.record_of(row, id, &topic).await {
                Ok(record) => record,
                Err(err) => {
                    failure = Some((vec![id], err));
                    break;
                }
            };
            match runs.last_mut() {
                Some((last, ids, records)) if *last == topic => {
                    ids.push(id);
                    records.push(record);
                }
                _ => runs.push((topic, vec![id], vec![record])),
            }
        }
        let mut appended: Vec<i64> = Vec::new();
        for (topic, ids, records) in runs {
            let transport = self.publisher.transport_ref();
            // Holding the lock's transaction: still holding it? The server ends it when it sits
            // idle past `LEASE` (this process froze, or reading the batch waited that long on a
            // topic's creation), and another relay may be draining these rows now: append
            // nothing (more).
            if let (Some(tx), Some(keep_alive)) = (held.as_mut(), DB::KEEP_ALIVE)
                && let Err(err) = DB::exec(tx, keep_alive, &[]).await
            {
                failure = Some((
                    ids,
                    DB::error("relay the outbox (lock lost)".to_owned(), err),
                ));
                break;
            }
            let span = crate::telemetry::relay_span(transport.system(), &topic, &records);
            let append = transport.append(&topic, records).instrument(span.clone());
            // An append may take as long as the engine lets it (a leader election, a topic being
            // created): the lock's transaction is kept alive meanwhile, so only a frozen process
            // loses it.
            let result = match held.take() {
                Some(tx) => {
                    let shared = tokio::sync::Mutex::new(tx);
                    let result = crate::store::inbox::kept_alive::<DB, _>(
                        &shared,
                        LEASE,
                        "the outbox relay's transaction",
                        append,
                    )
                    .await;
                    held = Some(shared.into_inner());
                    result
                }
                None => append.await,
            };
            match result {
                Ok(_) => appended.extend(ids),
                Err(err) => {
                    crate::telemetry::append_failed(&span, &err);
                    failure = Some((ids, err));
                    break;
                }
            }
        }

        if !appended.is_empty() {
            crate::crash::point("outbox.after_append");
        }
        let failed = failure.as_ref().map(|(ids, err)| (ids.as_slice(), err));
        match held {
            // The lock's transaction: if it fails now, the lock goes with it, and the rows are
            // appended again by whoever drains next (same event ids, which consumers' dedupe
            // drops).
            Some(mut tx) => {
                settle::<DB>(&mut tx, &appended, failed).await?;
                tx.commit()
                    .await
                    .map_err(error("delete relayed outbox rows"))?;
            }
            // A short write transaction of its own, retried: the rows are in the log already, so
            // giving up here would append them again.
            None => {
                let mut delay = Duration::from_millis(50);
                let mut tries = 0;
                loop {
                    tries += 1;
                    match self.settle_alone(&appended, failed).await {
                        Ok(()) => break,
                        Err(err) if tries >= SETTLE_TRIES => return Err(err),
                        Err(_) => {
                            tokio::time::sleep(delay).await;
                            delay = (delay * 2).min(BACKOFF_MAX);
                        }
                    }
                }
            }
        }
        match failure {
            Some((_, err)) => Err(err),
            None => Ok(Drain::Relayed),
        }
    }

    /// [`settle`] in a write transaction of its own, behind this process's writer lock.
    async fn settle_alone(
        &self,
        appended: &[i64],
        failed: Option<(&[i64], &TransportError)>,
    ) -> Result<(), TransportError> {
        let _writer = match &self.writer {
            Some(writer) => Some(writer.lock().await),
            None => None,
        };
        let error = |err| DB::error("delete relayed outbox rows".into(), err);
        let mut tx = DB::begin_write(&self.pool).await.map_err(error)?;
        settle::<DB>(&mut tx, appended, failed).await?;
        tx.commit().await.map_err(error)
    }

    /// The record of one row, partitioned as the publisher partitions.
    async fn record_of(
        &self,
        row: &DB::Row,
        id: i64,
        topic: &str,
    ) -> Result<OutgoingRecord, TransportError> {
        let corrupt = |err: String| {
            TransportError::new(
                TransportErrorKind::Corrupt,
                format!("read outbox row {id} for {topic}"),
                err,
            )
        };
        let event_id = DB::text(row, "event_id").map_err(|err| corrupt(err.to_string()))?;
        let key = DB::opt_blob(row, "record_key").map_err(|err| corrupt(err.to_string()))?;
        let blob = DB::blob(row, "headers").map_err(|err| corrupt(err.to_string()))?;
        let headers = Headers::from_blob(blob).map_err(corrupt)?;
        let payload = DB::blob(row, "payload").map_err(|err| corrupt(err.to_string()))?;
        self.publisher
            .relay_record(
                topic,
                key.map(Into::into),
                headers,
                payload.into(),
                &event_id,
            )
            .await
    }
}

/// Deletes the rows `appended` and counts the failed attempt of `failed` on them, in `tx`.
async fn settle<DB: Exec>(
    tx: &mut Transaction<'static, DB>,
    appended: &[i64],
    failed: Option<(&[i64], &TransportError)>,
) -> Result<(), TransportError> {
    if !appended.is_empty() {
        let sql = DB::sql_owned(format!(
            "DELETE FROM evt_outbox WHERE id IN ({})",
            placeholders(appended.len())
        ));
        let ids: Vec<Value<'_>> = appended.iter().map(|id| Value::from(*id)).collect();
        DB::exec(tx, &sql, &ids)
            .await
            .map_err(|err| DB::error("delete relayed outbox rows".into(), err))?;
    }
    if let Some((ids, err)) = failed {
        let (message, _) = scrub_urls(&err.to_string());
        let sql = DB::sql_owned(format!(
            "UPDATE evt_outbox SET attempts = attempts + 1, last_error = ? WHERE id IN ({})",
            placeholders(ids.len())
        ));
        let mut values: Vec<Value<'_>> = vec![Value::from(message.as_str())];
        values.extend(ids.iter().map(|id| Value::from(*id)));
        DB::exec(tx, &sql, &values)
            .await
            .map_err(|err| DB::error("record a failed outbox append".into(), err))?;
    }
    Ok(())
}

/// Aborts the task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
