//! The cost of traces on the consumer's hot path: the in-memory engine, saturated (publish in
//! batches, a handler that returns at once), with no subscriber (the baseline), with the
//! OpenTelemetry layer and a sampler that samples nothing, with every span sampled and
//! exported (a batch processor over an exporter that drops what it gets), and with head
//! sampling of one trace in ten (`ParentBased(TraceIdRatioBased(0.1))`, the usual production
//! setting). Goals: not sampled within 3 % of the baseline, sampled within 10 %. The metrics'
//! hot-path counters (relaxed atomics) are always on and so part of every mode.
//!
//! Each mode runs the same app on a current-thread runtime inside a scoped subscriber, rounds
//! interleaved, the median round kept. `cargo bench -p event-tests --bench telemetry` (or
//! `scripts/bench.sh telemetry`). Prints nanoseconds per event and the ratios; asserts nothing.

use std::time::{Duration, Instant};

use event_bench_support::median;
use event_runtime::app::GroupOptions;
use event_runtime::{App, Context, DomainEvent, Envelope, HandlerError};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{IdGenerator, Sampler, SdkTracerProvider, SpanData, SpanExporter};
use serde::{Deserialize, Serialize};
use tracing_subscriber::layer::SubscriberExt;

#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone)]
#[event(context = "bench_telemetry")]
struct Tick {
    #[event(key)]
    key: String,
    n: u64,
}

const EVENTS: u64 = 20_000;
const KEYS: u64 = 64;
const ROUNDS: usize = 5;

/// Drops every span it is given.
#[derive(Debug)]
struct Drop;

impl SpanExporter for Drop {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        std::hint::black_box(batch);
        Ok(())
    }
}

/// Ids from counters spread by a Weyl sequence (multiples of the golden ratio): a ratio
/// sampler then samples about one trace in ten of any run of consecutive traces, the same ones
/// in every run. With random ids the share varies from run to run, and a short run (callgrind's)
/// publishes only a few batches, each sampled whole or not at all: its count would be noise.
#[derive(Debug, Default)]
struct Spread {
    traces: std::sync::atomic::AtomicU64,
    spans: std::sync::atomic::AtomicU64,
}

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

impl IdGenerator for Spread {
    fn new_trace_id(&self) -> TraceId {
        let n = self
            .traces
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        TraceId::from(u128::from(n) << 64 | u128::from(n.wrapping_mul(GOLDEN)))
    }

    fn new_span_id(&self) -> SpanId {
        let n = self
            .spans
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        SpanId::from(n.wrapping_mul(GOLDEN))
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Off,
    NotSampled,
    Sampled,
    /// One trace in ten sampled at its root (ids from [`Spread`]); the others follow their
    /// parent.
    TenthSampled,
}

/// Seconds to publish and handle `events` events.
fn run(mode: Mode, events: u64) -> f64 {
    let provider = match mode {
        Mode::Off => None,
        Mode::NotSampled => Some(
            SdkTracerProvider::builder()
                .with_sampler(Sampler::AlwaysOff)
                .build(),
        ),
        Mode::Sampled => Some(
            SdkTracerProvider::builder()
                .with_sampler(Sampler::AlwaysOn)
                .with_batch_exporter(Drop)
                .build(),
        ),
        Mode::TenthSampled => Some(
            SdkTracerProvider::builder()
                .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                    0.1,
                ))))
                .with_id_generator(Spread::default())
                .with_batch_exporter(Drop)
                .build(),
        ),
    };
    let dispatch = match &provider {
        None => tracing::Dispatch::none(),
        Some(provider) => tracing::Dispatch::new(
            tracing_subscriber::registry()
                .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("bench"))),
        ),
    };
    let seconds = tracing::dispatcher::with_default(&dispatch, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let mut app = App::in_memory().await.unwrap();
                app.group_options(
                    "g",
                    GroupOptions {
                        concurrency: 64,
                        ..GroupOptions::default()
                    },
                )
                .subscribe::<Tick, _>(
                    "g",
                    |event: Envelope<Tick>, _ctx: Context| async move {
                        std::hint::black_box(event.data.n);
                        Ok::<(), HandlerError>(())
                    },
                );
                let running = app.start().await.unwrap();
                let publisher = running.publisher();
                let started = Instant::now();
                for chunk in (0..events).collect::<Vec<_>>().chunks(500) {
                    let batch = chunk
                        .iter()
                        .map(|n| {
                            Envelope::event(Tick {
                                key: format!("k{}", n % KEYS),
                                n: *n,
                            })
                        })
                        .collect();
                    publisher.publish_all(batch).await.unwrap();
                }
                assert!(running.wait_idle(Duration::from_secs(120)).await);
                let seconds = started.elapsed().as_secs_f64();
                assert_eq!(running.stats("g").unwrap().handled, events);
                running.stop().await;
                seconds
            })
    });
    if let Some(provider) = provider {
        let _ = provider.shutdown();
    }
    seconds
}

fn main() {
    // `EVT_TELEMETRY_MODE=off|not_sampled|sampled|tenth_sampled` runs that mode once (for a profiler:
    // `valgrind --tool=callgrind`, as `scripts/callgrind.sh` does), printing nothing;
    // `EVT_TELEMETRY_EVENTS` sets how many events.
    if let Ok(only) = std::env::var("EVT_TELEMETRY_MODE") {
        let events = std::env::var("EVT_TELEMETRY_EVENTS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(EVENTS);
        let mode = match only.as_str() {
            "off" => Mode::Off,
            "not_sampled" => Mode::NotSampled,
            "sampled" => Mode::Sampled,
            "tenth_sampled" => Mode::TenthSampled,
            other => panic!(
                "EVT_TELEMETRY_MODE={other}: expected off, not_sampled, sampled or tenth_sampled"
            ),
        };
        run(mode, events);
        return;
    }
    let modes = [
        Mode::Off,
        Mode::NotSampled,
        Mode::Sampled,
        Mode::TenthSampled,
    ];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    run(Mode::Off, EVENTS); // warm-up
    for _ in 0..ROUNDS {
        for (i, mode) in modes.iter().enumerate() {
            times[i].push(run(*mode, EVENTS));
        }
    }
    let base = median(times[0].clone());
    println!(
        "telemetry on the in-memory engine, {EVENTS} events over {KEYS} keys, median of {ROUNDS} interleaved rounds:"
    );
    for (mode, t) in modes.iter().zip(times) {
        let m = median(t);
        println!(
            "  {:<12} {:>8.0} ns/event  {:>9.0} events/s  {:.3}x the baseline's time",
            format!("{mode:?}"),
            m * 1e9 / EVENTS as f64,
            EVENTS as f64 / m,
            m / base
        );
    }
}
