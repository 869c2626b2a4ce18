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

/// A claim asked for: `key` of `group`, for `holder`, for `lease` from when it is written.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Wanted<'a> {
    pub(crate) group: &'a str,
    pub(crate) key: &'a str,
    pub(crate) holder: &'a str,
    pub(crate) lease: Duration,
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
    let mut tx = DB::begin_write(pool).await.map_err(error)?;
    let claims = claim_all_on::<DB>(&mut tx, wanted).await?;
    tx.commit().await.map_err(error)?;
    Ok(claims)
}

/// [`claim_all`] on `conn`, inside the caller's writing transaction.
async fn claim_all_on<DB: Exec>(
    conn: &mut DB::Connection,
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
            // From now, when the statement runs, not from when it was asked: a batch that waited
            // (a busy database) must not store a claim that has already lapsed.
            Value::from(crate::dedupe::lapse_at(w.lease)),
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
    // Which asks took their key: the first ask of each key the upsert returned.
    let first_ask: std::collections::HashMap<(&str, &str), usize> = asks
        .iter()
        .map(|&i| ((wanted[i].group, wanted[i].key), i))
        .collect();
    let mut claimed = vec![false; wanted.len()];
    for row in DB::rows(conn, &sql, &values).await.map_err(error)? {
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
        for row in DB::rows(conn, &sql, &values).await.map_err(error)? {
            let key = DB::text(&row, "key").map_err(error)?;
            let holder = DB::opt_text(&row, "holder").map_err(error)?;
            let until_ms = DB::opt_int(&row, "lease_ms").map_err(error)?.unwrap_or(0);
            found.insert((group.to_owned(), key), holder.map(|h| (h, until_ms)));
        }
    }
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

/// Most keys renewed by one statement.
const RENEW_CHUNK: usize = 500;

/// Extends `holder`'s claims on `keys` in `group` to `lease` from now; how many it held.
///
/// On PostgreSQL the rows are locked in the order every writer of claims and marks takes them
/// (bytewise, as Rust sorts; `COLLATE "C"`), so a renewal never deadlocks with a batch.
pub(crate) async fn renew<DB: Exec>(
    pool: &Pool<DB>,
    group: &str,
    holder: &str,
    keys: &[&str],
    lease: Duration,
) -> Result<u64, TransportError> {
    let error = |err| DB::error(format!("renew dedupe claims for {group}"), err);
    let mut renewed = 0;
    let mut conn = pool.acquire().await.map_err(error)?;
    for chunk in keys.chunks(RENEW_CHUNK) {
        let mut list = String::new();
        for i in 0..chunk.len() {
            list.push_str(if i == 0 { "?" } else { ", ?" });
        }
        // Never shortens a lease (a claim taken again meanwhile has a fresher one).
        let set =
            "UPDATE evt_dedupe SET lease_ms = CASE WHEN lease_ms > ? THEN lease_ms ELSE ? END";
        let sql = if DB::LOCK_KEY.is_none() {
            // One writer holds the whole database (SQLite): no lock order to keep.
            format!("{set} WHERE grp = ? AND holder = ? AND key IN ({list})")
        } else {
            format!(
                "{set} WHERE grp = ? AND holder = ? AND key IN \
                 (SELECT key FROM evt_dedupe WHERE grp = ? AND holder = ? AND key IN ({list}) \
                 ORDER BY key COLLATE \"C\" FOR UPDATE)"
            )
        };
        // From now, once the connection is there: a renewal that waited must not write a
        // lease already partly spent.
        let until_ms = crate::dedupe::lapse_at(lease);
        let mut values = vec![
            Value::from(until_ms),
            Value::from(until_ms),
            Value::from(group),
            Value::from(holder),
        ];
        if DB::LOCK_KEY.is_some() {
            values.extend([Value::from(group), Value::from(holder)]);
        }
        values.extend(chunk.iter().map(|key| Value::from(*key)));
        let sql = DB::sql_owned(sql);
        renewed += DB::exec(&mut conn, &sql, &values).await.map_err(error)?;
    }
    Ok(renewed)
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
    release_on::<DB>(&mut conn, group, key, holder).await
}

/// [`release`] on `conn`.
async fn release_on<DB: Exec>(
    conn: &mut DB::Connection,
    group: &str,
    key: &str,
    holder: &str,
) -> Result<(), TransportError> {
    DB::exec(
        conn,
        DB::sql("DELETE FROM evt_dedupe WHERE grp = ? AND key = ? AND holder = ?"),
        args![group, key, holder],
    )
    .await
    .map_err(|err| DB::error(format!("release dedupe key for {group}"), err))
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
        key: Arc<str>,
        holder: Arc<str>,
        lease: Duration,
        reply: oneshot::Sender<Result<Claim, TransportError>>,
    },
    /// Unanswered: sent from a drop, where nobody waits.
    Release {
        group: Arc<str>,
        key: Arc<str>,
        holder: Arc<str>,
    },
}

/// Dedupe claims, marks and releases of one SQL database, written in batches: while one batch
/// is being written, the requests of every lane queue, and the next batch takes them all: the
/// marks as one multi-row upsert, then the releases, then the claims as one multi-row upsert
/// (and one read per group of the keys it could not take); on SQLite in one transaction, on
/// PostgreSQL in one per kind (each taking its rows in one order). A record's claim is written
/// before its handler and its mark after it, before the record counts as done (on SQLite each
/// autocommitted statement was a transaction of its own, the consumer's main cost).
///
/// The writer is a task of its own, started on first use (and again on the current runtime if
/// the runtime it ran on has shut down); it ends when the last handle on the database is
/// dropped. A request whose caller is dropped is still written (a mark is idempotent); a claim
/// granted to a caller that is gone is released.
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

    /// Claims `key` of `group` for `holder` for `lease`.
    ///
    /// Cancellation: a claim the writer grants after this future was dropped is released
    /// (by the writer when the answer finds nobody, or by this future's drop when the answer
    /// had already arrived).
    pub(crate) async fn claim(
        &self,
        group: &Arc<str>,
        key: &str,
        holder: &Arc<str>,
        lease: Duration,
    ) -> Result<Claim, TransportError> {
        let (reply, answer) = oneshot::channel();
        let key: Arc<str> = Arc::from(key);
        self.send(Op::Claim {
            group: group.clone(),
            key: key.clone(),
            holder: holder.clone(),
            lease,
            reply,
        })?;
        let mut pending = Pending {
            answer: Some(answer),
            batcher: self,
            group,
            key,
            holder,
        };
        let answer = pending.answer.as_mut().expect("set above").await;
        pending.answer = None;
        answer.map_err(|_| gone("claim dedupe key"))?
    }

    /// Queues the release of `holder`'s claim on `key`, without waiting: the claim lapses
    /// anyway if the release is lost.
    pub(crate) fn release_later(&self, group: &Arc<str>, key: Arc<str>, holder: &Arc<str>) {
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

/// A claim's answer awaited: dropped before it was read, it releases a granted claim.
struct Pending<'b, DB: Exec> {
    answer: Option<oneshot::Receiver<Result<Claim, TransportError>>>,
    batcher: &'b Batcher<DB>,
    group: &'b Arc<str>,
    key: Arc<str>,
    holder: &'b Arc<str>,
}

impl<DB: Exec> Drop for Pending<'_, DB> {
    fn drop(&mut self) {
        if let Some(mut answer) = self.answer.take() {
            // After `close` the writer can no longer answer: either it already did (the claim
            // is read here) or it finds nobody and releases the claim itself.
            answer.close();
            if let Ok(Ok(Claim::Claimed)) = answer.try_recv() {
                self.batcher
                    .release_later(self.group, self.key.clone(), self.holder);
            }
        }
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
                    lease,
                    reply,
                } => claims.push((group, key, holder, lease, reply)),
                Op::Release { group, key, holder } => releases.push((group, key, holder)),
            }
        }
        // Marks and releases first: a claim in the same batch then finds the key marked or free.
        let pairs: Vec<(&str, &str)> = marks.iter().map(|(g, k, _)| (&**g, &**k)).collect();
        let wanted: Vec<Wanted<'_>> = claims
            .iter()
            .map(|(group, key, holder, lease, _)| Wanted {
                group,
                key,
                holder,
                lease: *lease,
            })
            .collect();
        let (marked, answers) = if DB::LOCK_KEY.is_none() {
            // One writer holds the whole database (SQLite): one transaction for everything,
            // as no two writers can take rows in different orders.
            let written = write_together::<DB>(&pool, &pairs, &releases, &wanted).await;
            match written {
                Ok(answers) => (Ok(()), Ok(answers)),
                Err(err) => (Err(copy(&err)), Err(err)),
            }
        } else {
            // Row locks (PostgreSQL): marks and claims in transactions of their own, each in
            // one order, so that two instances' batches cannot deadlock.
            let marked = if pairs.is_empty() {
                Ok(())
            } else {
                mark_all(&pool, &pairs).await
            };
            for (group, key, holder) in &releases {
                if let Err(err) = release(&pool, group, key, holder).await {
                    tracing::debug!(group = &**group, error = %err, "a dedupe claim was not released; it lapses");
                }
            }
            let answers = if wanted.is_empty() {
                Ok(Vec::new())
            } else {
                claim_all(&pool, &wanted).await
            };
            (marked, answers)
        };
        drop((pairs, wanted));
        for (_, _, reply) in marks {
            let _ = reply.send(marked.as_ref().copied().map_err(copy));
        }
        match answers {
            Ok(answers) => {
                for ((group, key, holder, _, reply), answer) in claims.into_iter().zip(answers) {
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

/// A batch's marks, releases and claims in one writing transaction, in that order; the
/// claims' answers.
async fn write_together<DB: Exec>(
    pool: &Pool<DB>,
    marks: &[(&str, &str)],
    releases: &[(Arc<str>, Arc<str>, Arc<str>)],
    claims: &[Wanted<'_>],
) -> Result<Vec<Claim>, TransportError> {
    let error = |err| DB::error("write dedupe keys".to_owned(), err);
    let mut tx = DB::begin_write(pool).await.map_err(error)?;
    if !marks.is_empty() {
        mark_all_on::<DB>(&mut tx, marks).await?;
    }
    for (group, key, holder) in releases {
        // A failed release fails nothing else of the batch: the claim lapses.
        if let Err(err) = release_on::<DB>(&mut tx, group, key, holder).await {
            tracing::debug!(group = &**group, error = %err, "a dedupe claim was not released; it lapses");
        }
    }
    let answers = if claims.is_empty() {
        Vec::new()
    } else {
        claim_all_on::<DB>(&mut tx, claims).await?
    };
    tx.commit().await.map_err(error)?;
    Ok(answers)
}

/// Claims every `(group, key)` in one transaction of one statement.
async fn mark_all<DB: Exec>(pool: &Pool<DB>, pairs: &[(&str, &str)]) -> Result<(), TransportError> {
    let error = |err| DB::error("mark dedupe keys".to_owned(), err);
    let mut tx = DB::begin_write(pool).await.map_err(error)?;
    mark_all_on::<DB>(&mut tx, pairs).await?;
    tx.commit().await.map_err(error)
}

/// [`mark_all`] on `conn`, inside the caller's writing transaction.
async fn mark_all_on<DB: Exec>(
    conn: &mut DB::Connection,
    pairs: &[(&str, &str)],
) -> Result<(), TransportError> {
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
    DB::exec(conn, &sql, &values).await.map_err(error).map(drop)
}
