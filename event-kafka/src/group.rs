//! Membership of consumer groups through Kafka's own group protocol: the runtime's instances of
//! one group are members of one Kafka consumer group, and the group's coordinator assigns them
//! the partitions ([`Sharing::Engine`](event_runtime::transport::Sharing::Engine)).
//!
//! Each group an app runs gets one member client per transport: a `BaseConsumer` that subscribes
//! to the group's topics with the `cooperative-sticky` assignor and pauses every partition it
//! is assigned, so it never fetches; records are still read by the transport's cursors. A
//! thread of its own polls it, which serves the heartbeats' rebalances:
//! - **assign:** the partitions get a new epoch, the revision of their slots;
//! - **revoke:** they leave the assignment the runtime sees, and the callback waits (up to the
//!   revoke bound) until the runtime has drained each and released it, so the last commit is
//!   made under this membership, before the coordinator hands the partition to another member;
//! - **lost** (the session lapsed): they are dropped at once, and a later write fails.
//!
//! Commits go through the member, so the coordinator checks the member id and generation; and
//! a write of a slot succeeds only while the partition is assigned here under the epoch the
//! writer read, which fences a deposed instance even on a broker that skips that check.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::config::KafkaConfig;

/// One partition as this member holds it.
#[derive(Clone, Copy, Debug)]
struct Held {
    /// Its slot's revision: changes with every assignment of it to this member.
    epoch: u64,
    /// The coordinator revoked it: the runtime drains it.
    revoking: bool,
    /// The runtime released it (drained and committed).
    released: bool,
}

/// The partitions assigned to a member, by (Kafka topic, partition).
#[derive(Debug, Default)]
struct Assigned {
    held: HashMap<(String, i32), Held>,
}

/// What the poll thread and the transport share.
struct State {
    assigned: Mutex<Assigned>,
    /// The transport's epoch counter, shared by its members so epochs never repeat.
    epochs: Arc<AtomicU64>,
    released: Condvar,
    /// How long a revocation waits for the runtime to release its partitions.
    revoke_within: Duration,
    /// The member is closing: revocations wait for nothing.
    closing: AtomicBool,
}

impl State {
    fn lock(&self) -> std::sync::MutexGuard<'_, Assigned> {
        self.assigned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The member client's callbacks.
struct Context {
    state: Arc<State>,
}

impl ClientContext for Context {}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(list) = rebalance else {
            return;
        };
        let revoked: Vec<(String, i32)> = list
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect();
        tracing::info!(
            lost = consumer.assignment_lost(),
            partitions = ?revoked,
            "the Kafka group coordinator revokes partitions from this member"
        );
        let state = &self.state;
        let mut assigned = state.lock();
        if consumer.assignment_lost() || state.closing.load(Ordering::Acquire) {
            for key in &revoked {
                assigned.held.remove(key);
            }
            return;
        }
        for key in &revoked {
            if let Some(held) = assigned.held.get_mut(key) {
                held.revoking = true;
            }
        }
        // The runtime sees the revocation at its next round, drains and releases: wait for it,
        // within the bound, before the coordinator may hand the partitions over.
        let deadline = Instant::now() + state.revoke_within;
        loop {
            let pending = revoked
                .iter()
                .any(|key| assigned.held.get(key).is_some_and(|h| !h.released));
            let left = deadline.saturating_duration_since(Instant::now());
            if !pending || left.is_zero() || state.closing.load(Ordering::Acquire) {
                break;
            }
            assigned = state
                .released
                .wait_timeout(assigned, left.min(Duration::from_millis(100)))
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        for key in &revoked {
            assigned.held.remove(key);
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Assign(list) = rebalance else {
            return;
        };
        tracing::info!(
            partitions = ?list
                .elements()
                .iter()
                .map(|e| (e.topic().to_owned(), e.partition()))
                .collect::<Vec<_>>(),
            "the Kafka group coordinator assigns partitions to this member"
        );
        // This client only holds the membership: it fetches nothing.
        let _ = consumer.pause(list);
        let mut assigned = self.state.lock();
        for element in list.elements() {
            let epoch = self.state.epochs.fetch_add(1, Ordering::AcqRel) + 1;
            assigned.held.insert(
                (element.topic().to_owned(), element.partition()),
                Held {
                    epoch,
                    revoking: false,
                    released: false,
                },
            );
        }
    }
}

/// A member of one group, with its poll thread.
pub(crate) struct Member {
    consumer: Arc<BaseConsumer<Context>>,
    state: Arc<State>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// The Kafka topics it subscribed to.
    topics: Vec<String>,
}

/// Why a slot write was refused.
pub(crate) enum Refused {
    /// The partition is not assigned here (any more), or under another epoch.
    NotAssigned,
    /// The coordinator refused the commit: this member was fenced.
    Fenced,
}

impl Member {
    /// Joins the Kafka group `kafka_group` as `instance`, subscribing to `topics` (Kafka names),
    /// with a session of `ttl`.
    pub(crate) fn join(
        config: &KafkaConfig,
        kafka_group: &str,
        instance: &str,
        topics: Vec<String>,
        ttl: Duration,
        revoke_within: Duration,
        epochs: Arc<AtomicU64>,
    ) -> KafkaResult<Self> {
        let session = ttl.max(Duration::from_millis(100));
        let heartbeat = (session / 5).max(Duration::from_millis(20));
        let state = Arc::new(State {
            assigned: Mutex::default(),
            epochs,
            released: Condvar::new(),
            revoke_within,
            closing: AtomicBool::new(false),
        });
        let consumer: BaseConsumer<Context> = config
            .client_config()
            .set("group.id", kafka_group)
            .set("client.id", instance)
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("session.timeout.ms", session.as_millis().to_string())
            .set("heartbeat.interval.ms", heartbeat.as_millis().to_string())
            .set(
                "max.poll.interval.ms",
                (session.max(revoke_within) + Duration::from_secs(30))
                    .as_millis()
                    .to_string(),
            )
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .create_with_context(Context {
                state: state.clone(),
            })?;
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&names)?;
        let consumer = Arc::new(consumer);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (consumer, stop) = (consumer.clone(), stop.clone());
            let (group_name, member_name) = (kafka_group.to_owned(), instance.to_owned());
            std::thread::Builder::new()
                .name(format!("evt-kafka-member-{kafka_group}"))
                .spawn(move || {
                    // When each error was last logged.
                    let mut logged: std::collections::BTreeMap<String, std::time::Instant> =
                        std::collections::BTreeMap::new();
                    while !stop.load(Ordering::Acquire) {
                        // Serves heartbeats' rebalances; every partition is paused, so no
                        // record comes (one fetched before its pause is dropped: the cursors
                        // read records). An error (the broker refusing the session timeout,
                        // say) is logged when it first comes, and at most once a minute while
                        // it repeats (a refused join comes back every few seconds), not
                        // dropped.
                        if let Some(Err(err)) = consumer.poll(Duration::from_millis(50)) {
                            let text = err.to_string();
                            let repeated = logged
                                .get(&text)
                                .is_some_and(|at| at.elapsed() < Duration::from_secs(60));
                            if !repeated {
                                if err.rdkafka_error_code()
                                    == Some(RDKafkaErrorCode::InvalidSessionTimeout)
                                {
                                    // The group never forms: say what to change.
                                    tracing::error!(
                                        group = %group_name,
                                        instance = %member_name,
                                        error = %text,
                                        session_timeout_ms = session.as_millis() as u64,
                                        "the Kafka broker refuses this member's session \
                                         timeout, GroupOptions::claim_ttl: set claim_ttl \
                                         within the broker's group.min.session.timeout.ms \
                                         and group.max.session.timeout.ms (6 s and 30 min \
                                         by default); until then the group consumes nothing"
                                    );
                                } else {
                                    tracing::warn!(
                                        group = %group_name,
                                        instance = %member_name,
                                        error = %text,
                                        "the Kafka group member's poll failed"
                                    );
                                }
                                logged.insert(text, std::time::Instant::now());
                            }
                        }
                    }
                })
                .map_err(|err| KafkaError::Subscription(err.to_string()))?
        };
        Ok(Member {
            consumer,
            state,
            stop,
            thread: Some(thread),
            topics,
        })
    }

    /// The Kafka topics it subscribed to.
    pub(crate) fn topics(&self) -> &[String] {
        &self.topics
    }

    /// The partitions assigned here and not being revoked, by Kafka topic.
    pub(crate) fn assignment(&self) -> Vec<(String, i32)> {
        let assigned = self.state.lock();
        let mut out: Vec<(String, i32)> = assigned
            .held
            .iter()
            .filter(|(_, h)| !h.revoking)
            .map(|(key, _)| key.clone())
            .collect();
        out.sort();
        out
    }

    /// The epoch of `partition` while it is assigned here (being revoked or not).
    pub(crate) fn epoch(&self, topic: &str, partition: i32) -> Option<u64> {
        self.state
            .lock()
            .held
            .get(&(topic.to_owned(), partition))
            .map(|h| h.epoch)
    }

    /// Commits `next_offset` for `partition` if it is assigned here under `epoch`, and marks it
    /// released when `release` (also when the commit fails: the runtime has drained it), or
    /// when the coordinator fences the commit (the runtime then abandons the partition).
    /// Blocking: call it off the async workers.
    pub(crate) fn write(
        &self,
        topic: &str,
        partition: i32,
        next_offset: u64,
        epoch: u64,
        release: bool,
    ) -> Result<Result<(), Refused>, KafkaError> {
        let key = (topic.to_owned(), partition);
        if self.state.lock().held.get(&key).map(|h| h.epoch) != Some(epoch) {
            return Ok(Err(Refused::NotAssigned));
        }
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(topic, partition, Offset::Offset(next_offset as i64))?;
        let committed = self.consumer.commit(&list, CommitMode::Sync);
        let mut assigned = self.state.lock();
        match committed {
            Ok(()) => {}
            Err(KafkaError::ConsumerCommit(
                RDKafkaErrorCode::IllegalGeneration
                | RDKafkaErrorCode::UnknownMemberId
                | RDKafkaErrorCode::FencedInstanceId
                | RDKafkaErrorCode::StaleMemberEpoch,
            )) => {
                // A refused write makes the runtime abandon the partition (its claim is lost,
                // and no release follows): a revocation of it must not wait its whole bound
                // for a release that will never come. This happened under a rebalance, when a
                // commit raced the generation change; the next owner resumes from the last
                // committed position (redelivery, never loss).
                if let Some(held) = assigned.held.get_mut(&key)
                    && held.epoch == epoch
                {
                    held.released = true;
                    self.state.released.notify_all();
                }
                return Ok(Err(Refused::Fenced));
            }
            Err(err) => {
                // The runtime drained the partition and runs nothing more on it: a revocation
                // must not wait its whole bound for a commit that failed (the next owner
                // resumes from the last committed position: redelivery, never loss).
                if release && let Some(held) = assigned.held.get_mut(&key) {
                    held.released = true;
                    self.state.released.notify_all();
                }
                return Err(err);
            }
        }
        match assigned.held.get_mut(&key) {
            Some(held) if held.epoch == epoch => {
                if release {
                    held.released = true;
                    self.state.released.notify_all();
                }
                Ok(Ok(()))
            }
            // Lost while the commit was in flight.
            _ => Ok(Err(Refused::NotAssigned)),
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        // Leaving: a revocation now waits for nothing (what the runtime released is
        // committed; the rest is redelivered to the next owner).
        self.state.closing.store(true, Ordering::Release);
        self.state.released.notify_all();
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        // The last reference: librdkafka closes the consumer, leaving the group, on this thread.
    }
}
