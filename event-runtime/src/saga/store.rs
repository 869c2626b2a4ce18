//! Saga instances in any SQL database, written once: `evt_sagas` (one row per instance),
//! `evt_saga_history` (one row per transition) and `evt_saga_timers` (pending timers).

use std::collections::BTreeMap;

use super::{Instance, Saga, Status, Written, epoch_ms};
use crate::handler::HandlerError;
use crate::store::sql::{Exec, args};
use crate::transport::now_ms;

/// The instance of saga `S` with `key`, locked until the transaction ends (PostgreSQL; SQLite's
/// writer holds the whole file).
pub(crate) async fn load<DB: Exec, S: Saga>(
    conn: &mut DB::Connection,
    key: &str,
) -> Result<Option<Instance<S>>, HandlerError> {
    let error = |err| DB::error(format!("load saga {} instance {key}", S::NAME), err);
    let Some(row) = DB::row(
        conn,
        DB::sql(
            "SELECT version, status, state, state_version, timers, reason, created_ms \
             FROM evt_sagas WHERE saga = ? AND key = ? FOR UPDATE",
        ),
        args![S::NAME, key],
    )
    .await
    .map_err(error)?
    else {
        return Ok(None);
    };
    let status = DB::text(&row, "status").map_err(error)?;
    let corrupt = |what: String| {
        HandlerError::permanent(format!(
            "the stored instance of saga `{}` with key `{key}` cannot be read: {what}",
            S::NAME
        ))
    };
    let status =
        Status::parse(&status).ok_or_else(|| corrupt(format!("unknown status `{status}`")))?;
    let stored = DB::int(&row, "state_version").map_err(error)?;
    let state: S =
        decode_state::<S>(&DB::blob(&row, "state").map_err(error)?, stored).map_err(corrupt)?;
    let timers = DB::text(&row, "timers").map_err(error)?;
    let timers: BTreeMap<String, i64> = serde_json::from_str(&timers)
        .map_err(|err| corrupt(format!("its timers are malformed: {err}")))?;
    Ok(Some(Instance {
        state,
        version: DB::int(&row, "version").map_err(error)?,
        status,
        reason: DB::opt_text(&row, "reason").map_err(error)?,
        timers,
        started_ms: Some(DB::int(&row, "created_ms").map_err(error)?),
    }))
}

/// What caused a transition: recorded in the history and on the timers it schedules.
pub(crate) struct Cause<'a> {
    pub(crate) message_type: &'a str,
    pub(crate) message_id: &'a str,
    pub(crate) correlation_id: Option<&'a str>,
}

/// The state of saga `S` stored at version `stored`: lifted through [`Saga::upcast_state`] to
/// this code's version, then decoded; or why not.
pub(crate) fn decode_state<S: Saga>(bytes: &[u8], stored: i64) -> Result<S, String> {
    let current = i64::from(S::STATE_VERSION);
    if stored > current {
        return Err(format!(
            "its state was written at version {stored} by newer code; this code reads up to version {current}"
        ));
    }
    if stored == current {
        return serde_json::from_slice(bytes)
            .map_err(|err| format!("its state does not decode as this code's type: {err}"));
    }
    let mut value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|err| format!("its state (version {stored}) is not JSON: {err}"))?;
    for from in stored.max(1)..current {
        let from = u32::try_from(from).unwrap_or(u32::MAX);
        value = S::upcast_state(from, value).map_err(|err| {
            format!(
                "its state cannot be lifted from version {from} to {}: {err}",
                from + 1
            )
        })?;
    }
    serde_json::from_value(value).map_err(|err| {
        format!("its state, lifted from version {stored} to {current}, does not decode: {err}")
    })
}

/// Writes `written` for the instance of `saga` with `key`: the row (only if still at the
/// version the transition read, one below `written.version`; 0: none), the history entry and
/// the timer rows.
pub(crate) async fn save<DB: Exec>(
    conn: &mut DB::Connection,
    saga: &str,
    key: &str,
    written: &Written,
    cause: &Cause<'_>,
) -> Result<(), HandlerError> {
    let read = written.version - 1;
    let error = |err| DB::error(format!("save saga {saga} instance {key}"), err);
    let now = now_ms();
    let timers = serde_json::to_string(&written.timers).expect("a map of strings to integers");
    let status = written.status.as_str();
    let changed = if read == 0 {
        DB::exec(
            conn,
            DB::sql(
                "INSERT INTO evt_sagas (saga, key, version, status, state, state_version, timers, reason, created_ms, updated_ms) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (saga, key) DO NOTHING",
            ),
            args![
                saga,
                key,
                written.version,
                status,
                &written.state,
                i64::from(written.state_version),
                &timers,
                &written.reason,
                now,
                now
            ],
        )
        .await
    } else {
        DB::exec(
            conn,
            DB::sql(
                "UPDATE evt_sagas SET version = ?, status = ?, state = ?, state_version = ?, timers = ?, reason = ?, updated_ms = ? \
                 WHERE saga = ? AND key = ? AND version = ?",
            ),
            args![
                written.version,
                status,
                &written.state,
                i64::from(written.state_version),
                &timers,
                &written.reason,
                now,
                saga,
                key,
                read
            ],
        )
        .await
    }
    .map_err(error)?;
    if changed != 1 {
        // Another writer moved the instance since it was read: the retry reads its state.
        return Err(HandlerError::transient(format!(
            "saga `{saga}` instance `{key}` changed while this message was handled (read version {read})"
        )));
    }
    DB::exec(
        conn,
        DB::sql(
            "INSERT INTO evt_saga_history (saga, key, version, message_type, message_id, status, at_ms) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        ),
        args![
            saga,
            key,
            written.version,
            cause.message_type,
            cause.message_id,
            status,
            now
        ],
    )
    .await
    .map_err(error)?;
    for name in &written.cancel {
        DB::exec(
            conn,
            DB::sql("DELETE FROM evt_saga_timers WHERE saga = ? AND key = ? AND name = ?"),
            args![saga, key, name],
        )
        .await
        .map_err(error)?;
    }
    for (name, at) in &written.schedule {
        DB::exec(
            conn,
            DB::sql(
                "INSERT INTO evt_saga_timers (saga, key, name, token, due_ms, correlation_id, causation_id) \
                 VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (saga, key, name) DO UPDATE SET \
                 token = excluded.token, due_ms = excluded.due_ms, \
                 correlation_id = excluded.correlation_id, causation_id = excluded.causation_id",
            ),
            args![
                saga,
                key,
                name,
                written.version,
                epoch_ms(*at),
                cause.correlation_id,
                cause.message_id
            ],
        )
        .await
        .map_err(error)?;
    }
    Ok(())
}

/// One stored instance, as operators see it ([`super::Sagas`]).
#[derive(Clone, Debug, PartialEq)]
pub struct InstanceRecord {
    /// The saga's name.
    pub saga: String,
    /// The instance's key.
    pub key: String,
    /// Transitions made.
    pub version: i64,
    /// Where it stands.
    pub status: Status,
    /// Its state, as stored (JSON).
    pub state: serde_json::Value,
    /// The version of the state's stored form ([`super::Saga::STATE_VERSION`] of the code
    /// that wrote it).
    pub state_version: u32,
    /// Why it failed, for a failed instance.
    pub reason: Option<String>,
    /// Pending timers by name, with the version that scheduled each.
    pub timers: BTreeMap<String, i64>,
    /// When it started and last moved, in milliseconds since the Unix epoch.
    pub created_ms: i64,
    /// See `created_ms`.
    pub updated_ms: i64,
}

/// One transition of an instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryEntry {
    /// The version it made.
    pub version: i64,
    /// The wire type of the message that caused it, or `timer:<name>`.
    pub message_type: String,
    /// That message's id.
    pub message_id: String,
    /// The status after it.
    pub status: Status,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: i64,
}

/// The transitions made by the message with id `message_id` (one per saga it moved), as
/// `(saga, key, entry)`: what `evt trace` shows under that message.
pub(crate) async fn transitions_of<DB: Exec>(
    pool: &sqlx::Pool<DB>,
    message_id: &str,
) -> Result<Vec<(String, String, HistoryEntry)>, crate::transport::TransportError> {
    let error = |err| {
        DB::error(
            format!("read the saga transitions of message {message_id}"),
            err,
        )
    };
    let mut conn = pool.acquire().await.map_err(error)?;
    let rows = DB::rows(
        &mut conn,
        DB::sql(
            "SELECT saga, key, version, message_type, message_id, status, at_ms \
             FROM evt_saga_history WHERE message_id = ? ORDER BY id",
        ),
        args![message_id],
    )
    .await
    .map_err(error)?;
    rows.iter()
        .map(|row| {
            Ok((
                DB::text(row, "saga")?,
                DB::text(row, "key")?,
                history_entry::<DB>(row)?,
            ))
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(error)
}

/// The pending timers scheduled in correlation `correlation_id`, earliest first.
pub(crate) async fn timers_of<DB: Exec>(
    pool: &sqlx::Pool<DB>,
    correlation_id: &str,
) -> Result<Vec<super::PendingTimer>, crate::transport::TransportError> {
    let error = |err| {
        DB::error(
            format!("read the saga timers of correlation {correlation_id}"),
            err,
        )
    };
    let mut conn = pool.acquire().await.map_err(error)?;
    let rows = DB::rows(
        &mut conn,
        DB::sql(
            "SELECT saga, key, name, due_ms, causation_id FROM evt_saga_timers \
             WHERE correlation_id = ? ORDER BY due_ms, saga, key, name",
        ),
        args![correlation_id],
    )
    .await
    .map_err(error)?;
    rows.iter()
        .map(|row| {
            Ok(super::PendingTimer {
                saga: DB::text(row, "saga")?,
                key: DB::text(row, "key")?,
                name: DB::text(row, "name")?,
                due_ms: DB::int(row, "due_ms")?,
                causation_id: DB::opt_text(row, "causation_id")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(error)
}

/// One `evt_saga_history` row.
fn history_entry<DB: Exec>(row: &DB::Row) -> Result<HistoryEntry, sqlx::Error> {
    let status = DB::text(row, "status")?;
    Ok(HistoryEntry {
        version: DB::int(row, "version")?,
        message_type: DB::text(row, "message_type")?,
        message_id: DB::text(row, "message_id")?,
        status: Status::parse(&status).ok_or_else(|| {
            sqlx::Error::Decode(format!("evt_saga_history.status: {status}").into())
        })?,
        at_ms: DB::int(row, "at_ms")?,
    })
}

const INSTANCE_COLUMNS: &str = "SELECT saga, key, version, status, state, state_version, timers, reason, created_ms, updated_ms FROM evt_sagas";

fn instance_of<DB: Exec>(row: &DB::Row) -> Result<InstanceRecord, sqlx::Error> {
    let decode = |what: &str, err: &dyn std::fmt::Display| {
        sqlx::Error::Decode(format!("evt_sagas.{what}: {err}").into())
    };
    let status = DB::text(row, "status")?;
    Ok(InstanceRecord {
        saga: DB::text(row, "saga")?,
        key: DB::text(row, "key")?,
        version: DB::int(row, "version")?,
        status: Status::parse(&status).ok_or_else(|| decode("status", &status))?,
        state: serde_json::from_slice(&DB::blob(row, "state")?)
            .map_err(|err| decode("state", &err))?,
        state_version: u32::try_from(DB::int(row, "state_version")?)
            .map_err(|err| decode("state_version", &err))?,
        reason: DB::opt_text(row, "reason")?,
        timers: serde_json::from_str(&DB::text(row, "timers")?)
            .map_err(|err| decode("timers", &err))?,
        created_ms: DB::int(row, "created_ms")?,
        updated_ms: DB::int(row, "updated_ms")?,
    })
}

/// The instance of `saga` with `key`.
pub(crate) async fn instance<DB: Exec>(
    pool: &sqlx::Pool<DB>,
    saga: &str,
    key: &str,
) -> Result<Option<InstanceRecord>, crate::transport::TransportError> {
    let error = |err| DB::error(format!("read saga {saga} instance {key}"), err);
    let mut conn = pool.acquire().await.map_err(error)?;
    let sql = DB::sql_owned(format!("{INSTANCE_COLUMNS} WHERE saga = ? AND key = ?"));
    let row = DB::row(&mut conn, &sql, args![saga, key])
        .await
        .map_err(error)?;
    row.map(|row| instance_of::<DB>(&row))
        .transpose()
        .map_err(error)
}

/// Queues repair `action` by `actor` for the instance of `saga` with `key`, at its current
/// version (which must be `at_version`, if given): a timer row due now, which the timer task
/// fires through the log like any other. Whether an unfinished instance (at that version) was
/// there to repair.
pub(crate) async fn request_repair<DB: Exec>(
    pool: &sqlx::Pool<DB>,
    saga: &str,
    key: &str,
    action: super::Repair,
    actor: &str,
    at_version: Option<i64>,
) -> Result<bool, crate::transport::TransportError> {
    let error = |err| DB::error(format!("queue a repair of saga {saga} instance {key}"), err);
    let mut conn = pool.acquire().await.map_err(error)?;
    let name = format!("{}{}:{actor}", super::REPAIR, action.as_str());
    let queued = DB::exec(
        &mut conn,
        DB::sql(
            "INSERT INTO evt_saga_timers (saga, key, name, token, due_ms) \
             SELECT saga, key, ?, version, ? FROM evt_sagas \
             WHERE saga = ? AND key = ? AND status IN ('running', 'stuck') \
             AND (CAST(? AS BIGINT) IS NULL OR version = ?) \
             ON CONFLICT (saga, key, name) DO UPDATE SET token = excluded.token, due_ms = excluded.due_ms",
        ),
        args![name.as_str(), now_ms(), saga, key, at_version, at_version],
    )
    .await
    .map_err(error)?;
    Ok(queued > 0)
}

/// The instances of `saga` (every saga when `None`) with `status` (any when `None`), oldest
/// first, at most `limit`.
pub(crate) async fn instances<DB: Exec>(
    pool: &sqlx::Pool<DB>,
    saga: Option<&str>,
    status: Option<Status>,
    limit: i64,
) -> Result<Vec<InstanceRecord>, crate::transport::TransportError> {
    let error = |err| DB::error("list saga instances".to_owned(), err);
    let mut conn = pool.acquire().await.map_err(error)?;
    let sql = DB::sql_owned(format!(
        "{INSTANCE_COLUMNS} WHERE (CAST(? AS TEXT) IS NULL OR saga = ?) AND (CAST(? AS TEXT) IS NULL OR status = ?) \
         ORDER BY created_ms, saga, key LIMIT ?"
    ));
    let status = status.map(Status::as_str);
    let rows = DB::rows(&mut conn, &sql, args![saga, saga, status, status, limit])
        .await
        .map_err(error)?;
    rows.iter()
        .map(|row| instance_of::<DB>(row))
        .collect::<Result<_, _>>()
        .map_err(error)
}

/// The transitions of the instance of `saga` with `key`, oldest first.
pub(crate) async fn history<DB: Exec>(
    pool: &sqlx::Pool<DB>,
    saga: &str,
    key: &str,
) -> Result<Vec<HistoryEntry>, crate::transport::TransportError> {
    let error = |err| DB::error(format!("read saga {saga} instance {key} history"), err);
    let mut conn = pool.acquire().await.map_err(error)?;
    let rows = DB::rows(
        &mut conn,
        DB::sql(
            "SELECT version, message_type, message_id, status, at_ms FROM evt_saga_history \
             WHERE saga = ? AND key = ? ORDER BY id",
        ),
        args![saga, key],
    )
    .await
    .map_err(error)?;
    rows.iter()
        .map(history_entry::<DB>)
        .collect::<Result<_, sqlx::Error>>()
        .map_err(error)
}

/// Instances per saga and status: `(saga, status, count)`.
pub(crate) async fn counts<DB: Exec>(
    pool: &sqlx::Pool<DB>,
) -> Result<Vec<(String, Status, u64)>, crate::transport::TransportError> {
    let error = |err| DB::error("count saga instances".to_owned(), err);
    let mut conn = pool.acquire().await.map_err(error)?;
    let rows = DB::rows(
        &mut conn,
        DB::sql("SELECT saga, status, COUNT(*) AS n FROM evt_sagas GROUP BY saga, status"),
        args![],
    )
    .await
    .map_err(error)?;
    let mut counts = Vec::with_capacity(rows.len());
    for row in &rows {
        let status = DB::text(row, "status").map_err(error)?;
        let Some(status) = Status::parse(&status) else {
            continue;
        };
        let n = DB::int(row, "n").map_err(error)?;
        counts.push((
            DB::text(row, "saga").map_err(error)?,
            status,
            u64::try_from(n).unwrap_or(0),
        ));
    }
    Ok(counts)
}

/// Pending timers per saga, with the due time of the earliest: `(saga, pending, earliest_ms)`.
pub(crate) async fn timer_counts<DB: Exec>(
    pool: &sqlx::Pool<DB>,
) -> Result<Vec<(String, u64, i64)>, crate::transport::TransportError> {
    let error = |err| DB::error("count saga timers".to_owned(), err);
    let mut conn = pool.acquire().await.map_err(error)?;
    let rows = DB::rows(
        &mut conn,
        DB::sql(
            "SELECT saga, COUNT(*) AS n, MIN(due_ms) AS due FROM evt_saga_timers GROUP BY saga",
        ),
        args![],
    )
    .await
    .map_err(error)?;
    rows.iter()
        .map(|row| {
            Ok((
                DB::text(row, "saga")?,
                u64::try_from(DB::int(row, "n")?).unwrap_or(0),
                DB::int(row, "due")?,
            ))
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(error)
}

/// Deletes the instances finished before `cutoff_ms` (their last transition), with their
/// history, in one transaction; how many instances.
pub(crate) async fn purge_finished<DB: Exec>(
    pool: &sqlx::Pool<DB>,
    cutoff_ms: i64,
) -> Result<u64, crate::transport::TransportError> {
    let error = |err| DB::error("delete finished saga instances".to_owned(), err);
    let mut tx = DB::begin_write(pool).await.map_err(error)?;
    DB::exec(
        &mut tx,
        DB::sql(
            "DELETE FROM evt_saga_history WHERE EXISTS (SELECT 1 FROM evt_sagas s \
             WHERE s.saga = evt_saga_history.saga AND s.key = evt_saga_history.key \
             AND s.status IN ('completed', 'failed') AND s.updated_ms < ?)",
        ),
        args![cutoff_ms],
    )
    .await
    .map_err(error)?;
    let deleted = DB::exec(
        &mut tx,
        DB::sql("DELETE FROM evt_sagas WHERE status IN ('completed', 'failed') AND updated_ms < ?"),
        args![cutoff_ms],
    )
    .await
    .map_err(error)?;
    tx.commit().await.map_err(error)?;
    Ok(deleted)
}

/// One instance or timer that the code being checked could not carry on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unreadable {
    /// The instance's key.
    pub key: String,
    /// The pending timer, when the problem is a timer.
    pub timer: Option<String>,
    /// What is wrong.
    pub why: String,
}

/// Every unfinished instance of `S` and its pending timers, read with this code.
pub(crate) async fn check<DB: Exec, S: Saga>(
    pool: &sqlx::Pool<DB>,
) -> Result<Vec<Unreadable>, crate::transport::TransportError> {
    let error = |err| DB::error(format!("check saga {}", S::NAME), err);
    let mut conn = pool.acquire().await.map_err(error)?;
    let rows = DB::rows(
        &mut conn,
        DB::sql(
            "SELECT key, state, state_version FROM evt_sagas \
             WHERE saga = ? AND status IN ('running', 'stuck') ORDER BY key",
        ),
        args![S::NAME],
    )
    .await
    .map_err(error)?;
    let mut problems = Vec::new();
    for row in &rows {
        let key = DB::text(row, "key").map_err(error)?;
        let stored = DB::int(row, "state_version").map_err(error)?;
        let why = match decode_state::<S>(&DB::blob(row, "state").map_err(error)?, stored) {
            Ok(state) => state.check().err(),
            Err(why) => Some(why),
        };
        if let Some(why) = why {
            problems.push(Unreadable {
                key,
                timer: None,
                why,
            });
        }
    }
    let timers = DB::rows(
        &mut conn,
        DB::sql("SELECT key, name FROM evt_saga_timers WHERE saga = ? ORDER BY key, name"),
        args![S::NAME],
    )
    .await
    .map_err(error)?;
    for row in &timers {
        let name = DB::text(row, "name").map_err(error)?;
        if !name.starts_with(super::REPAIR) && !S::knows_timer(&name) {
            problems.push(Unreadable {
                key: DB::text(row, "key").map_err(error)?,
                why: format!("timer `{name}` means nothing to this code"),
                timer: Some(name),
            });
        }
    }
    Ok(problems)
}
