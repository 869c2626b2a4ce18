//! The row-level interface of the SQL stores, written once for every SQL database.
//!
//! Statements are written once, with `?` placeholders and `"offset"` quoted (both dialects read
//! that); a dialect ([`Sql`]) rewrites placeholders, says how a writing transaction begins and
//! how one is serialised on a key, maps errors, and adds the few statements only it has. The
//! bounds sqlx needs to run a statement on a generic database are written once here, in the
//! blanket [`Exec`] implementation, so the lifecycles only ask for `DB: Exec`.

use std::future::Future;

use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Pool, Transaction, Type};

use crate::transport::TransportError;

mod sealed {
    pub trait Sealed {}
}

/// A SQL database the stores can live in: [`sqlx::Sqlite`] (feature `sqlite`) or
/// [`sqlx::Postgres`] (feature `postgres`). Sealed; the dialect itself is private.
pub trait Dialect: sqlx::Database + sealed::Sealed + Exec {}

impl<DB: sqlx::Database + sealed::Sealed + Exec> Dialect for DB {}

#[cfg(feature = "sqlite")]
impl sealed::Sealed for sqlx::Sqlite {}
#[cfg(feature = "postgres")]
impl sealed::Sealed for sqlx::Postgres {}

/// What a database contributes: its dialect.
#[doc(hidden)]
pub trait Sql: sqlx::Database {
    /// A statement written for every dialect, adapted to this one: `?` placeholders numbered
    /// (`$1`, `$2`, ... on PostgreSQL); a trailing ` FOR UPDATE` (or ` FOR UPDATE SKIP LOCKED`)
    /// dropped where the writer holds the whole database (SQLite).
    fn sql(text: &'static str) -> &'static str;
    /// A statement taking one text parameter that serialises, until the transaction ends, every
    /// transaction passing the same text; `None` where a writing transaction already holds the
    /// whole database (SQLite's `BEGIN IMMEDIATE`).
    const LOCK_KEY: Option<&'static str>;
    /// Begins a transaction that will write.
    fn begin_write(
        pool: &Pool<Self>,
    ) -> impl Future<Output = Result<Transaction<'static, Self>, sqlx::Error>> + Send;
    /// Begins a writing transaction that the server ends, terminating its session and so
    /// releasing its locks, once it sits idle for `lease` (PostgreSQL's
    /// `idle_in_transaction_session_timeout`, for this transaction alone): a process paused or
    /// cut off inside it holds its locks no longer than a claim's lease. [`Sql::KEEP_ALIVE`] keeps a live one going. Where the database has no
    /// such bound (SQLite), [`Sql::begin_write`].
    fn begin_leased(
        pool: &Pool<Self>,
        lease: std::time::Duration,
    ) -> impl Future<Output = Result<Transaction<'static, Self>, sqlx::Error>> + Send;
    /// A statement that does nothing but reset a [`Sql::begin_leased`] transaction's idle time;
    /// `None` where such transactions have no bound.
    const KEEP_ALIVE: Option<&'static str>;
    /// A [`TransportError`] for `err`, classified (busy, unavailable, other) and never holding a
    /// connection URL.
    fn error(operation: String, err: sqlx::Error) -> TransportError;
    /// Rows a statement changed.
    fn rows_affected(result: &Self::QueryResult) -> u64;
    /// A statement built at run time (a list of placeholders), adapted as [`Sql::sql`] adapts.
    fn sql_owned(text: String) -> String;
    /// Whether `err` says a table the statement names does not exist.
    fn undefined_table(err: &sqlx::Error) -> bool;

    /// Stages one outbox row from `topic, event_id, record_key, headers, payload, created_ms`,
    /// answering its `id`; where the database can, it also wakes the relays when the caller
    /// commits.
    const STAGE_OUTBOX: &'static str;
    /// How a relay drains the outbox alone: a statement answering `locked` that, when true,
    /// holds an exclusive lock until the transaction ends (and dies with the connection); `None`
    /// where no such lock exists, and a lease in `evt_leases` does the job.
    const RELAY_LOCK: Option<&'static str>;
    /// How often a relay looks for outbox rows nobody told it about.
    const OUTBOX_POLL: std::time::Duration;
    /// Wakes `wake` whenever outbox rows may have been committed, until `shutdown`; returns at
    /// once where the database cannot tell (the relay then polls).
    fn watch_outbox(
        pool: Pool<Self>,
        wake: std::sync::Arc<tokio::sync::Notify>,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> impl Future<Output = ()> + Send + 'static;
}

/// One value bound to a statement.
#[doc(hidden)]
#[derive(Clone, Copy, Debug)]
pub enum Value<'a> {
    Int(Option<i64>),
    Text(Option<&'a str>),
    Blob(Option<&'a [u8]>),
    Bool(bool),
}

impl From<i64> for Value<'_> {
    fn from(value: i64) -> Self {
        Value::Int(Some(value))
    }
}

impl From<Option<i64>> for Value<'_> {
    fn from(value: Option<i64>) -> Self {
        Value::Int(value)
    }
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(value: &'a str) -> Self {
        Value::Text(Some(value))
    }
}

impl<'a> From<&'a String> for Value<'a> {
    fn from(value: &'a String) -> Self {
        Value::Text(Some(value))
    }
}

impl<'a> From<Option<&'a str>> for Value<'a> {
    fn from(value: Option<&'a str>) -> Self {
        Value::Text(value)
    }
}

impl<'a> From<&'a Option<String>> for Value<'a> {
    fn from(value: &'a Option<String>) -> Self {
        Value::Text(value.as_deref())
    }
}

impl<'a> From<&'a [u8]> for Value<'a> {
    fn from(value: &'a [u8]) -> Self {
        Value::Blob(Some(value))
    }
}

impl<'a> From<&'a Vec<u8>> for Value<'a> {
    fn from(value: &'a Vec<u8>) -> Self {
        Value::Blob(Some(value))
    }
}

impl<'a> From<&'a Option<Vec<u8>>> for Value<'a> {
    fn from(value: &'a Option<Vec<u8>>) -> Self {
        Value::Blob(value.as_deref())
    }
}

impl<'a> From<&'a bytes::Bytes> for Value<'a> {
    fn from(value: &'a bytes::Bytes) -> Self {
        Value::Blob(Some(value))
    }
}

impl<'a> From<&'a Option<bytes::Bytes>> for Value<'a> {
    fn from(value: &'a Option<bytes::Bytes>) -> Self {
        Value::Blob(value.as_deref())
    }
}

/// A record's headers, in their stored form.
impl<'a> From<&'a crate::transport::Headers> for Value<'a> {
    fn from(value: &'a crate::transport::Headers) -> Self {
        Value::Blob(Some(value.as_blob()))
    }
}

impl From<bool> for Value<'_> {
    fn from(value: bool) -> Self {
        Value::Bool(value)
    }
}

/// `[a, b, c]` as bound values.
macro_rules! args {
    ($($value:expr),* $(,)?) => {
        &[$($crate::store::sql::Value::from($value)),*]
    };
}
pub(crate) use args;

/// Runs statements and reads columns on any SQL database the stores support.
#[doc(hidden)]
pub trait Exec: Sql {
    /// Runs `sql` on `conn`; the rows it changed.
    fn exec<'c>(
        conn: &'c mut Self::Connection,
        sql: &'c str,
        args: &'c [Value<'c>],
    ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send + 'c;
    /// Every row `sql` returns.
    fn rows<'c>(
        conn: &'c mut Self::Connection,
        sql: &'c str,
        args: &'c [Value<'c>],
    ) -> impl Future<Output = Result<Vec<Self::Row>, sqlx::Error>> + Send + 'c;
    /// The first row `sql` returns, if any.
    fn row<'c>(
        conn: &'c mut Self::Connection,
        sql: &'c str,
        args: &'c [Value<'c>],
    ) -> impl Future<Output = Result<Option<Self::Row>, sqlx::Error>> + Send + 'c;

    fn int(row: &Self::Row, column: &str) -> Result<i64, sqlx::Error>;
    fn opt_int(row: &Self::Row, column: &str) -> Result<Option<i64>, sqlx::Error>;
    fn text(row: &Self::Row, column: &str) -> Result<String, sqlx::Error>;
    fn opt_text(row: &Self::Row, column: &str) -> Result<Option<String>, sqlx::Error>;
    fn blob(row: &Self::Row, column: &str) -> Result<Vec<u8>, sqlx::Error>;
    fn opt_blob(row: &Self::Row, column: &str) -> Result<Option<Vec<u8>>, sqlx::Error>;
    fn flag(row: &Self::Row, column: &str) -> Result<bool, sqlx::Error>;
}

fn bind<'q, DB>(
    mut query: sqlx::query::Query<'q, DB, DB::Arguments>,
    args: &[Value<'_>],
) -> sqlx::query::Query<'q, DB, DB::Arguments>
where
    DB: sqlx::Database,
    for<'v> Option<i64>: Encode<'v, DB> + Type<DB>,
    for<'v> Option<&'v str>: Encode<'v, DB> + Type<DB>,
    for<'v> Option<&'v [u8]>: Encode<'v, DB> + Type<DB>,
    for<'v> bool: Encode<'v, DB> + Type<DB>,
{
    for value in args {
        query = match *value {
            Value::Int(v) => query.bind(v),
            Value::Text(v) => query.bind(v),
            Value::Blob(v) => query.bind(v),
            Value::Bool(v) => query.bind(v),
        };
    }
    query
}

impl<DB> Exec for DB
where
    DB: Sql,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'v> Option<i64>: Encode<'v, DB> + Type<DB>,
    for<'v> Option<&'v str>: Encode<'v, DB> + Type<DB>,
    for<'v> Option<&'v [u8]>: Encode<'v, DB> + Type<DB>,
    for<'v> bool: Encode<'v, DB> + Type<DB>,
    for<'r> i64: Decode<'r, DB> + Type<DB>,
    for<'r> Option<i64>: Decode<'r, DB>,
    for<'r> String: Decode<'r, DB> + Type<DB>,
    for<'r> Option<String>: Decode<'r, DB>,
    for<'r> Vec<u8>: Decode<'r, DB> + Type<DB>,
    for<'r> Option<Vec<u8>>: Decode<'r, DB>,
    for<'r> bool: Decode<'r, DB>,
    for<'s> &'s str: ColumnIndex<DB::Row>,
{
    async fn exec(
        conn: &mut Self::Connection,
        sql: &str,
        args: &[Value<'_>],
    ) -> Result<u64, sqlx::Error> {
        {
            let query = bind(sqlx::query::<DB>(sqlx::AssertSqlSafe(sql)), args);
            let done = conn.execute(query).await?;
            Ok(DB::rows_affected(&done))
        }
    }

    async fn rows(
        conn: &mut Self::Connection,
        sql: &str,
        args: &[Value<'_>],
    ) -> Result<Vec<Self::Row>, sqlx::Error> {
        {
            let query = bind(sqlx::query::<DB>(sqlx::AssertSqlSafe(sql)), args);
            conn.fetch_all(query).await
        }
    }

    async fn row(
        conn: &mut Self::Connection,
        sql: &str,
        args: &[Value<'_>],
    ) -> Result<Option<Self::Row>, sqlx::Error> {
        {
            let query = bind(sqlx::query::<DB>(sqlx::AssertSqlSafe(sql)), args);
            conn.fetch_optional(query).await
        }
    }

    fn int(row: &Self::Row, column: &str) -> Result<i64, sqlx::Error> {
        sqlx::Row::try_get(row, column)
    }
    fn opt_int(row: &Self::Row, column: &str) -> Result<Option<i64>, sqlx::Error> {
        sqlx::Row::try_get(row, column)
    }
    fn text(row: &Self::Row, column: &str) -> Result<String, sqlx::Error> {
        sqlx::Row::try_get(row, column)
    }
    fn opt_text(row: &Self::Row, column: &str) -> Result<Option<String>, sqlx::Error> {
        sqlx::Row::try_get(row, column)
    }
    fn blob(row: &Self::Row, column: &str) -> Result<Vec<u8>, sqlx::Error> {
        sqlx::Row::try_get(row, column)
    }
    fn opt_blob(row: &Self::Row, column: &str) -> Result<Option<Vec<u8>>, sqlx::Error> {
        sqlx::Row::try_get(row, column)
    }
    fn flag(row: &Self::Row, column: &str) -> Result<bool, sqlx::Error> {
        sqlx::Row::try_get(row, column)
    }
}

/// `?` placeholders numbered `$1`, `$2`, ... (PostgreSQL), outside quoted strings and
/// identifiers.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) fn number_placeholders(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut n = 0;
    let mut quote: Option<char> = None;
    for c in text.chars() {
        match (quote, c) {
            (None, '\'' | '"') => {
                quote = Some(c);
                out.push(c);
            }
            (Some(q), _) if q == c => {
                quote = None;
                out.push(c);
            }
            (None, '?') => {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            }
            _ => out.push(c),
        }
    }
    out
}

/// `number_placeholders` of a static statement, computed once per statement.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) fn numbered_static(text: &'static str) -> &'static str {
    use std::collections::HashMap;
    use std::sync::{LazyLock, RwLock};
    static CACHE: LazyLock<RwLock<HashMap<&'static str, &'static str>>> =
        LazyLock::new(RwLock::default);
    if let Some(done) = CACHE
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(text)
    {
        return done;
    }
    let mut cache = CACHE
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // The statements are the crate's own constants: a bounded set, leaked once each.
    cache
        .entry(text)
        .or_insert_with(|| Box::leak(number_placeholders(text).into_boxed_str()))
}

#[cfg(test)]
mod tests {
    use super::number_placeholders;

    #[test]
    fn placeholders_are_numbered_outside_quotes() {
        assert_eq!(
            number_placeholders("SELECT '?' AS \"a?\" FROM t WHERE a = ? AND b IN (?, ?)"),
            "SELECT '?' AS \"a?\" FROM t WHERE a = $1 AND b IN ($2, $3)"
        );
    }
}
