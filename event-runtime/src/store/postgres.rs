//! PostgreSQL's dialect of the stores: `$n` placeholders, `BEGIN` with row locks and
//! transaction-scoped advisory locks where SQLite takes the whole file, errors that never carry
//! a connection URL, and the stores' tables (`migrations/postgres.sql`), created if missing.

use sqlx::{Pool, Postgres, Transaction};

use super::sql::{Sql, numbered_static};
use crate::transport::{TransportError, TransportErrorKind};

/// The schema: `evt_dead_letters`, `evt_dlq_audit`, `evt_redeliveries`, `evt_dedupe`,
/// `evt_outbox`.
const SCHEMA: &str = include_str!("../../migrations/postgres.sql");

/// Creates the stores' tables if they do not exist (idempotent, safe to run concurrently).
pub(crate) async fn ensure_schema(pool: &sqlx::PgPool) -> Result<(), TransportError> {
    sqlx::raw_sql(SCHEMA)
        .execute(pool)
        .await
        .map_err(|err| pg_error("create the PostgreSQL stores' schema", err))?;
    Ok(())
}

impl Sql for Postgres {
    fn sql(text: &'static str) -> &'static str {
        numbered_static(text)
    }

    const LOCK_KEY: Option<&'static str> = Some("SELECT pg_advisory_xact_lock(hashtext(?))");

    async fn begin_write(pool: &Pool<Self>) -> Result<Transaction<'static, Self>, sqlx::Error> {
        pool.begin().await
    }

    fn error(operation: String, err: sqlx::Error) -> TransportError {
        pg_error(operation, err)
    }

    fn rows_affected(result: &Self::QueryResult) -> u64 {
        result.rows_affected()
    }
}

/// Removes anything that looks like a connection URL (`postgres://user:password@host/db`) from
/// `text`. Returns whether something was removed.
pub(crate) fn scrub_urls(text: &str) -> (String, bool) {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut scrubbed = false;
    while let Some(at) = rest.find("://") {
        // The scheme: the letters, digits, `+`, `-` and `.` right before `://`.
        let scheme_start = rest[..at]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |i| i + 1);
        let after = &rest[at + 3..];
        let end = after
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | ')' | '>'))
            .unwrap_or(after.len());
        out.push_str(&rest[..scheme_start]);
        if scheme_start < at {
            out.push_str(&rest[scheme_start..at]);
            out.push_str("://<redacted>");
        } else {
            out.push_str("<redacted url>");
        }
        scrubbed = true;
        rest = &after[end..];
    }
    out.push_str(rest);
    (out, scrubbed)
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
    use super::scrub_urls;

    #[test]
    fn urls_are_scrubbed() {
        let (text, scrubbed) =
            scrub_urls("error connecting to postgres://bob:s3cret@db:5432/app (refused)");
        assert!(scrubbed);
        assert_eq!(text, "error connecting to postgres://<redacted> (refused)");
        assert!(!text.contains("s3cret"));
        let (text, scrubbed) = scrub_urls("relation \"evt_dedupe\" does not exist");
        assert!(!scrubbed);
        assert_eq!(text, "relation \"evt_dedupe\" does not exist");
        let (text, _) = scrub_urls("a postgresql://x:y@h/d and postgres://u:p@h2");
        assert_eq!(text, "a postgresql://<redacted> and postgres://<redacted>");
    }
}
