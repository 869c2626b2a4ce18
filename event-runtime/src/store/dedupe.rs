//! Dedupe marks in any SQL database (`evt_dedupe`), written once: a claim is an insert that
//! does nothing when the key is there, so inside a transaction it both checks and marks, and a
//! concurrent claim of the same key waits for that transaction to end.

use std::time::Duration;

use sqlx::Pool;

use super::sql::{Exec, args};
use crate::transport::{TransportError, now_ms};

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
