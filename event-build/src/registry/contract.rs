//! The contract of a version, what must never change once it is published: the JSON schema
//! without its annotations and the `.proto` as parsed, each as a digest; the canonical JSON the
//! registry stores; and the protobuf numbers a schema carries. Used by the gate.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::compat;

use super::input::Candidate;
use super::lock::{Numbering, ROOT_SCOPE};

pub(super) struct Digests {
    pub(super) schema: String,
    pub(super) proto: Option<String>,
}

pub(super) fn contract_digests(candidate: &Candidate) -> Result<Digests, String> {
    let schema = contract_digest_json(&candidate.schema);
    let proto = match &candidate.proto {
        None => None,
        Some(text) => {
            let hint = candidate.schema.get("title").and_then(Value::as_str);
            let contract = compat::proto_contract(text, hint).map_err(|err| {
                format!(
                    "{}: v{}.proto: {}",
                    candidate.label(),
                    candidate.version,
                    err.message
                )
            })?;
            Some(sha256(contract.as_bytes()))
        }
    };
    Ok(Digests { schema, proto })
}

pub(super) fn contract_digest_json(schema: &Value) -> String {
    sha256(canonical_json(&strip_annotations(schema)).as_bytes())
}

fn sha256(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::from("sha256:");
    for byte in digest {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

const STRIPPED: &[&str] = &["description", "title", "$comment", "examples", "x-event"];
const SCHEMA_MAPS: &[&str] = &[
    "properties",
    "$defs",
    "definitions",
    "patternProperties",
    "dependentSchemas",
];
const SCHEMA_VALUES: &[&str] = &[
    "items",
    "additionalProperties",
    "additionalItems",
    "not",
    "contains",
    "propertyNames",
    "if",
    "then",
    "else",
    "unevaluatedProperties",
    "unevaluatedItems",
];
const SCHEMA_ARRAYS: &[&str] = &["anyOf", "oneOf", "allOf", "prefixItems"];

/// The schema without annotations, keyword positions only (a property named `description`
/// stays).
pub(super) fn strip_annotations(schema: &Value) -> Value {
    let Value::Object(map) = schema else {
        return schema.clone();
    };
    let mut out = Map::new();
    for (key, value) in map {
        if STRIPPED.contains(&key.as_str()) {
            continue;
        }
        let value = if SCHEMA_MAPS.contains(&key.as_str()) {
            match value {
                Value::Object(members) => Value::Object(
                    members
                        .iter()
                        .map(|(k, v)| (k.clone(), strip_annotations(v)))
                        .collect(),
                ),
                other => other.clone(),
            }
        } else if SCHEMA_VALUES.contains(&key.as_str()) {
            strip_annotations(value)
        } else if SCHEMA_ARRAYS.contains(&key.as_str()) {
            match value {
                Value::Array(items) => Value::Array(items.iter().map(strip_annotations).collect()),
                other => other.clone(),
            }
        } else {
            value.clone()
        };
        out.insert(key.clone(), value);
    }
    Value::Object(out)
}

/// Compact JSON with object keys sorted, whatever serde_json's map order.
fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            out.push('{');
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted(&map[k])))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// Pretty JSON, keys sorted, two-space indent, final newline: what the registry stores.
pub(super) fn pretty_json(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(&sorted(value)).unwrap_or_default();
    text.push('\n');
    text
}

pub(super) fn with_newline(text: &str) -> String {
    if text.ends_with('\n') {
        text.to_owned()
    } else {
        format!("{text}\n")
    }
}

/// Structural differences `(pointer, "old → new")`, depth first.
pub(super) fn json_changes(
    a: &Value,
    b: &Value,
    path: &mut Vec<String>,
    out: &mut Vec<(String, String)>,
) {
    let pointer = |path: &[String]| -> String {
        path.iter()
            .map(|s| format!("/{}", s.replace('~', "~0").replace('/', "~1")))
            .collect()
    };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for key in keys {
                path.push(key.clone());
                match (x.get(key), y.get(key)) {
                    (Some(_), None) => out.push((pointer(path), "removed".into())),
                    (None, Some(v)) => out.push((pointer(path), format!("added: {}", short(v)))),
                    (Some(v), Some(w)) if v != w => json_changes(v, w, path, out),
                    _ => {}
                }
                path.pop();
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                if v != w {
                    path.push(i.to_string());
                    json_changes(v, w, path, out);
                    path.pop();
                }
            }
        }
        _ => {
            let key = path.last().cloned().unwrap_or_default();
            out.push((pointer(path), format!("{key}: {} → {}", short(a), short(b))));
        }
    }
}

fn short(value: &Value) -> String {
    let text = canonical_json(value);
    if text.chars().count() > 60 {
        format!("{}…", text.chars().take(60).collect::<String>())
    } else {
        text
    }
}

/// The protobuf numbers a schema carries, per scope (see [Field numbers](crate::registry#field-numbers)):
/// `x-proto-field` of properties and `x-proto-variants` of enums in `assigned`,
/// `x-proto-reserved` in `retired`. `$ref`s are not followed: a definition has its own scope.
pub fn collect_field_numbers(schema: &Value) -> BTreeMap<String, Numbering> {
    let mut out: BTreeMap<String, Numbering> = BTreeMap::new();
    collect_scope(schema, ROOT_SCOPE, &mut out);
    for key in ["$defs", "definitions"] {
        if let Some(Value::Object(defs)) = schema.get(key) {
            for (name, def) in defs {
                collect_scope(def, &format!("#/{key}/{name}"), &mut out);
            }
        }
    }
    out.retain(|_, numbers| !numbers.assigned.is_empty() || !numbers.retired.is_empty());
    out
}

fn number_of(value: &Value) -> Option<u32> {
    value.as_u64().and_then(|n| u32::try_from(n).ok())
}

/// Collects the numbers of the object (or enum) `node` into `scope`.
fn collect_scope(node: &Value, scope: &str, out: &mut BTreeMap<String, Numbering>) {
    let Value::Object(map) = node else { return };
    let numbers = out.entry(scope.to_owned()).or_default();
    for n in map
        .get("x-proto-reserved")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(number_of)
    {
        numbers.retired.insert(n);
    }
    if let Some(Value::Object(variants)) = map.get("x-proto-variants") {
        for (variant, n) in variants {
            if let Some(n) = number_of(n) {
                numbers.assigned.insert(variant.clone(), n);
            }
        }
    }
    if let Some(Value::Object(properties)) = map.get("properties") {
        for (name, property) in properties {
            match property.get("x-proto-field").and_then(number_of) {
                Some(n) => {
                    out.entry(scope.to_owned())
                        .or_default()
                        .assigned
                        .insert(name.clone(), n);
                    collect_inline(property, &format!("{scope}/{name}"), out);
                }
                // A variant's wrapper (`{"Card": {..}}`, adjacent `content`) or a tag: its
                // numbered properties belong to this scope.
                None => collect_scope(property, scope, out),
            }
        }
    }
    for key in ["oneOf", "anyOf"] {
        for branch in map.get(key).and_then(Value::as_array).into_iter().flatten() {
            match branch.get("x-variant").and_then(Value::as_str) {
                Some(variant) => collect_scope(branch, &format!("{scope}/{variant}"), out),
                None => collect_inline(branch, scope, out),
            }
        }
    }
}

/// An inline object below a numbered property (through arrays, maps and `Option`) is a nested
/// message of its own: scope `<scope>/<property>`.
fn collect_inline(node: &Value, scope: &str, out: &mut BTreeMap<String, Numbering>) {
    let Value::Object(map) = node else { return };
    if map.contains_key("properties") {
        collect_scope(node, scope, out);
    }
    for key in ["items", "additionalProperties"] {
        if let Some(value) = map.get(key) {
            collect_inline(value, scope, out);
        }
    }
    for key in ["anyOf", "oneOf", "prefixItems"] {
        for item in map.get(key).and_then(Value::as_array).into_iter().flatten() {
            collect_inline(item, scope, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn annotations_are_not_contract() {
        let a = json!({"title": "A", "description": "x", "properties": {"description": {"type": "string", "description": "d"}}});
        let b = json!({"title": "B", "properties": {"description": {"type": "string"}}});
        assert_eq!(contract_digest_json(&a), contract_digest_json(&b));
        let c = json!({"properties": {"description": {"type": "integer"}}});
        assert_ne!(contract_digest_json(&a), contract_digest_json(&c));
    }

    #[test]
    fn field_numbers_by_scope() {
        let schema = json!({
            "properties": {
                "id": {"type": "string", "x-proto-field": 1},
                "lines": {"type": "array", "items": {"$ref": "#/$defs/Line"}, "x-proto-field": 2},
                "timeout": {"anyOf": [{"type": "object", "properties": {
                    "secs": {"type": "integer", "x-proto-field": 1}}}, {"type": "null"}], "x-proto-field": 3}
            },
            "x-proto-reserved": [4],
            "$defs": {
                "Line": {"properties": {"sku": {"type": "string", "x-proto-field": 1}}},
                "Pay": {
                    "oneOf": [
                        {"type": "string", "enum": ["Pending"]},
                        {"properties": {"Card": {"properties": {"last4": {"x-proto-field": 1}}}}, "x-variant": "Card"},
                        {"properties": {"kind": {"const": "Cash"}, "currency": {"x-proto-field": 1}}, "x-variant": "Cash"}
                    ],
                    "x-proto-variants": {"Pending": 1, "Card": 2, "Cash": 3},
                    "x-proto-reserved": [5]
                }
            }
        });
        let numbers = collect_field_numbers(&schema);
        assert_eq!(numbers["#"].assigned["lines"], 2);
        assert_eq!(
            numbers["#"].retired.iter().copied().collect::<Vec<_>>(),
            [4]
        );
        assert_eq!(numbers["#/timeout"].assigned["secs"], 1);
        assert_eq!(numbers["#/$defs/Line"].assigned["sku"], 1);
        assert_eq!(numbers["#/$defs/Pay"].assigned["Card"], 2);
        assert!(numbers["#/$defs/Pay"].retired.contains(&5));
        assert_eq!(numbers["#/$defs/Pay/Card"].assigned["last4"], 1);
        assert_eq!(numbers["#/$defs/Pay/Cash"].assigned["currency"], 1);
        assert_eq!(numbers.len(), 6, "{numbers:?}");
    }
}
