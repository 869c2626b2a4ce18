//! The app's metrics in the Prometheus / OpenMetrics text format (feature `prometheus`).
//!
//! One line of setup serves them for scraping:
//!
//! ```no_run
//! # async fn run(mut running: event_runtime::Running<event_runtime::transport::memory::MemoryTransport>) -> std::io::Result<()> {
//! let addr = running.serve_metrics("127.0.0.1:9464").await?; // GET http://127.0.0.1:9464/metrics
//! # Ok(()) }
//! ```
//!
//! or, to add them to a registry of your own, [`Metrics::register`] after each
//! [`Metrics::refresh`]. What is exposed (label names after the OpenTelemetry messaging
//! conventions, dots as underscores; `group` is `messaging_consumer_group_name`):
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `messaging_client_consumed_messages_total` | counter | system, group |
//! | `messaging_process_duration_seconds` | histogram | system, group |
//! | `messaging_client_sent_messages_total` | counter | system, destination |
//! | `messaging_client_operation_duration_seconds` | histogram | system, destination, `messaging_operation_name="send"` |
//! | `evt_consumer_handled_total`, `_duplicates_total` (dedupe hits), `_retries_total`, `_skipped_total`, `_unknown_types_total`, `_redelivered_total`, `_claim_waits_total` (waits for a dedupe key another delivery held), `_engine_errors_total` | counter | group |
//! | `evt_consumer_in_flight` | gauge | group |
//! | `evt_dead_letters_total` | counter | group, `reason` |
//! | `evt_dlq_depth` | gauge | group: open dead letters |
//! | `evt_consumer_lag_records` | gauge | group, destination, partition |
//! | `evt_consumer_lag_seconds` | gauge | the same: age of the oldest record not yet handled |
//! | `evt_consumer_status` | gauge (state set) | the same and `status` = `ok`, `lagging`, `stalled` |
//! | `evt_send_errors_total` | counter | system, destination |
//! | `evt_outbox_backlog` | gauge | rows staged and not yet relayed (SQL stores) |
//! | `evt_outbox_oldest_age_seconds` | gauge | how long the oldest row not yet relayed has waited (0 when none) |
//! | `evt_deprecated_uses_total` | counter | `type`, `version`, `direction` (`published`, `consumed`) |
//! | `evt_saga_instances` | gauge | `saga`, `status` (`running`, `completed`, `failed`, `stuck`) |
//! | `evt_saga_timers_pending` | gauge | `saga` |
//! | `evt_saga_timer_lateness_seconds` | gauge | `saga`: how long the earliest pending timer is overdue (0 when none is) |
//! | `evt_saga_discarded_total` | counter | `saga`: messages dropped by `Unknown::Discard` |
//!
//! Durations use the buckets [`crate::telemetry::DURATION_BUCKETS`].
//!
//! **Consumer status**, after Burrow's rules, over the last [`STATUS_WINDOW`] refreshes (each
//! scrape is one; scraping every 15 s gives a window of a minute or so): `ok` when the lag was
//! zero at any of them; `stalled` when the lag stayed above zero and the committed position did
//! not move at all; `lagging` when it moved but the lag did not shrink; `ok` otherwise (and
//! until there are two refreshes).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::app::Lag;
use crate::consumer::{GroupStats, StatsSnapshot};
use crate::deprecation::DeprecatedUse;
use crate::dlq::DeadLetters;
use crate::telemetry::{HistogramSnapshot, Sent};
use crate::transport::{Transport, TransportError, now_ms};

/// How many refreshes the consumer status looks back over.
pub const STATUS_WINDOW: usize = 5;

/// A consumer's status on one partition, after Burrow's rules (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Caught up at some point of the window, or catching up.
    Ok,
    /// Behind, and not catching up.
    Lagging,
    /// Behind, and its position did not move over the window.
    Stalled,
}

impl Status {
    /// `ok`, `lagging` or `stalled`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Lagging => "lagging",
            Status::Stalled => "stalled",
        }
    }
}

/// One group on one partition, as last refreshed.
#[derive(Clone, Debug, PartialEq)]
pub struct PartitionLag {
    /// Positions.
    pub lag: Lag,
    /// Age in seconds of the oldest record not yet handled (0 without lag).
    pub age_seconds: f64,
    /// The status over the window.
    pub status: Status,
}

/// One group's counters.
#[derive(Clone, Debug)]
pub struct GroupMetrics {
    /// The group.
    pub group: String,
    /// Its counters.
    pub stats: StatsSnapshot,
    /// Deliveries running now.
    pub in_flight: u64,
    /// Delivery durations.
    pub process_duration: HistogramSnapshot,
    /// Dead letters written, by reason.
    pub dead_letters: Vec<(&'static str, u64)>,
}

/// What one topic was sent.
#[derive(Clone, Debug)]
pub struct SentMetrics {
    /// The topic.
    pub topic: String,
    /// Records appended.
    pub records: u64,
    /// Appends that failed.
    pub errors: u64,
    /// Append durations.
    pub duration: HistogramSnapshot,
}

/// Every value, read at one refresh.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// `messaging.system`.
    pub system: &'static str,
    /// Per group.
    pub groups: Vec<GroupMetrics>,
    /// Per group and partition.
    pub lags: Vec<PartitionLag>,
    /// Open dead letters per group.
    pub dlq_depth: Vec<(String, u64)>,
    /// Per topic sent to.
    pub sent: Vec<SentMetrics>,
    /// Outbox rows not yet relayed (SQL stores).
    pub outbox_backlog: Option<u64>,
    /// How long the oldest outbox row not yet relayed has waited, in seconds (0 when none;
    /// `None` without SQL stores).
    pub outbox_oldest_age_seconds: Option<f64>,
    /// Deprecated versions in use.
    pub deprecated: Vec<DeprecatedUse>,
    /// Per saga.
    pub sagas: Vec<SagaMetrics>,
}

/// One saga's instances and timers.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SagaMetrics {
    /// The saga's name.
    pub saga: String,
    /// Instances running, completed, failed and stuck.
    pub running: u64,
    /// See `running`.
    pub completed: u64,
    /// See `running`.
    pub failed: u64,
    /// See `running`.
    pub stuck: u64,
    /// Timers pending.
    pub timers_pending: u64,
    /// How long the earliest pending timer is overdue, in seconds (0 when none is).
    pub timer_lateness_seconds: f64,
    /// Messages dropped by `Unknown::Discard` in this process.
    pub discarded: u64,
}

/// A sample of one partition's positions, for the status.
#[derive(Clone, Copy, Debug)]
struct Sample {
    committed: u64,
    lag: u64,
}

/// The metrics of a running app ([`crate::Running::metrics`]): cheap to clone.
pub struct Metrics<T: Transport> {
    pub(crate) transport: Arc<T>,
    pub(crate) stats: BTreeMap<String, Arc<GroupStats>>,
    pub(crate) subscriptions: Vec<(String, String, u32)>,
    pub(crate) dlq: DeadLetters,
    pub(crate) sent: Arc<Sent>,
    pub(crate) deprecations: Arc<crate::deprecation::Deprecations>,
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub(crate) outbox: Option<crate::outbox::Outbox>,
    /// The sagas' store and each wired saga's discard count.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub(crate) sagas: Option<(crate::saga::Sagas, Discarded)>,
    history: Arc<Mutex<Windows>>,
}

/// Per wired saga: the messages it discarded.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) type Discarded = BTreeMap<&'static str, Arc<std::sync::atomic::AtomicU64>>;

/// The status window of each (group, topic, partition).
type Windows = HashMap<(String, String, u32), VecDeque<Sample>>;

/// A per-group counter: name, help, and how to read it from the group's counters.
type GroupCounter = (&'static str, &'static str, fn(&StatsSnapshot) -> u64);

impl<T: Transport> Clone for Metrics<T> {
    fn clone(&self) -> Self {
        Metrics {
            transport: self.transport.clone(),
            stats: self.stats.clone(),
            subscriptions: self.subscriptions.clone(),
            dlq: self.dlq.clone(),
            sent: self.sent.clone(),
            deprecations: self.deprecations.clone(),
            #[cfg(any(feature = "sqlite", feature = "postgres"))]
            outbox: self.outbox.clone(),
            #[cfg(any(feature = "sqlite", feature = "postgres"))]
            sagas: self.sagas.clone(),
            history: self.history.clone(),
        }
    }
}

impl<T: Transport> Metrics<T> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        transport: Arc<T>,
        stats: BTreeMap<String, Arc<GroupStats>>,
        subscriptions: Vec<(String, String, u32)>,
        dlq: DeadLetters,
        sent: Arc<Sent>,
        deprecations: Arc<crate::deprecation::Deprecations>,
        #[cfg(any(feature = "sqlite", feature = "postgres"))] outbox: Option<crate::outbox::Outbox>,
        #[cfg(any(feature = "sqlite", feature = "postgres"))] sagas: Option<(
            crate::saga::Sagas,
            Discarded,
        )>,
    ) -> Self {
        Metrics {
            transport,
            stats,
            subscriptions,
            dlq,
            sent,
            deprecations,
            #[cfg(any(feature = "sqlite", feature = "postgres"))]
            outbox,
            #[cfg(any(feature = "sqlite", feature = "postgres"))]
            sagas,
            history: Arc::default(),
        }
    }

    /// Reads every value now: the counters, and from the engine and stores the lag, the age of
    /// the oldest unhandled record, the DLQ depth and the outbox backlog; adds a sample to
    /// each partition's status window. Cancelling it loses only this refresh.
    ///
    /// # Errors
    ///
    /// The engine's or the stores' error.
    pub async fn refresh(&self) -> Result<Snapshot, TransportError> {
        let groups = self
            .stats
            .iter()
            .map(|(group, stats)| GroupMetrics {
                group: group.clone(),
                stats: stats.snapshot(),
                in_flight: stats.in_flight.load(std::sync::atomic::Ordering::Relaxed),
                process_duration: stats.process_duration.snapshot(),
                dead_letters: stats
                    .dead_letters_by_reason
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .iter()
                    .map(|(r, n)| (*r, *n))
                    .collect(),
            })
            .collect();
        let mut lags = Vec::new();
        for lag in crate::app::lag_of(&*self.transport, &self.subscriptions).await? {
            let age_seconds = if lag.lag() > 0 {
                let oldest = self
                    .transport
                    .fetch(&lag.topic, lag.partition, lag.committed, 1)
                    .await?;
                oldest
                    .first()
                    .map_or(0.0, |r| (now_ms() - r.timestamp_ms).max(0) as f64 / 1000.0)
            } else {
                0.0
            };
            let status = self.sample(&lag);
            lags.push(PartitionLag {
                lag,
                age_seconds,
                status,
            });
        }
        #[cfg(any(feature = "sqlite", feature = "postgres"))]
        let (outbox_backlog, outbox_oldest_age_seconds) = match &self.outbox {
            Some(outbox) => {
                let (rows, oldest) = outbox.backlog().await?;
                let age = oldest.map_or(0.0, |staged| {
                    (crate::transport::now_ms() - staged).max(0) as f64 / 1000.0
                });
                (Some(rows), Some(age))
            }
            None => (None, None),
        };
        #[cfg(not(any(feature = "sqlite", feature = "postgres")))]
        let (outbox_backlog, outbox_oldest_age_seconds) = (None, None);
        #[cfg(any(feature = "sqlite", feature = "postgres"))]
        let sagas = match &self.sagas {
            Some((store, discarded)) => saga_metrics(store, discarded).await?,
            None => Vec::new(),
        };
        #[cfg(not(any(feature = "sqlite", feature = "postgres")))]
        let sagas = Vec::new();
        Ok(Snapshot {
            system: self.transport.system(),
            groups,
            lags,
            dlq_depth: self.dlq.depth().await?,
            sent: self
                .sent
                .all()
                .into_iter()
                .map(|(topic, sent)| SentMetrics {
                    topic,
                    records: sent.records.load(std::sync::atomic::Ordering::Relaxed),
                    errors: sent.errors.load(std::sync::atomic::Ordering::Relaxed),
                    duration: sent.duration.snapshot(),
                })
                .collect(),
            outbox_backlog,
            outbox_oldest_age_seconds,
            deprecated: self.deprecations.uses(),
            sagas,
        })
    }

    /// Adds `lag` to its partition's window and rates it.
    fn sample(&self, lag: &Lag) -> Status {
        let mut history = self
            .history
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let window = history
            .entry((lag.group.clone(), lag.topic.clone(), lag.partition))
            .or_default();
        window.push_back(Sample {
            committed: lag.committed,
            lag: lag.lag(),
        });
        while window.len() > STATUS_WINDOW {
            window.pop_front();
        }
        status(window.make_contiguous())
    }

    /// Refreshes and renders every metric in the OpenMetrics text format.
    ///
    /// # Errors
    ///
    /// The engine's or the stores' error.
    pub async fn encode(&self) -> Result<String, TransportError> {
        let snapshot = self.refresh().await?;
        let mut registry = Registry::default();
        Self::register(snapshot, &mut registry);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry)
            .expect("writing to a String cannot fail");
        Ok(out)
    }

    /// Adds the values of `snapshot` to `registry` (a collector of constant values).
    pub fn register(snapshot: Snapshot, registry: &mut Registry) {
        registry.register_collector(Box::new(Constant(snapshot)));
    }
}

/// Each saga's instances by status, its timers and discards: the wired sagas, and any other
/// saga with rows in the store.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
async fn saga_metrics(
    store: &crate::saga::Sagas,
    discarded: &Discarded,
) -> Result<Vec<SagaMetrics>, TransportError> {
    use crate::saga::Status as S;
    let mut by_saga: BTreeMap<String, SagaMetrics> = discarded
        .iter()
        .map(|(saga, count)| {
            let metrics = SagaMetrics {
                saga: (*saga).to_owned(),
                discarded: count.load(std::sync::atomic::Ordering::Relaxed),
                ..SagaMetrics::default()
            };
            ((*saga).to_owned(), metrics)
        })
        .collect();
    let entry = |by_saga: &mut BTreeMap<String, SagaMetrics>, saga: String| {
        by_saga.entry(saga.clone()).or_insert_with(|| SagaMetrics {
            saga,
            ..SagaMetrics::default()
        });
    };
    for (saga, status, n) in store.counts().await? {
        entry(&mut by_saga, saga.clone());
        let metrics = by_saga.get_mut(&saga).expect("just inserted");
        match status {
            S::Running => metrics.running = n,
            S::Completed => metrics.completed = n,
            S::Failed => metrics.failed = n,
            S::Stuck => metrics.stuck = n,
        }
    }
    let now = now_ms();
    for (saga, pending, earliest) in store.timers().await? {
        entry(&mut by_saga, saga.clone());
        let metrics = by_saga.get_mut(&saga).expect("just inserted");
        metrics.timers_pending = pending;
        metrics.timer_lateness_seconds = (now - earliest).max(0) as f64 / 1000.0;
    }
    Ok(by_saga.into_values().collect())
}

/// Burrow's rules over a window of samples, oldest first (see the module docs).
fn status(window: &[Sample]) -> Status {
    let (Some(first), Some(last)) = (window.first(), window.last()) else {
        return Status::Ok;
    };
    if window.len() < 2 || window.iter().any(|s| s.lag == 0) {
        return Status::Ok;
    }
    if first.committed == last.committed {
        return Status::Stalled;
    }
    if last.lag >= first.lag {
        return Status::Lagging;
    }
    Status::Ok
}

/// A snapshot as a collector.
#[derive(Debug)]
struct Constant(Snapshot);

type Labels = Vec<(&'static str, String)>;

fn counter(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (Labels, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in series {
        metric
            .encode_family(&labels)?
            .encode_counter::<NoLabelSet, _, u64>(&value, None)?;
    }
    Ok(())
}

fn gauge<V: prometheus_client::encoding::EncodeGaugeValue>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    series: impl IntoIterator<Item = (Labels, V)>,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, unit, MetricType::Gauge)?;
    for (labels, value) in series {
        metric.encode_family(&labels)?.encode_gauge(&value)?;
    }
    Ok(())
}

fn histogram(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (Labels, HistogramSnapshot)>,
) -> Result<(), std::fmt::Error> {
    let mut metric =
        encoder.encode_descriptor(name, help, Some(&Unit::Seconds), MetricType::Histogram)?;
    for (labels, h) in series {
        // The encoder wants each bucket's own count, and +Inf last.
        let mut buckets = Vec::with_capacity(h.buckets.len() + 1);
        let mut below = 0;
        for (bound, cumulative) in &h.buckets {
            buckets.push((*bound, cumulative - below));
            below = *cumulative;
        }
        buckets.push((f64::INFINITY, h.count - below));
        metric
            .encode_family(&labels)?
            .encode_histogram::<NoLabelSet>(h.sum, h.count, &buckets, None)?;
    }
    Ok(())
}

impl Collector for Constant {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        let system = || ("messaging_system", s.system.to_owned());
        let group = |g: &str| ("messaging_consumer_group_name", g.to_owned());
        let e = &mut encoder;
        counter(
            e,
            "messaging_client_consumed_messages",
            "Records delivered to a consumer group, whatever the outcome.",
            s.groups.iter().map(|g| {
                let st = g.stats;
                (
                    vec![system(), group(&g.group)],
                    st.handled + st.duplicates + st.skipped + st.unknown_types + st.dead_lettered,
                )
            }),
        )?;
        histogram(
            e,
            "messaging_process_duration",
            "Duration of one delivery: dedupe, the handler with its retries, a dead letter.",
            s.groups
                .iter()
                .map(|g| (vec![system(), group(&g.group)], g.process_duration.clone())),
        )?;
        counter(
            e,
            "messaging_client_sent_messages",
            "Records appended by this app's publisher.",
            s.sent.iter().map(|t| {
                (
                    vec![system(), ("messaging_destination_name", t.topic.clone())],
                    t.records,
                )
            }),
        )?;
        histogram(
            e,
            "messaging_client_operation_duration",
            "Duration of each append (send) to the engine.",
            s.sent.iter().map(|t| {
                (
                    vec![
                        system(),
                        ("messaging_destination_name", t.topic.clone()),
                        ("messaging_operation_name", "send".to_owned()),
                    ],
                    t.duration.clone(),
                )
            }),
        )?;
        counter(
            e,
            "evt_send_errors",
            "Appends the engine refused or failed.",
            s.sent.iter().map(|t| {
                (
                    vec![system(), ("messaging_destination_name", t.topic.clone())],
                    t.errors,
                )
            }),
        )?;
        let per_group: [GroupCounter; 8] = [
            ("evt_consumer_handled", "Records handled.", |s| s.handled),
            (
                "evt_consumer_duplicates",
                "Records dropped as duplicates (dedupe hits).",
                |s| s.duplicates,
            ),
            (
                "evt_consumer_retries",
                "Retries after transient failures.",
                |s| s.retries,
            ),
            (
                "evt_consumer_skipped",
                "Records of types the group does not handle.",
                |s| s.skipped,
            ),
            (
                "evt_consumer_unknown_types",
                "Records of types unknown to this binary, skipped.",
                |s| s.unknown_types,
            ),
            ("evt_consumer_redelivered", "Replays and redrives.", |s| {
                s.redelivered
            }),
            (
                "evt_consumer_claim_waits",
                "Waits for a dedupe key another delivery held.",
                |s| s.claim_waits,
            ),
            (
                "evt_consumer_engine_errors",
                "Failed engine or store calls, retried.",
                |s| s.engine_errors,
            ),
        ];
        for (name, help, read) in per_group {
            counter(
                e,
                name,
                help,
                s.groups
                    .iter()
                    .map(|g| (vec![group(&g.group)], read(&g.stats))),
            )?;
        }
        gauge(
            e,
            "evt_consumer_in_flight",
            "Deliveries running now.",
            None,
            s.groups
                .iter()
                .map(|g| (vec![group(&g.group)], g.in_flight as i64)),
        )?;
        counter(
            e,
            "evt_dead_letters",
            "Dead letters written, by reason.",
            s.groups.iter().flat_map(|g| {
                g.dead_letters.iter().map(|(reason, n)| {
                    (vec![group(&g.group), ("reason", (*reason).to_owned())], *n)
                })
            }),
        )?;
        gauge(
            e,
            "evt_dlq_depth",
            "Open dead letters (dead or parked) per group.",
            None,
            s.dlq_depth.iter().map(|(g, n)| (vec![group(g)], *n as i64)),
        )?;
        let where_ = |l: &PartitionLag| {
            vec![
                group(&l.lag.group),
                ("messaging_destination_name", l.lag.topic.clone()),
                (
                    "messaging_destination_partition_id",
                    l.lag.partition.to_string(),
                ),
            ]
        };
        gauge(
            e,
            "evt_consumer_lag_records",
            "Records written and not yet committed by the group.",
            None,
            s.lags.iter().map(|l| (where_(l), l.lag.lag() as i64)),
        )?;
        gauge(
            e,
            "evt_consumer_lag",
            "Age of the oldest record the group has not handled yet.",
            Some(&Unit::Seconds),
            s.lags.iter().map(|l| (where_(l), l.age_seconds)),
        )?;
        gauge(
            e,
            "evt_consumer_status",
            "The group's status on the partition (1 for the current one): ok, lagging, stalled.",
            None,
            s.lags.iter().flat_map(|l| {
                [Status::Ok, Status::Lagging, Status::Stalled].map(|st| {
                    let mut labels = where_(l);
                    labels.push(("status", st.as_str().to_owned()));
                    (labels, i64::from(l.status == st))
                })
            }),
        )?;
        gauge(
            e,
            "evt_outbox_backlog",
            "Outbox rows staged and not yet relayed (none without SQL stores).",
            None,
            s.outbox_backlog.map(|backlog| (Vec::new(), backlog as i64)),
        )?;
        gauge(
            e,
            "evt_outbox_oldest_age",
            "How long the oldest outbox row not yet relayed has waited (0 when none).",
            Some(&Unit::Seconds),
            s.outbox_oldest_age_seconds.map(|age| (Vec::new(), age)),
        )?;
        counter(
            e,
            "evt_deprecated_uses",
            "Uses of deprecated versions by this process.",
            s.deprecated.iter().flat_map(|d| {
                let labels = |direction: &str| {
                    vec![
                        ("type", d.name.to_owned()),
                        ("version", d.version.to_string()),
                        ("direction", direction.to_owned()),
                    ]
                };
                [
                    (labels("published"), d.published),
                    (labels("consumed"), d.consumed),
                ]
            }),
        )?;
        let saga = |m: &SagaMetrics| ("saga", m.saga.clone());
        gauge(
            e,
            "evt_saga_instances",
            "Saga instances in the stores, by status.",
            None,
            s.sagas.iter().flat_map(|m| {
                [
                    ("running", m.running),
                    ("completed", m.completed),
                    ("failed", m.failed),
                    ("stuck", m.stuck),
                ]
                .map(|(status, n)| (vec![saga(m), ("status", status.to_owned())], n as i64))
            }),
        )?;
        gauge(
            e,
            "evt_saga_timers_pending",
            "Saga timers scheduled and not yet fired.",
            None,
            s.sagas
                .iter()
                .map(|m| (vec![saga(m)], m.timers_pending as i64)),
        )?;
        gauge(
            e,
            "evt_saga_timer_lateness",
            "How long the saga's earliest pending timer is overdue (0 when none is).",
            Some(&Unit::Seconds),
            s.sagas
                .iter()
                .map(|m| (vec![saga(m)], m.timer_lateness_seconds)),
        )?;
        counter(
            e,
            "evt_saga_discarded",
            "Messages a saga dropped under its Unknown::Discard policy (or a second start).",
            s.sagas.iter().map(|m| (vec![saga(m)], m.discarded)),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(samples: &[(u64, u64)]) -> Vec<Sample> {
        samples
            .iter()
            .map(|&(committed, lag)| Sample { committed, lag })
            .collect()
    }

    #[test]
    fn burrows_rules() {
        assert_eq!(status(&window(&[(5, 3)])), Status::Ok, "one sample");
        assert_eq!(status(&window(&[(5, 3), (5, 3)])), Status::Stalled);
        assert_eq!(status(&window(&[(5, 3), (5, 0), (5, 4)])), Status::Ok);
        assert_eq!(status(&window(&[(5, 3), (7, 5)])), Status::Lagging);
        assert_eq!(
            status(&window(&[(5, 9), (9, 5)])),
            Status::Ok,
            "catching up"
        );
    }
}
