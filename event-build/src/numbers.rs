//! Protobuf field numbers: stable across builds, never reused.
//!
//! In the pipeline: above the model, the error and the [`registry`](crate::registry) (whose
//! numbers it learns and whose [`Numbering`] it keeps), below the config and the scan, which
//! assigns the numbers.
//!
//! Every field of a message payload or nested type, and every variant of a nested enum, gets a
//! number, written into the `.proto` and, as `"x-proto-field": N`, next to the property in the
//! JSON Schema. In one scope (a message, a nested type, or the fields of one enum variant):
//!
//! 1. a number the source fixes wins: `#[event(tag = N)]` / `#[command(tag = N)]` on a field, or
//!    prost's `#[prost(..., tag = "N")]`;
//! 2. else the number [`FieldNumbers`] knows for the field (the registry fills it from the
//!    committed schemas, see [`FieldNumbers::learn_schema`]);
//! 3. else, when [`FieldNumbers`] knows nothing about the scope, declaration order from 1
//!    (skipping numbers already taken); when it knows something, a new field gets
//!    `max(used ∪ known ∪ reserved) + 1`, so a number that once meant something is never reused.
//!
//! Known numbers whose field is gone are emitted as `reserved` in the `.proto` and as
//! `"x-proto-reserved": [..]` in the schema, so learning from the next committed schema keeps
//! them reserved. Two fields with one number, or a fixed number that belonged to a removed
//! field, are errors.
//!
//! # Scopes and paths
//!
//! | owner | scope | field |
//! |---|---|---|
//! | [`Owner::Message`] (`name`, `version`) | `""` | the serde name of a payload field (flattened fields included) |
//! | [`Owner::Type`] (the `$defs` name) | `""` | the serde name of a struct field, or of an enum variant |
//! | [`Owner::Type`] | the serde name of a variant | the serde name of that variant's field |
//!
//! ```
//! use event_build::numbers::{FieldNumbers, Owner};
//!
//! let mut numbers = FieldNumbers::new();
//! let placed = Owner::Message { name: "orders.order_placed".into(), version: 3 };
//! numbers
//!     .set(placed.clone(), "", "order_id", 1)
//!     .set(placed.clone(), "", "total_cents", 2)
//!     .reserve(placed.clone(), "", 3); // a field that was removed
//! assert_eq!(numbers.get(&placed, "").unwrap().assigned["total_cents"], 2);
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;

use event_model::attr::{MAX_FIELD_NUMBER, RESERVED_FIELD_NUMBERS};
use serde_json::Value;

use crate::error::{Diagnostic, Location};
use crate::model::{Model, Shape};

/// What a scope's numbers belong to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Owner {
    /// One version of a message (its payload fields).
    Message {
        /// The CloudEvents `type`.
        name: String,
        /// The version.
        version: u32,
    },
    /// A nested type, shared by every message that uses it.
    Type {
        /// Its `$defs` name.
        name: String,
    },
}

/// The numbers known for one scope. Defined by the registry, whose lock records them per
/// scope ([`SchemaRegistry::field_numbers`](crate::registry::SchemaRegistry::field_numbers)); the
/// emitter keeps them in [`FieldNumbers`].
pub use crate::registry::Numbering;
/// The numbers handed out by earlier builds: the hook through which the schema registry keeps
/// protobuf numbers stable. Empty by default (numbers follow declaration order).
///
/// Fill it with [`set`](FieldNumbers::set) and [`reserve`](FieldNumbers::reserve), or with
/// [`learn_schema`](FieldNumbers::learn_schema) from committed schema files, and hand it to
/// [`Config::field_numbers`](crate::Config::field_numbers).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldNumbers {
    scopes: BTreeMap<(Owner, String), Numbering>,
}

/// [`FieldNumbers::learn_schema`] was given something that is not an event-build schema.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LearnError {
    reason: String,
}

impl fmt::Display for LearnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not an event-build schema: {}", self.reason)
    }
}

impl std::error::Error for LearnError {}

fn number(value: &Value) -> Option<u32> {
    value.as_u64().and_then(|n| u32::try_from(n).ok())
}

impl FieldNumbers {
    /// Knows nothing yet.
    pub fn new() -> Self {
        FieldNumbers::default()
    }

    /// Whether nothing is known.
    pub fn is_empty(&self) -> bool {
        self.scopes.is_empty()
    }

    /// Records that `field` of `scope` in `owner` has `number`.
    pub fn set(&mut self, owner: Owner, scope: &str, field: &str, number: u32) -> &mut Self {
        self.scopes
            .entry((owner, scope.to_owned()))
            .or_default()
            .assigned
            .insert(field.to_owned(), number);
        self
    }

    /// Records that `number` must never be used again in `scope` of `owner`.
    pub fn reserve(&mut self, owner: Owner, scope: &str, number: u32) -> &mut Self {
        self.scopes
            .entry((owner, scope.to_owned()))
            .or_default()
            .retired
            .insert(number);
        self
    }

    /// Reserves the name of a removed field in `scope` of `owner`.
    pub fn reserve_name(&mut self, owner: Owner, scope: &str, name: &str) -> &mut Self {
        self.scopes
            .entry((owner, scope.to_owned()))
            .or_default()
            .retired_names
            .insert(name.to_owned());
        self
    }

    /// What is known about `scope` of `owner`.
    pub fn get(&self, owner: &Owner, scope: &str) -> Option<&Numbering> {
        self.scopes.get(&(owner.clone(), scope.to_owned()))
    }

    /// Every scope known, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&Owner, &str, &Numbering)> {
        self.scopes
            .iter()
            .map(|((owner, scope), numbering)| (owner, scope.as_str(), numbering))
    }

    /// Learns every number in a schema this crate wrote (a committed `v<N>.schema.json`):
    /// `x-proto-field` of the properties, `x-proto-variants` of enums, `x-proto-reserved`, for
    /// the message named in `x-event` and for each of its `$defs`. Learning several schemas that
    /// share a nested type merges what they say about it.
    ///
    /// # Errors
    ///
    /// When `schema` has no `x-event` with a `name` and a `version`.
    pub fn learn_schema(&mut self, schema: &Value) -> Result<&mut Self, LearnError> {
        let event = schema.get("x-event").ok_or_else(|| LearnError {
            reason: "no `x-event`".into(),
        })?;
        let name = event
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| LearnError {
                reason: "`x-event` has no `name`".into(),
            })?;
        let version = event
            .get("version")
            .and_then(number)
            .ok_or_else(|| LearnError {
                reason: "`x-event` has no `version`".into(),
            })?;
        let owner = Owner::Message {
            name: name.to_owned(),
            version,
        };
        self.learn_object(schema, &owner, "");
        if let Some(defs) = schema.get("$defs").and_then(Value::as_object) {
            for (def_name, def) in defs {
                let owner = Owner::Type {
                    name: def_name.clone(),
                };
                self.learn_object(def, &owner, "");
                if let Some(variants) = def.get("x-proto-variants").and_then(Value::as_object) {
                    for (variant, n) in variants {
                        if let Some(n) = number(n) {
                            self.set(owner.clone(), "", variant, n);
                        }
                    }
                }
                for key in ["oneOf", "anyOf"] {
                    for branch in def.get(key).and_then(Value::as_array).into_iter().flatten() {
                        if let Some(variant) = branch.get("x-variant").and_then(Value::as_str) {
                            self.learn_variant(branch, &owner, variant);
                        }
                    }
                }
            }
        }
        Ok(self)
    }

    /// Learns what a schema registry knows ([`crate::registry`]), so that a re-emitted
    /// published version keeps its numbers and a new version never reuses one: every published
    /// version's committed `.schema.json` ([`learn_schema`](Self::learn_schema)), and, for the
    /// version after the newest published one, the lock's numbers (`#` for the payload,
    /// `#/$defs/<Name>[/<variant>]` for nested types) with its retired numbers reserved.
    ///
    /// # Errors
    ///
    /// When a published schema cannot be read.
    pub fn learn_registry(
        &mut self,
        registry: &crate::registry::SchemaRegistry,
    ) -> Result<&mut Self, crate::registry::RegistryError> {
        let events: Vec<String> = registry.events().map(str::to_owned).collect();
        for event in events {
            let versions = registry.versions(&event);
            for &version in &versions {
                if let Some(schema) = registry.schema(&event, version)? {
                    // A stored schema without `x-event` was not written by the emitter: it
                    // carries no numbers to learn.
                    let _ = self.learn_schema(&schema);
                }
            }
            let Some(&newest) = versions.last() else {
                continue;
            };
            let next = Owner::Message {
                name: event.clone(),
                version: newest + 1,
            };
            for (scope, numbering) in registry.field_numbers(&event) {
                let Some((owner, scope)) = lock_scope(&scope, &next) else {
                    continue;
                };
                let known = self.scopes.entry((owner, scope)).or_default();
                for (field, n) in numbering.assigned {
                    known.assigned.entry(field).or_insert(n);
                }
                known.retired.extend(numbering.retired);
                known.retired_names.extend(numbering.retired_names);
            }
        }
        Ok(self)
    }

    fn learn_object(&mut self, node: &Value, owner: &Owner, scope: &str) {
        if let Some(properties) = node.get("properties").and_then(Value::as_object) {
            for (field, property) in properties {
                if let Some(n) = property.get("x-proto-field").and_then(number) {
                    self.set(owner.clone(), scope, field, n);
                }
            }
        }
        for n in node
            .get("x-proto-reserved")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(number)
        {
            self.reserve(owner.clone(), scope, n);
        }
        for name in node
            .get("x-proto-reserved-names")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            self.reserve_name(owner.clone(), scope, name);
        }
    }

    /// A variant's fields are the numbered properties of its branch, or of the wrapping property
    /// (`{"Variant": {...}}`, or the adjacent `content`) that has no number of its own.
    fn learn_variant(&mut self, node: &Value, owner: &Owner, variant: &str) {
        self.learn_object(node, owner, variant);
        if let Some(properties) = node.get("properties").and_then(Value::as_object) {
            for property in properties.values() {
                if property.get("x-proto-field").is_none() {
                    self.learn_variant(property, owner, variant);
                }
            }
        }
    }
}

/// The owner and scope of a lock scope: `#` is `message`'s payload, `#/$defs/<Name>` a nested
/// type and `#/$defs/<Name>/<variant>` one of its variants. Inline objects have no owner here.
fn lock_scope(scope: &str, message: &Owner) -> Option<(Owner, String)> {
    if scope == crate::registry::ROOT_SCOPE {
        return Some((message.clone(), String::new()));
    }
    let rest = scope
        .strip_prefix("#/$defs/")
        .or_else(|| scope.strip_prefix("#/definitions/"))?;
    let (name, variant) = rest.split_once('/').unwrap_or((rest, ""));
    (!variant.contains('/')).then(|| {
        (
            Owner::Type {
                name: name.to_owned(),
            },
            variant.to_owned(),
        )
    })
}

struct Entry<'a> {
    name: &'a str,
    tag: Option<u32>,
    line: usize,
}

/// Assigns every number of `model` (see the module docs). Returns the conflicts.
pub(crate) fn assign(model: &mut Model, known: &FieldNumbers) -> Vec<Diagnostic> {
    let mut errors = Vec::new();
    for message in &mut model.messages {
        let owner = Owner::Message {
            name: message.name.clone(),
            version: message.version,
        };
        let place = Place {
            file: PathBuf::from(&message.source.file),
            line: message.source.line,
            what: format!(
                "{} {} v{}",
                message.kind.as_str(),
                message.name,
                message.version
            ),
        };
        assign_shape(&mut message.payload, &owner, "", known, &place, &mut errors);
    }
    // A struct that is the payload of a newtype message is inlined into that message's schema,
    // so its committed numbers were learned under the message: read them there too.
    let mut inlined: BTreeMap<String, Vec<Owner>> = BTreeMap::new();
    for message in &model.messages {
        if let Some(def) = crate::model::inlined_struct(&message.payload, &model.types) {
            inlined
                .entry(def.name.clone())
                .or_default()
                .push(Owner::Message {
                    name: message.name.clone(),
                    version: message.version,
                });
        }
    }
    for (name, def) in &mut model.types {
        let owner = Owner::Type { name: name.clone() };
        let place = Place {
            file: PathBuf::from(&def.source.file),
            line: def.source.line,
            what: format!("type {name}"),
        };
        let mut merged;
        let mut known = known;
        if let Some(messages) = inlined.get(name) {
            merged = known.clone();
            for message in messages {
                if let Some(numbering) = known.get(message, "") {
                    for (field, n) in &numbering.assigned {
                        let scope = merged
                            .scopes
                            .entry((owner.clone(), String::new()))
                            .or_default();
                        scope.assigned.entry(field.clone()).or_insert(*n);
                    }
                    for n in &numbering.retired {
                        merged.reserve(owner.clone(), "", *n);
                    }
                }
            }
            known = &merged;
        }
        assign_shape(&mut def.shape, &owner, "", known, &place, &mut errors);
    }
    errors
}

struct Place {
    file: PathBuf,
    line: usize,
    what: String,
}

fn assign_shape(
    shape: &mut Shape,
    owner: &Owner,
    scope: &str,
    known: &FieldNumbers,
    place: &Place,
    errors: &mut Vec<Diagnostic>,
) {
    match shape {
        Shape::Struct {
            fields,
            reserved,
            reserved_names,
            ..
        } => {
            let entries: Vec<Entry<'_>> = fields
                .iter()
                .map(|f| Entry {
                    name: &f.name,
                    tag: f.tag,
                    line: f.line,
                })
                .collect();
            let scope_known = known.get(owner, scope);
            let (numbers, retired) = assign_scope(&entries, scope_known, place, errors);
            for (field, n) in fields.iter_mut().zip(numbers) {
                field.number = n;
            }
            *reserved = retired;
            *reserved_names = retired_names(fields, scope_known);
        }
        Shape::Enum {
            variants, reserved, ..
        } => {
            let entries: Vec<Entry<'_>> = variants
                .iter()
                .map(|v| Entry {
                    name: &v.name,
                    tag: None,
                    line: place.line,
                })
                .collect();
            let (numbers, retired) = assign_scope(&entries, known.get(owner, scope), place, errors);
            for (variant, n) in variants.iter_mut().zip(numbers) {
                variant.number = n;
            }
            *reserved = retired;
            if scope.is_empty() {
                for variant in variants.iter_mut() {
                    let name = variant.name.clone();
                    assign_shape(&mut variant.payload, owner, &name, known, place, errors);
                }
            }
        }
        Shape::Newtype { .. } | Shape::Tuple { .. } | Shape::Unit => {}
    }
}

/// The names of the fields `known` had that `fields` no longer has, and the names retired before
/// (a field of that name again takes its name back).
fn retired_names(fields: &[crate::model::Field], known: Option<&Numbering>) -> Vec<String> {
    let Some(known) = known else {
        return Vec::new();
    };
    let present: BTreeSet<&str> = fields.iter().map(|f| f.name.as_str()).collect();
    let mut names: BTreeSet<&str> = known.retired_names.iter().map(String::as_str).collect();
    names.extend(known.assigned.keys().map(String::as_str));
    names
        .into_iter()
        .filter(|name| !present.contains(name))
        .map(str::to_owned)
        .collect()
}

fn assign_scope(
    entries: &[Entry<'_>],
    known: Option<&Numbering>,
    place: &Place,
    errors: &mut Vec<Diagnostic>,
) -> (Vec<u32>, Vec<u32>) {
    let empty = Numbering::default();
    let known = known.unwrap_or(&empty);
    let mut error = |line: usize, message: String| {
        errors.push(Diagnostic::new(
            Location {
                file: place.file.clone(),
                line,
                column: 1,
            },
            format!("{}: {message}", place.what),
        ));
    };
    let present: BTreeSet<&str> = entries.iter().map(|e| e.name).collect();
    let retired_by = |n: u32| -> Option<&str> {
        known
            .assigned
            .iter()
            .find(|(name, number)| **number == n && !present.contains(name.as_str()))
            .map(|(name, _)| name.as_str())
    };
    let mut numbers = vec![0u32; entries.len()];
    let mut used: BTreeMap<u32, &str> = BTreeMap::new();
    // 1. Numbers the source fixes.
    for (i, entry) in entries.iter().enumerate() {
        let Some(tag) = entry.tag else {
            continue;
        };
        if let Some(other) = used.get(&tag) {
            error(
                entry.line,
                format!(
                    "field `{}` and field `{other}` both have number {tag}",
                    entry.name
                ),
            );
        } else if let Some(gone) = retired_by(tag) {
            error(
                entry.line,
                format!(
                    "field `{}` takes number {tag}, which belonged to the removed field `{gone}`; a protobuf number is never reused",
                    entry.name
                ),
            );
        } else if known.retired.contains(&tag) {
            error(
                entry.line,
                format!(
                    "field `{}` takes number {tag}, which is reserved (it belonged to a removed field); a protobuf number is never reused",
                    entry.name
                ),
            );
        }
        used.insert(tag, entry.name);
        numbers[i] = tag;
    }
    // 2. Numbers known from earlier builds.
    for (i, entry) in entries.iter().enumerate() {
        if numbers[i] != 0 {
            continue;
        }
        if let Some(&n) = known.assigned.get(entry.name) {
            if let Some(other) = used.get(&n) {
                error(
                    entry.line,
                    format!(
                        "field `{}` had number {n} in the committed schema, but `{other}` now takes it",
                        entry.name
                    ),
                );
            }
            used.insert(n, entry.name);
            numbers[i] = n;
        }
    }
    // 3. New fields.
    let fresh = known.assigned.is_empty() && known.retired.is_empty();
    let mut taken: BTreeSet<u32> = used.keys().copied().collect();
    taken.extend(known.assigned.values().copied());
    taken.extend(known.retired.iter().copied());
    let mut next = if fresh {
        1
    } else {
        taken.iter().max().map_or(1, |m| m + 1)
    };
    for (i, entry) in entries.iter().enumerate() {
        if numbers[i] != 0 {
            continue;
        }
        while taken.contains(&next) || RESERVED_FIELD_NUMBERS.contains(&next) {
            next += 1;
        }
        if next > MAX_FIELD_NUMBER {
            error(entry.line, "no protobuf field number left".into());
        }
        numbers[i] = next;
        taken.insert(next);
        next += 1;
    }
    let in_use: BTreeSet<u32> = numbers.iter().copied().collect();
    let mut retired: BTreeSet<u32> = known.retired.clone();
    retired.extend(known.assigned.values().copied());
    let retired = retired.difference(&in_use).copied().collect();
    (numbers, retired)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries<'a>(names: &[(&'a str, Option<u32>)]) -> Vec<Entry<'a>> {
        names
            .iter()
            .map(|(name, tag)| Entry {
                name,
                tag: *tag,
                line: 1,
            })
            .collect()
    }

    fn place() -> Place {
        Place {
            file: "src/lib.rs".into(),
            line: 1,
            what: "event x v1".into(),
        }
    }

    #[test]
    fn fresh_scopes_follow_declaration_order_around_fixed_numbers() {
        let mut errors = Vec::new();
        let (numbers, reserved) = assign_scope(
            &entries(&[("a", None), ("b", Some(1)), ("c", None)]),
            None,
            &place(),
            &mut errors,
        );
        assert_eq!(numbers, [2, 1, 3]);
        assert!(reserved.is_empty() && errors.is_empty());
    }

    #[test]
    fn known_numbers_stay_and_new_fields_never_reuse_one() {
        let mut known = Numbering::default();
        known.assigned.insert("a".into(), 1);
        known.assigned.insert("gone".into(), 2);
        known.retired.insert(7);
        let mut errors = Vec::new();
        // `b` was declared before `a` now, and `gone` was removed.
        let (numbers, reserved) = assign_scope(
            &entries(&[("b", None), ("a", None)]),
            Some(&known),
            &place(),
            &mut errors,
        );
        assert_eq!(numbers, [8, 1]);
        assert_eq!(reserved, [2, 7]);
        assert!(errors.is_empty());
    }

    #[test]
    fn reusing_a_retired_number_or_a_taken_one_is_an_error() {
        let mut known = Numbering::default();
        known.assigned.insert("gone".into(), 2);
        let mut errors = Vec::new();
        assign_scope(
            &entries(&[("a", Some(2)), ("b", Some(3)), ("c", Some(3))]),
            Some(&known),
            &place(),
            &mut errors,
        );
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 2, "{text:?}");
        assert!(text[0].contains("removed field `gone`"), "{text:?}");
        assert!(text[1].contains("both have number 3"), "{text:?}");
    }

    #[test]
    fn numbers_skip_protobufs_own_range() {
        let mut known = Numbering::default();
        known.assigned.insert("a".into(), 18_999);
        let (numbers, _) = assign_scope(
            &entries(&[("a", None), ("b", None)]),
            Some(&known),
            &place(),
            &mut Vec::new(),
        );
        assert_eq!(numbers, [18_999, 20_000]);
    }

    #[test]
    fn learning_a_schema_reads_fields_variants_and_reserved_numbers() {
        let schema = serde_json::json!({
            "x-event": {"name": "orders.order_placed", "version": 3},
            "properties": {"order_id": {"x-proto-field": 1}},
            "x-proto-reserved": [4],
            "$defs": {
                "Payment": {
                    "x-proto-variants": {"Card": 1, "Cash": 2},
                    "oneOf": [
                        {"x-variant": "Card", "properties": {"Card": {"properties": {"last4": {"x-proto-field": 1}}}}}
                    ]
                }
            }
        });
        let mut numbers = FieldNumbers::new();
        numbers.learn_schema(&schema).unwrap();
        let message = Owner::Message {
            name: "orders.order_placed".into(),
            version: 3,
        };
        assert_eq!(numbers.get(&message, "").unwrap().assigned["order_id"], 1);
        assert!(numbers.get(&message, "").unwrap().retired.contains(&4));
        let payment = Owner::Type {
            name: "Payment".into(),
        };
        assert_eq!(numbers.get(&payment, "").unwrap().assigned["Cash"], 2);
        assert_eq!(numbers.get(&payment, "Card").unwrap().assigned["last4"], 1);
        assert!(
            FieldNumbers::new()
                .learn_schema(&serde_json::json!({}))
                .is_err()
        );
    }
}
