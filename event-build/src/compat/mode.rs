//! Compatibility modes, named and defined as in Confluent Schema Registry: the vocabulary at
//! the bottom of the compatibility checker, which every other part of [`compat`](super) uses.

use std::fmt;
use std::str::FromStr;

/// A compatibility mode, named and defined as in Confluent Schema Registry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CompatibilityMode {
    /// Consumers using the new version can read data written with the latest published one.
    #[default]
    Backward,
    /// As [`Backward`](Self::Backward), against every published version.
    BackwardTransitive,
    /// Consumers using the latest published version can read data written with the new one.
    Forward,
    /// As [`Forward`](Self::Forward), against every published version.
    ForwardTransitive,
    /// Backward and forward against the latest published version.
    Full,
    /// Backward and forward against every published version.
    FullTransitive,
    /// No check.
    None,
}

impl CompatibilityMode {
    /// Every mode, in Confluent's order.
    pub const ALL: [CompatibilityMode; 7] = [
        CompatibilityMode::Backward,
        CompatibilityMode::BackwardTransitive,
        CompatibilityMode::Forward,
        CompatibilityMode::ForwardTransitive,
        CompatibilityMode::Full,
        CompatibilityMode::FullTransitive,
        CompatibilityMode::None,
    ];

    /// The Confluent name: `BACKWARD`, `FULL_TRANSITIVE`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            CompatibilityMode::Backward => "BACKWARD",
            CompatibilityMode::BackwardTransitive => "BACKWARD_TRANSITIVE",
            CompatibilityMode::Forward => "FORWARD",
            CompatibilityMode::ForwardTransitive => "FORWARD_TRANSITIVE",
            CompatibilityMode::Full => "FULL",
            CompatibilityMode::FullTransitive => "FULL_TRANSITIVE",
            CompatibilityMode::None => "NONE",
        }
    }

    /// Whether new consumers must read old data.
    pub fn checks_backward(self) -> bool {
        matches!(
            self,
            CompatibilityMode::Backward
                | CompatibilityMode::BackwardTransitive
                | CompatibilityMode::Full
                | CompatibilityMode::FullTransitive
        )
    }

    /// Whether old consumers must read new data.
    pub fn checks_forward(self) -> bool {
        matches!(
            self,
            CompatibilityMode::Forward
                | CompatibilityMode::ForwardTransitive
                | CompatibilityMode::Full
                | CompatibilityMode::FullTransitive
        )
    }

    /// Whether the new version is checked against every published version, not only the latest.
    pub fn is_transitive(self) -> bool {
        matches!(
            self,
            CompatibilityMode::BackwardTransitive
                | CompatibilityMode::ForwardTransitive
                | CompatibilityMode::FullTransitive
        )
    }

    pub(super) fn from_parts(backward: bool, forward: bool, transitive: bool) -> CompatibilityMode {
        match (backward, forward, transitive) {
            (true, true, false) => CompatibilityMode::Full,
            (true, true, true) => CompatibilityMode::FullTransitive,
            (true, false, false) => CompatibilityMode::Backward,
            (true, false, true) => CompatibilityMode::BackwardTransitive,
            (false, true, false) => CompatibilityMode::Forward,
            (false, true, true) => CompatibilityMode::ForwardTransitive,
            (false, false, _) => CompatibilityMode::None,
        }
    }
}

impl fmt::Display for CompatibilityMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text is not one of Confluent's seven mode names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownMode(pub String);

impl fmt::Display for UnknownMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` is not a compatibility mode; use one of BACKWARD, BACKWARD_TRANSITIVE, FORWARD, \
             FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE, NONE",
            self.0
        )
    }
}

impl std::error::Error for UnknownMode {}

impl FromStr for CompatibilityMode {
    type Err = UnknownMode;

    /// Accepts the Confluent names in any case, with `_` or `-` (`backward-transitive`).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let normal = text.trim().to_ascii_uppercase().replace('-', "_");
        CompatibilityMode::ALL
            .into_iter()
            .find(|mode| mode.as_str() == normal)
            .ok_or_else(|| UnknownMode(text.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse() {
        assert_eq!(
            "backward-transitive".parse::<CompatibilityMode>().unwrap(),
            CompatibilityMode::BackwardTransitive
        );
        assert!("sideways".parse::<CompatibilityMode>().is_err());
        for mode in CompatibilityMode::ALL {
            assert_eq!(mode.as_str().parse::<CompatibilityMode>().unwrap(), mode);
        }
    }
}
