//! An in-memory [`Transport`]: the same semantics as the durable engines, nothing survives the
//! process. For tests and demos.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use super::{
    Claim, OutgoingRecord, Position, Record, Sharing, Slot, Transport, TransportError,
    TransportErrorKind, now_ms,
};

struct Topic {
    /// The name every record of the topic shares.
    name: Arc<str>,
    partitions: Vec<Vec<Record>>,
}

#[derive(Default)]
struct State {
    topics: HashMap<String, Topic>,
    /// Slots by (group, topic, partition); a slot's revision is the value of `revisions` when it
    /// was written.
    positions: HashMap<(String, String, u32), Slot>,
    revisions: u64,
    /// Members by (group, instance), with the time their announcement lapses.
    members: HashMap<(String, String), i64>,
}

impl State {
    fn write(&mut self, key: (String, String, u32), next_offset: u64, claim: Option<Claim>) -> u64 {
        self.revisions += 1;
        let revision = self.revisions;
        self.positions.insert(
            key,
            Slot {
                next_offset,
                claim,
                revision,
            },
        );
        revision
    }
}

/// The in-memory engine. Cloning shares the same log, and apps on clones of one engine share
/// its partitions as instances of one service would ([`Transport::sharing`]).
#[derive(Clone, Default)]
pub struct MemoryTransport {
    state: Arc<Mutex<State>>,
    appended: Arc<Notify>,
}

impl MemoryTransport {
    /// An empty log.
    pub fn new() -> Self {
        MemoryTransport::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-written record: every mutation is a
        // single push or insert. Recover the guard instead of propagating the poison.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn unknown(topic: &str, operation: &str) -> TransportError {
    TransportError::new(
        TransportErrorKind::UnknownTopic,
        format!("{operation} {topic}"),
        format!("topic `{topic}` does not exist"),
    )
}

fn bad_partition(topic: &str, partition: u32, count: usize) -> TransportError {
    TransportError::new(
        TransportErrorKind::InvalidPartition,
        format!("partition {partition} of {topic}"),
        format!("topic `{topic}` has {count} partitions"),
    )
}

impl Transport for MemoryTransport {
    async fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<u32, TransportError> {
        let mut state = self.lock();
        let entry = state
            .topics
            .entry(topic.to_owned())
            .or_insert_with(|| Topic {
                name: topic.into(),
                partitions: (0..partitions.max(1)).map(|_| Vec::new()).collect(),
            });
        Ok(entry.partitions.len() as u32)
    }

    async fn append(
        &self,
        topic: &str,
        records: Vec<OutgoingRecord>,
    ) -> Result<Vec<Position>, TransportError> {
        // Nothing here waits, so a publishing loop would never yield: take part in the
        // runtime's cooperative budget, as tokio's own channels do, so that the consumers it
        // wakes get to run on this thread too.
        tokio::task::coop::consume_budget().await;
        let positions = {
            let mut state = self.lock();
            let t = state
                .topics
                .get_mut(topic)
                .ok_or_else(|| unknown(topic, "append to"))?;
            let count = t.partitions.len();
            if let Some(bad) = records.iter().find(|r| r.partition as usize >= count) {
                return Err(bad_partition(topic, bad.partition, count));
            }
            let timestamp_ms = now_ms();
            records
                .into_iter()
                .map(|r| {
                    let log = &mut t.partitions[r.partition as usize];
                    let offset = log.len() as u64;
                    log.push(Record {
                        topic: Arc::clone(&t.name),
                        partition: r.partition,
                        offset,
                        timestamp_ms,
                        key: r.key,
                        headers: r.headers,
                        payload: r.payload,
                    });
                    Position {
                        partition: r.partition,
                        offset,
                    }
                })
                .collect()
        };
        self.appended.notify_waiters();
        Ok(positions)
    }

    async fn fetch(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
        max: usize,
    ) -> Result<Vec<Record>, TransportError> {
        tokio::task::coop::consume_budget().await;
        let state = self.lock();
        let t = state
            .topics
            .get(topic)
            .ok_or_else(|| unknown(topic, "fetch from"))?;
        let log = t
            .partitions
            .get(partition as usize)
            .ok_or_else(|| bad_partition(topic, partition, t.partitions.len()))?;
        let start = (from as usize).min(log.len());
        // Records share their buffers: a fetch copies pointers, not bytes.
        Ok(log[start..].iter().take(max).cloned().collect())
    }

    async fn wait(&self, topic: &str, partition: u32, from: u64, timeout: Duration) {
        let notified = self.appended.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let ready = {
            let state = self.lock();
            state
                .topics
                .get(topic)
                .and_then(|t| t.partitions.get(partition as usize))
                .is_some_and(|log| log.len() as u64 > from)
        };
        if !ready {
            let _ = tokio::time::timeout(timeout, notified).await;
        }
    }

    async fn committed(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<u64, TransportError> {
        let state = self.lock();
        Ok(state
            .positions
            .get(&(group.to_owned(), topic.to_owned(), partition))
            .map_or(0, |slot| slot.next_offset))
    }

    async fn commit(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        next_offset: u64,
    ) -> Result<(), TransportError> {
        let mut state = self.lock();
        let key = (group.to_owned(), topic.to_owned(), partition);
        let claim = state
            .positions
            .get(&key)
            .and_then(|slot| slot.claim.clone());
        state.write(key, next_offset, claim);
        Ok(())
    }

    fn system(&self) -> &'static str {
        "evt_memory"
    }

    fn sharing(&self) -> Sharing {
        Sharing::Claims
    }

    async fn slot(&self, group: &str, topic: &str, partition: u32) -> Result<Slot, TransportError> {
        let state = self.lock();
        Ok(state
            .positions
            .get(&(group.to_owned(), topic.to_owned(), partition))
            .cloned()
            .unwrap_or_default())
    }

    async fn swap_slot(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        next_offset: u64,
        claim: Option<&Claim>,
        expected: u64,
    ) -> Result<Option<u64>, TransportError> {
        let mut state = self.lock();
        let key = (group.to_owned(), topic.to_owned(), partition);
        let revision = state.positions.get(&key).map_or(0, |slot| slot.revision);
        if revision != expected {
            return Ok(None);
        }
        Ok(Some(state.write(key, next_offset, claim.cloned())))
    }

    async fn beat(
        &self,
        group: &str,
        instance: &str,
        until_ms: i64,
    ) -> Result<Vec<String>, TransportError> {
        let mut state = self.lock();
        state
            .members
            .insert((group.to_owned(), instance.to_owned()), until_ms);
        let now = now_ms();
        let mut members: Vec<String> = state
            .members
            .iter()
            .filter(|((g, _), until)| g == group && **until > now)
            .map(|((_, instance), _)| instance.clone())
            .collect();
        members.sort();
        Ok(members)
    }

    async fn leave(&self, group: &str, instance: &str) -> Result<(), TransportError> {
        self.lock()
            .members
            .remove(&(group.to_owned(), instance.to_owned()));
        Ok(())
    }

    async fn end_offsets(&self, topic: &str) -> Result<Vec<u64>, TransportError> {
        let state = self.lock();
        let t = state
            .topics
            .get(topic)
            .ok_or_else(|| unknown(topic, "end offsets of"))?;
        Ok(t.partitions.iter().map(|p| p.len() as u64).collect())
    }

    async fn topics(&self) -> Result<Vec<(String, u32)>, TransportError> {
        let state = self.lock();
        let mut topics: Vec<(String, u32)> = state
            .topics
            .iter()
            .map(|(name, t)| (name.clone(), t.partitions.len() as u32))
            .collect();
        topics.sort();
        Ok(topics)
    }
}
