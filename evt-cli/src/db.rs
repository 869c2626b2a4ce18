//! Opening the application's engine (the SQLite file, NATS or Kafka) and stores (the SQLite
//! file or PostgreSQL), and errors.

use std::fmt;
use std::io::{self, Read};
use std::path::Path;

use std::time::Duration;

use event_kafka::{KafkaConfig, KafkaTransport};
use event_nats::{NatsConfig, NatsTransport};
use event_runtime::dlq::DeadLetters;
use event_runtime::transport::sqlite::SqliteTransport;
use event_runtime::transport::{
    OutgoingRecord, Position, Record, Sharing, Slot, Transport, TransportError, TransportErrorKind,
};

/// Why a command failed.
#[derive(Debug)]
pub(crate) enum Error {
    /// Printed on stderr; exit code 1.
    Message(String),
    /// Stdout was closed by the reader; not an error.
    BrokenPipe,
}

impl Error {
    pub(crate) fn msg(message: impl Into<String>) -> Self {
        Error::Message(message.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Message(message) => f.write_str(message),
            Error::BrokenPipe => f.write_str("stdout closed"),
        }
    }
}

impl From<io::Error> for Error {
    fn from(err: io::Error) -> Self {
        if err.kind() == io::ErrorKind::BrokenPipe {
            Error::BrokenPipe
        } else {
            Error::msg(format!("cannot write the output: {err}"))
        }
    }
}

/// The engine the application runs on.
pub(crate) enum Engine {
    /// The embedded SQLite log.
    Sqlite(SqliteTransport),
    /// NATS JetStream.
    Nats(NatsTransport),
    /// Kafka.
    Kafka(KafkaTransport),
}

/// `$body` with `$t` bound to the engine inside, whichever it is.
macro_rules! each {
    ($engine:expr, $t:ident => $body:expr) => {
        match $engine {
            Engine::Sqlite($t) => $body,
            Engine::Nats($t) => $body,
            Engine::Kafka($t) => $body,
        }
    };
}

impl Engine {
    /// Every committed position: `(group, topic, partition, next offset)`.
    pub(crate) async fn group_positions(
        &self,
    ) -> Result<Vec<(String, String, u32, u64)>, TransportError> {
        each!(self, t => t.group_positions().await)
    }
}

impl Engine {
    /// Groups the engine knows beyond their positions: on Kafka every group of the cluster,
    /// also one that never committed; the other engines know a group by its positions only.
    pub(crate) async fn known_groups(&self) -> Result<Vec<String>, TransportError> {
        match self {
            Engine::Kafka(kafka) => kafka.groups().await,
            Engine::Sqlite(_) | Engine::Nats(_) => Ok(Vec::new()),
        }
    }
}

impl Transport for Engine {
    fn structured_records(&self) -> bool {
        each!(self, t => t.structured_records())
    }

    fn sharing(&self) -> Sharing {
        each!(self, t => t.sharing())
    }

    fn system(&self) -> &'static str {
        each!(self, t => t.system())
    }

    async fn slot(&self, group: &str, topic: &str, partition: u32) -> Result<Slot, TransportError> {
        each!(self, t => t.slot(group, topic, partition).await)
    }

    async fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<u32, TransportError> {
        each!(self, t => t.ensure_topic(topic, partitions).await)
    }

    async fn append(
        &self,
        topic: &str,
        records: Vec<OutgoingRecord>,
    ) -> Result<Vec<Position>, TransportError> {
        each!(self, t => t.append(topic, records).await)
    }

    async fn fetch(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
        max: usize,
    ) -> Result<Vec<Record>, TransportError> {
        each!(self, t => t.fetch(topic, partition, from, max).await)
    }

    async fn wait(&self, topic: &str, partition: u32, from: u64, timeout: Duration) {
        each!(self, t => t.wait(topic, partition, from, timeout).await)
    }

    async fn committed(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<u64, TransportError> {
        each!(self, t => t.committed(group, topic, partition).await)
    }

    async fn commit(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        next_offset: u64,
    ) -> Result<(), TransportError> {
        each!(self, t => t.commit(group, topic, partition, next_offset).await)
    }

    async fn end_offsets(&self, topic: &str) -> Result<Vec<u64>, TransportError> {
        each!(self, t => t.end_offsets(topic).await)
    }

    async fn topics(&self) -> Result<Vec<(String, u32)>, TransportError> {
        each!(self, t => t.topics().await)
    }

    async fn offset_for_time(
        &self,
        topic: &str,
        partition: u32,
        timestamp_ms: i64,
    ) -> Result<u64, TransportError> {
        each!(self, t => t.offset_for_time(topic, partition, timestamp_ms).await)
    }
}

/// What the command line says to open.
pub(crate) struct Target<'a> {
    pub(crate) db: Option<&'a Path>,
    pub(crate) nats: Option<&'a str>,
    pub(crate) kafka: Option<&'a str>,
    pub(crate) prefix: Option<&'a str>,
    pub(crate) postgres: Option<&'a str>,
}

/// The application's engine and stores, opened.
pub(crate) struct Db {
    /// The engine, for messages: the file's path, or the engine and its servers.
    pub(crate) name: String,
    pub(crate) transport: Engine,
    /// The dead letters with the redrive and replay requests, when a store was given.
    stores: Option<(String, DeadLetters)>,
}

const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

fn describe(name: &str, err: &TransportError) -> String {
    match err.kind {
        TransportErrorKind::Unavailable => format!(
            "{name} is busy or unavailable ({}): {}",
            err.operation, err.message
        ),
        _ => format!("cannot {} in {name}: {}", err.operation, err.message),
    }
}

/// Opens an existing SQLite file of the application: its path for messages, and the file.
async fn open_file(path: &Path) -> Result<(String, SqliteTransport), Error> {
    let name = path.display().to_string();
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            return Err(Error::msg(format!(
                "database file {name} does not exist (give --db the file the application opened)"
            )));
        }
        Err(err) => return Err(Error::msg(format!("cannot read {name}: {err}"))),
    };
    if !metadata.is_file() {
        return Err(Error::msg(format!("{name} is not a file")));
    }
    // Refuse to touch some other file: open_existing also checks for the event log's tables.
    let mut head = Vec::with_capacity(16);
    std::fs::File::open(path)
        .and_then(|file| file.take(16).read_to_end(&mut head))
        .map_err(|err| Error::msg(format!("cannot read {name}: {err}")))?;
    if !head.is_empty() && head.as_slice() != SQLITE_MAGIC {
        return Err(Error::msg(format!("{name} is not an SQLite database")));
    }
    let transport = SqliteTransport::open_existing(path)
        .await
        .map_err(|err| Error::msg(format!("cannot open {name}: {}", err.message)))?;
    Ok((name, transport))
}

impl Db {
    /// Opens the engine and the stores of `target`. A missing SQLite file is an error
    /// (`SqliteTransport::open` would create it).
    pub(crate) async fn open(target: &Target<'_>) -> Result<Db, Error> {
        let file = match target.db {
            Some(path) => Some(open_file(path).await?),
            None => None,
        };
        let (name, transport, file) = if let Some(url) = target.nats {
            let mut config = NatsConfig::new(url);
            if let Some(prefix) = target.prefix {
                config = config.prefix(prefix);
            }
            let name = format!("NATS {}", config.redacted_url());
            let transport = NatsTransport::connect(config)
                .await
                .map_err(|err| Error::msg(format!("cannot reach {name}: {}", err.message)))?;
            (name, Engine::Nats(transport), file)
        } else if let Some(servers) = target.kafka {
            let mut config = KafkaConfig::new(servers);
            if let Some(prefix) = target.prefix {
                config = config.prefix(prefix);
            }
            let name = format!("Kafka {servers}");
            let transport = KafkaTransport::connect(config)
                .map_err(|err| Error::msg(format!("cannot use {name}: {}", err.message)))?;
            (name, Engine::Kafka(transport), file)
        } else {
            let Some((name, transport)) = file else {
                return Err(Error::msg(
                    "no engine given: pass --db <path> (or set EVT_DB) for the SQLite file the application opened, or --nats <url> or --kafka <hosts> for its broker",
                ));
            };
            let stores = transport.clone();
            (
                name.clone(),
                Engine::Sqlite(transport),
                Some((name, stores)),
            )
        };
        let stores = if let Some(url) = target.postgres {
            let pool = sqlx::PgPool::connect(url)
                .await
                .map_err(|err| Error::msg(format!("cannot reach the PostgreSQL stores: {err}")))?;
            // Refuse a database that holds no stores (a mistyped URL) rather than create the
            // tables there, as opening the stores would.
            let found: Option<String> =
                sqlx::query_scalar("SELECT to_regclass('evt_dead_letters')::text")
                    .fetch_one(&pool)
                    .await
                    .map_err(|err| {
                        Error::msg(format!("cannot read the PostgreSQL stores: {err}"))
                    })?;
            if found.is_none() {
                return Err(Error::msg(
                    "the PostgreSQL database given with --postgres has no evt_dead_letters table (in its search_path): give the database (and schema) of the application's `Stores::postgres`",
                ));
            }
            let dlq = DeadLetters::postgres(pool).await.map_err(|err| {
                Error::msg(format!(
                    "cannot open the PostgreSQL stores: {}",
                    err.message
                ))
            })?;
            Some(("the PostgreSQL stores".to_owned(), dlq))
        } else {
            file.map(|(name, transport)| (name, DeadLetters::new(&transport)))
        };
        Ok(Db {
            name,
            transport,
            stores,
        })
    }

    /// The dead letters with the redrive and replay requests, or an error saying where they are.
    pub(crate) fn dlq(&self) -> Result<&DeadLetters, Error> {
        match &self.stores {
            Some((_, dlq)) => Ok(dlq),
            None => Err(Error::msg(format!(
                "dead letters and redrive and replay requests live in the application's stores, not in {}: pass --db <path> (the SQLite file of `Stores::sqlite`) or --postgres <url> (`Stores::postgres`)",
                self.name
            ))),
        }
    }

    /// The stores, for messages.
    pub(crate) fn stores_name(&self) -> &str {
        self.stores.as_ref().map_or(self.name.as_str(), |(n, _)| n)
    }

    /// The dead letters, when a store was given (`evt lag` shows their depth then).
    pub(crate) fn dlq_if_any(&self) -> Option<&DeadLetters> {
        self.stores.as_ref().map(|(_, dlq)| dlq)
    }

    /// A store error as a message naming the store.
    pub(crate) fn fail_store(&self, err: TransportError) -> Error {
        Error::Message(describe(self.stores_name(), &err))
    }

    /// An engine error as a message naming the engine.
    pub(crate) fn fail(&self, err: TransportError) -> Error {
        Error::Message(self.describe(&err))
    }

    /// An engine error as text naming the engine.
    pub(crate) fn describe(&self, err: &TransportError) -> String {
        describe(&self.name, err)
    }

    /// The partition count of `topic`, or an error listing the topics there are.
    pub(crate) async fn partitions_of(&self, topic: &str) -> Result<u32, Error> {
        let topics = self.transport.topics().await.map_err(|e| self.fail(e))?;
        if let Some((_, count)) = topics.iter().find(|(name, _)| name == topic) {
            return Ok(*count);
        }
        let known = if topics.is_empty() {
            "it has no topics yet".to_owned()
        } else {
            format!(
                "topics: {}",
                topics
                    .iter()
                    .map(|(name, _)| name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        Err(Error::msg(format!(
            "no topic `{topic}` in {} ({known})",
            self.name
        )))
    }
}
