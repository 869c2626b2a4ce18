//! The quickstart (the README's first command) runs to the end on the embedded engine and, with
//! only `EVT_NATS_URL` set, on NATS JetStream: the flow, the dead letters with their reasons,
//! the redrive, the checkout saga's four endings (with their compensations) and the causal
//! trees of two flows all show up. And two instances of its consumers (`quickstart serve`) share
//! the shop's work, each step of each order done once by one of them.

use std::process::Command;

fn run(nats_url: Option<&str>) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_quickstart"));
    command.env_remove("EVT_NATS_URL");
    if let Some(url) = nats_url {
        command.env("EVT_NATS_URL", url);
    }
    let output = command.output().expect("the quickstart starts");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "quickstart failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn assert_the_story(stdout: &str) {
    for line in [
        "shipping   booked parcel for o-1001",
        "shipping   booked freight for o-1002",
        "malformed: binary-mode CloudEvents message has no `specversion` attribute",
        "permanent: order o-1003: product `gift-card` is not in the catalog",
        "inventory  reserved 1 line(s) for o-1003 (redriven)",
        "resolved  dead-lettered by consumer:inventory@shop-1 -> redrive-requested by quickstart -> resolved by consumer:inventory@shop-1",
        "saga checkout c-2001 completed after 4 transitions",
        "saga checkout c-2002 failed after 3 transitions: card declined: card reported stolen",
        "saga checkout c-2003 failed after 3 transitions: step `charge_card` timed out after 3s",
        "saga checkout c-2004 failed after 4 transitions: shipping refused: no carrier delivers to Atlantis",
        "payments   refunded  39.90 EUR for c-2004",
        // The charge timed out: it may have gone through, so it is compensated too.
        "payments   refunded  31.00 EUR for c-2003",
        "inventory  released the stock of c-2002",
        "inventory  released the stock of c-2003",
        "inventory  released the stock of c-2004",
        // The causal trees it prints at the end (`Running::trace`).
        "== the causal tree of order o-1003",
        "   ├─ [inventory] resolved (letter ",
        "== the causal tree of checkout c-2004",
        "├─ saga checkout c-2004 v1: running",
        "├─ saga checkout c-2004 v4: failed",
        "payments.refund_card v1",
    ] {
        assert!(stdout.contains(line), "missing `{line}` in:\n{stdout}");
    }
}

// One test: both runs use the same SQLite file under target/, so they must not overlap.
#[test]
fn the_quickstart_runs_on_the_embedded_engine_and_on_nats() {
    let embedded = run(None);
    assert!(
        embedded.contains("engine: embedded SQLite log"),
        "{embedded}"
    );
    assert_the_story(&embedded);

    match std::env::var("EVT_NATS_URL") {
        Ok(url) => {
            let nats = run(Some(&url));
            assert!(nats.contains("engine: NATS JetStream"), "{nats}");
            assert_the_story(&nats);
        }
        Err(_) if std::env::var_os("CI").is_some() => {
            panic!("CI is set but EVT_NATS_URL is not: scripts/test.sh starts a nats-server");
        }
        Err(_) => {
            eprintln!("skipped the NATS run: EVT_NATS_URL is not set (scripts/test.sh sets it)")
        }
    }
}

mod common;

/// `quickstart serve <args>` on the SQLite file `db`, or on NATS at `nats_url` under `prefix`.
fn serving(
    db: &std::path::Path,
    prefix: &str,
    nats_url: Option<&str>,
    args: &[&str],
) -> common::Example {
    let mut command = Command::new(env!("CARGO_BIN_EXE_quickstart"));
    command
        .arg("serve")
        .args(args)
        .env("EVT_QUICKSTART_DB", db)
        .env("EVT_QUICKSTART_PREFIX", prefix)
        .env_remove("EVT_NATS_URL");
    if let Some(url) = nats_url {
        command.env("EVT_NATS_URL", url);
    }
    common::Example::start(&mut command)
}

/// Two instances serve the shop: `shop-1` places 10 orders and 10 checkouts over 4 s, `shop-2`
/// joins 0.5 s later. Every step of every order and checkout (a choreography handler, or a
/// saga's participant) runs on one of them only (a handler retried on its instance prints
/// twice there: not counted), every order goes through all its steps, both instances do some,
/// and every checkout ends, its shipment booked if it completed (the saga's 3 to 5 s step
/// timeouts may fail one on a loaded machine, with its compensations).
fn two_instances_share_the_shop(nats_url: Option<&str>) {
    let dir = std::env::temp_dir().join(format!(
        "evt-quickstart-serve-{}-{}",
        std::process::id(),
        nats_url.is_some()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("shop.db");
    let prefix = format!("qsserve{}", std::process::id());
    let one = serving(
        &db,
        &prefix,
        nats_url,
        &["shop-1", "--orders", "10", "--for", "8"],
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    let two = serving(&db, &prefix, nats_url, &["shop-2", "--for", "8"]);
    let outputs = [("shop-1", one.output()), ("shop-2", two.output())];
    let steps = [
        "payments   captured  12.40 EUR for o-",
        "inventory  reserved 1 line(s) for o-",
        "shipping   booked parcel for o-",
        "inventory  held 1 line(s) for c-",
        "payments   charged  12.40 EUR for c-",
        "shipping   booked parcel for c-",
    ];
    let mut done: std::collections::BTreeMap<(usize, String), std::collections::BTreeSet<&str>> =
        Default::default();
    for (instance, output) in &outputs {
        for line in output.lines() {
            let Some(rest) = line.strip_prefix(&format!("[{instance} ")) else {
                continue;
            };
            for (step, text) in steps.iter().enumerate() {
                if let Some(at) = rest.find(text) {
                    let id = rest[at + text.len()..].split_whitespace().next().unwrap();
                    done.entry((step, id.to_owned()))
                        .or_default()
                        .insert(instance);
                }
            }
        }
        assert!(
            output.contains(&format!("[{instance}] owns payments: orders[")),
            "{output}"
        );
    }
    let twice: Vec<_> = done.iter().filter(|(_, by)| by.len() > 1).collect();
    assert!(twice.is_empty(), "done on both instances: {twice:?}");
    // Every order goes through all its steps, and every checkout through its first; the later
    // steps of a checkout run for those that completed (a step timing out on a loaded machine
    // fails the checkout, and what was done is compensated).
    let ended = outputs[0]
        .1
        .lines()
        .find_map(|line| line.strip_prefix("[shop-1] 10 of its 10 checkouts ended: "))
        .unwrap_or_else(|| panic!("not every checkout ended: {}", outputs[0].1));
    let completed: usize = ended
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{ended}"));
    let count = |step: usize| done.keys().filter(|(s, _)| *s == step).count();
    for (step, text) in steps.iter().enumerate().take(4) {
        assert_eq!(count(step), 10, "`{text}` for every order: {done:?}");
    }
    assert!(
        (completed..=10).contains(&count(4)),
        "`{}` for each completed checkout ({completed}) at least: {done:?}",
        steps[4]
    );
    assert_eq!(
        count(5),
        completed,
        "`{}` for each completed checkout: {done:?}",
        steps[5]
    );
    for instance in ["shop-1", "shop-2"] {
        assert!(
            done.values().any(|by| by.contains(instance)),
            "{instance} did nothing: {outputs:?}"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn two_instances_share_the_shop_on_the_embedded_engine() {
    two_instances_share_the_shop(None);
}

#[test]
fn two_instances_share_the_shop_on_nats() {
    match std::env::var("EVT_NATS_URL") {
        Ok(url) => two_instances_share_the_shop(Some(&url)),
        Err(_) if std::env::var_os("CI").is_some() => {
            panic!("CI is set but EVT_NATS_URL is not: scripts/test.sh starts a nats-server");
        }
        Err(_) => eprintln!("skipped: EVT_NATS_URL is not set (scripts/test.sh sets it)"),
    }
}
