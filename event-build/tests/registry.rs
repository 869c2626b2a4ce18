//! The schema registry: publishing, the published-never-changes rule, compatibility, version
//! gaps, sunsets and protobuf field-number retirement.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use event_build::compat::CompatibilityMode;
use event_build::registry::{
    Candidate, CheckOptions, Deprecation, ErrorKind, LOCK_FILE, ROOT_SCOPE, SchemaRegistry,
    SunsetPolicy,
};
use event_model::attr::Date;
use serde_json::{Value, json};

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "event-build-registry-{}-{name}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const EVENT: &str = "orders.order_placed";

fn date(text: &str) -> Date {
    Date::parse(text).expect("valid date")
}

fn options() -> CheckOptions {
    CheckOptions::new(date("2025-06-01"))
}

/// A schema of the emitted shape; `fields` are `(name, schema, number, required)`.
fn schema(version: u32, title: &str, fields: &[(&str, Value, u32, bool)]) -> Value {
    let mut properties = serde_json::Map::new();
    let mut required = Vec::new();
    for (name, field, number, is_required) in fields {
        let mut field = field.clone();
        field["description"] = json!(format!("The {name}."));
        field["x-proto-field"] = json!(number);
        properties.insert((*name).to_owned(), field);
        if *is_required {
            required.push(json!(name));
        }
    }
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": format!("urn:event:{EVENT}:v{version}"),
        "title": title,
        "description": "A customer placed an order.",
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
        "x-event": {
            "name": EVENT, "version": version, "context": "orders", "kind": "event",
            "key": ["order_id"], "dedupe": [], "deprecated": null, "sla": null
        }
    })
}

fn string() -> Value {
    json!({"type": "string"})
}

fn optional_string() -> Value {
    json!({"anyOf": [{"type": "string"}, {"type": "null"}]})
}

fn u64_field() -> Value {
    json!({"type": "integer", "format": "uint64", "minimum": 0})
}

fn v1() -> Candidate {
    let schema = schema(
        1,
        "OrderPlacedV1",
        &[
            ("order_id", string(), 1, true),
            ("total", u64_field(), 2, true),
        ],
    );
    Candidate::new(EVENT, "orders", 1, schema)
}

/// v1 plus an optional `coupon`: BACKWARD compatible.
fn v2_compatible() -> Candidate {
    let schema = schema(
        2,
        "OrderPlaced",
        &[
            ("order_id", string(), 1, true),
            ("total", u64_field(), 2, true),
            ("coupon", optional_string(), 3, false),
        ],
    );
    Candidate::new(EVENT, "orders", 2, schema)
}

/// v1 plus a required `coupon` without default: not BACKWARD compatible.
fn v2_incompatible() -> Candidate {
    let schema = schema(
        2,
        "OrderPlaced",
        &[
            ("order_id", string(), 1, true),
            ("total", u64_field(), 2, true),
            ("coupon", string(), 3, true),
        ],
    );
    Candidate::new(EVENT, "orders", 2, schema)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

#[test]
fn publishes_new_versions_and_writes_only_on_change() {
    let dir = TempDir::new("publish");
    let mut registry = SchemaRegistry::open(dir.path()).unwrap();
    assert_eq!(registry.events().count(), 0);

    let report = registry.check_and_update(&[v1()], &options()).unwrap();
    assert_eq!(report.published.len(), 1);
    assert_eq!(report.published[0].to_string(), "orders.order_placed v1");
    let schema_path = dir.path().join("orders/orders.order_placed/v1.schema.json");
    assert!(schema_path.exists());
    assert!(report.changed_files.contains(&schema_path));
    assert!(report.changed_files.contains(&dir.path().join(LOCK_FILE)));

    // The same candidates again: nothing to write.
    let report = registry.check_and_update(&[v1()], &options()).unwrap();
    assert!(report.is_up_to_date(), "{:?}", report.changed_files);
    assert_eq!(report.unchanged.len(), 1);

    // A compatible v2 is published next to v1; the lock is reread from disk.
    let mut registry = SchemaRegistry::open(dir.path()).unwrap();
    let report = registry
        .check_and_update(&[v1(), v2_compatible()], &options())
        .unwrap();
    assert_eq!(
        report
            .published
            .iter()
            .map(|p| p.version)
            .collect::<Vec<_>>(),
        [2]
    );
    assert_eq!(registry.versions(EVENT), [1, 2]);
    assert_eq!(registry.mode(EVENT), Some(CompatibilityMode::Backward));
    let stored = registry.schema(EVENT, 2).unwrap().expect("v2 stored");
    assert_eq!(stored["properties"]["coupon"]["x-proto-field"], 3);
}

#[test]
fn lock_is_sorted_and_human_diffable() {
    let dir = TempDir::new("lock");
    let mut registry = SchemaRegistry::open(dir.path()).unwrap();
    registry
        .check_and_update(&[v1(), v2_compatible()], &options())
        .unwrap();
    let lock = read(&dir.path().join(LOCK_FILE));
    let parsed: Value = serde_json::from_str(&lock).unwrap();
    assert_eq!(parsed["format"], 1);
    let event = &parsed["events"][EVENT];
    assert_eq!(event["context"], "orders");
    assert_eq!(event["compatibility"], "BACKWARD");
    assert_eq!(event["versions"][0]["version"], 1);
    assert!(
        event["versions"][1]["schema"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert_eq!(event["field_numbers"][ROOT_SCOPE]["assigned"]["coupon"], 3);
    // One value per line, keys sorted.
    assert!(lock.contains("\n            \"coupon\": 3,\n"), "{lock}");
    let context = lock.find("\"compatibility\"").unwrap();
    let versions = lock.find("\"versions\"").unwrap();
    assert!(context < versions);
    assert!(lock.ends_with("}\n"));
}

#[test]
fn rejects_a_changed_published_version() {
    let dir = TempDir::new("changed");
    let mut registry = SchemaRegistry::open(dir.path()).unwrap();
    registry.check_and_update(&[v1()], &options()).unwrap();
    let lock_before = read(&dir.path().join(LOCK_FILE));

    let changed = schema(
        1,
        "OrderPlacedV1",
        &[
            ("order_id", string(), 1, true),
            ("total", string(), 2, true),
        ],
    );
    let err = registry
        .check_and_update(&[Candidate::new(EVENT, "orders", 1, changed)], &options())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PublishedChanged);
    let text = err.to_string();
    assert!(
        text.contains(
            "published schemas never change: orders.order_placed v1 changed at /properties/total"
        ),
        "{text}"
    );
    assert!(text.contains("bump the version"), "{text}");
    assert!(text.contains("#[event(version = 2"), "{text}");
    assert_eq!(
        read(&dir.path().join(LOCK_FILE)),
        lock_before,
        "nothing is written on failure"
    );
}

#[test]
fn description_and_type_name_changes_refresh_a_published_version() {
    let dir = TempDir::new("refresh");
    let mut registry = SchemaRegistry::open(dir.path()).unwrap();
    registry.check_and_update(&[v1()], &options()).unwrap();
    let lock_before = read(&dir.path().join(LOCK_FILE));

    let mut reworded = v1();
    reworded.schema["description"] = json!("Someone ordered something.");
    reworded.schema["title"] = json!("LegacyOrderPlaced");
    reworded.schema["x-event"]["deprecated"] =
        json!({"since": "2025-01-01", "sunset": null, "note": "use v2"});
    let report = registry.check_and_update(&[reworded], &options()).unwrap();
    assert_eq!(report.refreshed.len(), 1);
    let path = dir.path().join("orders/orders.order_placed/v1.schema.json");
    assert_eq!(report.changed_files, std::slice::from_ref(&path));
    assert!(read(&path).contains("Someone ordered something."));
    assert_eq!(
        read(&dir.path().join(LOCK_FILE)),
        lock_before,
        "the contract digest is unchanged"
    );
}

#[test]
fn rejects_an_incompatible_change_with_the_full_message() {
    let dir = TempDir::new("incompatible");
    let mut registry = SchemaRegistry::open(dir.path()).unwrap();
    registry.check_and_update(&[v1()], &options()).unwrap();

    let err = registry
        .check_and_update(&[v1(), v2_incompatible()], &options())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Incompatible);
    assert_eq!(err.problems().len(), 1);
    let text = err.to_string();
    for needle in [
        "orders.order_placed",
        "v1 → v2",
        "BACKWARD",
        "/properties/coupon",
        "REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL",
        "Fix: add a default to `coupon` (make it Option<_> or #[serde(default)])",
        "#[event(version = 2, upcast_from = OrderPlacedV1)]",
        "#[event(compatibility = ",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in: {text}");
    }
    let violation = err.problems()[0].violation.as_ref().expect("the violation");
    assert_eq!((violation.old_version, violation.new_version), (1, 2));
    assert_eq!(registry.versions(EVENT), [1], "v2 was not published");
    assert!(
        !dir.path()
            .join("orders/orders.order_placed/v2.schema.json")
            .exists()
    );
}

#[test]
fn accepts_compatible_changes_per_mode_and_upcasters() {
    let dir = TempDir::new("modes");
    let mut registry = SchemaRegistry::open(dir.path()).unwrap();
    registry.check_and_update(&[v1()], &options()).unwrap();

    // FULL forbids adding a field to a closed object (old consumers reject it)...
    let full = v2_compatible().with_mode(CompatibilityMode::Full);
    let err = registry
        .check_and_update(&[v1(), full], &options())
        .unwrap_err();
    assert!(err.to_string().contains("FULL"), "{err}");
    assert!(
        err.to_string()
            .contains("PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL"),
        "{err}"
    );

    // ... an upcaster from v1 covers the backward half of an incompatible change ...
    let upcast = v2_incompatible().with_upcast_from(1);
    let report = registry
        .check_and_update(
            &[v1(), upcast],
            &CheckOptions {
                write: false,
                ..options()
            },
        )
        .unwrap();
    assert_eq!(report.waived.len(), 1);
    assert_eq!(report.waived[0].pointer, "/properties/coupon");
    assert!(!report.is_up_to_date());
    assert_eq!(
        registry.versions(EVENT),
        [1],
        "check-only runs write nothing"
    );
    assert!(
        !dir.path()
            .join("orders/orders.order_placed/v2.schema.json")
            .exists()
    );

    // ... and NONE accepts anything, recording the new mode.
    let none = v2_incompatible().with_mode(CompatibilityMode::None);
    let report = registry
        .check_and_update(&[v1(), none], &options())
        .unwrap();
    assert_eq!(report.published.len(), 1);
    assert_eq!(
        report.mode_changes,
        [(
            EVENT.to_owned(),
            CompatibilityMode::Backward,
            CompatibilityMode::None
        )]
    );
    assert_eq!(registry.mode(EVENT), Some(CompatibilityMode::None));
}

#[test]
fn transitive_modes_check_every_published_version() {
    let dir = TempDir::new("transitive");
    let mut registry = SchemaRegistry::open(dir.path()).unwrap();
    let with_default = |version: u32, default: bool| {
        let mut currency = string();
        if default {
            currency["default"] = json!("EUR");
        }
        let fields = [
            ("order_id", string(), 1, true),
            ("total", u64_field(), 2, true),
            ("currency", currency, 3, true),
        ];
        Candidate::new(
            EVENT,
            "orders",
            version,
            schema(version, "OrderPlaced", &fields),
        )
    };
    registry
        .check_and_update(&[v1(), with_default(2, true)], &options())
        .unwrap();
    // v3 drops the default: fine against v2, not against v1.
    let ok = registry.check_and_update(
        &[v1(), with_default(2, true), with_default(3, false)],
        &CheckOptions {
            write: false,
            ..options()
        },
    );
    assert!(ok.is_ok(), "{}", ok.unwrap_err());
    let transitive = with_default(3, false).with_mode(CompatibilityMode::BackwardTransitive);
    let err = registry
        .check_and_update(&[v1(), with_default(2, true), transitive], &options())
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("v1 → v3 breaks BACKWARD_TRANSITIVE"),
        "{text}"
    );
    assert!(text.contains("/properties/currency"), "{text}");
}

#[test]
fn detects_version_gaps() {
    let dir = TempDir::new("gap");
    let mut registry = SchemaRegistry::open(dir.path()).unwrap();
    registry.check_and_update(&[v1()], &options()).unwrap();

    let mut v3 = v2_compatible();
    v3.version = 3;
    let err = registry
        .check_and_update(&[v1(), v3], &options())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::VersionGap);
    let text = err.to_string();
    assert!(text.contains("orders.order_placed v3 skips v2"), "{text}");
    assert!(text.contains("#[event(version = 2)]"), "{text}");

    // The first version recorded may be any: an event adopted late.
    let dir = TempDir::new("adopt");
    let mut registry = SchemaRegistry::open(dir.path()).unwrap();
    let mut adopted = v2_compatible();
    adopted.version = 4;
    registry.check_and_update(&[adopted], &options()).unwrap();
    assert_eq!(registry.versions(EVENT), [4]);
    // ... but history is not extended backwards.
    let err = registry.check_and_update(&[v1()], &options()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::VersionGap);
    assert!(err.to_string().contains("only grows at the end"), "{err}");
}

#[test]
fn enforces_sunsets_or_warns() {
    let dir = TempDir::new("sunset");
    let mut registry = SchemaRegistry::open(dir.path()).unwrap();
    let deprecated = v1().with_deprecation(Deprecation {
        since: Some(date("2025-01-01")),
        sunset: Some(date("2025-03-31")),
        note: Some("use orders.order_placed v2".into()),
    });

    // Before and on the sunset day: fine.
    let on_the_day = CheckOptions::new(date("2025-03-31"));
    registry
        .check_and_update(std::slice::from_ref(&deprecated), &on_the_day)
        .unwrap();

    // After it, the newest version is still produced: error...
    let err = registry
        .check_and_update(std::slice::from_ref(&deprecated), &options())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Sunset);
    let text = err.to_string();
    assert!(
        text.contains(
            "orders.order_placed v1 passed its sunset date 2025-03-31 (today is 2025-06-01)"
        ),
        "{text}"
    );
    assert!(text.contains("use orders.order_placed v2"), "{text}");

    // ... or a warning.
    let warn = CheckOptions {
        sunset: SunsetPolicy::Warn,
        ..options()
    };
    let report = registry
        .check_and_update(std::slice::from_ref(&deprecated), &warn)
        .unwrap();
    assert_eq!(report.warnings.len(), 1);
    assert!(report.warnings[0].contains("sunset"));

    // Once v2 exists, v1 is only kept to upcast from: not produced.
    let report = registry
        .check_and_update(&[deprecated.clone(), v2_compatible()], &options())
        .unwrap();
    assert!(report.warnings.is_empty());
    // Unless the build says it is.
    let err = registry
        .check_and_update(
            &[deprecated.with_produced(true), v2_compatible()],
            &options(),
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Sunset);
}

#[test]
fn retires_field_numbers_of_removed_fields() {
    let dir = TempDir::new("retire");
    let mut registry = SchemaRegistry::open(dir.path()).unwrap();
    registry
        .check_and_update(&[v1(), v2_compatible()], &options())
        .unwrap();
    let numbers = registry.field_numbers_in(EVENT, ROOT_SCOPE);
    assert_eq!(numbers.assigned.get("coupon"), Some(&3));
    assert!(numbers.retired.is_empty());

    // v3 drops `coupon` (FORWARD: removing an optional field is allowed).
    let v3_fields = [
        ("order_id", string(), 1, true),
        ("total", u64_field(), 2, true),
    ];
    let v3 = Candidate::new(EVENT, "orders", 3, schema(3, "OrderPlaced", &v3_fields))
        .with_mode(CompatibilityMode::Forward);
    let report = registry
        .check_and_update(&[v1(), v2_compatible(), v3.clone()], &options())
        .unwrap();
    assert_eq!(report.retired.len(), 1);
    assert_eq!(
        (
            report.retired[0].path.as_str(),
            report.retired[0].number,
            report.retired[0].version
        ),
        ("coupon", 3, 3)
    );
    let numbers = registry.field_numbers_in(EVENT, ROOT_SCOPE);
    assert_eq!(numbers.assigned.get("coupon"), None);
    assert_eq!(numbers.retired.iter().copied().collect::<Vec<_>>(), [3]);
    assert_eq!(numbers.next_free(1), 4);
    let reopened = SchemaRegistry::open(dir.path()).unwrap();
    assert_eq!(reopened.field_numbers(EVENT)[ROOT_SCOPE], numbers);

    // v4 brings `coupon` back on its old number: refused, the number is retired.
    let reused = [
        ("order_id", string(), 1, true),
        ("total", u64_field(), 2, true),
        ("coupon", optional_string(), 3, false),
    ];
    let v4 = Candidate::new(EVENT, "orders", 4, schema(4, "OrderPlaced", &reused))
        .with_mode(CompatibilityMode::None);
    let err = registry
        .check_and_update(&[v3.clone(), v4], &options())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::FieldNumber);
    let text = err.to_string();
    assert!(
        text.contains(
            "orders.order_placed v4: field `coupon` uses protobuf number 3, which was retired"
        ),
        "{text}"
    );
    assert!(text.contains("FIELD_NUMBER_RETIRED"), "{text}");
    assert!(text.contains("such as 4"), "{text}");

    // A number that moves is refused too.
    let moved = [
        ("order_id", string(), 1, true),
        ("total", u64_field(), 7, true),
    ];
    let v4 = Candidate::new(EVENT, "orders", 4, schema(4, "OrderPlaced", &moved))
        .with_mode(CompatibilityMode::None);
    let err = registry.check_and_update(&[v4], &options()).unwrap_err();
    assert!(err.to_string().contains("FIELD_NUMBER_CHANGED"), "{err}");

    // With a fresh number it is a new field.
    let fresh = [
        ("order_id", string(), 1, true),
        ("total", u64_field(), 2, true),
        ("coupon", optional_string(), 4, false),
    ];
    let v4 = Candidate::new(EVENT, "orders", 4, schema(4, "OrderPlaced", &fresh))
        .with_mode(CompatibilityMode::Backward);
    registry.check_and_update(&[v4], &options()).unwrap();
    let numbers = registry.field_numbers_in(EVENT, ROOT_SCOPE);
    assert_eq!(numbers.assigned.get("coupon"), Some(&4));
    assert!(numbers.retired.contains(&3));
}

#[test]
fn stores_protos_and_checks_them() {
    let dir = TempDir::new("proto");
    let mut registry = SchemaRegistry::open(dir.path()).unwrap();
    let proto_v1 = "syntax = \"proto3\";\npackage orders.order_placed.v1;\n\n// A customer placed an order.\nmessage OrderPlacedV1 {\n  string order_id = 1;\n  uint64 total = 2;\n}\n";
    registry
        .check_and_update(&[v1().with_proto(proto_v1)], &options())
        .unwrap();
    assert_eq!(
        read(&dir.path().join("orders/orders.order_placed/v1.proto")),
        proto_v1
    );

    // Comments and the message name are not part of the contract.
    let renamed = proto_v1
        .replace("// A customer placed an order.", "// Reworded.")
        .replace("OrderPlacedV1", "LegacyOrder");
    let report = registry
        .check_and_update(&[v1().with_proto(renamed)], &options())
        .unwrap();
    assert_eq!(report.refreshed.len(), 1);

    // A type change is.
    let changed = proto_v1.replace("uint64 total", "string total");
    let err = registry
        .check_and_update(&[v1().with_proto(changed)], &options())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PublishedChanged);
    assert!(
        err.to_string().contains("v1.proto at /properties/total"),
        "{err}"
    );

    // v2 deletes `total` from the proto without reserving it: buf WIRE_JSON refuses.
    let proto_v2 = "syntax = \"proto3\";\npackage orders.order_placed.v2;\nmessage OrderPlaced {\n  string order_id = 1;\n}\n";
    let v2 = Candidate::new(
        EVENT,
        "orders",
        2,
        schema(2, "OrderPlaced", &[("order_id", string(), 1, true)]),
    )
    .with_proto(proto_v2)
    .with_mode(CompatibilityMode::None);
    registry
        .check_and_update(std::slice::from_ref(&v2), &options())
        .expect("NONE skips every check");
    let dir2 = TempDir::new("proto2");
    let mut registry = SchemaRegistry::open(dir2.path()).unwrap();
    registry
        .check_and_update(&[v1().with_proto(proto_v1)], &options())
        .unwrap();
    let err = registry
        .check_and_update(&[v2.with_mode(CompatibilityMode::Forward)], &options())
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("FIELD_NO_DELETE_UNLESS_NUMBER_RESERVED"),
        "{text}"
    );
    assert!(text.contains("reserved"), "{text}");

    // A .proto that does not parse is an invalid candidate.
    let broken = v1().with_proto("message {");
    let err = registry
        .check_and_update(&[broken], &options())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidCandidate);
}

#[test]
fn candidates_from_schemas_and_context_moves() {
    let mut schema = v1().schema;
    schema["x-event"]["deprecated"] =
        json!({"since": "2025-01-01", "sunset": "2025-02-01", "note": "use v2"});
    schema["x-event"]["compatibility"] = json!("full_transitive");
    let candidate = Candidate::from_schema(schema, None).unwrap();
    assert_eq!(
        (
            candidate.event.as_str(),
            candidate.context.as_str(),
            candidate.version
        ),
        (EVENT, "orders", 1)
    );
    assert_eq!(candidate.mode, CompatibilityMode::FullTransitive);
    assert_eq!(
        candidate.deprecation.unwrap().sunset,
        Some(date("2025-02-01"))
    );
    assert_eq!(
        Candidate::from_schema(json!({"type": "object"}), None)
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidCandidate
    );

    let dir = TempDir::new("context");
    let mut registry = SchemaRegistry::open(dir.path()).unwrap();
    registry.check_and_update(&[v1()], &options()).unwrap();
    let mut moved = v1();
    moved.context = "billing".into();
    let err = registry.check_and_update(&[moved], &options()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ContextChanged);
    assert!(err.to_string().contains("#[event(name = "), "{err}");
}

#[test]
fn reports_every_problem_at_once() {
    let dir = TempDir::new("many");
    let mut registry = SchemaRegistry::open(dir.path()).unwrap();
    registry.check_and_update(&[v1()], &options()).unwrap();
    let other = Candidate::new("orders.order_shipped", "orders", 1, json!("not a schema"));
    let err = registry
        .check_and_update(&[v1(), v2_incompatible(), other], &options())
        .unwrap_err();
    assert_eq!(err.problems().len(), 2, "{err}");
    assert!(err.has(ErrorKind::Incompatible) && err.has(ErrorKind::InvalidCandidate));
    assert!(
        err.to_string()
            .starts_with("2 problems in the schema registry:"),
        "{err}"
    );
}

#[test]
fn upcasters_cover_protobuf_breaks_only_without_forward_promises() {
    let dir = TempDir::new("upcast-proto");
    let mut registry = SchemaRegistry::open(dir.path()).unwrap();
    let proto = |version: u32, total: &str| {
        format!(
            "syntax = \"proto3\";\npackage events.orders;\nmessage OrderPlacedV{version} {{\n  string order_id = 1;\n  {total} total = 2;\n}}\n"
        )
    };
    registry
        .check_and_update(&[v1().with_proto(proto(1, "uint64"))], &options())
        .unwrap();

    // v2 turns `total` into a string: a break in JSON and in protobuf.
    let fields = [
        ("order_id", string(), 1, true),
        ("total", string(), 2, true),
    ];
    let v2 = Candidate::new(EVENT, "orders", 2, schema(2, "OrderPlaced", &fields))
        .with_proto(proto(2, "string"));

    let err = registry
        .check_and_update(
            &[v1(), v2.clone()],
            &CheckOptions {
                write: false,
                ..options()
            },
        )
        .unwrap_err();
    assert!(err.has(ErrorKind::Incompatible));
    assert!(
        err.to_string().contains("FIELD_WIRE_JSON_COMPATIBLE_TYPE"),
        "{err}"
    );

    // With `upcast_from = OrderPlacedV1`, v2 consumers decode v1 events as v1: BACKWARD holds.
    let upcast = v2.clone().with_upcast_from(1);
    let report = registry
        .check_and_update(
            &[v1(), upcast.clone()],
            &CheckOptions {
                write: false,
                ..options()
            },
        )
        .unwrap();
    let mut waived: Vec<&str> = report.waived.iter().map(|v| v.rule.name()).collect();
    waived.sort_unstable();
    assert_eq!(waived, ["FIELD_WIRE_JSON_COMPATIBLE_TYPE", "TYPE_CHANGED"]);

    // FULL also promises v1 consumers the v2 events, which no upcaster helps with.
    let full = upcast.with_mode(CompatibilityMode::Full);
    let err = registry
        .check_and_update(&[v1(), full], &options())
        .unwrap_err();
    let rules: Vec<&str> = err
        .problems()
        .iter()
        .filter_map(|p| p.violation.as_ref())
        .map(|v| v.rule.name())
        .collect();
    assert!(rules.contains(&"FIELD_WIRE_JSON_COMPATIBLE_TYPE"), "{err}");
    assert!(rules.contains(&"TYPE_CHANGED"), "{err}");
    assert!(
        err.to_string()
            .contains("consumers still on v1 must read events written with v2"),
        "{err}"
    );
}

#[test]
fn keeps_one_checked_example_per_published_version() {
    let dir = TempDir::new("examples");
    let mut registry = SchemaRegistry::open(dir.path()).unwrap();
    let report = registry
        .check_and_update(&[v1(), v2_compatible()], &options())
        .unwrap();
    let v1_path = registry.example_path("orders", EVENT, 1);
    let v2_path = registry.example_path("orders", EVENT, 2);
    assert!(report.changed_files.contains(&v1_path));
    let v1_example: Value = serde_json::from_str(&read(&v1_path)).unwrap();
    assert_eq!(v1_example, json!({"order_id": "x", "total": 1}));
    let v2_example: Value = serde_json::from_str(&read(&v2_path)).unwrap();
    assert_eq!(v2_example["coupon"], "x");
    assert!(registry.files().contains(&v2_path));

    // A hand-written example that matches its schema is kept as written.
    std::fs::write(&v1_path, "{\"order_id\": \"o-1001\", \"total\": 4200}\n").unwrap();
    let report = registry
        .check_and_update(&[v1(), v2_compatible()], &options())
        .unwrap();
    assert!(report.is_up_to_date(), "{:?}", report.changed_files);
    assert!(read(&v1_path).contains("o-1001"));

    // One that does not is refused, with the place and the rule; nothing is written.
    std::fs::write(
        &v1_path,
        "{\"order_id\": \"o-1001\", \"total\": \"4200\"}\n",
    )
    .unwrap();
    let err = registry
        .check_and_update(&[v1(), v2_compatible()], &options())
        .unwrap_err();
    assert_eq!(err.problems().len(), 1, "{err}");
    assert_eq!(err.problems()[0].kind, ErrorKind::InvalidExample);
    let text = err.to_string();
    assert!(
        text.contains("/total: expected an integer, found \"4200\""),
        "{text}"
    );
    assert!(text.contains("v1.example.json"), "{text}");

    // A deleted example is generated again.
    std::fs::remove_file(&v1_path).unwrap();
    registry
        .check_and_update(&[v1(), v2_compatible()], &options())
        .unwrap();
    assert!(v1_path.exists());
}
