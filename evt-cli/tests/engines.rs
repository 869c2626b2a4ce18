//! `evt` against the engines and stores a team runs when it outgrows one machine: an app on NATS
//! JetStream with its stores in PostgreSQL, and an app on Kafka (tansu) with its stores in a
//! SQLite file. Each dead-letters one order; the CLI lists and shows it, reports lag and topics,
//! tails the log, and redrives the letter, which the running app resolves.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use event_conformance::fixture::unique_prefix;
use event_conformance::servers::{postgres_schema, server_url};
use event_kafka::{KafkaConfig, KafkaTransport};
use event_nats::{NatsConfig, NatsTransport};
use event_runtime::app::Stores;
use event_runtime::transport::Transport;
use event_runtime::transport::sqlite::SqliteTransport;
use event_runtime::{App, DomainEvent, Envelope, HandlerError, Running};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A customer placed an order.
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone)]
#[event(context = "shop")]
struct OrderPlaced {
    #[event(key)]
    order_id: String,
}

/// Runs `evt` with `args`; its JSON output, or a panic with stderr.
fn evt_json(args: &[&str]) -> Value {
    let out = evt(args);
    assert!(
        out.status.success(),
        "evt {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|err| {
        panic!(
            "evt {args:?} printed no JSON ({err}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn evt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_evt"))
        .args(args)
        .env_remove("EVT_DB")
        .env_remove("EVT_NATS")
        .env_remove("EVT_KAFKA")
        .env_remove("EVT_PREFIX")
        .env_remove("EVT_POSTGRES")
        .output()
        .expect("evt runs")
}

/// Group `billing` fails permanently for `o-bad` while `broken` is set.
async fn shop<T: Transport + Clone>(transport: T, stores: Stores) -> (Running<T>, Arc<AtomicBool>) {
    let broken = Arc::new(AtomicBool::new(true));
    let flag = broken.clone();
    let mut app = App::new(transport, stores);
    app.partitions(2).subscribe::<OrderPlaced, _>(
        "billing",
        move |event: Envelope<OrderPlaced>, _ctx: event_runtime::Context| {
            let fail = flag.load(Ordering::SeqCst) && event.data.order_id == "o-bad";
            async move {
                if fail {
                    return Err(HandlerError::permanent(std::io::Error::other(
                        "card declined",
                    )));
                }
                Ok(())
            }
        },
    );
    let running = app.start().await.unwrap();
    for order_id in ["o-1", "o-2", "o-bad"] {
        running
            .publisher()
            .publish(Envelope::event(OrderPlaced {
                order_id: order_id.into(),
            }))
            .await
            .unwrap();
    }
    assert!(running.wait_idle(Duration::from_secs(20)).await);
    (running, broken)
}

/// Lists, shows, lags, tails and redrives through `evt` with `target` (the engine and store
/// flags), while the app runs; the app resolves the redriven letter.
async fn operate(broken: &AtomicBool, target: &[&str], owner: Option<&str>) {
    let with = |args: &[&str]| -> Vec<String> {
        target.iter().chain(args).map(|s| (*s).to_owned()).collect()
    };
    let run = |args: &[&str]| {
        let args = with(args);
        evt_json(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };

    let letters = run(&["--json", "dlq", "list"]);
    let letters = letters["dead_letters"].as_array().expect("a list");
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["group"], "billing");
    let id = letters[0]["id"].as_u64().unwrap().to_string();
    let letter = run(&["--json", "dlq", "show", &id]);
    assert!(
        letter["error_chain"].to_string().contains("card declined"),
        "{letter}"
    );

    let topics = run(&["--json", "topics"]);
    assert!(topics.to_string().contains("\"shop\""), "{topics}");

    let lag = run(&["--json", "lag"]);
    let billing = lag["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["group"] == "billing")
        .unwrap_or_else(|| panic!("no billing group in {lag}"));
    assert_eq!(billing["lag"], 0, "{lag}");
    assert_eq!(billing["committed"], true, "{lag}");
    assert_eq!(billing["dlq_depth"], 1, "{lag}");
    let committed: u64 = lag["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["group"] == "billing" && p["topic"] == "shop")
        .map(|p| p["committed"].as_u64().unwrap())
        .sum();
    assert_eq!(committed, 3, "{lag}");
    // The instance consuming each partition, where instances share them through claims.
    let owners: Vec<&Value> = lag["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["group"] == "billing")
        .map(|p| &p["owner"])
        .collect();
    assert!(!owners.is_empty());
    let expected = owner.map_or(Value::Null, |o| Value::String(o.to_owned()));
    assert!(owners.iter().all(|o| **o == expected), "{lag}");

    let out = evt(&with(&[
        "tail",
        "--topic",
        "shop",
        "--from-beginning",
        "--limit",
        "3",
    ])
    .iter()
    .map(String::as_str)
    .collect::<Vec<_>>());
    let tail = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for order in ["o-1", "o-2", "o-bad"] {
        assert!(tail.contains(order), "`{order}` not tailed:\n{tail}");
    }

    // Replay requests for a group with no consumer wait; they are listed and cancelled.
    let queued = run(&["--json", "replay", "--group", "audit", "--topic", "shop"]);
    assert_eq!(queued["queued"], 3, "{queued}");
    let pending = run(&["--json", "requests", "list", "--group", "audit"]);
    let ids: Vec<u64> = pending["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids.len(), 3, "{pending}");
    // `lag` shows the group, which never committed, rather than leave it out.
    let lag = run(&["--json", "lag"]);
    let audit = lag["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["group"] == "audit")
        .unwrap_or_else(|| panic!("no audit group in {lag}"));
    assert_eq!(audit["committed"], false, "{lag}");
    assert_eq!(audit["lag"], Value::Null, "{lag}");
    let first = ids[0].to_string();
    let cancelled = run(&["--json", "requests", "cancel", &first]);
    assert_eq!(
        cancelled["cancelled"],
        serde_json::json!([ids[0]]),
        "{cancelled}"
    );
    let again = evt(&with(&["requests", "cancel", &first])
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>());
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("no pending request"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let rest = run(&["--json", "requests", "cancel", "--all", "--group", "audit"]);
    assert_eq!(rest["cancelled"].as_array().unwrap().len(), 2, "{rest}");
    let pending = run(&["--json", "requests", "list"]);
    assert_eq!(pending["requests"], serde_json::json!([]), "{pending}");

    broken.store(false, Ordering::SeqCst);
    let redrive = run(&["--json", "dlq", "redrive", &id]);
    assert_eq!(redrive["queued"], 1, "{redrive}");
    assert_eq!(
        redrive["queued_ids"],
        serde_json::json!([id.parse::<u64>().unwrap()])
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let all = run(&["--json", "dlq", "list", "--all"]);
        if all["dead_letters"][0]["status"] == "resolved" {
            break;
        }
        assert!(Instant::now() < deadline, "never resolved: {all}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_with_postgres_stores() {
    let Some(url) = server_url("EVT_NATS_URL") else {
        return;
    };
    let Some((pool, schema)) = postgres_schema().await else {
        return;
    };
    let pg_url = server_url("EVT_POSTGRES_URL").unwrap();
    let prefix = unique_prefix();
    let transport = NatsTransport::connect(NatsConfig::new(&url).prefix(&prefix))
        .await
        .unwrap();
    let stores = Stores::postgres(pool).await.unwrap();
    let (running, broken) = shop(transport, stores).await;
    // The stores' schema, as the app's pool has it.
    let sep = if pg_url.contains('?') { '&' } else { '?' };
    let stores_url = format!("{pg_url}{sep}options=-c%20search_path%3D{schema}");
    operate(
        &broken,
        &[
            "--nats",
            &url,
            "--prefix",
            &prefix,
            "--postgres",
            &stores_url,
        ],
        Some(running.instance()),
    )
    .await;

    // Without a store, the dead-letter commands say where the letters are.
    let out = evt(&["--nats", &url, "--prefix", &prefix, "dlq", "list"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--postgres"), "{stderr}");
    assert!(stderr.contains("NATS"), "{stderr}");

    // A database without the stores (a mistyped URL) is refused, not given new tables.
    let (_, empty) = postgres_schema().await.unwrap();
    let empty_url = format!("{pg_url}{sep}options=-c%20search_path%3D{empty}");
    let out = evt(&[
        "--nats",
        &url,
        "--prefix",
        &prefix,
        "--postgres",
        &empty_url,
        "dlq",
        "list",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no evt_dead_letters table"), "{stderr}");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_with_sqlite_stores() {
    let Some(servers) = server_url("EVT_KAFKA_BOOTSTRAP") else {
        return;
    };
    let prefix = unique_prefix();
    let file: PathBuf = std::env::temp_dir().join(format!("evt-engines-{prefix}.db"));
    let transport = KafkaTransport::connect(KafkaConfig::new(&servers).prefix(&prefix)).unwrap();
    let stores = Stores::sqlite(&SqliteTransport::open(&file).await.unwrap());
    let (running, broken) = shop(transport, stores).await;
    let db = file.display().to_string();
    operate(
        &broken,
        &["--kafka", &servers, "--prefix", &prefix, "--db", &db],
        None,
    )
    .await;
    running.stop().await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{db}{suffix}"));
    }
}
