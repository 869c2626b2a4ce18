//! The partition loop: key lanes that outlive a fetch, and the committed position as the lowest
//! offset not yet done.
//!
//! One task per partition reads records ahead while its lanes work. Every record goes to the
//! lane of its partition key: a key whose record is running is *busy*, and its later records
//! wait behind it in read order; a record of a free key starts as soon as one of the
//! partition's [`GroupOptions::concurrency`] slots is free (slots are handed out first come,
//! first served, so a key with a long backlog takes turns with the others). A key whose handler
//! is slow or retrying therefore holds back only its own later events: the partition keeps
//! reading and the other keys keep going.
//!
//! The records running are futures polled by the partition's own task (no task spawned, no
//! channel crossed per record): they run concurrently, interleaved at their `.await`s, and the
//! partitions of a group run in parallel on the runtime's threads. A handler that computes for
//! long without awaiting holds up its partition's other keys while it does, as any future on a
//! task does; give such work to `tokio::task::spawn_blocking`.
//!
//! What may be read ahead is bounded, so memory stays bounded under any backlog:
//! [`GroupOptions::max_in_flight`] records per partition read and not yet done,
//! [`GroupOptions::max_in_flight_per_group`] across the group's partitions, and
//! [`GroupOptions::max_uncommitted`] offsets per partition between the committed position and
//! the newest record read (done records behind an unfinished one). A partition at a bound waits.
//!
//! The position committed is the offset of the oldest record read and not yet done (or the end
//! of what was read, when everything is done): a crash redelivers from there, and what was done
//! after it comes again and is dropped by the dedupe store. Commits are coalesced: one is in
//! flight at a time, and it carries the newest position when it starts.
//!
//! [`GroupOptions::concurrency`]: crate::GroupOptions::concurrency
//! [`GroupOptions::max_in_flight`]: crate::GroupOptions::max_in_flight
//! [`GroupOptions::max_in_flight_per_group`]: crate::GroupOptions::max_in_flight_per_group
//! [`GroupOptions::max_uncommitted`]: crate::GroupOptions::max_uncommitted

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt as _;
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use tokio::sync::{OwnedSemaphorePermit, watch};

use super::share::Lease;
use super::{BoxFuture, CatchUnwind, GroupRunner};
use crate::handler::Delivery;
use crate::transport::{Record, Transport, TransportError};
use std::sync::atomic::Ordering;

/// The offsets of one partition read and not yet committable: which of them are done, and so
/// the position that may be committed.
#[derive(Debug)]
pub(crate) struct Window {
    /// Offsets read, in order, with whether each is done; the front is the oldest not yet
    /// passed by the position.
    pending: VecDeque<(u64, bool)>,
    /// The offset after the newest record read.
    read_to: u64,
}

impl Window {
    /// An empty window at `position`.
    pub(crate) fn new(position: u64) -> Self {
        Window {
            pending: VecDeque::new(),
            read_to: position,
        }
    }

    /// Records that `offset` was read (offsets only grow; gaps are allowed).
    pub(crate) fn read(&mut self, offset: u64) {
        debug_assert!(offset >= self.read_to, "offsets are read in order");
        self.pending.push_back((offset, false));
        self.read_to = offset + 1;
    }

    /// Marks `offset` done; returns whether the position moved.
    pub(crate) fn done(&mut self, offset: u64) -> bool {
        if let Ok(index) = self.pending.binary_search_by_key(&offset, |(o, _)| *o) {
            self.pending[index].1 = true;
        }
        let mut moved = false;
        while let Some((_, true)) = self.pending.front() {
            self.pending.pop_front();
            moved = true;
        }
        moved
    }

    /// The position to commit: the oldest offset not done, or the end of what was read.
    pub(crate) fn position(&self) -> u64 {
        self.pending
            .front()
            .map_or(self.read_to, |(offset, _)| *offset)
    }

    /// Where the next read starts.
    pub(crate) fn read_to(&self) -> u64 {
        self.read_to
    }

    /// Offsets between the position and the newest record read.
    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }
}

/// Why a partition loop returned.
enum Exit {
    /// The app is stopping.
    Shutdown,
    /// A record's future panicked outside any handler (a bug: a handler's panic is caught and
    /// dead-lettered): its record would never be done, so start again from the committed
    /// position.
    Restart,
    /// Another instance took the partition: what runs is abandoned at once.
    Lost,
}

/// The lane a record runs in: its key, or none (a record whose key and id cannot be read,
/// which has nothing to keep in order and runs on its own).
type LaneKey = Option<Vec<u8>>;

/// What a record's future returns: its lane and offset, or `None` if it panicked.
type Finished = Option<(LaneKey, u64)>;

/// The lanes of one partition.
struct Lanes {
    /// Busy keys (a record of theirs is running or holds a slot in `ready`), each with the
    /// records read behind it, in read order.
    busy: crate::FastMap<Vec<u8>, VecDeque<Record>>,
    /// Records whose key was free when they came, waiting for a slot, first come first served.
    ready: VecDeque<(LaneKey, Record)>,
    /// The records running: at most `slots`.
    running: FuturesUnordered<BoxFuture<'static, Finished>>,
    slots: usize,
    /// The claim the partition runs under, when instances share the group's partitions: a
    /// record's handler starts only while it holds.
    lease: Option<Arc<Lease>>,
}

impl Lanes {
    fn new(slots: usize, lease: Option<Arc<Lease>>) -> Self {
        Lanes {
            busy: crate::FastMap::default(),
            ready: VecDeque::new(),
            running: FuturesUnordered::new(),
            slots: slots.max(1),
            lease,
        }
    }
}

/// A read of the partition in progress: the records and the group permits taken for them.
type Read = BoxFuture<
    'static,
    (
        Option<OwnedSemaphorePermit>,
        Result<Vec<Record>, TransportError>,
    ),
>;

impl<T: Transport> GroupRunner<T> {
    /// Runs one partition until `shutdown` turns true, then drains its lanes (up to
    /// [`crate::GroupOptions::drain_timeout`]) and commits what they finished. Under a claim
    /// (`claimed`: the lease and the position it was taken at), commits go through the claim,
    /// and the loop returns at once when the claim is lost.
    pub(crate) async fn run_partition(
        self: Arc<Self>,
        topic: String,
        partition: u32,
        claimed: Option<(Arc<Lease>, u64)>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let topic: Arc<str> = Arc::from(topic);
        if let Some((lease, mut start)) = claimed {
            loop {
                match self
                    .run_lanes(topic.clone(), partition, start, Some(&lease), &mut shutdown)
                    .await
                {
                    Exit::Shutdown | Exit::Lost => return,
                    Exit::Restart => {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        start = lease.position().await;
                    }
                }
            }
        }
        loop {
            let mut failing = Failing::new(&self, "read the committed position", &topic, partition);
            let start = loop {
                match self
                    .transport
                    .committed(&self.group, &topic, partition)
                    .await
                {
                    Ok(next) => {
                        failing.recovered();
                        break next;
                    }
                    Err(_) if *shutdown.borrow() => return,
                    Err(err) => {
                        failing.failed(&err);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            };
            match self
                .run_lanes(topic.clone(), partition, start, None, &mut shutdown)
                .await
            {
                Exit::Shutdown | Exit::Lost => return,
                Exit::Restart => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }

    fn read(&self, topic: &Arc<str>, partition: u32, from: u64, max: usize, wait: bool) -> Read {
        let transport = self.transport.clone();
        let permits = self.in_flight.clone();
        let topic = topic.clone();
        Box::pin(async move {
            if wait {
                transport
                    .wait(&topic, partition, from, Duration::from_millis(500))
                    .await;
                // Let a producer that is writing right now append a few more records, so the
                // next read is a batch rather than one record per wake-up.
                tokio::task::yield_now().await;
            }
            // Only now the group's permits: a partition waiting for records holds none.
            let permit = permits
                .acquire_many_owned(u32::try_from(max).unwrap_or(u32::MAX))
                .await
                .expect("the group's semaphore is never closed");
            match transport.fetch(&topic, partition, from, max).await {
                Ok(records) => (Some(permit), Ok(records)),
                Err(err) => {
                    drop(permit);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    (None, Err(err))
                }
            }
        })
    }

    /// Commits `position`, through the claim when there is one; `None` when the claim was lost.
    fn commit(
        self: &Arc<Self>,
        topic: &Arc<str>,
        partition: u32,
        position: u64,
        lease: Option<&Arc<Lease>>,
    ) -> BoxFuture<'static, Option<u64>> {
        let (runner, topic, lease) = (self.clone(), topic.clone(), lease.cloned());
        Box::pin(async move {
            let mut failing = Failing::new(&runner, "commit", &topic, partition);
            loop {
                let written = match &lease {
                    Some(lease) => {
                        lease
                            .write(
                                &*runner.transport,
                                (&runner.group, &topic, partition),
                                Some(position),
                                false,
                            )
                            .await
                    }
                    None => runner
                        .transport
                        .commit(&runner.group, &topic, partition, position)
                        .await
                        .map(|()| true),
                };
                match written {
                    Ok(false) => return None,
                    Ok(true) => {
                        failing.recovered();
                        return Some(position);
                    }
                    Err(err) => {
                        failing.failed(&err);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        })
    }

    async fn run_lanes(
        self: &Arc<Self>,
        topic: Arc<str>,
        partition: u32,
        start: u64,
        lease: Option<&Arc<Lease>>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Exit {
        let options = &self.options;
        let mut window = Window::new(start);
        let mut committed = start;
        let mut lanes = Lanes::new(options.concurrency, lease.cloned());
        let group_limit = options.max_in_flight_per_group.max(1);
        // Records read and not yet done; each holds one of the group's permits.
        let mut outstanding = 0usize;
        let mut read: Option<Read> = None;
        let mut wait_first = false;
        let mut commit: Option<BoxFuture<'static, Option<u64>>> = None;
        let mut busy = false;
        let mut stopping: Option<tokio::time::Instant> = None;
        let mut fetching = Failing::new(self, "fetch", &topic, partition);
        let exit = loop {
            if read.is_none() && stopping.is_none() {
                let room = options
                    .batch
                    .max(1)
                    .min(options.max_in_flight.max(1).saturating_sub(outstanding))
                    .min(options.max_uncommitted.max(1).saturating_sub(window.len()))
                    .min(group_limit);
                if room > 0 {
                    read = Some(self.read(&topic, partition, window.read_to(), room, wait_first));
                }
            }
            if commit.is_none() && window.position() > committed {
                commit = Some(self.commit(&topic, partition, window.position(), lease));
            }
            let now_busy = committed < window.read_to();
            if now_busy != busy {
                if now_busy {
                    self.activity.begin();
                } else {
                    self.activity.end();
                }
                busy = now_busy;
            }
            if stopping.is_some() && lanes.running.is_empty() && commit.is_none() {
                break Exit::Shutdown;
            }
            let drain_deadline = stopping;
            tokio::select! {
                biased;
                Some(first) = lanes.running.next(), if !lanes.running.is_empty() => {
                    let mut finished = Some(first);
                    let mut done = 0;
                    let mut panicked = false;
                    // This completion and every other one already waiting, so that one commit
                    // covers them.
                    while let Some(record) = finished {
                        let Some((key, offset)) = record else {
                            panicked = true;
                            break;
                        };
                        window.done(offset);
                        self.next_in_lane(&mut lanes, key, shutdown);
                        done += 1;
                        finished = lanes.running.next().now_or_never().flatten();
                    }
                    outstanding -= done;
                    self.in_flight.add_permits(done);
                    if panicked {
                        break Exit::Restart;
                    }
                }
                position = async { commit.as_mut().expect("guarded").await }, if commit.is_some() => {
                    commit = None;
                    match position {
                        Some(position) => committed = position,
                        None => break Exit::Lost,
                    }
                }
                () = async { lease.expect("guarded").lost().await }, if lease.is_some() => {
                    break Exit::Lost;
                }
                (permit, fetched) = async { read.as_mut().expect("guarded").await }, if read.is_some() => {
                    read = None;
                    match &fetched {
                        Ok(_) => fetching.recovered(),
                        Err(err) => fetching.failed(err),
                    }
                    match fetched {
                        Ok(records) if !records.is_empty() => {
                            wait_first = false;
                            let taken = permit.map_or(0, |p| {
                                let n = p.num_permits();
                                p.forget();
                                n
                            });
                            // Permits for records not returned go back now.
                            self.in_flight.add_permits(taken.saturating_sub(records.len()));
                            outstanding += records.len();
                            for record in records {
                                window.read(record.offset);
                                self.dispatch(&mut lanes, shutdown, record);
                            }
                        }
                        // Nothing new, or the engine failed (after a pause): wait, then read again.
                        Ok(_) | Err(_) => {
                            drop(permit);
                            wait_first = true;
                        }
                    }
                }
                _ = shutdown.changed(), if stopping.is_none() => {
                    // Start nothing new; what runs may finish within the bound.
                    read = None;
                    stopping = Some(tokio::time::Instant::now() + options.drain_timeout);
                }
                () = async {
                    match drain_deadline {
                        Some(deadline) => tokio::time::sleep_until(deadline).await,
                        None => std::future::pending().await,
                    }
                }, if drain_deadline.is_some() => {
                    // What is still running is abandoned (dropped below) and will be
                    // redelivered from the committed position.
                    break Exit::Shutdown;
                }
            }
        };
        // Records not done (running, waiting or never started) are redelivered from the
        // committed position; their group permits go back.
        drop(lanes);
        self.in_flight.add_permits(outstanding);
        if busy {
            self.activity.end();
        }
        exit
    }

    /// Gives `record` to its lane: behind its key's earlier records if the key is busy, else
    /// running now if a slot is free, else first in line for one.
    fn dispatch(
        self: &Arc<Self>,
        lanes: &mut Lanes,
        shutdown: &watch::Receiver<bool>,
        record: Record,
    ) {
        let key = match self.lane_key(&record) {
            Some(key) => {
                if let Some(waiting) = lanes.busy.get_mut(key.as_ref()) {
                    waiting.push_back(record);
                    return;
                }
                let key = key.into_owned();
                lanes.busy.insert(key.clone(), VecDeque::new());
                Some(key)
            }
            None => None,
        };
        if lanes.running.len() < lanes.slots && lanes.ready.is_empty() {
            self.start(lanes, key, record, shutdown);
        } else {
            lanes.ready.push_back((key, record));
        }
    }

    /// A record of `key` is done: the key's next record (if any) gets in line for a slot, and
    /// the free slot goes to the record first in line.
    fn next_in_lane(
        self: &Arc<Self>,
        lanes: &mut Lanes,
        key: LaneKey,
        shutdown: &watch::Receiver<bool>,
    ) {
        if let Some(key) = key
            && let Some(waiting) = lanes.busy.get_mut(&key)
        {
            match waiting.pop_front() {
                Some(next) => lanes.ready.push_back((Some(key), next)),
                None => {
                    lanes.busy.remove(&key);
                }
            }
        }
        // Stopping: what has not started stays unstarted (redelivered after the restart).
        if *shutdown.borrow() {
            return;
        }
        while lanes.running.len() < lanes.slots
            && let Some((key, record)) = lanes.ready.pop_front()
        {
            self.start(lanes, key, record, shutdown);
        }
    }

    /// Starts `record`: delivered until done, retried after a pause while the stores or the
    /// dead-letter queue cannot be reached (only this key waits). Returns its lane and offset;
    /// `None` if it panicked outside the handler (a handler's own panic is dead-lettered).
    fn start(
        self: &Arc<Self>,
        lanes: &mut Lanes,
        key: LaneKey,
        record: Record,
        shutdown: &watch::Receiver<bool>,
    ) {
        let runner = self.clone();
        let shutdown = shutdown.clone();
        let lease = lanes.lease.clone();
        let delivery = async move {
            if let Some(lease) = &lease {
                lease.ready().await;
            }
            let mut failing = None;
            loop {
                match runner.deliver(&record, Delivery::Live, false).await {
                    Ok(()) => {
                        if let Some(failing) = failing.as_mut() {
                            Failing::recovered(failing);
                        }
                        return (key, record.offset);
                    }
                    // Abandoned: redelivered from the committed position on the next start.
                    Err(_) if *shutdown.borrow() => std::future::pending::<()>().await,
                    Err(err) => {
                        failing
                            .get_or_insert_with(|| {
                                Failing::new(&runner, "deliver", &record.topic, record.partition)
                            })
                            .failed(&err);
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        };
        lanes.running.push(Box::pin(async move {
            CatchUnwind(std::pin::pin!(delivery)).await.ok()
        }));
    }

    /// The lane a record runs in: its partition key. Unkeyed records have no order to keep, but
    /// copies of one event (a producer retry) must not run side by side, or both would pass the
    /// dedupe check before either is marked: they share a lane by dedupe key (or id).
    fn lane_key<'r>(&self, record: &'r Record) -> Option<Cow<'r, [u8]>> {
        if let Some(key) = &record.key {
            return Some(Cow::Borrowed(key));
        }
        let header = |name: &str| {
            record
                .headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v)
        };
        // A keyless record whose event has a partition key runs in that key's lane.
        if let Some(key) = header("ce_partitionkey") {
            return Some(Cow::Borrowed(key));
        }
        if let Some(id) = header("ce_dedupekey").or_else(|| header("ce_id")) {
            return Some(Cow::Owned([b"\0dedupe:".as_slice(), id].concat()));
        }
        // A structured-mode record carries its key and id in the payload.
        let raw = crate::transport::decode_record(record, &self.limits).ok()?;
        Some(Cow::Owned(match raw.partition_key {
            Some(key) => key.into_bytes(),
            None => {
                let id = raw.dedupe_key.unwrap_or_else(|| raw.id.to_string());
                [b"\0dedupe:".as_slice(), id.as_bytes()].concat()
            }
        }))
    }
}

/// A streak of failed engine or store calls of one consumer loop: each failure is counted in
/// [`GroupStats::engine_errors`](super::GroupStats::engine_errors); the first, then the 8th,
/// 16th, 32nd... are logged as warnings, and the recovery once, so an outage is visible without
/// a line every 200 ms.
struct Failing<'a, T: Transport> {
    runner: &'a GroupRunner<T>,
    operation: &'static str,
    topic: &'a str,
    partition: u32,
    streak: u64,
}

impl<'a, T: Transport> Failing<'a, T> {
    fn new(
        runner: &'a GroupRunner<T>,
        operation: &'static str,
        topic: &'a str,
        partition: u32,
    ) -> Self {
        Failing {
            runner,
            operation,
            topic,
            partition,
            streak: 0,
        }
    }

    fn failed(&mut self, err: &TransportError) {
        self.streak += 1;
        self.runner
            .stats
            .engine_errors
            .fetch_add(1, Ordering::Relaxed);
        let streak = self.streak;
        if streak == 1 || streak.is_power_of_two() && streak >= 8 {
            tracing::warn!(
                target: "event_runtime::consumer",
                group = %self.runner.group,
                instance = %self.runner.instance,
                topic = self.topic,
                partition = self.partition,
                operation = self.operation,
                failures = streak,
                error = %err,
                "consumer call failed; retrying",
            );
        }
    }

    fn recovered(&mut self) {
        if self.streak > 0 {
            tracing::info!(
                target: "event_runtime::consumer",
                group = %self.runner.group,
                instance = %self.runner.instance,
                topic = self.topic,
                partition = self.partition,
                operation = self.operation,
                failures = self.streak,
                "consumer call succeeded again",
            );
            self.streak = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Window;

    #[test]
    fn the_position_is_the_oldest_offset_not_done() {
        let mut window = Window::new(10);
        assert_eq!(window.position(), 10);
        for offset in [10, 11, 13, 14] {
            window.read(offset);
        }
        assert_eq!(
            (window.position(), window.read_to(), window.len()),
            (10, 15, 4)
        );
        assert!(!window.done(11), "10 is not done");
        assert!(!window.done(14));
        assert_eq!(window.position(), 10);
        assert!(window.done(10));
        // 10 and 11 are done; 12 was never read (a gap); 13 is the oldest not done.
        assert_eq!(window.position(), 13);
        assert!(window.done(13));
        assert_eq!((window.position(), window.len()), (15, 0));
        // An offset done twice (or never read) changes nothing.
        assert!(!window.done(13));
        assert_eq!(window.position(), 15);
    }

    proptest::proptest! {
        /// Whatever the order records finish in, the position is never past an offset not done,
        /// and reaches the end once all are done.
        #[test]
        fn the_position_never_passes_an_unfinished_offset(
            gaps in proptest::collection::vec(0u64..3, 1..60),
            order in proptest::collection::vec(proptest::num::usize::ANY, 1..60),
        ) {
            let mut window = Window::new(0);
            let mut offsets = Vec::new();
            let mut next = 0;
            for gap in gaps {
                next += gap;
                window.read(next);
                offsets.push(next);
                next += 1;
            }
            let mut left = offsets.clone();
            for pick in order.into_iter().chain(std::iter::repeat(0)).take(offsets.len()) {
                let offset = left.remove(pick % left.len());
                window.done(offset);
                let oldest = left.iter().min().copied().unwrap_or(next);
                proptest::prop_assert_eq!(window.position(), oldest);
            }
            proptest::prop_assert_eq!(window.position(), next);
        }
    }
}
