//! The type mapping, the serde rules, name resolution and error reporting, on small crates
//! written to a temporary directory.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::json;

use crate::model::{EnumRepr, Field, Model, Shape, Ty};
use crate::{Config, Error, ErrorKind, Generated};

struct TempCrate {
    dir: PathBuf,
}

impl TempCrate {
    fn new(files: &[(&str, &str)]) -> TempCrate {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "event-build-unit-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        for (path, content) in files {
            let path = dir.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
        TempCrate { dir }
    }

    fn config(&self) -> Config {
        let mut config = Config::new();
        config.crate_dir(&self.dir);
        config
    }

    fn generate(&self) -> Result<Generated, Error> {
        self.config().generate()
    }
}

impl Drop for TempCrate {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn model(lib: &str) -> Model {
    TempCrate::new(&[("src/lib.rs", lib)])
        .generate()
        .unwrap_or_else(|e| panic!("{e}"))
        .model
}

fn fields(shape: &Shape) -> &[Field] {
    match shape {
        Shape::Struct { fields, .. } => fields,
        other => panic!("not a struct: {other:?}"),
    }
}

fn field<'m>(model: &'m Model, name: &str) -> &'m Field {
    fields(&model.messages[0].payload)
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no field {name}"))
}

fn string(format: Option<&str>) -> Ty {
    Ty::String {
        format: format.map(str::to_owned),
    }
}

fn int(bits: u16, signed: bool) -> Ty {
    Ty::Integer { bits, signed }
}

fn boxed(ty: Ty) -> Box<Ty> {
    Box::new(ty)
}

#[test]
fn rust_types_map_to_wire_types() {
    let model = model(
        r#"
        use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
        use std::sync::Arc;
        use std::time::Duration;
        use chrono::{DateTime, NaiveDate, Utc};
        use event_runtime::DomainEvent;

        #[derive(DomainEvent)]
        #[event(context = "t")]
        struct Everything {
            s: String, r: &'static str, c: char, b: bool,
            i8_: i8, i16_: i16, i32_: i32, i64_: i64, isize_: isize, i128_: i128,
            u8_: u8, u16_: u16, u32_: u32, u64_: u64, usize_: usize,
            f: f32, d: f64,
            o: Option<u8>, v: Vec<String>, q: VecDeque<bool>, hs: HashSet<u32>, bs: BTreeSet<String>,
            hm: HashMap<String, u64>, bm: BTreeMap<u32, Vec<bool>>,
            bx: Box<i64>, rc: std::rc::Rc<String>, arc: Arc<str>,
            arr: [u8; 4], tup: (String, u32), unit: (),
            id: uuid::Uuid, at: DateTime<Utc>, naive: chrono::NaiveDateTime, day: NaiveDate,
            odt: time::OffsetDateTime, date: time::Date,
            dur: Duration, json: serde_json::Value,
        }
        "#,
    );
    let expected = [
        ("s", string(None)),
        ("r", string(None)),
        ("c", Ty::Char),
        ("b", Ty::Bool),
        ("i8_", int(8, true)),
        ("i16_", int(16, true)),
        ("i32_", int(32, true)),
        ("i64_", int(64, true)),
        ("isize_", int(64, true)),
        ("i128_", int(128, true)),
        ("u8_", int(8, false)),
        ("u16_", int(16, false)),
        ("u32_", int(32, false)),
        ("u64_", int(64, false)),
        ("usize_", int(64, false)),
        ("f", Ty::Float { bits: 32 }),
        ("d", Ty::Float { bits: 64 }),
        (
            "o",
            Ty::Option {
                inner: boxed(int(8, false)),
            },
        ),
        (
            "v",
            Ty::Seq {
                items: boxed(string(None)),
                unique: false,
            },
        ),
        (
            "q",
            Ty::Seq {
                items: boxed(Ty::Bool),
                unique: false,
            },
        ),
        (
            "hs",
            Ty::Seq {
                items: boxed(int(32, false)),
                unique: true,
            },
        ),
        (
            "bs",
            Ty::Seq {
                items: boxed(string(None)),
                unique: true,
            },
        ),
        (
            "hm",
            Ty::Map {
                key: boxed(string(None)),
                values: boxed(int(64, false)),
            },
        ),
        (
            "bm",
            Ty::Map {
                key: boxed(int(32, false)),
                values: boxed(Ty::Seq {
                    items: boxed(Ty::Bool),
                    unique: false,
                }),
            },
        ),
        ("bx", int(64, true)),
        ("rc", string(None)),
        ("arc", string(None)),
        (
            "arr",
            Ty::Array {
                items: boxed(int(8, false)),
                len: 4,
            },
        ),
        (
            "tup",
            Ty::Tuple {
                items: vec![string(None), int(32, false)],
            },
        ),
        ("unit", Ty::Unit),
        ("id", string(Some("uuid"))),
        ("at", string(Some("date-time"))),
        ("naive", string(Some("date-time"))),
        ("day", string(Some("date"))),
        ("odt", string(Some("date-time"))),
        ("date", string(Some("date"))),
        ("dur", Ty::Duration),
        ("json", Ty::Any),
    ];
    for (name, ty) in expected {
        assert_eq!(field(&model, name).ty, ty, "field {name}");
    }
    let names: Vec<&str> = fields(&model.messages[0].payload)
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    assert_eq!(names.len(), 38, "every field is written: {names:?}");
}

#[test]
fn json_schemas_of_wire_types() {
    use crate::json_schema::ty_schema;
    let schema = |ty: Ty| serde_json::Value::Object(ty_schema(&ty));
    assert_eq!(
        schema(int(16, false)),
        json!({"type": "integer", "format": "uint16", "minimum": 0})
    );
    assert_eq!(
        schema(int(64, true)),
        json!({"type": "integer", "format": "int64"})
    );
    assert_eq!(
        schema(Ty::Float { bits: 32 }),
        json!({"type": "number", "format": "float"})
    );
    assert_eq!(
        schema(Ty::Option {
            inner: boxed(Ty::Option {
                inner: boxed(Ty::Bool)
            })
        }),
        json!({"anyOf": [{"type": "boolean"}, {"type": "null"}]})
    );
    assert_eq!(
        schema(Ty::Option {
            inner: boxed(Ty::Any)
        }),
        json!({}),
        "any value already includes null"
    );
    assert_eq!(
        schema(Ty::Seq {
            items: boxed(string(Some("uuid"))),
            unique: true
        }),
        json!({"type": "array", "items": {"type": "string", "format": "uuid"}, "uniqueItems": true})
    );
    assert_eq!(
        schema(Ty::Array {
            items: boxed(Ty::Bool),
            len: 2
        }),
        json!({"type": "array", "items": {"type": "boolean"}, "minItems": 2, "maxItems": 2})
    );
    assert_eq!(
        schema(Ty::Tuple {
            items: vec![Ty::Bool, Ty::Char]
        }),
        json!({"type": "array", "prefixItems": [{"type": "boolean"}, {"type": "string"}], "items": false, "minItems": 2, "maxItems": 2})
    );
    assert_eq!(
        schema(Ty::Map {
            key: boxed(string(None)),
            values: boxed(Ty::Ref {
                name: "Line".into()
            })
        }),
        json!({"type": "object", "additionalProperties": {"$ref": "#/$defs/Line"}})
    );
    assert_eq!(schema(Ty::Duration)["required"], json!(["nanos", "secs"]));
}

#[test]
fn serde_renames_defaults_skips_and_flatten_shape_the_object() {
    let model = model(
        r#"
        use event_runtime::DomainEvent;
        use serde::{Serialize, Deserialize};

        #[derive(DomainEvent, Serialize)]
        #[event(context = "t")]
        #[serde(rename_all = "camelCase")]
        struct Renamed {
            order_id: String,
            #[serde(rename = "TOTAL")]
            total_cents: u64,
            #[serde(default)]
            count: u32,
            #[serde(default = "fallback")]
            label: String,
            #[serde(skip)]
            cache: u8,
            #[serde(skip_serializing)]
            secret: String,
            #[serde(skip_deserializing)]
            computed: bool,
            #[serde(skip_serializing_if = "Vec::is_empty")]
            notes: Vec<String>,
            maybe: Option<String>,
            r#type: String,
            #[serde(flatten)]
            meta: Meta,
            #[serde(flatten)]
            rest: std::collections::HashMap<String, serde_json::Value>,
        }

        #[derive(Serialize)]
        #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
        struct Meta { trace_id: String, #[serde(default)] span: Option<u64> }
        "#,
    );
    let payload = &model.messages[0].payload;
    let summary: Vec<(&str, bool)> = fields(payload)
        .iter()
        .map(|f| (f.name.as_str(), f.required))
        .collect();
    assert_eq!(
        summary,
        [
            ("orderId", true),
            ("TOTAL", true),
            ("count", false),
            ("label", false),
            ("computed", true),
            ("notes", false),
            ("maybe", false),
            ("type", true),
            ("TRACE_ID", true),
            ("SPAN", false),
        ]
    );
    assert_eq!(field(&model, "count").default, Some(json!(0)));
    assert_eq!(field(&model, "label").default, None, "`default = \"path\"`");
    assert_eq!(field(&model, "type").rust_name, "type");
    let Shape::Struct { additional, .. } = payload else {
        unreachable!()
    };
    assert_eq!(
        *additional,
        Some(Ty::Any),
        "a flattened map opens the object"
    );
    assert!(model.types.is_empty(), "the flattened struct is inlined");
}

#[test]
fn transparent_newtype_and_tuple_structs_and_container_default() {
    let model = model(
        r#"
        use event_runtime::DomainEvent;

        #[derive(DomainEvent)]
        #[event(context = "t")]
        struct Wrapped { id: OrderId, pair: Pair, t: Transparent, d: Defaults }

        struct OrderId(String);
        struct Pair(u8, #[serde(skip)] u8, String);
        #[serde(transparent)]
        struct Transparent { inner: u64 }
        #[serde(default)]
        struct Defaults { a: u8, b: String }
        "#,
    );
    let shape = |name: &str| &model.types[name].shape;
    assert_eq!(
        *shape("OrderId"),
        Shape::Newtype {
            inner: string(None)
        }
    );
    assert_eq!(
        *shape("Pair"),
        Shape::Tuple {
            items: vec![int(8, false), string(None)]
        }
    );
    assert_eq!(
        *shape("Transparent"),
        Shape::Newtype {
            inner: int(64, false)
        }
    );
    assert!(fields(shape("Defaults")).iter().all(|f| !f.required));
}

#[test]
fn nested_enums_follow_serde_tagging() {
    let model = model(
        r#"
        use event_runtime::DomainEvent;

        #[derive(DomainEvent)]
        #[event(context = "t")]
        struct Holder { a: External, b: Internal, c: Adjacent, d: Untagged, e: Plain }

        #[serde(rename_all = "snake_case", rename_all_fields = "camelCase")]
        enum External { UnitOne, Data { field_name: u8 }, New(String), Pair(u8, u8), #[serde(skip)] Hidden }
        #[serde(tag = "kind")]
        enum Internal { A { x: u8 }, B, #[serde(rename_all = "UPPERCASE")] C { y: u8 } }
        #[serde(tag = "t", content = "c")]
        enum Adjacent { A(u8), B }
        #[serde(untagged)]
        enum Untagged { A(u8), B { s: String } }
        enum Plain { X, Y }
        "#,
    );
    let Shape::Enum { repr, variants, .. } = &model.types["External"].shape else {
        panic!()
    };
    assert_eq!(*repr, EnumRepr::External);
    let names: Vec<&str> = variants.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["unit_one", "data", "new", "pair"]);
    assert_eq!(fields(&variants[1].payload)[0].name, "fieldName");
    assert_eq!(
        variants[2].payload,
        Shape::Newtype {
            inner: string(None)
        }
    );
    let Shape::Enum { repr, variants, .. } = &model.types["Internal"].shape else {
        panic!()
    };
    assert_eq!(*repr, EnumRepr::Internal { tag: "kind".into() });
    assert_eq!(fields(&variants[2].payload)[0].name, "Y");
    assert!(matches!(
        model.types["Adjacent"].shape,
        Shape::Enum {
            repr: EnumRepr::Adjacent { .. },
            ..
        }
    ));
    assert!(matches!(
        model.types["Untagged"].shape,
        Shape::Enum {
            repr: EnumRepr::Untagged,
            ..
        }
    ));
    assert!(model.types["Plain"].shape.is_unit_enum());
    assert_eq!(
        variants.iter().map(|v| v.number).collect::<Vec<_>>(),
        [1, 2, 3]
    );
}

#[test]
fn names_resolve_through_modules_imports_aliases_and_self() {
    let crate_ = TempCrate::new(&[
        (
            "src/lib.rs",
            r#"
            mod model;
            pub mod events { pub mod inner; }
            "#,
        ),
        (
            "src/model.rs",
            r#"
            pub type Cents = u64;
            pub struct Line { pub sku: String }
            pub mod deep { pub struct Tree { pub children: Vec<Box<Self>>, pub value: super::Cents } }
            "#,
        ),
        (
            "src/events/inner.rs",
            r#"
            use event_runtime::DomainEvent;
            use crate::model::{Line as OrderLine, deep};
            use super::super::model::*;

            #[derive(event_runtime::DomainEvent)]
            #[event(context = "t")]
            struct Resolved { a: OrderLine, b: deep::Tree, c: Cents, d: crate::model::Line, e: Option<Box<Resolved>> }
            "#,
        ),
    ]);
    let generated = crate_.generate().unwrap();
    let model = &generated.model;
    let tys: Vec<&Ty> = fields(&model.messages[0].payload)
        .iter()
        .map(|f| &f.ty)
        .collect();
    let r = |name: &str| Ty::Ref { name: name.into() };
    assert_eq!(
        tys,
        [
            &r("Line"),
            &r("Tree"),
            &int(64, false),
            &r("Line"),
            &Ty::Option {
                inner: boxed(r("Resolved"))
            }
        ]
    );
    assert_eq!(model.messages[0].rust_path, "events::inner::Resolved");
    assert_eq!(model.types["Tree"].rust_path, "model::deep::Tree");
    let children = &fields(&model.types["Tree"].shape)[0].ty;
    assert_eq!(
        *children,
        Ty::Seq {
            items: boxed(r("Tree")),
            unique: false
        }
    );
    assert!(generated.warnings.is_empty(), "{:?}", generated.warnings);
}

#[test]
fn types_that_share_a_name_are_qualified() {
    let model = model(
        r#"
        mod a { pub struct Item { pub x: u8 } }
        mod b { pub struct Item { pub y: u8 } }
        #[derive(DomainEvent)]
        #[event(context = "t")]
        struct Both { a: a::Item, b: b::Item }
        "#,
    );
    assert_eq!(model.types.keys().collect::<Vec<_>>(), ["a.Item", "b.Item"]);
}

#[test]
fn unresolved_types_warn_and_the_escape_hatches_declare_them() {
    let lib = r##"
        use event_runtime::{Command, DomainEvent};
        use rust_decimal::Decimal;

        /// Prices.
        #[derive(DomainEvent)]
        #[event(context = "shop", version = 2)]
        struct PriceChanged {
            sku: String,
            price: Decimal,
            #[event(schema = r#"{"type": "string", "format": "decimal"}"#)]
            old_price: Decimal,
            #[serde(with = "my::codec")]
            packed: Vec<u8>,
            history: Vec<History>,
        }

        struct History { at: Instant }

        #[derive(Command)]
        #[command(context = "shop")]
        struct Reprice { to: Money<u8> }
        struct Money<C> { c: C }
    "##;
    let crate_ = TempCrate::new(&[("src/lib.rs", lib)]);
    let generated = crate_.generate().unwrap();
    let warnings: Vec<String> = generated.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(warnings.len(), 4, "{warnings:#?}");
    assert!(
        warnings[0].starts_with("src/lib.rs:10:13: event `shop.price_changed` v2 (PriceChanged), field `price`: cannot resolve type `Decimal`"),
        "{warnings:#?}"
    );
    assert!(warnings[0].contains("#[event(schema = "), "{warnings:#?}");
    assert!(
        warnings[1]
            .contains("field `packed`: `Vec<u8>` is written by #[serde(with = \"my::codec\")]"),
        "{warnings:#?}"
    );
    assert!(
        warnings[2].contains("field `History.at`: cannot resolve type `Instant`")
            && warnings[2].contains("Config::type_schema"),
        "{warnings:#?}"
    );
    assert!(
        warnings[3].contains("command `shop.reprice` v1 (Reprice), field `to`: cannot resolve type `Money<u8>` (generic types are not resolved)")
            && warnings[3].contains("#[command(schema = "),
        "{warnings:#?}"
    );
    let model = &generated.model;
    assert_eq!(
        field(model, "old_price").ty,
        Ty::Schema {
            schema: json!({"type": "string", "format": "decimal"})
        }
    );
    assert_eq!(
        field(model, "price").ty,
        Ty::Unresolved {
            rust: "Decimal".into()
        }
    );

    // Declared once for the whole crate, the warnings about `Decimal` and `Instant` go away.
    let mut config = crate_.config();
    config
        .type_schema("rust_decimal::Decimal", json!({"type": "string"}))
        .type_schema("Instant", json!({"type": "integer"}));
    let generated = config.generate().unwrap();
    assert_eq!(generated.warnings.len(), 2, "{:#?}", generated.warnings);
    assert_eq!(
        field(&generated.model, "price").ty,
        Ty::Schema {
            schema: json!({"type": "string"})
        }
    );
}

#[test]
fn attribute_errors_are_the_derives_with_file_and_line() {
    let crate_ = TempCrate::new(&[
        ("src/lib.rs", "mod bad;\n"),
        (
            "src/bad.rs",
            r#"use event_runtime::{DomainEvent, handler};

#[derive(DomainEvent)]
#[event(verison = 2, context = "orders")]
struct OrderPlaced { id: String }

#[derive(DomainEvent)]
struct NoContext { id: String }

#[derive(DomainEvent)]
#[event(context = "orders")]
struct Tagged {
    #[event(tag = 0)]
    a: String,
    #[event(tag = 3)]
    b: String,
    #[event(tag = 3)]
    c: String,
    #[event(schema = "not json")]
    d: String,
}

#[handler]
async fn no_group(event: Envelope<OrderPlaced>, ctx: Context) -> Result<(), HandlerError> { Ok(()) }
"#,
        ),
    ]);
    let err = crate_.generate().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
    let messages: Vec<String> = err.diagnostics().iter().map(ToString::to_string).collect();
    assert_eq!(
        messages,
        [
            "src/bad.rs:4:9: unknown event attribute `verison` on a type, did you mean `version`?",
            "src/bad.rs:8:8: missing `context`: every event is owned by one bounded context; add #[event(context = \"orders\")]",
            "src/bad.rs:13:19: a protobuf field number is an integer from 1 to 536870911, like `tag = 3`; found `0`",
            "src/bad.rs:23:1: missing `group`: write #[handler(group = \"billing\")]; a handler runs in one consumer group",
        ],
        "parse errors stop the rules that look at several attributes, as in the derive"
    );

    // Once the attributes parse, the cross-attribute rules and the schema literal are checked.
    let crate_ = TempCrate::new(&[(
        "src/lib.rs",
        r#"
#[derive(DomainEvent)]
#[event(context = "orders")]
struct Tagged {
    #[event(tag = 3)]
    b: String,
    #[event(tag = 3)]
    c: String,
    #[event(schema = "not json")]
    d: String,
}
"#,
    )]);
    let err = crate_.generate().unwrap_err();
    let messages: Vec<String> = err.diagnostics().iter().map(ToString::to_string).collect();
    assert_eq!(messages.len(), 1, "{messages:#?}");
    assert!(
        messages[0].starts_with("src/lib.rs:7:19: field number 3 is already used by field `b`"),
        "{messages:#?}"
    );
}

#[test]
fn a_bad_schema_literal_is_an_error_at_the_literal() {
    let crate_ = TempCrate::new(&[(
        "src/lib.rs",
        r#"
#[derive(DomainEvent)]
#[event(context = "orders")]
struct S {
    #[event(schema = "not json")]
    d: String,
}
"#,
    )]);
    let err = crate_.generate().unwrap_err();
    let messages: Vec<String> = err.diagnostics().iter().map(ToString::to_string).collect();
    assert_eq!(messages.len(), 1, "{messages:#?}");
    assert!(
        messages[0].starts_with("src/lib.rs:5:22: `schema` is not valid JSON"),
        "{messages:#?}"
    );
}

#[test]
fn test_modules_are_skipped_and_missing_module_files_are_warned_about() {
    let generated = TempCrate::new(&[(
        "src/lib.rs",
        r#"
        mod gone;
        #[cfg(test)]
        mod tests {
            #[derive(DomainEvent)]
            #[event(context = "t")]
            struct OnlyInTests { a: u8 }
        }
        "#,
    )])
    .generate()
    .unwrap();
    assert!(generated.model.messages.is_empty());
    assert_eq!(generated.warnings.len(), 1);
    assert!(
        generated.warnings[0]
            .to_string()
            .contains("no file for `mod gone;`"),
        "{}",
        generated.warnings[0]
    );
}

#[test]
fn a_crate_without_sources_or_with_invalid_rust_is_a_typed_error() {
    let empty = TempCrate::new(&[("Cargo.toml", "")]);
    assert_eq!(empty.generate().unwrap_err().kind(), ErrorKind::NoSources);
    let broken = TempCrate::new(&[("src/lib.rs", "struct {")]);
    let err = broken.generate().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Parse);
    assert!(err.to_string().contains("src/lib.rs:1:8"), "{err}");
}

#[test]
fn producers_are_found_in_handlers_methods_and_plain_functions() {
    let model = model(
        r#"
        use event_runtime::{Command, DomainEvent, Envelope, handler};

        #[derive(DomainEvent)]
        #[event(context = "a")]
        enum Flow { Started { id: u8 }, Done(u8), Stopped }

        #[derive(Command)]
        #[command(context = "b")]
        struct Go;

        /// Reacts.
        #[handler(group = "g")]
        async fn react(event: Envelope<Flow>, ctx: Context) -> Result<(), HandlerError> {
            ctx.publish(Flow::Started { id: 1 })?;
            let _ = (|| ctx.publish(Flow::Done(2)))();
            ctx.send(Go)?;
            tx.send(NotAMessage { a: 1 });
            Ok(())
        }

        impl Flow {
            fn stop() -> Envelope<Self> { Envelope::event(Self::Stopped) }
        }

        fn go() -> Envelope<Go> { event_runtime::Envelope::command(Go {}) }
        "#,
    );
    let found: Vec<(String, String, Option<String>, String)> = model
        .producers
        .iter()
        .map(|p| {
            (
                p.message.name.clone(),
                format!("{:?}", p.via),
                p.group.clone(),
                p.function.clone(),
            )
        })
        .collect();
    let g = Some("g".to_owned());
    assert_eq!(
        found,
        [
            ("a.done".into(), "Publish".into(), g.clone(), "react".into()),
            (
                "a.started".into(),
                "Publish".into(),
                g.clone(),
                "react".into()
            ),
            (
                "a.stopped".into(),
                "EnvelopeEvent".into(),
                None,
                "Flow::stop".into()
            ),
            ("b.go".into(), "EnvelopeCommand".into(), None, "go".into()),
            ("b.go".into(), "Send".into(), g, "react".into()),
        ]
    );
    assert_eq!(model.handlers.len(), 1);
    assert_eq!(model.handlers[0].messages.len(), 3);
    assert_eq!(model.handlers[0].doc.as_deref(), Some("Reacts."));
}

#[test]
fn a_bare_time_offset_date_time_warns_that_it_is_not_rfc_3339() {
    let generated = TempCrate::new(&[(
        "src/lib.rs",
        r#"
        #[derive(DomainEvent)]
        #[event(context = "t")]
        struct At {
            bare: time::OffsetDateTime,
            #[serde(with = "time::serde::rfc3339")]
            declared: time::OffsetDateTime,
            #[serde(with = "time::serde::rfc3339::option")]
            maybe: Option<time::OffsetDateTime>,
        }
        "#,
    )])
    .generate()
    .unwrap();
    let warnings: Vec<String> = generated.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(
        warnings[0].contains("field `bare`: `time::OffsetDateTime` is not written as RFC 3339"),
        "{warnings:#?}"
    );
    assert_eq!(
        field(&generated.model, "maybe").ty,
        Ty::Option {
            inner: boxed(string(Some("date-time")))
        }
    );
}

#[test]
fn a_saga_is_scanned_with_its_steps_and_its_messages_as_consumers_and_producers() {
    let model = model(
        r#"
        use event_runtime::{Command, DomainEvent, saga};

        #[derive(DomainEvent)]
        #[event(context = "checkout")]
        struct Requested { #[event(key)] order: String }
        #[derive(Command)]
        #[command(context = "inventory")]
        struct Hold { #[command(key)] order: String }
        #[derive(Command)]
        #[command(context = "inventory")]
        struct Release { #[command(key)] order: String }
        #[derive(DomainEvent)]
        #[event(context = "inventory")]
        struct Held { #[event(key)] order: String }
        #[derive(Command)]
        #[command(context = "payments")]
        struct Charge { #[command(key)] order: String }
        #[derive(DomainEvent)]
        #[event(context = "payments")]
        struct Charged { #[event(key)] order: String }
        #[derive(DomainEvent)]
        #[event(context = "payments")]
        struct Declined { #[event(key)] order: String }

        struct Checkout { order: String }

        /// Holds, then charges.
        #[saga(key = order)]
        impl Checkout {
            #[start]
            fn requested(event: &Requested) -> Self { Checkout { order: event.order.clone() } }

            #[step(reply = Held, fault = none, timeout = "5s", compensate = release)]
            fn hold(&self) -> Hold { Hold { order: self.order.clone() } }

            fn release(&self) -> Release { Release { order: self.order.clone() } }

            #[step(pivot, reply = Charged, fault = Declined, timeout = "1m")]
            fn charge(&self) -> Charge { Charge { order: self.order.clone() } }
        }
        "#,
    );
    assert_eq!(model.sagas.len(), 1);
    let saga = &model.sagas[0];
    assert_eq!(
        (saga.name.as_str(), saga.group.as_str(), saga.key.as_str()),
        ("checkout", "saga.checkout", "order")
    );
    assert_eq!(saga.doc.as_deref(), Some("Holds, then charges."));
    assert_eq!(saga.starts[0].messages[0].name, "checkout.requested");
    let steps: Vec<(&str, crate::model::StepKind, &str, u64)> = saga
        .steps
        .iter()
        .map(|s| {
            (
                s.name.as_str(),
                s.kind,
                s.command.messages[0].name.as_str(),
                s.timeout_ms,
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            (
                "hold",
                crate::model::StepKind::Compensatable,
                "inventory.hold",
                5_000
            ),
            (
                "charge",
                crate::model::StepKind::Pivot,
                "payments.charge",
                60_000
            ),
        ]
    );
    let release = saga.steps[0].compensation.as_ref().unwrap();
    assert_eq!(release.function, "release");
    assert_eq!(
        release.command.as_ref().unwrap().messages[0].name,
        "inventory.release"
    );
    // The saga's group consumes the start, the replies and the fault, and sends the commands.
    let mut consumed: Vec<&str> = model
        .handlers
        .iter()
        .filter(|h| h.group == "saga.checkout")
        .flat_map(|h| h.messages.iter().map(|m| m.name.as_str()))
        .collect();
    consumed.sort_unstable();
    assert_eq!(
        consumed,
        [
            "checkout.requested",
            "inventory.held",
            "payments.charged",
            "payments.declined"
        ]
    );
    let sent: Vec<(&str, &str)> = model
        .producers
        .iter()
        .filter(|p| p.group.as_deref() == Some("saga.checkout"))
        .map(|p| (p.message.name.as_str(), p.function.as_str()))
        .collect();
    assert_eq!(
        sent,
        [
            ("inventory.hold", "Checkout::hold"),
            ("inventory.release", "Checkout::release"),
            ("payments.charge", "Checkout::charge"),
        ]
    );
    // Drawn: the pivot thick, the fault of the pivot unwinding into the release.
    let chart = crate::catalog::mermaid::saga_flowchart(saga);
    assert!(chart.contains("s1 -.->|\"Declined\"| u0"), "{chart}");
    assert!(chart.contains("s0 -.->|\"timeout 5s\"| u0"), "{chart}");
    assert!(
        chart.contains("s1 -.->|\"timeout 1m: again\"| s1"),
        "{chart}"
    );
    assert!(chart.contains("u0 --> failed"), "{chart}");
    assert!(chart.contains("class s1 pivot"), "{chart}");
}

#[test]
fn a_saga_whose_structure_is_wrong_fails_the_build_at_its_line() {
    let err = TempCrate::new(&[(
        "src/lib.rs",
        r#"use event_runtime::saga;
struct Checkout;

#[saga(key = order)]
impl Checkout {
    #[step(reply = Held, timeout = "5s", compensate = none)]
    fn hold(&self) -> Hold { Hold }
}
"#,
    )])
    .generate()
    .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("has no start message"), "{text}");
    assert!(text.contains("src/lib.rs:5:"), "{text}");
}
