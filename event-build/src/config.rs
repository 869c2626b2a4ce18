//! The [`Config`] builder: what to scan, where to write, and the numbers and schemas the build
//! cannot find in the sources.
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
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{Diagnostic, Error, ErrorKind};
use crate::model::Model;
use crate::numbers::FieldNumbers;
use crate::scan::{self, Scan};
use crate::{json_schema, proto};

/// Configures a build: prost-build style, `&mut self` setters, then [`run`](Config::run) in a
/// build script (or [`emit`](Config::emit) / [`generate`](Config::generate) elsewhere).
#[derive(Clone, Debug, Default)]
pub struct Config {
    crate_dir: Option<PathBuf>,
    sources: Vec<PathBuf>,
    out_dir: Option<PathBuf>,
    schema_dir: Option<PathBuf>,
    field_numbers: FieldNumbers,
    type_schemas: BTreeMap<String, Value>,
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

    /// The protobuf numbers handed out before (see [`crate::numbers`]): the schema registry
    /// fills this from the committed schemas so that numbers stay put and are never reused.
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

    pub(crate) fn resolved_crate_dir(&self) -> PathBuf {
        self.crate_dir
            .clone()
            .or_else(|| std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("."))
    }

    pub(crate) fn resolved_sources(&self, crate_dir: &Path) -> Result<Vec<PathBuf>, Error> {
        if !self.sources.is_empty() {
            return Ok(self.sources.iter().map(|p| crate_dir.join(p)).collect());
        }
        let roots = scan::default_roots(crate_dir);
        if roots.is_empty() {
            return Err(Error::new(
                ErrorKind::NoSources,
                Some(crate_dir.to_path_buf()),
            ));
        }
        Ok(roots)
    }

    pub(crate) fn known_numbers(&self) -> &FieldNumbers {
        &self.field_numbers
    }

    pub(crate) fn type_schemas(&self) -> &BTreeMap<String, Value> {
        &self.type_schemas
    }

    /// Scans the crate and renders every output, without touching the file system beyond
    /// reading the sources.
    ///
    /// # Errors
    ///
    /// See [`scan::scan`].
    pub fn generate(&self) -> Result<Generated, Error> {
        let Scan {
            model,
            files_read,
            warnings,
        } = scan::scan(self)?;
        let mut files = BTreeMap::new();
        for message in &model.messages {
            files.insert(
                message.schema_file.clone(),
                json_schema::to_pretty(&json_schema::message_schema(&model, message)),
            );
            files.insert(
                message.proto_file.clone(),
                proto::message_proto(&model, message),
            );
        }
        let model_json = serde_json::to_value(&model)
            .unwrap_or_else(|_| unreachable!("the model has string keys only"));
        files.insert("model.json".into(), json_schema::to_pretty(&model_json));
        Ok(Generated {
            model,
            files,
            files_read,
            warnings,
        })
    }

    /// [`generate`](Config::generate), then writes the files that changed into the output
    /// directory (and the schema directory), and removes stale schema files. Prints nothing.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NoOutDir`] without an output directory, [`ErrorKind::Io`] when a file cannot
    /// be written, and the errors of [`generate`](Config::generate).
    pub fn emit(&self) -> Result<Report, Error> {
        let out_dir = self
            .out_dir
            .clone()
            .or_else(|| std::env::var_os("OUT_DIR").map(PathBuf::from))
            .ok_or_else(|| Error::new(ErrorKind::NoOutDir, None))?;
        let generated = self.generate()?;
        let mut outcome = Outcome::default();
        let mut dirs = vec![out_dir];
        dirs.extend(self.schema_dir.clone());
        for dir in dirs {
            write_tree(&dir, &generated.files, &mut outcome)?;
        }
        Ok(Report {
            generated,
            written: outcome.written,
            unchanged: outcome.unchanged,
            removed: outcome.removed,
        })
    }

    /// What a build script calls: [`emit`](Config::emit), then prints
    /// `cargo:rerun-if-changed=` for every source file read and `cargo:warning=` for every
    /// warning.
    ///
    /// # Errors
    ///
    /// Those of [`emit`](Config::emit).
    pub fn run(&self) -> Result<Report, Error> {
        let report = self.emit()?;
        for file in &report.generated.files_read {
            println!("cargo:rerun-if-changed={}", file.display());
        }
        for warning in &report.generated.warnings {
            // One line per warning: cargo shows each `cargo:warning` line on its own.
            println!(
                "cargo:warning={}",
                warning.to_string().replace(['\n', '\r'], " ")
            );
        }
        Ok(report)
    }
}

#[derive(Default)]
struct Outcome {
    written: Vec<PathBuf>,
    unchanged: Vec<PathBuf>,
    removed: Vec<PathBuf>,
}

fn write_tree(
    dir: &Path,
    files: &BTreeMap<String, String>,
    report: &mut Outcome,
) -> Result<(), Error> {
    for (relative, content) in files {
        let path = dir.join(relative);
        match std::fs::read(&path) {
            Ok(existing) if existing == content.as_bytes() => {
                report.unchanged.push(path);
                continue;
            }
            _ => {}
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        std::fs::write(&path, content).map_err(|e| Error::io(&path, e))?;
        report.written.push(path);
    }
    prune(&dir.join("schemas"), dir, files, report)?;
    Ok(())
}

/// Removes the `.schema.json` and `.proto` files under `schemas/` that were not generated, and
/// the directories that leaves empty.
fn prune(
    current: &Path,
    root: &Path,
    files: &BTreeMap<String, String>,
    report: &mut Outcome,
) -> Result<(), Error> {
    let entries = match std::fs::read_dir(current) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(Error::io(current, err)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(current, e))?;
        let path = entry.path();
        if path.is_dir() {
            prune(&path, root, files, report)?;
            if std::fs::read_dir(&path).is_ok_and(|mut d| d.next().is_none()) {
                std::fs::remove_dir(&path).map_err(|e| Error::io(&path, e))?;
            }
            continue;
        }
        let name = path.to_string_lossy();
        if !(name.ends_with(".schema.json") || name.ends_with(".proto")) {
            continue;
        }
        let relative = path
            .strip_prefix(root)
            .map(|p| p.to_string_lossy().replace('\\', "/"))
            .unwrap_or_default();
        if !files.contains_key(&relative) {
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
            report.removed.push(path);
        }
    }
    Ok(())
}
