//! The on-disk registry: [`SchemaRegistry`] opens a directory and its lock and answers what is
//! published (events, versions, stored schemas, field numbers). Above the lock; the gate
//! extends it with [`check_and_update`](SchemaRegistry::check_and_update).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::compat::CompatibilityMode;

use super::lock::{EventLock, LOCK_FILE, LOCK_FORMAT, Lock, Numbering};
use super::report::{ErrorKind, RegistryError};

/// A registry directory and its lock.
#[derive(Clone, Debug)]
pub struct SchemaRegistry {
    pub(super) dir: PathBuf,
    pub(super) lock: Lock,
}

pub(super) struct Stored {
    pub(super) schema: Value,
    pub(super) proto: Option<String>,
}

impl SchemaRegistry {
    /// Opens the registry at `dir` (usually `schemas/` next to `Cargo.toml`). A missing
    /// directory or lock is an empty registry; nothing is created until something is written.
    pub fn open(dir: impl AsRef<Path>) -> Result<SchemaRegistry, RegistryError> {
        let dir = dir.as_ref().to_path_buf();
        let lock_path = dir.join(LOCK_FILE);
        let lock = match fs::read_to_string(&lock_path) {
            Ok(text) => {
                let lock: Lock = serde_json::from_str(&text).map_err(|err| {
                    RegistryError::single(
                        ErrorKind::InvalidLock,
                        None,
                        None,
                        format!(
                            "{} does not parse ({err}); restore it from version control (it is written by the build, never by hand)",
                            lock_path.display()
                        ),
                    )
                })?;
                if lock.format > LOCK_FORMAT {
                    return Err(RegistryError::single(
                        ErrorKind::InvalidLock,
                        None,
                        None,
                        format!(
                            "{} has format {}, newer than this event-build understands ({LOCK_FORMAT}); update event-build",
                            lock_path.display(),
                            lock.format
                        ),
                    ));
                }
                lock
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Lock {
                format: LOCK_FORMAT,
                events: BTreeMap::new(),
            },
            Err(err) => return Err(RegistryError::io(&lock_path, "read", &err)),
        };
        Ok(SchemaRegistry { dir, lock })
    }

    /// The registry directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The files a check reads: the lock and the stored schema, `.proto` and example of every
    /// published version (for `cargo:rerun-if-changed`).
    pub fn files(&self) -> Vec<PathBuf> {
        let mut files = vec![self.dir.join(LOCK_FILE)];
        for (event, entry) in &self.lock.events {
            for version in &entry.versions {
                files.push(self.schema_path(&entry.context, event, version.version));
                files.push(self.proto_path(&entry.context, event, version.version));
                files.push(self.example_path(&entry.context, event, version.version));
            }
        }
        // Cargo reruns a build script on every build while a watched file is missing.
        files.retain(|file| file.ends_with(LOCK_FILE) || file.exists());
        files
    }

    /// The events in the lock, sorted.
    pub fn events(&self) -> impl Iterator<Item = &str> {
        self.lock.events.keys().map(String::as_str)
    }

    /// The published versions of an event, ascending.
    pub fn versions(&self, event: &str) -> Vec<u32> {
        let mut versions: Vec<u32> = self
            .lock
            .events
            .get(event)
            .map(|e| e.versions.iter().map(|v| v.version).collect())
            .unwrap_or_default();
        versions.sort_unstable();
        versions
    }

    /// The compatibility mode recorded for an event.
    pub fn mode(&self, event: &str) -> Option<CompatibilityMode> {
        self.lock.events.get(event).map(EventLock::mode)
    }

    /// The path of a version's JSON schema: `<dir>/<context>/<event>/v<N>.schema.json`.
    pub fn schema_path(&self, context: &str, event: &str, version: u32) -> PathBuf {
        self.dir
            .join(context)
            .join(event)
            .join(format!("v{version}.schema.json"))
    }

    /// The path of a version's `.proto`: `<dir>/<context>/<event>/v<N>.proto`.
    pub fn proto_path(&self, context: &str, event: &str, version: u32) -> PathBuf {
        self.dir
            .join(context)
            .join(event)
            .join(format!("v{version}.proto"))
    }

    /// The path of a version's example payload: `<dir>/<context>/<event>/v<N>.example.json`.
    /// Generated from the schema when the version is published (or first seen without one),
    /// kept afterwards: replace it with a hand-written payload if you like, the gate checks
    /// it against the version's schema.
    pub fn example_path(&self, context: &str, event: &str, version: u32) -> PathBuf {
        self.dir
            .join(context)
            .join(event)
            .join(format!("v{version}.example.json"))
    }

    /// The stored JSON schema of a published version.
    pub fn schema(&self, event: &str, version: u32) -> Result<Option<Value>, RegistryError> {
        let Some(entry) = self.lock.events.get(event) else {
            return Ok(None);
        };
        if entry.version(version).is_none() {
            return Ok(None);
        }
        self.load(event, &entry.context, version)
            .map(|stored| Some(stored.schema))
    }

    /// The protobuf field numbers of an event, per message scope ([`ROOT_SCOPE`](super::ROOT_SCOPE) is the
    /// event's own message, `#/$defs/<Name>` a definition). Empty for an unknown event.
    pub fn field_numbers(&self, event: &str) -> BTreeMap<String, Numbering> {
        self.lock
            .events
            .get(event)
            .map(|e| e.field_numbers.clone())
            .unwrap_or_default()
    }

    /// The field numbers of one scope of an event (empty when unknown).
    pub fn field_numbers_in(&self, event: &str, scope: &str) -> Numbering {
        self.lock
            .events
            .get(event)
            .and_then(|e| e.field_numbers.get(scope).cloned())
            .unwrap_or_default()
    }

    pub(super) fn load(
        &self,
        event: &str,
        context: &str,
        version: u32,
    ) -> Result<Stored, RegistryError> {
        let path = self.schema_path(context, event, version);
        let text = fs::read_to_string(&path).map_err(|err| {
            if err.kind() == std::io::ErrorKind::NotFound {
                RegistryError::single(
                    ErrorKind::InvalidLock,
                    Some(event),
                    Some(version),
                    format!(
                        "{event} v{version} is in {LOCK_FILE} but {} is missing; restore it from version control",
                        path.display()
                    ),
                )
            } else {
                RegistryError::io(&path, "read", &err)
            }
        })?;
        let schema = serde_json::from_str(&text).map_err(|err| {
            RegistryError::single(
                ErrorKind::InvalidLock,
                Some(event),
                Some(version),
                format!(
                    "{} does not parse ({err}); restore it from version control",
                    path.display()
                ),
            )
        })?;
        let proto_path = self.proto_path(context, event, version);
        let proto = match fs::read_to_string(&proto_path) {
            Ok(text) => Some(text),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
            Err(err) => return Err(RegistryError::io(&proto_path, "read", &err)),
        };
        Ok(Stored { schema, proto })
    }
}
