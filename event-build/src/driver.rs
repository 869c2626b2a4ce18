//! The build driver, the top of the pipeline: [`Config::generate`] scans the crate and renders
//! the schemas and the model, [`Config::emit`] writes them, runs the registry gate and writes the
//! catalog, and [`Config::run`] is what a build script calls. Every other module of the crate is
//! below it; `lib.rs` only re-exports.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use event_model::attr::Date;
use serde_json::Value;

use crate::catalog;
use crate::config::{Config, Generated, Report};
use crate::error::{Error, ErrorKind};
use crate::json_schema;
use crate::proto;
use crate::registry::{self, Candidate, CheckOptions, SchemaRegistry};
use crate::scan::{self, Scan};

impl Config {
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
        let mut model = model;
        for message in &mut model.messages {
            if message.compatibility.is_none() {
                message.compatibility = Some(self.compatibility_default.as_str().to_owned());
            }
        }
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
        self.build(Some(&out_dir))
    }

    /// The schema registry gate alone, writing nothing (what `evt schema check` runs): scans
    /// the crate, renders the schemas and checks them against the registry as
    /// [`emit`](Config::emit) would, in [`check_only`](Config::check_only) mode, and without
    /// an output directory. Without a [`registry_dir`](Config::registry_dir), `schemas` in the
    /// crate directory is used.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Registry`] with every violation, and the errors of
    /// [`generate`](Config::generate).
    pub fn check(&self) -> Result<Report, Error> {
        let mut config = self.clone();
        config.check_only = true;
        if config.registry_dir.is_none() {
            config.registry_dir = Some(PathBuf::from("schemas"));
        }
        config.build(None)
    }

    fn build(&self, out_dir: Option<&Path>) -> Result<Report, Error> {
        let registry = match &self.registry_dir {
            Some(dir) => {
                let dir = self.resolved_crate_dir().join(dir);
                let registry =
                    SchemaRegistry::open(&dir).map_err(|err| Error::from_registry(&dir, err))?;
                Some(registry)
            }
            None => None,
        };
        let generated = match &registry {
            Some(registry) => {
                let mut config = self.clone();
                config
                    .field_numbers
                    .learn_registry(registry)
                    .map_err(|err| Error::from_registry(registry.dir(), err))?;
                config.generate()?
            }
            None => self.generate()?,
        };
        let mut outcome = Outcome::default();
        let mut dirs: Vec<PathBuf> = out_dir.into_iter().map(Path::to_path_buf).collect();
        if out_dir.is_some() {
            dirs.extend(self.schema_dir.clone());
        }
        for dir in dirs {
            write_tree(&dir, &generated.files, &mut outcome)?;
        }
        let mut report = Report {
            generated,
            written: outcome.written,
            unchanged: outcome.unchanged,
            removed: outcome.removed,
            registry: None,
            registry_files: Vec::new(),
        };
        if let Some(mut registry) = registry {
            let candidates = candidates(&report.generated)
                .map_err(|err| Error::from_registry(registry.dir(), err))?;
            let mut options = CheckOptions::new(self.today.unwrap_or_else(today_utc));
            options.sunset = self.sunset_policy;
            options.write = !self.check_only;
            let gate = registry
                .check_and_update(&candidates, &options)
                .map_err(|err| Error::from_registry(registry.dir(), err))?;
            // After the gate: the files it just wrote (a new version, its example) are watched too.
            report.registry_files = registry.files();
            report.registry = Some(gate);
        }
        if let (Some(dir), Some(_)) = (&self.catalog_dir, out_dir) {
            let crate_dir = self.resolved_crate_dir();
            let registry =
                crate_dir.join(self.registry_dir.as_deref().unwrap_or("schemas".as_ref()));
            catalog::emit_for_config(&report.generated.model, &crate_dir, &registry, dir)?;
        }
        Ok(report)
    }

    /// What a build script calls: [`emit`](Config::emit), then prints
    /// `cargo:rerun-if-changed=` for every source file read and `cargo:warning=` for every
    /// warning.
    ///
    /// # Errors
    ///
    /// Those of [`emit`](Config::emit).
    pub fn run(&self) -> Result<Report, Error> {
        let report = self.emit();
        if let Some(dir) = &self.registry_dir {
            // Also when the gate fails: the next build must look again once the registry (or
            // the code) is fixed. The lock and the stored files are in `registry_files`.
            let dir = self.resolved_crate_dir().join(dir);
            println!(
                "cargo:rerun-if-changed={}",
                dir.join(registry::LOCK_FILE).display()
            );
        }
        let report = report?;
        for file in report
            .generated
            .files_read
            .iter()
            .chain(&report.registry_files)
        {
            println!("cargo:rerun-if-changed={}", file.display());
        }
        if let Some(gate) = &report.registry {
            for warning in &gate.warnings {
                println!("cargo:warning={}", warning.replace(['\n', '\r'], " "));
            }
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

impl Config {
    /// [`run`](Config::run), or on any error prints it to stderr (every registry violation,
    /// one paragraph each) and exits with status 1, which fails the build and shows the
    /// message. The whole `build.rs`:
    ///
    /// ```no_run
    /// fn main() {
    ///     event_build::Config::new().registry_dir("schemas").run_or_exit();
    /// }
    /// ```
    #[allow(clippy::needless_doctest_main)]
    pub fn run_or_exit(&self) -> Report {
        match self.run() {
            Ok(report) => report,
            Err(err) => {
                eprintln!("{err}");
                std::process::exit(1);
            }
        }
    }
}

/// One candidate per event and command version generated: its schema (with `x-event`) and `.proto`.
fn candidates(generated: &Generated) -> Result<Vec<Candidate>, registry::RegistryError> {
    let mut out = Vec::new();
    for message in &generated.model.messages {
        let Some(schema) = generated
            .files
            .get(&message.schema_file)
            .and_then(|text| serde_json::from_str::<Value>(text).ok())
        else {
            continue;
        };
        let proto = generated.files.get(&message.proto_file).cloned();
        out.push(Candidate::from_schema(schema, proto)?);
    }
    Ok(out)
}

/// Today's date in UTC from the system clock.
fn today_utc() -> Date {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    civil_from_days(i64::try_from(secs / 86_400).unwrap_or(0))
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> Date {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    Date {
        year: u16::try_from(year).unwrap_or(u16::MAX),
        month: u8::try_from(month).unwrap_or(1),
        day: u8::try_from(day).unwrap_or(1),
    }
}

#[cfg(test)]
mod tests {
    use super::civil_from_days;

    #[test]
    fn days_since_the_epoch_are_civil_dates() {
        for (days, date) in [
            (0, "1970-01-01"),
            (59, "1970-03-01"),
            (11_016, "2000-02-29"),
            (19_782, "2024-02-29"),
            (20_418, "2025-11-26"),
        ] {
            assert_eq!(civil_from_days(days).to_string(), date, "{days}");
        }
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
