//! JSON Schema 2020-12, one document per message version, closed by default. Reads the model
//! only; the catalog and the driver use it.
//!
//! # The document
//!
//! ```text
//! { "$schema": "https://json-schema.org/draft/2020-12/schema",
//!   "$id": "urn:event:<name>:v<version>",
//!   "title": "<RustType>",                  // `OrderPlaced`, or `ShipmentEvent::Packed`
//!   "description": "<doc>",                 // absent when there is none
//!   "type": "object", "properties": {..}, "required": [..sorted..], "additionalProperties": false,
//!   "x-event": { "name", "version", "context", "kind": "event" | "command",
//!                "key": [..], "dedupe": [..],   // serde names of the key / dedupe fields
//!                "deprecated": { "since", "sunset", "note" } | null,
//!                "sla": { "max_latency_ms", "retention_secs" },
//!                "compatibility": "BACKWARD" | ...,   // the registry gate's mode
//!                "upcast_from": N | null },  // the oldest version the upcaster chain reads
//!   "$defs": { "<Type>": {..} } }           // always present, possibly empty
//! ```
//!
//! The payload part (`type` ... `additionalProperties`) is that of an object for a struct or a
//! struct variant, and for a newtype variant or `#[serde(transparent)]` struct wrapping a struct
//! of the crate (its fields are inlined). A payload that is not an object is described as what
//! it is: `{"type": "string"}` for `Delivered(String)`, `{"type": "null"}` for a unit variant,
//! `prefixItems` for a tuple.
//!
//! # The subset used
//!
//! | Rust | schema |
//! |---|---|
//! | `String`, `&str`, `char`, `Cow<str>` | `{"type": "string"}` |
//! | `Uuid`; chrono `DateTime`, `NaiveDateTime`, time `OffsetDateTime`; `NaiveDate`, `time::Date`; `NaiveTime`; `Url`; `Ipv4Addr`/`Ipv6Addr` | `{"type": "string", "format": "uuid"/"date-time"/"date"/"time"/"uri"/"ipv4"/"ipv6"}` |
//! | `i8`..`i64`, `u8`..`u64` (`isize`/`usize` as 64) | `{"type": "integer", "format": "int8".."uint64"}`, `"minimum": 0` when unsigned |
//! | `f32`, `f64` | `{"type": "number", "format": "float"/"double"}` |
//! | `bool` | `{"type": "boolean"}` |
//! | `Vec<T>`, `VecDeque<T>`, `[T]` / sets | `{"type": "array", "items": S}` / plus `"uniqueItems": true` |
//! | `[T; N]` | `{"type": "array", "items": S, "minItems": N, "maxItems": N}` |
//! | `(A, B)`, tuple structs | `{"type": "array", "prefixItems": [A, B], "items": false, "minItems": 2, "maxItems": 2}` |
//! | `HashMap`/`BTreeMap<K, V>` (string or integer keys) | `{"type": "object", "additionalProperties": S}` |
//! | `Option<T>` | `{"anyOf": [S, {"type": "null"}]}`, and not required |
//! | `Box`/`Rc`/`Arc<T>`, aliases | as `T` |
//! | `std::time::Duration` | `{"type": "object", "properties": {"secs": u64, "nanos": u32}, ...}`: what serde writes |
//! | `serde_json::Value`, unresolved types | `{}` |
//! | structs and enums of the crate | `{"$ref": "#/$defs/<Name>"}` |
//! | `#[event(schema = "...")]`, `Config::type_schema` | the schema given |
//!
//! Every property carries `"description"` (its doc comment, when it has one) and
//! `"x-proto-field": N`, its protobuf number; `#[serde(default)]` adds `"default"` when the
//! default is a known literal. Definitions: a struct is a closed object like the root; a unit-only
//! enum is `{"type": "string", "enum": [serde names]}`; a data enum is a `oneOf` (`anyOf` when
//! untagged) of one branch per variant as serde writes it (externally tagged: a one-property
//! object, unit variants together as a string `enum`; internally tagged: the fields plus the
//! tag as a `const`; adjacently tagged: tag and content), each branch marked
//! `"x-variant": "<serde name>"`. Enums carry `"x-proto-variants": {"<serde name>": N}`. Removed
//! numbers appear as `"x-proto-reserved": [..]` next to the properties, and removed fields' names
//! as `"x-proto-reserved-names": [..]` (the `.proto` reserves both). The properties that stand
//! for a variant rather than a field (the one property of an externally tagged variant, the tag
//! and content of tagged ones) carry no `x-proto-field`: the variant's number is in
//! `x-proto-variants`.
//!
//! Output is deterministic: keys sorted at every level ([`to_pretty`]), `required` sorted,
//! `$defs` by name.

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::{Map, Value, json};

use crate::model::{EnumRepr, Field, Message, Model, Shape, Ty, Variant};

/// The `$schema` of every document.
pub const DRAFT_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";

/// The JSON Schema of one message version.
pub fn message_schema(model: &Model, message: &Message) -> Value {
    let mut root = Map::new();
    root.insert("$schema".into(), DRAFT_2020_12.into());
    root.insert(
        "$id".into(),
        format!("urn:event:{}:v{}", message.name, message.version).into(),
    );
    root.insert("title".into(), message.rust_type.clone().into());
    if let Some(description) = &message.description {
        root.insert("description".into(), description.clone().into());
    }
    root.insert("x-event".into(), x_event(model, message));
    for (key, value) in payload_schema(model, &message.payload) {
        root.insert(key, value);
    }
    let defs: Map<String, Value> = message
        .defs
        .iter()
        .filter_map(|name| {
            let def = model.types.get(name)?;
            let mut schema = shape_schema(&def.shape);
            if let Some(doc) = &def.doc {
                schema.insert("description".into(), doc.clone().into());
            }
            Some((name.clone(), Value::Object(schema)))
        })
        .collect();
    root.insert("$defs".into(), Value::Object(defs));
    Value::Object(root)
}

/// The fields a payload is made of, when it is an object (inlining a newtype of a struct).
fn payload_fields<'m>(model: &'m Model, shape: &'m Shape) -> Option<&'m [Field]> {
    match shape {
        Shape::Struct { fields, .. } => Some(fields),
        Shape::Newtype {
            inner: Ty::Ref { name },
        } => match model.types.get(name).map(|d| &d.shape) {
            Some(inner @ Shape::Struct { .. }) => payload_fields(model, inner),
            _ => None,
        },
        _ => None,
    }
}

fn payload_schema(model: &Model, shape: &Shape) -> Map<String, Value> {
    if let Shape::Newtype {
        inner: Ty::Ref { name },
    } = shape
        && let Some(def @ Shape::Struct { .. }) = model.types.get(name).map(|d| &d.shape)
    {
        return shape_schema(def);
    }
    shape_schema(shape)
}

fn x_event(model: &Model, message: &Message) -> Value {
    let fields = payload_fields(model, &message.payload).unwrap_or(&[]);
    let wire = |rust: &String| -> Value {
        fields
            .iter()
            .find(|f| f.rust_name == rust.trim_start_matches("r#"))
            .map_or_else(|| rust.clone(), |f| f.name.clone())
            .into()
    };
    json!({
        "name": message.name,
        "version": message.version,
        "context": message.context,
        "kind": message.kind.as_str(),
        "key": message.key_fields.iter().map(wire).collect::<Vec<_>>(),
        "dedupe": message.dedupe_fields.iter().map(wire).collect::<Vec<_>>(),
        "deprecated": message.deprecated.as_ref().map(|d| json!({
            "since": d.since, "sunset": d.sunset, "note": d.note,
        })),
        "sla": {
            "max_latency_ms": message.sla.max_latency_ms,
            "retention_secs": message.sla.retention_secs,
        },
        "compatibility": message.compatibility,
        "upcast_from": (message.oldest_readable_version < message.version)
            .then_some(message.oldest_readable_version),
    })
}

fn object(
    fields: &[Field],
    additional: Option<&Ty>,
    (reserved, reserved_names): (&[u32], &[String]),
    extra: Option<(&str, Value)>,
) -> Map<String, Value> {
    let mut properties = Map::new();
    let mut required: Vec<&str> = Vec::new();
    for field in fields {
        let mut schema = ty_schema(&field.ty);
        if let Some(doc) = &field.doc {
            schema.insert("description".into(), doc.clone().into());
        }
        if let Some(default) = &field.default {
            schema.insert("default".into(), default.clone());
        }
        schema.insert("x-proto-field".into(), field.number.into());
        properties.insert(field.name.clone(), Value::Object(schema));
        if field.required {
            required.push(&field.name);
        }
    }
    if let Some((tag, value)) = extra {
        properties.insert(tag.to_owned(), value);
        required.push(tag);
    }
    required.sort_unstable();
    let mut out = Map::new();
    out.insert("type".into(), "object".into());
    out.insert("properties".into(), Value::Object(properties));
    out.insert("required".into(), required.into());
    out.insert(
        "additionalProperties".into(),
        match additional {
            None => Value::Bool(false),
            Some(ty) => Value::Object(ty_schema(ty)),
        },
    );
    if !reserved.is_empty() {
        out.insert("x-proto-reserved".into(), reserved.into());
    }
    if !reserved_names.is_empty() {
        out.insert("x-proto-reserved-names".into(), reserved_names.into());
    }
    out
}

fn tuple(items: &[Ty]) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("type".into(), "array".into());
    out.insert(
        "prefixItems".into(),
        items
            .iter()
            .map(|t| Value::Object(ty_schema(t)))
            .collect::<Vec<_>>()
            .into(),
    );
    out.insert("items".into(), false.into());
    out.insert("minItems".into(), items.len().into());
    out.insert("maxItems".into(), items.len().into());
    out
}

fn shape_schema(shape: &Shape) -> Map<String, Value> {
    match shape {
        Shape::Struct {
            fields,
            additional,
            reserved,
            reserved_names,
        } => object(
            fields,
            additional.as_ref(),
            (reserved, reserved_names),
            None,
        ),
        Shape::Newtype { inner } => ty_schema(inner),
        Shape::Tuple { items } => tuple(items),
        Shape::Unit => one("type", "null"),
        Shape::Enum {
            repr,
            variants,
            reserved,
        } => enum_schema(repr, variants, reserved),
    }
}

fn one(key: &str, value: impl Into<Value>) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert(key.into(), value.into());
    out
}

fn constant(name: &str) -> Value {
    json!({ "const": name })
}

fn enum_schema(repr: &EnumRepr, variants: &[Variant], reserved: &[u32]) -> Map<String, Value> {
    let numbers: Map<String, Value> = variants
        .iter()
        .map(|v| (v.name.clone(), v.number.into()))
        .collect();
    let mut out = Map::new();
    let all_unit = variants.iter().all(|v| v.payload == Shape::Unit);
    if all_unit && *repr == EnumRepr::External {
        out.insert("type".into(), "string".into());
        out.insert(
            "enum".into(),
            variants
                .iter()
                .map(|v| v.name.clone())
                .collect::<Vec<_>>()
                .into(),
        );
    } else {
        let mut branches = Vec::new();
        let units: Vec<&str> = variants
            .iter()
            .filter(|v| v.payload == Shape::Unit)
            .map(|v| v.name.as_str())
            .collect();
        if *repr == EnumRepr::External && !units.is_empty() {
            branches.push(json!({ "type": "string", "enum": units }));
        }
        for variant in variants {
            let mut branch = match repr {
                EnumRepr::External if variant.payload == Shape::Unit => continue,
                EnumRepr::External => {
                    let mut properties = Map::new();
                    properties.insert(
                        variant.name.clone(),
                        Value::Object(shape_schema(&variant.payload)),
                    );
                    let mut out = Map::new();
                    out.insert("type".into(), "object".into());
                    out.insert("properties".into(), Value::Object(properties));
                    out.insert("required".into(), json!([variant.name]));
                    out.insert("additionalProperties".into(), false.into());
                    out
                }
                EnumRepr::Internal { tag } => match &variant.payload {
                    Shape::Struct {
                        fields,
                        additional,
                        reserved,
                        reserved_names,
                    } => object(
                        fields,
                        additional.as_ref(),
                        (reserved, reserved_names),
                        Some((tag, constant(&variant.name))),
                    ),
                    Shape::Unit => {
                        object(&[], None, (&[], &[]), Some((tag, constant(&variant.name))))
                    }
                    // A newtype of a struct (inlined by serde) or of a map: open, with the tag.
                    _ => object(
                        &[],
                        Some(&Ty::Any),
                        (&[], &[]),
                        Some((tag, constant(&variant.name))),
                    ),
                },
                EnumRepr::Adjacent { tag, content } => {
                    let mut properties = Map::new();
                    properties.insert(tag.clone(), constant(&variant.name));
                    let mut required = vec![tag.clone()];
                    if variant.payload != Shape::Unit {
                        properties.insert(
                            content.clone(),
                            Value::Object(shape_schema(&variant.payload)),
                        );
                        required.push(content.clone());
                    }
                    required.sort();
                    let mut out = Map::new();
                    out.insert("type".into(), "object".into());
                    out.insert("properties".into(), Value::Object(properties));
                    out.insert("required".into(), required.into());
                    out.insert("additionalProperties".into(), false.into());
                    out
                }
                EnumRepr::Untagged => shape_schema(&variant.payload),
            };
            branch.insert("x-variant".into(), variant.name.clone().into());
            if let Some(doc) = &variant.doc {
                branch.insert("description".into(), doc.clone().into());
            }
            branches.push(Value::Object(branch));
        }
        let key = if *repr == EnumRepr::Untagged {
            "anyOf"
        } else {
            "oneOf"
        };
        out.insert(key.into(), branches.into());
    }
    out.insert("x-proto-variants".into(), Value::Object(numbers));
    if !reserved.is_empty() {
        out.insert("x-proto-reserved".into(), reserved.into());
    }
    out
}

fn integer_format(bits: u16, signed: bool) -> String {
    format!("{}int{bits}", if signed { "" } else { "u" })
}

/// The schema of one wire type (always an object, so a description can go next to it).
pub fn ty_schema(ty: &Ty) -> Map<String, Value> {
    match ty {
        Ty::String { format } => {
            let mut out = one("type", "string");
            if let Some(format) = format {
                out.insert("format".into(), format.clone().into());
            }
            out
        }
        Ty::Char => one("type", "string"),
        Ty::Bool => one("type", "boolean"),
        Ty::Integer { bits, signed } => {
            let mut out = one("type", "integer");
            out.insert("format".into(), integer_format(*bits, *signed).into());
            if !signed {
                out.insert("minimum".into(), 0.into());
            }
            out
        }
        Ty::Float { bits } => {
            let mut out = one("type", "number");
            out.insert(
                "format".into(),
                if *bits == 32 { "float" } else { "double" }.into(),
            );
            out
        }
        Ty::Duration => {
            match json!({
                "type": "object",
                "properties": {
                    "secs": {"type": "integer", "format": "uint64", "minimum": 0, "x-proto-field": 1},
                    "nanos": {"type": "integer", "format": "uint32", "minimum": 0, "x-proto-field": 2},
                },
                "required": ["nanos", "secs"],
                "additionalProperties": false,
            }) {
                Value::Object(map) => map,
                _ => Map::new(),
            }
        }
        Ty::Any | Ty::Unresolved { .. } => Map::new(),
        Ty::Unit => one("type", "null"),
        Ty::Option { inner } => {
            let mut inner: &Ty = inner;
            while let Ty::Option { inner: deeper } = inner {
                inner = deeper;
            }
            let schema = ty_schema(inner);
            if schema.is_empty() {
                return schema;
            }
            one(
                "anyOf",
                vec![Value::Object(schema), json!({ "type": "null" })],
            )
        }
        Ty::Seq { items, unique } => {
            let mut out = one("type", "array");
            out.insert("items".into(), Value::Object(ty_schema(items)));
            if *unique {
                out.insert("uniqueItems".into(), true.into());
            }
            out
        }
        Ty::Array { items, len } => {
            let mut out = one("type", "array");
            out.insert("items".into(), Value::Object(ty_schema(items)));
            out.insert("minItems".into(), (*len).into());
            out.insert("maxItems".into(), (*len).into());
            out
        }
        Ty::Tuple { items } => tuple(items),
        Ty::Map { values, .. } => {
            let mut out = one("type", "object");
            out.insert(
                "additionalProperties".into(),
                Value::Object(ty_schema(values)),
            );
            out
        }
        Ty::Ref { name } => one(
            "$ref",
            format!("#/$defs/{}", name.replace('~', "~0").replace('/', "~1")),
        ),
        Ty::Schema { schema } => match schema {
            Value::Object(map) => map.clone(),
            Value::Bool(false) => one("not", json!({})),
            _ => Map::new(),
        },
    }
}

/// Serializes `value` with every object's keys sorted, whatever map type serde_json was built
/// with (another crate in the build may turn on its `preserve_order` feature).
struct Sorted<'a>(&'a Value);

impl Serialize for Sorted<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                let mut out = serializer.serialize_map(Some(entries.len()))?;
                for (key, value) in entries {
                    out.serialize_entry(key, &Sorted(value))?;
                }
                out.end()
            }
            Value::Array(items) => {
                let mut out = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    out.serialize_element(&Sorted(item))?;
                }
                out.end()
            }
            other => other.serialize(serializer),
        }
    }
}

/// Pretty-prints `value` deterministically: keys sorted, two-space indent, final newline.
pub fn to_pretty(value: &Value) -> String {
    let mut out = serde_json::to_string_pretty(&Sorted(value))
        .unwrap_or_else(|_| unreachable!("a serde_json::Value always serializes"));
    out.push('\n');
    out
}
