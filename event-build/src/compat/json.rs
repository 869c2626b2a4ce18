//! The JSON Schema differ: a port of Confluent's JSON Schema diff for the subset the build step
//! emits (the module documentation of [`compat`](super) lists the rules and where this port
//! differs). Above [`rule`](super::rule); [`check`](super::check) runs it both ways.

use std::collections::{BTreeSet, HashSet};

use serde_json::{Map, Value};

use super::rule::{Difference, Rule, pointer};

/// Lists the differences between a writer's schema and a reader's schema, compatible ones
/// included, following Confluent's JSON Schema diff (see the module documentation).
///
/// `$ref`s are resolved against each document's own `$defs`; recursive definitions are
/// compared once.
pub fn diff_json(writer: &Value, reader: &Value) -> Vec<Difference> {
    let mut differ = JsonDiffer {
        writer_root: writer,
        reader_root: reader,
        in_progress: HashSet::new(),
    };
    let mut out = Vec::new();
    let mut path = Vec::new();
    differ.compare(&mut out, &mut path, Some(writer), Some(reader));
    out
}

fn is_compatible(diffs: &[Difference]) -> bool {
    diffs.iter().all(Difference::is_compatible)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Criterion {
    All,
    Any,
    One,
}

impl Criterion {
    fn keyword(self) -> &'static str {
        match self {
            Criterion::All => "allOf",
            Criterion::Any => "anyOf",
            Criterion::One => "oneOf",
        }
    }
}

#[derive(Debug)]
enum Kind {
    False,
    Empty,
    Combined(Criterion, Vec<Value>),
    Enum(Vec<Value>),
    String,
    Number,
    Boolean,
    Null,
    Object,
    Array,
}

impl Kind {
    fn class(&self) -> &'static str {
        match self {
            Kind::False => "false",
            Kind::Empty => "any",
            Kind::Combined(..) => "combined",
            Kind::Enum(_) => "enum",
            Kind::String => "string",
            Kind::Number => "number",
            Kind::Boolean => "boolean",
            Kind::Null => "null",
            Kind::Object => "object",
            Kind::Array => "array",
        }
    }
}

const ANNOTATIONS: &[&str] = &[
    "$schema",
    "$id",
    "$comment",
    "$defs",
    "definitions",
    "title",
    "description",
    "default",
    "examples",
    "deprecated",
    "readOnly",
    "writeOnly",
];

fn is_annotation(key: &str) -> bool {
    ANNOTATIONS.contains(&key) || key.starts_with("x-")
}

fn kind_of(schema: &Value) -> Kind {
    let map = match schema {
        Value::Bool(true) => return Kind::Empty,
        Value::Bool(false) => return Kind::False,
        Value::Object(map) => map,
        _ => return Kind::Empty,
    };
    for criterion in [Criterion::Any, Criterion::One, Criterion::All] {
        if let Some(Value::Array(subschemas)) = map.get(criterion.keyword()) {
            return Kind::Combined(criterion, subschemas.clone());
        }
    }
    if let Some(Value::Array(values)) = map.get("enum") {
        return Kind::Enum(values.clone());
    }
    if let Some(value) = map.get("const") {
        return Kind::Enum(vec![value.clone()]);
    }
    match map.get("type") {
        Some(Value::String(name)) => kind_of_type(name),
        Some(Value::Array(types)) if types.len() == 1 => match &types[0] {
            Value::String(name) => kind_of_type(name),
            _ => Kind::Empty,
        },
        Some(Value::Array(types)) => {
            // `"type": ["string", "null"]` is `anyOf` of one schema per type.
            let subschemas = types
                .iter()
                .map(|ty| {
                    let mut copy = map.clone();
                    copy.insert("type".into(), ty.clone());
                    Value::Object(copy)
                })
                .collect();
            Kind::Combined(Criterion::Any, subschemas)
        }
        _ => {
            let has = |keys: &[&str]| keys.iter().any(|key| map.contains_key(*key));
            if has(&[
                "properties",
                "additionalProperties",
                "required",
                "patternProperties",
            ]) {
                Kind::Object
            } else if has(&["items", "prefixItems"]) {
                Kind::Array
            } else if map.keys().all(|key| is_annotation(key)) {
                Kind::Empty
            } else if has(&["maxLength", "minLength", "pattern"]) {
                Kind::String
            } else if has(&[
                "minimum",
                "maximum",
                "exclusiveMinimum",
                "exclusiveMaximum",
                "multipleOf",
            ]) {
                Kind::Number
            } else {
                Kind::Empty
            }
        }
    }
}

fn kind_of_type(name: &str) -> Kind {
    match name {
        "string" => Kind::String,
        "integer" | "number" => Kind::Number,
        "boolean" => Kind::Boolean,
        "null" => Kind::Null,
        "object" => Kind::Object,
        "array" => Kind::Array,
        _ => Kind::Empty,
    }
}

struct JsonDiffer<'a> {
    writer_root: &'a Value,
    reader_root: &'a Value,
    in_progress: HashSet<(String, String)>,
}

/// Resolves `$ref` (local `#/...` pointers only), merging the referring schema's own keywords
/// (description, default, ...) over the referred one. Returns the schema and the last `$ref`.
fn resolve(root: &Value, schema: &Value) -> (Value, Option<String>) {
    let mut current = schema.clone();
    let mut last_ref = None;
    for _ in 0..32 {
        let Some(reference) = current
            .get("$ref")
            .and_then(Value::as_str)
            .map(str::to_owned)
        else {
            break;
        };
        let target = reference
            .strip_prefix('#')
            .and_then(|pointer| root.pointer(pointer))
            .cloned()
            .unwrap_or(Value::Bool(true));
        let mut merged = match target {
            Value::Object(map) => map,
            Value::Bool(true) => Map::new(),
            other => return (other, Some(reference)),
        };
        if let Value::Object(own) = &current {
            for (key, value) in own {
                if key != "$ref" {
                    merged.insert(key.clone(), value.clone());
                }
            }
        }
        current = Value::Object(merged);
        last_ref = Some(reference);
    }
    (current, last_ref)
}

fn number(map: &Map<String, Value>, key: &str) -> Option<f64> {
    map.get(key).and_then(Value::as_f64)
}

fn string<'m>(map: &'m Map<String, Value>, key: &str) -> Option<&'m str> {
    map.get(key).and_then(Value::as_str)
}

fn empty_map() -> &'static Map<String, Value> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(Map::new)
}

fn as_map(schema: &Value) -> &Map<String, Value> {
    schema.as_object().unwrap_or_else(|| empty_map())
}

fn has_default(schema: Option<&Value>) -> bool {
    schema
        .and_then(Value::as_object)
        .is_some_and(|map| map.contains_key("default"))
}

/// Value range of the integer and floating point formats, as the Rust types behind them.
fn numeric_format_range(format: &str) -> Option<(f64, f64)> {
    Some(match format {
        "int8" => (i8::MIN as f64, i8::MAX as f64),
        "int16" => (i16::MIN as f64, i16::MAX as f64),
        "int32" => (i32::MIN as f64, i32::MAX as f64),
        "int64" => (i64::MIN as f64, i64::MAX as f64),
        "int128" => (i128::MIN as f64, i128::MAX as f64),
        "uint8" => (0.0, u8::MAX as f64),
        "uint16" => (0.0, u16::MAX as f64),
        "uint32" => (0.0, u32::MAX as f64),
        "uint64" => (0.0, u64::MAX as f64),
        "uint128" => (0.0, u128::MAX as f64),
        "float" => (f32::MIN as f64, f32::MAX as f64),
        "double" => (f64::MIN, f64::MAX),
        _ => return None,
    })
}

fn values_text(values: &[&Value]) -> String {
    values
        .iter()
        .map(|value| value.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A short name for a `oneOf`/`anyOf` subschema: its title, the single property of an
/// externally tagged variant, or its constant.
fn variant_label(root: &Value, schema: &Value) -> Option<String> {
    let (schema, reference) = resolve(root, schema);
    let map = schema.as_object()?;
    if let Some(title) = string(map, "title") {
        return Some(title.to_owned());
    }
    if let Some(Value::Object(properties)) = map.get("properties")
        && properties.len() == 1
    {
        return properties.keys().next().cloned();
    }
    if let Some(Value::Array(values)) = map.get("enum")
        && values.len() == 1
    {
        return values[0].as_str().map(str::to_owned);
    }
    if let Some(Value::String(value)) = map.get("const") {
        return Some(value.clone());
    }
    reference.and_then(|r| r.rsplit('/').next().map(str::to_owned))
}

fn is_null_schema(schema: &Value) -> bool {
    schema.get("type").and_then(Value::as_str) == Some("null")
        && schema.as_object().is_some_and(|m| m.len() <= 2)
}

/// `anyOf: [T, {"type": "null"}]` (either order): returns `T`.
fn option_inner(criterion: Criterion, subschemas: &[Value]) -> Option<&Value> {
    if criterion == Criterion::All || subschemas.len() != 2 {
        return None;
    }
    match (
        is_null_schema(&subschemas[0]),
        is_null_schema(&subschemas[1]),
    ) {
        (false, true) => Some(&subschemas[0]),
        (true, false) => Some(&subschemas[1]),
        _ => None,
    }
}

impl JsonDiffer<'_> {
    fn push(
        &self,
        out: &mut Vec<Difference>,
        path: &[String],
        rule: Rule,
        detail: impl Into<String>,
    ) {
        out.push(Difference {
            rule,
            pointer: pointer(path),
            detail: detail.into(),
        });
    }

    fn push_at(
        &self,
        out: &mut Vec<Difference>,
        path: &[String],
        keyword: &str,
        rule: Rule,
        detail: String,
    ) {
        // Keyword-level changes (maxLength, enum, ...) are reported at the field, with the
        // keyword in the detail, so that the pointer always names a field.
        let detail = if detail.is_empty() {
            keyword.to_owned()
        } else {
            format!("{keyword}: {detail}")
        };
        self.push(out, path, rule, detail);
    }

    fn sub(
        &mut self,
        path: &mut Vec<String>,
        writer: Option<&Value>,
        reader: Option<&Value>,
    ) -> Vec<Difference> {
        let mut out = Vec::new();
        self.compare(&mut out, path, writer, reader);
        out
    }

    fn compare(
        &mut self,
        out: &mut Vec<Difference>,
        path: &mut Vec<String>,
        writer: Option<&Value>,
        reader: Option<&Value>,
    ) {
        let (writer, reader) = match (writer, reader) {
            (None, None) => return,
            (None, Some(_)) => return self.push(out, path, Rule::SchemaAdded, ""),
            (Some(_), None) => return self.push(out, path, Rule::SchemaRemoved, ""),
            (Some(w), Some(r)) => (w, r),
        };
        let (writer, writer_ref) = resolve(self.writer_root, writer);
        let (reader, reader_ref) = resolve(self.reader_root, reader);
        let key = match (&writer_ref, &reader_ref) {
            (Some(w), Some(r)) => {
                // Two definitions being compared higher up the stack: a recursive type.
                let key = (w.clone(), r.clone());
                if !self.in_progress.insert(key.clone()) {
                    return;
                }
                Some(key)
            }
            _ => None,
        };
        self.compare_resolved(
            out,
            path,
            (&writer, writer_ref.as_deref()),
            (&reader, reader_ref.as_deref()),
        );
        if let Some(key) = key {
            self.in_progress.remove(&key);
        }
    }

    fn compare_resolved(
        &mut self,
        out: &mut Vec<Difference>,
        path: &mut Vec<String>,
        (writer, writer_ref): (&Value, Option<&str>),
        (reader, reader_ref): (&Value, Option<&str>),
    ) {
        let writer_kind = kind_of(writer);
        let reader_kind = kind_of(reader);

        match (&writer_kind, &reader_kind) {
            (Kind::Combined(..), Kind::Combined(..)) => {}
            (_, Kind::Combined(criterion, subschemas)) => {
                if subschemas.len() == 1 {
                    let sub = self.sub(path, Some(writer), Some(&subschemas[0]));
                    if is_compatible(&sub) {
                        out.extend(sub);
                        return;
                    }
                } else if *criterion != Criterion::All {
                    for subschema in subschemas {
                        let sub = self.sub(path, Some(writer), Some(subschema));
                        if is_compatible(&sub) {
                            out.extend(sub);
                            let detail = if option_inner(*criterion, subschemas).is_some() {
                                "now accepts null (T → Option<T>)".to_owned()
                            } else {
                                format!("now one of {} alternatives", subschemas.len())
                            };
                            self.push(out, path, Rule::SumTypeExtended, detail);
                            return;
                        }
                    }
                }
            }
            (Kind::Combined(_, subschemas), _) if subschemas.len() == 1 => {
                let sub = self.sub(path, Some(&subschemas[0]), Some(reader));
                if is_compatible(&sub) {
                    out.extend(sub);
                    return;
                }
            }
            _ => {}
        }

        if writer_kind.class() != reader_kind.class() {
            if matches!(writer_kind, Kind::False) || matches!(reader_kind, Kind::Empty) {
                return;
            }
            let all_strings = |values: &[Value]| values.iter().all(Value::is_string);
            match (&writer_kind, &reader_kind) {
                (Kind::String, Kind::Enum(values)) if all_strings(values) => {
                    let detail = format!(
                        "string → one of {}",
                        values_text(&values.iter().collect::<Vec<_>>())
                    );
                    return self.push(out, path, Rule::TypeNarrowed, detail);
                }
                (Kind::Enum(values), Kind::String) if all_strings(values) => {
                    return self.push(out, path, Rule::TypeExtended, "enum → any string");
                }
                _ => {}
            }
            let named = |text: String, reference: Option<&str>| match reference {
                Some(r) => format!("{} ({text})", r.rsplit('/').next().unwrap_or(r)),
                None => text,
            };
            let detail = format!(
                "{} → {}",
                named(type_text(writer, &writer_kind), writer_ref),
                named(type_text(reader, &reader_kind), reader_ref)
            );
            return self.push(out, path, Rule::TypeChanged, detail);
        }

        let (w, r) = (as_map(writer), as_map(reader));
        if w.get("$id") != r.get("$id") {
            self.push(out, path, Rule::IdChanged, "");
        }
        if w.get("title") != r.get("title") {
            self.push(out, path, Rule::TitleChanged, "");
        }
        if w.get("description") != r.get("description") {
            self.push(out, path, Rule::DescriptionChanged, "");
        }
        if w.get("default") != r.get("default") {
            self.push(out, path, Rule::DefaultChanged, "");
        }

        match (&writer_kind, &reader_kind) {
            (Kind::String, Kind::String) => self.compare_string(out, path, w, r),
            (Kind::Number, Kind::Number) => self.compare_number(out, path, w, r),
            (Kind::Enum(wv), Kind::Enum(rv)) => self.compare_enum(out, path, wv, rv),
            (Kind::Combined(wc, ws), Kind::Combined(rc, rs)) => {
                self.compare_combined(out, path, (*wc, ws), (*rc, rs))
            }
            (Kind::Object, Kind::Object) => self.compare_object(out, path, w, r),
            (Kind::Array, Kind::Array) => self.compare_array(out, path, w, r),
            _ => {}
        }
    }

    fn compare_string(
        &mut self,
        out: &mut Vec<Difference>,
        path: &[String],
        w: &Map<String, Value>,
        r: &Map<String, Value>,
    ) {
        use Rule::*;
        self.bound(
            out,
            path,
            "maxLength",
            w,
            r,
            [
                MaxLengthAdded,
                MaxLengthRemoved,
                MaxLengthIncreased,
                MaxLengthDecreased,
            ],
        );
        self.bound(
            out,
            path,
            "minLength",
            w,
            r,
            [
                MinLengthAdded,
                MinLengthRemoved,
                MinLengthIncreased,
                MinLengthDecreased,
            ],
        );
        match (string(w, "pattern"), string(r, "pattern")) {
            (None, Some(p)) => {
                self.push_at(out, path, "pattern", PatternAdded, format!("now {p:?}"))
            }
            (Some(p), None) => {
                self.push_at(out, path, "pattern", PatternRemoved, format!("was {p:?}"))
            }
            (Some(a), Some(b)) if a != b => self.push_at(
                out,
                path,
                "pattern",
                PatternChanged,
                format!("{a:?} → {b:?}"),
            ),
            _ => {}
        }
        match (string(w, "format"), string(r, "format")) {
            (None, Some(f)) => {
                self.push_at(out, path, "format", FormatAdded, format!("string → {f}"))
            }
            (Some(f), None) => {
                self.push_at(out, path, "format", FormatRemoved, format!("{f} → string"))
            }
            (Some(a), Some(b)) if a != b => {
                self.push_at(out, path, "format", FormatChanged, format!("{a} → {b}"))
            }
            _ => {}
        }
    }

    /// Compares one numeric keyword, Confluent's way: `[added, removed, increased, decreased]`.
    #[allow(clippy::too_many_arguments)]
    fn bound(
        &self,
        out: &mut Vec<Difference>,
        path: &[String],
        keyword: &str,
        w: &Map<String, Value>,
        r: &Map<String, Value>,
        rules: [Rule; 4],
    ) {
        self.bound_values(
            out,
            path,
            keyword,
            number(w, keyword),
            number(r, keyword),
            rules,
        );
    }

    fn bound_values(
        &self,
        out: &mut Vec<Difference>,
        path: &[String],
        keyword: &str,
        w: Option<f64>,
        r: Option<f64>,
        [added, removed, increased, decreased]: [Rule; 4],
    ) {
        match (w, r) {
            (None, Some(b)) => self.push_at(out, path, keyword, added, format!("now {b}")),
            (Some(a), None) => self.push_at(out, path, keyword, removed, format!("was {a}")),
            (Some(a), Some(b)) if a < b => {
                self.push_at(out, path, keyword, increased, format!("{a} → {b}"))
            }
            (Some(a), Some(b)) if a > b => {
                self.push_at(out, path, keyword, decreased, format!("{a} → {b}"))
            }
            _ => {}
        }
    }

    fn compare_number(
        &mut self,
        out: &mut Vec<Difference>,
        path: &[String],
        w: &Map<String, Value>,
        r: &Map<String, Value>,
    ) {
        use Rule::*;
        // `minimum: 0` beside an unsigned format restates the format.
        let implied_min = |map: &Map<String, Value>| {
            let unsigned = string(map, "format").is_some_and(|f| f.starts_with("uint"));
            let min = number(map, "minimum");
            if unsigned && min == Some(0.0) {
                None
            } else {
                min
            }
        };
        self.bound(
            out,
            path,
            "maximum",
            w,
            r,
            [
                MaximumAdded,
                MaximumRemoved,
                MaximumIncreased,
                MaximumDecreased,
            ],
        );
        self.bound_values(
            out,
            path,
            "minimum",
            implied_min(w),
            implied_min(r),
            [
                MinimumAdded,
                MinimumRemoved,
                MinimumIncreased,
                MinimumDecreased,
            ],
        );
        self.bound(
            out,
            path,
            "exclusiveMaximum",
            w,
            r,
            [
                ExclusiveMaximumAdded,
                ExclusiveMaximumRemoved,
                ExclusiveMaximumIncreased,
                ExclusiveMaximumDecreased,
            ],
        );
        self.bound(
            out,
            path,
            "exclusiveMinimum",
            w,
            r,
            [
                ExclusiveMinimumAdded,
                ExclusiveMinimumRemoved,
                ExclusiveMinimumIncreased,
                ExclusiveMinimumDecreased,
            ],
        );
        match (number(w, "multipleOf"), number(r, "multipleOf")) {
            (None, Some(b)) => {
                self.push_at(out, path, "multipleOf", MultipleOfAdded, format!("now {b}"))
            }
            (Some(a), None) => self.push_at(
                out,
                path,
                "multipleOf",
                MultipleOfRemoved,
                format!("was {a}"),
            ),
            (Some(a), Some(b)) if a != b => {
                let rule = if a != 0.0 && (b / a).fract() == 0.0 {
                    MultipleOfExpanded
                } else if b != 0.0 && (a / b).fract() == 0.0 {
                    MultipleOfReduced
                } else {
                    MultipleOfChanged
                };
                self.push_at(out, path, "multipleOf", rule, format!("{a} → {b}"));
            }
            _ => {}
        }
        let writer_integer = string(w, "type") == Some("integer");
        let reader_integer = string(r, "type") == Some("integer");
        if writer_integer != reader_integer {
            if writer_integer {
                self.push(out, path, TypeExtended, "integer → number");
            } else {
                self.push(out, path, TypeNarrowed, "number → integer");
            }
            // Confluent treats integer → number as a widening whatever the width.
            return;
        }
        match (string(w, "format"), string(r, "format")) {
            (None, Some(f)) => self.push_at(out, path, "format", FormatAdded, format!("any → {f}")),
            (Some(f), None) => {
                self.push_at(out, path, "format", FormatRemoved, format!("{f} → any"))
            }
            (Some(a), Some(b)) if a != b => {
                let rule = match (numeric_format_range(a), numeric_format_range(b)) {
                    (Some((amin, amax)), Some((bmin, bmax))) if bmin <= amin && amax <= bmax => {
                        FormatWidened
                    }
                    (Some((amin, amax)), Some((bmin, bmax))) if amin <= bmin && bmax <= amax => {
                        FormatNarrowed
                    }
                    _ => FormatChanged,
                };
                self.push_at(out, path, "format", rule, format!("{a} → {b}"));
            }
            _ => {}
        }
    }

    fn compare_enum(
        &mut self,
        out: &mut Vec<Difference>,
        path: &[String],
        w: &[Value],
        r: &[Value],
    ) {
        let removed: Vec<&Value> = w.iter().filter(|v| !r.contains(v)).collect();
        let added: Vec<&Value> = r.iter().filter(|v| !w.contains(v)).collect();
        let rule = match (removed.is_empty(), added.is_empty()) {
            (true, true) => return,
            (true, false) => Rule::EnumArrayExtended,
            (false, true) => Rule::EnumArrayNarrowed,
            (false, false) => Rule::EnumArrayChanged,
        };
        let mut detail = Vec::new();
        if !removed.is_empty() {
            detail.push(format!(
                "values no longer accepted: {}",
                values_text(&removed)
            ));
        }
        if !added.is_empty() {
            detail.push(format!("values added: {}", values_text(&added)));
        }
        self.push_at(out, path, "enum", rule, detail.join("; "));
    }

    fn compare_combined(
        &mut self,
        out: &mut Vec<Difference>,
        path: &mut Vec<String>,
        (wc, ws): (Criterion, &Vec<Value>),
        (rc, rs): (Criterion, &Vec<Value>),
    ) {
        let criterion_rule = if wc == rc {
            None
        } else if rc == Criterion::Any
            || (rc == Criterion::One && ws.len() == 1)
            || (rc == Criterion::All && ws.len() == 1 && rs.len() == 1)
        {
            Some(Rule::CombinedTypeExtended)
        } else {
            Some(Rule::CombinedTypeChanged)
        };
        if let Some(rule) = criterion_rule {
            self.push(
                out,
                path,
                rule,
                format!("{} → {}", wc.keyword(), rc.keyword()),
            );
            if rule == Rule::CombinedTypeChanged {
                return;
            }
        }

        // Option<T> on both sides: compare T at the field itself.
        if let (Some(w), Some(r)) = (option_inner(wc, ws), option_inner(rc, rs)) {
            self.compare(out, path, Some(w), Some(r));
            return;
        }

        let dedup = |schemas: &[Value]| {
            let mut unique: Vec<Value> = Vec::new();
            for schema in schemas {
                if !unique.contains(schema) {
                    unique.push(schema.clone());
                }
            }
            unique
        };
        let (ws, rs) = (dedup(ws), dedup(rs));
        let writer_labels: Vec<String> = ws
            .iter()
            .enumerate()
            .map(|(i, s)| {
                variant_label(self.writer_root, s)
                    .unwrap_or_else(|| format!("{}/{i}", wc.keyword()))
            })
            .collect();
        let reader_labels: Vec<String> = rs
            .iter()
            .enumerate()
            .map(|(i, s)| {
                variant_label(self.reader_root, s)
                    .unwrap_or_else(|| format!("{}/{i}", rc.keyword()))
            })
            .collect();

        // Compatible pairs, then a maximum matching (Confluent's MaximumCardinalityMatch).
        let mut edges: Vec<Vec<(usize, Vec<Difference>)>> = Vec::with_capacity(ws.len());
        for (i, w) in ws.iter().enumerate() {
            let mut row = Vec::new();
            path.push(wc.keyword().to_owned());
            path.push(i.to_string());
            for (j, r) in rs.iter().enumerate() {
                let sub = self.sub(path, Some(w), Some(r));
                if is_compatible(&sub) {
                    row.push((j, sub));
                }
            }
            path.truncate(path.len() - 2);
            edges.push(row);
        }
        let matching = max_matching(ws.len(), rs.len(), &edges);
        let matched = matching.iter().filter(|m| m.is_some()).count();
        for (i, m) in matching.iter().enumerate() {
            if let Some(j) = m
                && let Some((_, sub)) = edges[i].iter().find(|(k, _)| k == j)
            {
                out.extend(sub.iter().cloned());
            }
        }
        let unmatched_writer: Vec<usize> =
            (0..ws.len()).filter(|i| matching[*i].is_none()).collect();
        let names = |indices: &[usize], labels: &[String]| {
            indices
                .iter()
                .map(|i| format!("`{}`", labels[*i]))
                .collect::<Vec<_>>()
                .join(", ")
        };

        if ws.len() < rs.len() {
            let rule = if rc == Criterion::All {
                Rule::ProductTypeExtended
            } else {
                Rule::SumTypeExtended
            };
            let matched_reader: BTreeSet<usize> = matching.iter().flatten().copied().collect();
            let added: Vec<usize> = (0..rs.len())
                .filter(|j| !matched_reader.contains(j))
                .collect();
            self.push(
                out,
                path,
                rule,
                format!("{} added", names(&added, &reader_labels)),
            );
        } else if ws.len() > rs.len() {
            let rule = if rc == Criterion::All {
                Rule::ProductTypeNarrowed
            } else {
                Rule::SumTypeNarrowed
            };
            let detail = if unmatched_writer.is_empty() {
                format!("{} → {} alternatives", ws.len(), rs.len())
            } else {
                format!(
                    "{} no longer accepted",
                    names(&unmatched_writer, &writer_labels)
                )
            };
            self.push(out, path, rule, detail);
        }
        if matched < ws.len().min(rs.len()) {
            // Explain each unmatched alternative through the one of the same name (or place)
            // in the reader when there is one; the rest is Confluent's generic difference.
            let mut unexplained = Vec::new();
            for &i in &unmatched_writer {
                let mut reasons = Vec::new();
                let same_place = || {
                    let writer_kind = kind_of(&resolve(self.writer_root, &ws[i]).0);
                    let reader_kind = rs.get(i).map(|r| kind_of(&resolve(self.reader_root, r).0));
                    reader_kind
                        .is_some_and(|k| k.class() == writer_kind.class())
                        .then_some(i)
                };
                let counterpart = reader_labels
                    .iter()
                    .position(|label| *label == writer_labels[i])
                    .or_else(same_place);
                if let Some(j) = counterpart {
                    path.push(wc.keyword().to_owned());
                    path.push(i.to_string());
                    let sub = self.sub(path, Some(&ws[i]), Some(&rs[j]));
                    path.truncate(path.len() - 2);
                    reasons.extend(sub.into_iter().filter(|d| !d.is_compatible()));
                }
                if reasons.is_empty() {
                    unexplained.push(i);
                }
                out.extend(reasons);
            }
            if !unexplained.is_empty() {
                self.push(
                    out,
                    path,
                    Rule::CombinedTypeSubschemasChanged,
                    format!(
                        "{} has no compatible alternative",
                        names(&unexplained, &writer_labels)
                    ),
                );
            }
        }
    }

    fn compare_object(
        &mut self,
        out: &mut Vec<Difference>,
        path: &mut Vec<String>,
        w: &Map<String, Value>,
        r: &Map<String, Value>,
    ) {
        let properties = |map: &Map<String, Value>| {
            map.get("properties")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default()
        };
        let required = |map: &Map<String, Value>| -> BTreeSet<String> {
            map.get("required")
                .and_then(Value::as_array)
                .map(|names| {
                    names
                        .iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        let (wp, rp) = (properties(w), properties(r));
        let (wr, rr) = (required(w), required(r));

        // Required changes of properties present on both sides.
        for key in wp.keys() {
            if !rp.contains_key(key) {
                continue;
            }
            path.push("properties".into());
            path.push(key.clone());
            match (wr.contains(key), rr.contains(key)) {
                (true, false) => self.push(
                    out,
                    path,
                    Rule::RequiredAttributeRemoved,
                    "required → optional",
                ),
                (false, true) if has_default(rp.get(key)) => self.push(
                    out,
                    path,
                    Rule::RequiredAttributeWithDefaultAdded,
                    "optional → required, with a default",
                ),
                (false, true) => self.push(
                    out,
                    path,
                    Rule::RequiredAttributeAdded,
                    "optional → required, no default",
                ),
                _ => {}
            }
            path.truncate(path.len() - 2);
        }

        let keys: BTreeSet<&String> = wp.keys().chain(rp.keys()).collect();
        for key in keys {
            path.push("properties".into());
            path.push(key.clone());
            match (wp.get(key), rp.get(key)) {
                (Some(writer_schema), None) => {
                    if is_open(r) {
                        self.push(out, path, Rule::PropertyRemovedFromOpenContentModel, "");
                    } else if let Some(partial) = partial_schema(r, key) {
                        let sub = self.sub(path, Some(writer_schema), Some(&partial));
                        let compatible = is_compatible(&sub);
                        out.extend(sub);
                        let rule = if compatible {
                            Rule::PropertyRemovedIsCoveredByPartiallyOpenContentModel
                        } else {
                            Rule::PropertyRemovedNotCoveredByPartiallyOpenContentModel
                        };
                        self.push(out, path, rule, "");
                    } else if *writer_schema == Value::Bool(false) {
                        self.push(
                            out,
                            path,
                            Rule::PropertyWithFalseRemovedFromClosedContentModel,
                            "",
                        );
                    } else {
                        let detail = if wr.contains(key) {
                            "required field"
                        } else {
                            "optional field"
                        };
                        self.push(
                            out,
                            path,
                            Rule::PropertyRemovedFromClosedContentModel,
                            detail,
                        );
                    }
                }
                (None, Some(reader_schema)) => {
                    if is_open(w) {
                        let (resolved, _) = resolve(self.reader_root, reader_schema);
                        if matches!(kind_of(&resolved), Kind::Empty) {
                            self.push(
                                out,
                                path,
                                Rule::PropertyWithEmptySchemaAddedToOpenContentModel,
                                "",
                            );
                        } else {
                            self.push(out, path, Rule::PropertyAddedToOpenContentModel, "");
                        }
                    } else {
                        if let Some(partial) = partial_schema(w, key) {
                            let sub = self.sub(path, Some(&partial), Some(reader_schema));
                            let compatible = is_compatible(&sub);
                            out.extend(sub);
                            let rule = if compatible {
                                Rule::PropertyAddedIsCoveredByPartiallyOpenContentModel
                            } else {
                                Rule::PropertyAddedNotCoveredByPartiallyOpenContentModel
                            };
                            self.push(out, path, rule, "");
                        }
                        if rr.contains(key) {
                            if has_default(Some(reader_schema)) {
                                self.push(
                                    out,
                                    path,
                                    Rule::RequiredPropertyWithDefaultAddedToUnopenContentModel,
                                    "",
                                );
                            } else {
                                self.push(
                                    out,
                                    path,
                                    Rule::RequiredPropertyAddedToUnopenContentModel,
                                    "no default",
                                );
                            }
                        } else {
                            self.push(
                                out,
                                path,
                                Rule::OptionalPropertyAddedToUnopenContentModel,
                                "",
                            );
                        }
                    }
                }
                (Some(writer_schema), Some(reader_schema)) => {
                    self.compare(out, path, Some(writer_schema), Some(reader_schema));
                }
                (None, None) => {}
            }
            path.truncate(path.len() - 2);
        }

        // additionalProperties: `false`, absent/`true`, or a schema (a map's values).
        path.push("additionalProperties".into());
        let permits =
            |map: &Map<String, Value>| map.get("additionalProperties") != Some(&Value::Bool(false));
        let schema_of = |map: &Map<String, Value>| match map.get("additionalProperties") {
            Some(Value::Bool(_)) | None => None,
            Some(schema) => Some(schema.clone()),
        };
        let (ws, rs) = (schema_of(w), schema_of(r));
        if permits(w) != permits(r) {
            if permits(r) {
                self.push(out, path, Rule::AdditionalPropertiesAdded, "");
            } else {
                self.push(out, path, Rule::AdditionalPropertiesRemoved, "");
            }
        } else if ws.is_none() && rs.is_some() {
            self.push(out, path, Rule::AdditionalPropertiesNarrowed, "");
        } else if ws.is_some() && rs.is_none() {
            self.push(out, path, Rule::AdditionalPropertiesExtended, "");
        } else {
            self.compare(out, path, ws.as_ref(), rs.as_ref());
        }
        path.pop();

        use Rule::*;
        self.bound(
            out,
            path,
            "maxProperties",
            w,
            r,
            [
                MaxPropertiesAdded,
                MaxPropertiesRemoved,
                MaxPropertiesIncreased,
                MaxPropertiesDecreased,
            ],
        );
        self.bound(
            out,
            path,
            "minProperties",
            w,
            r,
            [
                MinPropertiesAdded,
                MinPropertiesRemoved,
                MinPropertiesIncreased,
                MinPropertiesDecreased,
            ],
        );
    }

    fn compare_array(
        &mut self,
        out: &mut Vec<Difference>,
        path: &mut Vec<String>,
        w: &Map<String, Value>,
        r: &Map<String, Value>,
    ) {
        let tuple =
            |map: &Map<String, Value>| map.get("prefixItems").and_then(Value::as_array).cloned();
        let (wt, rt) = (tuple(w), tuple(r));
        // 2020-12: with prefixItems, `items` constrains the items after the tuple.
        let all_items = |map: &Map<String, Value>, tuple: &Option<Vec<Value>>| {
            if tuple.is_some() {
                None
            } else {
                map.get("items").cloned()
            }
        };
        let extra = |map: &Map<String, Value>, tuple: &Option<Vec<Value>>| {
            if tuple.is_some() {
                map.get("items").cloned()
            } else {
                None
            }
        };

        path.push("items".into());
        self.compare(
            out,
            path,
            all_items(w, &wt).as_ref(),
            all_items(r, &rt).as_ref(),
        );
        path.pop();

        let (we, re) = (extra(w, &wt), extra(r, &rt));
        let permits = |extra: &Option<Value>| extra.as_ref() != Some(&Value::Bool(false));
        let schema_of = |extra: &Option<Value>| match extra {
            Some(Value::Bool(_)) | None => None,
            Some(schema) => Some(schema.clone()),
        };
        let open = |extra: &Option<Value>| permits(extra) && schema_of(extra).is_none();

        let (wt, rt) = (wt.unwrap_or_default(), rt.unwrap_or_default());
        let common = wt.len().min(rt.len());
        for i in 0..wt.len().max(rt.len()) {
            path.push("prefixItems".into());
            path.push(i.to_string());
            if i < common {
                self.compare(out, path, Some(&wt[i]), Some(&rt[i]));
            } else if i < wt.len() {
                if open(&re) {
                    self.push(out, path, Rule::ItemRemovedFromOpenContentModel, "");
                } else if let Some(partial) = schema_of(&re) {
                    let sub = self.sub(path, Some(&wt[i]), Some(&partial));
                    let compatible = is_compatible(&sub);
                    out.extend(sub);
                    let rule = if compatible {
                        Rule::ItemRemovedIsCoveredByPartiallyOpenContentModel
                    } else {
                        Rule::ItemRemovedNotCoveredByPartiallyOpenContentModel
                    };
                    self.push(out, path, rule, "");
                } else if wt[i] == Value::Bool(false) {
                    self.push(
                        out,
                        path,
                        Rule::ItemWithFalseRemovedFromClosedContentModel,
                        "",
                    );
                } else {
                    self.push(out, path, Rule::ItemRemovedFromClosedContentModel, "");
                }
            } else if open(&we) {
                let (resolved, _) = resolve(self.reader_root, &rt[i]);
                if matches!(kind_of(&resolved), Kind::Empty) {
                    self.push(
                        out,
                        path,
                        Rule::ItemWithEmptySchemaAddedToOpenContentModel,
                        "",
                    );
                } else {
                    self.push(out, path, Rule::ItemAddedToOpenContentModel, "");
                }
            } else if let Some(partial) = schema_of(&we) {
                let sub = self.sub(path, Some(&partial), Some(&rt[i]));
                let compatible = is_compatible(&sub);
                out.extend(sub);
                let rule = if compatible {
                    Rule::ItemAddedIsCoveredByPartiallyOpenContentModel
                } else {
                    Rule::ItemAddedNotCoveredByPartiallyOpenContentModel
                };
                self.push(out, path, rule, "");
            } else {
                self.push(out, path, Rule::ItemAddedToClosedContentModel, "");
            }
            path.truncate(path.len() - 2);
        }

        path.push("items".into());
        if permits(&we) != permits(&re) {
            if permits(&we) {
                self.push(out, path, Rule::AdditionalItemsRemoved, "");
            } else {
                self.push(out, path, Rule::AdditionalItemsAdded, "");
            }
        } else if schema_of(&we).is_none() && schema_of(&re).is_some() {
            self.push(out, path, Rule::AdditionalItemsNarrowed, "");
        } else if schema_of(&we).is_some() && schema_of(&re).is_none() {
            self.push(out, path, Rule::AdditionalItemsExtended, "");
        } else if let (Some(a), Some(b)) = (schema_of(&we), schema_of(&re)) {
            self.compare(out, path, Some(&a), Some(&b));
        }
        path.pop();

        use Rule::*;
        self.bound(
            out,
            path,
            "maxItems",
            w,
            r,
            [
                MaxItemsAdded,
                MaxItemsRemoved,
                MaxItemsIncreased,
                MaxItemsDecreased,
            ],
        );
        self.bound(
            out,
            path,
            "minItems",
            w,
            r,
            [
                MinItemsAdded,
                MinItemsRemoved,
                MinItemsIncreased,
                MinItemsDecreased,
            ],
        );
        let unique = |map: &Map<String, Value>| map.get("uniqueItems") == Some(&Value::Bool(true));
        match (unique(w), unique(r)) {
            (true, false) => self.push(out, path, UniqueItemsRemoved, "set → list"),
            (false, true) => self.push(out, path, UniqueItemsAdded, "list → set"),
            _ => {}
        }
    }
}

fn type_text(schema: &Value, kind: &Kind) -> String {
    let map = as_map(schema);
    match kind {
        Kind::Number | Kind::String => {
            let ty = string(map, "type").unwrap_or(kind.class());
            match string(map, "format") {
                Some(format) => format!("{ty} ({format})"),
                None => ty.to_owned(),
            }
        }
        Kind::Combined(criterion, subschemas) => {
            if option_inner(*criterion, subschemas).is_some() {
                "optional (T or null)".to_owned()
            } else {
                format!("{} of {}", criterion.keyword(), subschemas.len())
            }
        }
        other => other.class().to_owned(),
    }
}

fn is_open(map: &Map<String, Value>) -> bool {
    let no_patterns = map
        .get("patternProperties")
        .and_then(Value::as_object)
        .is_none_or(Map::is_empty);
    no_patterns
        && matches!(
            map.get("additionalProperties"),
            None | Some(Value::Bool(true))
        )
}

fn partial_schema(map: &Map<String, Value>, key: &str) -> Option<Value> {
    if let Some(patterns) = map.get("patternProperties").and_then(Value::as_object) {
        // Patterns are matched literally (the emitted subset has none).
        if let Some((_, schema)) = patterns
            .iter()
            .find(|(pattern, _)| key.contains(pattern.trim_matches(['^', '$'])))
        {
            return Some(schema.clone());
        }
    }
    match map.get("additionalProperties") {
        Some(Value::Bool(_)) | None => None,
        Some(schema) => Some(schema.clone()),
    }
}

/// Kuhn's augmenting paths: `edges[i]` lists the right vertices `i` may match.
fn max_matching<T>(left: usize, right: usize, edges: &[Vec<(usize, T)>]) -> Vec<Option<usize>> {
    fn augment<T>(
        i: usize,
        edges: &[Vec<(usize, T)>],
        seen: &mut [bool],
        owner: &mut [Option<usize>],
    ) -> bool {
        for (j, _) in &edges[i] {
            if seen[*j] {
                continue;
            }
            seen[*j] = true;
            if owner[*j].is_none_or(|other| augment(other, edges, seen, owner)) {
                owner[*j] = Some(i);
                return true;
            }
        }
        false
    }
    let mut owner: Vec<Option<usize>> = vec![None; right];
    for i in 0..left {
        let mut seen = vec![false; right];
        augment(i, edges, &mut seen, &mut owner);
    }
    let mut matching = vec![None; left];
    for (j, i) in owner.iter().enumerate() {
        if let Some(i) = i {
            matching[*i] = Some(j);
        }
    }
    matching
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn recursive_defs_terminate() {
        let schema = json!({
            "type": "object", "additionalProperties": false,
            "properties": { "child": { "anyOf": [{ "$ref": "#/$defs/Node" }, { "type": "null" }] } },
            "$defs": { "Node": { "type": "object", "additionalProperties": false,
                "properties": { "child": { "anyOf": [{ "$ref": "#/$defs/Node" }, { "type": "null" }] } } } }
        });
        assert!(diff_json(&schema, &schema).is_empty());
    }

    #[test]
    fn matching_is_maximal() {
        // 0 can take 0 or 1, 1 only 0: the greedy choice 0→0 must be undone.
        let edges = vec![vec![(0, ()), (1, ())], vec![(0, ())]];
        assert_eq!(max_matching(2, 2, &edges), vec![Some(1), Some(0)]);
    }
}
