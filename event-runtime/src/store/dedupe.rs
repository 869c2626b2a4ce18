//! Dedupe marks and claims in any SQL database (`evt_dedupe`), written once.
//!
//! A row with no `holder` is a mark: the key was handled. A row with a `holder` is a claim,
//! held until `lease_ms` unless renewed ([`crate::dedupe::DedupeStore::claim`]). In the inbox,
//! a claim is instead an insert inside the handler's transaction that does nothing when the key
//! is there, so it both checks and marks, and a concurrent claim of the same key waits for that
//! transaction to end.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::Pool;
use tokio::sync::{mpsc, oneshot};

use super::sql::{Exec, Value, args};
use crate::dedupe::Claim;
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
        DB::sql("SELECT seen_ms FROM evt_dedupe WHERE grp = ? AND key = ? AND holder IS NULL"),
        args![group, key],
    )
    .await
    .map_err(error)?;
    Ok(row.is_some())
}

/// Marks `key` for `group` outside any transaction of the caller's (ending a claim of it).
pub(crate) async fn mark<DB: Exec>(
    pool: &Pool<DB>,
    group: &str,
    key: &str,
) -> Result<(), TransportError> {
    mark_all(pool, &[(group, key)]).await
}

/// A claim asked for: `key` of `group`, for `holder` until `until_ms`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Wanted<'a> {
    pub(crate) group: &'a str,
    pub(crate) key: &'a str,
    pub(crate) holder: &'a str,
    pub(crate) until_ms: i64,
}

/// Claims every wanted key in one transaction: one upsert takes the keys that have no row or
/// whose claim lapsed (and returns them), one read per group tells the others apart (marked, or
/// held by whom until when). The answers are in the order asked; of one key asked twice only
/// the first ask can take it (the later find it held).
pub(crate) async fn claim_all<DB: Exec>(
    pool: &Pool<DB>,
    wanted: &[Wanted<'_>],
) -> Result<Vec<Claim>, TransportError> {
    let error = |err| DB::error("claim dedupe keys".to_owned(), err);
    let now = now_ms();
    // One lock order for every writer (as in `mark_all`), each key once, its first ask kept.
    let mut asks: Vec<usize> = (0..wanted.len()).collect();
    asks.sort_by(|&a, &b| {
        (wanted[a].group, wanted[a].key)
            .cmp(&(wanted[b].group, wanted[b].key))
            .then(a.cmp(&b))
    });
    asks.dedup_by(|later, first| {
        wanted[*later].group == wanted[*first].group && wanted[*later].key == wanted[*first].key
    });
    let mut sql =
        String::from("INSERT INTO evt_dedupe (grp, key, seen_ms, holder, lease_ms) VALUES ");
    let mut values = Vec::with_capacity(asks.len() * 5 + 1);
    for (i, &ask) in asks.iter().enumerate() {
        let w = &wanted[ask];
        sql.push_str(if i == 0 {
            "(?, ?, ?, ?, ?)"
        } else {
            ", (?, ?, ?, ?, ?)"
        });
        values.extend([
            Value::from(w.group),
            Value::from(w.key),
            Value::from(now),
            Value::from(w.holder),
            Value::from(w.until_ms),
        ]);
    }
    sql.push_str(
        " ON CONFLICT (grp, key) DO UPDATE SET seen_ms = excluded.seen_ms, \
         holder = excluded.holder, lease_ms = excluded.lease_ms \
         WHERE evt_dedupe.holder IS NOT NULL AND evt_dedupe.lease_ms < ? \
         RETURNING grp, key",
    );
    values.push(Value::from(now));
    let sql = DB::sql_owned(sql);
    let mut tx = DB::begin_write(pool).await.map_err(error)?;
    // Which asks took their key: the first ask of each key the upsert returned.
    let first_ask: std::collections::HashMap<(&str, &str), usize> = asks
        .iter()
        .map(|&i| ((wanted[i].group, wanted[i].key), i))
        .collect();
    let mut claimed = vec![false; wanted.len()];
    for row in DB::rows(&mut tx, &sql, &values).await.map_err(error)? {
        let group = DB::text(&row, "grp").map_err(error)?;
        let key = DB::text(&row, "key").map_err(error)?;
        if let Some(&i) = first_ask.get(&(group.as_str(), key.as_str())) {
            claimed[i] = true;
        }
    }
    // The rows of the keys not taken, read in the same transaction (rare: a duplicate, or a
    // key another instance holds).
    let mut others: Vec<(&str, &str)> = (0..wanted.len())
        .filter(|&i| !claimed[i])
        .map(|i| (wanted[i].group, wanted[i].key))
        .collect();
    others.sort_unstable();
    others.dedup();
    let mut found = std::collections::HashMap::new();
    for of_group in others.chunk_by(|a, b| a.0 == b.0) {
        let group = of_group[0].0;
        let mut sql =
            String::from("SELECT key, holder, lease_ms FROM evt_dedupe WHERE grp = ? AND key IN (");
        let mut values = Vec::with_capacity(of_group.len() + 1);
        values.push(Value::from(group));
        for (i, (_, key)) in of_group.iter().enumerate() {
            sql.push_str(if i == 0 { "?" } else { ", ?" });
            values.push(Value::from(*key));
        }
        sql.push(')');
        let sql = DB::sql_owned(sql);
        for row in DB::rows(&mut tx, &sql, &values).await.map_err(error)? {
            let key = DB::text(&row, "key").map_err(error)?;
            let holder = DB::opt_text(&row, "holder").map_err(error)?;
            let until_ms = DB::opt_int(&row, "lease_ms").map_err(error)?.unwrap_or(0);
            found.insert((group.to_owned(), key), holder.map(|h| (h, until_ms)));
        }
    }
    tx.commit().await.map_err(error)?;
    Ok((0..wanted.len())
        .map(|i| {
            if claimed[i] {
                return Claim::Claimed;
            }
            match found.get(&(wanted[i].group.to_owned(), wanted[i].key.to_owned())) {
                Some(None) => Claim::Done,
                Some(Some((holder, until_ms))) => Claim::Held {
                    holder: holder.clone(),
                    until_ms: *until_ms,
                },
                // No row: it cannot vanish within the transaction; asking again is safe.
                None => Claim::Held {
                    holder: String::new(),
                    until_ms: now,
                },
            }
        })
        .collect())
}

/// Extends every claim `holder` holds in `group` to `until_ms`; how many.
pub(crate) async fn renew<DB: Exec>(
    pool: &Pool<DB>,
    group: &str,
    holder: &str,
    until_ms: i64,
) -> Result<u64, TransportError> {
    let error = |err| DB::error(format!("renew dedupe claims for {group}"), err);
    let mut conn = pool.acquire().await.map_err(error)?;
    DB::exec(
        &mut conn,
        DB::sql("UPDATE evt_dedupe SET lease_ms = ? WHERE holder = ? AND grp = ?"),
        args![until_ms, holder, group],
    )
    .await
    .map_err(error)
}

/// Drops `holder`'s claim on `key` (a mark, or another's claim, stays).
pub(crate) async fn release<DB: Exec>(
    pool: &Pool<DB>,
    group: &str,
    key: &str,
    holder: &str,
) -> Result<(), TransportError> {
    let error = |err| DB::error(format!("release dedupe key for {group}"), err);
    let mut conn = pool.acquire().await.map_err(error)?;
    DB::exec(
        &mut conn,
        DB::sql("DELETE FROM evt_dedupe WHERE grp = ? AND key = ? AND holder = ?"),
        args![group, key, holder],
    )
    .await
    .map_err(error)
    .map(drop)
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
    Mark {
        group: Arc<str>,
        key: String,
        reply: oneshot::Sender<Result<(), TransportError>>,
    },
    Claim {
        group: Arc<str>,
        key: String,
        holder: Arc<str>,
        until_ms: i64,
        reply: oneshot::Sender<Result<Claim, TransportError>>,
    },
    /// Unanswered: sent from a drop, where nobody waits.
    Release {
        group: Arc<str>,
        key: String,
        holder: Arc<str>,
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
        // A release sent from a drop may come after the runtime is gone.
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| gone("dedupe"))?;
        let (tx, rx) = mpsc::unbounded_channel();
        runtime.spawn(write_batches(self.pool.clone(), rx));
        let sent = tx.send(op).map_err(|_| gone("dedupe"));
        *queue = Some(tx);
        sent
    }

    /// Claims `key` of `group` for `holder` until `until_ms`.
    pub(crate) async fn claim(
        &self,
        group: &Arc<str>,
        key: &str,
        holder: &Arc<str>,
        until_ms: i64,
    ) -> Result<Claim, TransportError> {
        let (reply, answer) = oneshot::channel();
        self.send(Op::Claim {
            group: group.clone(),
            key: key.to_owned(),
            holder: holder.clone(),
            until_ms,
            reply,
        })?;
        answer.await.map_err(|_| gone("claim dedupe key"))?
    }

    /// Queues the release of `holder`'s claim on `key`, without waiting: the claim lapses
    /// anyway if the release is lost.
    pub(crate) fn release_later(&self, group: &Arc<str>, key: String, holder: &Arc<str>) {
        let _ = self.send(Op::Release {
            group: group.clone(),
            key,
            holder: holder.clone(),
        });
    }

    /// Marks `key` handled for `group`.
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
        let (mut marks, mut claims, mut releases) = (Vec::new(), Vec::new(), Vec::new());
        for op in ops.drain(..) {
            match op {
                Op::Mark { group, key, reply } => marks.push((group, key, reply)),
                Op::Claim {
                    group,
                    key,
                    holder,
                    until_ms,
                    reply,
                } => claims.push((group, key, holder, until_ms, reply)),
                Op::Release { group, key, holder } => releases.push((group, key, holder)),
            }
        }
        // Marks and releases first: a claim in the same batch then finds the key marked or free.
        if !marks.is_empty() {
            let pairs: Vec<(&str, &str)> = marks.iter().map(|(g, k, _)| (&**g, &**k)).collect();
            let written = mark_all(&pool, &pairs).await;
            for (_, _, reply) in marks {
                let _ = reply.send(written.as_ref().copied().map_err(copy));
            }
        }
        for (group, key, holder) in releases {
            if let Err(err) = release(&pool, &group, &key, &holder).await {
                tracing::debug!(group = &*group, error = %err, "a dedupe claim was not released; it lapses");
            }
        }
        if !claims.is_empty() {
            let wanted: Vec<Wanted<'_>> = claims
                .iter()
                .map(|(group, key, holder, until_ms, _)| Wanted {
                    group,
                    key,
                    holder,
                    until_ms: *until_ms,
                })
                .collect();
            let answers = claim_all(&pool, &wanted).await;
            drop(wanted);
            match answers {
                Ok(answers) => {
                    for ((group, key, holder, _, reply), answer) in claims.into_iter().zip(answers)
                    {
                        // Granted to a caller that is gone (its record was dropped while it
                        // waited): nobody would mark or release it, and its holder's renewals
                        // would keep it.
                        if let Err(Ok(Claim::Claimed)) = reply.send(Ok(answer))
                            && let Err(err) = release(&pool, &group, &key, &holder).await
                        {
                            tracing::debug!(group = &*group, error = %err, "an unwanted dedupe claim was not released; it lapses");
                        }
                    }
                }
                Err(err) => {
                    for (.., reply) in claims {
                        let _ = reply.send(Err(copy(&err)));
                    }
                }
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
    // A claim becomes a mark, whoever held it.
    sql.push_str(
        " ON CONFLICT (grp, key) DO UPDATE SET holder = NULL, lease_ms = NULL \
         WHERE evt_dedupe.holder IS NOT NULL",
    );
    let sql = DB::sql_owned(sql);
    let mut tx = DB::begin_write(pool).await.map_err(error)?;
    DB::exec(&mut tx, &sql, &values).await.map_err(error)?;
    tx.commit().await.map_err(error)
}
