//! The durable embedded engine: an append-only partitioned log in one SQLite file (WAL mode),
//! shared with the dedupe store and the dead-letter queue so that a handler's writes, its dedupe
//! mark and its position can live in one database.
//!
//! A process restart loses nothing: records are committed before `append` returns, and consumers
//! resume from their committed position. Several processes may open the same file (the `evt` CLI
//! does while the application runs); SQLite serialises writers, and `wait` polls the file so a
//! consumer in another process sees new records within the poll interval
//! ([`SqliteTransport::poll_every`], [`SqliteTransport::POLL`] by default). In this process an
//! append wakes the consumers of the partitions it wrote once it commits.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use tokio::sync::Notify;

use super::{
    Bytes, Claim, Headers, LogLimits, OutgoingRecord, Position, Record, Sharing, Slot, Transport,
    TransportError, TransportErrorKind, now_ms,
};

/// Every table of the embedded engine. Idempotent; run at open.
const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS evt_topics (
    name        TEXT PRIMARY KEY,
    partitions  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS evt_records (
    topic       TEXT NOT NULL,
    partition   INTEGER NOT NULL,
    offset      INTEGER NOT NULL,
    ts_ms       INTEGER NOT NULL,
    key         BLOB,
    headers     BLOB NOT NULL,
    payload     BLOB NOT NULL,
    PRIMARY KEY (topic, partition, offset)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS evt_positions (
    grp         TEXT NOT NULL,
    topic       TEXT NOT NULL,
    partition   INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    owner       TEXT,
    until_ms    INTEGER,
    revision    INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (grp, topic, partition)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS evt_members (
    grp         TEXT NOT NULL,
    instance    TEXT NOT NULL,
    until_ms    INTEGER NOT NULL,
    PRIMARY KEY (grp, instance)
) WITHOUT ROWID;
"#;

/// Columns added to `evt_positions` after its first release, for files created before.
const POSITION_CLAIMS: [(&str, &str); 3] = [
    ("owner", "ALTER TABLE evt_positions ADD COLUMN owner TEXT"),
    (
        "until_ms",
        "ALTER TABLE evt_positions ADD COLUMN until_ms INTEGER",
    ),
    (
        "revision",
        "ALTER TABLE evt_positions ADD COLUMN revision INTEGER NOT NULL DEFAULT 1",
    ),
];

/// The consumers waiting on each partition of a file in this process ([`Transport::wait`]),
/// woken when this process appends to that partition: one wake-up per partition written, not
/// one for every waiter of the file.
#[derive(Debug, Default)]
pub(crate) struct Wakers(std::sync::Mutex<HashMap<String, HashMap<u32, Arc<Notify>>>>);

impl Wakers {
    fn of(&self, topic: &str, partition: u32) -> Arc<Notify> {
        let mut topics = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !topics.contains_key(topic) {
            topics.insert(topic.to_owned(), HashMap::new());
        }
        topics
            .get_mut(topic)
            .expect("inserted above")
            .entry(partition)
            .or_default()
            .clone()
    }

    /// Wakes the waiters of `topic`'s `partition`.
    pub(crate) fn wake(&self, topic: &str, partition: u32) {
        let topics = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(waker) = topics.get(topic).and_then(|t| t.get(&partition)) {
            waker.notify_waiters();
        }
    }
}

/// The SQLite engine. Cloning shares the pool.
#[derive(Clone, Debug)]
pub struct SqliteTransport {
    pool: SqlitePool,
    wakers: Arc<Wakers>,
    inbox: Arc<tokio::sync::Mutex<()>>,
    /// How often `wait` re-reads the file ([`SqliteTransport::POLL`] unless set).
    poll: Duration,
}

pub(crate) use crate::store::sqlite::db_error;

impl SqliteTransport {
    /// How often `wait` re-reads the file for records appended by another process, by default.
    /// Records appended through this process's transport (a publish, or an inbox transaction's
    /// emitted events once it commits) wake the waiters at once.
    pub const POLL: Duration = Duration::from_millis(25);

    /// Sets how often `wait` re-reads the file for records another process appended (default
    /// [`SqliteTransport::POLL`]): shorter finds them sooner, longer reads the file less while
    /// idle (a consumer's wait lasts at most 500 ms and reads the file when it starts, so
    /// beyond that a longer interval saves nothing).
    #[must_use]
    pub fn poll_every(mut self, every: Duration) -> Self {
        self.poll = every.max(Duration::from_millis(1));
        self
    }

    /// The waiters of this file's partitions in this process, to wake after records were
    /// appended on a connection of the caller's and committed.
    pub(crate) fn wakers(&self) -> Arc<Wakers> {
        self.wakers.clone()
    }

    /// Opens (creating if needed) the engine in the file at `path`.
    ///
    /// # Errors
    ///
    /// When the file cannot be opened or the schema cannot be created.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, TransportError> {
        let path = path.as_ref();
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10));
        Self::connect(options, &format!("open {}", path.display())).await
    }

    /// Opens an engine file that must already exist and hold an event log; nothing is created or
    /// changed. For tools (the `evt` CLI) that must not turn a mistyped path into a new database.
    ///
    /// # Errors
    ///
    /// When the file does not exist, is not SQLite, or has no event log in it.
    pub async fn open_existing(path: impl AsRef<Path>) -> Result<Self, TransportError> {
        let path = path.as_ref();
        let operation = format!("open {}", path.display());
        if !path.is_file() {
            return Err(TransportError::new(
                TransportErrorKind::Other,
                operation,
                format!("{} does not exist or is not a file", path.display()),
            ));
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(false)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(options)
            .await
            .map_err(|err| db_error(operation.clone(), err))?;
        let tables: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'evt_records'",
        )
        .fetch_one(&pool)
        .await
        .map_err(|err| db_error(operation.clone(), err))?;
        if tables == 0 {
            return Err(TransportError::new(
                TransportErrorKind::Other,
                operation,
                format!(
                    "{} is an SQLite file without an event log (no evt_records table)",
                    path.display()
                ),
            ));
        }
        Ok(SqliteTransport {
            pool,
            wakers: Arc::default(),
            inbox: Arc::default(),
            poll: Self::POLL,
        })
    }

    /// An engine in a private in-memory database (for tests that want SQL semantics).
    ///
    /// # Errors
    ///
    /// When SQLite cannot be initialised.
    pub async fn in_memory() -> Result<Self, TransportError> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")
            .map_err(|err| db_error("open sqlite::memory:", err))?;
        Self::connect(options, "open sqlite::memory:").await
    }

    async fn connect(
        options: SqliteConnectOptions,
        operation: &str,
    ) -> Result<Self, TransportError> {
        let in_memory = options.get_filename().as_os_str().is_empty()
            || options
                .get_filename()
                .to_string_lossy()
                .contains(":memory:");
        // Switching to WAL and creating the schema need a moment of exclusive access; another
        // process (or a pool still closing) can hold the file, and SQLite then answers "locked"
        // without waiting. Retry for up to ten seconds before giving up.
        let mut attempt = 0;
        loop {
            match Self::try_connect(options.clone(), in_memory, operation).await {
                Err(err) if err.kind == TransportErrorKind::Unavailable && attempt < 100 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                result => return result,
            }
        }
    }

    async fn try_connect(
        options: SqliteConnectOptions,
        in_memory: bool,
        operation: &str,
    ) -> Result<Self, TransportError> {
        let pool = SqlitePoolOptions::new()
            // One connection for a private in-memory database (each connection would be its own
            // database); a few for a file.
            .max_connections(if in_memory { 1 } else { 4 })
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(|err| db_error(operation.to_owned(), err))?;
        sqlx::raw_sql(SCHEMA)
            .execute(&pool)
            .await
            .map_err(|err| db_error("create schema", err))?;
        // Each missing column on its own, so a migration cut short is finished by the next
        // open; another process adding the same column at once is not a failure.
        for (column, alter) in POSITION_CLAIMS {
            let present: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pragma_table_info('evt_positions') WHERE name = ?",
            )
            .bind(column)
            .fetch_one(&pool)
            .await
            .map_err(|err| db_error("read the schema", err))?;
            if present == 0
                && let Err(err) = sqlx::raw_sql(alter).execute(&pool).await
                && !err.to_string().contains("duplicate column")
            {
                return Err(db_error("add claims to the positions", err));
            }
        }
        sqlx::raw_sql(crate::store::sqlite::SCHEMA)
            .execute(&pool)
            .await
            .map_err(|err| db_error("create the stores' schema", err))?;
        for (table, column, declaration) in crate::store::ADDED_COLUMNS {
            let present: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM pragma_table_info(?) WHERE name = ?")
                    .bind(table)
                    .bind(column)
                    .fetch_one(&pool)
                    .await
                    .map_err(|err| db_error("read the schema", err))?;
            let alter = format!("ALTER TABLE {table} ADD COLUMN {column} {declaration}");
            if present == 0
                && let Err(err) = sqlx::raw_sql(sqlx::AssertSqlSafe(alter))
                    .execute(&pool)
                    .await
                && !err.to_string().contains("duplicate column")
            {
                return Err(db_error(format!("add {table}.{column}"), err));
            }
        }
        for (_, create) in crate::store::ADDED_INDEXES {
            sqlx::raw_sql(sqlx::AssertSqlSafe(*create))
                .execute(&pool)
                .await
                .map_err(|err| db_error("create an index", err))?;
        }
        Ok(SqliteTransport {
            pool,
            wakers: Arc::default(),
            inbox: Arc::default(),
            poll: Self::POLL,
        })
    }

    /// Every committed consumer-group position: `(group, topic, partition, next offset)`.
    ///
    /// # Errors
    ///
    /// The database error.
    pub async fn group_positions(&self) -> Result<Vec<(String, String, u32, u64)>, TransportError> {
        let rows = sqlx::query("SELECT grp, topic, partition, next_offset FROM evt_positions ORDER BY grp, topic, partition")
            .fetch_all(&self.pool)
            .await
            .map_err(|err| db_error("list consumer positions", err))?;
        Ok(rows
            .iter()
            .map(|row| {
                (
                    row.get::<String, _>("grp"),
                    row.get::<String, _>("topic"),
                    row.get::<i64, _>("partition") as u32,
                    row.get::<i64, _>("next_offset") as u64,
                )
            })
            .collect())
    }

    /// Serialises inbox transactions of this process on this file.
    pub(crate) fn inbox_lock_arc(&self) -> Arc<tokio::sync::Mutex<()>> {
        self.inbox.clone()
    }

    /// The pool, for stores and inbox handlers that write to the same database.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    async fn partition_count(&self, topic: &str, operation: &str) -> Result<u32, TransportError> {
        let count: Option<i64> =
            sqlx::query_scalar("SELECT partitions FROM evt_topics WHERE name = ?")
                .bind(topic)
                .fetch_optional(&self.pool)
                .await
                .map_err(|err| db_error(format!("{operation} {topic}"), err))?;
        count.map(|c| c as u32).ok_or_else(|| {
            TransportError::new(
                TransportErrorKind::UnknownTopic,
                format!("{operation} {topic}"),
                format!("topic `{topic}` does not exist"),
            )
        })
    }

    /// Creates `topic` on `conn` (inside the caller's transaction) if needed; returns its
    /// partition count.
    pub(crate) async fn ensure_topic_on(
        conn: &mut sqlx::SqliteConnection,
        topic: &str,
        partitions: u32,
    ) -> Result<u32, TransportError> {
        sqlx::query(
            "INSERT INTO evt_topics (name, partitions) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
        )
        .bind(topic)
        .bind(i64::from(partitions.max(1)))
        .execute(&mut *conn)
        .await
        .map_err(|err| db_error(format!("create topic {topic}"), err))?;
        let count: i64 = sqlx::query_scalar("SELECT partitions FROM evt_topics WHERE name = ?")
            .bind(topic)
            .fetch_one(&mut *conn)
            .await
            .map_err(|err| db_error(format!("create topic {topic}"), err))?;
        Ok(count as u32)
    }

    /// Appends on `conn` (inside the caller's transaction). Partitions are not checked here.
    pub(crate) async fn append_on(
        conn: &mut sqlx::SqliteConnection,
        topic: &str,
        records: Vec<OutgoingRecord>,
    ) -> Result<Vec<Position>, TransportError> {
        let operation = || format!("append to {topic}");
        let mut next: std::collections::HashMap<u32, i64> = std::collections::HashMap::new();
        let mut positions = Vec::with_capacity(records.len());
        let ts = now_ms();
        for record in records {
            let offset = match next.get(&record.partition) {
                Some(offset) => *offset,
                None => sqlx::query_scalar::<_, i64>(
                    "SELECT COALESCE(MAX(offset) + 1, 0) FROM evt_records WHERE topic = ? AND partition = ?",
                )
                .bind(topic)
                .bind(i64::from(record.partition))
                .fetch_one(&mut *conn)
                .await
                .map_err(|err| db_error(operation(), err))?,
            };
            sqlx::query(
                "INSERT INTO evt_records (topic, partition, offset, ts_ms, key, headers, payload) VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(topic)
            .bind(i64::from(record.partition))
            .bind(offset)
            .bind(ts)
            .bind(record.key.as_deref())
            .bind(record.headers.as_blob())
            .bind(&record.payload[..])
            .execute(&mut *conn)
            .await
            .map_err(|err| db_error(operation(), err))?;
            next.insert(record.partition, offset + 1);
            positions.push(Position {
                partition: record.partition,
                offset: offset as u64,
            });
        }
        Ok(positions)
    }
}

fn row_to_record(topic: &Arc<str>, partition: u32, row: &sqlx::sqlite::SqliteRow) -> Record {
    let key: Option<Vec<u8>> = row.get("key");
    let headers: Vec<u8> = row.get("headers");
    let payload: Vec<u8> = row.get("payload");
    Record {
        topic: Arc::clone(topic),
        partition,
        offset: row.get::<i64, _>("offset") as u64,
        timestamp_ms: row.get("ts_ms"),
        key: key.map(Bytes::from),
        headers: Headers::stored(headers),
        payload: Bytes::from(payload),
    }
}

impl Transport for SqliteTransport {
    async fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<u32, TransportError> {
        sqlx::query(
            "INSERT INTO evt_topics (name, partitions) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
        )
        .bind(topic)
        .bind(i64::from(partitions.max(1)))
        .execute(&self.pool)
        .await
        .map_err(|err| db_error(format!("create topic {topic}"), err))?;
        self.partition_count(topic, "create topic").await
    }

    async fn append(
        &self,
        topic: &str,
        records: Vec<OutgoingRecord>,
    ) -> Result<Vec<Position>, TransportError> {
        let operation = || format!("append to {topic}");
        let count = self.partition_count(topic, "append to").await?;
        if let Some(bad) = records.iter().find(|r| r.partition >= count) {
            return Err(TransportError::new(
                TransportErrorKind::InvalidPartition,
                operation(),
                format!("partition {} is outside 0..{count}", bad.partition),
            ));
        }
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|err| db_error(operation(), err))?;
        let positions = Self::append_on(&mut tx, topic, records).await?;
        tx.commit()
            .await
            .map_err(|err| db_error(operation(), err))?;
        let mut partitions: Vec<u32> = positions.iter().map(|p| p.partition).collect();
        partitions.sort_unstable();
        partitions.dedup();
        for partition in partitions {
            self.wakers.wake(topic, partition);
        }
        Ok(positions)
    }

    async fn fetch(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
        max: usize,
    ) -> Result<Vec<Record>, TransportError> {
        let rows = sqlx::query(
            "SELECT offset, ts_ms, key, headers, payload FROM evt_records \
             WHERE topic = ? AND partition = ? AND offset >= ? ORDER BY offset LIMIT ?",
        )
        .bind(topic)
        .bind(i64::from(partition))
        .bind(from as i64)
        .bind(max as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(|err| db_error(format!("fetch from {topic}/{partition}"), err))?;
        let name: Arc<str> = topic.into();
        Ok(rows
            .iter()
            .map(|row| row_to_record(&name, partition, row))
            .collect())
    }

    async fn wait(&self, topic: &str, partition: u32, from: u64, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let waker = self.wakers.of(topic, partition);
            let notified = waker.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let end: Option<i64> = sqlx::query_scalar(
                "SELECT MAX(offset) + 1 FROM evt_records WHERE topic = ? AND partition = ?",
            )
            .bind(topic)
            .bind(i64::from(partition))
            .fetch_one(&self.pool)
            .await
            .ok()
            .flatten();
            if end.is_some_and(|end| end as u64 > from) {
                return;
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return;
            }
            let nap = self.poll.min(deadline - now);
            let _ = tokio::time::timeout(nap, notified).await;
        }
    }

    async fn committed(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<u64, TransportError> {
        let next: Option<i64> = sqlx::query_scalar(
            "SELECT next_offset FROM evt_positions WHERE grp = ? AND topic = ? AND partition = ?",
        )
        .bind(group)
        .bind(topic)
        .bind(i64::from(partition))
        .fetch_optional(&self.pool)
        .await
        .map_err(|err| {
            db_error(
                format!("read position of {group} on {topic}/{partition}"),
                err,
            )
        })?;
        Ok(next.map_or(0, |n| n as u64))
    }

    async fn commit(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        next_offset: u64,
    ) -> Result<(), TransportError> {
        sqlx::query(
            "INSERT INTO evt_positions (grp, topic, partition, next_offset) VALUES (?, ?, ?, ?) \
             ON CONFLICT (grp, topic, partition) DO UPDATE SET next_offset = excluded.next_offset, \
             revision = evt_positions.revision + 1",
        )
        .bind(group)
        .bind(topic)
        .bind(i64::from(partition))
        .bind(next_offset as i64)
        .execute(&self.pool)
        .await
        .map_err(|err| db_error(format!("commit {group} on {topic}/{partition}"), err))?;
        Ok(())
    }

    /// Instances of a group share the file's partitions: the slots are rows of `evt_positions`
    /// written with a compare-and-set on their revision, the members rows of `evt_members`, so
    /// several processes on one file (or one file on a shared volume) never consume one
    /// partition at once.
    fn system(&self) -> &'static str {
        "evt_sqlite"
    }

    fn sharing(&self) -> Sharing {
        Sharing::Claims
    }

    async fn slot(&self, group: &str, topic: &str, partition: u32) -> Result<Slot, TransportError> {
        let row: Option<(i64, Option<String>, Option<i64>, i64)> = sqlx::query_as(
            "SELECT next_offset, owner, until_ms, revision FROM evt_positions \
             WHERE grp = ? AND topic = ? AND partition = ?",
        )
        .bind(group)
        .bind(topic)
        .bind(i64::from(partition))
        .fetch_optional(&self.pool)
        .await
        .map_err(|err| {
            db_error(
                format!("read the slot of {group} on {topic}/{partition}"),
                err,
            )
        })?;
        Ok(
            row.map_or_else(Slot::default, |(next, owner, until_ms, revision)| Slot {
                next_offset: next as u64,
                claim: owner.map(|owner| Claim {
                    owner,
                    until_ms: until_ms.unwrap_or(0),
                }),
                revision: revision as u64,
            }),
        )
    }

    async fn swap_slot(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        next_offset: u64,
        claim: Option<&Claim>,
        expected: u64,
    ) -> Result<Option<u64>, TransportError> {
        let operation = || format!("claim {topic}/{partition} for {group}");
        let (owner, until_ms) =
            claim.map_or((None, None), |c| (Some(c.owner.as_str()), Some(c.until_ms)));
        let query = sqlx::query(if expected == 0 {
            "INSERT INTO evt_positions (grp, topic, partition, next_offset, owner, until_ms, revision) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1) ON CONFLICT (grp, topic, partition) DO NOTHING"
        } else {
            "UPDATE evt_positions SET next_offset = ?4, owner = ?5, until_ms = ?6, revision = revision + 1 \
             WHERE grp = ?1 AND topic = ?2 AND partition = ?3 AND revision = ?7"
        })
        .bind(group)
        .bind(topic)
        .bind(i64::from(partition))
        .bind(next_offset as i64)
        .bind(owner)
        .bind(until_ms);
        let query = if expected == 0 {
            query
        } else {
            query.bind(expected as i64)
        };
        let written = query
            .execute(&self.pool)
            .await
            .map_err(|err| db_error(operation(), err))?
            .rows_affected();
        Ok((written == 1).then_some(if expected == 0 { 1 } else { expected + 1 }))
    }

    async fn beat(
        &self,
        group: &str,
        instance: &str,
        until_ms: i64,
    ) -> Result<Vec<String>, TransportError> {
        let operation = || format!("announce {instance} in {group}");
        sqlx::query(
            "INSERT INTO evt_members (grp, instance, until_ms) VALUES (?, ?, ?) \
             ON CONFLICT (grp, instance) DO UPDATE SET until_ms = excluded.until_ms",
        )
        .bind(group)
        .bind(instance)
        .bind(until_ms)
        .execute(&self.pool)
        .await
        .map_err(|err| db_error(operation(), err))?;
        sqlx::query_scalar(
            "SELECT instance FROM evt_members WHERE grp = ? AND until_ms > ? ORDER BY instance",
        )
        .bind(group)
        .bind(now_ms())
        .fetch_all(&self.pool)
        .await
        .map_err(|err| db_error(operation(), err))
    }

    async fn leave(&self, group: &str, instance: &str) -> Result<(), TransportError> {
        sqlx::query("DELETE FROM evt_members WHERE grp = ? AND instance = ?")
            .bind(group)
            .bind(instance)
            .execute(&self.pool)
            .await
            .map_err(|err| db_error(format!("withdraw {instance} from {group}"), err))?;
        Ok(())
    }

    async fn delete_records(&self, topic: &str, limits: &LogLimits) -> Result<u64, TransportError> {
        let count = self.partition_count(topic, "retention of").await?;
        let operation = || format!("retention of {topic}");
        let cutoff_ms = limits
            .max_age
            .map(|age| now_ms().saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX)));
        let mut deleted = 0;
        for partition in 0..i64::from(count) {
            // One write transaction per partition: appends and commits wait, readers do not.
            let mut tx = self
                .pool
                .begin_with("BEGIN IMMEDIATE")
                .await
                .map_err(|err| db_error(operation(), err))?;
            let newest: Option<i64> = sqlx::query_scalar(
                "SELECT MAX(offset) FROM evt_records WHERE topic = ? AND partition = ?",
            )
            .bind(topic)
            .bind(partition)
            .fetch_one(&mut *tx)
            .await
            .map_err(|err| db_error(operation(), err))?;
            let Some(mut below) = newest else {
                continue;
            };
            if limits.keep_unconsumed {
                let needed: Option<i64> = sqlx::query_scalar(
                    "SELECT MIN(next_offset) FROM evt_positions WHERE topic = ? AND partition = ?",
                )
                .bind(topic)
                .bind(partition)
                .fetch_one(&mut *tx)
                .await
                .map_err(|err| db_error(operation(), err))?;
                below = below.min(needed.unwrap_or(i64::MAX));
            }
            // By size: the newest offset at which the records from the newest down exceed the
            // bound; it and everything older go.
            let mut size_cut = None;
            if let Some(max) = limits.max_bytes {
                size_cut = sqlx::query_scalar::<_, i64>(
                    "SELECT offset FROM ( \
                       SELECT offset, SUM(LENGTH(headers) + LENGTH(payload) + COALESCE(LENGTH(key), 0)) \
                         OVER (ORDER BY offset DESC) AS total \
                       FROM evt_records WHERE topic = ? AND partition = ?) \
                     WHERE total > ? ORDER BY offset DESC LIMIT 1",
                )
                .bind(topic)
                .bind(partition)
                .bind(i64::try_from(max).unwrap_or(i64::MAX))
                .fetch_optional(&mut *tx)
                .await
                .map_err(|err| db_error(operation(), err))?;
            }
            let result = sqlx::query(
                "DELETE FROM evt_records WHERE topic = ? AND partition = ? AND offset < ? \
                 AND (ts_ms < ? OR offset <= ?)",
            )
            .bind(topic)
            .bind(partition)
            .bind(below)
            .bind(cutoff_ms.unwrap_or(i64::MIN))
            .bind(size_cut.unwrap_or(-1))
            .execute(&mut *tx)
            .await
            .map_err(|err| db_error(operation(), err))?;
            tx.commit()
                .await
                .map_err(|err| db_error(operation(), err))?;
            deleted += result.rows_affected();
        }
        Ok(deleted)
    }

    async fn end_offsets(&self, topic: &str) -> Result<Vec<u64>, TransportError> {
        let count = self.partition_count(topic, "end offsets of").await?;
        let rows = sqlx::query(
            "SELECT partition, MAX(offset) + 1 AS next FROM evt_records WHERE topic = ? GROUP BY partition",
        )
        .bind(topic)
        .fetch_all(&self.pool)
        .await
        .map_err(|err| db_error(format!("end offsets of {topic}"), err))?;
        let mut ends = vec![0u64; count as usize];
        for row in rows {
            let partition = row.get::<i64, _>("partition") as usize;
            if let Some(slot) = ends.get_mut(partition) {
                *slot = row.get::<i64, _>("next") as u64;
            }
        }
        Ok(ends)
    }

    async fn topics(&self) -> Result<Vec<(String, u32)>, TransportError> {
        let rows = sqlx::query("SELECT name, partitions FROM evt_topics ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(|err| db_error("list topics", err))?;
        Ok(rows
            .iter()
            .map(|row| {
                (
                    row.get::<String, _>("name"),
                    row.get::<i64, _>("partitions") as u32,
                )
            })
            .collect())
    }
}
