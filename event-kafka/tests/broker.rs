//! The Kafka engine against brokers of its own: the tansu broker (a Kafka API broker;
//! `EVT_TANSU_BIN`, which scripts/servers.sh exports) started here on a port of its own, with
//! SASL required or killed with SIGKILL under the publisher. Skipped without `EVT_TANSU_BIN`,
//! except under `CI`.

use std::time::{Duration, Instant};

use event_conformance::servers::Tansu;
use event_kafka::{KafkaConfig, KafkaTransport};
use event_runtime::app::PublishError;
use event_runtime::retry::PublishRetry;
use event_runtime::transport::TransportErrorKind;
use event_runtime::{App, DomainEvent, Envelope};

/// A reading of a meter.
#[derive(DomainEvent, serde::Serialize, serde::Deserialize, Debug, Clone)]
#[event(context = "meters")]
struct Reading {
    #[event(key)]
    meter: String,
    seq: u32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_while_the_broker_is_down_is_bounded_and_reported() {
    let Some(binary) = Tansu::binary() else {
        return;
    };
    let mut broker = Tansu::start(&binary, &[]);
    let config = KafkaConfig::new(broker.bootstrap())
        .request_timeout(Duration::from_secs(1))
        .client_option("batch.num.messages", "1");
    let transport = KafkaTransport::connect(config).unwrap();
    let mut app = App::with_transport(transport).await.unwrap();
    app.partitions(2)
        .publish_retry(PublishRetry::for_up_to(Duration::from_millis(1500)));
    let publisher = app.publisher();
    let reading = |seq| {
        Envelope::event(Reading {
            meter: format!("m-{seq}"),
            seq,
        })
    };
    publisher
        .publish(reading(0))
        .await
        .expect("the broker is up");

    broker.kill();
    let started = Instant::now();
    let attempts: Vec<_> = (1..=5)
        .map(|seq| {
            let publisher = publisher.clone();
            tokio::spawn(async move { publisher.publish(reading(seq)).await })
        })
        .collect();
    for attempt in attempts {
        match attempt.await.unwrap() {
            Err(PublishError::Transport(err)) => {
                assert_eq!(err.kind, TransportErrorKind::Unavailable, "{err}");
                assert!(err.message.contains("gave up after"), "{err}");
                assert!(err.operation.contains("meters"), "{err}");
            }
            other => panic!("a publish with the broker down returned {other:?}"),
        }
    }
    let took = started.elapsed();
    // The bound (1.5 s) plus at most one attempt's own timeout (1 s) and scheduling slack.
    assert!(
        took >= Duration::from_millis(1000),
        "gave up early: {took:?}"
    );
    assert!(took < Duration::from_secs(6), "not bounded: {took:?}");
}

/// A broker that requires authentication (tansu 0.6 with `--authentication`, which offers SCRAM
/// and OAUTHBEARER) refuses a SCRAM-SHA-512 login of a user it does not have, and a PLAIN login:
/// every call fails with an `Unavailable` error within the request timeout, and neither the
/// error nor the configuration's or transport's `Debug` shows the credentials. Without
/// credentials the same broker refuses the client too. (tansu 0.6 creates SCRAM users only
/// through an authenticated connection, so a successful login cannot be set up here.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_sasl_logins_are_reported_without_credentials() {
    use event_runtime::transport::Transport as _;
    let Some(binary) = Tansu::binary() else {
        return;
    };
    let broker = Tansu::start(&binary, &["--authentication"]);
    let servers = broker.bootstrap();
    let (user, password) = ("evt-user-7f3a", "pa55-w0rd-c91e");
    let config = KafkaConfig::new(&servers)
        .sasl_scram_sha512(user, password)
        .request_timeout(Duration::from_secs(2));
    let shown = format!("{config:?}");
    assert!(
        !shown.contains(user) && !shown.contains(password),
        "{shown}"
    );
    let transport = KafkaTransport::connect(config).unwrap();
    let shown = format!("{transport:?}");
    assert!(
        !shown.contains(user) && !shown.contains(password),
        "{shown}"
    );

    let started = Instant::now();
    let err = transport
        .ensure_topic("orders", 2)
        .await
        .expect_err("the broker has no such user");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "not bounded: {err}"
    );
    assert_eq!(err.kind, TransportErrorKind::Unavailable, "{err}");
    let text = format!("{err} {err:?} {:?}", std::error::Error::source(&err));
    assert!(!text.contains(user) && !text.contains(password), "{text}");

    let plain = KafkaTransport::connect(
        KafkaConfig::new(&servers)
            .sasl_plain(user, password)
            .request_timeout(Duration::from_secs(2)),
    )
    .unwrap();
    let err = plain
        .topics()
        .await
        .expect_err("the broker offers no PLAIN");
    let text = format!("{err} {err:?}");
    assert!(!text.contains(user) && !text.contains(password), "{text}");

    let anonymous =
        KafkaTransport::connect(KafkaConfig::new(&servers).request_timeout(Duration::from_secs(2)))
            .unwrap();
    let err = anonymous
        .topics()
        .await
        .expect_err("no credentials, no metadata");
    assert_eq!(err.kind, TransportErrorKind::Unavailable, "{err}");
}
