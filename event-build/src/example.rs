//! Example payloads: one generated from a message version's JSON Schema, and a check that a
//! payload (generated or written by hand) matches its schema.
//!
//! The registry keeps one example per published version (`v<N>.example.json`) so that a
//! consumer's tests can decode every version still on the wire through its current types and
//! upcasters (`event_runtime::contracts::assert_reads_registry`), and the catalog shows it.
//!
//! ```
//! use event_build::example::{example, validate};
//! use serde_json::json;
//!
//! let schema = json!({
//!     "type": "object", "additionalProperties": false,
//!     "properties": {
//!         "order_id": { "type": "string" },
//!         "total_cents": { "type": "integer", "format": "uint64", "minimum": 0 },
//!         "coupon": { "anyOf": [{ "type": "string" }, { "type": "null" }] }
//!     },
//!     "required": ["order_id", "total_cents"]
//! });
//! let payload = example(&schema);
//! assert_eq!(payload, json!({ "order_id": "x", "total_cents": 1, "coupon": "x" }));
//! assert!(validate(&schema, &payload).is_empty());
//!
//! let wrong = validate(&schema, &json!({ "order_id": 7 }));
//! assert_eq!(wrong[0].to_string(), "(root): `total_cents` is required");
//! assert_eq!(wrong[1].to_string(), "/order_id: expected a string, found 7");
//! ```
//!
//! # What the generator writes
//!
//! Every property, optional ones too (the first non-null branch of an `Option`), so the example
//! shows the whole shape: a string is `"x"` (it is also a valid `char`) unless a `format`,
//! `enum`, `const` or `pattern` (a few likely strings are tried) says more (`uuid`,
//! `date-time`, `date`, `time`, `uri`, `ipv4`, `ipv6` get a valid value), an integer is 1 (or
//! its `minimum`), a number 1.5, an array holds one item (or `minItems`), a map is empty (its
//! key type is not in the schema), a `oneOf` or `anyOf` its first branch, `{}` (any value) `null` (and [`generated`] refuses to guess).
//! References are followed into `$defs`; below a depth of 16 a recursive type takes its `null`,
//! empty or leaf branch.
//!
//! # What the check reads
//!
//! `type`, `enum`, `const`, `properties`, `required`, `additionalProperties`, `items`,
//! `prefixItems`, `minItems`, `maxItems`, `uniqueItems`, `minimum`, `maximum`,
//! `exclusiveMinimum`, `exclusiveMaximum`, `minLength`, `maxLength`, `anyOf`, `oneOf`, `allOf`,
//! `not`, `pattern` (when the `regex` crate reads it) and `$ref` into `$defs`: what the emitter
//! writes. `format` is an annotation in 2020-12; the test suite validates the generated
//! examples with a full validator (ajv) as well.

use std::fmt;

use serde_json::{Map, Value, json};

/// How deep references are followed while generating.
const MAX_DEPTH: usize = 16;

/// An example payload for `schema` (a whole document, whose `$defs` its references point into).
pub fn example(schema: &Value) -> Value {
    Generator::new(schema).value(schema, 0)
}

/// [`example`], or why it would only be a guess: the schema accepts any value somewhere (`{}`,
/// what the emitter writes for a type it could not resolve), and `null` there may not decode
/// into the type. The registry then asks for a hand-written example instead of storing one.
pub fn generated(schema: &Value) -> Result<Value, String> {
    let generator = Generator::new(schema);
    let value = generator.value(schema, 0);
    match generator.guessed.into_inner() {
        None => Ok(value),
        Some(place) => Err(format!(
            "the schema accepts any value at {place} (a type the build could not resolve), so a generated value may not decode"
        )),
    }
}

struct Generator<'a> {
    root: &'a Value,
    /// The first place where the schema accepts any value, if any.
    guessed: std::cell::RefCell<Option<String>>,
}

impl<'a> Generator<'a> {
    fn new(root: &'a Value) -> Self {
        Generator {
            root,
            guessed: std::cell::RefCell::new(None),
        }
    }

    fn resolve(&self, reference: &str) -> Option<&'a Value> {
        resolve(self.root, reference)
    }

    /// Notes that the schema accepts any value here (the first such place is kept).
    fn guess(&self, schema: &Value) -> Value {
        let mut guessed = self.guessed.borrow_mut();
        if guessed.is_none() {
            let text = schema.to_string();
            *guessed = Some(if text.chars().count() > 60 {
                format!("{}...", text.chars().take(60).collect::<String>())
            } else {
                text
            });
        }
        Value::Null
    }

    fn value(&self, schema: &'a Value, depth: usize) -> Value {
        let Some(map) = schema.as_object() else {
            // `true` or `false`: anything (or nothing) goes.
            return self.guess(schema);
        };
        if let Some(value) = map.get("const") {
            return value.clone();
        }
        if let Some(first) = map
            .get("enum")
            .and_then(Value::as_array)
            .and_then(|e| e.first())
        {
            return first.clone();
        }
        if let Some(reference) = map.get("$ref").and_then(Value::as_str) {
            return match self.resolve(reference) {
                Some(target) if depth < 4 * MAX_DEPTH => self.value(target, depth + 1),
                _ => Value::Null,
            };
        }
        for key in ["oneOf", "anyOf", "allOf"] {
            if let Some(branches) = map.get(key).and_then(Value::as_array) {
                return self.branch(branches, depth);
            }
        }
        let ty = match map.get("type") {
            Some(Value::String(ty)) => ty.as_str(),
            Some(Value::Array(types)) => types
                .iter()
                .filter_map(Value::as_str)
                .find(|t| *t != "null")
                .unwrap_or("null"),
            _ if map.contains_key("properties") => "object",
            _ => return self.guess(schema),
        };
        match ty {
            "string" => string(map),
            "integer" => {
                let low = map.get("minimum").and_then(Value::as_i64).unwrap_or(1);
                let high = map
                    .get("maximum")
                    .and_then(Value::as_i64)
                    .unwrap_or(i64::MAX);
                json!(low.max(1).min(high))
            }
            "number" => json!(1.5),
            "boolean" => json!(true),
            "array" => self.array(map, depth),
            "object" => self.object(map, depth),
            _ => Value::Null,
        }
    }

    /// The first branch that is not `null`; when the type recurses too deep, `null` or else a
    /// branch that refers to no other type (the leaf of a recursive enum).
    fn branch(&self, branches: &'a [Value], depth: usize) -> Value {
        let is_null = |b: &Value| b.get("type").and_then(Value::as_str) == Some("null");
        let is_leaf = |b: &Value| !b.to_string().contains("\"$ref\"");
        let chosen = if depth >= MAX_DEPTH {
            branches
                .iter()
                .find(|b| is_null(b))
                .or_else(|| branches.iter().find(|b| is_leaf(b)))
                .or(branches.first())
        } else {
            branches.iter().find(|b| !is_null(b)).or(branches.first())
        };
        chosen.map_or(Value::Null, |b| self.value(b, depth + 1))
    }

    fn array(&self, map: &'a Map<String, Value>, depth: usize) -> Value {
        let mut items: Vec<Value> = map
            .get("prefixItems")
            .and_then(Value::as_array)
            .map(|prefix| prefix.iter().map(|s| self.value(s, depth + 1)).collect())
            .unwrap_or_default();
        let min = map.get("minItems").and_then(Value::as_u64).unwrap_or(0) as usize;
        let wanted = if depth >= MAX_DEPTH { min } else { min.max(1) };
        if let Some(item) = map.get("items").filter(|i| i.is_object()) {
            let unique = map.get("uniqueItems").and_then(Value::as_bool) == Some(true);
            while items.len() < wanted {
                let value = self.value(item, depth + 1);
                if unique && items.contains(&value) {
                    break;
                }
                items.push(value);
            }
        }
        Value::Array(items)
    }

    fn object(&self, map: &'a Map<String, Value>, depth: usize) -> Value {
        let mut out = Map::new();
        if let Some(properties) = map.get("properties").and_then(Value::as_object) {
            let required = required(map);
            for (name, schema) in properties {
                if depth >= MAX_DEPTH && !required.contains(&name.as_str()) {
                    continue;
                }
                out.insert(name.clone(), self.value(schema, depth + 1));
            }
        }
        // A map (`additionalProperties` alone) stays empty: its keys may be numbers, UUIDs or
        // enum variants, which the schema does not say.
        Value::Object(out)
    }
}

/// Strings tried, in order, for a `pattern` the format's value does not match.
const PATTERN_CANDIDATES: &[&str] = &[
    "x",
    "1",
    "0",
    "a",
    "A",
    "X1",
    "x1",
    "abc",
    "ABC",
    "123",
    "a-1",
    "EUR",
    "example",
    "2026-01-01",
    "12:00:00",
    "2026-01-01T12:00:00Z",
    "7f0c6d1e-8a4b-4c3d-9e2f-1a2b3c4d5e6f",
    "someone@example.com",
    "https://example.com/",
];

/// The schema's `pattern`, when it is one the `regex` crate reads (ECMA-262 and Rust agree on
/// the common subset; a pattern outside it is not checked).
fn pattern(map: &Map<String, Value>) -> Option<regex::Regex> {
    regex::Regex::new(map.get("pattern")?.as_str()?).ok()
}

fn string(map: &Map<String, Value>) -> Value {
    let text = match map.get("format").and_then(Value::as_str) {
        Some("uuid") => "7f0c6d1e-8a4b-4c3d-9e2f-1a2b3c4d5e6f",
        Some("date-time") => "2026-01-01T12:00:00Z",
        Some("date") => "2026-01-01",
        Some("time") => "12:00:00",
        Some("uri") => "https://example.com/",
        Some("ipv4") => "192.0.2.1",
        Some("ipv6") => "2001:db8::1",
        Some("email") => "someone@example.com",
        _ => "x",
    };
    let min = map.get("minLength").and_then(Value::as_u64).unwrap_or(0) as usize;
    let mut text = text.to_owned();
    if let Some(pattern) = pattern(map)
        && !pattern.is_match(&text)
        && let Some(found) = PATTERN_CANDIDATES.iter().find(|c| pattern.is_match(c))
    {
        text = (*found).to_owned();
    }
    while text.chars().count() < min {
        text.push('x');
    }
    Value::String(text)
}

fn required(map: &Map<String, Value>) -> Vec<&str> {
    map.get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn resolve<'a>(root: &'a Value, reference: &str) -> Option<&'a Value> {
    let pointer = reference.strip_prefix('#')?;
    root.pointer(pointer)
}

/// One place where a payload does not match its schema.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// JSON pointer into the payload (`/lines/0/sku`), empty for the root.
    pub at: String,
    /// What is wrong there.
    pub message: String,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = if self.at.is_empty() {
            "(root)"
        } else {
            &self.at
        };
        write!(f, "{at}: {}", self.message)
    }
}

/// Every place where `payload` does not match `schema` (empty: it matches).
pub fn validate(schema: &Value, payload: &Value) -> Vec<Mismatch> {
    let mut out = Vec::new();
    Validator { root: schema }.check(schema, payload, "", 0, &mut out);
    out
}

struct Validator<'a> {
    root: &'a Value,
}

fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 40 {
        format!("{}...", text.chars().take(40).collect::<String>())
    } else {
        text
    }
}

fn type_matches(ty: &str, value: &Value) -> bool {
    match ty {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "string" => value.is_string(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        "number" => value.is_number(),
        "integer" => {
            value.is_i64()
                || value.is_u64()
                || value
                    .as_f64()
                    .is_some_and(|f| f.fract() == 0.0 && f.is_finite())
        }
        _ => true,
    }
}

fn article(ty: &str) -> &'static str {
    match ty {
        "integer" | "object" | "array" => "an",
        _ => "a",
    }
}

impl Validator<'_> {
    fn check(
        &self,
        schema: &Value,
        value: &Value,
        at: &str,
        depth: usize,
        out: &mut Vec<Mismatch>,
    ) {
        let mut push = |message: String| {
            out.push(Mismatch {
                at: at.to_owned(),
                message,
            });
        };
        let map = match schema {
            Value::Bool(true) => return,
            Value::Bool(false) => return push("no value is allowed here".into()),
            Value::Object(map) => map,
            _ => return,
        };
        if depth > 1024 {
            return push("the payload nests deeper than 1024 levels".into());
        }
        // A reference outside the document's `$defs` (an `$anchor`, another document) is not
        // followed: what it says is not checked.
        if let Some(target) = map
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|reference| resolve(self.root, reference))
        {
            self.check(target, value, at, depth + 1, out);
        }
        let mut push = |message: String| {
            out.push(Mismatch {
                at: at.to_owned(),
                message,
            });
        };
        match map.get("type") {
            Some(Value::String(ty)) if !type_matches(ty, value) => {
                return push(format!(
                    "expected {} {ty}, found {}",
                    article(ty),
                    short(value)
                ));
            }
            Some(Value::Array(types))
                if !types
                    .iter()
                    .filter_map(Value::as_str)
                    .any(|t| type_matches(t, value)) =>
            {
                return push(format!(
                    "expected one of {}, found {}",
                    short(&Value::Array(types.clone())),
                    short(value)
                ));
            }
            _ => {}
        }
        if let Some(expected) = map.get("const")
            && expected != value
        {
            push(format!(
                "expected {}, found {}",
                short(expected),
                short(value)
            ));
        }
        if let Some(options) = map.get("enum").and_then(Value::as_array)
            && !options.contains(value)
        {
            push(format!(
                "expected one of {}, found {}",
                short(&Value::Array(options.clone())),
                short(value)
            ));
        }
        if let Some(n) = value.as_f64() {
            let bound = |key: &str| map.get(key).and_then(Value::as_f64);
            if let Some(min) = bound("minimum")
                && n < min
            {
                push(format!("{} is below the minimum {min}", short(value)));
            }
            if let Some(max) = bound("maximum")
                && n > max
            {
                push(format!("{} is above the maximum {max}", short(value)));
            }
            if let Some(min) = bound("exclusiveMinimum")
                && n <= min
            {
                push(format!("{} is not above {min}", short(value)));
            }
            if let Some(max) = bound("exclusiveMaximum")
                && n >= max
            {
                push(format!("{} is not below {max}", short(value)));
            }
        }
        if let Some(text) = value.as_str() {
            let len = text.chars().count() as u64;
            if let Some(min) = map.get("minLength").and_then(Value::as_u64)
                && len < min
            {
                push(format!("{} is shorter than {min} characters", short(value)));
            }
            if let Some(max) = map.get("maxLength").and_then(Value::as_u64)
                && len > max
            {
                push(format!("{} is longer than {max} characters", short(value)));
            }
            if let Some(pattern) = pattern(map)
                && !pattern.is_match(text)
            {
                push(format!(
                    "{} does not match the pattern {}",
                    short(value),
                    pattern.as_str()
                ));
            }
        }
        if let Some(items) = value.as_array() {
            self.array(map, items, at, depth, out);
        }
        if let Some(object) = value.as_object() {
            self.object(map, object, at, depth, out);
        }
        self.combinators(map, value, at, depth, out);
    }

    fn array(
        &self,
        map: &Map<String, Value>,
        items: &[Value],
        at: &str,
        depth: usize,
        out: &mut Vec<Mismatch>,
    ) {
        let len = items.len() as u64;
        if let Some(min) = map.get("minItems").and_then(Value::as_u64)
            && len < min
        {
            out.push(Mismatch {
                at: at.to_owned(),
                message: format!("{len} item(s), at least {min} expected"),
            });
        }
        if let Some(max) = map.get("maxItems").and_then(Value::as_u64)
            && len > max
        {
            out.push(Mismatch {
                at: at.to_owned(),
                message: format!("{len} item(s), at most {max} expected"),
            });
        }
        if map.get("uniqueItems").and_then(Value::as_bool) == Some(true) {
            for (i, item) in items.iter().enumerate() {
                if items[..i].contains(item) {
                    out.push(Mismatch {
                        at: format!("{at}/{i}"),
                        message: format!("{} repeats an earlier item", short(item)),
                    });
                }
            }
        }
        let prefix = map
            .get("prefixItems")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice);
        for (i, item) in items.iter().enumerate() {
            let schema = match prefix.get(i) {
                Some(schema) => Some(schema),
                None => map.get("items"),
            };
            if let Some(schema) = schema {
                self.check(schema, item, &format!("{at}/{i}"), depth + 1, out);
            }
        }
    }

    fn object(
        &self,
        map: &Map<String, Value>,
        object: &Map<String, Value>,
        at: &str,
        depth: usize,
        out: &mut Vec<Mismatch>,
    ) {
        let properties = map.get("properties").and_then(Value::as_object);
        for name in required(map) {
            if !object.contains_key(name) {
                out.push(Mismatch {
                    at: at.to_owned(),
                    message: format!("`{name}` is required"),
                });
            }
        }
        for (name, value) in object {
            let place = format!("{at}/{}", name.replace('~', "~0").replace('/', "~1"));
            let by_pattern: Vec<&Value> = map
                .get("patternProperties")
                .and_then(Value::as_object)
                .map(|patterns| {
                    patterns
                        .iter()
                        .filter(|(pattern, _)| {
                            // A pattern the `regex` crate cannot read matches, unchecked.
                            regex::Regex::new(pattern).map_or(true, |re| re.is_match(name))
                        })
                        .map(|(_, schema)| schema)
                        .collect()
                })
                .unwrap_or_default();
            for schema in &by_pattern {
                self.check(schema, value, &place, depth + 1, out);
            }
            match properties.and_then(|p| p.get(name)) {
                Some(schema) => self.check(schema, value, &place, depth + 1, out),
                None if !by_pattern.is_empty() => {}
                None => match map.get("additionalProperties") {
                    Some(Value::Bool(false)) => out.push(Mismatch {
                        at: at.to_owned(),
                        message: format!("`{name}` is not a property of this object"),
                    }),
                    Some(schema @ Value::Object(_)) => {
                        self.check(schema, value, &place, depth + 1, out);
                    }
                    _ => {}
                },
            }
        }
    }

    fn combinators(
        &self,
        map: &Map<String, Value>,
        value: &Value,
        at: &str,
        depth: usize,
        out: &mut Vec<Mismatch>,
    ) {
        let matches = |schema: &Value| {
            let mut inner = Vec::new();
            self.check(schema, value, at, depth + 1, &mut inner);
            inner
        };
        if let Some(all) = map.get("allOf").and_then(Value::as_array) {
            for schema in all {
                out.extend(matches(schema));
            }
        }
        if let Some(any) = map.get("anyOf").and_then(Value::as_array) {
            let results: Vec<Vec<Mismatch>> = any.iter().map(matches).collect();
            if !results.iter().any(Vec::is_empty) {
                out.push(closest(at, "no branch of `anyOf` matches", results));
            }
        }
        if let Some(one) = map.get("oneOf").and_then(Value::as_array) {
            let results: Vec<Vec<Mismatch>> = one.iter().map(matches).collect();
            match results.iter().filter(|r| r.is_empty()).count() {
                1 => {}
                0 => out.push(closest(at, "no branch of `oneOf` matches", results)),
                n => out.push(Mismatch {
                    at: at.to_owned(),
                    message: format!("{n} branches of `oneOf` match, exactly one must"),
                }),
            }
        }
        if let Some(not) = map.get("not")
            && matches(not).is_empty()
        {
            out.push(Mismatch {
                at: at.to_owned(),
                message: "matches the schema under `not`".into(),
            });
        }
    }
}

/// A failed `anyOf`/`oneOf`, explained by the branch that came closest.
fn closest(at: &str, what: &str, results: Vec<Vec<Mismatch>>) -> Mismatch {
    let best = results.into_iter().min_by_key(Vec::len).unwrap_or_default();
    let why = best
        .first()
        .map(|m| format!(" (closest branch: {m})"))
        .unwrap_or_default();
    Mismatch {
        at: at.to_owned(),
        message: format!("{what}{why}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn examples_of_references_enums_tuples_and_maps_match_their_schema() {
        let schema = json!({
            "$defs": {
                "Currency": { "type": "string", "enum": ["EUR", "USD"] },
                "Money": {
                    "type": "object", "additionalProperties": false,
                    "properties": {
                        "amount": { "type": "integer", "format": "int64" },
                        "currency": { "$ref": "#/$defs/Currency" }
                    },
                    "required": ["amount", "currency"]
                },
                "Tree": {
                    "type": "object", "additionalProperties": false,
                    "properties": {
                        "children": { "type": "array", "items": { "$ref": "#/$defs/Tree" } }
                    },
                    "required": ["children"]
                },
                "Status": { "oneOf": [
                    { "type": "string", "enum": ["Open"] },
                    { "type": "object", "additionalProperties": false,
                      "properties": { "Closed": { "type": "string" } }, "required": ["Closed"] }
                ] }
            },
            "type": "object", "additionalProperties": false,
            "properties": {
                "id": { "type": "string", "format": "uuid" },
                "price": { "$ref": "#/$defs/Money" },
                "pair": { "type": "array", "prefixItems": [{ "type": "string" }, { "type": "boolean" }],
                          "items": false, "minItems": 2, "maxItems": 2 },
                "tags": { "type": "object", "additionalProperties": { "type": "integer", "minimum": 0 } },
                "fixed": { "type": "array", "items": { "type": "number" }, "minItems": 3, "maxItems": 3 },
                "tree": { "$ref": "#/$defs/Tree" },
                "status": { "$ref": "#/$defs/Status" },
                "any": {}
            },
            "required": ["id", "price", "pair", "tags", "fixed", "tree", "status", "any"]
        });
        let payload = example(&schema);
        assert_eq!(payload["price"], json!({ "amount": 1, "currency": "EUR" }));
        assert_eq!(payload["pair"], json!(["x", true]));
        assert_eq!(payload["tags"], json!({}));
        assert_eq!(payload["fixed"], json!([1.5, 1.5, 1.5]));
        assert_eq!(payload["status"], json!("Open"));
        assert_eq!(payload["any"], Value::Null);
        assert_eq!(validate(&schema, &payload), Vec::new());
    }

    #[test]
    fn mismatches_name_the_place_and_the_rule() {
        let schema = json!({
            "type": "object", "additionalProperties": false,
            "properties": {
                "lines": { "type": "array", "items": {
                    "type": "object", "additionalProperties": false,
                    "properties": { "qty": { "type": "integer", "minimum": 1 } },
                    "required": ["qty"]
                } },
                "kind": { "oneOf": [{ "const": "a" }, { "const": "b" }] }
            },
            "required": ["lines"]
        });
        let found: Vec<String> = validate(
            &schema,
            &json!({ "lines": [{ "qty": 2 }, { "qty": 0 }, { "qty": 1.5 }], "kind": "c", "extra": 1 }),
        )
        .iter()
        .map(ToString::to_string)
        .collect();
        assert_eq!(
            found,
            [
                "(root): `extra` is not a property of this object",
                "/kind: no branch of `oneOf` matches (closest branch: /kind: expected \"a\", found \"c\")",
                "/lines/1/qty: 0 is below the minimum 1",
                "/lines/2/qty: expected an integer, found 1.5",
            ]
        );
    }

    #[test]
    fn any_value_is_not_guessed_and_recursive_enums_end_in_a_leaf() {
        let schema = json!({
            "type": "object",
            "properties": { "price": {}, "id": { "type": "string" } },
            "required": ["price", "id"]
        });
        let why = generated(&schema).unwrap_err();
        assert!(why.contains("accepts any value"), "{why}");
        assert_eq!(example(&schema)["price"], Value::Null);

        // enum Expr { Add(Box<Expr>, Box<Expr>), Lit(i64) }: no null branch to stop at.
        let expr = json!({
            "$defs": { "Expr": { "oneOf": [
                { "type": "object", "additionalProperties": false, "required": ["Add"],
                  "properties": { "Add": { "type": "array", "prefixItems": [
                      { "$ref": "#/$defs/Expr" }, { "$ref": "#/$defs/Expr" }],
                      "items": false, "minItems": 2, "maxItems": 2 } } },
                { "type": "object", "additionalProperties": false, "required": ["Lit"],
                  "properties": { "Lit": { "type": "integer" } } }
            ] } },
            "$ref": "#/$defs/Expr"
        });
        let payload = generated(&expr).unwrap();
        assert_eq!(validate(&expr, &payload), Vec::new());
        assert!(
            payload.to_string().len() < 20_000,
            "{}",
            payload.to_string().len()
        );
    }

    #[test]
    fn user_schemas_are_not_refused_for_what_the_check_does_not_read() {
        // Names matched by `patternProperties` are allowed beside `additionalProperties: false`;
        // a reference outside `$defs` is not followed; deep payloads are fine.
        let schema = json!({
            "type": "object", "additionalProperties": false,
            "patternProperties": { "^x-": { "type": "string" } },
            "properties": { "other": { "$ref": "https://example.com/other.json" } }
        });
        assert_eq!(
            validate(&schema, &json!({ "x-a": "1", "other": 5 })),
            Vec::new()
        );
        assert_eq!(
            validate(&schema, &json!({ "x-a": 1 }))[0].to_string(),
            "/x-a: expected a string, found 1"
        );
        let list = json!({
            "$defs": { "Node": { "type": "object", "properties": {
                "next": { "anyOf": [{ "$ref": "#/$defs/Node" }, { "type": "null" }] } } } },
            "$ref": "#/$defs/Node"
        });
        let mut deep = json!({ "next": null });
        for _ in 0..40 {
            deep = json!({ "next": deep });
        }
        assert_eq!(validate(&list, &deep), Vec::new());
    }
}
