//! The framework on Kafka against raw rdkafka, same broker, same run, same messages (the same
//! key, `ce_` headers and payload bytes), one partition:
//!
//! - publish, awaiting each delivery report: `Publisher::publish` vs `FutureProducer::send`;
//! - publish in batches of 100: `Publisher::publish_all` vs 100 enqueued sends + their reports;
//! - consume: an app's group (fetch, decode, dedupe, handler, commit per batch) vs a
//!   `StreamConsumer` assigned to the partition that stores each message's offset after handling
//!   it and auto-commits (the usual at-least-once rdkafka loop).
//!
//! Both producers have the same settings (idempotent, `acks=all`, `linger.ms=1`, and one record
//! per produce batch: tansu 0.6 answers ListOffsets with the base offset of the newest batch + 1,
//! so the framework's fetch, which reads up to the high watermark, would see short watermarks
//! with larger batches; both sides pay the same for it). Publishing
//! alternates the two sides in segments and consuming alternates which side goes first, so both
//! see the same load from the rest of the machine. Prints events per second and the ratio
//! framework / raw (the median of the rounds' ratios; goal >= 0.9x). No assertions.
//! Needs a broker: `EVT_KAFKA_BOOTSTRAP=127.0.0.1:9092 cargo bench -p event-kafka --bench kafka`
//! (scripts/bench.sh starts tansu; events per round: `EVT_BENCH_EVENTS`, default 5000;
//! rounds: `EVT_BENCH_ROUNDS`, default 3).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use event_kafka::{KafkaConfig, KafkaTransport};
use event_runtime::cloudevents::binary::{Binding, to_binary};
use event_runtime::transport::Transport as _;
use event_runtime::{App, Context, DomainEvent, Envelope};
use rdkafka::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

/// A reading of a meter.
#[derive(DomainEvent, serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq)]
#[event(context = "meters")]
struct Reading {
    #[event(key)]
    meter: String,
    seq: u64,
    watts: u64,
    note: String,
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
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

/// The wire form the transport writes (Kafka binary binding), for the raw side.
struct Wire {
    key: Vec<u8>,
    headers: OwnedHeaders,
    payload: Vec<u8>,
}

fn wire(event: &Envelope<Reading>) -> Wire {
    let message = to_binary(event, Binding::Kafka).unwrap();
    let headers = message.headers.iter().fold(
        OwnedHeaders::new_with_capacity(message.headers.len()),
        |h, (k, v)| {
            h.insert(Header {
                key: k,
                value: Some(v.as_slice()),
            })
        },
    );
    Wire {
        key: message.key.unwrap_or_default(),
        headers,
        payload: message.payload,
    }
}

struct Rates {
    framework: f64,
    raw: f64,
}

fn rate(n: usize, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64()
}

fn raw_producer(servers: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "1")
        .set("batch.num.messages", "1")
        .set("log_level", "3")
        .create()
        .unwrap()
}

/// The framework's settings for the run, under `prefix`.
fn framework_config(servers: &str, prefix: String) -> KafkaConfig {
    KafkaConfig::new(servers)
        .prefix(prefix)
        .client_option("batch.num.messages", "1")
}

/// A topic of one partition for the raw side, created through the admin API.
async fn raw_topic(servers: &str, name: &str) -> String {
    let admin = KafkaTransport::connect(KafkaConfig::new(servers)).unwrap();
    admin.ensure_topic(name, 1).await.unwrap();
    name.to_owned()
}

async fn raw_send(producer: &FutureProducer, topic: &str, chunk: &[Envelope<Reading>]) {
    let mut reports = Vec::with_capacity(chunk.len());
    for event in chunk {
        let w = wire(event);
        let record = FutureRecord::to(topic)
            .partition(0)
            .key(&w.key)
            .headers(w.headers)
            .payload(&w.payload);
        reports.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
    }
    for report in reports {
        report.await.unwrap().map_err(|(e, _)| e).unwrap();
    }
}

/// Publishing, one report at a time or in batches of `batch`, alternating in 10 segments.
async fn publish(servers: &str, n: usize, batch: usize, round: usize) -> Rates {
    let tag = format!("p{batch}r{round}x{}", std::process::id());
    let transport = KafkaTransport::connect(framework_config(servers, format!("fw{tag}"))).unwrap();
    let mut app = App::with_transport(transport).await.unwrap();
    app.partitions(1);
    let publisher = app.publisher();
    let producer = raw_producer(servers);
    let topic = raw_topic(servers, &format!("raw{tag}")).await;
    // Warm-up: both topics exist and both producers are connected before the clock starts.
    publisher.publish(events(1).remove(0)).await.unwrap();
    raw_send(&producer, &topic, &events(1)).await;
    let segment = n.div_ceil(10);
    let (mut framework_time, mut raw_time) = (Duration::ZERO, Duration::ZERO);
    for part in 0..10u32 {
        let framework_events = events(segment);
        let raw_events = events(segment);
        let framework_first = part.is_multiple_of(2);
        for side in [framework_first, !framework_first] {
            let started = Instant::now();
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
                framework_time += started.elapsed();
            } else {
                for chunk in raw_events.chunks(batch) {
                    raw_send(&producer, &topic, chunk).await;
                }
                raw_time += started.elapsed();
            }
        }
    }
    Rates {
        framework: rate(segment * 10, framework_time),
        raw: rate(segment * 10, raw_time),
    }
}

/// Consuming `n` stored events; the side that goes first alternates between rounds.
async fn consume(servers: &str, n: usize, round: usize) -> Rates {
    let tag = format!("c{round}x{}", std::process::id());
    if round.is_multiple_of(2) {
        let framework = consume_framework(servers, n, &tag).await;
        let raw = consume_raw(servers, n, &tag).await;
        Rates { framework, raw }
    } else {
        let raw = consume_raw(servers, n, &tag).await;
        let framework = consume_framework(servers, n, &tag).await;
        Rates { framework, raw }
    }
}

/// An app's group: the events are stored first, then the group starts and the clock runs until
/// the handler has seen all of them.
async fn consume_framework(servers: &str, n: usize, tag: &str) -> f64 {
    let transport = KafkaTransport::connect(framework_config(servers, format!("fw{tag}"))).unwrap();
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
    let started = Instant::now();
    let running = app.start().await.unwrap();
    done.notified().await;
    let rate = rate(n, started.elapsed());
    running.stop().await;
    rate
}

/// A consumer of its own group reading the same messages, storing each offset after "handling"
/// it, committing automatically (and once more at the end).
async fn consume_raw(servers: &str, n: usize, tag: &str) -> f64 {
    let topic = raw_topic(servers, &format!("raw{tag}")).await;
    let producer = raw_producer(servers);
    for chunk in events(n).chunks(500) {
        raw_send(&producer, &topic, chunk).await;
    }
    let started = Instant::now();
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("group.id", format!("raw{tag}"))
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        // The framework's read cursors use the same fetch wait.
        .set("fetch.wait.max.ms", "50")
        .set("log_level", "3")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(&topic, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let mut seen = 0;
    while seen < n {
        let message = consumer.recv().await.unwrap();
        consumer.store_offset_from_message(&message).unwrap();
        seen += 1;
    }
    consumer.commit_consumer_state(CommitMode::Sync).unwrap();
    rate(n, started.elapsed())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let Ok(servers) = std::env::var("EVT_KAFKA_BOOTSTRAP") else {
        println!("skipped: set EVT_KAFKA_BOOTSTRAP to a Kafka broker (scripts/bench.sh)");
        return;
    };
    let n = env_or("EVT_BENCH_EVENTS", 5_000);
    let rounds = env_or("EVT_BENCH_ROUNDS", 3).max(1);
    println!("Kafka at {servers}, {n} events per round, {rounds} rounds, median of each");
    println!(
        "{:<34} {:>14} {:>14} {:>8}",
        "path", "framework/s", "raw/s", "ratio"
    );
    let cases: [(&str, usize); 3] = [
        ("publish, each report awaited", 1),
        ("publish, batches of 100", 100),
        ("consume (handle+commit vs store)", 0),
    ];
    for (label, batch) in cases {
        let (mut framework, mut raw, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds {
            let rates = if batch == 0 {
                consume(&servers, n, round).await
            } else {
                publish(&servers, n, batch, round).await
            };
            ratios.push(rates.framework / rates.raw);
            framework.push(rates.framework);
            raw.push(rates.raw);
        }
        println!(
            "{label:<34} {:>14.0} {:>14.0} {:>7.2}x",
            median(framework),
            median(raw),
            median(ratios)
        );
    }
}
