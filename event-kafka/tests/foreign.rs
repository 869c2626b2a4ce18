//! Records written by a foreign producer, kafka-python (tests/foreign_producer.py), read by the
//! Kafka engine: Kafka allows any bytes in a header's name, and a name that is not UTF-8 (which
//! rdkafka's header reader cannot take) must not stop the partition. The record is read without
//! that header, whose index is listed in `x-evt-unreadable-headers`, and the event decodes.
//!
//! Needs `EVT_KAFKA_BOOTSTRAP` and kafka-python (both from scripts/test.sh); skipped without
//! them, except under `CI`. (Debian's kcat cannot talk to tansu: its librdkafka's API-version
//! request gets an answer it cannot read.)

use std::process::Command;

use event_conformance::fixture::unique_prefix;
use event_conformance::servers::server_url;
use event_kafka::{KafkaConfig, KafkaTransport, UNREADABLE_HEADERS};
use event_runtime::cloudevents::{Limits, decode_record};
use event_runtime::transport::Transport;

/// Whether kafka-python is importable (`pip install kafka-python`, which scripts/test.sh does).
fn kafka_python() -> bool {
    let found = Command::new("python3")
        .args(["-c", "import kafka"])
        .output()
        .is_ok_and(|out| out.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "kafka-python is missing but CI is set (scripts/test.sh installs it with pip)"
        );
        eprintln!("skipped: kafka-python is not installed (pip install kafka-python)");
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_name_that_is_not_utf8_is_left_out_and_the_record_is_read() {
    let Some(servers) = server_url("EVT_KAFKA_BOOTSTRAP") else {
        return;
    };
    if !kafka_python() {
        return;
    }
    let prefix = unique_prefix();
    let transport = KafkaTransport::connect(KafkaConfig::new(&servers).prefix(&prefix)).unwrap();
    transport.ensure_topic("meters", 1).await.unwrap();

    // A binary-mode CloudEvent with one more header, named by the bytes ff 62 61 64.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/foreign_producer.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(&servers)
        .arg(format!("{prefix}.meters"))
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "the foreign producer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let records = transport.fetch("meters", 0, 0, 10).await.unwrap();
    assert_eq!(records.len(), 1);
    let record = &records[0];
    assert_eq!(record.headers.get(UNREADABLE_HEADERS), Some(&b"5"[..]));
    assert_eq!(record.headers.get("ce_id"), Some(&b"reading-1"[..]));
    assert_eq!(
        record.headers.get("content-type"),
        Some(&b"application/json"[..])
    );
    let event = decode_record(record, &Limits::default()).expect("the event decodes");
    assert_eq!(event.ty, "meters.reading");
}
