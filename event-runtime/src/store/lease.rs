//! Named leases in an SQL database's `evt_leases` table: one holder at a time per name, for a
//! bounded time that the holder renews; a holder that dies loses it when it expires.
//!
//! Taking and renewing are one statement (an upsert that only changes the row when it is ours
//! or expired), so two processes racing for an expired lease cannot both win. The code is
//! generic over the dialect, but only the SQLite schema has the table: it stands in where a
//! database has no lock bound to a connection (SQLite's outbox relay; PostgreSQL's relay takes
//! an advisory lock instead).

use std::time::Duration;

use sqlx::Pool;
use tokio::time::Instant;

use super::sql::{Exec, args};
use crate::transport::{TransportError, now_ms};

/// The longest a contender waits before asking again whether a lease another holds is free, so
/// that a lease given up early (the holder stopped) is taken within this time.
const RECHECK: Duration = Duration::from_secs(1);

/// One contender for the lease `name`.
#[derive(Debug)]
pub(crate) struct Lease {
    name: &'static str,
    holder: String,
    ttl: Duration,
    /// While we hold it: when to renew (a third of the way through).
    renew_at: Option<Instant>,
    /// While another holds it: when to ask again (at its expiry, or sooner: see [`RECHECK`]).
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
        self.retry_at = Some(now + Duration::from_millis(wait).min(RECHECK));
        Ok(false)
    }

    /// Gives the lease up if we hold it, so another contender takes it when it next asks
    /// (within [`RECHECK`]) rather than at its expiry.
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

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use std::time::Duration;

    use super::Lease;
    use crate::transport::now_ms;
    use crate::transport::sqlite::SqliteTransport;

    async fn file() -> (SqliteTransport, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("evt-lease-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        (SqliteTransport::open(dir.join("t.db")).await.unwrap(), dir)
    }

    async fn row(file: &SqliteTransport) -> Option<(String, i64)> {
        sqlx::query_as("SELECT holder, until_ms FROM evt_leases WHERE name = 'test'")
            .fetch_optional(file.pool())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn one_holder_at_a_time_and_a_release_lets_the_next_in() {
        let (file, dir) = file().await;
        let mut a = Lease::new("test", Duration::from_secs(60));
        let mut b = Lease::new("test", Duration::from_secs(60));
        assert!(a.hold(file.pool()).await.unwrap());
        assert!(!b.hold(file.pool()).await.unwrap(), "held by a");
        assert_eq!(row(&file).await.unwrap().0, a.holder);
        // b asks again within a second, not at a's expiry a minute away.
        let wait = b.retry_at.unwrap() - tokio::time::Instant::now();
        assert!(wait <= super::RECHECK, "{wait:?}");
        a.release(file.pool()).await.unwrap();
        assert_eq!(row(&file).await, None);
        b.retry_at = None;
        assert!(b.hold(file.pool()).await.unwrap(), "free after the release");
        assert!(!a.hold(file.pool()).await.unwrap(), "now held by b");
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn an_expired_lease_is_taken_and_a_live_one_is_not() {
        let (file, dir) = file().await;
        sqlx::query("INSERT INTO evt_leases (name, holder, until_ms) VALUES ('test', 'dead', ?)")
            .bind(now_ms() - 1)
            .execute(file.pool())
            .await
            .unwrap();
        let mut a = Lease::new("test", Duration::from_secs(60));
        assert!(
            a.hold(file.pool()).await.unwrap(),
            "the dead holder's lease expired"
        );
        assert_eq!(row(&file).await.unwrap().0, a.holder);

        let live = now_ms() + 60_000;
        sqlx::query("UPDATE evt_leases SET holder = 'alive', until_ms = ?")
            .bind(live)
            .execute(file.pool())
            .await
            .unwrap();
        let mut b = Lease::new("test", Duration::from_secs(60));
        assert!(!b.hold(file.pool()).await.unwrap());
        assert_eq!(
            row(&file).await,
            Some(("alive".to_owned(), live)),
            "untouched"
        );
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn the_holder_renews_a_third_of_the_way_through() {
        let (file, dir) = file().await;
        let mut a = Lease::new("test", Duration::from_millis(300));
        assert!(a.hold(file.pool()).await.unwrap());
        let first = row(&file).await.unwrap().1;
        // Before a third of the lease: answered without a statement.
        assert!(a.hold(file.pool()).await.unwrap());
        assert_eq!(row(&file).await.unwrap().1, first);
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(a.hold(file.pool()).await.unwrap());
        let renewed = row(&file).await.unwrap().1;
        assert!(renewed >= first + 100, "{first} -> {renewed}");
        std::fs::remove_dir_all(dir).ok();
    }
}
