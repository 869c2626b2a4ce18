//! The compatibility gate end to end: a real crate whose `build.rs` runs
//! `Config::new().registry_dir("schemas").run()`, built with `cargo build` three times. The
//! first build publishes v1, a compatible v2 (optional field, upcaster) is published next, and a
//! breaking v3 fails the build with a message that says why.
//!
//! The builds share `target/build-gate-test` so that event-runtime and event-build are compiled
//! once, not on every run.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace holds event-build")
        .to_path_buf()
}

struct Crate(PathBuf);

impl Crate {
    fn new() -> Crate {
        let dir = std::env::temp_dir().join(format!("event-build-gate-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("src")).unwrap();
        let root = workspace();
        let manifest = format!(
            r#"[package]
name = "gate-fixture"
version = "0.1.0"
edition = "2024"
publish = false

# Not part of the surrounding workspace.
[workspace]

[dependencies]
event-runtime = {{ path = "{runtime}", default-features = false, features = ["derive"] }}
serde = {{ version = "1", features = ["derive"] }}

[build-dependencies]
event-build = {{ path = "{build}" }}
"#,
            runtime = root.join("event-runtime").display(),
            build = root.join("event-build").display(),
        );
        std::fs::write(dir.join("Cargo.toml"), manifest).unwrap();
        // The workspace's lock: the same versions, so the shared target dir is reused.
        std::fs::copy(root.join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
        std::fs::write(
            dir.join("build.rs"),
            r#"fn main() {
    if let Err(e) = event_build::Config::new().registry_dir("schemas").run() {
        eprintln!("{e}");
        std::process::exit(1);
    }
}
"#,
        )
        .unwrap();
        Crate(dir)
    }

    fn source(&self, code: &str) {
        let text = format!(
            "#![allow(dead_code)]\nuse event_runtime::{{Command, DomainEvent}};\nuse serde::{{Deserialize, Serialize}};\n{code}"
        );
        std::fs::write(self.0.join("src/lib.rs"), text).unwrap();
    }

    fn build(&self) -> Output {
        let target = workspace().join("target/build-gate-test");
        let run = |offline: bool| {
            let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
            cargo
                .arg("build")
                .arg("--quiet")
                .current_dir(&self.0)
                .env("CARGO_TARGET_DIR", &target)
                .env_remove("RUSTFLAGS")
                .env_remove("CARGO_ENCODED_RUSTFLAGS");
            if offline {
                cargo.arg("--offline");
            }
            cargo.output().expect("cargo runs")
        };
        let output = run(true);
        let stderr = String::from_utf8_lossy(&output.stderr);
        // `--offline` fails only when a dependency is not in the local cache yet.
        if !output.status.success() && stderr.contains("offline") {
            return run(false);
        }
        output
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.0.join(relative)
    }
}

impl Drop for Crate {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const V1: &str = r#"
/// A customer placed an order.
#[derive(DomainEvent, Serialize, Deserialize)]
#[event(context = "orders", name = "orders.order_placed", version = 1)]
pub struct OrderPlaced {
    #[event(key)]
    pub order_id: String,
    pub total_cents: u64,
}
"#;

const V2: &str = r#"
/// A customer placed an order.
#[derive(DomainEvent, Serialize, Deserialize)]
#[event(context = "orders", name = "orders.order_placed", version = 1)]
pub struct OrderPlacedV1 {
    #[event(key)]
    pub order_id: String,
    pub total_cents: u64,
}

/// A customer placed an order, maybe with a coupon.
#[derive(DomainEvent, Serialize, Deserialize)]
#[event(context = "orders", name = "orders.order_placed", version = 2, upcast_from = OrderPlacedV1)]
pub struct OrderPlaced {
    #[event(key)]
    pub order_id: String,
    pub total_cents: u64,
    #[serde(default)]
    pub coupon: Option<String>,
}

impl From<OrderPlacedV1> for OrderPlaced {
    fn from(v1: OrderPlacedV1) -> Self {
        OrderPlaced { order_id: v1.order_id, total_cents: v1.total_cents, coupon: None }
    }
}
"#;

// v3 adds a required field without a default and no upcaster: consumers of v3 cannot read v2.
const V3: &str = r#"
#[derive(DomainEvent, Serialize, Deserialize)]
#[event(context = "orders", name = "orders.order_placed", version = 3, compatibility = "backward")]
pub struct OrderPlacedV3 {
    #[event(key)]
    pub order_id: String,
    pub total_cents: u64,
    #[serde(default)]
    pub coupon: Option<String>,
    pub channel: String,
}
"#;

#[test]
fn cargo_build_publishes_compatible_versions_and_fails_on_a_breaking_one() {
    let krate = Crate::new();

    // (a) The first build creates the registry.
    krate.source(V1);
    let output = krate.build();
    assert!(
        output.status.success(),
        "first build: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lock = krate.path("schemas/registry.lock");
    assert!(lock.exists());
    let v1 = krate.path("schemas/orders/orders.order_placed/v1.schema.json");
    let v1_text = std::fs::read_to_string(&v1).unwrap();
    assert!(
        v1_text.contains(r#""compatibility": "BACKWARD""#),
        "{v1_text}"
    );
    assert!(
        krate
            .path("schemas/orders/orders.order_placed/v1.proto")
            .exists()
    );

    // (b) An optional field in v2, which upcasts from v1: published next to v1, which stays.
    krate.source(V2);
    let output = krate.build();
    assert!(
        output.status.success(),
        "second build: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let v2 =
        std::fs::read_to_string(krate.path("schemas/orders/orders.order_placed/v2.schema.json"))
            .unwrap();
    assert!(v2.contains(r#""upcast_from": 1"#), "{v2}");
    // The kept fields keep their numbers, the new one takes the next.
    let v2: serde_json::Value = serde_json::from_str(&v2).unwrap();
    assert_eq!(v2["properties"]["total_cents"]["x-proto-field"], 2);
    assert_eq!(v2["properties"]["coupon"]["x-proto-field"], 3);
    // v1 stays as published; only its annotations follow the code (the type is now
    // `OrderPlacedV1`).
    let v1_json: serde_json::Value = serde_json::from_str(&v1_text).unwrap();
    let v1_now: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&v1).unwrap()).unwrap();
    assert_eq!(v1_now["properties"], v1_json["properties"]);
    assert_eq!(v1_now["title"], "OrderPlacedV1");
    let lock_text = std::fs::read_to_string(&lock).unwrap();
    assert!(lock_text.contains(r#""version": 2"#), "{lock_text}");

    // (c) A required field without a default in v3 under BACKWARD: the build fails and says why.
    krate.source(&format!("{V2}{V3}"));
    let output = krate.build();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "third build should fail: {stderr}"
    );
    for needle in [
        "orders.order_placed",
        "v2",
        "v3",
        "/properties/channel",
        "BACKWARD",
        "Fix:",
    ] {
        assert!(stderr.contains(needle), "`{needle}` missing in:\n{stderr}");
    }
    // Nothing was published.
    assert!(
        !krate
            .path("schemas/orders/orders.order_placed/v3.schema.json")
            .exists()
    );
    assert_eq!(std::fs::read_to_string(&lock).unwrap(), lock_text);
}

const FORWARD_V1: &str = r#"
#[derive(DomainEvent, Serialize, Deserialize)]
#[event(context = "orders", name = "orders.order_packed", version = 1, compatibility = "forward")]
pub struct OrderPackedV1 {
    #[event(key)]
    pub order_id: String,
    pub boxes: u32,
    #[serde(default)]
    pub gift_note: Option<String>,
    #[serde(default)]
    pub gift_wrap: Option<bool>,
}
"#;

// v2 drops the optional field: the documented FORWARD rule allows it (v1 readers of v2 data find
// no `gift_note`, which they may).
const FORWARD_V2: &str = r#"
#[derive(DomainEvent, Serialize, Deserialize)]
#[event(context = "orders", name = "orders.order_packed", version = 2, compatibility = "forward")]
pub struct OrderPackedV2 {
    #[event(key)]
    pub order_id: String,
    pub boxes: u32,
    #[serde(default)]
    pub gift_wrap: Option<bool>,
}
"#;

// v3 drops the other optional field: the name v2 reserved must stay reserved, beside the new one.
const FORWARD_V3: &str = r#"
#[derive(DomainEvent, Serialize, Deserialize)]
#[event(context = "orders", name = "orders.order_packed", version = 3, compatibility = "forward")]
pub struct OrderPacked {
    #[event(key)]
    pub order_id: String,
    pub boxes: u32,
}
"#;

/// FORWARD mode removes an optional field through a real build: the emitted `.proto` reserves
/// the field's number and its name (protobuf's JSON mapping reads fields by name), so buf's
/// `FIELD_NO_DELETE_UNLESS_NAME_RESERVED` passes, and the next version keeps both reservations
/// (`RESERVED_MESSAGE_NO_DELETE`).
#[test]
fn forward_mode_removes_an_optional_field() {
    let krate = Crate::new();
    let dir = "schemas/orders/orders.order_packed";
    let build = |source: &str, what: &str| {
        krate.source(source);
        let output = krate.build();
        assert!(
            output.status.success(),
            "{what}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    build(FORWARD_V1, "v1");
    build(&format!("{FORWARD_V1}{FORWARD_V2}"), "v2 drops gift_note");
    let v2 = std::fs::read_to_string(krate.path(&format!("{dir}/v2.proto"))).unwrap();
    assert!(v2.contains("reserved 3;"), "{v2}");
    assert!(v2.contains("reserved \"gift_note\";"), "{v2}");
    let v2_schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(krate.path(&format!("{dir}/v2.schema.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(
        v2_schema["x-proto-reserved-names"],
        serde_json::json!(["gift_note"])
    );

    build(
        &format!("{FORWARD_V1}{FORWARD_V2}{FORWARD_V3}"),
        "v3 drops gift_wrap",
    );
    let v3 = std::fs::read_to_string(krate.path(&format!("{dir}/v3.proto"))).unwrap();
    assert!(v3.contains("reserved 3, 4;"), "{v3}");
    assert!(
        v3.contains("reserved \"gift_note\", \"gift_wrap\";"),
        "{v3}"
    );
}

const COMMAND_V1: &str = r#"
/// Ship an order.
#[derive(Command, Serialize, Deserialize)]
#[command(context = "shipping", version = 1)]
pub struct ShipOrderV1 {
    #[command(key)]
    pub order_id: String,
}
"#;

// v2 adds an optional field and reads v1 through an upcaster: compatible.
const COMMAND_V2: &str = r#"
/// Ship an order, maybe express.
#[derive(Command, Serialize, Deserialize)]
#[command(context = "shipping", version = 2, upcast_from = ShipOrderV1)]
pub struct ShipOrderV2 {
    #[command(key)]
    pub order_id: String,
    #[serde(default)]
    pub express: bool,
}

impl From<ShipOrderV1> for ShipOrderV2 {
    fn from(v1: ShipOrderV1) -> Self {
        ShipOrderV2 { order_id: v1.order_id, express: false }
    }
}
"#;

// v3 requires a field that v2 senders do not send, without an upcaster: the target context
// could no longer read commands from senders still on v2.
const COMMAND_V3: &str = r#"
#[derive(Command, Serialize, Deserialize)]
#[command(context = "shipping", version = 3)]
pub struct ShipOrder {
    #[command(key)]
    pub order_id: String,
    #[serde(default)]
    pub express: bool,
    pub warehouse: String,
}
"#;

/// Commands are under the same gate as events: versions are published to the registry, a
/// compatible version with an upcaster passes, a breaking one fails the build and says why.
#[test]
fn commands_are_versioned_and_gated() {
    let krate = Crate::new();
    let dir = "schemas/shipping/shipping.ship_order";
    let build = |source: &str| {
        krate.source(source);
        krate.build()
    };
    let output = build(COMMAND_V1);
    assert!(
        output.status.success(),
        "v1: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let v1 = std::fs::read_to_string(krate.path(&format!("{dir}/v1.schema.json"))).unwrap();
    assert!(v1.contains(r#""kind": "command""#), "{v1}");
    assert!(v1.contains(r#""compatibility": "BACKWARD""#), "{v1}");

    let output = build(&format!("{COMMAND_V1}{COMMAND_V2}"));
    assert!(
        output.status.success(),
        "v2: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(krate.path(&format!("{dir}/v2.proto")).exists());
    let lock_text = std::fs::read_to_string(krate.path("schemas/registry.lock")).unwrap();
    assert!(lock_text.contains("shipping.ship_order"), "{lock_text}");

    let output = build(&format!("{COMMAND_V1}{COMMAND_V2}{COMMAND_V3}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "v3 should fail: {stderr}");
    for needle in [
        "shipping.ship_order",
        "v3",
        "/properties/warehouse",
        "BACKWARD",
    ] {
        assert!(stderr.contains(needle), "`{needle}` missing in:\n{stderr}");
    }
    assert!(!krate.path(&format!("{dir}/v3.schema.json")).exists());
}
