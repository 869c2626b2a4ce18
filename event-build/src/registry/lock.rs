//! `registry.lock`: its name, its format, what it records per event, and [`Numbering`], the
//! numbers of one scope that the lock and the emitter's `numbers` share. The bottom of the
//! registry; the store and the gate read and write it.

use std::collections::{BTreeMap, BTreeSet};

use event_model::attr::RESERVED_FIELD_NUMBERS;
use serde::{Deserialize, Serialize};

use crate::compat::CompatibilityMode;

/// The lock file's name inside the registry directory.
pub const LOCK_FILE: &str = "registry.lock";

/// The scope of the event's own message in
/// [`SchemaRegistry::field_numbers`](super::SchemaRegistry::field_numbers).
pub const ROOT_SCOPE: &str = "#";

/// The lock format written by this version.
pub(super) const LOCK_FORMAT: u32 = 1;

/// The numbers known for one scope: what the emitter keeps ([`FieldNumbers`](crate::numbers::FieldNumbers)) and what the
/// registry lock records per scope ([`SchemaRegistry::field_numbers`](crate::registry::SchemaRegistry::field_numbers)).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Numbering {
    /// Field (or variant) name to number.
    pub assigned: BTreeMap<String, u32>,
    /// Numbers never to be used again (their field was removed).
    pub retired: BTreeSet<u32>,
    /// Names of removed fields, reserved in the `.proto` of every later version (protobuf's
    /// JSON mapping reads fields by name).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub retired_names: BTreeSet<String>,
}

impl Numbering {
    /// The lowest number that is neither assigned nor retired (and outside protobuf's
    /// 19000..=19999), at or above `at_least`.
    pub fn next_free(&self, at_least: u32) -> u32 {
        let used: BTreeSet<u32> = self
            .assigned
            .values()
            .copied()
            .chain(self.retired.iter().copied())
            .collect();
        let mut n = at_least.max(1);
        while used.contains(&n) || RESERVED_FIELD_NUMBERS.contains(&n) {
            n += 1;
        }
        n
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct Lock {
    pub(super) format: u32,
    pub(super) events: BTreeMap<String, EventLock>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct EventLock {
    pub(super) context: String,
    pub(super) compatibility: String,
    pub(super) versions: Vec<VersionLock>,
    #[serde(default)]
    pub(super) field_numbers: BTreeMap<String, Numbering>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct VersionLock {
    pub(super) version: u32,
    /// Digest of the JSON schema's contract.
    pub(super) schema: String,
    /// Digest of the `.proto` file's contract.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) proto: Option<String>,
}

impl EventLock {
    pub(super) fn mode(&self) -> CompatibilityMode {
        self.compatibility.parse().unwrap_or_default()
    }

    pub(super) fn version(&self, version: u32) -> Option<&VersionLock> {
        self.versions.iter().find(|v| v.version == version)
    }

    pub(super) fn newest(&self) -> Option<u32> {
        self.versions.iter().map(|v| v.version).max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_free_skips_used_and_reserved() {
        let numbers = Numbering {
            assigned: [("a".into(), 1), ("b".into(), 2)].into(),
            retired: [3].into(),
            ..Numbering::default()
        };
        assert_eq!(numbers.next_free(1), 4);
        assert_eq!(numbers.next_free(19_000), 20_000);
    }
}
