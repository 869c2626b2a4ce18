//! What the gate gives back: the [`Report`] of a run, and the [`RegistryError`] with every
//! [`Problem`] found. Beside the lock at the bottom of the registry.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::compat::{CompatibilityMode, Violation};

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

/// What [`SchemaRegistry::check_and_update`](super::SchemaRegistry::check_and_update) did.
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
    /// Warnings, one paragraph each (sunsets under [`SunsetPolicy::Warn`](super::SunsetPolicy::Warn)).
    pub warnings: Vec<String>,
    /// Files written, or that would be written when [`CheckOptions::write`](super::CheckOptions::write) is off.
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
    /// A version's stored example payload (`v<N>.example.json`) is not JSON or does not match
    /// the version's schema.
    InvalidExample,
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
            ErrorKind::InvalidExample => "invalid example",
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
    pub(super) problems: Vec<Problem>,
}

impl RegistryError {
    pub(super) fn single(
        kind: ErrorKind,
        event: Option<&str>,
        version: Option<u32>,
        message: String,
    ) -> Self {
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

    pub(super) fn io(path: &Path, action: &str, err: &std::io::Error) -> Self {
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
