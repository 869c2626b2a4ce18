//! The schema registry: a directory committed in the user's repository.
//!
//! ```text
//! schemas/                                  (default: next to Cargo.toml)
//! ├── registry.lock                         JSON, sorted keys, one entry per event
//! └── <context>/<event name>/
//!     ├── v1.schema.json                    JSON Schema 2020-12, as emitted
//!     ├── v1.proto                          proto3, as emitted
//!     └── v2.schema.json, v2.proto, ...
//! ```
//!
//! `registry.lock` records, per event: the owning context, the compatibility mode, each
//! published version with the digests of its contract, and the protobuf field numbers (per
//! message scope: the assigned number of every field path and the retired numbers, which are
//! never handed out again). It is written with sorted keys and one value per line so that a
//! review shows exactly what was published.
//!
//! [`Registry::check_and_update`] is the build gate. For every [`Candidate`] (one per event
//! version found in the code):
//!
//! - **A new version** is checked against the published versions with
//!   [`compat::check`] under the event's mode, its field numbers are
//!   checked against the lock, and then it is published: its files are written and the lock
//!   is updated. Versions are appended: the next version of an event is the newest published
//!   plus one (`v1` then `v3` without `v2` is a [`ErrorKind::VersionGap`]); the first version
//!   recorded may be any number, so an event whose old Rust types are gone can be adopted.
//! - **A published version** must not change. Its *contract* is compared by digest: the JSON
//!   schema without its annotations (`description`, `title`, `$comment`, `examples` and the
//!   `x-event` metadata) and the `.proto` file as parsed (field names, numbers, types, labels,
//!   oneofs, enums, reservations; comments and the event message's own name left out).
//!   Doc-comment edits, a renamed Rust type (`OrderPlaced` → `OrderPlacedV2` when v3 arrives)
//!   and a deprecation added later are therefore not changes: the stored files are refreshed
//!   and the lock stays as it is. Anything else is a [`ErrorKind::PublishedChanged`] that names
//!   the place and asks for a new version.
//! - **Deprecation**: a version past its `sunset` date that is still produced fails
//!   ([`ErrorKind::Sunset`]), or is a warning with [`SunsetPolicy::Warn`]. The date of "today"
//!   is an input ([`CheckOptions::today`]) so that builds and tests are deterministic. A version
//!   counts as produced when it is the newest version of its event among the candidates (older
//!   types are kept to be upcast from), unless [`Candidate::produced`] says otherwise.
//! - **Upcasters**: a candidate that reads older versions through an upcaster chain
//!   ([`Candidate::upcast_from`]) decodes them with their own types, so it need not be backward
//!   compatible with them: its backward violations against those versions, and its protobuf
//!   violations when the mode promises nothing forward, are listed in [`Report::waived`]
//!   instead of failing. Forward violations are never waived (old consumers have no
//!   upcaster).
//!
//! Nothing is written unless every candidate passes, and a file is only written when its
//! content changes. All problems are reported together in one [`RegistryError`].
//!
//! # Field numbers
//!
//! The JSON schemas carry the protobuf numbers: `x-proto-field` on properties,
//! `x-proto-variants` on enums and `x-proto-reserved` for numbers already retired. The lock
//! keeps them per *scope*, the protobuf message (or enum) they number:
//!
//! | scope | numbers |
//! |---|---|
//! | `#` ([`ROOT_SCOPE`]) | the event's payload fields, shared by all its versions |
//! | `#/$defs/<Name>` | the fields of a struct, or the variants of an enum, defined in `$defs` |
//! | `#/$defs/<Name>/<variant>` | the fields of one variant of a data enum |
//! | `<scope>/<field>` | the fields of an inline object below a numbered field |
//!
//! Within a scope the key is the serde name of the field or variant. (These are the owners and
//! scopes of the emitter's `numbers` module: `Owner::Message` is `#`, `Owner::Type` is
//! `#/$defs/<Name>`, a variant scope is `#/$defs/<Name>/<variant>`.)
//! [`Registry::field_numbers`] gives the proto emitter the numbers to keep and the ones never
//! to reuse; when a published version drops a field or variant, its number moves from
//! `assigned` to `retired`, and a later version that uses it again is refused.
//!
//! # Example
//!
//! ```
//! use event_build::compat::CompatibilityMode;
//! use event_build::registry::{Candidate, CheckOptions, Registry};
//! use event_model::attr::Date;
//! use serde_json::json;
//!
//! let dir = std::env::temp_dir().join(format!("registry-doc-{}", std::process::id()));
//! let _ = std::fs::remove_dir_all(&dir);
//! let mut registry = Registry::open(&dir).unwrap();
//! let options = CheckOptions::new(Date::parse("2025-06-01").unwrap());
//!
//! let v1 = json!({
//!     "title": "OrderPlaced", "type": "object", "additionalProperties": false,
//!     "properties": { "order_id": { "type": "string", "x-proto-field": 1 } },
//!     "required": ["order_id"]
//! });
//! let candidate = Candidate::new("orders.order_placed", "orders", 1, v1);
//! let report = registry.check_and_update(&[candidate.clone()], &options).unwrap();
//! assert_eq!(report.published.len(), 1);
//! assert!(dir.join("orders/orders.order_placed/v1.schema.json").exists());
//!
//! // v2 adds a required field without a default: not BACKWARD compatible.
//! let v2 = json!({
//!     "title": "OrderPlaced", "type": "object", "additionalProperties": false,
//!     "properties": {
//!         "order_id": { "type": "string", "x-proto-field": 1 },
//!         "coupon": { "type": "string", "x-proto-field": 2 }
//!     },
//!     "required": ["order_id", "coupon"]
//! });
//! let v2 = Candidate::new("orders.order_placed", "orders", 2, v2)
//!     .with_mode(CompatibilityMode::Backward);
//! let err = registry.check_and_update(&[candidate, v2], &options).unwrap_err();
//! assert!(err.to_string().contains("/properties/coupon"));
//! assert_eq!(registry.field_numbers("orders.order_placed")["#"].assigned["order_id"], 1);
//! # std::fs::remove_dir_all(&dir).unwrap();
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use event_model::attr::Date;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::compat::{self, CompatibilityMode, Direction, ProtoCategory, SchemaVersion, Violation};
/// The numbers of one scope, as the lock records them (shared with the emitter's
/// [`crate::numbers::FieldNumbers`], which learns them through
/// [`FieldNumbers::learn_registry`](crate::numbers::FieldNumbers::learn_registry)).
pub use crate::numbers::Numbering;

/// The lock file's name inside the registry directory.
pub const LOCK_FILE: &str = "registry.lock";

/// The scope of the event's own message in [`Registry::field_numbers`].
pub const ROOT_SCOPE: &str = "#";

/// The lock format written by this version.
const LOCK_FORMAT: u32 = 1;

// ---------------------------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------------------------

/// `deprecated(since = "...", sunset = "...", note = "...")` of one event version.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Deprecation {
    /// When the version was deprecated.
    pub since: Option<Date>,
    /// After this date producers must stop publishing the version.
    pub sunset: Option<Date>,
    /// What to use instead.
    pub note: Option<String>,
}

impl From<&event_model::attr::Deprecation> for Deprecation {
    fn from(value: &event_model::attr::Deprecation) -> Self {
        Deprecation {
            since: value.since,
            sunset: value.sunset,
            note: value.note.clone(),
        }
    }
}

/// One version of one event as the code declares it now.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    /// The wire name: `orders.order_placed`.
    pub event: String,
    /// The owning bounded context: `orders`.
    pub context: String,
    /// The version.
    pub version: u32,
    /// The JSON Schema document.
    pub schema: Value,
    /// The `.proto` text, when one is emitted.
    pub proto: Option<String>,
    /// The event's compatibility mode (`#[event(compatibility = "...")]`); the newest
    /// candidate's mode is the event's.
    pub mode: CompatibilityMode,
    /// The version's deprecation, if any.
    pub deprecation: Option<Deprecation>,
    /// The oldest version this version's upcaster chain reads (`upcast_from` / `upcast_json`),
    /// if it has one.
    pub upcast_from: Option<u32>,
    /// Whether producers still publish this version. `None`: only the newest version of each
    /// event among the candidates is produced.
    pub produced: Option<bool>,
}

impl Candidate {
    /// A candidate in the default mode (`BACKWARD`), without proto, deprecation or upcaster.
    pub fn new(
        event: impl Into<String>,
        context: impl Into<String>,
        version: u32,
        schema: Value,
    ) -> Self {
        Candidate {
            event: event.into(),
            context: context.into(),
            version,
            schema,
            proto: None,
            mode: CompatibilityMode::default(),
            deprecation: None,
            upcast_from: None,
            produced: None,
        }
    }

    /// Reads name, version, context and deprecation from the schema's `x-event` object, and
    /// `compatibility` and `upcast_from` when the emitter writes them there.
    pub fn from_schema(schema: Value, proto: Option<String>) -> Result<Self, RegistryError> {
        let invalid = |message: String| {
            RegistryError::single(ErrorKind::InvalidCandidate, None, None, message)
        };
        let meta = schema
            .get("x-event")
            .and_then(Value::as_object)
            .ok_or_else(|| invalid("the schema has no `x-event` object naming the event".into()))?;
        let text = |key: &str| meta.get(key).and_then(Value::as_str).map(str::to_owned);
        let event = text("name").ok_or_else(|| invalid("`x-event.name` is missing".into()))?;
        let context = text("context")
            .ok_or_else(|| invalid(format!("{event}: `x-event.context` is missing")))?;
        let version = meta
            .get("version")
            .and_then(Value::as_u64)
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| invalid(format!("{event}: `x-event.version` is missing")))?;
        let mode = match text("compatibility") {
            Some(mode) => mode.parse().map_err(|err: compat::UnknownMode| {
                invalid(format!("{event} v{version}: {err}"))
            })?,
            None => CompatibilityMode::default(),
        };
        let date = |value: Option<&Value>, what: &str| -> Result<Option<Date>, RegistryError> {
            match value.and_then(Value::as_str) {
                None => Ok(None),
                Some(text) => Date::parse(text)
                    .map(Some)
                    .map_err(|err| invalid(format!("{event} v{version}: {what}: {err}"))),
            }
        };
        let deprecation = match meta.get("deprecated") {
            Some(Value::Object(deprecated)) => Some(Deprecation {
                since: date(deprecated.get("since"), "deprecated.since")?,
                sunset: date(deprecated.get("sunset"), "deprecated.sunset")?,
                note: deprecated
                    .get("note")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            }),
            Some(Value::Bool(true)) => Some(Deprecation::default()),
            _ => None,
        };
        let upcast_from = meta
            .get("upcast_from")
            .and_then(Value::as_u64)
            .and_then(|v| u32::try_from(v).ok());
        Ok(Candidate {
            event,
            context,
            version,
            schema,
            proto,
            mode,
            deprecation,
            upcast_from,
            produced: None,
        })
    }

    /// Sets the `.proto` text.
    pub fn with_proto(mut self, proto: impl Into<String>) -> Self {
        self.proto = Some(proto.into());
        self
    }

    /// Sets the compatibility mode.
    pub fn with_mode(mut self, mode: CompatibilityMode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets the deprecation.
    pub fn with_deprecation(mut self, deprecation: Deprecation) -> Self {
        self.deprecation = Some(deprecation);
        self
    }

    /// Sets the oldest version the upcaster chain reads.
    pub fn with_upcast_from(mut self, version: u32) -> Self {
        self.upcast_from = Some(version);
        self
    }

    /// Says whether producers still publish this version.
    pub fn with_produced(mut self, produced: bool) -> Self {
        self.produced = Some(produced);
        self
    }

    fn label(&self) -> String {
        format!("{} v{}", self.event, self.version)
    }
}

/// What a version past its sunset date does to the build.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SunsetPolicy {
    /// Fail ([`ErrorKind::Sunset`]).
    #[default]
    Error,
    /// Add a line to [`Report::warnings`].
    Warn,
}

/// How [`Registry::check_and_update`] runs.
#[derive(Clone, Debug)]
pub struct CheckOptions {
    /// Today's date, for sunset dates.
    pub today: Date,
    /// What a version past its sunset does.
    pub sunset: SunsetPolicy,
    /// Write the files and the lock (`true`), or only check and list what would be written
    /// (`false`, for CI).
    pub write: bool,
    /// Which buf category the `.proto` files are checked with.
    pub proto_category: ProtoCategory,
}

impl CheckOptions {
    /// Writing, failing on sunsets, buf `WIRE_JSON`.
    pub fn new(today: Date) -> Self {
        CheckOptions {
            today,
            sunset: SunsetPolicy::Error,
            write: true,
            proto_category: ProtoCategory::WireJson,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Outputs
// ---------------------------------------------------------------------------------------------

/// An event and a version: displays as `orders.order_placed v2`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventVersion {
    /// The event's wire name.
    pub event: String,
    /// The version.
    pub version: u32,
}

impl fmt::Display for EventVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} v{}", self.event, self.version)
    }
}

/// A protobuf field number retired because a new version dropped its field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetiredNumber {
    /// The event.
    pub event: String,
    /// The version that dropped the field.
    pub version: u32,
    /// The message scope (`#` or `#/$defs/<Name>`).
    pub scope: String,
    /// The field path within the scope.
    pub path: String,
    /// The number, never to be used again in that scope.
    pub number: u32,
}

/// What [`Registry::check_and_update`] did.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Versions published by this run.
    pub published: Vec<EventVersion>,
    /// Published versions whose files were refreshed (descriptions, titles, deprecation).
    pub refreshed: Vec<EventVersion>,
    /// Published versions found unchanged.
    pub unchanged: Vec<EventVersion>,
    /// Events whose compatibility mode changed: `(event, old, new)`.
    pub mode_changes: Vec<(String, CompatibilityMode, CompatibilityMode)>,
    /// Field numbers retired by this run.
    pub retired: Vec<RetiredNumber>,
    /// Backward violations accepted because the new version upcasts from the old one.
    pub waived: Vec<Violation>,
    /// Warnings, one paragraph each (sunsets under [`SunsetPolicy::Warn`]).
    pub warnings: Vec<String>,
    /// Files written, or that would be written when [`CheckOptions::write`] is off.
    pub changed_files: Vec<PathBuf>,
}

impl Report {
    /// Whether the registry is up to date (nothing to write).
    pub fn is_up_to_date(&self) -> bool {
        self.changed_files.is_empty()
    }
}

/// What went wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Reading or writing the registry directory failed.
    Io,
    /// `registry.lock` or a stored schema does not parse, or disagrees with the lock.
    InvalidLock,
    /// A candidate is malformed: bad name, not a JSON object, `.proto` does not parse,
    /// duplicate version.
    InvalidCandidate,
    /// A published version's contract changed.
    PublishedChanged,
    /// A new version breaks the event's compatibility mode.
    Incompatible,
    /// Versions are not appended one at a time.
    VersionGap,
    /// A version past its sunset date is still produced.
    Sunset,
    /// A protobuf field number changed, was reused or is taken.
    FieldNumber,
    /// An event moved to another context.
    ContextChanged,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::Io => "io",
            ErrorKind::InvalidLock => "invalid lock",
            ErrorKind::InvalidCandidate => "invalid candidate",
            ErrorKind::PublishedChanged => "published version changed",
            ErrorKind::Incompatible => "incompatible change",
            ErrorKind::VersionGap => "version gap",
            ErrorKind::Sunset => "past sunset",
            ErrorKind::FieldNumber => "field number",
            ErrorKind::ContextChanged => "context changed",
        })
    }
}

/// One problem found by the registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Its kind.
    pub kind: ErrorKind,
    /// The event, when the problem belongs to one.
    pub event: Option<String>,
    /// The version, when the problem belongs to one.
    pub version: Option<u32>,
    /// One paragraph: event, versions, field, rule, fix.
    pub message: String,
    /// The compatibility violation behind an [`ErrorKind::Incompatible`] problem.
    pub violation: Option<Violation>,
}

/// The registry refused the candidates (or could not be read or written). Holds every problem
/// found; [`kind`](Self::kind) is the first one's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryError {
    problems: Vec<Problem>,
}

impl RegistryError {
    fn single(kind: ErrorKind, event: Option<&str>, version: Option<u32>, message: String) -> Self {
        RegistryError {
            problems: vec![Problem {
                kind,
                event: event.map(str::to_owned),
                version,
                message,
                violation: None,
            }],
        }
    }

    fn io(path: &Path, action: &str, err: &std::io::Error) -> Self {
        RegistryError::single(
            ErrorKind::Io,
            None,
            None,
            format!("cannot {action} {}: {err}", path.display()),
        )
    }

    /// The kind of the first problem.
    pub fn kind(&self) -> ErrorKind {
        self.problems.first().map_or(ErrorKind::Io, |p| p.kind)
    }

    /// Every problem, in the order found (events sorted by name, versions ascending).
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    /// Whether some problem is of this kind.
    pub fn has(&self, kind: ErrorKind) -> bool {
        self.problems.iter().any(|p| p.kind == kind)
    }
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.problems.as_slice() {
            [] => f.write_str("schema registry error"),
            [one] => f.write_str(&one.message),
            many => {
                write!(f, "{} problems in the schema registry:", many.len())?;
                for (i, problem) in many.iter().enumerate() {
                    write!(f, "\n\n{}. {}", i + 1, problem.message)?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for RegistryError {}

// ---------------------------------------------------------------------------------------------
// The lock
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Lock {
    format: u32,
    events: BTreeMap<String, EventLock>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct EventLock {
    context: String,
    compatibility: String,
    versions: Vec<VersionLock>,
    #[serde(default)]
    field_numbers: BTreeMap<String, Numbering>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct VersionLock {
    version: u32,
    /// Digest of the JSON schema's contract.
    schema: String,
    /// Digest of the `.proto` file's contract.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    proto: Option<String>,
}

impl EventLock {
    fn mode(&self) -> CompatibilityMode {
        self.compatibility.parse().unwrap_or_default()
    }

    fn version(&self, version: u32) -> Option<&VersionLock> {
        self.versions.iter().find(|v| v.version == version)
    }

    fn newest(&self) -> Option<u32> {
        self.versions.iter().map(|v| v.version).max()
    }
}

// ---------------------------------------------------------------------------------------------
// The registry
// ---------------------------------------------------------------------------------------------

/// A registry directory and its lock.
#[derive(Clone, Debug)]
pub struct Registry {
    dir: PathBuf,
    lock: Lock,
}

struct Stored {
    schema: Value,
    proto: Option<String>,
}

impl Registry {
    /// Opens the registry at `dir` (usually `schemas/` next to `Cargo.toml`). A missing
    /// directory or lock is an empty registry; nothing is created until something is written.
    pub fn open(dir: impl AsRef<Path>) -> Result<Registry, RegistryError> {
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
        Ok(Registry { dir, lock })
    }

    /// The registry directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The files a check reads: the lock and the stored schema and `.proto` of every published
    /// version (for `cargo:rerun-if-changed`).
    pub fn files(&self) -> Vec<PathBuf> {
        let mut files = vec![self.dir.join(LOCK_FILE)];
        for (event, entry) in &self.lock.events {
            for version in &entry.versions {
                files.push(self.schema_path(&entry.context, event, version.version));
                files.push(self.proto_path(&entry.context, event, version.version));
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

    /// The protobuf field numbers of an event, per message scope ([`ROOT_SCOPE`] is the
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

    fn load(&self, event: &str, context: &str, version: u32) -> Result<Stored, RegistryError> {
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

    /// Checks the candidates against the registry and, when they all pass, publishes the new
    /// versions and refreshes changed annotations (see the module documentation).
    ///
    /// Returns every problem found in one [`RegistryError`]; nothing is written then.
    pub fn check_and_update(
        &mut self,
        candidates: &[Candidate],
        options: &CheckOptions,
    ) -> Result<Report, RegistryError> {
        let mut run = Run {
            registry: self,
            lock: self.lock.clone(),
            options,
            report: Report::default(),
            problems: Vec::new(),
            writes: BTreeMap::new(),
        };
        let by_event = run.validate(candidates);
        for (event, candidates) in by_event {
            run.event(&event, &candidates);
        }
        let Run {
            lock,
            mut report,
            problems,
            mut writes,
            ..
        } = run;
        if !problems.is_empty() {
            return Err(RegistryError { problems });
        }

        let lock_text = pretty_json(&serde_json::to_value(&lock).unwrap_or(Value::Null));
        writes.insert(self.dir.join(LOCK_FILE), lock_text);
        for (path, content) in writes {
            let unchanged = fs::read(&path).is_ok_and(|existing| existing == content.as_bytes());
            if unchanged {
                continue;
            }
            if options.write {
                if let Some(parent) = path.parent() {
                    fs::create_dir_all(parent)
                        .map_err(|err| RegistryError::io(parent, "create", &err))?;
                }
                fs::write(&path, &content)
                    .map_err(|err| RegistryError::io(&path, "write", &err))?;
            }
            report.changed_files.push(path);
        }
        if options.write {
            self.lock = lock;
        }
        Ok(report)
    }
}

struct Run<'r> {
    registry: &'r Registry,
    lock: Lock,
    options: &'r CheckOptions,
    report: Report,
    problems: Vec<Problem>,
    writes: BTreeMap<PathBuf, String>,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

impl Run<'_> {
    fn problem(&mut self, kind: ErrorKind, candidate: &Candidate, message: String) {
        self.problems.push(Problem {
            kind,
            event: Some(candidate.event.clone()),
            version: Some(candidate.version),
            message,
            violation: None,
        });
    }

    fn validate(&mut self, candidates: &[Candidate]) -> BTreeMap<String, Vec<Candidate>> {
        let mut by_event: BTreeMap<String, Vec<Candidate>> = BTreeMap::new();
        for candidate in candidates {
            let label = candidate.label();
            if !valid_name(&candidate.event) || !valid_name(&candidate.context) {
                let message = format!(
                    "{label}: the event name `{}` and context `{}` become directory names in the registry; use letters, digits, `.`, `_` and `-` only",
                    candidate.event, candidate.context
                );
                self.problem(ErrorKind::InvalidCandidate, candidate, message);
                continue;
            }
            if candidate.version == 0 {
                self.problem(
                    ErrorKind::InvalidCandidate,
                    candidate,
                    format!("{label}: versions start at 1"),
                );
                continue;
            }
            if !candidate.schema.is_object() {
                self.problem(
                    ErrorKind::InvalidCandidate,
                    candidate,
                    format!("{label}: the JSON schema is not an object"),
                );
                continue;
            }
            let list = by_event.entry(candidate.event.clone()).or_default();
            if list.iter().any(|c| c.version == candidate.version) {
                let message =
                    format!("{label} is declared twice; each version of an event is one Rust type");
                self.problem(ErrorKind::InvalidCandidate, candidate, message);
                continue;
            }
            list.push(candidate.clone());
        }
        for list in by_event.values_mut() {
            list.sort_by_key(|c| c.version);
        }
        by_event
    }

    fn event(&mut self, event: &str, candidates: &[Candidate]) {
        let Some(newest) = candidates.last() else {
            return;
        };
        let mode = newest.mode;
        let context = newest.context.clone();

        for candidate in candidates {
            if candidate.context != context {
                let message = format!(
                    "{} is declared in context `{}` but {} in `{context}`; all versions of an event belong to one context",
                    candidate.label(),
                    candidate.context,
                    newest.label()
                );
                self.problem(ErrorKind::ContextChanged, candidate, message);
                return;
            }
        }
        if let Some(existing) = self.lock.events.get(event)
            && existing.context != context
        {
            let message = format!(
                "{event} is published in context `{}` (schemas/{}/{event}/) but the code now puts it in `{context}`; an event's context decides its topic, so moving it is a new event: give it a new name (#[event(name = \"...\")]) and deprecate this one",
                existing.context, existing.context
            );
            self.problem(ErrorKind::ContextChanged, newest, message);
            return;
        }

        // Sunsets.
        for candidate in candidates {
            self.sunset(candidate, candidate.version == newest.version);
        }

        // The published versions, loaded from disk for the checks.
        let mut published: BTreeMap<u32, Stored> = BTreeMap::new();
        if let Some(existing) = self.lock.events.get(event) {
            for version in existing
                .versions
                .iter()
                .map(|v| v.version)
                .collect::<Vec<_>>()
            {
                match self.registry.load(event, &context, version) {
                    Ok(stored) => {
                        published.insert(version, stored);
                    }
                    Err(err) => self.problems.extend(err.problems),
                }
            }
        }

        let entry = self
            .lock
            .events
            .entry(event.to_owned())
            .or_insert_with(|| EventLock {
                context: context.clone(),
                compatibility: mode.as_str().to_owned(),
                versions: Vec::new(),
                field_numbers: BTreeMap::new(),
            });
        let old_mode = entry.mode();
        if old_mode != mode && !entry.versions.is_empty() {
            self.report
                .mode_changes
                .push((event.to_owned(), old_mode, mode));
        }
        entry.compatibility = mode.as_str().to_owned();

        let mut added_any = false;
        for candidate in candidates {
            let digests = match contract_digests(candidate) {
                Ok(digests) => digests,
                Err(message) => {
                    self.problem(ErrorKind::InvalidCandidate, candidate, message);
                    continue;
                }
            };
            let recorded = self
                .lock
                .events
                .get(event)
                .and_then(|e| e.version(candidate.version))
                .cloned();
            if let Some(recorded) = recorded {
                self.published_version(
                    candidate,
                    &recorded,
                    &digests,
                    published.get(&candidate.version),
                );
                continue;
            }
            if !self.new_version(candidate, mode, &digests, &published) {
                // The rest of this event's new versions would only repeat the problem.
                break;
            }
            published.insert(
                candidate.version,
                Stored {
                    schema: candidate.schema.clone(),
                    proto: candidate.proto.clone(),
                },
            );
            added_any = true;
        }

        if added_any && let Some(newest_published) = published.values().next_back() {
            let version = published.keys().next_back().copied().unwrap_or_default();
            let live = collect_field_numbers(&newest_published.schema);
            let entry = self
                .lock
                .events
                .get_mut(event)
                .expect("entry inserted above");
            for (scope, numbers) in &mut entry.field_numbers {
                let live_scope = live.get(scope);
                let dropped: Vec<(String, u32)> = numbers
                    .assigned
                    .iter()
                    .filter(|(path, _)| live_scope.is_none_or(|l| !l.assigned.contains_key(*path)))
                    .map(|(path, n)| (path.clone(), *n))
                    .collect();
                for (path, number) in dropped {
                    numbers.assigned.remove(&path);
                    numbers.retired.insert(number);
                    self.report.retired.push(RetiredNumber {
                        event: event.to_owned(),
                        version,
                        scope: scope.clone(),
                        path,
                        number,
                    });
                }
            }
        }
    }

    fn sunset(&mut self, candidate: &Candidate, newest: bool) {
        let Some(deprecation) = &candidate.deprecation else {
            return;
        };
        let Some(sunset) = deprecation.sunset else {
            return;
        };
        let produced = candidate.produced.unwrap_or(newest);
        if !produced || self.options.today <= sunset {
            return;
        }
        let instead = deprecation
            .note
            .as_deref()
            .map(|note| format!(" ({note})"))
            .unwrap_or_default();
        let why = if candidate.produced.is_some() {
            "the build marks it as produced".to_owned()
        } else {
            format!("it is the newest version of {}", candidate.event)
        };
        let message = format!(
            "{} passed its sunset date {sunset} (today is {}) and is still produced ({why}): stop publishing it{instead}: publish a newer version (#[event(version = {}, upcast_from = ...)]) and keep v{} only to upcast old events, or move the date in #[event(deprecated(sunset = \"YYYY-MM-DD\"))]",
            candidate.label(),
            self.options.today,
            candidate.version + 1,
            candidate.version
        );
        match self.options.sunset {
            SunsetPolicy::Error => self.problem(ErrorKind::Sunset, candidate, message),
            SunsetPolicy::Warn => self.report.warnings.push(message),
        }
    }

    fn published_version(
        &mut self,
        candidate: &Candidate,
        recorded: &VersionLock,
        digests: &Digests,
        stored: Option<&Stored>,
    ) {
        let id = EventVersion {
            event: candidate.event.clone(),
            version: candidate.version,
        };
        let proto_changed = match (&recorded.proto, &digests.proto) {
            (Some(a), Some(b)) => a != b,
            // A proto emitted for the first time for a published version is recorded, not a change.
            _ => false,
        };
        if recorded.schema == digests.schema && !proto_changed {
            let mut refreshed = false;
            let schema_path =
                self.registry
                    .schema_path(&candidate.context, &candidate.event, candidate.version);
            let text = pretty_json(&candidate.schema);
            if fs::read(&schema_path).map_or(true, |existing| existing != text.as_bytes()) {
                self.writes.insert(schema_path, text);
                refreshed = true;
            }
            if let Some(proto) = &candidate.proto {
                let proto_path = self.registry.proto_path(
                    &candidate.context,
                    &candidate.event,
                    candidate.version,
                );
                let text = with_newline(proto);
                if fs::read(&proto_path).map_or(true, |existing| existing != text.as_bytes()) {
                    self.writes.insert(proto_path, text);
                    refreshed = true;
                }
                if recorded.proto.is_none()
                    && let Some(entry) = self.lock.events.get_mut(&candidate.event)
                    && let Some(version) = entry
                        .versions
                        .iter_mut()
                        .find(|v| v.version == candidate.version)
                {
                    version.proto = digests.proto.clone();
                }
            }
            if refreshed {
                self.report.refreshed.push(id);
            } else {
                self.report.unchanged.push(id);
            }
            return;
        }

        // Where did it change?
        let mut places = Vec::new();
        if recorded.schema != digests.schema {
            match stored {
                Some(stored) if contract_digest_json(&stored.schema) == recorded.schema => {
                    let mut changes = Vec::new();
                    json_changes(
                        &strip_annotations(&stored.schema),
                        &strip_annotations(&candidate.schema),
                        &mut Vec::new(),
                        &mut changes,
                    );
                    places.extend(changes.into_iter().take(3).map(|(pointer, detail)| {
                        format!("{} ({detail})", field_pointer(&pointer))
                    }));
                    if places.is_empty() {
                        places.push("its JSON schema".into());
                    }
                }
                Some(_) => {
                    let path = self.registry.schema_path(
                        &candidate.context,
                        &candidate.event,
                        candidate.version,
                    );
                    let message = format!(
                        "{} no longer matches the digest in {LOCK_FILE}: it was edited by hand; restore it from version control",
                        path.display()
                    );
                    self.problem(ErrorKind::InvalidLock, candidate, message);
                    return;
                }
                None => places.push("its JSON schema".into()),
            }
        }
        if proto_changed {
            let detail = stored
                .and_then(|s| s.proto.as_deref())
                .zip(candidate.proto.as_deref())
                .and_then(|(old, new)| {
                    compat::diff_proto(
                        old,
                        new,
                        candidate.schema.get("title").and_then(Value::as_str),
                        ProtoCategory::WireJson,
                    )
                    .ok()
                })
                .and_then(|diffs| diffs.into_iter().next())
                .map(|d| format!(" at {} ({})", field_pointer(&d.pointer), d.detail))
                .unwrap_or_default();
            places.push(format!("v{}.proto{detail}", candidate.version));
        }
        let (version, next) = (candidate.version, candidate.version + 1);
        let type_name = candidate
            .schema
            .get("title")
            .and_then(Value::as_str)
            .unwrap_or("<the old type>");
        let message = format!(
            "published schemas never change: {} changed at {} [PUBLISHED_CHANGED]. Fix: bump the version: keep v{version} exactly as published (rename its type, e.g. {}V{version}) and put the change in v{next} (#[event(version = {next}, upcast_from = {}V{version})])",
            candidate.label(),
            places.join(", "),
            strip_v(type_name),
            strip_v(type_name),
        );
        self.problem(ErrorKind::PublishedChanged, candidate, message);
    }

    /// Checks and records a version that is not published yet. Returns whether it was added.
    fn new_version(
        &mut self,
        candidate: &Candidate,
        mode: CompatibilityMode,
        digests: &Digests,
        published: &BTreeMap<u32, Stored>,
    ) -> bool {
        let event = candidate.event.as_str();
        let label = candidate.label();
        let newest = self.lock.events.get(event).and_then(EventLock::newest);
        if let Some(newest) = newest
            && candidate.version != newest + 1
        {
            let message = if candidate.version < newest {
                format!(
                    "{label} is not in the registry but v{newest} is: published history only grows at the end; v{} cannot be added before it (if the type is only kept to upcast from, it was never published: remove it or give it the published schema)",
                    candidate.version
                )
            } else {
                let missing: Vec<String> = (newest + 1..candidate.version)
                    .map(|v| format!("v{v}"))
                    .collect();
                format!(
                    "{label} skips {}: the newest published version is v{newest}, so the next one is v{} (#[event(version = {})])",
                    missing.join(", "),
                    newest + 1,
                    newest + 1
                )
            };
            self.problem(ErrorKind::VersionGap, candidate, message);
            return false;
        }

        // Compatibility against the published versions.
        let versions: Vec<SchemaVersion<'_>> = published
            .iter()
            .map(|(version, stored)| SchemaVersion {
                version: *version,
                schema: &stored.schema,
                proto: stored.proto.as_deref(),
            })
            .collect();
        let this = SchemaVersion {
            version: candidate.version,
            schema: &candidate.schema,
            proto: candidate.proto.as_deref(),
        };
        let violations =
            match compat::check_with(event, mode, self.options.proto_category, &this, &versions) {
                Ok(violations) => violations,
                Err(err) => {
                    self.problem(
                        ErrorKind::InvalidCandidate,
                        candidate,
                        format!("{label}: {err}"),
                    );
                    return false;
                }
            };
        let mut failed = false;
        for violation in violations {
            // The upcaster reads the old version with its own type, so new consumers never
            // decode old data with the new schema: the backward half is covered, and so is the
            // protobuf half unless the mode also promises old consumers the new data.
            let covered = candidate
                .upcast_from
                .is_some_and(|from| violation.old_version >= from);
            let waived = covered
                && match violation.direction {
                    Direction::Backward => true,
                    Direction::Wire => !mode.checks_forward(),
                    Direction::Forward => false,
                };
            if waived {
                self.report.waived.push(violation);
            } else {
                failed = true;
                self.problems.push(Problem {
                    kind: ErrorKind::Incompatible,
                    event: Some(event.to_owned()),
                    version: Some(candidate.version),
                    message: violation.to_string(),
                    violation: Some(violation),
                });
            }
        }

        // Field numbers against the lock.
        let numbers = collect_field_numbers(&candidate.schema);
        let recorded = self
            .lock
            .events
            .get(event)
            .map(|e| e.field_numbers.clone())
            .unwrap_or_default();
        for (scope, candidate_numbers) in &numbers {
            let fields = &candidate_numbers.assigned;
            let empty = Numbering::default();
            let known = recorded.get(scope).unwrap_or(&empty);
            let mut seen: BTreeMap<u32, &String> = BTreeMap::new();
            for (path, &number) in fields {
                let place = field_place(scope, path);
                if let Some(other) = seen.insert(number, path) {
                    let message = format!(
                        "{label}: {place} and {} both have protobuf number {number} [FIELD_NUMBER_DUPLICATE]. Fix: give one of them another number (#[event(tag = {})]) or let the emitter choose",
                        field_place(scope, other),
                        known.next_free(number)
                    );
                    self.problem(ErrorKind::FieldNumber, candidate, message);
                    failed = true;
                    continue;
                }
                if let Some(&old) = known.assigned.get(path) {
                    if old != number {
                        let message = format!(
                            "{label}: {place} has protobuf number {old} in the published versions and {number} in v{} [FIELD_NUMBER_CHANGED]; a field's number is permanent. Fix: keep {old} (#[event(tag = {old})] or drop the tag); to change the field's type incompatibly, rename the field so it gets a new number and {old} is retired",
                            candidate.version
                        );
                        self.problem(ErrorKind::FieldNumber, candidate, message);
                        failed = true;
                    }
                } else if known.retired.contains(&number) {
                    let message = format!(
                        "{label}: {place} uses protobuf number {number}, which was retired when an earlier version dropped its field; retired numbers are never reused [FIELD_NUMBER_RETIRED]. Fix: use a fresh number such as {} (#[event(tag = {})] or drop the tag and let the emitter choose from the lock)",
                        known.next_free(1),
                        known.next_free(1)
                    );
                    self.problem(ErrorKind::FieldNumber, candidate, message);
                    failed = true;
                } else if let Some((owner, _)) = known
                    .assigned
                    .iter()
                    .find(|(p, n)| **n == number && *p != path)
                {
                    let dropped_here = !fields.contains_key(owner);
                    let message = if dropped_here {
                        format!(
                            "{label}: {place} uses protobuf number {number}, which was {}'s; v{} drops that field, so its number is retired and never reused [FIELD_NUMBER_RETIRED]. Fix: use a fresh number such as {} (#[event(tag = {})] or drop the tag and let the emitter choose from the lock)",
                            field_place(scope, owner),
                            candidate.version,
                            known.next_free(1),
                            known.next_free(1)
                        )
                    } else {
                        format!(
                            "{label}: {place} uses protobuf number {number}, which belongs to {} [FIELD_NUMBER_TAKEN]. Fix: use a fresh number such as {} (#[event(tag = {})] or drop the tag)",
                            field_place(scope, owner),
                            known.next_free(1),
                            known.next_free(1)
                        )
                    };
                    self.problem(ErrorKind::FieldNumber, candidate, message);
                    failed = true;
                }
            }
        }
        if failed {
            return false;
        }

        // Publish.
        let entry = self
            .lock
            .events
            .get_mut(event)
            .expect("entry inserted before");
        entry.versions.push(VersionLock {
            version: candidate.version,
            schema: digests.schema.clone(),
            proto: digests.proto.clone(),
        });
        entry.versions.sort_by_key(|v| v.version);
        for (scope, candidate_numbers) in numbers {
            let scope_numbers = entry.field_numbers.entry(scope).or_default();
            scope_numbers.assigned.extend(candidate_numbers.assigned);
            // Numbers the emitter already reserves (`x-proto-reserved`) stay retired.
            scope_numbers.retired.extend(candidate_numbers.retired);
        }
        self.writes.insert(
            self.registry
                .schema_path(&candidate.context, event, candidate.version),
            pretty_json(&candidate.schema),
        );
        if let Some(proto) = &candidate.proto {
            self.writes.insert(
                self.registry
                    .proto_path(&candidate.context, event, candidate.version),
                with_newline(proto),
            );
        }
        self.report.published.push(EventVersion {
            event: event.to_owned(),
            version: candidate.version,
        });
        true
    }
}

fn strip_v(name: &str) -> &str {
    let trimmed = name.trim_end_matches(|c: char| c.is_ascii_digit());
    if trimmed.len() < name.len()
        && let Some(base) = trimmed.strip_suffix('V')
        && !base.is_empty()
    {
        return base;
    }
    name
}

fn field_place(scope: &str, path: &str) -> String {
    if scope == ROOT_SCOPE {
        return format!("field `{path}`");
    }
    let owner = scope.trim_start_matches('#').trim_start_matches('/');
    let owner = owner
        .strip_prefix("$defs/")
        .or_else(|| owner.strip_prefix("definitions/"))
        .unwrap_or(owner);
    format!("field `{}.{path}` ({scope})", owner.replace('/', "."))
}

/// `/properties/total/type` → `/properties/total`: the pointer of the field that changed.
fn field_pointer(pointer: &str) -> String {
    let segments: Vec<&str> = pointer.split('/').collect();
    let mut end = segments.len();
    for i in (1..segments.len()).rev() {
        if i >= 2 && segments[i - 1] == "properties" {
            end = i + 1;
            break;
        }
    }
    let cut = segments[..end].join("/");
    if cut.is_empty() {
        "the event itself".to_owned()
    } else {
        cut
    }
}

// ---------------------------------------------------------------------------------------------
// Contracts and digests
// ---------------------------------------------------------------------------------------------

struct Digests {
    schema: String,
    proto: Option<String>,
}

fn contract_digests(candidate: &Candidate) -> Result<Digests, String> {
    let schema = contract_digest_json(&candidate.schema);
    let proto = match &candidate.proto {
        None => None,
        Some(text) => {
            let hint = candidate.schema.get("title").and_then(Value::as_str);
            let contract = compat::proto_contract(text, hint).map_err(|err| {
                format!(
                    "{}: v{}.proto: {}",
                    candidate.label(),
                    candidate.version,
                    err.message
                )
            })?;
            Some(sha256(contract.as_bytes()))
        }
    };
    Ok(Digests { schema, proto })
}

fn contract_digest_json(schema: &Value) -> String {
    sha256(canonical_json(&strip_annotations(schema)).as_bytes())
}

fn sha256(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::from("sha256:");
    for byte in digest {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

const STRIPPED: &[&str] = &["description", "title", "$comment", "examples", "x-event"];
const SCHEMA_MAPS: &[&str] = &[
    "properties",
    "$defs",
    "definitions",
    "patternProperties",
    "dependentSchemas",
];
const SCHEMA_VALUES: &[&str] = &[
    "items",
    "additionalProperties",
    "additionalItems",
    "not",
    "contains",
    "propertyNames",
    "if",
    "then",
    "else",
    "unevaluatedProperties",
    "unevaluatedItems",
];
const SCHEMA_ARRAYS: &[&str] = &["anyOf", "oneOf", "allOf", "prefixItems"];

/// The schema without annotations, keyword positions only (a property named `description`
/// stays).
fn strip_annotations(schema: &Value) -> Value {
    let Value::Object(map) = schema else {
        return schema.clone();
    };
    let mut out = Map::new();
    for (key, value) in map {
        if STRIPPED.contains(&key.as_str()) {
            continue;
        }
        let value = if SCHEMA_MAPS.contains(&key.as_str()) {
            match value {
                Value::Object(members) => Value::Object(
                    members
                        .iter()
                        .map(|(k, v)| (k.clone(), strip_annotations(v)))
                        .collect(),
                ),
                other => other.clone(),
            }
        } else if SCHEMA_VALUES.contains(&key.as_str()) {
            strip_annotations(value)
        } else if SCHEMA_ARRAYS.contains(&key.as_str()) {
            match value {
                Value::Array(items) => Value::Array(items.iter().map(strip_annotations).collect()),
                other => other.clone(),
            }
        } else {
            value.clone()
        };
        out.insert(key.clone(), value);
    }
    Value::Object(out)
}

/// Compact JSON with object keys sorted, whatever serde_json's map order.
fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            out.push('{');
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted(&map[k])))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// Pretty JSON, keys sorted, two-space indent, final newline: what the registry stores.
fn pretty_json(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(&sorted(value)).unwrap_or_default();
    text.push('\n');
    text
}

fn with_newline(text: &str) -> String {
    if text.ends_with('\n') {
        text.to_owned()
    } else {
        format!("{text}\n")
    }
}

/// Structural differences `(pointer, "old → new")`, depth first.
fn json_changes(a: &Value, b: &Value, path: &mut Vec<String>, out: &mut Vec<(String, String)>) {
    let pointer = |path: &[String]| -> String {
        path.iter()
            .map(|s| format!("/{}", s.replace('~', "~0").replace('/', "~1")))
            .collect()
    };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for key in keys {
                path.push(key.clone());
                match (x.get(key), y.get(key)) {
                    (Some(_), None) => out.push((pointer(path), "removed".into())),
                    (None, Some(v)) => out.push((pointer(path), format!("added: {}", short(v)))),
                    (Some(v), Some(w)) if v != w => json_changes(v, w, path, out),
                    _ => {}
                }
                path.pop();
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                if v != w {
                    path.push(i.to_string());
                    json_changes(v, w, path, out);
                    path.pop();
                }
            }
        }
        _ => {
            let key = path.last().cloned().unwrap_or_default();
            out.push((pointer(path), format!("{key}: {} → {}", short(a), short(b))));
        }
    }
}

fn short(value: &Value) -> String {
    let text = canonical_json(value);
    if text.chars().count() > 60 {
        format!("{}…", text.chars().take(60).collect::<String>())
    } else {
        text
    }
}

/// The protobuf numbers a schema carries, per scope (see [Field numbers](self#field-numbers)):
/// `x-proto-field` of properties and `x-proto-variants` of enums in `assigned`,
/// `x-proto-reserved` in `retired`. `$ref`s are not followed: a definition has its own scope.
pub fn collect_field_numbers(schema: &Value) -> BTreeMap<String, Numbering> {
    let mut out: BTreeMap<String, Numbering> = BTreeMap::new();
    collect_scope(schema, ROOT_SCOPE, &mut out);
    for key in ["$defs", "definitions"] {
        if let Some(Value::Object(defs)) = schema.get(key) {
            for (name, def) in defs {
                collect_scope(def, &format!("#/{key}/{name}"), &mut out);
            }
        }
    }
    out.retain(|_, numbers| !numbers.assigned.is_empty() || !numbers.retired.is_empty());
    out
}

fn number_of(value: &Value) -> Option<u32> {
    value.as_u64().and_then(|n| u32::try_from(n).ok())
}

/// Collects the numbers of the object (or enum) `node` into `scope`.
fn collect_scope(node: &Value, scope: &str, out: &mut BTreeMap<String, Numbering>) {
    let Value::Object(map) = node else { return };
    let numbers = out.entry(scope.to_owned()).or_default();
    for n in map
        .get("x-proto-reserved")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(number_of)
    {
        numbers.retired.insert(n);
    }
    if let Some(Value::Object(variants)) = map.get("x-proto-variants") {
        for (variant, n) in variants {
            if let Some(n) = number_of(n) {
                numbers.assigned.insert(variant.clone(), n);
            }
        }
    }
    if let Some(Value::Object(properties)) = map.get("properties") {
        for (name, property) in properties {
            match property.get("x-proto-field").and_then(number_of) {
                Some(n) => {
                    out.entry(scope.to_owned())
                        .or_default()
                        .assigned
                        .insert(name.clone(), n);
                    collect_inline(property, &format!("{scope}/{name}"), out);
                }
                // A variant's wrapper (`{"Card": {..}}`, adjacent `content`) or a tag: its
                // numbered properties belong to this scope.
                None => collect_scope(property, scope, out),
            }
        }
    }
    for key in ["oneOf", "anyOf"] {
        for branch in map.get(key).and_then(Value::as_array).into_iter().flatten() {
            match branch.get("x-variant").and_then(Value::as_str) {
                Some(variant) => collect_scope(branch, &format!("{scope}/{variant}"), out),
                None => collect_inline(branch, scope, out),
            }
        }
    }
}

/// An inline object below a numbered property (through arrays, maps and `Option`) is a nested
/// message of its own: scope `<scope>/<property>`.
fn collect_inline(node: &Value, scope: &str, out: &mut BTreeMap<String, Numbering>) {
    let Value::Object(map) = node else { return };
    if map.contains_key("properties") {
        collect_scope(node, scope, out);
    }
    for key in ["items", "additionalProperties"] {
        if let Some(value) = map.get(key) {
            collect_inline(value, scope, out);
        }
    }
    for key in ["anyOf", "oneOf", "prefixItems"] {
        for item in map.get(key).and_then(Value::as_array).into_iter().flatten() {
            collect_inline(item, scope, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn annotations_are_not_contract() {
        let a = json!({"title": "A", "description": "x", "properties": {"description": {"type": "string", "description": "d"}}});
        let b = json!({"title": "B", "properties": {"description": {"type": "string"}}});
        assert_eq!(contract_digest_json(&a), contract_digest_json(&b));
        let c = json!({"properties": {"description": {"type": "integer"}}});
        assert_ne!(contract_digest_json(&a), contract_digest_json(&c));
    }

    #[test]
    fn field_numbers_by_scope() {
        let schema = json!({
            "properties": {
                "id": {"type": "string", "x-proto-field": 1},
                "lines": {"type": "array", "items": {"$ref": "#/$defs/Line"}, "x-proto-field": 2},
                "timeout": {"anyOf": [{"type": "object", "properties": {
                    "secs": {"type": "integer", "x-proto-field": 1}}}, {"type": "null"}], "x-proto-field": 3}
            },
            "x-proto-reserved": [4],
            "$defs": {
                "Line": {"properties": {"sku": {"type": "string", "x-proto-field": 1}}},
                "Pay": {
                    "oneOf": [
                        {"type": "string", "enum": ["Pending"]},
                        {"properties": {"Card": {"properties": {"last4": {"x-proto-field": 1}}}}, "x-variant": "Card"},
                        {"properties": {"kind": {"const": "Cash"}, "currency": {"x-proto-field": 1}}, "x-variant": "Cash"}
                    ],
                    "x-proto-variants": {"Pending": 1, "Card": 2, "Cash": 3},
                    "x-proto-reserved": [5]
                }
            }
        });
        let numbers = collect_field_numbers(&schema);
        assert_eq!(numbers["#"].assigned["lines"], 2);
        assert_eq!(
            numbers["#"].retired.iter().copied().collect::<Vec<_>>(),
            [4]
        );
        assert_eq!(numbers["#/timeout"].assigned["secs"], 1);
        assert_eq!(numbers["#/$defs/Line"].assigned["sku"], 1);
        assert_eq!(numbers["#/$defs/Pay"].assigned["Card"], 2);
        assert!(numbers["#/$defs/Pay"].retired.contains(&5));
        assert_eq!(numbers["#/$defs/Pay/Card"].assigned["last4"], 1);
        assert_eq!(numbers["#/$defs/Pay/Cash"].assigned["currency"], 1);
        assert_eq!(numbers.len(), 6, "{numbers:?}");
    }

    #[test]
    fn pointers_name_fields() {
        assert_eq!(field_pointer("/properties/total/type"), "/properties/total");
        assert_eq!(
            field_pointer("/properties/lines/items/properties/sku/format"),
            "/properties/lines/items/properties/sku"
        );
        assert_eq!(field_pointer("/required/1"), "/required/1");
    }

    #[test]
    fn next_free_skips_used_and_reserved() {
        let numbers = Numbering {
            assigned: [("a".into(), 1), ("b".into(), 2)].into(),
            retired: [3].into(),
        };
        assert_eq!(numbers.next_free(1), 4);
        assert_eq!(numbers.next_free(19_000), 20_000);
    }
}
