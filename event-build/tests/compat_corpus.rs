//! The compatibility corpus: every file in `tests/compat/` is one schema change with the
//! verdict expected under each of the seven modes.
//!
//! A case file holds:
//!
//! - `description`: the change in one sentence;
//! - `versions`: two or three JSON schemas, oldest first; the last one is checked against the
//!   others (three versions exercise the transitive modes);
//! - `protos` (optional): the `.proto` text of each version, checked with buf's rules;
//! - `proto_category` (optional): `WIRE` instead of the default `WIRE_JSON`;
//! - `expect`: `"compatible"` or `"incompatible"` for every mode, by its Confluent name;
//! - `rules` (optional): per mode, rule names that must be among the violations;
//! - `pointer` (optional): a JSON pointer that some violation must name.
//!
//! On a mismatch the test prints the case, the mode and every violation found.

use std::fmt::Write as _;
use std::path::Path;

use event_build::compat::{CompatibilityMode, ProtoCategory, SchemaVersion, Violation, check_with};
use serde_json::Value;

struct Case {
    name: String,
    json: Value,
}

fn load_cases() -> Vec<Case> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compat");
    let mut cases: Vec<Case> = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("readable case");
            let json = serde_json::from_str(&text)
                .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
            let name = path
                .file_stem()
                .expect("file name")
                .to_string_lossy()
                .into_owned();
            Case { name, json }
        })
        .collect();
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    cases
}

fn run(case: &Case, mode: CompatibilityMode) -> Vec<Violation> {
    let versions = case.json["versions"]
        .as_array()
        .expect("`versions` is an array");
    let protos: Vec<Option<&str>> = match case.json.get("protos") {
        Some(Value::Array(protos)) => protos.iter().map(Value::as_str).collect(),
        _ => vec![None; versions.len()],
    };
    assert_eq!(
        protos.len(),
        versions.len(),
        "{}: one proto per version",
        case.name
    );
    let category = match case.json.get("proto_category").and_then(Value::as_str) {
        Some("WIRE") => ProtoCategory::Wire,
        Some("WIRE_JSON") | None => ProtoCategory::WireJson,
        Some(other) => panic!("{}: unknown proto_category {other}", case.name),
    };
    let all: Vec<SchemaVersion<'_>> = versions
        .iter()
        .zip(&protos)
        .enumerate()
        .map(|(i, (schema, proto))| SchemaVersion {
            version: u32::try_from(i + 1).expect("few versions"),
            schema,
            proto: *proto,
        })
        .collect();
    let (candidate, published) = all.split_last().expect("at least two versions");
    check_with("corpus.event", mode, category, candidate, published)
        .unwrap_or_else(|err| panic!("{}: {err}", case.name))
}

#[test]
fn corpus_verdicts_per_mode() {
    let cases = load_cases();
    assert!(
        cases.len() >= 40,
        "the corpus has {} cases, expected at least 40",
        cases.len()
    );
    let mut failures = String::new();
    let mut three_version_cases = 0;
    for case in &cases {
        let versions = case.json["versions"].as_array().map_or(0, Vec::len);
        assert!(
            (2..=3).contains(&versions),
            "{}: two or three versions",
            case.name
        );
        if versions == 3 {
            three_version_cases += 1;
        }
        let expect = case.json["expect"]
            .as_object()
            .unwrap_or_else(|| panic!("{}: `expect` is an object", case.name));
        assert_eq!(
            expect.len(),
            7,
            "{}: `expect` names all seven modes",
            case.name
        );
        let mut pointer_found = false;
        let mut any_violation = false;
        for mode in CompatibilityMode::ALL {
            let expected = match expect.get(mode.as_str()).and_then(Value::as_str) {
                Some("compatible") => true,
                Some("incompatible") => false,
                other => panic!("{}: expect.{mode} is {other:?}", case.name),
            };
            let violations = run(case, mode);
            any_violation |= !violations.is_empty();
            if let Some(pointer) = case.json.get("pointer").and_then(Value::as_str) {
                pointer_found |= violations.iter().any(|v| v.pointer == pointer);
            }
            let mut problem = String::new();
            if violations.is_empty() != expected {
                let _ = write!(
                    problem,
                    "expected {} under {mode}, found {} violation(s)",
                    if expected {
                        "compatible"
                    } else {
                        "incompatible"
                    },
                    violations.len()
                );
            }
            if let Some(rules) = case
                .json
                .get("rules")
                .and_then(|r| r.get(mode.as_str()))
                .and_then(Value::as_array)
            {
                for rule in rules.iter().filter_map(Value::as_str) {
                    if !violations.iter().any(|v| v.rule.name() == rule) {
                        let _ = write!(
                            problem,
                            "{}rule {rule} missing under {mode}",
                            if problem.is_empty() { "" } else { "; " }
                        );
                    }
                }
            }
            if !problem.is_empty() {
                let _ = writeln!(
                    failures,
                    "\n== {} ({}): {problem}",
                    case.name,
                    case.json["description"].as_str().unwrap_or("")
                );
                for violation in &violations {
                    let _ = writeln!(failures, "   - {violation}");
                }
            }
        }
        if let Some(pointer) = case.json.get("pointer").and_then(Value::as_str)
            && any_violation
            && !pointer_found
        {
            let _ = writeln!(failures, "\n== {}: no violation names {pointer}", case.name);
        }
    }
    assert!(
        three_version_cases >= 3,
        "the transitive modes need three-version cases"
    );
    assert!(failures.is_empty(), "corpus mismatches:{failures}");
}

#[test]
fn every_violation_reads_as_one_paragraph() {
    for case in load_cases() {
        for violation in run(&case, CompatibilityMode::FullTransitive) {
            let text = violation.to_string();
            assert!(!text.contains('\n'), "{}: {text}", case.name);
            assert!(text.starts_with("corpus.event v"), "{}: {text}", case.name);
            assert!(
                text.contains(violation.rule.name()),
                "{}: {text}",
                case.name
            );
            assert!(text.contains("Fix: "), "{}: {text}", case.name);
            assert!(text.contains("#[event("), "{}: {text}", case.name);
        }
    }
}
