//! Dedupe marks in any SQL database (`evt_dedupe`), written once: a claim is an insert that
//! does nothing when the key is there, so inside a transaction it both checks and marks, and a
//! concurrent claim of the same key waits for that transaction to end.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::Pool;
use tokio::sync::{mpsc, oneshot};

use super::sql::{Exec, Value, args};
use crate::transport::{TransportError, TransportErrorKind, now_ms};

/// Claims `key` for `group` on `conn`: `true` the first time, `false` if it was claimed before.
pub(crate) async fn claim<DB: Exec>(
    conn: &mut DB::Connection,
    group: &str,
    key: &str,
) -> Result<bool, TransportError> {
    let done = DB::exec(
        conn,
        DB::sql(
            "INSERT INTO evt_dedupe (grp, key, seen_ms) VALUES (?, ?, ?) \
             ON CONFLICT (grp, key) DO NOTHING",
        ),
        args![group, key, now_ms()],
    )
    .await
    .map_err(|err| DB::error(format!("claim dedupe key for {group}"), err))?;
    Ok(done == 1)
}

/// Whether `key` is claimed for `group`.
pub(crate) async fn seen<DB: Exec>(
    pool: &Pool<DB>,
    group: &str,
    key: &str,
) -> Result<bool, TransportError> {
    let error = |err| DB::error(format!("read dedupe key for {group}"), err);
    let mut conn = pool.acquire().await.map_err(error)?;
    let row = DB::row(
        &mut conn,
        DB::sql("SELECT seen_ms FROM evt_dedupe WHERE grp = ? AND key = ?"),
        args![group, key],
    )
    .await
    .map_err(error)?;
    Ok(row.is_some())
}

/// Claims `key` for `group` outside any transaction of the caller's.
pub(crate) async fn mark<DB: Exec>(
    pool: &Pool<DB>,
    group: &str,
    key: &str,
) -> Result<(), TransportError> {
    let mut conn = pool
        .acquire()
        .await
        .map_err(|err| DB::error(format!("mark dedupe key for {group}"), err))?;
    claim::<DB>(&mut conn, group, key).await.map(drop)
}

/// Forgets marks older than `retention`; how many.
pub(crate) async fn purge_older_than<DB: Exec>(
    pool: &Pool<DB>,
    retention: Duration,
) -> Result<u64, TransportError> {
    let error = |err| DB::error("purge dedupe keys".to_owned(), err);
    let cutoff = now_ms() - retention.as_millis() as i64;
    let mut conn = pool.acquire().await.map_err(error)?;
    DB::exec(
        &mut conn,
        DB::sql("DELETE FROM evt_dedupe WHERE seen_ms < ?"),
        args![cutoff],
    )
    .await
    .map_err(error)
}

/// Most checks or marks written in one statement.
const BATCH: usize = 256;

/// One request to a [`Batcher`].
enum Op {
    Seen {
        group: Arc<str>,
        key: String,
        reply: oneshot::Sender<Result<bool, TransportError>>,
    },
    Mark {
        group: Arc<str>,
        key: String,
        reply: oneshot::Sender<Result<(), TransportError>>,
    },
}

/// Dedupe checks and marks of one SQL database, written in batches: while one batch is being
/// written, the requests of every lane queue, and the next batch takes them all, the marks in
/// one transaction of one multi-row insert and the checks in one select per group. A record's
/// mark is still written after its handler and before its record counts as done, so nothing
/// changes but the number of statements (on SQLite each autocommitted mark was a transaction
/// of its own, the consumer's main cost).
///
/// The writer is a task of its own, started on first use (and again on the current runtime if
/// the runtime it ran on has shut down); it ends when the last handle on the database is
/// dropped. A request whose caller is dropped is still written (a mark is
/// idempotent, a check harmless).
pub(crate) struct Batcher<DB: Exec> {
    pool: Pool<DB>,
    queue: Mutex<Option<mpsc::UnboundedSender<Op>>>,
}

impl<DB: Exec> std::fmt::Debug for Batcher<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Batcher")
    }
}

fn gone(operation: &str) -> TransportError {
    TransportError::new(
        TransportErrorKind::Unavailable,
        operation.to_owned(),
        "the dedupe writer stopped (its runtime shut down)",
    )
}

/// `err` again, for each request of a failed batch.
fn copy(err: &TransportError) -> TransportError {
    TransportError::new(err.kind, err.operation.clone(), err.message.clone())
}

impl<DB: Exec> Batcher<DB> {
    pub(crate) fn new(pool: Pool<DB>) -> Self {
        Batcher {
            pool,
            queue: Mutex::new(None),
        }
    }

    /// Queues `op` for the writer, starting one on the current runtime when there is none or
    /// the last one is gone (its runtime shut down, say, while this database lives on).
    fn send(&self, op: Op) -> Result<(), TransportError> {
        let mut queue = self
            .queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let op = match queue.as_ref() {
            Some(tx) => match tx.send(op) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::SendError(op)) => op,
            },
            None => op,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_batches(self.pool.clone(), rx));
        let sent = tx.send(op).map_err(|_| gone("dedupe"));
        *queue = Some(tx);
        sent
    }

    /// Whether `key` is claimed for `group`.
    pub(crate) async fn seen(&self, group: &str, key: &str) -> Result<bool, TransportError> {
        let (reply, answer) = oneshot::channel();
        self.send(Op::Seen {
            group: group.into(),
            key: key.to_owned(),
            reply,
        })?;
        answer.await.map_err(|_| gone("read dedupe key"))?
    }

    /// Claims `key` for `group`.
    pub(crate) async fn mark(&self, group: &str, key: &str) -> Result<(), TransportError> {
        let (reply, answer) = oneshot::channel();
        self.send(Op::Mark {
            group: group.into(),
            key: key.to_owned(),
            reply,
        })?;
        answer.await.map_err(|_| gone("mark dedupe key"))?
    }
}

/// The writer task: takes what has queued, up to [`BATCH`], writes it, answers, again.
async fn write_batches<DB: Exec>(pool: Pool<DB>, mut queue: mpsc::UnboundedReceiver<Op>) {
    let mut ops = Vec::with_capacity(BATCH);
    while queue.recv_many(&mut ops, BATCH).await > 0 {
        let (mut seen, mut marks) = (Vec::new(), Vec::new());
        for op in ops.drain(..) {
            match op {
                Op::Seen { group, key, reply } => seen.push((group, key, reply)),
                Op::Mark { group, key, reply } => marks.push((group, key, reply)),
            }
        }
        if !marks.is_empty() {
            let pairs: Vec<(&str, &str)> = marks.iter().map(|(g, k, _)| (&**g, &**k)).collect();
            let written = mark_all(&pool, &pairs).await;
            for (_, _, reply) in marks {
                let _ = reply.send(written.as_ref().copied().map_err(copy));
            }
        }
        while !seen.is_empty() {
            // One select per group (a batch usually holds one).
            let group = seen[0].0.clone();
            let (of_group, rest): (Vec<_>, Vec<_>) =
                seen.into_iter().partition(|(g, _, _)| *g == group);
            seen = rest;
            let keys: Vec<&str> = of_group.iter().map(|(_, k, _)| &**k).collect();
            let found = seen_any(&pool, &group, &keys).await;
            for (_, key, reply) in of_group {
                let _ = reply.send(match &found {
                    Ok(found) => Ok(found.contains(&key)),
                    Err(err) => Err(copy(err)),
                });
            }
        }
    }
}

/// Claims every `(group, key)` in one transaction of one statement.
async fn mark_all<DB: Exec>(pool: &Pool<DB>, pairs: &[(&str, &str)]) -> Result<(), TransportError> {
    let error = |err| DB::error("mark dedupe keys".to_owned(), err);
    let now = now_ms();
    // One lock order for every writer: two processes marking the same keys in different orders
    // would otherwise deadlock on PostgreSQL.
    let mut pairs = pairs.to_vec();
    pairs.sort_unstable();
    pairs.dedup();
    let mut sql = String::from("INSERT INTO evt_dedupe (grp, key, seen_ms) VALUES ");
    let mut values = Vec::with_capacity(pairs.len() * 3);
    for (i, (group, key)) in pairs.iter().enumerate() {
        sql.push_str(if i == 0 { "(?, ?, ?)" } else { ", (?, ?, ?)" });
        values.extend([Value::from(*group), Value::from(*key), Value::from(now)]);
    }
    sql.push_str(" ON CONFLICT (grp, key) DO NOTHING");
    let sql = DB::sql_owned(sql);
    let mut tx = DB::begin_write(pool).await.map_err(error)?;
    DB::exec(&mut tx, &sql, &values).await.map_err(error)?;
    tx.commit().await.map_err(error)
}

/// Which of `keys` are claimed for `group`, in one statement.
async fn seen_any<DB: Exec>(
    pool: &Pool<DB>,
    group: &str,
    keys: &[&str],
) -> Result<HashSet<String>, TransportError> {
    let error = |err| DB::error(format!("read dedupe keys for {group}"), err);
    let mut sql = String::from("SELECT key FROM evt_dedupe WHERE grp = ? AND key IN (");
    let mut values = Vec::with_capacity(keys.len() + 1);
    values.push(Value::from(group));
    for (i, key) in keys.iter().enumerate() {
        sql.push_str(if i == 0 { "?" } else { ", ?" });
        values.push(Value::from(*key));
    }
    sql.push(')');
    let sql = DB::sql_owned(sql);
    let mut conn = pool.acquire().await.map_err(error)?;
    let rows = DB::rows(&mut conn, &sql, &values).await.map_err(error)?;
    rows.iter()
        .map(|row| DB::text(row, "key").map_err(error))
        .collect()
}
