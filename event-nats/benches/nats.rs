//! The framework on NATS JetStream against raw async-nats, same server, same run, same messages
//! (the same three headers, `Nats-Msg-Id` included, and a body of the same size: the event in
//! the CloudEvents JSON format, as the transport writes it), one partition / one stream:
//!
//! - publish, awaiting each acknowledgement: `Publisher::publish` vs `send_publish` + ack;
//! - publish in batches of 100: `Publisher::publish_all` vs 100 pipelined publishes + acks;
//! - consume: an app's group (fetch, decode, dedupe, handler, commit per batch) vs a durable
//!   pull consumer's `messages()` stream acking every message.
//!
//! Publishing alternates the two sides in segments and consuming alternates which side goes
//! first, so both see the same load from the rest of the machine. Prints events per second and
//! the ratio framework / raw (the median of the rounds' ratios; goal >= 0.95x), and each side's
//! CPU time in this process per event (the client's own work; the server's is not in it) and how
//! busy the machine's cores were meanwhile (near 100%: bound by CPU). No assertions.
//! Needs a server: `EVT_NATS_URL=nats://127.0.0.1:4222 cargo bench -p event-nats --bench nats`
//! (events per round: `EVT_BENCH_EVENTS`, default 20000; rounds: `EVT_BENCH_ROUNDS`, default 3).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use event_bench_support::{Spent, Stopwatch, env_or, median};
use event_nats::{NatsConfig, NatsTransport, Storage};
use event_runtime::{App, Context, DomainEvent, Envelope};
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};

/// A reading of a meter.
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(context = "meters")]
struct Reading {
    #[event(key)]
    meter: String,
    seq: u64,
    watts: u64,
    note: String,
}

fn events(n: usize) -> Vec<Envelope<Reading>> {
    (0..n as u64)
        .map(|seq| {
            Envelope::event(Reading {
                meter: format!("meter-{}", seq % 64),
                seq,
                watts: seq * 7 % 5000,
                note: "steady".into(),
            })
        })
        .collect()
}

/// The wire form the transport writes, for the raw side: structured content mode (the members
/// of the body in another order than the transport's, the same bytes in all).
fn wire(event: &Envelope<Reading>) -> (async_nats::HeaderMap, bytes::Bytes) {
    let body = event_runtime::cloudevents::to_json(event).unwrap();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("content-type", event_runtime::cloudevents::STRUCTURED_JSON);
    headers.insert("Nats-Msg-Id", event.id.to_string().as_str());
    headers.insert("x-evt-key", event.data.meter.as_str());
    (headers, body.into())
}

/// One round: each side's events, wall-clock and this process's CPU time.
struct Round {
    events: usize,
    framework: Spent,
    raw: Spent,
}

async fn raw_stream(js: &jetstream::Context, name: &str) -> String {
    let subject = format!("{name}.x");
    js.create_stream(stream::Config {
        name: name.to_owned(),
        subjects: vec![subject.clone()],
        storage: stream::StorageType::File,
        duplicate_window: Duration::from_secs(120),
        allow_direct: true,
        ..Default::default()
    })
    .await
    .unwrap();
    subject
}

async fn connect(url: &str, prefix: &str) -> NatsTransport {
    NatsTransport::connect(NatsConfig::new(url).prefix(prefix).storage(Storage::File))
        .await
        .unwrap()
}

/// Publishing, one acknowledgement at a time or in batches of `batch`. The two sides alternate
/// in 10 segments, so that both see the same load from whatever else runs on the machine.
async fn publish(url: &str, n: usize, batch: usize, round: usize) -> Round {
    let tag = format!("p{batch}r{round}{}", std::process::id());
    let transport = connect(url, &format!("fw{tag}")).await;
    let js = transport.jetstream().clone();
    let mut app = App::with_transport(transport).await.unwrap();
    app.partitions(1);
    let publisher = app.publisher();
    let subject = raw_stream(&js, &format!("raw{tag}")).await;
    // Warm-up: the topic exists before the clock starts.
    publisher.publish(events(1).remove(0)).await.unwrap();
    let segment = n.div_ceil(10);
    let (mut framework, mut raw) = (Spent::default(), Spent::default());
    for part in 0..10u32 {
        let framework_events = events(segment);
        let raw_events = events(segment);
        let framework_first = part.is_multiple_of(2);
        for side in [framework_first, !framework_first] {
            let clock = Stopwatch::start();
            if side {
                if batch == 1 {
                    for event in framework_events.iter().cloned() {
                        publisher.publish(event).await.unwrap();
                    }
                } else {
                    for chunk in framework_events.chunks(batch) {
                        publisher.publish_all(chunk.to_vec()).await.unwrap();
                    }
                }
                framework += clock.spent();
            } else {
                for chunk in raw_events.chunks(batch) {
                    let mut acks = Vec::with_capacity(chunk.len());
                    for event in chunk {
                        let (headers, payload) = wire(event);
                        acks.push(
                            js.send_publish(
                                subject.clone(),
                                jetstream::message::PublishMessage::build()
                                    .headers(headers)
                                    .payload(payload),
                            )
                            .await
                            .unwrap(),
                        );
                    }
                    for ack in acks {
                        ack.await.unwrap();
                    }
                }
                raw += clock.spent();
            }
        }
    }
    Round {
        events: segment * 10,
        framework,
        raw,
    }
}

/// Consuming `n` stored events; the side that goes first alternates between rounds.
async fn consume(url: &str, n: usize, round: usize) -> Round {
    let tag = format!("c{round}{}", std::process::id());
    let (framework, raw) = if round.is_multiple_of(2) {
        let framework = consume_framework(url, n, &tag).await;
        (framework, consume_raw(url, n, &tag).await)
    } else {
        let raw = consume_raw(url, n, &tag).await;
        (consume_framework(url, n, &tag).await, raw)
    };
    Round {
        events: n,
        framework,
        raw,
    }
}

/// An app's group: the events are stored first, then the group starts and the clock runs until
/// the handler has seen all of them (fetch, decode, dedupe, handler, commit per batch).
async fn consume_framework(url: &str, n: usize, tag: &str) -> Spent {
    let transport = connect(url, &format!("fw{tag}")).await;
    let mut app = App::with_transport(transport).await.unwrap();
    let handled = Arc::new(AtomicU64::new(0));
    let done = Arc::new(tokio::sync::Notify::new());
    let (count, signal) = (handled.clone(), done.clone());
    let total = n as u64;
    app.partitions(1)
        .subscribe::<Reading, _>("bench", move |_: Envelope<Reading>, _: Context| {
            let (count, signal) = (count.clone(), signal.clone());
            async move {
                if count.fetch_add(1, Ordering::Relaxed) + 1 == total {
                    signal.notify_one();
                }
                Ok(())
            }
        });
    let publisher = app.publisher();
    for chunk in events(n).chunks(500) {
        publisher.publish_all(chunk.to_vec()).await.unwrap();
    }
    let clock = Stopwatch::start();
    let running = app.start().await.unwrap();
    done.notified().await;
    let spent = clock.spent();
    running.stop().await;
    spent
}

/// A durable pull consumer reading the same messages from a stream, acking each.
async fn consume_raw(url: &str, n: usize, tag: &str) -> Spent {
    let client = async_nats::connect(url).await.unwrap();
    let js = jetstream::new(client);
    let name = format!("raw{tag}");
    let subject = raw_stream(&js, &name).await;
    for chunk in events(n).chunks(500) {
        let mut acks = Vec::with_capacity(chunk.len());
        for event in chunk {
            let (headers, payload) = wire(event);
            acks.push(
                js.send_publish(
                    subject.clone(),
                    jetstream::message::PublishMessage::build()
                        .headers(headers)
                        .payload(payload),
                )
                .await
                .unwrap(),
            );
        }
        for ack in acks {
            ack.await.unwrap();
        }
    }
    let clock = Stopwatch::start();
    let consumer: consumer::PullConsumer = js
        .create_consumer_on_stream(
            consumer::pull::Config {
                durable_name: Some("bench".into()),
                ack_policy: consumer::AckPolicy::Explicit,
                ..Default::default()
            },
            &name,
        )
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut seen = 0;
    while seen < n {
        let message = messages.next().await.unwrap().unwrap();
        message.ack().await.unwrap();
        seen += 1;
    }
    clock.spent()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let Ok(url) = std::env::var("EVT_NATS_URL") else {
        println!("skipped: set EVT_NATS_URL to a NATS server with JetStream");
        return;
    };
    let n = env_or("EVT_BENCH_EVENTS", 20_000);
    let rounds = env_or("EVT_BENCH_ROUNDS", 3).max(1);
    println!("NATS JetStream, {n} events per round, {rounds} rounds, median of each");
    println!(
        "{:<34} {:>12} {:>12} {:>7} {:>16} {:>12}",
        "path", "framework/s", "raw/s", "ratio", "CPU us/event f/r", "busy f/r"
    );
    let cases: [(&str, usize); 3] = [
        ("publish, each ack awaited", 1),
        ("publish, batches of 100", 100),
        ("consume (handle+commit vs ack)", 0),
    ];
    for (label, batch) in cases {
        let (mut framework, mut raw, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        let (mut framework_cpu, mut raw_cpu) = (Vec::new(), Vec::new());
        let (mut framework_busy, mut raw_busy) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            let round = if batch == 0 {
                consume(&url, n, round).await
            } else {
                publish(&url, n, batch, round).await
            };
            let (f, r) = (
                round.framework.rate(round.events),
                round.raw.rate(round.events),
            );
            ratios.push(f / r);
            framework.push(f);
            raw.push(r);
            framework_cpu.push(round.framework.cpu_micros(round.events));
            raw_cpu.push(round.raw.cpu_micros(round.events));
            framework_busy.push(round.framework.machine_busy() * 100.0);
            raw_busy.push(round.raw.machine_busy() * 100.0);
        }
        println!(
            "{label:<34} {:>12.0} {:>12.0} {:>6.2}x {:>7.1} / {:<6.1} {:>4.0}% / {:.0}%",
            median(framework),
            median(raw),
            median(ratios),
            median(framework_cpu),
            median(raw_cpu),
            median(framework_busy),
            median(raw_busy)
        );
    }
}
