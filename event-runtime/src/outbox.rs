//! The transactional outbox on PostgreSQL: publish events atomically with your own writes.
//!
//! An application that writes to its PostgreSQL database and must publish an event about that
//! write (insert an order, publish `OrderPlaced`) cannot do both atomically: the log (memory,
//! SQLite, NATS, Kafka) is another system. [`Outbox::stage`] writes the event into the table
//! `evt_outbox` **on the caller's own connection**, inside the caller's transaction: it becomes
//! visible only when the caller commits, and disappears if the caller rolls back. A relay task,
//! started by [`crate::App::start`] when the app's stores are PostgreSQL
//! ([`crate::Stores::postgres`]), then appends the committed rows to the log, in the order they
//! were staged, and deletes them.
//!
//! ```no_run
//! use event_runtime::{App, DomainEvent, Envelope, Stores};
//! use event_runtime::transport::memory::MemoryTransport;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(DomainEvent, Serialize, Deserialize, Debug)]
//! #[event(context = "orders")]
//! struct OrderPlaced { #[event(key)] order_id: String }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let pool = sqlx::PgPool::connect("postgres://localhost/shop").await?;
//! let app = App::new(MemoryTransport::new(), Stores::postgres(pool.clone()).await?);
//! let outbox = app.outbox().expect("PostgreSQL stores have an outbox");
//! let running = app.start().await?; // also starts the relay
//!
//! // In a request handler: the order row and its event commit together, or neither does.
//! let mut tx = pool.begin().await?;
//! sqlx::query("INSERT INTO orders (id) VALUES ($1)").bind("o-1").execute(&mut *tx).await?;
//! outbox.stage(&mut tx, Envelope::event(OrderPlaced { order_id: "o-1".into() })).await?;
//! tx.commit().await?; // now the relay publishes it
//!
//! running.stop().await;
//! # Ok(()) }
//! ```
//!
//! # Guarantees
//!
//! - **Nothing before the commit, nothing after a rollback.** A staged row is part of the
//!   caller's transaction.
//! - **At least once after the commit.** The relay appends a batch, then deletes its rows in the
//!   transaction that read them. A crash (or a lost connection) between the append and that
//!   commit leaves the rows, and the relay appends them again: the copies carry the same
//!   CloudEvents id and dedupe key (the record is encoded once, when staged), so consumers'
//!   dedupe drops them.
//! - **Order.** Rows are relayed in `id` order (assigned when staged) and one relay at a time
//!   drains a database schema (a transaction-scoped advisory lock; the other processes' relays
//!   skip), so the events of one key keep the order of the transactions that staged them — as
//!   long as those transactions are serialised (e.g. they lock the entity's row before staging,
//!   or one consumer lane stages them one after the other, as the inbox does). Partitions are
//!   computed exactly as [`crate::Publisher::publish`] computes them.
//! - **Failures.** When the log refuses an append, the rows stay, their `attempts` and
//!   `last_error` columns are updated, and the relay retries with a bounded exponential backoff
//!   (100 ms to 5 s). Rows are never dropped; a row that can never be appended holds back the
//!   rows behind it, and `last_error` says why.
//! - **Latency.** [`Outbox::stage`] issues `pg_notify('evt_outbox')`, delivered on commit; the
//!   relay listens on that channel and also polls every 200 ms, so a missed notification only
//!   delays delivery.
//!
//! The inbox on PostgreSQL ([`crate::GroupOptions::inbox`] with PostgreSQL stores) stages the
//! events a handler emits here, in the inbox transaction, so the handler's effect, the dedupe
//! claim and the emitted events commit together.

use std::sync::Arc;
use std::time::Duration;

use sqlx::Row;
use tokio::sync::{Notify, watch};

use crate::cloudevents::binary::{self, Binding};
use crate::consumer::Activity;
use crate::envelope::{Envelope, RawEnvelope};
use crate::handler::Emitted;
use crate::message::{Command, DomainEvent};
use crate::publish::{PublishError, Publisher};
use crate::store::postgres::{pg_error, scrub_urls};
use crate::store::{decode_headers, encode_headers};
use crate::transport::{
    OutgoingRecord, Transport, TransportError, TransportErrorKind, command_topic, event_topic,
    now_ms,
};

/// The notification channel [`Outbox::stage`] signals and the relay listens on.
const CHANNEL: &str = "evt_outbox";
/// The first key of the relay's advisory lock; the second is the OID of the `evt_outbox` table,
/// so relays of different schemas of one database do not wait for each other.
const LOCK_CLASS: i32 = 745_829_103;
/// Rows read per drain transaction.
const BATCH: i64 = 256;
/// How often the relay looks for rows without a notification.
const POLL: Duration = Duration::from_millis(200);
/// Backoff after a failed append: from the first to the last value, doubling.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// The transactional outbox in PostgreSQL (table `evt_outbox`, created if missing): stage events
/// in your own transaction, and the app's relay publishes them once you commit. Obtain it from
/// [`crate::Stores::outbox`], [`crate::App::outbox`] or [`crate::Running::outbox`] (or
/// [`Outbox::new`]); cheap to clone. See the [module docs](self) for the guarantees.
#[derive(Clone)]
pub struct Outbox {
    pool: sqlx::PgPool,
}

impl std::fmt::Debug for Outbox {
    // Never the pool's options: they hold the connection settings (and the password).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").finish_non_exhaustive()
    }
}

impl Outbox {
    /// The outbox on `pool`; creates the stores' tables (`evt_outbox` among them) if missing.
    /// Rows staged through it are relayed by any running app whose stores are
    /// [`crate::Stores::postgres`] on the same database schema.
    ///
    /// # Errors
    ///
    /// When the schema cannot be created. The message never holds the connection URL.
    pub async fn new(pool: sqlx::PgPool) -> Result<Self, TransportError> {
        crate::store::postgres::ensure_schema(&pool).await?;
        Ok(Outbox { pool })
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
    /// # async fn run(pool: sqlx::PgPool, outbox: Outbox) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut tx = pool.begin().await?;
    /// outbox.stage(&mut tx, Envelope::event(OrderPlaced { order_id: "o-1".into() })).await?;
    /// tx.commit().await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`PublishError::Encode`] when the payload cannot be encoded, [`PublishError::Transport`]
    /// when the row cannot be written (the caller's transaction is then aborted).
    pub async fn stage<E: DomainEvent>(
        &self,
        conn: &mut sqlx::PgConnection,
        envelope: Envelope<E>,
    ) -> Result<i64, PublishError> {
        let topic = event_topic(envelope.data.descriptor().context);
        stage_raw(conn, &topic, &envelope.to_raw()?).await
    }

    /// Stages the command `envelope` for its target context's command topic (the topic
    /// [`crate::Publisher::send`] uses), on `conn`, like [`Outbox::stage`].
    ///
    /// # Errors
    ///
    /// As [`Outbox::stage`].
    pub async fn stage_command<C: Command>(
        &self,
        conn: &mut sqlx::PgConnection,
        envelope: Envelope<C>,
    ) -> Result<i64, PublishError> {
        let topic = command_topic(envelope.data.descriptor().context);
        stage_raw(conn, &topic, &envelope.to_raw()?).await
    }

    /// Stages an already-encoded envelope for `topic`, on `conn`, like [`Outbox::stage`].
    ///
    /// # Errors
    ///
    /// As [`Outbox::stage`].
    pub async fn stage_raw(
        &self,
        conn: &mut sqlx::PgConnection,
        topic: &str,
        envelope: &RawEnvelope,
    ) -> Result<i64, PublishError> {
        stage_raw(conn, topic, envelope).await
    }

    /// Rows committed and not yet relayed.
    ///
    /// # Errors
    ///
    /// The database error (never with the connection URL).
    pub async fn pending(&self) -> Result<u64, TransportError> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM evt_outbox")
            .fetch_one(&self.pool)
            .await
            .map_err(|err| pg_error("count the outbox's rows", err))?;
        Ok(u64::try_from(count).unwrap_or_default())
    }

    /// Whether any row waits for the relay (cheaper than [`Outbox::pending`]).
    pub(crate) async fn has_pending(&self) -> Result<bool, TransportError> {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM evt_outbox)")
            .fetch_one(&self.pool)
            .await
            .map_err(|err| pg_error("read the outbox", err))
    }
}

/// Writes one row: the record encoded once, in the CloudEvents binary mode (Kafka binding) the
/// publisher uses, so every relay attempt appends the same bytes and the same event id.
async fn stage_raw(
    conn: &mut sqlx::PgConnection,
    topic: &str,
    envelope: &RawEnvelope,
) -> Result<i64, PublishError> {
    let message = binary::encode(envelope, Binding::Kafka)?;
    // `pg_notify` is transactional: the relay hears it when (and only if) the caller commits.
    // Several stages in one transaction deliver one notification.
    let id: i64 = sqlx::query_scalar(
        "WITH staged AS ( \
             INSERT INTO evt_outbox (topic, event_id, record_key, headers, payload, created_ms, attempts) \
             VALUES ($1, $2, $3, $4, $5, $6, 0) RETURNING id \
         ) SELECT id FROM staged, pg_notify($7, '')",
    )
    .bind(topic)
    .bind(envelope.id.to_string())
    .bind(message.key)
    .bind(encode_headers(&message.headers))
    .bind(message.payload)
    .bind(now_ms())
    .bind(CHANNEL)
    .fetch_one(conn)
    .await
    .map_err(|err| pg_error(format!("stage an event for {topic} in the outbox"), err))?;
    Ok(id)
}

/// Stages the events a handler emitted (the PostgreSQL inbox), in order, on `conn`.
pub(crate) async fn stage_emitted(
    conn: &mut sqlx::PgConnection,
    emitted: Vec<Emitted>,
) -> Result<(), TransportError> {
    for item in emitted {
        stage_raw(conn, &item.topic, &item.envelope)
            .await
            .map_err(|err| match err {
                PublishError::Transport(err) => err,
                PublishError::Encode(err) => TransportError::new(
                    TransportErrorKind::Other,
                    format!("stage an event for {} in the outbox", item.topic),
                    err.to_string(),
                ),
            })?;
    }
    Ok(())
}

/// What one drain transaction did.
enum Drain {
    /// Rows were appended and deleted; there may be more.
    Relayed,
    /// The outbox was empty.
    Empty,
    /// Another relay holds the lock.
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

/// The relay of one app: drains `evt_outbox` into the app's transport.
pub(crate) struct Relay<T: Transport> {
    pub(crate) outbox: Outbox,
    pub(crate) publisher: Publisher<T>,
    pub(crate) activity: Arc<Activity>,
}

impl<T: Transport> Relay<T> {
    /// Runs until `shutdown` turns true: drains, then waits for a notification or the poll
    /// interval; after a failure, backs off.
    pub(crate) async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let wake = Arc::new(Notify::new());
        // Aborted when the relay ends, also when the app is dropped without `stop`.
        let listener = AbortOnDrop(tokio::spawn(listen(
            self.outbox.pool.clone(),
            wake.clone(),
            shutdown.clone(),
        )));
        let mut backoff = BACKOFF_MIN;
        while !*shutdown.borrow() {
            let pause = match self.drain().await {
                Ok(Drain::Relayed) => {
                    backoff = BACKOFF_MIN;
                    continue;
                }
                Ok(Drain::Empty | Drain::Busy) => {
                    backoff = BACKOFF_MIN;
                    tokio::select! {
                        () = wake.notified() => {}
                        () = tokio::time::sleep(POLL) => {}
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
        drop(listener);
    }

    /// One transaction: take the lock or skip, read a batch in id order, append it, delete what
    /// was appended (or count the failed attempt), commit.
    async fn drain(&self) -> Result<Drain, TransportError> {
        let pool = &self.outbox.pool;
        let mut tx = pool
            .begin()
            .await
            .map_err(|err| pg_error("relay the outbox", err))?;
        let locked: bool = sqlx::query_scalar(
            "SELECT pg_try_advisory_xact_lock($1, ('evt_outbox'::regclass)::oid::int)",
        )
        .bind(LOCK_CLASS)
        .fetch_one(&mut *tx)
        .await
        .map_err(|err| pg_error("lock the outbox", err))?;
        if !locked {
            tx.rollback()
                .await
                .map_err(|err| pg_error("relay the outbox", err))?;
            return Ok(Drain::Busy);
        }
        let rows = sqlx::query(
            "SELECT id, topic, event_id, record_key, headers, payload FROM evt_outbox \
             ORDER BY id LIMIT $1",
        )
        .bind(BATCH)
        .fetch_all(&mut *tx)
        .await
        .map_err(|err| pg_error("read the outbox", err))?;
        if rows.is_empty() {
            tx.commit()
                .await
                .map_err(|err| pg_error("relay the outbox", err))?;
            return Ok(Drain::Empty);
        }
        let _busy = Busy::begin(&self.activity);

        // Consecutive rows of one topic form one append (atomic per call on the embedded
        // engines); runs are appended in id order and the first failure stops the batch, so a
        // row is never appended before the rows staged ahead of it.
        let mut runs: Vec<(String, Vec<i64>, Vec<OutgoingRecord>)> = Vec::new();
        let mut failure: Option<(Vec<i64>, TransportError)> = None;
        for row in &rows {
            let id: i64 = row.get("id");
            let topic: String = row.get("topic");
            let record = match self.record_of(row, &topic).await {
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
            match self.publisher.transport_ref().append(&topic, records).await {
                Ok(_) => appended.extend(ids),
                Err(err) => {
                    failure = Some((ids, err));
                    break;
                }
            }
        }
        if !appended.is_empty() {
            sqlx::query("DELETE FROM evt_outbox WHERE id = ANY($1)")
                .bind(&appended)
                .execute(&mut *tx)
                .await
                .map_err(|err| pg_error("delete relayed outbox rows", err))?;
        }
        if let Some((ids, err)) = &failure {
            let (message, _) = scrub_urls(&err.to_string());
            sqlx::query(
                "UPDATE evt_outbox SET attempts = attempts + 1, last_error = $2 WHERE id = ANY($1)",
            )
            .bind(ids)
            .bind(message)
            .execute(&mut *tx)
            .await
            .map_err(|err| pg_error("record a failed outbox append", err))?;
        }
        // A failure here after a successful append leaves the rows: they are appended again
        // (same event ids), which consumers' dedupe drops.
        tx.commit()
            .await
            .map_err(|err| pg_error("delete relayed outbox rows", err))?;
        match failure {
            Some((_, err)) => Err(err),
            None => Ok(Drain::Relayed),
        }
    }

    /// The record of one row, partitioned as the publisher partitions.
    async fn record_of(
        &self,
        row: &sqlx::postgres::PgRow,
        topic: &str,
    ) -> Result<OutgoingRecord, TransportError> {
        let id: i64 = row.get("id");
        let event_id: String = row.get("event_id");
        let key: Option<Vec<u8>> = row.get("record_key");
        let blob: Vec<u8> = row.get("headers");
        let headers = decode_headers(&blob).map_err(|err| {
            TransportError::new(
                TransportErrorKind::Corrupt,
                format!("read outbox row {id} for {topic}"),
                err,
            )
        })?;
        let payload: Vec<u8> = row.get("payload");
        self.publisher
            .relay_record(topic, key, headers, payload, &event_id)
            .await
    }
}

/// Aborts the task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Listens on the outbox channel with a connection of its own (the app's pool keeps all of its
/// connections) and wakes the relay on every notification; reconnects after a failure.
async fn listen(pool: sqlx::PgPool, wake: Arc<Notify>, mut shutdown: watch::Receiver<bool>) {
    use sqlx::postgres::{PgListener, PgPoolOptions};
    while !*shutdown.borrow() {
        let own = PgPoolOptions::new()
            .max_connections(1)
            .max_lifetime(None)
            .idle_timeout(None)
            .connect_with((*pool.connect_options()).clone())
            .await;
        let listening = match own {
            Ok(own) => match PgListener::connect_with(&own).await {
                Ok(mut listener) => match listener.listen(CHANNEL).await {
                    Ok(()) => Some((own, listener)),
                    Err(_) => None,
                },
                Err(_) => None,
            },
            Err(_) => None,
        };
        let Some((own, mut listener)) = listening else {
            // The relay still polls; try again later.
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                // Shutdown, or the app is gone.
                _ = shutdown.changed() => return,
            }
        };
        // Whatever was committed before we listened.
        wake.notify_one();
        let stop = loop {
            tokio::select! {
                received = listener.recv() => match received {
                    Ok(_) => wake.notify_one(),
                    Err(_) => break false,
                },
                // Shutdown, or the app is gone.
                _ = shutdown.changed() => break true,
            }
        };
        drop(listener);
        // Bounded: a dead connection must not hold the relay up.
        let _ = tokio::time::timeout(Duration::from_secs(1), own.close()).await;
        if stop {
            return;
        }
    }
}
