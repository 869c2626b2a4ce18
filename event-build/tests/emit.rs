//! Writing: only what changed, stale files removed, the same tree in `schema_dir`; warnings for
//! unresolved types; protobuf numbers kept stable through `FieldNumbers`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use event_build::numbers::{FieldNumbers, Owner};
use event_build::{Config, ErrorKind};

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "event-build-{name}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn write(&self, relative: &str, content: &str) {
        let path = self.0.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/shop")
}

fn modified(path: &Path) -> std::time::SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

#[test]
fn files_are_written_only_when_they_change_and_stale_ones_go() {
    let out = TempDir::new("out");
    let mirror = TempDir::new("mirror");
    let mut config = Config::new();
    config
        .crate_dir(fixture())
        .out_dir(&out.0)
        .schema_dir(&mirror.0);

    let first = config.emit().unwrap();
    let files = first.generated.files.len();
    assert_eq!(first.written.len(), 2 * files, "out dir and schema dir");
    assert!(first.unchanged.is_empty() && first.removed.is_empty());
    let model = out.0.join("model.json");
    assert_eq!(
        std::fs::read_to_string(&model).unwrap(),
        first.generated.files["model.json"]
    );
    assert_eq!(
        std::fs::read(&model).unwrap(),
        std::fs::read(mirror.0.join("model.json")).unwrap()
    );
    let before = modified(&model);

    // A schema of a message that no longer exists, and a file that is not ours.
    out.write("schemas/gone/gone.event/v1.schema.json", "{}");
    out.write("schemas/gone/gone.event/v1.proto", "");
    out.write("schemas/README.md", "kept");

    std::thread::sleep(std::time::Duration::from_millis(20));
    let second = config.emit().unwrap();
    assert!(second.written.is_empty(), "{:?}", second.written);
    assert_eq!(second.unchanged.len(), 2 * files);
    assert_eq!(second.removed.len(), 2, "{:?}", second.removed);
    assert!(!out.0.join("schemas/gone").exists());
    assert!(out.0.join("schemas/README.md").exists());
    assert_eq!(
        modified(&model),
        before,
        "an unchanged file is not rewritten"
    );

    // A changed file is rewritten.
    out.write("model.json", "{}");
    let third = config.emit().unwrap();
    assert_eq!(third.written, [model]);
}

#[test]
fn emit_needs_an_output_directory_and_sources() {
    if std::env::var_os("OUT_DIR").is_none() {
        let err = Config::new().crate_dir(fixture()).emit().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NoOutDir);
    }
    let empty = TempDir::new("empty");
    let err = Config::new()
        .crate_dir(&empty.0)
        .out_dir(empty.0.join("out"))
        .emit()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoSources);
    assert_eq!(err.path(), Some(empty.0.as_path()));
    let err = Config::new()
        .crate_dir(&empty.0)
        .sources(["src/missing.rs"])
        .generate()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
    assert!(std::error::Error::source(&err).is_some());
}

#[test]
fn an_unresolvable_type_is_a_warning_naming_the_event_the_field_and_the_type() {
    let krate = TempDir::new("warn");
    krate.write(
        "src/lib.rs",
        r#"
use event_runtime::DomainEvent;

#[derive(DomainEvent)]
#[event(context = "billing")]
pub struct InvoiceIssued {
    pub invoice_id: String,
    pub amount: rust_decimal::Decimal,
}
"#,
    );
    let out = krate.0.join("out");
    let report = Config::new()
        .crate_dir(&krate.0)
        .out_dir(&out)
        .emit()
        .unwrap();
    let warnings: Vec<String> = report
        .generated
        .warnings
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        warnings,
        [
            "src/lib.rs:8:9: event `billing.invoice_issued` v1 (InvoiceIssued), field `amount`: cannot resolve type `rust_decimal::Decimal`; the schema accepts any value there. Declare its wire shape with #[event(schema = \"{\\\"type\\\": \\\"string\\\"}\")] on the field, or with Config::type_schema(\"<type path>\", ..) in build.rs"
        ]
    );
    // The schema still comes out, with "any value" for the field.
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("schemas/billing/billing.invoice_issued/v1.schema.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        schema["properties"]["amount"],
        serde_json::json!({"x-proto-field": 2})
    );
}

#[test]
fn field_numbers_learned_from_committed_schemas_stay_and_are_never_reused() {
    let krate = TempDir::new("numbers");
    krate.write(
        "src/lib.rs",
        r#"
#[derive(DomainEvent)]
#[event(context = "orders", version = 1)]
struct OrderPlaced { order_id: String, note: String, total: u64, line: Line }

struct Line { sku: String, qty: u32 }
"#,
    );
    let first = Config::new().crate_dir(&krate.0).generate().unwrap();
    let committed: serde_json::Value =
        serde_json::from_str(&first.files["schemas/orders/orders.order_placed/v1.schema.json"])
            .unwrap();

    // `note` is removed, `currency` is added before `total`, `Line` gains `price` first.
    krate.write(
        "src/lib.rs",
        r#"
#[derive(DomainEvent)]
#[event(context = "orders", version = 1)]
struct OrderPlaced { order_id: String, currency: String, total: u64, line: Line }

struct Line { price: u64, sku: String, qty: u32 }
"#,
    );
    let mut numbers = FieldNumbers::new();
    numbers.learn_schema(&committed).unwrap();
    let again = Config::new()
        .crate_dir(&krate.0)
        .field_numbers(numbers.clone())
        .generate()
        .unwrap();
    let proto = &again.files["schemas/orders/orders.order_placed/v1.proto"];
    for line in [
        "string order_id = 1;",
        "string currency = 5;",
        "uint64 total = 3;",
        ".events.orders.OrderPlacedV1.Line line = 4;",
        "reserved 2;",
        "uint64 price = 3;",
        "string sku = 1;",
        "uint32 qty = 2;",
    ] {
        assert!(proto.contains(line), "{line} in\n{proto}");
    }
    let schema: serde_json::Value =
        serde_json::from_str(&again.files["schemas/orders/orders.order_placed/v1.schema.json"])
            .unwrap();
    assert_eq!(schema["x-proto-reserved"], serde_json::json!([2]));

    // Learning the new schema keeps number 2 retired for good.
    let mut numbers = FieldNumbers::new();
    numbers.learn_schema(&schema).unwrap();
    let owner = Owner::Message {
        name: "orders.order_placed".into(),
        version: 1,
    };
    assert!(numbers.get(&owner, "").unwrap().retired.contains(&2));
    krate.write(
        "src/lib.rs",
        r#"
#[derive(DomainEvent)]
#[event(context = "orders", version = 1)]
struct OrderPlaced { order_id: String, currency: String, total: u64, line: Line, #[event(tag = 2)] note: String }
struct Line { price: u64, sku: String, qty: u32 }
"#,
    );
    let err = Config::new()
        .crate_dir(&krate.0)
        .field_numbers(numbers)
        .generate()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
    assert!(
        err.diagnostics()[0]
            .message
            .contains("field `note` takes number 2, which is reserved"),
        "{err}"
    );
}

#[test]
fn with_a_registry_a_new_version_keeps_the_published_numbers_and_never_reuses_a_retired_one() {
    let krate = TempDir::new("registry-numbers");
    let out = TempDir::new("registry-numbers-out");
    let v1 = r#"
#[derive(DomainEvent)]
#[event(context = "orders", name = "orders.order_placed", version = 1)]
struct OrderPlacedV1 { order_id: String, note: String, total: u64 }
"#;
    krate.write("src/lib.rs", v1);
    let mut config = Config::new();
    config
        .crate_dir(&krate.0)
        .out_dir(&out.0)
        .registry_dir("schemas");
    let first = config.emit().unwrap();
    assert_eq!(first.registry.unwrap().published.len(), 1);

    // v2 drops `note` (2), declares `total` first and adds `currency`: `total` keeps 3,
    // `currency` takes 4, never the retired 2. v1, re-emitted, keeps its numbers.
    krate.write(
        "src/lib.rs",
        &format!(
            r#"{v1}
#[derive(DomainEvent)]
#[event(context = "orders", name = "orders.order_placed", version = 2, compatibility = "none")]
struct OrderPlaced {{ total: u64, order_id: String, currency: String }}
"#
        ),
    );
    let second = config.emit().unwrap();
    let gate = second.registry.unwrap();
    assert_eq!(gate.published.len(), 1, "{gate:?}");
    assert_eq!(gate.unchanged.len(), 1, "{gate:?}");
    let v2: serde_json::Value = serde_json::from_str(
        &second.generated.files["schemas/orders/orders.order_placed/v2.schema.json"],
    )
    .unwrap();
    assert_eq!(v2["x-event"]["compatibility"], "NONE");
    assert_eq!(v2["properties"]["order_id"]["x-proto-field"], 1);
    assert_eq!(v2["properties"]["total"]["x-proto-field"], 3);
    assert_eq!(v2["properties"]["currency"]["x-proto-field"], 4);
    assert_eq!(v2["x-proto-reserved"], serde_json::json!([2]));
    assert!(
        second.generated.files["schemas/orders/orders.order_placed/v2.proto"]
            .contains("reserved 2;")
    );
}
