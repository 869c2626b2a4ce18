//! The [`Config`] builder: what to scan, where to write, and the numbers and schemas the build
//! cannot find in the sources, and what a build returns ([`Generated`], [`Report`]).
//!
//! In the pipeline: the settings sit under the scan, which reads them, and above the registry
//! and the numbers, whose types they hold; running a build is the driver's (the top).
//!
//! # Outputs
//!
//! Under the output directory (`OUT_DIR` by default, and also under
//! [`schema_dir`](Config::schema_dir) when one is set):
//!
//! | file | what |
//! |---|---|
//! | `schemas/<context>/<name>/v<N>.schema.json` | JSON Schema 2020-12 of each message version ([`crate::json_schema`]) |
//! | `schemas/<context>/<name>/v<N>.proto` | proto3 of each message version ([`crate::proto`]) |
//! | `model.json` | the whole scanned model: messages, nested types, handlers, producers ([`crate::model`] documents its shape) |
//!
//! A file is written only when its content changed (so its modification time, and anything
//! that depends on it, stays put), and a `.schema.json` or `.proto` under `schemas/` that no
//! message produces any more is removed.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;

use event_model::attr::Date;

use crate::compat::CompatibilityMode;
use crate::error::Diagnostic;
use crate::model::Model;
use crate::numbers::FieldNumbers;
use crate::registry::{self, SunsetPolicy};

/// Configures a build: prost-build style, `&mut self` setters, then [`run`](Config::run) in a
/// build script (or [`emit`](Config::emit) / [`generate`](Config::generate) elsewhere).
#[derive(Clone, Debug, Default)]
pub struct Config {
    pub(crate) crate_dir: Option<PathBuf>,
    pub(crate) sources: Vec<PathBuf>,
    pub(crate) out_dir: Option<PathBuf>,
    pub(crate) schema_dir: Option<PathBuf>,
    pub(crate) field_numbers: FieldNumbers,
    pub(crate) type_schemas: BTreeMap<String, Value>,
    pub(crate) registry_dir: Option<PathBuf>,
    pub(crate) compatibility_default: CompatibilityMode,
    pub(crate) sunset_policy: SunsetPolicy,
    pub(crate) check_only: bool,
    pub(crate) today: Option<Date>,
    pub(crate) catalog_dir: Option<PathBuf>,
}

/// Everything one build produces, in memory.
#[derive(Clone, Debug)]
pub struct Generated {
    /// The scanned model.
    pub model: Model,
    /// Every output file: path relative to the output directory (with `/`) to content.
    pub files: BTreeMap<String, String>,
    /// Every source file read.
    pub files_read: Vec<PathBuf>,
    /// Problems that do not stop the build.
    pub warnings: Vec<Diagnostic>,
}

/// What [`Config::emit`] did.
#[derive(Clone, Debug)]
pub struct Report {
    /// What was generated.
    pub generated: Generated,
    /// Files written because they were new or changed.
    pub written: Vec<PathBuf>,
    /// Files left alone because their content was already right.
    pub unchanged: Vec<PathBuf>,
    /// Stale schema files removed.
    pub removed: Vec<PathBuf>,
    /// What the schema registry gate did, when a registry is configured
    /// ([`Config::registry_dir`]).
    pub registry: Option<registry::Report>,
    /// The registry files the gate read (for `cargo:rerun-if-changed`).
    pub registry_files: Vec<PathBuf>,
}

impl Config {
    /// The defaults: the crate in `CARGO_MANIFEST_DIR` (else the current directory), its
    /// `src/lib.rs` and `src/main.rs`, output to `OUT_DIR`.
    pub fn new() -> Config {
        Config::default()
    }

    /// The crate to scan (default: `CARGO_MANIFEST_DIR`, else the current directory). Output
    /// paths in messages and in `model.json` are relative to it.
    pub fn crate_dir(&mut self, dir: impl Into<PathBuf>) -> &mut Self {
        self.crate_dir = Some(dir.into());
        self
    }

    /// The root files to scan instead of `src/lib.rs` and `src/main.rs` (relative paths are
    /// taken from the crate directory). Each is read as a crate root: its `mod x;` declarations
    /// are followed as rustc would from that file.
    pub fn sources<I, P>(&mut self, files: I) -> &mut Self
    where
        I: IntoIterator<Item = P>,
        P: Into<PathBuf>,
    {
        self.sources = files.into_iter().map(Into::into).collect();
        self
    }

    /// Where to write (default: `OUT_DIR`).
    pub fn out_dir(&mut self, dir: impl Into<PathBuf>) -> &mut Self {
        self.out_dir = Some(dir.into());
        self
    }

    /// A directory of your choice that receives the same files as the output directory (to
    /// serve the schemas, or to look at them in the repository).
    pub fn schema_dir(&mut self, dir: impl Into<PathBuf>) -> &mut Self {
        self.schema_dir = Some(dir.into());
        self
    }

    /// Turns on the schema registry gate with the registry in `dir` (relative paths are taken
    /// from the crate directory; `"schemas"` is the usual choice, committed next to
    /// `Cargo.toml`). See [`crate::registry`]. With a registry, [`emit`](Config::emit):
    ///
    /// 1. learns the protobuf numbers of the published versions and the lock's retired
    ///    numbers ([`FieldNumbers::learn_registry`]), so a published version keeps its numbers
    ///    and a new one never reuses a number;
    /// 2. scans and writes the schemas to the output directory as without a registry;
    /// 3. runs [`SchemaRegistry::check_and_update`](registry::SchemaRegistry::check_and_update)
    ///    on every event version emitted: new versions are checked against the published ones
    ///    under their compatibility mode and published (their files written to `dir`,
    ///    `registry.lock` updated), published versions must not change, versions past their
    ///    sunset fail. Any problem is an [`ErrorKind::Registry`](crate::ErrorKind::Registry)
    ///    error that lists every violation, and nothing is written to the registry.
    ///
    /// Do not point [`schema_dir`](Config::schema_dir) at the same directory: the registry
    /// owns it.
    pub fn registry_dir(&mut self, dir: impl Into<PathBuf>) -> &mut Self {
        self.registry_dir = Some(dir.into());
        self
    }

    /// The compatibility mode of events and commands without a `compatibility = "..."` of their
    /// own (default: `BACKWARD`). Written into each schema's `x-event.compatibility`.
    pub fn compatibility_default(&mut self, mode: CompatibilityMode) -> &mut Self {
        self.compatibility_default = mode;
        self
    }

    /// What a version past its `deprecated(sunset = "...")` date that is still produced does:
    /// fail the build (the default) or print a warning.
    pub fn sunset_policy(&mut self, policy: SunsetPolicy) -> &mut Self {
        self.sunset_policy = policy;
        self
    }

    /// Check the registry without writing it (for CI): a new version that would be published
    /// is reported in [`registry::Report::changed_files`] but not written.
    pub fn check_only(&mut self, check_only: bool) -> &mut Self {
        self.check_only = check_only;
        self
    }

    /// Today's date for sunset checks (default: the system clock, in UTC).
    pub fn today(&mut self, today: Date) -> &mut Self {
        self.today = Some(today);
        self
    }

    /// The protobuf numbers handed out before (see [`crate::numbers`]). With a
    /// [`registry_dir`](Config::registry_dir) the registry's numbers are learned on top of
    /// these; without one, this is how to keep numbers stable by hand.
    pub fn field_numbers(&mut self, numbers: FieldNumbers) -> &mut Self {
        self.field_numbers = numbers;
        self
    }

    /// The JSON Schema of a type the scan cannot resolve, wherever it is used (for example a
    /// type from another crate). `path` is matched on its last segments: `"Decimal"` or
    /// `"rust_decimal::Decimal"`. For one field of a message, `#[event(schema = "...")]` on the
    /// field does the same.
    ///
    /// ```
    /// use event_build::serde_json::json;
    ///
    /// let mut config = event_build::Config::new();
    /// config.type_schema("rust_decimal::Decimal", json!({"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]+)?$"}));
    /// ```
    pub fn type_schema(&mut self, path: impl Into<String>, schema: Value) -> &mut Self {
        self.type_schemas.insert(path.into(), schema);
        self
    }

    /// Also writes the event catalog (`catalog.json`, `catalog.md`, `asyncapi.json` and the
    /// static site, see [`crate::catalog`]) into `dir` on [`emit`](Config::emit), with the
    /// versions of the registry (or of `schemas/` in the crate directory) included.
    pub fn catalog_dir(&mut self, dir: impl Into<PathBuf>) -> &mut Self {
        self.catalog_dir = Some(dir.into());
        self
    }

    pub(crate) fn resolved_crate_dir(&self) -> PathBuf {
        self.crate_dir
            .clone()
            .or_else(|| std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("."))
    }
}
