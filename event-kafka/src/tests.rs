//! Unit tests on the in-process mock cluster.

use std::time::Duration;

use event_runtime::transport::{Bytes, Headers, OutgoingRecord, Transport, TransportErrorKind};

use crate::mock::MockKafka;
use crate::{KafkaConfig, KafkaTransport};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_and_headers_round_trip_verbatim() {
    let cluster = MockKafka::start(1);
    let t = KafkaTransport::connect(cluster.config()).unwrap();
    assert_eq!(t.ensure_topic("orders", 4).await.unwrap(), 4);
    let key = b"customer-42".to_vec();
    let partition = event_runtime::partition::partition_for_key(&key, 4);
    let headers: Headers = [
        ("ce_specversion", &b"1.0"[..]),
        ("ce_id", b"id-1"),
        ("ce_type", b"order.placed"),
        ("content-type", b"application/json"),
        ("x-binary", &[0, 255, 10]),
        ("x-empty", b""),
        ("ce_id", b"duplicate names are kept"),
    ]
    .into_iter()
    .collect();
    let sent = OutgoingRecord {
        partition,
        key: Some(key.clone().into()),
        headers: headers.clone(),
        payload: Bytes::from_static(br#"{"total":3}"#),
    };
    let unkeyed = OutgoingRecord {
        partition,
        key: None,
        headers: Headers::new(),
        payload: Bytes::new(),
    };
    let positions = t.append("orders", vec![sent, unkeyed]).await.unwrap();
    assert_eq!(positions[0].partition, partition);
    assert_eq!(positions[1].offset, positions[0].offset + 1);

    let read = t.fetch("orders", partition, 0, 10).await.unwrap();
    assert_eq!(read.len(), 2);
    assert_eq!(read[0].key.as_deref(), Some(key.as_slice()));
    assert_eq!(read[0].headers, headers, "headers verbatim and in order");
    assert_eq!(read[0].payload, &br#"{"total":3}"#[..]);
    assert_eq!(read[1].key, None);
    assert!(read[1].headers.is_empty());
    assert!(read[1].payload.is_empty());
    // Nothing went to the other partitions.
    let ends = t.end_offsets("orders").await.unwrap();
    assert_eq!(ends.iter().sum::<u64>(), 2);
    assert_eq!(ends[partition as usize], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_keeps_the_record_for_the_next_fetch() {
    let cluster = MockKafka::start(1);
    let t = KafkaTransport::connect(cluster.config()).unwrap();
    t.ensure_topic("w", 1).await.unwrap();
    let writer = t.clone();
    let appended = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let record = OutgoingRecord {
            payload: b"x".to_vec().into(),
            ..OutgoingRecord::default()
        };
        writer.append("w", vec![record]).await.unwrap();
    });
    t.wait("w", 0, 0, Duration::from_secs(10)).await;
    appended.await.unwrap();
    let read = t.fetch("w", 0, 0, 10).await.unwrap();
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].payload, &b"x"[..]);
}

#[test]
fn credentials_never_print() {
    let config = KafkaConfig::new("127.0.0.1:1").sasl_plain("alice-user", "hunter2-pass");
    let debug = format!("{config:?}");
    assert!(
        !debug.contains("hunter2-pass") && !debug.contains("alice-user"),
        "{debug}"
    );
    assert_eq!(
        config.redact("failed for alice-user with hunter2-pass"),
        "failed for [redacted] with [redacted]"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_not_in_errors() {
    let cluster = MockKafka::start(1);
    let mut config = cluster.config().sasl_plain("alice-user", "hunter2-pass");
    config.request_timeout = Duration::from_secs(2);
    let t = KafkaTransport::connect(config).unwrap();
    assert!(!format!("{t:?}").contains("hunter2-pass"));
    // The mock cluster does not speak SASL: every call fails.
    let err = t.topics().await.unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(
        !text.contains("hunter2-pass") && !text.contains("alice-user"),
        "{text}"
    );
    assert!(std::error::Error::source(&err).is_none());
    assert_eq!(err.kind, TransportErrorKind::Unavailable);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_keeps_apps_on_one_cluster_apart() {
    let cluster = MockKafka::start(1);
    let a = KafkaTransport::connect(cluster.config().prefix("a")).unwrap();
    let b = KafkaTransport::connect(cluster.config().prefix("b")).unwrap();
    let plain = KafkaTransport::connect(cluster.config()).unwrap();
    assert_eq!(a.ensure_topic("orders", 2).await.unwrap(), 2);
    assert_eq!(b.ensure_topic("orders", 3).await.unwrap(), 3);
    let record = OutgoingRecord {
        partition: 1,
        key: Some(b"k".to_vec().into()),
        headers: Vec::new().into(),
        payload: b"from a".to_vec().into(),
    };
    a.append("orders", vec![record]).await.unwrap();
    // Each sees its own topic, under the app's name; the cluster holds both, prefixed.
    assert_eq!(a.topics().await.unwrap(), vec![("orders".to_owned(), 2)]);
    assert_eq!(b.topics().await.unwrap(), vec![("orders".to_owned(), 3)]);
    let all = plain.topics().await.unwrap();
    assert!(all.contains(&("a.orders".to_owned(), 2)), "{all:?}");
    assert!(all.contains(&("b.orders".to_owned(), 3)), "{all:?}");
    let read = a.fetch("orders", 1, 0, 10).await.unwrap();
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].topic, "orders".into());
    assert_eq!(read[0].payload, &b"from a"[..]);
    assert!(b.fetch("orders", 1, 0, 10).await.unwrap().is_empty());
    // Groups are namespaced too: the same group name in two apps keeps two positions.
    a.commit("billing", "orders", 1, 1).await.unwrap();
    assert_eq!(a.committed("billing", "orders", 1).await.unwrap(), 1);
    assert_eq!(b.committed("billing", "orders", 1).await.unwrap(), 0);
}

/// TLS and SCRAM settings reach librdkafka as its own properties, and this build of librdkafka
/// has OpenSSL: a client with `security.protocol=SASL_SSL` and a CA file is created (a build
/// without TLS refuses the protocol at creation). Against a plaintext cluster the TLS handshake
/// fails: reported as `Unavailable`, within the timeout, with no credential in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_scram_settings_reach_librdkafka_and_credentials_stay_private() {
    let dir = std::env::temp_dir().join(format!("evt-kafka-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, include_str!("testdata/ca.pem")).unwrap();
    let cluster = MockKafka::start(1);
    let (user, password, key_password) = ("scram-user-51c", "scram-pw-9ad2", "key-pw-77e0");
    let config = KafkaConfig::new(cluster.bootstrap_servers())
        .sasl_scram_sha512(user, password)
        .tls(crate::Tls {
            ca: Some(ca.clone()),
            key_password: Some(crate::Secret::new(key_password)),
            ..crate::Tls::default()
        })
        .request_timeout(Duration::from_secs(2));
    let client = config.client_config();
    assert_eq!(client.get("security.protocol"), Some("SASL_SSL"));
    assert_eq!(client.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
    assert_eq!(client.get("sasl.username"), Some(user));
    assert_eq!(
        client.get("ssl.ca.location"),
        Some(ca.display().to_string().as_str())
    );
    assert_eq!(client.get("ssl.key.password"), Some(key_password));
    let shown = format!("{config:?}");
    for secret in [user, password, key_password] {
        assert!(!shown.contains(secret), "{shown}");
    }
    assert_eq!(
        KafkaConfig::new("h:1")
            .tls(crate::Tls::default())
            .client_config()
            .get("security.protocol"),
        Some("SSL")
    );

    let transport = KafkaTransport::connect(config).expect("librdkafka is built with TLS");
    let started = std::time::Instant::now();
    let err = transport
        .topics()
        .await
        .expect_err("a TLS client cannot talk to a plaintext cluster");
    assert!(started.elapsed() < Duration::from_secs(10), "{err}");
    assert_eq!(err.kind, TransportErrorKind::Unavailable, "{err}");
    let text = format!("{err} {err:?}");
    for secret in [user, password, key_password] {
        assert!(!text.contains(secret), "{text}");
    }

    // A CA file that is not there is refused when the client is created, naming the setting.
    let missing = KafkaConfig::new(cluster.bootstrap_servers()).tls(crate::Tls {
        ca: Some(dir.join("missing.pem")),
        ..crate::Tls::default()
    });
    let err = KafkaTransport::connect(missing).expect_err("no CA file");
    assert!(err.to_string().contains("ssl.ca.location"), "{err}");
}
