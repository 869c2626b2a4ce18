//! Contract tests from the schema registry: every published version still on the wire, read
//! through the types and upcasters of this binary.
//!
//! `event-build` keeps one example payload per published version in the registry
//! (`schemas/<context>/<name>/v<N>.example.json`, generated from the version's schema or written
//! by hand, and checked against it). One call in a consumer's own tests decodes each of them
//! with the newest type of its name linked into the test binary, so a type change that can no
//! longer read an old version (a dropped upcaster, a new required field) fails `cargo test`
//! before it fails in production:
//!
//! ```no_run
//! #[test]
//! fn reads_every_published_version() {
//!     event_runtime::contracts::assert_reads_registry(concat!(env!("CARGO_MANIFEST_DIR"), "/schemas"));
//! }
//! ```
//!
//! Names in the registry that no type of the binary has are listed, not failed: a consumer
//! links only the messages it reads. Protobuf payloads are listed as skipped: the registry keeps
//! their example as JSON, not as protobuf bytes. A version newer than the newest linked type
//! fails, as its records would at run time (`future-version`): the binary is behind its
//! producers.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::message::Descriptor;
use crate::registry::{Reader, Registration};

/// One example found in the registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Example {
    /// The wire name (`orders.order_placed`).
    pub name: String,
    /// The version the example was written at.
    pub version: u32,
    /// The example file.
    pub path: PathBuf,
}

impl fmt::Display for Example {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} v{} ({})",
            self.name,
            self.version,
            self.path.display()
        )
    }
}

/// What [`check_registry`] found.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Report {
    /// Examples decoded, each with the Rust type that read it.
    pub read: Vec<(Example, &'static str)>,
    /// Examples the newest type of their name could not decode, with the reason.
    pub failed: Vec<(Example, String)>,
    /// Examples skipped, with the reason (protobuf payloads).
    pub skipped: Vec<(Example, String)>,
    /// Names in the registry that no type of this binary has.
    pub not_linked: Vec<String>,
}

impl Report {
    /// Whether every example of a linked type was read.
    pub fn passed(&self) -> bool {
        self.failed.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} example(s) read, {} failed, {} skipped, {} name(s) not in this binary",
            self.read.len(),
            self.failed.len(),
            self.skipped.len(),
            self.not_linked.len()
        )?;
        for (example, why) in &self.failed {
            write!(f, "\n  FAILED {example}: {why}")?;
        }
        for (example, why) in &self.skipped {
            write!(f, "\n  skipped {example}: {why}")?;
        }
        if !self.not_linked.is_empty() {
            write!(f, "\n  not in this binary: {}", self.not_linked.join(", "))?;
        }
        Ok(())
    }
}

/// The registry directory could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the schema registry at {}: {source}", path.display())]
pub struct Error {
    /// The file or directory.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

/// The newest linked type of each name, with its reader.
fn readers() -> BTreeMap<&'static str, (&'static Descriptor, Reader)> {
    let mut out: BTreeMap<&'static str, (&'static Descriptor, Reader)> = BTreeMap::new();
    for registration in inventory::iter::<Registration> {
        let Some(reader) = registration.reader else {
            continue;
        };
        for descriptor in registration.descriptors {
            let newer = out
                .get(descriptor.name)
                .is_none_or(|(held, _)| held.version < descriptor.version);
            if newer {
                out.insert(descriptor.name, (descriptor, reader));
            }
        }
    }
    out
}

fn read_dir(path: &Path) -> Result<Vec<PathBuf>, Error> {
    let error = |source| Error {
        path: path.to_owned(),
        source,
    };
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(path).map_err(error)? {
        entries.push(entry.map_err(error)?.path());
    }
    entries.sort();
    Ok(entries)
}

/// `v<N>.example.json` to `N`.
fn example_version(path: &Path) -> Option<u32> {
    path.file_name()?
        .to_str()?
        .strip_prefix('v')?
        .strip_suffix(".example.json")?
        .parse()
        .ok()
}

/// Decodes every example of the registry at `dir` (laid out as `event-build` writes it) with the
/// newest type of its name in this binary.
///
/// # Errors
///
/// When `dir` or a file in it cannot be read. A payload that does not decode is not an error
/// here but a [`Report::failed`] entry.
pub fn check_registry(dir: impl AsRef<Path>) -> Result<Report, Error> {
    let readers = readers();
    let mut report = Report::default();
    for context in read_dir(dir.as_ref())? {
        if !context.is_dir() {
            continue;
        }
        for name_dir in read_dir(&context)? {
            let Some(name) = name_dir.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if !name_dir.is_dir() {
                continue;
            }
            let mut examples: Vec<(u32, PathBuf)> = read_dir(&name_dir)?
                .into_iter()
                .filter_map(|path| Some((example_version(&path)?, path)))
                .collect();
            examples.sort();
            let Some((descriptor, reader)) = readers.get(name) else {
                if !examples.is_empty() {
                    report.not_linked.push(name.to_owned());
                }
                continue;
            };
            for (version, path) in examples {
                let data = std::fs::read(&path).map_err(|source| Error {
                    path: path.clone(),
                    source,
                })?;
                let example = Example {
                    name: name.to_owned(),
                    version,
                    path,
                };
                // The codec of that version: its own type's when it is still linked (a version
                // may have changed codec), else the newest type's.
                let content_type = crate::registry::Registry::global()
                    .ok()
                    .and_then(|registry| registry.get(name, version))
                    .map_or(descriptor.content_type, |d| d.content_type);
                if content_type != crate::codec::JSON {
                    report.skipped.push((
                        example,
                        format!(
                            "v{version} is a {content_type} payload; the registry keeps its example as JSON"
                        ),
                    ));
                    continue;
                }
                match reader(name, version, &data) {
                    Ok(()) => report.read.push((example, descriptor.rust_type)),
                    Err(err) => report.failed.push((
                        example,
                        format!(
                            "`{}` (v{}) cannot read it: {err}",
                            descriptor.rust_type, descriptor.version
                        ),
                    )),
                }
            }
        }
    }
    Ok(report)
}

/// [`check_registry`], panicking with the whole [`Report`] when an example fails or the
/// registry cannot be read, or when it holds no example this binary reads (a wrong path).
///
/// # Panics
///
/// As said: it is meant for a `#[test]`.
pub fn assert_reads_registry(dir: impl AsRef<Path>) {
    let dir = dir.as_ref();
    let report = match check_registry(dir) {
        Ok(report) => report,
        Err(err) => panic!("{err}"),
    };
    assert!(
        report.passed(),
        "the schema registry at {} has versions this binary cannot read: {report}",
        dir.display()
    );
    assert!(
        !report.read.is_empty(),
        "the schema registry at {} holds no example that a type of this binary reads: {report}",
        dir.display()
    );
}
