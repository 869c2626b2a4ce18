//! The quickstart (the README's first command) runs to the end on the embedded engine and, with
//! only `EVT_NATS_URL` set, on NATS JetStream: the flow, the dead letters with their reasons,
//! the redrive, the checkout saga's four endings (with their compensations) and the causal
//! trees of two flows all show up.

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
