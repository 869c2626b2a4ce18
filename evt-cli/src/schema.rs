//! `evt schema check`: the schema registry gate of `event-build`, without writing anything.

use std::path::PathBuf;

use event_build::registry::Problem;
use serde_json::{Value, json};

use crate::cli::SchemaCheckArgs;
use crate::db::Error;

/// Scans the crate, renders its schemas and checks them against the registry. Exit code 0 when
/// the registry accepts them (new versions are listed, not written), 1 with every violation.
pub(crate) fn check(args: &SchemaCheckArgs, json: bool) -> Result<(), Error> {
    let crate_dir = args.crate_dir.clone().unwrap_or_else(|| PathBuf::from("."));
    let registry_dir = args
        .registry
        .clone()
        .unwrap_or_else(|| PathBuf::from("schemas"));
    let mut config = event_build::Config::new();
    config.crate_dir(&crate_dir).registry_dir(&registry_dir);
    match config.check() {
        Ok(report) => {
            let gate = report.registry.unwrap_or_default();
            let label = |list: &[event_build::registry::EventVersion]| -> Vec<String> {
                list.iter().map(ToString::to_string).collect()
            };
            if json {
                let document = json!({
                    "ok": true,
                    "registry": crate_dir.join(&registry_dir),
                    "new_versions": label(&gate.published),
                    "refreshed": label(&gate.refreshed),
                    "unchanged": label(&gate.unchanged),
                    "waived": gate.waived.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "warnings": gate.warnings,
                    "would_write": gate.changed_files,
                    "problems": [],
                });
                println!("{document:#}");
            } else {
                println!(
                    "schema registry {}: ok ({} unchanged, {} new, {} refreshed)",
                    crate_dir.join(&registry_dir).display(),
                    gate.unchanged.len(),
                    gate.published.len(),
                    gate.refreshed.len()
                );
                for version in &gate.published {
                    println!("  new: {version} (the build publishes it)");
                }
                for warning in &gate.warnings {
                    println!("  warning: {warning}");
                }
            }
            Ok(())
        }
        Err(err) => {
            if json {
                let problems: Vec<Value> = err
                    .registry()
                    .map(|r| r.problems().iter().map(problem_json).collect())
                    .unwrap_or_else(|| {
                        vec![json!({ "kind": "build", "message": err.to_string() })]
                    });
                let document = json!({ "ok": false, "problems": problems });
                println!("{document:#}");
                let count = problems.len();
                Err(Error::msg(format!(
                    "the schema registry refused the crate: {count} problem(s)"
                )))
            } else {
                Err(Error::msg(err.to_string()))
            }
        }
    }
}

fn problem_json(problem: &Problem) -> Value {
    let violation = problem.violation.as_ref().map(|v| {
        json!({
            "old_version": v.old_version,
            "new_version": v.new_version,
            "pointer": v.pointer,
            "rule": v.rule.to_string(),
            "mode": v.mode.as_str(),
            "fix": v.fix,
        })
    });
    json!({
        "kind": problem.kind.to_string(),
        "event": problem.event,
        "version": problem.version,
        "message": problem.message,
        "violation": violation,
    })
}
