//! Opening the engine's file, and errors.

use std::fmt;
use std::io::{self, Read};
use std::path::Path;

use event_runtime::dlq::DeadLetters;
use event_runtime::transport::sqlite::SqliteTransport;
use event_runtime::transport::{Transport, TransportError, TransportErrorKind};

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

/// The engine's file, opened.
pub(crate) struct Db {
    /// The path as given, for messages.
    pub(crate) name: String,
    pub(crate) transport: SqliteTransport,
    pub(crate) dlq: DeadLetters,
}

const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

impl Db {
    /// Opens an existing file; a missing one is an error (`SqliteTransport::open` would create it).
    pub(crate) async fn open(path: Option<&Path>) -> Result<Db, Error> {
        let Some(path) = path else {
            return Err(Error::msg(
                "no database given: pass --db <path> or set EVT_DB to the SQLite file the application opened",
            ));
        };
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
        let dlq = DeadLetters::new(&transport);
        Ok(Db {
            name,
            transport,
            dlq,
        })
    }

    /// A transport error as a message naming the file.
    pub(crate) fn fail(&self, err: TransportError) -> Error {
        Error::Message(self.describe(&err))
    }

    /// A transport error as text naming the file.
    pub(crate) fn describe(&self, err: &TransportError) -> String {
        match err.kind {
            TransportErrorKind::Unavailable => format!(
                "{} is busy or unavailable ({}): {}",
                self.name, err.operation, err.message
            ),
            _ => format!("cannot {} in {}: {}", err.operation, self.name, err.message),
        }
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
