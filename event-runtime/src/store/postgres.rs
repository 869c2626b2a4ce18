//! PostgreSQL's dialect of the stores: `$n` placeholders, `BEGIN` with row locks and
//! transaction-scoped advisory locks where SQLite takes the whole file, errors that never carry
//! a connection URL, and the stores' tables (`migrations/postgres.sql`), created if missing.

use std::sync::Arc;
use std::time::Duration;

use sqlx::{Pool, Postgres, Transaction};
use tokio::sync::{Notify, watch};

use super::scrub_urls;
use super::sql::{Sql, number_placeholders, numbered_static};
use crate::transport::{TransportError, TransportErrorKind};

/// The schema: `evt_dead_letters`, `evt_dlq_audit`, `evt_redeliveries`, `evt_dedupe`,
/// `evt_outbox`.
const SCHEMA: &str = include_str!("../../migrations/postgres.sql");

/// Creates the stores' tables if they do not exist (idempotent, safe to run concurrently).
///
/// Runs the DDL only when one of the schema's tables or indexes is missing from the current
/// schema. `CREATE INDEX IF NOT EXISTS` takes a SHARE lock on its table before it looks for the
/// index, so running the DDL beside a live app (`evt` opening the stores while the app writes a
/// dead letter and a dedupe mark in one transaction) can deadlock with the app's writes.
pub(crate) async fn ensure_schema(pool: &sqlx::PgPool) -> Result<(), TransportError> {
    let names = schema_relations(SCHEMA);
    let present: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_class \
         WHERE relnamespace = current_schema()::regnamespace AND relname = ANY($1)",
    )
    .bind(&names)
    .fetch_one(pool)
    .await
    .map_err(|err| pg_error("look up the PostgreSQL stores' schema", err))?;
    if !usize::try_from(present).is_ok_and(|present| present == names.len()) {
        sqlx::raw_sql(SCHEMA)
            .execute(pool)
            .await
            .map_err(|err| pg_error("create the PostgreSQL stores' schema", err))?;
    }
    // Only a missing column takes the table's lock, as only a missing table or index does above.
    for (table, column, declaration) in super::ADDED_COLUMNS {
        let present: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1 AND column_name = $2",
        )
        .bind(table)
        .bind(column)
        .fetch_one(pool)
        .await
        .map_err(|err| pg_error("look up the PostgreSQL stores' columns", err))?;
        if present == 0 {
            let alter =
                format!("ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {declaration}");
            serialised_ddl(pool, &alter)
                .await
                .map_err(|err| pg_error(format!("add {table}.{column}"), err))?;
        }
    }
    for (name, create) in super::ADDED_INDEXES {
        let present: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_class \
             WHERE relnamespace = current_schema()::regnamespace AND relname = $1",
        )
        .bind(name)
        .fetch_one(pool)
        .await
        .map_err(|err| pg_error("look up the PostgreSQL stores' indexes", err))?;
        if present == 0 {
            serialised_ddl(pool, create)
                .await
                .map_err(|err| pg_error(format!("create index {name}"), err))?;
        }
    }
    Ok(())
}

/// Runs `ddl` in a transaction holding the schema's advisory lock (as `migrations/postgres.sql`
/// does): two instances starting at once would otherwise both create the column or index, and
/// the second fail on the catalog's unique index despite `IF NOT EXISTS`.
async fn serialised_ddl(pool: &sqlx::PgPool, ddl: &str) -> Result<(), sqlx::Error> {
    let script = format!("BEGIN; SELECT pg_advisory_xact_lock(7458291034); {ddl}; COMMIT;");
    sqlx::raw_sql(sqlx::AssertSqlSafe(script))
        .execute(pool)
        .await
        .map(drop)
}

/// The tables and indexes `schema` creates, by name.
fn schema_relations(schema: &str) -> Vec<String> {
    schema
        .lines()
        .filter_map(|line| {
            let line = line.trim_start();
            line.strip_prefix("CREATE TABLE IF NOT EXISTS ")
                .or_else(|| line.strip_prefix("CREATE INDEX IF NOT EXISTS "))
        })
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// The stores in PostgreSQL: the pool, and the dedupe checks and marks written in batches.
#[derive(Clone, Debug)]
pub(crate) struct PgDb {
    pub(crate) pool: sqlx::PgPool,
    pub(crate) dedupe: Arc<super::dedupe::Batcher<Postgres>>,
}

impl PgDb {
    pub(crate) fn new(pool: sqlx::PgPool) -> Self {
        PgDb {
            dedupe: Arc::new(super::dedupe::Batcher::new(pool.clone())),
            pool,
        }
    }
}

impl Sql for Postgres {
    fn sql(text: &'static str) -> &'static str {
        numbered_static(text)
    }

    const LOCK_KEY: Option<&'static str> = Some("SELECT pg_advisory_xact_lock(hashtext(?))");

    async fn begin_write(pool: &Pool<Self>) -> Result<Transaction<'static, Self>, sqlx::Error> {
        pool.begin().await
    }

    async fn begin_leased(
        pool: &Pool<Self>,
        lease: Duration,
    ) -> Result<Transaction<'static, Self>, sqlx::Error> {
        // One round trip: a custom BEGIN goes as a simple query, which may hold two statements.
        // The setting is made only where the server has it, so that the BEGIN never fails after
        // opening the transaction (sqlx would hand the connection back in an aborted one); a
        // server without it (a "compatible" one) gets an unbounded transaction (no lease).
        let ms = lease.as_millis().clamp(1, i32::MAX as u128);
        pool.begin_with(sqlx::AssertSqlSafe(format!(
            "BEGIN; SELECT set_config('idle_in_transaction_session_timeout', '{ms}', true) \
             WHERE current_setting('idle_in_transaction_session_timeout', true) IS NOT NULL"
        )))
        .await
    }

    const KEEP_ALIVE: Option<&'static str> = Some("SELECT 1");

    fn error(operation: String, err: sqlx::Error) -> TransportError {
        pg_error(operation, err)
    }

    fn rows_affected(result: &Self::QueryResult) -> u64 {
        result.rows_affected()
    }

    fn sql_owned(text: String) -> String {
        number_placeholders(&text)
    }

    fn undefined_table(err: &sqlx::Error) -> bool {
        // undefined_table
        matches!(err, sqlx::Error::Database(db) if db.code().as_deref() == Some("42P01"))
    }

    // `pg_notify` is transactional: the relays hear it when (and only if) the caller commits.
    // Several stages in one transaction deliver one notification.
    const STAGE_OUTBOX: &'static str = "WITH staged AS ( \
             INSERT INTO evt_outbox (topic, event_id, record_key, headers, payload, created_ms, attempts) \
             VALUES (?, ?, ?, ?, ?, ?, 0) RETURNING id \
         ) SELECT id FROM staged, pg_notify('evt_outbox', '')";

    // The first key is ours; the second the OID of the `evt_outbox` table, so relays of
    // different schemas of one database do not wait for each other.
    const RELAY_LOCK: Option<&'static str> = Some(
        "SELECT pg_try_advisory_xact_lock(745829103, ('evt_outbox'::regclass)::oid::int) AS locked",
    );

    // LISTEN wakes the relay; the poll only covers a missed notification.
    const OUTBOX_POLL: Duration = Duration::from_millis(200);

    async fn watch_outbox(pool: Pool<Self>, wake: Arc<Notify>, shutdown: watch::Receiver<bool>) {
        listen(pool, wake, shutdown).await;
    }
}

/// Listens on the outbox's channel with a connection of its own (the app's pool keeps all of
/// its connections) and wakes the relay on every notification; reconnects after a failure.
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
                Ok(mut listener) => match listener.listen("evt_outbox").await {
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

/// A [`TransportError`] for a PostgreSQL error, with any URL removed. The sqlx error is kept as
/// the source only when its text holds no URL (the error chain is printed and dead-lettered).
pub(crate) fn pg_error(operation: impl Into<String>, err: sqlx::Error) -> TransportError {
    let kind = match &err {
        sqlx::Error::Database(db)
            if matches!(
                db.code().as_deref(),
                // serialization_failure, deadlock_detected, lock_not_available, too_many_connections,
                // admin_shutdown, cannot_connect_now
                Some("40001" | "40P01" | "55P03" | "53300" | "57P01" | "57P03")
            ) =>
        {
            TransportErrorKind::Unavailable
        }
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
            TransportErrorKind::Unavailable
        }
        _ => TransportErrorKind::Other,
    };
    let (message, scrubbed) = scrub_urls(&err.to_string());
    let error = TransportError::new(kind, operation, message);
    if scrubbed {
        error
    } else {
        error.with_source(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_names_every_table_and_index_it_creates() {
        let names = schema_relations(SCHEMA);
        let creates = SCHEMA
            .lines()
            .filter(|line| line.trim_start().starts_with("CREATE "))
            .count();
        assert_eq!(names.len(), creates, "{names:?}");
        for table in [
            "evt_dedupe",
            "evt_dead_letters",
            "evt_dlq_audit",
            "evt_redeliveries",
            "evt_outbox",
        ] {
            assert!(
                names.iter().any(|name| name == table),
                "{table} missing from {names:?}"
            );
        }
        assert!(names.contains(&"evt_dedupe_seen".to_owned()), "{names:?}");
    }
}
