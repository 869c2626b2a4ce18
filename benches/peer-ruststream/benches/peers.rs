//! Our framework on NATS JetStream side by side with its closest Rust peer, RustStream
//! (`ruststream` 0.7.7 + `ruststream-nats` 0.7.1 from crates.io), on one server, in one process
//! and one run (issue 11). Both sides get the same events: `EVT_BENCH_EVENTS` (default 20,000)
//! readings of about 512 B of JSON over 64 keys, stored in a JetStream stream on file storage,
//! a fresh stream per side and run, every publish acknowledged by the server before it counts.
//!
//! - **publish, each ack awaited**: ours `Publisher::publish`, RustStream's JetStream publisher
//!   `message(..).to(..).publish()`, one event at a time;
//! - **publish, 100 at a time**: ours `Publisher::publish_all` of 100 events (pipelined, then
//!   every acknowledgement awaited), RustStream's idiomatic concurrent form, `join_all` of 100
//!   publishes (each sends and awaits its acknowledgement; RustStream has no batch publish);
//! - **consume to the handler**: the events are stored first, then the clock runs from the
//!   app's start until the handler has seen all of them: ours an app's group (per-key lanes,
//!   dedupe, retries, dead letters, commit per batch), RustStream a durable JetStream pull
//!   consumer (its `JetStreamSubject`) dispatched over `workers(64, by_key)` lanes, acking each
//!   message; and once more against RustStream's default dispatch (`workers(1)`: one delivery
//!   at a time, no concurrency across keys), in case that is the faster of its two.
//!
//! What each side writes is its own wire, as a user of it gets it. RustStream is given the
//! features of ours that it has, used as its documentation shows: a JetStream deduplication id
//! (`message_id`, the `Nats-Msg-Id` header) and the `nats-partition-key` header its keyed lanes
//! read, so both sides dedupe appends and keep per-key order with concurrency across keys. It
//! has no dead letters or consumer-side dedupe; ours keeps them on (in memory,
//! `App::with_transport`).
//!
//! Each path runs `EVT_BENCH_ROUNDS` (default 3) rounds, each on fresh streams. Publishing
//! alternates the two sides in 10 segments of the events within a round, and consuming
//! alternates which side goes first between rounds, so both see the same load from the rest of
//! the machine. Prints the median events per second of each side, the median of the rounds'
//! ratios ours / RustStream (goal: >= 1.0x on every path), each side's CPU time in this process
//! per event (the client's own work; the server's is not in it) and how busy the machine's cores
//! were meanwhile (near 100%: bound by CPU). No assertions.
//!
//! `EVT_NATS_URL=nats://127.0.0.1:4222 cargo bench -p event-bench-peers --bench peers`, or
//! `scripts/bench.sh peers`, which starts a server.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use event_bench_support::{Spent, Stopwatch, env_or, median};
use event_nats::{NatsConfig, NatsTransport, Storage};
use event_runtime::{App, Context, DomainEvent, Envelope};
use futures_util::future::join_all;
use ruststream::HeaderMap;
use ruststream::runtime::RunningApp;
use ruststream_nats::prelude::*;
use ruststream_nats::{JetStreamPublisher, PARTITION_KEY_HEADER};
use serde::{Deserialize, Serialize};

/// A reading of a meter: the event both frameworks carry, about 512 bytes of JSON.
#[derive(DomainEvent, Outgoing, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(context = "meters")]
struct Reading {
    #[event(key)]
    meter: String,
    seq: u64,
    watts: u64,
    note: String,
}

const KEYS: u64 = 64;
/// Makes a reading's JSON about 512 bytes.
const NOTE_LEN: usize = 456;

fn readings(n: usize) -> Vec<Reading> {
    let note: String = "steady load, no anomaly; "
        .chars()
        .cycle()
        .take(NOTE_LEN)
        .collect();
    (0..n as u64)
        .map(|seq| Reading {
            meter: format!("meter-{:02}", seq % KEYS),
            seq,
            watts: seq * 7 % 5000,
            note: note.clone(),
        })
        .collect()
}

/// Names unique to this process and run.
fn tag(what: &str, round: usize) -> String {
    format!("{what}{round}p{}", std::process::id())
}

// --- Ours ----------------------------------------------------------------------------------

async fn our_transport(url: &str, prefix: &str) -> NatsTransport {
    NatsTransport::connect(NatsConfig::new(url).prefix(prefix).storage(Storage::File))
        .await
        .unwrap()
}

/// Our publisher on a fresh topic (one stream), warmed up: the topic exists before the clock
/// starts; and the name of that stream.
async fn ours_publisher(url: &str, tag: &str) -> (event_runtime::Publisher<NatsTransport>, String) {
    let transport = our_transport(url, &format!("ev{tag}")).await;
    let stream = transport.stream_name("meters", 0);
    let mut app = App::with_transport(transport).await.unwrap();
    app.partitions(1);
    let publisher = app.publisher();
    publisher
        .publish(Envelope::event(readings(1).remove(0)))
        .await
        .unwrap();
    (publisher, stream)
}

/// Ours, publishing `events` one acknowledgement at a time (`batch == 1`) or `batch` at a time.
async fn ours_publish(
    publisher: &event_runtime::Publisher<NatsTransport>,
    events: Vec<Envelope<Reading>>,
    batch: usize,
) {
    if batch == 1 {
        for event in events {
            publisher.publish(event).await.unwrap();
        }
    } else {
        let mut events = events.into_iter();
        loop {
            let chunk: Vec<_> = events.by_ref().take(batch).collect();
            if chunk.is_empty() {
                break;
            }
            publisher.publish_all(chunk).await.unwrap();
        }
    }
}

/// Ours, consuming `n` stored events: an app's group from its start until the handler saw all.
async fn ours_consume(url: &str, n: usize, tag: &str) -> Spent {
    let mut app = App::with_transport(our_transport(url, &format!("ev{tag}")).await)
        .await
        .unwrap();
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
    let mut events = readings(n).into_iter().map(Envelope::event);
    loop {
        let chunk: Vec<_> = events.by_ref().take(500).collect();
        if chunk.is_empty() {
            break;
        }
        publisher.publish_all(chunk).await.unwrap();
    }
    let clock = Stopwatch::start();
    let running = app.start().await.unwrap();
    done.notified().await;
    let spent = clock.spent();
    running.stop().await;
    spent
}

// --- RustStream ----------------------------------------------------------------------------

/// The stream RustStream's side writes to, created as a user of it would (its docs leave stream
/// management to the JetStream API): one subject, file storage, the same duplicate window as
/// ours.
async fn peer_stream(js: &async_nats::jetstream::Context, tag: &str) -> (String, String) {
    let (stream, subject) = (format!("rs{tag}"), format!("rs{tag}.readings"));
    js.create_stream(async_nats::jetstream::stream::Config {
        name: stream.clone(),
        subjects: vec![subject.clone()],
        storage: async_nats::jetstream::stream::StorageType::File,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .unwrap();
    (stream, subject)
}

/// A RustStream app holding nothing but a JetStream publisher, which it hands out the way its
/// docs show for publishing from outside a handler (`RunningApp::publisher`).
async fn peer_publisher(url: &str) -> (RunningApp, JetStreamPublisher) {
    let broker = NatsBroker::new(url).bindable();
    let token = broker.bind(JetStreamPublish::default());
    let running = RustStream::new(AppInfo::new("peer-publisher", "0.1.0"))
        .with_broker(broker, |_| {})
        .start()
        .await
        .unwrap();
    let publisher = running.publisher(token).await.unwrap();
    (running, publisher)
}

/// The headers RustStream's side sends: the key its keyed lanes read.
fn peer_headers(reading: &Reading) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(PARTITION_KEY_HEADER, reading.meter.clone());
    headers
}

/// One RustStream publish: the reading as JSON (its default codec), its key, a deduplication id.
async fn peer_publish_one(publisher: &JetStreamPublisher, subject: &str, reading: &Reading) {
    publisher
        .message(reading)
        .to(subject)
        .with_headers(peer_headers(reading))
        .message_id(format!("{}-{}", reading.meter, reading.seq))
        .publish()
        .await
        .unwrap();
}

async fn peer_publish_all(
    publisher: &JetStreamPublisher,
    subject: &str,
    readings: &[Reading],
    batch: usize,
) {
    if batch == 1 {
        for reading in readings {
            peer_publish_one(publisher, subject, reading).await;
        }
    } else {
        for chunk in readings.chunks(batch) {
            join_all(
                chunk
                    .iter()
                    .map(|reading| peer_publish_one(publisher, subject, reading)),
            )
            .await;
        }
    }
}

/// RustStream's publisher on a fresh stream, warmed up as ours is; the app to shut down after.
async fn peer_publishing(
    url: &str,
    js: &async_nats::jetstream::Context,
    tag: &str,
) -> (RunningApp, JetStreamPublisher, String) {
    let (_, subject) = peer_stream(js, tag).await;
    let (running, publisher) = peer_publisher(url).await;
    let mut warm = readings(1).remove(0);
    warm.seq = u64::MAX;
    peer_publish_one(&publisher, &subject, &warm).await;
    (running, publisher, subject)
}

/// What RustStream's handler counts into (its handlers are plain functions; the benchmark's
/// state is process-wide).
static PEER_HANDLED: AtomicU64 = AtomicU64::new(0);
static PEER_TOTAL: AtomicU64 = AtomicU64::new(u64::MAX);
static PEER_DONE: tokio::sync::Notify = tokio::sync::Notify::const_new();
/// The stream and subject the next consumer app reads (the `#[subscriber]` source expression is
/// evaluated when the app is built).
static PEER_SOURCE: Mutex<(String, String)> = Mutex::new((String::new(), String::new()));

fn peer_count(reading: &Reading) -> HandlerOutcome {
    std::hint::black_box(reading);
    if PEER_HANDLED.fetch_add(1, Ordering::Relaxed) + 1 == PEER_TOTAL.load(Ordering::Relaxed) {
        PEER_DONE.notify_one();
    }
    HandlerOutcome::ack()
}

/// Keyed lanes: per-key order with concurrency across keys, as ours.
#[subscriber(
    JetStreamSubject::new(peer_source_subject(), peer_source_stream()).durable("bench"),
    workers(64, by_key)
)]
async fn peer_handle(reading: &Reading) -> HandlerOutcome {
    peer_count(reading)
}

/// RustStream's default dispatch: one delivery at a time, in stream order.
#[subscriber(JetStreamSubject::new(peer_source_subject(), peer_source_stream()).durable("bench"))]
async fn peer_handle_sequential(reading: &Reading) -> HandlerOutcome {
    peer_count(reading)
}

fn peer_source_subject() -> String {
    PEER_SOURCE.lock().unwrap().1.clone()
}

fn peer_source_stream() -> String {
    PEER_SOURCE.lock().unwrap().0.clone()
}

async fn peer_consume(
    url: &str,
    js: &async_nats::jetstream::Context,
    n: usize,
    tag: &str,
    keyed: bool,
) -> Spent {
    let (stream, subject) = peer_stream(js, tag).await;
    let (publisher_app, publisher) = peer_publisher(url).await;
    peer_publish_all(&publisher, &subject, &readings(n), 100).await;
    publisher_app.shutdown().await.unwrap();
    *PEER_SOURCE.lock().unwrap() = (stream, subject);
    PEER_HANDLED.store(0, Ordering::Relaxed);
    PEER_TOTAL.store(n as u64, Ordering::Relaxed);
    let app = RustStream::new(AppInfo::new("peer-consumer", "0.1.0")).with_broker(
        NatsBroker::new(url),
        |b| {
            if keyed {
                b.include(peer_handle);
            } else {
                b.include(peer_handle_sequential);
            }
        },
    );
    let done = PEER_DONE.notified();
    let clock = Stopwatch::start();
    let running = app.start().await.unwrap();
    done.await;
    let spent = clock.spent();
    running.shutdown().await.unwrap();
    spent
}

// --- The comparison ------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Path {
    PublishEach,
    PublishHundred,
    Consume,
    /// Ours as in `Consume`, RustStream with its default dispatch (no concurrency at all).
    ConsumeSequential,
}

/// Publishing in one round: both sides on fresh streams, alternating in 10 segments of the
/// events (the side that goes first alternating too), so that both see the same load from the
/// rest of the machine. Returns what each side took (ours, RustStream) for its `n` events, and
/// the bytes the server stored per message on each side's stream.
async fn publish_round(
    url: &str,
    js: &async_nats::jetstream::Context,
    n: usize,
    batch: usize,
    round: usize,
) -> (Spent, Spent, (u64, u64)) {
    let (ours, our_stream) = ours_publisher(url, &tag(&format!("op{batch}x"), round)).await;
    let peer_tag = tag(&format!("rp{batch}x"), round);
    let (peer_app, peer, subject) = peer_publishing(url, js, &peer_tag).await;
    let all = readings(n);
    let segment = n.div_ceil(10);
    let (mut ours_spent, mut peer_spent) = (Spent::default(), Spent::default());
    for (part, readings) in all.chunks(segment).enumerate() {
        // Our envelopes (id, time) are made before the clock starts.
        let mut events: Option<Vec<Envelope<Reading>>> =
            Some(readings.iter().cloned().map(Envelope::event).collect());
        let ours_first = (part + round).is_multiple_of(2);
        for ours_turn in [ours_first, !ours_first] {
            let clock = Stopwatch::start();
            if ours_turn {
                let events = events.take().unwrap_or_default();
                ours_publish(&ours, events, batch).await;
                ours_spent += clock.spent();
            } else {
                peer_publish_all(&peer, &subject, readings, batch).await;
                peer_spent += clock.spent();
            }
        }
    }
    peer_app.shutdown().await.unwrap();
    let stored = (
        stored_per_message(js, &our_stream).await,
        stored_per_message(js, &format!("rs{peer_tag}")).await,
    );
    (ours_spent, peer_spent, stored)
}

/// The bytes the server holds per message of `stream` (subject, headers and body, by its count).
async fn stored_per_message(js: &async_nats::jetstream::Context, stream: &str) -> u64 {
    let info = js
        .get_stream(stream)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone();
    info.state.bytes / info.state.messages.max(1)
}

/// Consuming in one round: both sides, the one that goes first alternating between rounds.
async fn consume_round(
    url: &str,
    js: &async_nats::jetstream::Context,
    n: usize,
    keyed: bool,
    round: usize,
) -> (Spent, Spent) {
    let (ours_tag, peer_tag) = (
        tag(&format!("oc{}x", u8::from(keyed)), round),
        tag(&format!("rc{}x", u8::from(keyed)), round),
    );
    if round.is_multiple_of(2) {
        let ours = ours_consume(url, n, &ours_tag).await;
        (ours, peer_consume(url, js, n, &peer_tag, keyed).await)
    } else {
        let peer = peer_consume(url, js, n, &peer_tag, keyed).await;
        (ours_consume(url, n, &ours_tag).await, peer)
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let Ok(url) = std::env::var("EVT_NATS_URL") else {
        println!("skipped: set EVT_NATS_URL to a NATS server with JetStream");
        return;
    };
    let n = env_or("EVT_BENCH_EVENTS", 20_000);
    let rounds = env_or("EVT_BENCH_ROUNDS", 3).max(1);
    let sizes: Vec<usize> = readings(n)
        .iter()
        .map(|r| serde_json::to_vec(r).unwrap().len())
        .collect();
    let sample = sizes.iter().sum::<usize>() / sizes.len().max(1);
    println!(
        "ours vs RustStream 0.7.7 + ruststream-nats 0.7.1 on NATS JetStream (file storage): \
         {n} events of {sample} B JSON (mean) over {KEYS} keys, {rounds} rounds, median of each"
    );
    println!(
        "{:<30} {:>10} {:>13} {:>7} {:>17} {:>12}",
        "path", "ours/s", "RustStream/s", "ratio", "CPU us/event o/R", "busy o/R"
    );
    // Stream management for RustStream's side, on a connection of our transport's.
    let admin = our_transport(&url, &format!("admin{}", std::process::id())).await;
    let js = admin.jetstream().clone();
    let paths = [
        ("publish, each ack awaited", Path::PublishEach),
        ("publish, 100 at a time", Path::PublishHundred),
        ("consume to the handler", Path::Consume),
        ("consume, RustStream workers(1)", Path::ConsumeSequential),
    ];
    let mut stored = None;
    for (label, path) in paths {
        let (mut ours, mut theirs, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        let (mut our_cpu, mut their_cpu) = (Vec::new(), Vec::new());
        let (mut our_busy, mut their_busy) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            let (our_spent, peer_spent) = match path {
                Path::PublishEach | Path::PublishHundred => {
                    let batch = if matches!(path, Path::PublishEach) {
                        1
                    } else {
                        100
                    };
                    let (ours, theirs, bytes) = publish_round(&url, &js, n, batch, round).await;
                    stored = Some(bytes);
                    (ours, theirs)
                }
                Path::Consume => consume_round(&url, &js, n, true, round).await,
                Path::ConsumeSequential => consume_round(&url, &js, n, false, round).await,
            };
            let (our_rate, peer_rate) = (our_spent.rate(n), peer_spent.rate(n));
            ours.push(our_rate);
            theirs.push(peer_rate);
            ratios.push(our_rate / peer_rate);
            our_cpu.push(our_spent.cpu_micros(n));
            their_cpu.push(peer_spent.cpu_micros(n));
            our_busy.push(our_spent.machine_busy() * 100.0);
            their_busy.push(peer_spent.machine_busy() * 100.0);
        }
        println!(
            "{label:<30} {:>10.0} {:>13.0} {:>6.2}x {:>8.1} / {:<6.1} {:>4.0}% / {:.0}%",
            median(ours),
            median(theirs),
            median(ratios),
            median(our_cpu),
            median(their_cpu),
            median(our_busy),
            median(their_busy)
        );
    }
    if let Some((ours, theirs)) = stored {
        println!(
            "stored per message by the server (subject, headers, body): ours {ours} B, \
             RustStream {theirs} B"
        );
    }
}
