//! The several-instances example: two processes on one SQLite file share the `billing` group's
//! partitions, and every order is billed by exactly one of them.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

mod common;

/// Instance `args[0]` of the example on the SQLite file `db`.
fn instance(db: &std::path::Path, args: &[&str]) -> common::Example {
    common::Example::start(
        Command::new(env!("CARGO_BIN_EXE_instances"))
            .args(args)
            .env("EVT_INSTANCES_DB", db)
            .env_remove("EVT_NATS_URL"),
    )
}

#[test]
fn two_processes_share_the_partitions_and_bill_each_order_once() {
    let dir = std::env::temp_dir().join(format!("evt-instances-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("instances.db");
    let one = instance(&db, &["one", "--publish", "150", "--for", "6"]);
    std::thread::sleep(Duration::from_millis(700));
    let two = instance(&db, &["two", "--for", "6"]);
    let outputs = [("one", one.output()), ("two", two.output())];
    let mut billed: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for (instance, output) in &outputs {
        for line in output.lines() {
            if let Some(order) = line.strip_prefix(&format!("[{instance}] billed ")) {
                billed.entry(order.to_owned()).or_default().push(instance);
            }
        }
        assert!(
            output.contains(&format!("[{instance}] owns partitions")),
            "{instance} printed no share:\n{output}"
        );
    }
    assert_eq!(billed.len(), 150, "every order billed");
    let twice: Vec<_> = billed.iter().filter(|(_, by)| by.len() > 1).collect();
    assert!(twice.is_empty(), "billed twice: {twice:?}");
    for instance in ["one", "two"] {
        let n = billed.values().filter(|by| by[0] == instance).count();
        assert!(n > 0, "{instance} billed nothing");
    }
    let _ = std::fs::remove_dir_all(dir);
}
