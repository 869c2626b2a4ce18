//! `evt schema check`: the build's compatibility gate on a crate's sources, writing nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct TempCrate(PathBuf);

impl TempCrate {
    fn new(name: &str) -> TempCrate {
        let dir = std::env::temp_dir().join(format!("evt-schema-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("src")).unwrap();
        TempCrate(dir)
    }

    fn source(&self, code: &str) {
        std::fs::write(self.0.join("src/lib.rs"), code).unwrap();
    }
}

impl Drop for TempCrate {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn evt(args: &[&str], crate_dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_evt"))
        .args(args)
        .arg("--crate")
        .arg(crate_dir)
        .env_remove("EVT_DB")
        .output()
        .unwrap()
}

const V1: &str = r#"
use event_runtime::DomainEvent;
use serde::{Deserialize, Serialize};

#[derive(DomainEvent, Serialize, Deserialize)]
#[event(context = "orders", name = "orders.order_placed", version = 1)]
pub struct OrderPlaced {
    #[event(key)]
    pub order_id: String,
    pub total_cents: u64,
}
"#;

// v1 changed in place: `total_cents` became a string.
const V1_CHANGED: &str = r#"
use event_runtime::DomainEvent;
use serde::{Deserialize, Serialize};

#[derive(DomainEvent, Serialize, Deserialize)]
#[event(context = "orders", name = "orders.order_placed", version = 1)]
pub struct OrderPlaced {
    #[event(key)]
    pub order_id: String,
    pub total_cents: String,
}
"#;

// v2 adds a required field without a default, with no upcaster: not BACKWARD compatible.
const V2_BREAKING: &str = r#"
#[derive(DomainEvent, Serialize, Deserialize)]
#[event(context = "orders", name = "orders.order_placed", version = 2)]
pub struct OrderPlacedV2 {
    #[event(key)]
    pub order_id: String,
    pub total_cents: u64,
    pub channel: String,
}
"#;

#[test]
fn schema_check_passes_new_versions_writes_nothing_and_fails_on_breaking_changes() {
    let krate = TempCrate::new("check");
    krate.source(V1);
    let registry = krate.0.join("schemas");

    // Nothing published yet: v1 is new, the check passes and writes nothing.
    let out = evt(&["schema", "check"], &krate.0);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("new: orders.order_placed v1"), "{stdout}");
    assert!(!registry.exists(), "schema check must not write");

    // Publish v1 the way a build does.
    let out_dir = krate.0.join("out");
    event_build::Config::new()
        .crate_dir(&krate.0)
        .out_dir(&out_dir)
        .registry_dir("schemas")
        .emit()
        .unwrap();
    assert!(registry.join("registry.lock").exists());
    let lock = std::fs::read_to_string(registry.join("registry.lock")).unwrap();

    // Unchanged: ok, also as JSON.
    let out = evt(&["--json", "schema", "check"], &krate.0);
    assert_eq!(out.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["ok"], true);
    assert_eq!(json["unchanged"][0], "orders.order_placed v1");

    // A breaking v2: exit 1 with the violation paragraph.
    krate.source(&format!("{V1}{V2_BREAKING}"));
    let out = evt(&["schema", "check", "--registry", "schemas"], &krate.0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for needle in [
        "orders.order_placed v1 → v2",
        "BACKWARD",
        "/properties/channel",
        "Fix:",
    ] {
        assert!(stderr.contains(needle), "`{needle}` missing in:\n{stderr}");
    }
    let out = evt(&["--json", "schema", "check"], &krate.0);
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["ok"], false);
    assert_eq!(
        json["problems"][0]["violation"]["pointer"],
        "/properties/channel"
    );

    // A published version changed in place: exit 1 as well.
    krate.source(V1_CHANGED);
    let out = evt(&["schema", "check"], &krate.0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("published schemas never change"),
        "{stderr}"
    );
    assert!(stderr.contains("/properties/total_cents"), "{stderr}");

    // Nothing was written by any check.
    assert_eq!(
        std::fs::read_to_string(registry.join("registry.lock")).unwrap(),
        lock
    );
    assert!(
        !registry
            .join("orders/orders.order_placed/v2.schema.json")
            .exists()
    );
}
