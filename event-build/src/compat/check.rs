//! Checking a new version against the published ones under a mode: runs the
//! [`json`](super::json) and [`proto`](super::proto) differs and turns what breaks the mode into
//! [`Violation`]s. The top of the compatibility checker.

use serde_json::Value;

use super::explain::{Direction, FixContext, Violation, fix_text};
use super::json::diff_json;
use super::mode::CompatibilityMode;
use super::proto::{ProtoCategory, ProtoError, diff_proto};
use super::rule::Difference;

/// One version of an event as the checker sees it.
#[derive(Clone, Copy, Debug)]
pub struct SchemaVersion<'a> {
    /// The version number.
    pub version: u32,
    /// The JSON Schema document.
    pub schema: &'a Value,
    /// The `.proto` text, when there is one.
    pub proto: Option<&'a str>,
}

impl<'a> SchemaVersion<'a> {
    /// A version known only by its JSON schema.
    pub fn json(version: u32, schema: &'a Value) -> Self {
        SchemaVersion {
            version,
            schema,
            proto: None,
        }
    }

    /// A version with its JSON schema and its `.proto` text.
    pub fn with_proto(version: u32, schema: &'a Value, proto: &'a str) -> Self {
        SchemaVersion {
            version,
            schema,
            proto: Some(proto),
        }
    }

    fn title(&self) -> Option<&'a str> {
        self.schema.get("title").and_then(Value::as_str)
    }
}

/// Checks `candidate` against the `published` versions of `event` under `mode`.
///
/// Non-transitive modes check the latest published version older than the candidate,
/// transitive modes every one of them. An empty result means the candidate may be published.
/// Versions in `published` that are not older than the candidate are ignored.
pub fn check(
    event: &str,
    mode: CompatibilityMode,
    candidate: &SchemaVersion<'_>,
    published: &[SchemaVersion<'_>],
) -> Result<Vec<Violation>, ProtoError> {
    check_with(event, mode, ProtoCategory::WireJson, candidate, published)
}

/// [`check`] with a choice of buf category for the protobuf half.
pub fn check_with(
    event: &str,
    mode: CompatibilityMode,
    category: ProtoCategory,
    candidate: &SchemaVersion<'_>,
    published: &[SchemaVersion<'_>],
) -> Result<Vec<Violation>, ProtoError> {
    if mode == CompatibilityMode::None {
        return Ok(Vec::new());
    }
    let mut older: Vec<&SchemaVersion<'_>> = published
        .iter()
        .filter(|p| p.version < candidate.version)
        .collect();
    older.sort_by_key(|p| std::cmp::Reverse(p.version));
    if !mode.is_transitive() {
        older.truncate(1);
    }

    // Each half separately, to suggest the mode that would accept the change.
    let mut backward = Vec::new();
    let mut forward = Vec::new();
    let mut wire = Vec::new();
    for old in &older {
        let pair = (old.version, candidate.version);
        backward.extend(
            diff_json(old.schema, candidate.schema)
                .into_iter()
                .filter(|d| !d.is_compatible())
                .map(|d| (pair, d, *old)),
        );
        forward.extend(
            diff_json(candidate.schema, old.schema)
                .into_iter()
                .filter(|d| !d.is_compatible())
                .map(|d| (pair, d, *old)),
        );
        if let (Some(old_proto), Some(new_proto)) = (old.proto, candidate.proto) {
            let hint = candidate.title().or(old.title());
            let diffs =
                diff_proto(old_proto, new_proto, hint, category).map_err(|err| ProtoError {
                    file: format!("{event} v{}.proto or v{}.proto", pair.0, pair.1),
                    ..err
                })?;
            wire.extend(diffs.into_iter().map(|d| (pair, d, *old)));
        }
    }

    let alternative = match (backward.is_empty(), forward.is_empty(), wire.is_empty()) {
        (_, _, false) => CompatibilityMode::None,
        (true, false, true) => CompatibilityMode::from_parts(true, false, mode.is_transitive()),
        (false, true, true) => CompatibilityMode::from_parts(false, true, mode.is_transitive()),
        _ => CompatibilityMode::None,
    };

    let mut violations = Vec::new();
    let mut add = |direction: Direction,
                   list: Vec<((u32, u32), Difference, &SchemaVersion<'_>)>| {
        for ((old_version, new_version), diff, old) in list {
            let fix = fix_text(&FixContext {
                rule: diff.rule,
                direction,
                pointer: &diff.pointer,
                old_version,
                new_version,
                old_type: old.title(),
                alternative,
            });
            violations.push(Violation {
                event: event.to_owned(),
                old_version,
                new_version,
                pointer: diff.pointer,
                rule: diff.rule,
                mode,
                direction,
                detail: diff.detail,
                fix,
            });
        }
    };
    if mode.checks_backward() {
        add(Direction::Backward, backward);
    }
    if mode.checks_forward() {
        add(Direction::Forward, forward);
    }
    add(Direction::Wire, wire);
    violations.sort_by(|a, b| {
        (b.old_version, &a.pointer, a.direction as u8, a.rule).cmp(&(
            a.old_version,
            &b.pointer,
            b.direction as u8,
            b.rule,
        ))
    });
    Ok(violations)
}
