//! The server dies (SIGKILL, file storage) in the middle of a stream and comes back on the same
//! port and store: no event is lost, and the running consumer resumes by itself.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use event_nats::{NatsConfig, NatsTransport, Storage};
use event_runtime::transport::Transport;
use event_runtime::{App, Context, DomainEvent, Envelope};
use serde::{Deserialize, Serialize};

use event_conformance::fixture::tempdir;
use event_conformance::servers::NatsServer;

/// A reading of a meter.
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(context = "meters")]
struct Reading {
    #[event(key)]
    meter: String,
    seq: u32,
}

const EVENTS: u32 = 3000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_event_is_lost_when_the_server_is_killed_mid_stream() {
    let Some(binary) = NatsServer::binary() else {
        return;
    };
    let dir = tempdir("reliability");
    let mut server = NatsServer::start(&binary, &dir, &[]);
    let mut config = NatsConfig::new(server.url())
        .prefix("rel")
        .storage(Storage::File);
    config.request_timeout = Duration::from_secs(2);
    config.max_reconnect_delay = Duration::from_millis(200);
    let transport = NatsTransport::connect(config).await.unwrap();

    let seen: Arc<Mutex<BTreeSet<u32>>> = Arc::default();
    let deliveries = Arc::new(AtomicU32::new(0));
    let mut app = App::with_transport(transport.clone()).await.unwrap();
    let (sink, count) = (seen.clone(), deliveries.clone());
    app.partitions(3).subscribe::<Reading, _>(
        "billing",
        move |event: Envelope<Reading>, _: Context| {
            let (sink, count) = (sink.clone(), count.clone());
            async move {
                count.fetch_add(1, Ordering::SeqCst);
                sink.lock().unwrap().insert(event.data.seq);
                Ok(())
            }
        },
    );
    let running = app.start().await.unwrap();

    // A producer that retries what it could not confirm (same event, same id).
    let published = Arc::new(AtomicU32::new(0));
    let retries = Arc::new(AtomicU32::new(0));
    let producer = {
        let (publisher, published, retries) =
            (running.publisher(), published.clone(), retries.clone());
        tokio::spawn(async move {
            for seq in 0..EVENTS {
                let event = Envelope::event(Reading {
                    meter: format!("m-{}", seq % 13),
                    seq,
                });
                let deadline = Instant::now() + Duration::from_secs(60);
                while let Err(err) = publisher.publish(event.clone()).await {
                    assert!(Instant::now() < deadline, "publish never succeeded: {err}");
                    retries.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                published.store(seq + 1, Ordering::SeqCst);
            }
        })
    };

    // Kill the server once a third is published and the consumer is busy.
    let deadline = Instant::now() + Duration::from_secs(60);
    while published.load(Ordering::SeqCst) < EVENTS / 3 || seen.lock().unwrap().len() < 100 {
        assert!(Instant::now() < deadline, "no progress before the kill");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let at_kill = (published.load(Ordering::SeqCst), seen.lock().unwrap().len());
    server.kill();
    tokio::time::sleep(Duration::from_millis(700)).await;
    server.restart();
    eprintln!("killed at {at_kill:?} (published, handled); restarted");

    producer.await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    while seen.lock().unwrap().len() < EVENTS as usize {
        assert!(
            Instant::now() < deadline,
            "the consumer did not resume: {} of {EVENTS} handled",
            seen.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(running.wait_idle(Duration::from_secs(30)).await, "lag left");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen, (0..EVENTS).collect::<BTreeSet<_>>(), "no event lost");
    let stored: u64 = transport.end_offsets("meters").await.unwrap().iter().sum();
    let stats = running.stats("billing").unwrap();
    eprintln!(
        "publish retries {}, stored {stored}, deliveries {}, {stats:?}",
        retries.load(Ordering::SeqCst),
        deliveries.load(Ordering::SeqCst)
    );
    assert!(stored >= u64::from(EVENTS));
    // Stored copies beyond the events are producer retries after a lost acknowledgement; the
    // duplicate window (rebuilt by the server at restart) or the dedupe store drops them.
    assert_eq!(stats.handled, u64::from(EVENTS), "each event handled once");
    running.stop().await;
}

/// With the server down, a publish keeps trying for its `PublishRetry` bound and then fails with
/// an `Unavailable` error that says how long it tried; several publishing at once all end within
/// the bound. A publish that is still retrying when the server comes back succeeds, and the
/// event is stored and handled once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_during_an_outage_is_bounded_and_reported() {
    use event_runtime::app::PublishError;
    use event_runtime::retry::PublishRetry;
    use event_runtime::transport::TransportErrorKind;

    let Some(binary) = NatsServer::binary() else {
        return;
    };
    let dir = tempdir("outage");
    let mut server = NatsServer::start(&binary, &dir, &[]);
    let mut config = NatsConfig::new(server.url())
        .prefix("outage")
        .storage(Storage::File);
    config.request_timeout = Duration::from_millis(500);
    config.max_reconnect_delay = Duration::from_millis(100);
    let transport = NatsTransport::connect(config).await.unwrap();
    let seen: Arc<Mutex<Vec<u32>>> = Arc::default();
    let mut app = App::with_transport(transport.clone()).await.unwrap();
    let sink = seen.clone();
    app.partitions(2)
        .publish_retry(PublishRetry::for_up_to(Duration::from_millis(1500)))
        .subscribe::<Reading, _>("billing", move |event: Envelope<Reading>, _: Context| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push(event.data.seq);
                Ok(())
            }
        });
    let running = app.start().await.unwrap();
    let publisher = running.publisher();
    let reading = |seq| {
        Envelope::event(Reading {
            meter: format!("m-{seq}"),
            seq,
        })
    };
    publisher.publish(reading(0)).await.unwrap();

    server.kill();
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
            }
            other => panic!("a publish during the outage returned {other:?}"),
        }
    }
    let took = started.elapsed();
    // The bound (1.5 s) plus at most one attempt's own timeout (0.5 s) and scheduling slack.
    assert!(
        took >= Duration::from_millis(1000),
        "gave up early: {took:?}"
    );
    assert!(took < Duration::from_secs(5), "not bounded: {took:?}");

    // A publish that keeps trying across the restart gets through.
    let patient = publisher
        .clone()
        .with_retry(PublishRetry::for_up_to(Duration::from_secs(30)));
    let pending = tokio::spawn(async move { patient.publish(reading(100)).await });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!pending.is_finished(), "published with the server down");
    server.restart();
    pending
        .await
        .unwrap()
        .expect("published once the server is back");

    let deadline = Instant::now() + Duration::from_secs(30);
    while !seen.lock().unwrap().contains(&100) {
        assert!(
            Instant::now() < deadline,
            "the event after the outage was not handled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(running.wait_idle(Duration::from_secs(10)).await);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.iter().filter(|s| **s == 100).count(), 1, "{seen:?}");
    assert!(seen.contains(&0));
    running.stop().await;
}
