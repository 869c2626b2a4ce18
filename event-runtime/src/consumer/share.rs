//! Several instances of one service sharing a group's partitions ([`Transport::sharing`]): by
//! claims on the memory engine, SQLite and NATS JetStream, by the engine's own assignment on
//! Kafka.
//!
//! Each instance of a group runs one supervisor. Every round (a sixth of `claim_ttl`, at most a
//! second; more often while its share is not settled) it announces itself
//! ([`Transport::beat`]) and learns the live members; the group's partitions are dealt over the
//! sorted members in turn, so every instance computes the same share for each. It then:
//! - renews the claims it holds (a claim lapses `claim_ttl` after it was last written);
//! - stops the loops of partitions that are no longer its share: they start nothing new, let
//!   what runs finish (up to `drain_timeout`), commit, and only then is the claim released;
//! - claims its share's partitions whose claim is free, lapsed or its own, with a
//!   compare-and-set on the partition's slot ([`Transport::swap_slot`]), and starts their loops
//!   from the position stored there.
//!
//! Fencing: a partition's position and claim live in one slot, and every write of it (a commit,
//! a renewal) is conditional on the revision this instance last wrote. An instance that lost
//! its claim (it was paused or cut off longer than `claim_ttl` and another took the partition)
//! fails its next write, learns it, and abandons the partition at once: it can neither move the
//! position nor start more handlers. It also starts no handler once its claim is past its
//! renewal margin on its own clock, before it learns anything. What a deposed instance was
//! running when it lost the claim may finish: that, and what a crash leaves unfinished, is the
//! rebalance window in which an event can be handled twice (the dedupe store drops the second
//! copy once the first is marked).
//!
//! Where the engine assigns partitions itself ([`Sharing::Engine`], Kafka), the round asks it
//! for this instance's assignment ([`Transport::assignment`]) instead of dealing the partitions,
//! and the rest is the same: a slot's claim is this instance's while the engine assigns it the
//! partition, a write of it fails once it does not, and a partition the engine revokes is
//! drained and then released, which lets the engine hand it over.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use super::GroupRunner;
use crate::transport::{Claim, Sharing, Transport, TransportError, now_ms};

/// How often a failed claim release is retried before the claim is left to lapse.
const RELEASE_RETRIES: u32 = 3;

/// A topic partition of a group.
pub(crate) type PartitionId = (Arc<str>, u32);

/// The claim this instance holds on one partition, shared by the supervisor (which renews and
/// releases it) and the partition's loop (whose commits write through it).
pub(crate) struct Lease {
    instance: Arc<str>,
    ttl: Duration,
    /// The slot as this instance last wrote it: (revision, position).
    slot: tokio::sync::Mutex<(u64, u64)>,
    /// When the claim lapses (ms), as last written.
    until: AtomicI64,
    lost: AtomicBool,
    changed: Notify,
}

impl Lease {
    fn new(instance: Arc<str>, ttl: Duration, revision: u64, position: u64, until_ms: i64) -> Self {
        let lease = Lease {
            instance,
            ttl,
            slot: tokio::sync::Mutex::new((revision, position)),
            until: AtomicI64::new(0),
            lost: AtomicBool::new(false),
            changed: Notify::new(),
        };
        lease.extend(until_ms);
        lease
    }

    fn ttl_ms(&self) -> i64 {
        i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX / 4)
    }

    fn extend(&self, until_ms: i64) {
        self.until.store(until_ms, Ordering::Release);
        self.changed.notify_waiters();
    }

    /// Whether a third of the claim's time has passed since it was last written.
    fn renewal_due(&self) -> bool {
        self.until.load(Ordering::Acquire) - now_ms() < self.ttl_ms() * 2 / 3
    }

    /// The position this instance last wrote.
    pub(crate) async fn position(&self) -> u64 {
        self.slot.lock().await.1
    }

    /// Whether the claim was lost to another writer.
    pub(crate) fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Acquire)
    }

    fn lose(&self) {
        self.lost.store(true, Ordering::Release);
        self.changed.notify_waiters();
    }

    /// Waits until handlers may start under this claim: at once while it holds with margin;
    /// after the next renewal when it is close to lapsing; never once it is lost (the
    /// partition's loop is then abandoned).
    pub(crate) async fn ready(&self) {
        loop {
            let changed = self.changed.notified();
            // Usable while the claim's end is more than a fifth of the ttl away.
            let usable_until = self.until.load(Ordering::Acquire) - self.ttl_ms() / 5;
            if !self.is_lost() && now_ms() < usable_until {
                return;
            }
            changed.await;
        }
    }

    /// Resolves once the claim is lost.
    pub(crate) async fn lost(&self) {
        loop {
            let changed = self.changed.notified();
            if self.is_lost() {
                return;
            }
            changed.await;
        }
    }

    /// Writes the slot: `position` (or the last one written) under a renewed claim, or no
    /// claim when `release`. `Ok(false)` when the slot changed since this instance last wrote
    /// it: the claim is lost.
    pub(crate) async fn write<T: Transport>(
        &self,
        transport: &T,
        (group, topic, partition): (&str, &str, u32),
        position: Option<u64>,
        release: bool,
    ) -> Result<bool, TransportError> {
        let mut slot = self.slot.lock().await;
        if self.is_lost() {
            return Ok(false);
        }
        let next = position.unwrap_or(slot.1).max(slot.1);
        let until_ms = now_ms() + self.ttl_ms();
        let claim = Claim {
            owner: self.instance.to_string(),
            until_ms,
        };
        let claim = (!release).then_some(&claim);
        match transport
            .swap_slot(group, topic, partition, next, claim, slot.0)
            .await?
        {
            Some(revision) => {
                *slot = (revision, next);
                if !release {
                    self.extend(until_ms);
                }
                Ok(true)
            }
            None => {
                tracing::warn!(
                    target: "event_runtime::consumer",
                    group,
                    instance = %self.instance,
                    topic,
                    partition,
                    release,
                    "the engine refused this instance's write of the partition (another instance owns it now, or the engine fenced this one): partition abandoned"
                );
                self.lose();
                Ok(false)
            }
        }
    }
}

/// The partitions `instance` should own: the group's partitions, sorted, dealt over the
/// sorted `members` in turn, starting at a member picked by the group's name (so that groups
/// with fewer partitions than members do not all load the first member).
pub(crate) fn share_of(
    group: &str,
    partitions: &[PartitionId],
    members: &[String],
    instance: &str,
) -> BTreeSet<PartitionId> {
    let Some(me) = members.iter().position(|m| m == instance) else {
        return BTreeSet::new();
    };
    let n = members.len();
    let start = group.bytes().fold(0usize, |h, b| {
        h.wrapping_mul(31).wrapping_add(usize::from(b))
    });
    let mut sorted = partitions.to_vec();
    sorted.sort();
    sorted
        .into_iter()
        .enumerate()
        .filter(|(j, _)| (j.wrapping_add(start)) % n == me)
        .map(|(_, p)| p)
        .collect()
}

/// A partition this instance runs.
struct Owned {
    lease: Arc<Lease>,
    /// Turns true to drain the loop (the partition leaves this instance's share, or the app
    /// stops).
    drain: watch::Sender<bool>,
    /// The loop's task id in the supervisor's set.
    done: Arc<AtomicBool>,
}

/// Sets its flag when dropped: a partition loop ended.
struct Ended(Arc<AtomicBool>);

impl Drop for Ended {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// What the supervisor shows of itself.
#[derive(Clone, Debug, Default)]
pub(crate) struct Shared {
    /// The partitions this instance owns now.
    pub(crate) owned: Vec<(String, u32)>,
    /// The live members at the last announcement.
    pub(crate) members: Vec<String>,
}

impl<T: Transport> GroupRunner<T> {
    /// Runs this instance's share of `partitions` until `shutdown`, then drains and releases
    /// it and leaves the group; `view` shows what it owns. See the module docs.
    pub(crate) async fn run_shared(
        self: Arc<Self>,
        partitions: Vec<PartitionId>,
        view: watch::Sender<Shared>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let instance = self.instance.clone();
        let ttl = self.options.claim_ttl.max(Duration::from_millis(30));
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 4);
        let engine_assigns = self.transport.sharing() == Sharing::Engine;
        let mut topics: Vec<(String, u32)> = Vec::new();
        for (topic, _) in &partitions {
            match topics.iter_mut().find(|(t, _)| **t == **topic) {
                Some((_, count)) => *count += 1,
                None => topics.push((topic.to_string(), 1)),
            }
        }
        let mut owned: BTreeMap<PartitionId, Owned> = BTreeMap::new();
        let mut loops = JoinSet::new();
        let mut share = BTreeSet::new();
        let mut members = Vec::new();
        let mut failing = 0u64;
        while !*shutdown.borrow() {
            // Announce (or ask the engine); on an engine error keep the last share (the claims
            // held lapse on their own if the engine stays away).
            let round = if engine_assigns {
                self.transport
                    .assignment(&self.group, &instance, &topics, ttl)
                    .await
                    .map(|assigned| {
                        let assigned: BTreeSet<PartitionId> = assigned
                            .into_iter()
                            .map(|(t, p)| (Arc::from(t), p))
                            .collect();
                        // Only what this group reads, should the engine say more.
                        let share = partitions
                            .iter()
                            .filter(|p| assigned.contains(*p))
                            .cloned()
                            .collect();
                        (share, Vec::new())
                    })
            } else {
                self.transport
                    .beat(&self.group, &instance, now_ms() + ttl_ms)
                    .await
                    .map(|live| (share_of(&self.group, &partitions, &live, &instance), live))
            };
            match round {
                Ok((dealt, live)) => {
                    if failing > 0 {
                        tracing::info!(target: "event_runtime::consumer", group = %self.group, instance = %instance, failures = failing, "group membership reachable again");
                        failing = 0;
                    }
                    share = dealt;
                    members = live;
                }
                Err(err) => {
                    failing += 1;
                    self.stats.engine_errors.fetch_add(1, Ordering::Relaxed);
                    if failing == 1 || failing.is_power_of_two() {
                        tracing::warn!(target: "event_runtime::consumer", group = %self.group, instance = %instance, failures = failing, error = %err, "could not announce this instance to its group; retrying");
                    }
                }
            }
            // Loops that ended release their claims; drain what left the share; renew the rest.
            self.release_ended(&mut owned).await;
            for (partition, o) in &owned {
                if !share.contains(partition) && !*o.drain.borrow() {
                    tracing::info!(target: "event_runtime::consumer", group = %self.group, instance = %instance, topic = %partition.0, partition = partition.1, "partition leaves this instance: draining");
                    let _ = o.drain.send(true);
                }
            }
            self.renew_due(&owned).await;
            // Claim what is ours to take.
            let wanted: Vec<PartitionId> = share
                .iter()
                .filter(|p| !owned.contains_key(*p))
                .cloned()
                .collect();
            for partition in wanted {
                if let Some(o) = self
                    .claim(&instance, ttl, &partition, &mut loops, &shutdown)
                    .await
                {
                    owned.insert(partition, o);
                }
            }
            view.send_replace(Shared {
                owned: owned.keys().map(|(t, p)| (t.to_string(), *p)).collect(),
                members: members.clone(),
            });
            // Settled: look again after a sixth of the ttl (at most a second), so that a member
            // that joins gets its share soon; renewals are made when due. Otherwise soon.
            let settled = owned.len() == share.len() && owned.keys().all(|p| share.contains(p));
            let pause = if engine_assigns {
                // The engine's assignment is read here, locally: look often, so that a
                // partition assigned (or being revoked, whose rebalance waits for its drain) is
                // taken up (or drained) within a tenth of a second, not a round later.
                (ttl / 10).clamp(Duration::from_millis(10), Duration::from_millis(100))
            } else if settled {
                (ttl / 6).min(Duration::from_secs(1))
            } else {
                (ttl / 10).clamp(Duration::from_millis(10), Duration::from_millis(250))
            };
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                _ = shutdown.changed() => {}
                Some(_) = loops.join_next(), if !loops.is_empty() => {}
            }
        }
        // Stopping: every loop drains; each claim is renewed while its loop drains (so it never
        // lapses under a handler still running) and released as soon as the loop ends. On an
        // engine of claims the instance leaves first, so the others deal its partitions to
        // themselves at once and take each as it is released; on Kafka leaving closes the
        // member, whose commits the drains still need, so it leaves last.
        for o in owned.values() {
            let _ = o.drain.send(true);
        }
        if !engine_assigns {
            let _ = self.transport.leave(&self.group, &instance).await;
        }
        loop {
            self.release_ended(&mut owned).await;
            if owned.is_empty() {
                break;
            }
            self.renew_due(&owned).await;
            tokio::select! {
                () = tokio::time::sleep((ttl / 10).clamp(Duration::from_millis(10), Duration::from_millis(250))) => {}
                Some(_) = loops.join_next(), if !loops.is_empty() => {}
            }
        }
        if engine_assigns {
            let _ = self.transport.leave(&self.group, &instance).await;
        }
        view.send_replace(Shared::default());
    }

    /// Releases the claims of the partitions whose loops ended (unless lost: those are only
    /// forgotten) and forgets them: the last position written stays, with no owner. A release
    /// that keeps failing (after `RELEASE_RETRIES` retries) leaves the claim to lapse.
    async fn release_ended(&self, owned: &mut BTreeMap<PartitionId, Owned>) {
        let ended: Vec<PartitionId> = owned
            .iter()
            .filter(|(_, o)| o.done.load(Ordering::Acquire))
            .map(|(p, _)| p.clone())
            .collect();
        for partition in ended {
            let o = owned.remove(&partition).expect("listed");
            let mut attempt = 0;
            while !o.lease.is_lost() {
                match self.write(&partition, &o, true).await {
                    Ok(_) => break,
                    // A short retry: a claim left to lapse keeps the partition idle for a ttl.
                    Err(err) if attempt < RELEASE_RETRIES => {
                        attempt += 1;
                        tracing::debug!(target: "event_runtime::consumer", group = %self.group, instance = %self.instance, topic = %partition.0, partition = partition.1, error = %err, attempt, "releasing a claim failed; retrying");
                        tokio::time::sleep(Duration::from_millis(50) * attempt).await;
                    }
                    Err(err) => {
                        tracing::warn!(target: "event_runtime::consumer", group = %self.group, instance = %self.instance, topic = %partition.0, partition = partition.1, error = %err, "could not release a claim: it lapses after its time");
                        break;
                    }
                }
            }
        }
    }

    /// Renews the claims a third of whose time has passed. One found taken is lost: its loop
    /// abandons the partition.
    async fn renew_due(&self, owned: &BTreeMap<PartitionId, Owned>) {
        for (partition, o) in owned {
            // A claim found taken is lost (logged by the write): its loop abandons it.
            if o.lease.renewal_due() {
                let _ = self.write(partition, o, false).await;
            }
        }
    }

    /// Writes the slot of `partition` under its lease: renewed, or released.
    async fn write(
        &self,
        partition: &PartitionId,
        o: &Owned,
        release: bool,
    ) -> Result<bool, TransportError> {
        o.lease
            .write(
                &*self.transport,
                (&self.group, &partition.0, partition.1),
                None,
                release,
            )
            .await
    }

    /// Claims `partition` if its claim is free, lapsed or this instance's own, and starts its
    /// loop from the position in its slot.
    async fn claim(
        self: &Arc<Self>,
        instance: &Arc<str>,
        ttl: Duration,
        partition: &PartitionId,
        loops: &mut JoinSet<()>,
        shutdown: &watch::Receiver<bool>,
    ) -> Option<Owned> {
        let (topic, number) = (&partition.0, partition.1);
        let slot = self.transport.slot(&self.group, topic, number).await.ok()?;
        let now = now_ms();
        if let Some(claim) = &slot.claim
            && claim.owner != **instance
            && claim.live_at(now)
        {
            return None;
        }
        let lease = Arc::new(Lease::new(
            instance.clone(),
            ttl,
            slot.revision,
            slot.next_offset,
            0,
        ));
        if !lease
            .write(&*self.transport, (&self.group, topic, number), None, false)
            .await
            .ok()?
        {
            return None;
        }
        tracing::info!(target: "event_runtime::consumer", group = %self.group, instance = %instance, topic = %topic, partition = number, position = slot.next_offset, "partition claimed");
        let (drain, drained) = watch::channel(*shutdown.borrow());
        let done = Arc::new(AtomicBool::new(false));
        let (runner, flag, claimed) = (self.clone(), done.clone(), lease.clone());
        let topic = topic.to_string();
        loops.spawn(async move {
            // Set however the loop ends (a panic too), so the partition is released.
            let _ended = Ended(flag);
            runner
                .run_partition(topic, number, Some((claimed, slot.next_offset)), drained)
                .await;
        });
        Some(Owned { lease, drain, done })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(n: u32) -> Vec<PartitionId> {
        (0..n).map(|p| (Arc::from("t"), p)).collect()
    }

    #[test]
    fn every_partition_goes_to_exactly_one_member_and_shares_are_even() {
        for n_members in 1..6 {
            let members: Vec<String> = (0..n_members).map(|i| format!("i{i}")).collect();
            let partitions = parts(8);
            let mut seen = BTreeMap::new();
            for m in &members {
                let share = share_of("g", &partitions, &members, m);
                assert!(share.len() >= 8 / n_members && share.len() <= 8usize.div_ceil(n_members));
                for p in share {
                    assert!(seen.insert(p, m.clone()).is_none(), "dealt twice");
                }
            }
            assert_eq!(seen.len(), 8);
        }
        assert!(
            share_of("g", &parts(4), &["a".into()], "b").is_empty(),
            "not a member"
        );
    }
}
