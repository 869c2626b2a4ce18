//! The error of a build step and the diagnostics (errors and warnings) it carries, each with the
//! file and line the user wrote. Low in the pipeline: above the [`registry`](crate::registry),
//! whose [`RegistryError`] it wraps, and below every stage that fails.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::registry::RegistryError;

/// A place in the scanned sources.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Location {
    /// The file, as the scan opened it (relative to the crate directory when it lies inside it).
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

impl Location {
    pub(crate) fn from_span(file: &Path, span: proc_macro2::Span) -> Location {
        let start = span.start();
        Location {
            file: file.to_path_buf(),
            line: start.line,
            column: start.column + 1,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// One problem found in the sources: an error (in [`Error::diagnostics`]) or a warning (in the
/// report, printed as `cargo:warning=`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Diagnostic {
    /// Where it is.
    pub location: Location,
    /// What is wrong, in the words the derive uses for the same mistake.
    pub message: String,
}

impl Diagnostic {
    pub(crate) fn new(location: Location, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            location,
            message: message.into(),
        }
    }

    /// One diagnostic per error combined in `err` (syn combines the errors of one input).
    pub(crate) fn from_syn(file: &Path, err: syn::Error) -> Vec<Diagnostic> {
        Diagnostic::from_syn_at(file, err, None)
    }

    /// Like [`Diagnostic::from_syn`]; errors a parser put at the call site (it had no better
    /// span: a missing argument) go to `fallback`.
    pub(crate) fn from_syn_at(
        file: &Path,
        err: syn::Error,
        fallback: Option<&Location>,
    ) -> Vec<Diagnostic> {
        err.into_iter()
            .map(|e| {
                let location = match fallback {
                    Some(fallback) if e.span().byte_range() == (0..0) => fallback.clone(),
                    _ => Location::from_span(file, e.span()),
                };
                Diagnostic::new(location, e.to_string())
            })
            .collect()
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// What went wrong, to match on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A file could not be read or written ([`Error::path`] says which; the source is chained).
    Io,
    /// A source file is not valid Rust.
    Parse,
    /// The sources are valid Rust, but an attribute or a field number is wrong (the same errors
    /// the derive reports), in [`Error::diagnostics`].
    Invalid,
    /// Neither `src/lib.rs` nor `src/main.rs` exists and no source files were given.
    NoSources,
    /// No output directory: `OUT_DIR` is not set (not running from a build script) and
    /// [`Config::out_dir`](crate::Config::out_dir) was not called.
    NoOutDir,
    /// A `mod x;` declaration names a file that does not exist.
    MissingModule,
    /// The schema registry gate refused the build: a breaking change, a changed published
    /// version, a reused protobuf number, a version past its sunset... Every problem is in
    /// [`Error::registry`] and in the message, one paragraph each.
    Registry,
}

/// The error of [`Config::emit`](crate::Config::emit) and friends.
pub struct Error {
    kind: ErrorKind,
    path: Option<PathBuf>,
    diagnostics: Vec<Diagnostic>,
    source: Option<std::io::Error>,
    registry: Option<RegistryError>,
}

impl Error {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Error {
        Error {
            kind: ErrorKind::Io,
            path: Some(path.to_path_buf()),
            diagnostics: Vec::new(),
            source: Some(source),
            registry: None,
        }
    }

    pub(crate) fn new(kind: ErrorKind, path: Option<PathBuf>) -> Error {
        Error {
            kind,
            path,
            diagnostics: Vec::new(),
            source: None,
            registry: None,
        }
    }

    pub(crate) fn invalid(mut diagnostics: Vec<Diagnostic>) -> Error {
        diagnostics.sort();
        diagnostics.dedup();
        Error {
            kind: ErrorKind::Invalid,
            path: None,
            diagnostics,
            source: None,
            registry: None,
        }
    }

    pub(crate) fn from_registry(path: &Path, error: RegistryError) -> Error {
        Error {
            kind: ErrorKind::Registry,
            path: Some(path.to_path_buf()),
            diagnostics: Vec::new(),
            source: None,
            registry: Some(error),
        }
    }

    pub(crate) fn with_diagnostics(mut self, diagnostics: Vec<Diagnostic>) -> Error {
        self.diagnostics = diagnostics;
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The problems the schema registry found ([`ErrorKind::Registry`]).
    pub fn registry(&self) -> Option<&RegistryError> {
        self.registry.as_ref()
    }

    /// The file concerned, for [`ErrorKind::Io`], [`ErrorKind::NoSources`] and
    /// [`ErrorKind::MissingModule`]; the registry directory for [`ErrorKind::Registry`].
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Every problem found, each with its file and line ([`ErrorKind::Invalid`] and
    /// [`ErrorKind::Parse`]).
    pub fn diagnostics(&self) -> &[Diagnostic] {
        &self.diagnostics
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self
            .path
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        match self.kind {
            ErrorKind::Io => write!(f, "event-build: cannot access {path}")?,
            ErrorKind::Parse => write!(f, "event-build: a source file is not valid Rust")?,
            ErrorKind::Invalid => write!(
                f,
                "event-build: {} problem(s) in the event declarations",
                self.diagnostics.len()
            )?,
            ErrorKind::NoSources => write!(
                f,
                "event-build: no sources to scan: neither {path}/src/lib.rs nor {path}/src/main.rs exists; list the files with Config::sources"
            )?,
            ErrorKind::NoOutDir => write!(
                f,
                "event-build: OUT_DIR is not set (not running from a build script); set Config::out_dir"
            )?,
            ErrorKind::MissingModule => write!(f, "event-build: module file not found: {path}")?,
            ErrorKind::Registry => {
                let problems = self.registry.as_ref().map_or(&[][..], |r| r.problems());
                write!(
                    f,
                    "event-build: the schema registry in {path} refused the build: {} problem(s)",
                    problems.len()
                )?;
                for (i, problem) in problems.iter().enumerate() {
                    write!(f, "\n\n{}. {}", i + 1, problem.message)?;
                }
            }
        }
        for diagnostic in &self.diagnostics {
            write!(f, "\n  {diagnostic}")?;
        }
        Ok(())
    }
}

// A build script that returns or unwraps this error prints it with `{:?}`: make that readable.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}
