//! The `evt` binary against a real engine file: a small shop app dead-letters one order, and the
//! CLI lists, shows, redrives and purges it, replays, tails, and reports lag, while the app runs.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use event_runtime::cloudevents::binary::{self, Binding};
use event_runtime::transport::sqlite::SqliteTransport;
use event_runtime::transport::{OutgoingRecord, Transport};
use event_runtime::{App, Context, Delivery, DomainEvent, Envelope, HandlerError, Running};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A customer placed an order.
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone)]
#[event(context = "shop")]
struct OrderPlaced {
    #[event(key)]
    order_id: String,
    total_cents: u64,
}

/// A customer cancelled an order.
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone)]
#[event(context = "shop")]
struct OrderCancelled {
    #[event(key)]
    order_id: String,
}

/// The failure of the billing handler, with a cause, so the error chain has two entries.
#[derive(Debug)]
struct CardDeclined(std::io::Error);

impl std::fmt::Display for CardDeclined {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("card declined")
    }
}

impl std::error::Error for CardDeclined {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

type Seen = Arc<Mutex<Vec<(String, Delivery)>>>;

/// A temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "evt-cli-{name}-{}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The app under operation: group `billing` handles orders and fails permanently for `o-bad`
/// while `broken` is set.
struct Shop {
    _dir: TempDir,
    db: PathBuf,
    running: Running<SqliteTransport>,
    broken: Arc<AtomicBool>,
    seen: Seen,
}

async fn shop(name: &str) -> Shop {
    let dir = TempDir::new(name);
    let db = dir.0.join("shop.db");
    let mut app = App::embedded(&db).await.unwrap();
    let broken = Arc::new(AtomicBool::new(true));
    let seen: Seen = Arc::default();
    let (flag, placed_seen, cancelled_seen) = (broken.clone(), seen.clone(), seen.clone());
    app.partitions(2)
        .subscribe::<OrderPlaced, _>(
            "billing",
            move |event: Envelope<OrderPlaced>, ctx: Context| {
                let fail = flag.load(Ordering::SeqCst) && event.data.order_id == "o-bad";
                let seen = placed_seen.clone();
                async move {
                    if fail {
                        return Err(HandlerError::permanent(CardDeclined(
                            std::io::Error::other("issuer said no"),
                        )));
                    }
                    seen.lock()
                        .unwrap()
                        .push((event.data.order_id, ctx.delivery()));
                    Ok(())
                }
            },
        )
        .subscribe::<OrderCancelled, _>(
            "billing",
            move |event: Envelope<OrderCancelled>, ctx: Context| {
                let seen = cancelled_seen.clone();
                async move {
                    seen.lock()
                        .unwrap()
                        .push((event.data.order_id, ctx.delivery()));
                    Ok(())
                }
            },
        );
    let running = app.start().await.unwrap();
    let publisher = running.publisher();
    for (order_id, total_cents) in [("o-1", 100), ("o-2", 250), ("o-bad", 999)] {
        publisher
            .publish(Envelope::event(OrderPlaced {
                order_id: order_id.into(),
                total_cents,
            }))
            .await
            .unwrap();
    }
    publisher
        .publish(Envelope::event(OrderCancelled {
            order_id: "o-2".into(),
        }))
        .await
        .unwrap();
    assert!(running.wait_idle(Duration::from_secs(10)).await);
    Shop {
        _dir: dir,
        db,
        running,
        broken,
        seen,
    }
}

fn evt(db: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_evt"))
        .arg("--db")
        .arg(db)
        .args(args)
        .env_remove("EVT_DB")
        .output()
        .unwrap()
}

fn text(db: &Path, args: &[&str]) -> String {
    let out = evt(db, args);
    assert!(
        out.status.success(),
        "evt {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn json(db: &Path, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = text(db, &all);
    serde_json::from_str(&out).unwrap_or_else(|err| panic!("evt {args:?}: {err}\n{out}"))
}

fn failure(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stderr.clone()).unwrap()
}

fn actions(letter: &Value) -> Vec<(String, String)> {
    letter["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["action"].as_str().unwrap().to_owned(),
                a["actor"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_shown_and_redriven_into_a_running_app() {
    let shop = shop("redrive").await;
    let db = &shop.db;

    let listed = json(db, &["dlq", "list"]);
    let letters = listed["dead_letters"].as_array().unwrap();
    assert_eq!(letters.len(), 1, "{listed}");
    let letter = &letters[0];
    assert_eq!(letter["group"], "billing");
    assert_eq!(letter["topic"], "shop");
    assert_eq!(letter["event_type"], "shop.order_placed");
    assert_eq!(letter["key"], "o-bad");
    assert_eq!(letter["reason_kind"], "permanent");
    assert_eq!(letter["reason"], "card declined");
    assert_eq!(letter["attempts"], 1);
    assert_eq!(letter["status"], "dead");
    assert!(letter["first_failure_at"].as_str().unwrap().ends_with('Z'));
    let id = letter["id"].as_u64().unwrap();
    let id_text = id.to_string();

    let table = text(db, &["dlq", "list", "--group", "billing"]);
    assert!(table.starts_with("ID"), "{table}");
    assert!(
        table.contains("o-bad") && table.contains("card declined"),
        "{table}"
    );
    assert!(text(db, &["dlq", "list", "--group", "shipping"]).contains("no open dead letters"));

    let shown = text(db, &["dlq", "show", &id_text]);
    let billing = format!("consumer:billing@{}", shop.running.instance());
    for expected in [
        "reason         card declined",
        "1. card declined",
        "2. issuer said no",
        "ce_type: shop.order_placed",
        "\"order_id\": \"o-bad\"",
        "audit trail:",
        "dead-lettered",
        billing.as_str(),
    ] {
        assert!(shown.contains(expected), "no `{expected}` in\n{shown}");
    }
    let detail = json(db, &["dlq", "show", &id_text]);
    assert_eq!(detail["error_chain"][1], "issuer said no");
    assert_eq!(detail["payload"]["encoding"], "json");
    assert_eq!(detail["payload"]["value"]["total_cents"], 999);
    assert_eq!(
        actions(&detail),
        [("dead-lettered".to_owned(), billing.clone())]
    );

    let lag = json(db, &["lag"]);
    assert_eq!(lag["groups"][0]["group"], "billing");
    assert_eq!(lag["groups"][0]["dlq_depth"], 1);

    // Fix the cause, then redrive: the running app resolves the letter.
    shop.broken.store(false, Ordering::SeqCst);
    let out = text(db, &["dlq", "redrive", &id_text, "--actor", "alice"]);
    assert!(out.contains("1 dead letter queued for redrive"), "{out}");
    assert!(shop.running.wait_idle(Duration::from_secs(10)).await);
    let deadline = Instant::now() + Duration::from_secs(10);
    let detail = loop {
        let detail = json(db, &["dlq", "show", &id_text]);
        if detail["status"] == "resolved" || Instant::now() > deadline {
            break detail;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(detail["status"], "resolved", "{detail}");
    assert_eq!(
        actions(&detail),
        [
            ("dead-lettered".to_owned(), billing.clone()),
            ("redrive-requested".to_owned(), "alice".to_owned()),
            ("resolved".to_owned(), billing.clone()),
        ]
    );
    assert!(
        shop.seen
            .lock()
            .unwrap()
            .contains(&("o-bad".to_owned(), Delivery::Redrive))
    );
    assert_eq!(
        json(db, &["dlq", "list"])["dead_letters"],
        Value::Array(vec![])
    );
    assert_eq!(
        json(db, &["dlq", "list", "--all"])["dead_letters"][0]["status"],
        "resolved"
    );

    // A resolved letter is not redriven again; the CLI says why.
    let out = evt(db, &["dlq", "redrive", &id_text]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 dead letters queued"));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("dead letter {id} is resolved")),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Caught up, nothing open.
    let lag = json(db, &["lag"]);
    let partitions = lag["partitions"].as_array().unwrap();
    assert_eq!(partitions.len(), 2, "{lag}");
    assert!(partitions.iter().all(|p| p["lag"] == 0), "{lag}");
    // The app's instance claims every partition it consumes.
    assert!(
        partitions
            .iter()
            .all(|p| p["owner"] == shop.running.instance()),
        "{lag}"
    );
    assert!(text(db, &["lag"]).contains(shop.running.instance()));
    assert_eq!(
        partitions
            .iter()
            .map(|p| p["end"].as_u64().unwrap())
            .sum::<u64>(),
        4
    );
    assert_eq!(lag["groups"][0]["lag"], 0);
    assert_eq!(lag["groups"][0]["dlq_depth"], 0);
    assert!(text(db, &["lag"]).contains("DLQ DEPTH"));

    let topics = json(db, &["topics"]);
    let listed = topics["topics"].as_array().unwrap();
    let named = |name: &str| {
        listed
            .iter()
            .find(|t| t["topic"] == name)
            .unwrap_or_else(|| panic!("no topic {name} in {topics}"))
    };
    assert_eq!(named("shop")["partitions"], 2);
    assert_eq!(named("shop")["records"], 4);
    // The group's dead letters were also copied to its dead-letter topic on the engine.
    assert!(
        named("billing.dlq")["records"].as_u64().unwrap() >= 1,
        "{topics}"
    );
    shop.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_keeps_the_letter_with_the_actor_in_its_audit_trail() {
    let shop = shop("purge").await;
    let db = &shop.db;
    let out = Command::new(env!("CARGO_BIN_EXE_evt"))
        .args(["--json", "dlq", "purge", "--all", "--group", "billing"])
        .env("EVT_DB", db)
        .env("USER", "carol")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let purged: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(purged["purged"], 1);
    assert_eq!(purged["actor"], "carol");
    assert_eq!(
        json(db, &["dlq", "list"])["dead_letters"],
        Value::Array(vec![])
    );
    let all = json(db, &["dlq", "list", "--all"]);
    let letter = &all["dead_letters"][0];
    assert_eq!(letter["status"], "purged");
    let detail = json(db, &["dlq", "show", &letter["id"].to_string()]);
    assert_eq!(
        actions(&detail).last().unwrap(),
        &("purged".to_owned(), "carol".to_owned())
    );
    assert_eq!(json(db, &["dlq", "redrive", "--all"])["queued"], 0);
    shop.running.stop().await;
}

fn selected(plan: &Value) -> Vec<(String, String)> {
    plan["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["type"].as_str().unwrap().to_owned(),
                r["key"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_selects_by_type_and_key_and_the_app_redelivers() {
    let shop = shop("replay").await;
    let db = &shop.db;
    let base = [
        "replay",
        "--group",
        "billing",
        "--topic",
        "shop",
        "--dry-run",
    ];
    let with = |extra: &[&'static str]| {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        json(db, &args)
    };

    let placed = with(&["--type", "shop.order_placed"]);
    assert_eq!(placed["count"], 3);
    let mut keys: Vec<String> = selected(&placed).into_iter().map(|(_, k)| k).collect();
    keys.sort();
    assert_eq!(keys, ["o-1", "o-2", "o-bad"]);
    assert!(
        selected(&placed)
            .iter()
            .all(|(t, _)| t == "shop.order_placed")
    );

    let o2 = with(&["--key", "o-2"]);
    let mut types: Vec<String> = selected(&o2).into_iter().map(|(t, _)| t).collect();
    types.sort();
    assert_eq!(types, ["shop.order_cancelled", "shop.order_placed"]);

    let one = with(&["--type", "shop.order_cancelled", "--key", "o-2"]);
    assert_eq!(
        selected(&one),
        [("shop.order_cancelled".to_owned(), "o-2".to_owned())]
    );
    assert_eq!(with(&["--since", "2999-01-01T00:00:00Z"])["count"], 0);
    let mut human = base.to_vec();
    human.extend_from_slice(&["--key", "o-1"]);
    let out = text(db, &human);
    assert!(
        out.contains("shop.order_placed") && out.contains("o-1"),
        "{out}"
    );
    assert!(out.contains("1 record selected"), "{out}");

    // Queue for real: bypassing dedupe redelivers; otherwise the dedupe store skips it.
    let out = text(
        db,
        &[
            "replay",
            "--group",
            "billing",
            "--topic",
            "shop",
            "--key",
            "o-1",
            "--bypass-dedupe",
        ],
    );
    assert!(out.contains("1 record of shop queued"), "{out}");
    let queued = json(
        db,
        &[
            "replay",
            "--group",
            "billing",
            "--topic",
            "shop",
            "--type",
            "shop.order_cancelled",
        ],
    );
    assert_eq!(queued["queued"], 1);
    assert!(shop.running.wait_idle(Duration::from_secs(10)).await);
    let replays: Vec<String> = shop
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, d)| *d == Delivery::Replay)
        .map(|(k, _)| k.clone())
        .collect();
    assert_eq!(replays, ["o-1"]);

    let bad = evt(
        db,
        &[
            "replay",
            "--group",
            "billing",
            "--topic",
            "nope",
            "--dry-run",
        ],
    );
    let err = failure(&bad);
    assert!(
        err.contains("no topic `nope`") && err.contains("shop"),
        "{err}"
    );
    let bad = evt(
        db,
        &[
            "replay",
            "--group",
            "billing",
            "--topic",
            "shop",
            "--partition",
            "7",
        ],
    );
    assert!(failure(&bad).contains("no partition 7"));
    shop.running.stop().await;
}

fn lines(out: &str) -> Vec<&str> {
    out.lines().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_prints_decoded_records_and_names_undecodable_ones() {
    let shop = shop("tail").await;
    shop.running.stop().await;
    let db = &shop.db;
    // A foreign producer wrote garbage.
    let transport = SqliteTransport::open(db).await.unwrap();
    transport
        .append(
            "shop",
            vec![OutgoingRecord {
                partition: 0,
                key: Some(b"junk".to_vec().into()),
                headers: vec![("ce_id".into(), b"\xff".to_vec())].into(),
                payload: b"{".to_vec().into(),
            }],
        )
        .await
        .unwrap();

    let out = text(db, &["tail", "--topic", "shop", "--from-beginning"]);
    let all = lines(&out);
    assert_eq!(all.len(), 5, "{out}");
    assert!(
        out.contains(r#"shop.order_placed v1"#)
            && out.contains("key=o-1")
            && out.contains(r#"{"order_id":"o-1","total_cents":100}"#)
            && out.contains("corr="),
        "{out}"
    );
    let junk = all.last().unwrap();
    assert!(
        junk.contains("shop/0@") && junk.contains("<undecodable:") && junk.contains("UTF-8"),
        "{junk}"
    );
    let last_two = text(db, &["tail", "--topic", "shop", "--limit", "2"]);
    assert_eq!(
        lines(&last_two),
        all[3..],
        "the default shows the last records"
    );

    let doc = json(
        db,
        &[
            "tail",
            "--topic",
            "shop",
            "--from-beginning",
            "--limit",
            "4",
        ],
    );
    let records = doc["records"].as_array().unwrap();
    assert_eq!(records.len(), 4);
    assert_eq!(doc["count"], 4);
    assert!(records.iter().all(|r| r["decoded"] == true));
    assert_eq!(records[0]["type"], "shop.order_placed");
    assert_eq!(records[0]["data"]["order_id"], "o-1");
    let doc = json(db, &["tail", "--topic", "shop", "--limit", "1"]);
    assert_eq!(doc["records"][0]["decoded"], false);
    assert!(
        doc["records"][0]["error"]
            .as_str()
            .unwrap()
            .contains("ce_id")
    );

    // --follow prints what arrives later, and --limit ends it.
    let mut child = Command::new(env!("CARGO_BIN_EXE_evt"))
        .arg("--db")
        .arg(db)
        .args([
            "tail",
            "--topic",
            "shop",
            "--from-beginning",
            "--follow",
            "--limit",
            "6",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map(Result::unwrap)
            .collect::<Vec<String>>()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let late = binary::to_binary(
        &Envelope::event(OrderPlaced {
            order_id: "o-late".into(),
            total_cents: 5,
        }),
        Binding::Kafka,
    )
    .unwrap();
    transport
        .append(
            "shop",
            vec![OutgoingRecord {
                partition: 1,
                key: late.key,
                headers: late.headers,
                payload: late.payload,
            }],
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "tail --follow did not stop");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(child.wait().unwrap().success());
    let followed = reader.join().unwrap();
    assert_eq!(followed.len(), 6, "{followed:?}");
    assert!(followed[5].contains("key=o-late"), "{followed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_name_the_problem_and_exit_with_1() {
    let dir = TempDir::new("errors");
    let missing = dir.0.join("nope.db");
    let err = failure(&evt(&missing, &["dlq", "list"]));
    assert!(
        err.contains(&format!(
            "database file {} does not exist",
            missing.display()
        )),
        "{err}"
    );
    assert!(!missing.exists(), "a missing database must not be created");

    let db = dir.0.join("shop.db");
    SqliteTransport::open(&db).await.unwrap();
    for args in [
        &["dlq", "show", "42"][..],
        &["dlq", "redrive", "42"],
        &["dlq", "purge", "42"],
    ] {
        let err = failure(&evt(&db, args));
        assert!(
            err.contains(&format!("no dead letter with id 42 in {}", db.display())),
            "{args:?}: {err}"
        );
    }
    let err = failure(&evt(&db, &["dlq", "purge", "7", "42"]));
    assert!(err.contains("no dead letters with ids 7, 42 in"), "{err}");
    let err = failure(&evt(&db, &["tail", "--topic", "orders"]));
    assert!(err.contains("no topic `orders`"), "{err}");

    let not_sqlite = dir.0.join("notes.txt");
    std::fs::write(&not_sqlite, "hello, this is not a database").unwrap();
    let err = failure(&evt(&not_sqlite, &["topics"]));
    assert!(err.contains("is not an SQLite database"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&not_sqlite).unwrap(),
        "hello, this is not a database"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_evt"))
        .arg("topics")
        .env_remove("EVT_DB")
        .output()
        .unwrap();
    let message = failure(&out);
    assert!(message.contains("no engine given"), "{message}");
    for flag in ["--db", "--nats", "--kafka"] {
        assert!(message.contains(flag), "{message}");
    }

    // A usage error is clap's: exit code 2.
    let out = evt(&db, &["dlq", "redrive"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(json(&db, &["topics"])["topics"], Value::Array(vec![]));
}

/// `evt trace` draws every event of one correlation under its cause, with what each group did:
/// a request placed two orders; billing cancelled one (a caused event) and dead-lettered the
/// other; an event of another correlation stays out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_draws_one_correlation_with_each_groups_outcome() {
    let dir = TempDir::new("trace");
    let db = dir.0.join("shop.db");
    let mut app = App::embedded(&db).await.unwrap();
    app.partitions(2)
        .subscribe::<OrderPlaced, _>(
            "billing",
            |event: Envelope<OrderPlaced>, ctx: Context| async move {
                match event.data.order_id.as_str() {
                    "o-bad" => Err(HandlerError::permanent("card declined")),
                    "o-1" => {
                        ctx.publish(OrderCancelled {
                            order_id: event.data.order_id,
                        })?;
                        Ok(())
                    }
                    _ => Ok(()),
                }
            },
        )
        .subscribe::<OrderCancelled, _>(
            "billing",
            |_event: Envelope<OrderCancelled>, _ctx: Context| async move { Ok(()) },
        );
    let running = app.start().await.unwrap();
    let publisher = running.publisher();
    let request = event_runtime::request::RequestContext::new("req-9", None);
    event_runtime::request::scope(request, async {
        for order_id in ["o-1", "o-bad"] {
            publisher
                .publish(Envelope::event(OrderPlaced {
                    order_id: order_id.into(),
                    total_cents: 1,
                }))
                .await
                .unwrap();
        }
    })
    .await;
    publisher
        .publish(Envelope::event(OrderPlaced {
            order_id: "o-other".into(),
            total_cents: 1,
        }))
        .await
        .unwrap();
    assert!(running.wait_idle(Duration::from_secs(10)).await);
    running.stop().await;

    let out = text(&db, &["trace", "req-9"]);
    let all = lines(&out);
    assert_eq!(all.len(), 6, "{out}");
    // An event of the request staged in the outbox with no app running to relay it: shown,
    // as not relayed yet.
    {
        let file = event_runtime::transport::sqlite::SqliteTransport::open(&db)
            .await
            .unwrap();
        let outbox = event_runtime::dlq::DeadLetters::new(&file)
            .outbox()
            .unwrap();
        let mut conn = file.pool().acquire().await.unwrap();
        let request = event_runtime::request::RequestContext::new("req-9", None);
        let staged = event_runtime::request::scope(request, async {
            Envelope::event(OrderPlaced {
                order_id: "o-late".into(),
                total_cents: 1,
            })
        })
        .await;
        outbox.stage(&mut *conn, staged).await.unwrap();
    }
    let with_staged = text(&db, &["trace", "req-9"]);
    let staged_lines: Vec<&str> = lines(&with_staged)
        .into_iter()
        .filter(|l| !out.contains(*l))
        .collect();
    assert_eq!(staged_lines.len(), 1, "{with_staged}");
    assert!(
        staged_lines[0].starts_with("shop.order_placed v1  shop (outbox row 1, not relayed yet)")
            && staged_lines[0].contains("key=o-late"),
        "{with_staged}"
    );
    let doc = json(&db, &["trace", "req-9"]);
    let late = &doc["roots"][2];
    assert_eq!(late["outbox"]["row"], 1, "{doc}");
    assert_eq!(late["offset"], Value::Null, "{doc}");
    assert!(
        all[0].starts_with("shop.order_placed v1") && all[0].contains("key=o-1"),
        "{out}"
    );
    assert_eq!(all[1], "├─ [billing] handled", "{out}");
    assert!(
        all[2].starts_with("└─ shop.order_cancelled v1") && all[2].contains(" ms"),
        "the cancellation hangs under its cause: {out}"
    );
    assert_eq!(all[3], "   └─ [billing] handled", "{out}");
    assert!(all[4].contains("key=o-bad"), "{out}");
    assert!(
        all[5].starts_with("└─ [billing] dead (letter ") && all[5].contains("card declined"),
        "{out}"
    );
    assert!(!out.contains("o-other"), "{out}");

    let doc = json(&db, &["trace", "req-9"]);
    assert_eq!(doc["events"], 4);
    let roots = doc["roots"].as_array().unwrap();
    assert_eq!(roots.len(), 3);
    assert_eq!(roots[0]["caused"][0]["type"], "shop.order_cancelled");
    assert_eq!(roots[0]["caused"][0]["causation_id"], roots[0]["id"]);
    assert_eq!(roots[1]["groups"][0]["outcome"], "dead_lettered");
    assert_eq!(roots[1]["groups"][0]["attempts"], 1);

    let mermaid = text(&db, &["trace", "req-9", "--mermaid"]);
    assert!(mermaid.starts_with("flowchart TD\n"), "{mermaid}");
    let cancelled = mermaid
        .lines()
        .find(|l| l.contains("shop.order_cancelled"))
        .and_then(|l| l.trim().split('[').next())
        .unwrap();
    assert!(
        mermaid.contains(&format!("e0 --> {cancelled}\n")),
        "{mermaid}"
    );
    assert_eq!(mermaid.matches("-->").count(), 1, "{mermaid}");
    assert!(mermaid.contains("billing: dead"), "{mermaid}");

    let missing = evt(&db, &["trace", "req-none"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        failure(&missing).contains("no event with correlation id `req-none`"),
        "{}",
        failure(&missing)
    );
}

/// A producer that retried an append wrote its event twice: each group's dedupe store skipped
/// the copy, and `evt trace` shows the copy as a duplicate of the record handled first, with
/// what the handled one caused (an event, a saga's steps) under it alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_shows_a_copy_the_dedupe_store_skipped() {
    let dir = TempDir::new("trace-dup");
    let db = dir.0.join("shop.db");
    let runs = Arc::new(AtomicU32::new(0));
    let counted = runs.clone();
    let mut app = App::embedded(&db).await.unwrap();
    app.partitions(2)
        .subscribe::<OrderPlaced, _>(
            "billing",
            move |event: Envelope<OrderPlaced>, ctx: Context| {
                let counted = counted.clone();
                async move {
                    counted.fetch_add(1, Ordering::SeqCst);
                    ctx.publish(OrderCancelled {
                        order_id: event.data.order_id,
                    })?;
                    Ok(())
                }
            },
        )
        .saga::<Tracker>();
    let running = app.start().await.unwrap();
    let publisher = running.publisher();
    let request = event_runtime::request::RequestContext::new("req-dup", None);
    let placed = event_runtime::request::scope(request, async {
        Envelope::event(OrderPlaced {
            order_id: "o-7".into(),
            total_cents: 1,
        })
    })
    .await;
    let first = publisher.publish(placed.clone()).await.unwrap();
    let copy = publisher.publish(placed).await.unwrap();
    assert!(running.wait_idle(Duration::from_secs(10)).await);
    running.stop().await;
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the copy is not handled");

    let out = text(&db, &["trace", "req-dup"]);
    let all = lines(&out);
    assert!(all[0].contains(&format!("@{} ", first.offset)), "{out}");
    assert!(all.contains(&"├─ [billing] handled"), "{out}");
    let of = format!(
        "duplicate of shop/{}@{}: skipped by dedupe",
        first.partition, first.offset
    );
    assert!(
        all.contains(&format!("├─ [billing] {of}").as_str()),
        "{out}"
    );
    let doc = json(&db, &["trace", "req-dup"]);
    let roots = doc["roots"].as_array().unwrap();
    assert_eq!(roots.len(), 2, "{doc}");
    let (handled, skipped) = (&roots[0], &roots[1]);
    assert_eq!(handled["offset"], first.offset, "{doc}");
    assert_eq!(skipped["offset"], copy.offset, "{doc}");
    // Every group (billing, the saga's) handled the first and skipped the copy.
    for group in handled["groups"].as_array().unwrap() {
        assert_eq!(group["outcome"], "handled", "{doc}");
    }
    assert_eq!(skipped["groups"].as_array().unwrap().len(), 2, "{doc}");
    for group in skipped["groups"].as_array().unwrap() {
        assert_eq!(group["outcome"], "duplicate", "{doc}");
        assert_eq!(
            group["of"],
            format!("shop/{}@{}", first.partition, first.offset),
            "{doc}"
        );
    }
    // What it caused hangs under the handled one: the cancellation, the saga's start.
    assert_eq!(
        handled["caused"][0]["type"], "shop.order_cancelled",
        "{doc}"
    );
    assert_eq!(handled["sagas"][0]["status"], "running", "{doc}");
    assert_eq!(skipped["caused"], Value::Array(vec![]), "{doc}");
    assert_eq!(skipped["sagas"], Value::Array(vec![]), "{doc}");
}

/// Follows each order until it is cancelled; reminds an hour after it was placed.
#[derive(Serialize, Deserialize, Debug)]
struct Tracker {
    cents: u64,
}

impl event_runtime::saga::Saga for Tracker {
    const NAME: &'static str = "tracker";

    fn messages(on: &mut event_runtime::saga::Messages<Self>) {
        on.on::<OrderPlaced>().on::<OrderCancelled>();
    }
}

impl event_runtime::saga::On<OrderPlaced> for Tracker {
    const UNKNOWN: event_runtime::saga::Unknown = event_runtime::saga::Unknown::Start;

    fn key(event: &OrderPlaced) -> String {
        event.order_id.clone()
    }

    fn start(
        event: &OrderPlaced,
        step: &mut event_runtime::saga::Step<'_>,
    ) -> Result<event_runtime::saga::Transition<Self>, HandlerError> {
        step.schedule("remind", Duration::from_secs(3600));
        Ok(event_runtime::saga::Transition::next(Tracker {
            cents: event.total_cents,
        }))
    }

    fn handle(
        self,
        _: &OrderPlaced,
        _: &mut event_runtime::saga::Step<'_>,
    ) -> Result<event_runtime::saga::Transition<Self>, HandlerError> {
        Ok(event_runtime::saga::Transition::next(self))
    }
}

impl event_runtime::saga::On<OrderCancelled> for Tracker {
    fn key(event: &OrderCancelled) -> String {
        event.order_id.clone()
    }

    fn handle(
        self,
        _: &OrderCancelled,
        _: &mut event_runtime::saga::Step<'_>,
    ) -> Result<event_runtime::saga::Transition<Self>, HandlerError> {
        Ok(event_runtime::saga::Transition::fail(self, "cancelled"))
    }
}

/// An app whose stores are in memory keeps its sagas in the log's file (its inbox):
/// `Running::trace` reads them there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_trace_reads_the_sagas_where_the_inbox_keeps_them() {
    let dir = TempDir::new("trace-inbox");
    let file = SqliteTransport::open(&dir.0.join("log.db")).await.unwrap();
    let mut app = App::new(file, event_runtime::app::Stores::in_memory().await.unwrap());
    app.saga::<Tracker>();
    let running = app.start().await.unwrap();
    let placed = Envelope::event(OrderPlaced {
        order_id: "o-1".into(),
        total_cents: 5,
    });
    let id = placed.id.to_string();
    running.publisher().publish(placed).await.unwrap();
    assert!(running.wait_idle(Duration::from_secs(10)).await);
    let trace = running.trace(&id).await.unwrap();
    let node = trace.roots().next().expect("the order");
    assert_eq!(
        node.transitions,
        vec![event_runtime::trace::Transition {
            saga: "tracker".into(),
            key: "o-1".into(),
            version: 1,
            status: "running".into(),
        }]
    );
    assert_eq!(node.timers.len(), 1, "{:?}", node.timers);
    assert_eq!(node.timers[0].name, "remind");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saga_list_and_show_read_instances_their_timers_and_history() {
    let dir = TempDir::new("saga");
    let db = dir.0.join("shop.db");
    let mut app = App::embedded(&db).await.unwrap();
    app.saga::<Tracker>();
    let running = app.start().await.unwrap();
    let publisher = running.publisher();
    // Published outside a request, each event is its own correlation (its id).
    let mut placed = Vec::new();
    for (order_id, total_cents) in [("o-1", 100), ("o-2", 250)] {
        let event = Envelope::event(OrderPlaced {
            order_id: order_id.into(),
            total_cents,
        });
        placed.push(event.id.to_string());
        publisher.publish(event).await.unwrap();
    }
    let cancel = Envelope::event(OrderCancelled {
        order_id: "o-2".into(),
    });
    let cancelled = cancel.id.to_string();
    publisher.publish(cancel).await.unwrap();
    assert!(running.wait_idle(Duration::from_secs(10)).await);
    // The app draws the same tree `evt trace` prints.
    let mut own = Vec::new();
    running
        .trace(&placed[0])
        .await
        .unwrap()
        .write_text(&mut own)
        .unwrap();
    running.stop().await;

    // `evt trace` shows the transition each message made and the timer still pending.
    let tree = text(&db, &["trace", &placed[0]]);
    assert_eq!(tree, String::from_utf8(own).unwrap());
    let rows = lines(&tree);
    assert_eq!(rows.len(), 4, "{tree}");
    assert!(rows[0].starts_with("shop.order_placed v1"), "{tree}");
    assert_eq!(rows[1], "├─ [saga.tracker] handled", "{tree}");
    assert_eq!(rows[2], "├─ saga tracker o-1 v1: running", "{tree}");
    assert!(
        rows[3].starts_with("└─ timer remind of saga tracker o-1: due "),
        "{tree}"
    );
    let doc = json(&db, &["trace", &cancelled]);
    assert_eq!(
        doc["roots"][0]["sagas"],
        serde_json::json!([{"saga": "tracker", "key": "o-2", "version": 2, "status": "failed"}]),
        "{doc}"
    );
    assert_eq!(doc["roots"][0]["timers"], serde_json::json!([]), "{doc}");

    let all = json(&db, &["saga", "list"]);
    let all = all["instances"].as_array().unwrap();
    assert_eq!(all.len(), 2, "{all:?}");
    let stuck = json(&db, &["saga", "list", "--stuck"]);
    assert_eq!(stuck["instances"], serde_json::json!([]), "{stuck}");
    let running_only = json(&db, &["saga", "list", "--status", "running"]);
    let running_only = running_only["instances"].as_array().unwrap();
    assert_eq!(running_only.len(), 1, "{running_only:?}");
    assert_eq!(running_only[0]["key"], "o-1");
    assert_eq!(running_only[0]["state"]["cents"], 100);
    assert_eq!(running_only[0]["timers"]["remind"], 1);

    let shown = json(&db, &["saga", "show", "tracker", "o-2"]);
    assert_eq!(shown["status"], "failed");
    assert_eq!(shown["reason"], "cancelled");
    assert_eq!(shown["timers"], serde_json::json!({}), "{shown}");
    let history: Vec<&str> = shown["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["message_type"].as_str().unwrap())
        .collect();
    assert_eq!(history, ["shop.order_placed", "shop.order_cancelled"]);

    let table = text(&db, &["saga", "list", "--saga", "tracker"]);
    assert!(table.starts_with("SAGA"), "{table}");
    assert!(table.contains("o-1") && table.contains("remind"), "{table}");
    let out = text(&db, &["saga", "show", "tracker", "o-2"]);
    assert!(out.contains("reason    cancelled"), "{out}");
    assert!(out.contains("shop.order_cancelled"), "{out}");

    let missing = evt(&db, &["saga", "show", "tracker", "nope"]);
    let message = failure(&missing);
    assert!(
        message.contains("no instance of saga `tracker` with key `nope`"),
        "{message}"
    );

    // Repairs: refused for a finished instance, queued for a running one. The tracker is
    // hand-written (not #[saga]) and has no repairs: the app dead-letters the repair, saying
    // why, when it runs again.
    let finished = evt(&db, &["saga", "resume", "tracker", "o-2"]);
    assert_eq!(finished.status.code(), Some(1));
    assert!(
        failure(&finished).contains("no unfinished instance of saga `tracker` has key `o-2`"),
        "{}",
        failure(&finished)
    );
    // A repair decided on a version the instance has left is refused, saying where it is now.
    let moved = evt(
        &db,
        &["saga", "resume", "tracker", "o-1", "--at-version", "0"],
    );
    assert_eq!(moved.status.code(), Some(1));
    assert!(
        failure(&moved).contains(
            "saga `tracker` key `o-1` is running at version 1, not at version 0: it moved on"
        ),
        "{}",
        failure(&moved)
    );
    let queued = json(
        &db,
        &[
            "saga",
            "resume",
            "tracker",
            "o-1",
            "--actor",
            "alice",
            "--at-version",
            "1",
        ],
    );
    assert_eq!(queued["queued"], "resume");
    assert_eq!(queued["version"], 1);
    assert_eq!(queued["actor"], "alice");
    let mut app = App::embedded(&db).await.unwrap();
    app.saga::<Tracker>();
    let running = app.start().await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let letter = loop {
        let letters = running
            .dead_letters()
            .list(&event_runtime::dlq::LetterFilter::default())
            .await
            .unwrap();
        if let Some(letter) = letters.into_iter().find(|l| l.group == "saga.tracker") {
            break letter;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the repair never arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    running.stop().await;
    assert!(
        letter
            .reason
            .contains("saga `tracker` has no `resume` repair"),
        "{}",
        letter.reason
    );
}
