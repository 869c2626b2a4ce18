//! A structural diff of two JSON Schemas: every property path (nested objects as `a.b`, array
//! items as `a[]`, through `$ref`s into `$defs`) with its type and whether it is required, and
//! which paths were added, removed or changed between the two.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

/// One property of a schema, flattened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Property {
    /// `orderId`, `lines[].sku`, `shipTo.postalCode`.
    pub path: String,
    /// A short type label: `string`, `integer (uint32)`, `Money`, `string | null`, `enum [..]`.
    pub ty: String,
    /// Whether its object requires it.
    pub required: bool,
}

/// How one property differs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    /// Only in the newer schema.
    Added {
        /// The property.
        property: Property,
    },
    /// Only in the older schema.
    Removed {
        /// The property.
        property: Property,
    },
    /// In both, with another type or requiredness.
    Changed {
        /// Before.
        from: Property,
        /// After.
        to: Property,
    },
}

impl Change {
    /// The property path.
    pub fn path(&self) -> &str {
        match self {
            Change::Added { property } | Change::Removed { property } => &property.path,
            Change::Changed { to, .. } => &to.path,
        }
    }
}

/// How deep `$ref`s are followed (a recursive type stops there).
const MAX_DEPTH: usize = 8;

/// Every property of `schema`, by path.
pub fn properties(schema: &Value) -> BTreeMap<String, Property> {
    let mut out = BTreeMap::new();
    let defs = schema.get("$defs").cloned().unwrap_or(Value::Null);
    walk(
        schema,
        "",
        &defs,
        &mut |property, _| {
            out.insert(property.path.clone(), property);
        },
        0,
    );
    out
}

/// One row of a version's field table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldRow {
    /// Path, type and requiredness.
    #[serde(flatten)]
    pub property: Property,
    /// The field's doc comment (or that of the type it refers to).
    pub description: Option<String>,
    /// Its protobuf field number (`x-proto-field`), if it has one.
    pub proto_field: Option<u64>,
    /// The first version of the message that has it (filled in by the catalog).
    pub since: Option<u32>,
}

/// Every property of `schema` with its description and protobuf number, in path order.
pub fn fields(schema: &Value) -> Vec<FieldRow> {
    let mut out = BTreeMap::new();
    let defs = schema.get("$defs").cloned().unwrap_or(Value::Null);
    walk(
        schema,
        "",
        &defs,
        &mut |property, prop| {
            let description = prop
                .get("description")
                .or_else(|| resolve(non_null(prop), &defs).and_then(|d| d.get("description")))
                .and_then(Value::as_str)
                .map(|d| d.trim().to_owned());
            let proto_field = prop.get("x-proto-field").and_then(Value::as_u64);
            out.insert(
                property.path.clone(),
                FieldRow {
                    property,
                    description,
                    proto_field,
                    since: None,
                },
            );
        },
        0,
    );
    out.into_values().collect()
}

/// The changes from `old` to `new`, sorted by path.
pub fn diff(old: &Value, new: &Value) -> Vec<Change> {
    let a = properties(old);
    let b = properties(new);
    let mut changes = Vec::new();
    for (path, before) in &a {
        match b.get(path) {
            None => changes.push(Change::Removed {
                property: before.clone(),
            }),
            Some(after) if after != before => changes.push(Change::Changed {
                from: before.clone(),
                to: after.clone(),
            }),
            Some(_) => {}
        }
    }
    for (path, after) in &b {
        if !a.contains_key(path) {
            changes.push(Change::Added {
                property: after.clone(),
            });
        }
    }
    changes.sort_by(|x, y| x.path().cmp(y.path()));
    changes
}

fn resolve<'a>(schema: &'a Value, defs: &'a Value) -> Option<&'a Value> {
    let name = schema.get("$ref")?.as_str()?.strip_prefix("#/$defs/")?;
    defs.get(name)
}

/// The schema without a `null` alternative (`Option<T>`).
fn non_null(schema: &Value) -> &Value {
    for key in ["anyOf", "oneOf"] {
        if let Some(Value::Array(alts)) = schema.get(key) {
            let rest: Vec<&Value> = alts
                .iter()
                .filter(|a| a.get("type") != Some(&Value::String("null".into())))
                .collect();
            if rest.len() == 1 && alts.len() == 2 {
                return rest[0];
            }
        }
    }
    schema
}

fn walk(
    schema: &Value,
    prefix: &str,
    defs: &Value,
    out: &mut dyn FnMut(Property, &Value),
    depth: usize,
) {
    if depth > MAX_DEPTH {
        return;
    }
    let schema = non_null(schema);
    if let Some(target) = resolve(schema, defs) {
        walk(target, prefix, defs, out, depth + 1);
        return;
    }
    if let Some(Value::Object(props)) = schema.get("properties") {
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        for (name, prop) in props {
            let path = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}.{name}")
            };
            out(
                Property {
                    path: path.clone(),
                    ty: type_label(prop),
                    required: required.contains(&name.as_str()),
                },
                prop,
            );
            walk(prop, &path, defs, out, depth + 1);
        }
    }
    if let Some(items) = schema.get("items").filter(|i| i.is_object()) {
        walk(items, &format!("{prefix}[]"), defs, out, depth + 1);
    }
    if let Some(Value::Object(map)) = schema.get("additionalProperties")
        && !map.is_empty()
    {
        walk(
            &Value::Object(map.clone()),
            &format!("{prefix}{{}}"),
            defs,
            out,
            depth + 1,
        );
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(Value::Array(alts)) = schema.get(key) {
            for alt in alts {
                walk(alt, prefix, defs, out, depth + 1);
            }
        }
    }
}

/// A short label for the type of `schema`.
pub fn type_label(schema: &Value) -> String {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        return r.rsplit('/').next().unwrap_or(r).to_string();
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(Value::Array(alts)) = schema.get(key) {
            let labels: Vec<String> = alts.iter().map(type_label).collect();
            return labels.join(" | ");
        }
    }
    if let Some(Value::Array(values)) = schema.get("enum") {
        let values: Vec<String> = values.iter().map(Value::to_string).collect();
        return format!("enum [{}]", values.join(", "));
    }
    if let Some(c) = schema.get("const") {
        return format!("const {c}");
    }
    let base = match schema.get("type") {
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" | "),
        _ => "any".to_string(),
    };
    let base = match schema.get("items") {
        Some(items) if items.is_object() => format!("{base}<{}>", type_label(items)),
        _ => base,
    };
    match schema.get("format").and_then(Value::as_str) {
        Some(format) => format!("{base} ({format})"),
        None => base,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn added_removed_and_changed_fields_with_their_types() {
        let old = json!({
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "qty": {"type": "integer", "format": "uint32"},
                "gone": {"type": "boolean"},
                "lines": {"type": "array", "items": {"$ref": "#/$defs/Line"}}
            },
            "required": ["id", "qty"],
            "$defs": {"Line": {"type": "object", "properties": {"sku": {"type": "string"}}, "required": ["sku"]}}
        });
        let new = json!({
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "qty": {"type": "integer", "format": "uint64"},
                "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                "lines": {"type": "array", "items": {"$ref": "#/$defs/Line"}}
            },
            "required": ["id"],
            "$defs": {"Line": {"type": "object", "properties": {"sku": {"type": "string"}, "price": {"type": "integer"}}, "required": ["sku"]}}
        });
        let changes = diff(&old, &new);
        let summary: Vec<String> = changes
            .iter()
            .map(|c| match c {
                Change::Added { property } => format!("+{} {}", property.path, property.ty),
                Change::Removed { property } => format!("-{} {}", property.path, property.ty),
                Change::Changed { from, to } => format!(
                    "~{} {}/{} -> {}/{}",
                    to.path, from.ty, from.required, to.ty, to.required
                ),
            })
            .collect();
        assert_eq!(
            summary,
            [
                "-gone boolean",
                "+lines[].price integer",
                "+note string | null",
                "~qty integer (uint32)/true -> integer (uint64)/false",
            ]
        );
        assert!(diff(&new, &new).is_empty());
    }
}
