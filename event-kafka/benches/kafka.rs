//! The framework on Kafka against raw rdkafka, same broker, same run, same messages (the same
//! key, `ce_` headers and payload bytes), one partition:
//!
//! - publish, awaiting each delivery report: `Publisher::publish` vs `FutureProducer::send`;
//! - publish in batches of 100: `Publisher::publish_all` vs 100 enqueued sends + their reports;
//! - consume: an app's group (fetch, decode, dedupe, handler, commit per batch) vs the usual
//!   at-least-once rdkafka loop: a `StreamConsumer` that subscribes as a member of its own
//!   consumer group (the framework's group joins its Kafka consumer group before it reads, so
//!   both sides pay the join; the member settings are the framework's: `cooperative-sticky`,
//!   10 s sessions) with the settings of the framework's read cursors (`fetch.wait.max.ms=50`,
//!   `auto.offset.reset=earliest`, no auto commit, no automatic offset store), resuming at the
//!   group's committed offset, that receives each message with `recv` (which hands out what
//!   librdkafka already prefetched without waiting, as the framework's cursors read), decodes it
//!   as the framework must (the `ce_` headers: `specversion` checked, `id` parsed as a UUID and
//!   `time` as RFC 3339, `source` and `type` read; the payload with `serde_json::from_slice` into
//!   a `Reading`, through `Json`'s decode), stores its offset and commits asynchronously every
//!   256 messages, then once more synchronously. The bench has no uuid or time dependency: its
//!   small `id` and `time` parsers are checked against the envelope's own values at start.
//!
//! Consuming times start-up on both sides: the framework's clock starts before `App::start`
//! (joining the Kafka group, its group's committed position read, its cursor created and
//! assigned, the first fetch), the raw side's before the consumer is created (joining the
//! group, the committed position read, the first fetch). Both stop when the last message is
//! handled; the last commit is timed on neither side (the raw side's is checked after). tansu
//! holds a new group's first member for its rebalance delay, and answers every Fetch only
//! after `fetch.wait.max.ms`, data ready or not: both sides wait the same. (Before the
//! framework joined Kafka groups, the raw side was assigned the partition directly; with the
//! join on one side only, the ratio read 0.06x.)
//!
//! Both producers have the same settings (idempotent, `acks=all`, `linger.ms=1`, and one record
//! per produce batch: tansu 0.6 answers ListOffsets with the base offset of the newest batch + 1,
//! so the framework's fetch, which reads up to the high watermark, would see short watermarks
//! with larger batches; both sides pay the same for it, and both consumers read one-record
//! batches). Publishing alternates the two sides in segments and consuming alternates which side
//! goes first, so both see the same load from the rest of the machine. Prints events per second
//! and the ratio framework / raw (the median of the rounds' ratios; goal >= 0.9x). Nothing is
//! asserted about the figures, only that the raw side decodes what it reads and commits all of
//! it.
//! Needs a broker: `EVT_KAFKA_BOOTSTRAP=127.0.0.1:9092 cargo bench -p event-kafka --bench kafka`
//! (scripts/bench.sh starts tansu; events per round: `EVT_BENCH_EVENTS`, default 5000;
//! rounds: `EVT_BENCH_ROUNDS`, default 3).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use event_bench_support::{env_or, median};
use event_kafka::{KafkaConfig, KafkaTransport};
use event_runtime::cloudevents::binary::{Binding, to_binary};
use event_runtime::codec::{Json, PayloadCodec};
use event_runtime::transport::Transport as _;
use event_runtime::{App, Context, DomainEvent, Envelope};
use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, OwnedHeaders};
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
                value: Some(v),
            })
        },
    );
    Wire {
        key: message.key.unwrap_or_default().to_vec(),
        headers,
        payload: message.payload.to_vec(),
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

/// The CloudEvents attributes the raw loop reads from a message's `ce_` headers.
struct Attributes<'a> {
    id: u128,
    source: &'a str,
    ty: &'a str,
    time_ns: i128,
}

/// A hyphenated UUID (8-4-4-4-12 hex digits) as its 128 bits.
fn parse_uuid(text: &str) -> Option<u128> {
    let bytes = text.as_bytes();
    if bytes.len() != 36 {
        return None;
    }
    let mut value = 0u128;
    for (i, &byte) in bytes.iter().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            if byte != b'-' {
                return None;
            }
        } else {
            value = value << 4 | u128::from(char::from(byte).to_digit(16)?);
        }
    }
    Some(value)
}

/// Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// An RFC 3339 timestamp (`2024-05-01T12:00:00.123456Z`, any offset) as Unix nanoseconds.
fn parse_rfc3339(text: &str) -> Option<i128> {
    let b = text.as_bytes();
    let number = |from: usize, to: usize| -> Option<i64> {
        b.get(from..to)?.iter().try_fold(0i64, |n, &digit| {
            digit
                .is_ascii_digit()
                .then(|| n * 10 + i64::from(digit - b'0'))
        })
    };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (number(0, 4)?, number(5, 7)?, number(8, 10)?);
    let (hour, minute, second) = (number(11, 13)?, number(14, 16)?, number(17, 19)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        1..=12 => 31,
        _ => return None,
    };
    if !(1..=month_days).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut at = 19;
    let mut nanos = 0;
    if b[at] == b'.' {
        let from = at + 1;
        at = from;
        while b.get(at).is_some_and(u8::is_ascii_digit) {
            at += 1;
        }
        let digits = at - from;
        if !(1..=9).contains(&digits) {
            return None;
        }
        nanos = number(from, at)? * 10i64.pow(9 - digits as u32);
    }
    let offset = match &b[at..] {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (hours, minutes) = (number(at + 1, at + 3)?, number(at + 4, at + 6)?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            let seconds = (hours * 60 + minutes) * 60;
            if *sign == b'-' { -seconds } else { seconds }
        }
        _ => return None,
    };
    let seconds =
        days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset;
    Some(i128::from(seconds) * 1_000_000_000 + i128::from(nanos))
}

/// Reads the `ce_` headers: `specversion` checked, `id` and `time` parsed, `source` and `type`
/// kept (borrowed: the message outlives its handling).
fn attributes<H: Headers>(headers: &H) -> Option<Attributes<'_>> {
    let (mut specversion, mut id, mut source, mut ty, mut time) = (None, None, None, None, None);
    for header in headers.iter() {
        let Some(name) = header.key.strip_prefix("ce_") else {
            continue;
        };
        let slot = match name {
            "specversion" => &mut specversion,
            "id" => &mut id,
            "source" => &mut source,
            "type" => &mut ty,
            "time" => &mut time,
            _ => continue,
        };
        *slot = Some(std::str::from_utf8(header.value?).ok()?);
    }
    (specversion? == "1.0").then_some(())?;
    Some(Attributes {
        id: parse_uuid(id?)?,
        source: source.filter(|s| !s.is_empty())?,
        ty: ty.filter(|t| !t.is_empty())?,
        time_ns: parse_rfc3339(time?)?,
    })
}

/// Decodes and "handles" one message: its attributes, then its payload as a `Reading`
/// (`Json`'s decode is `serde_json::from_slice`; the bench has no serde_json of its own).
fn handle<M: Message>(message: &M) {
    let attributes = message.headers().and_then(attributes).expect("ce_ headers");
    let reading: Reading =
        <Json as PayloadCodec<Reading>>::decode(message.payload().unwrap_or_default())
            .expect("a Reading");
    std::hint::black_box((attributes, reading));
}

/// The raw side reads what the framework writes: the hand-written parsers agree with the
/// envelope's own values.
fn check_raw_decoding() {
    let event = events(1).remove(0);
    let w = wire(&event);
    let read = attributes(&w.headers).expect("ce_ headers");
    assert_eq!(
        read.id,
        event.id.as_uuid().expect("ours are UUIDs").as_u128()
    );
    assert_eq!(read.ty, event.ty);
    assert_eq!(read.source, event.source);
    assert_eq!(read.time_ns, event.time.unix_timestamp_nanos());
    let reading: Reading = <Json as PayloadCodec<Reading>>::decode(&w.payload).unwrap();
    assert_eq!(reading, event.data);
}

/// Messages between two asynchronous commits of the stored offsets (the framework reads up to
/// 256 records at a time and commits while the next ones run).
const COMMIT_EVERY: usize = 256;

/// The raw loop of the module docs: the events are stored first, then the clock runs from the
/// consumer's creation until the last message is handled; the final synchronous commit follows
/// (checked, not timed, as the framework's last commit).
async fn consume_raw(servers: &str, n: usize, tag: &str) -> f64 {
    let topic = raw_topic(servers, &format!("raw{tag}")).await;
    let producer = raw_producer(servers);
    for chunk in events(n).chunks(500) {
        raw_send(&producer, &topic, chunk).await;
    }
    let started = Instant::now();
    // The framework's read cursors' settings, as a member of its own consumer group with the
    // settings of the framework's group member (cooperative-sticky, 10 s sessions: the default
    // `claim_ttl`): the framework's group on Kafka joins its Kafka consumer group before it reads
    // (docs/delivery.md, "Running several instances"), so both sides pay the join.
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("group.id", format!("raw{tag}"))
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "2000")
        .set("allow.auto.create.topics", "false")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "50")
        .set("log_level", "3")
        .create()
        .unwrap();
    // The coordinator assigns the partition; the consumer resumes from the group's committed
    // offset (a new group: the earliest).
    consumer.subscribe(&[topic.as_str()]).unwrap();
    for seen in 1..=n {
        let message = consumer.recv().await.unwrap();
        handle(&message);
        consumer.store_offset_from_message(&message).unwrap();
        if seen % COMMIT_EVERY == 0 {
            consumer.commit_consumer_state(CommitMode::Async).unwrap();
        }
    }
    let elapsed = started.elapsed();
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(err) => panic!("final commit: {err}"),
    }
    let mut partition = TopicPartitionList::new();
    partition.add_partition(&topic, 0);
    let committed = tokio::task::block_in_place(|| {
        consumer.committed_offsets(partition, Duration::from_secs(10))
    })
    .unwrap();
    assert_eq!(
        committed.find_partition(&topic, 0).map(|p| p.offset()),
        Some(Offset::Offset(n as i64)),
        "the raw group committed every message"
    );
    rate(n, elapsed)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let Ok(servers) = std::env::var("EVT_KAFKA_BOOTSTRAP") else {
        println!("skipped: set EVT_KAFKA_BOOTSTRAP to a Kafka broker (scripts/bench.sh)");
        return;
    };
    let n = env_or("EVT_BENCH_EVENTS", 5_000);
    let rounds = env_or("EVT_BENCH_ROUNDS", 3).max(1);
    check_raw_decoding();
    println!("Kafka at {servers}, {n} events per round, {rounds} rounds, median of each");
    println!(
        "{:<34} {:>14} {:>14} {:>8}",
        "path", "framework/s", "raw/s", "ratio"
    );
    let cases: [(&str, usize); 3] = [
        ("publish, each report awaited", 1),
        ("publish, batches of 100", 100),
        ("consume (decode, handle, commit)", 0),
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
