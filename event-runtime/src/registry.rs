//! Every message type linked into the binary, collected at link time.
//!
//! Each derive submits its descriptors with `inventory`. At start-up [`Registry::global`] checks
//! what the compiler could not see across crates: two Rust types claiming one name and version, a
//! name used both as an event and a command or by two contexts, and upcaster chains that do not
//! reach back to the oldest version still registered.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::OnceLock;

use crate::error::DecodeError;
use crate::message::{Descriptor, MessageKind};

/// Decodes a payload of one of a registration's names and versions into its type (through its
/// upcasters) and drops the value: what [`contracts`](crate::contracts) tries on every example.
#[doc(hidden)]
pub type Reader = fn(&str, u32, &[u8]) -> Result<(), DecodeError>;

/// One derive's submission. Created by generated code only.
#[doc(hidden)]
#[derive(Debug)]
pub struct Registration {
    pub(crate) descriptors: &'static [Descriptor],
    pub(crate) reader: Option<Reader>,
}

impl Registration {
    #[doc(hidden)]
    pub const fn new(descriptors: &'static [Descriptor]) -> Self {
        Registration {
            descriptors,
            reader: None,
        }
    }

    #[doc(hidden)]
    #[must_use]
    pub const fn with_reader(mut self, reader: Reader) -> Self {
        self.reader = Some(reader);
        self
    }
}

inventory::collect!(Registration);

/// The validated set of message types in this binary.
#[derive(Debug)]
pub struct Registry {
    by_name: BTreeMap<&'static str, Vec<&'static Descriptor>>,
}

/// One inconsistency found at start-up.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// Two Rust types claim the same wire name and version.
    Duplicate {
        /// Wire name.
        name: &'static str,
        /// Version.
        version: u32,
        /// The Rust types.
        rust_types: Vec<&'static str>,
    },
    /// One wire name is used by events and commands, or by two contexts.
    Conflict {
        /// Wire name.
        name: &'static str,
        /// What differs.
        what: String,
    },
    /// The newest type of a name cannot decode an older registered version.
    BrokenChain {
        /// Wire name.
        name: &'static str,
        /// The newest version and its Rust type.
        newest: (u32, &'static str),
        /// The older version it cannot read.
        unreadable: u32,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Duplicate {
                name,
                version,
                rust_types,
            } => write!(
                f,
                "`{name}` version {version} is claimed by {}: give one of them another name or version",
                rust_types.join(" and ")
            ),
            Problem::Conflict { name, what } => write!(f, "`{name}`: {what}"),
            Problem::BrokenChain {
                name,
                newest,
                unreadable,
            } => write!(
                f,
                "`{name}`: the newest type `{}` (version {}) cannot read version {unreadable}, which is still registered; link it with `upcast_from` or `upcast_json`",
                newest.1, newest.0
            ),
        }
    }
}

/// Start-up validation failed; every problem is listed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct RegistryError {
    /// Every problem found.
    pub problems: Vec<Problem>,
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} message registry problem(s):", self.problems.len())?;
        for problem in &self.problems {
            write!(f, "\n  - {problem}")?;
        }
        Ok(())
    }
}

static GLOBAL: OnceLock<Result<Registry, RegistryError>> = OnceLock::new();

impl Registry {
    /// The registry of every type derived in this binary, validated once.
    ///
    /// # Errors
    ///
    /// A [`RegistryError`] listing every duplicate, conflict and broken chain.
    pub fn global() -> Result<&'static Registry, &'static RegistryError> {
        GLOBAL
            .get_or_init(|| {
                Registry::from_descriptors(
                    inventory::iter::<Registration>
                        .into_iter()
                        .flat_map(|r| r.descriptors.iter()),
                )
            })
            .as_ref()
    }

    /// Builds and validates a registry from explicit descriptors.
    ///
    /// # Errors
    ///
    /// A [`RegistryError`] listing every duplicate, conflict and broken chain.
    pub fn from_descriptors(
        descriptors: impl IntoIterator<Item = &'static Descriptor>,
    ) -> Result<Registry, RegistryError> {
        let mut by_name: BTreeMap<&'static str, Vec<&'static Descriptor>> = BTreeMap::new();
        for descriptor in descriptors {
            by_name.entry(descriptor.name).or_default().push(descriptor);
        }
        let mut problems = Vec::new();
        for (name, list) in &mut by_name {
            list.sort_by_key(|d| (d.version, d.rust_type));
            list.dedup_by(|a, b| a == b);
            let kinds: Vec<MessageKind> = list.iter().map(|d| d.kind).collect();
            if kinds.iter().any(|k| *k != kinds[0]) {
                problems.push(Problem::Conflict {
                    name,
                    what: "used by both an event and a command".to_owned(),
                });
            }
            let mut contexts: Vec<&str> = list.iter().map(|d| d.context).collect();
            contexts.dedup();
            if contexts.len() > 1 {
                problems.push(Problem::Conflict {
                    name,
                    what: format!(
                        "claimed by several contexts ({}); an event has one owner",
                        contexts.join(", ")
                    ),
                });
            }
            for group in list.chunk_by(|a, b| a.version == b.version) {
                if group.len() > 1 {
                    problems.push(Problem::Duplicate {
                        name,
                        version: group[0].version,
                        rust_types: group.iter().map(|d| d.rust_type).collect(),
                    });
                }
            }
            let newest = list.last().expect("non-empty");
            let oldest_registered = list[0].version;
            if newest.oldest_readable_version > oldest_registered {
                problems.push(Problem::BrokenChain {
                    name,
                    newest: (newest.version, newest.rust_type),
                    unreadable: oldest_registered,
                });
            }
        }
        if problems.is_empty() {
            Ok(Registry { by_name })
        } else {
            Err(RegistryError { problems })
        }
    }

    /// Every descriptor, by name then version.
    pub fn iter(&self) -> impl Iterator<Item = &'static Descriptor> + '_ {
        self.by_name.values().flatten().copied()
    }

    /// Every event descriptor.
    pub fn events(&self) -> impl Iterator<Item = &'static Descriptor> + '_ {
        self.iter().filter(|d| d.kind == MessageKind::Event)
    }

    /// Every command descriptor.
    pub fn commands(&self) -> impl Iterator<Item = &'static Descriptor> + '_ {
        self.iter().filter(|d| d.kind == MessageKind::Command)
    }

    /// Every registered version of `name`, oldest first.
    pub fn versions(&self, name: &str) -> &[&'static Descriptor] {
        self.by_name.get(name).map_or(&[], Vec::as_slice)
    }

    /// The newest registered version of `name`: the type consumers decode into.
    pub fn latest(&self, name: &str) -> Option<&'static Descriptor> {
        self.versions(name).last().copied()
    }

    /// The descriptor of `name` at `version`.
    pub fn get(&self, name: &str, version: u32) -> Option<&'static Descriptor> {
        self.versions(name)
            .iter()
            .find(|d| d.version == version)
            .copied()
    }
}
