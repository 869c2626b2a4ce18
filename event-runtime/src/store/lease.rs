//! Named leases in any SQL database (`evt_leases`), written once: one holder at a time per name,
//! for a bounded time that the holder renews; a holder that dies loses it when it expires.
//!
//! Taking and renewing are one statement (an upsert that only changes the row when it is ours
//! or expired), so two processes racing for an expired lease cannot both win. Used where a
//! database has no lock bound to a connection that could do the job (SQLite's outbox relay).

use std::time::Duration;

use sqlx::Pool;
use tokio::time::Instant;

use super::sql::{Exec, args};
use crate::transport::{TransportError, now_ms};

/// One contender for the lease `name`.
#[derive(Debug)]
pub(crate) struct Lease {
    name: &'static str,
    holder: String,
    ttl: Duration,
    /// While we hold it: when to renew (a third of the way through).
    renew_at: Option<Instant>,
    /// While another holds it: when it may expire, so we do not ask before.
    retry_at: Option<Instant>,
}

impl Lease {
    /// A contender for `name` with a new, unique holder id, holding for `ttl` at a time.
    pub(crate) fn new(name: &'static str, ttl: Duration) -> Self {
        Lease {
            name,
            holder: uuid::Uuid::now_v7().to_string(),
            ttl,
            renew_at: None,
            retry_at: None,
        }
    }

    /// Whether we hold the lease now: takes it when free or expired, renews it when ours and a
    /// third of its time has passed, and otherwise answers from what it last learnt, without a
    /// statement.
    pub(crate) async fn hold<DB: Exec>(&mut self, pool: &Pool<DB>) -> Result<bool, TransportError> {
        let now = Instant::now();
        match (self.renew_at, self.retry_at) {
            (Some(renew_at), _) if now < renew_at => return Ok(true),
            (None, Some(retry_at)) if now < retry_at => return Ok(false),
            _ => {}
        }
        let error = |err| DB::error(format!("take the lease {}", self.name), err);
        let mut conn = pool.acquire().await.map_err(error)?;
        let wall = now_ms();
        let ttl_ms = i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX);
        let taken = DB::exec(
            &mut conn,
            DB::sql(
                "INSERT INTO evt_leases (name, holder, until_ms) VALUES (?, ?, ?) \
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until_ms = excluded.until_ms \
                 WHERE evt_leases.holder = excluded.holder OR evt_leases.until_ms < ?",
            ),
            args![self.name, &self.holder, wall + ttl_ms, wall],
        )
        .await
        .map_err(error)?;
        if taken == 1 {
            self.renew_at = Some(now + self.ttl / 3);
            self.retry_at = None;
            return Ok(true);
        }
        self.renew_at = None;
        let row = DB::row(
            &mut conn,
            DB::sql("SELECT until_ms FROM evt_leases WHERE name = ?"),
            args![self.name],
        )
        .await
        .map_err(error)?;
        let until = match row {
            Some(row) => DB::int(&row, "until_ms").map_err(error)?,
            None => wall,
        };
        let wait = u64::try_from(until.saturating_sub(wall)).unwrap_or(0);
        self.retry_at = Some(now + Duration::from_millis(wait.min(ttl_ms as u64)));
        Ok(false)
    }

    /// Gives the lease up if we hold it, so another contender takes it at once.
    pub(crate) async fn release<DB: Exec>(
        &mut self,
        pool: &Pool<DB>,
    ) -> Result<(), TransportError> {
        if self.renew_at.take().is_none() {
            return Ok(());
        }
        let error = |err| DB::error(format!("release the lease {}", self.name), err);
        let mut conn = pool.acquire().await.map_err(error)?;
        DB::exec(
            &mut conn,
            DB::sql("DELETE FROM evt_leases WHERE name = ? AND holder = ?"),
            args![self.name, &self.holder],
        )
        .await
        .map_err(error)?;
        Ok(())
    }
}
