//! Every output for the fixture crate `tests/fixtures/shop`, compared byte for byte with the
//! committed files under `tests/golden/`.
//!
//! After a deliberate change to the output, rewrite them with
//!
//! ```sh
//! EVENT_BUILD_BLESS=1 cargo test -p event-build --test golden
//! ```
//!
//! and read the diff before committing it: it is the change every user's schemas will see.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every file under `dir`, relative, with `/` separators.
fn files_under(dir: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let relative = path
                    .strip_prefix(root)
                    .expect("under root")
                    .to_string_lossy()
                    .replace('\\', "/");
                let content = std::fs::read_to_string(&path).expect("golden file is UTF-8");
                out.insert(relative, content);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

#[test]
fn shop_outputs_match_the_golden_files() {
    let generated = event_build::Config::new()
        .crate_dir(manifest_dir().join("tests/fixtures/shop"))
        .generate()
        .expect("the fixture scans");
    let golden_dir = manifest_dir().join("tests/golden");

    if std::env::var_os("EVENT_BUILD_BLESS").is_some() {
        let _ = std::fs::remove_dir_all(&golden_dir);
        for (relative, content) in &generated.files {
            let path = golden_dir.join(relative);
            std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
            std::fs::write(&path, content).expect("write golden file");
        }
        eprintln!(
            "EVENT_BUILD_BLESS: wrote {} golden files",
            generated.files.len()
        );
        return;
    }

    let golden = files_under(&golden_dir);
    let mut problems = Vec::new();
    for (relative, content) in &generated.files {
        match golden.get(relative) {
            None => problems.push(format!("{relative}: generated but has no golden file")),
            Some(expected) if expected != content => {
                let line = expected
                    .lines()
                    .zip(content.lines())
                    .position(|(a, b)| a != b)
                    .map_or_else(
                        || expected.lines().count().min(content.lines().count()) + 1,
                        |i| i + 1,
                    );
                problems.push(format!(
                    "{relative}: differs from line {line}\n  golden:    {}\n  generated: {}",
                    expected.lines().nth(line - 1).unwrap_or("<end of file>"),
                    content.lines().nth(line - 1).unwrap_or("<end of file>")
                ));
            }
            Some(_) => {}
        }
    }
    for relative in golden.keys() {
        if !generated.files.contains_key(relative) {
            problems.push(format!("{relative}: golden file no longer generated"));
        }
    }
    assert!(
        problems.is_empty(),
        "{} golden file(s) differ (rerun with EVENT_BUILD_BLESS=1 to accept the new output):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn the_fixture_scans_without_warnings_other_than_the_expected_ones() {
    let generated = event_build::Config::new()
        .crate_dir(manifest_dir().join("tests/fixtures/shop"))
        .generate()
        .expect("the fixture scans");
    let warnings: Vec<String> = generated.warnings.iter().map(ToString::to_string).collect();
    assert!(warnings.is_empty(), "{warnings:#?}");
    let read: Vec<String> = generated
        .files_read
        .iter()
        .map(|p| {
            p.strip_prefix(manifest_dir().join("tests/fixtures/shop"))
                .expect("inside the fixture")
                .to_string_lossy()
                .replace('\\', "/")
        })
        .collect();
    assert_eq!(
        read,
        [
            "src/lib.rs",
            "src/checkout.rs",
            "src/common.rs",
            "src/orders.rs",
            "src/orders/audit.rs",
            "src/payments/mod.rs",
            "src/shipping.rs",
            "src/telemetry.rs",
            "src/stock/inventory.rs",
        ]
    );
}
