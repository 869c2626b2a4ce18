//! Several instances of one service on one engine: the cases for an engine whose instances
//! share a group's partitions ([`Transport::sharing`]). On other engines they return
//! at once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use event_runtime::app::{GroupOptions, Running};
use event_runtime::dlq::{LetterFilter, LetterStatus, Selection};
use event_runtime::transport::{Claim, Sharing, Transport};
use event_runtime::{Context, Envelope, HandlerError};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::Engine;
use crate::fixture::{HandlerFuture, Step, steps};

/// Every handler run: (instance, account, seq).
type Runs = Arc<Mutex<Vec<(String, String, u32)>>>;

const PARTITIONS: u32 = 6;

/// An instance `id` of a service whose group `g` records its runs in `runs`.
async fn instance<E: Engine>(
    engine: &E,
    id: &str,
    runs: &Runs,
    claim_ttl: Duration,
) -> Running<E::Transport> {
    failing_instance(engine, id, runs, claim_ttl, Arc::default()).await
}

/// How long the handler takes for the account `slow`.
const SLOW: Duration = Duration::from_secs(2);

/// As [`instance`], refusing every account's first step while `broken` is set. The account
/// `slow` takes [`SLOW`] per step, recorded as `slow-started` when it starts.
async fn failing_instance<E: Engine>(
    engine: &E,
    id: &str,
    runs: &Runs,
    claim_ttl: Duration,
    broken: Arc<AtomicBool>,
) -> Running<E::Transport> {
    let mut app = engine.app().await;
    let (runs, me) = (runs.clone(), id.to_owned());
    app.instance(id)
        .partitions(PARTITIONS)
        .group_options(
            "g",
            GroupOptions {
                claim_ttl,
                drain_timeout: Duration::from_secs(5),
                ..GroupOptions::default()
            },
        )
        .subscribe::<Step, _>("g", move |event: Envelope<Step>, _ctx: Context| {
            let (runs, me) = (runs.clone(), me.clone());
            let refuse = event.data.seq == 0 && broken.load(Ordering::SeqCst);
            Box::pin(async move {
                tokio::task::yield_now().await;
                if event.data.account == "slow" {
                    runs.lock()
                        .unwrap()
                        .push((me.clone(), "slow-started".into(), event.data.seq));
                    tokio::time::sleep(SLOW).await;
                }
                if refuse {
                    return Err(HandlerError::permanent("refused"));
                }
                runs.lock()
                    .unwrap()
                    .push((me, event.data.account.clone(), event.data.seq));
                Ok(())
            }) as HandlerFuture
        });
    app.start().await.unwrap()
}

/// Claims of 3 s, or Kafka sessions of 6 s: tansu pauses a rejoining member for 3 s without
/// counting it as contact, so a 3 s session can expire during its own rejoin and the group
/// never settles (seen once in CI: one instance with half the partitions, the rest unowned).
fn claims(sharing: Sharing) -> Duration {
    match sharing {
        Sharing::Engine => Duration::from_secs(6),
        _ => Duration::from_secs(3),
    }
}

/// Waits until the instances own disjoint shares that cover every partition, each within one
/// of an even share.
async fn settled<T: Transport>(instances: &[&Running<T>], within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let shares: Vec<Vec<(String, u32)>> = instances.iter().map(|r| r.owned("g")).collect();
        let all: BTreeSet<&(String, u32)> = shares.iter().flatten().collect();
        let total: usize = shares.iter().map(Vec::len).sum();
        let even = PARTITIONS as usize / instances.len();
        if total == PARTITIONS as usize
            && all.len() == total
            && shares
                .iter()
                .all(|s| s.len() >= even && s.len() <= even + 1)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the instances did not settle on disjoint, even shares: {shares:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until every event of `expected` was handled at least once.
async fn all_handled(runs: &Runs, expected: &BTreeSet<(String, u32)>, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let handled: BTreeSet<(String, u32)> = runs
            .lock()
            .unwrap()
            .iter()
            .map(|(_, a, s)| (a.clone(), *s))
            .collect();
        if expected.is_subset(&handled) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} events handled",
            handled.len(),
            expected.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn keys(events: &[Envelope<Step>]) -> BTreeSet<(String, u32)> {
    events
        .iter()
        .map(|e| (e.data.account.clone(), e.data.seq))
        .collect()
}

/// Three instances of one group share its partitions: each owns a disjoint, even share, each
/// handles events, no event is handled by two instances (or twice), and every account's events
/// are handled in order by the one instance owning its partition.
pub async fn instances_share_a_groups_partitions<E: Engine>(engine: E) {
    if engine.transport().await.sharing() == Sharing::None {
        return;
    }
    let runs: Runs = Arc::default();
    let ttl = claims(engine.transport().await.sharing());
    let a = instance(&engine, "inst-a", &runs, ttl).await;
    let b = instance(&engine, "inst-b", &runs, ttl).await;
    let c = instance(&engine, "inst-c", &runs, ttl).await;
    settled(&[&a, &b, &c], Duration::from_secs(20)).await;
    // The members, where the runtime deals the partitions (an engine that assigns them keeps
    // its members to itself).
    if engine.transport().await.sharing() == Sharing::Claims {
        for r in [&a, &b, &c] {
            assert_eq!(r.members("g"), ["inst-a", "inst-b", "inst-c"]);
        }
    }
    let events = steps(30, 10);
    a.publisher().publish_all(events.clone()).await.unwrap();
    all_handled(&runs, &keys(&events), Duration::from_secs(30)).await;
    for r in [&a, &b, &c] {
        assert!(r.wait_idle(Duration::from_secs(20)).await);
    }
    let runs = runs.lock().unwrap().clone();
    assert_eq!(runs.len(), events.len(), "an event was handled twice");
    let mut by_instance: BTreeMap<&str, usize> = BTreeMap::new();
    let mut order: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    let mut handler_of: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (instance, account, seq) in &runs {
        *by_instance.entry(instance).or_default() += 1;
        order.entry(account).or_default().push(*seq);
        handler_of.entry(account).or_default().insert(instance);
    }
    assert_eq!(
        by_instance.len(),
        3,
        "every instance handles a share: {by_instance:?}"
    );
    for (account, seqs) in order {
        assert_eq!(seqs, (0..10).collect::<Vec<_>>(), "{account} out of order");
        assert_eq!(
            handler_of[account].len(),
            1,
            "{account} ran on two instances"
        );
    }
    for r in [a, b, c] {
        r.stop().await;
    }
}

/// An instance dies without stopping (its consumers aborted, its claims left to lapse): within
/// about the claim's time the survivor owns every partition, and every event is handled. (On an
/// engine that assigns partitions itself, the dropped instance's client may leave its group as
/// it closes, so the partitions may move sooner.)
pub async fn a_dead_instances_partitions_move_to_the_survivors<E: Engine>(engine: E) {
    let sharing = engine.transport().await.sharing();
    if sharing == Sharing::None {
        return;
    }
    let runs: Runs = Arc::default();
    // Kafka sessions shorter than a few seconds do not survive a rebalance on every broker
    // (tansu pauses rejoining members for 3 s).
    let ttl = match sharing {
        Sharing::Engine => Duration::from_secs(6),
        _ => Duration::from_millis(600),
    };
    let a = instance(&engine, "inst-a", &runs, ttl).await;
    let b = instance(&engine, "inst-b", &runs, ttl).await;
    settled(&[&a, &b], Duration::from_secs(20)).await;
    let events = steps(30, 10);
    a.publisher().publish_all(events.clone()).await.unwrap();
    // A crash: b's tasks are aborted, its claims stay until they lapse.
    drop(b);
    let killed = Instant::now();
    let deadline = killed + Duration::from_secs(20);
    while a.owned("g").len() < PARTITIONS as usize {
        assert!(Instant::now() < deadline, "a owns only {:?}", a.owned("g"));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let moved = killed.elapsed();
    assert!(
        moved >= ttl / 2 || sharing == Sharing::Engine,
        "b's partitions were taken after {moved:?}, before its claims could lapse"
    );
    all_handled(&runs, &keys(&events), Duration::from_secs(30)).await;
    assert!(a.wait_idle(Duration::from_secs(20)).await);
    a.stop().await;
}

/// An instance whose claim was taken over (it was cut off past its claim's time and another
/// instance claimed the partition) learns it at its next write, abandons the partition and
/// never moves its position again.
pub async fn a_deposed_instance_never_commits_again<E: Engine>(engine: E) {
    let t = engine.transport().await;
    if t.sharing() != Sharing::Claims {
        return;
    }
    let runs: Runs = Arc::default();
    let a = instance(&engine, "inst-a", &runs, Duration::from_millis(900)).await;
    settled(&[&a], Duration::from_secs(20)).await;
    // Another instance takes partition 0 (as if a's claim had lapsed) and sets its position.
    let slot = t.slot("g", "ledger", 0).await.unwrap();
    assert_eq!(
        slot.claim.as_ref().map(|c| c.owner.as_str()),
        Some("inst-a")
    );
    let far = slot.claim.as_ref().unwrap().until_ms + 3_600_000;
    let intruder = Claim {
        owner: "intruder".into(),
        until_ms: far,
    };
    let taken = t
        .swap_slot("g", "ledger", 0, 0, Some(&intruder), slot.revision)
        .await
        .unwrap();
    assert!(taken.is_some(), "the slot's revision is what a read gave");
    // a renews within a third of its claim's time, fails, and abandons partition 0.
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.owned("g").iter().any(|(_, p)| *p == 0) {
        assert!(Instant::now() < deadline, "a still claims partition 0");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Events for every partition: a handles the other partitions' and none of partition 0's,
    // and partition 0's slot stays as the intruder wrote it.
    let events = steps(30, 2);
    a.publisher().publish_all(events.clone()).await.unwrap();
    let p0: BTreeSet<String> = events
        .iter()
        .filter(|e| {
            event_runtime::partition::partition_for_key(e.data.account.as_bytes(), PARTITIONS) == 0
        })
        .map(|e| e.data.account.clone())
        .collect();
    assert!(!p0.is_empty());
    let others = events.len() - 2 * p0.len();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let handled = runs.lock().unwrap().clone();
        assert!(
            handled.iter().all(|(_, account, _)| !p0.contains(account)),
            "a handled an event of the partition it lost"
        );
        if handled.len() >= others {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {others} handled",
            handled.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after = t.slot("g", "ledger", 0).await.unwrap();
    assert_eq!(
        (after.next_offset, after.claim, after.revision),
        (0, Some(intruder), taken.unwrap()),
        "a wrote partition 0's slot after losing it"
    );
    a.stop().await;
}

/// The slots instances share partitions through: a compare-and-set on a revision, which every
/// write changes (a plain commit too), and the members' announcements.
pub async fn slots_are_compare_and_set<E: Engine>(engine: E) {
    let t = engine.transport().await;
    if t.sharing() != Sharing::Claims {
        return;
    }
    t.ensure_topic("slots", 2).await.unwrap();
    let empty = t.slot("g", "slots", 1).await.unwrap();
    assert_eq!(
        (empty.next_offset, &empty.claim, empty.revision),
        (0, &None, 0)
    );
    let claim = |owner: &str| Claim {
        owner: owner.into(),
        until_ms: 4_000_000_000_000,
    };
    let first = t
        .swap_slot("g", "slots", 1, 5, Some(&claim("one")), 0)
        .await
        .unwrap()
        .expect("a slot never written swaps over revision 0");
    assert_eq!(
        t.swap_slot("g", "slots", 1, 6, Some(&claim("two")), 0)
            .await
            .unwrap(),
        None,
        "a second writer over the same revision loses"
    );
    let slot = t.slot("g", "slots", 1).await.unwrap();
    assert_eq!(
        (slot.next_offset, slot.claim, slot.revision),
        (5, Some(claim("one")), first)
    );
    assert_eq!(t.committed("g", "slots", 1).await.unwrap(), 5);
    let second = t
        .swap_slot("g", "slots", 1, 7, None, first)
        .await
        .unwrap()
        .expect("the holder of the revision writes");
    assert_ne!(second, first);
    assert_eq!(t.committed("g", "slots", 1).await.unwrap(), 7);
    // A plain commit (an operator's reset) changes the revision: the holder's next write fails.
    t.commit("g", "slots", 1, 3).await.unwrap();
    let reset = t.slot("g", "slots", 1).await.unwrap();
    assert_eq!(reset.next_offset, 3);
    assert_ne!(reset.revision, second);
    assert_eq!(
        t.swap_slot("g", "slots", 1, 9, None, second).await.unwrap(),
        None
    );
    // Other groups and partitions have slots of their own.
    assert_eq!(t.slot("g", "slots", 0).await.unwrap().revision, 0);
    assert_eq!(t.slot("h", "slots", 1).await.unwrap().revision, 0);
    // Members: announced until a time; one whose time passed is not live; leaving removes one.
    let now = event_runtime::transport::now_ms();
    assert_eq!(t.beat("g", "m-b", now + 60_000).await.unwrap(), ["m-b"]);
    assert_eq!(
        t.beat("g", "m-a", now + 60_000).await.unwrap(),
        ["m-a", "m-b"]
    );
    assert_eq!(
        t.beat("g", "m-c", now - 1).await.unwrap(),
        ["m-a", "m-b"],
        "lapsed"
    );
    assert_eq!(
        t.beat("h", "m-z", now + 60_000).await.unwrap(),
        ["m-z"],
        "per group"
    );
    t.leave("g", "m-b").await.unwrap();
    assert_eq!(t.beat("g", "m-a", now + 60_000).await.unwrap(), ["m-a"]);
}

/// Dead letters of two instances' partitions, redriven at once: each request runs on the one
/// instance owning its record's partition, so every letter is resolved once and every event's
/// redrive is handled once.
pub async fn redrives_run_once_across_instances<E: Engine>(engine: E) {
    if engine.transport().await.sharing() == Sharing::None {
        return;
    }
    let runs: Runs = Arc::default();
    let broken = Arc::new(AtomicBool::new(true));
    let ttl = claims(engine.transport().await.sharing());
    let a = failing_instance(&engine, "inst-a", &runs, ttl, broken.clone()).await;
    let b = failing_instance(&engine, "inst-b", &runs, ttl, broken.clone()).await;
    settled(&[&a, &b], Duration::from_secs(20)).await;
    a.publisher().publish_all(steps(12, 2)).await.unwrap();
    for r in [&a, &b] {
        assert!(r.wait_idle(Duration::from_secs(20)).await);
    }
    let dlq = a.dead_letters().clone();
    let letters = dlq.list(&LetterFilter::default()).await.unwrap();
    assert_eq!(letters.len(), 12, "every account's first step");
    broken.store(false, Ordering::SeqCst);
    dlq.request_redrive(Some("g"), Selection::All, "ops")
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let open = dlq.list(&LetterFilter::default()).await.unwrap();
        if open.is_empty() && a.wait_idle(Duration::from_millis(1)).await {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} letters still open",
            open.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut actors = BTreeSet::new();
    for letter in &letters {
        assert_eq!(
            dlq.get(letter.id).await.unwrap().unwrap().status,
            LetterStatus::Resolved
        );
        let resolved: Vec<String> = dlq
            .audit(letter.id)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.action == "resolved")
            .map(|e| e.actor)
            .collect();
        assert_eq!(
            resolved.len(),
            1,
            "letter {} resolved {resolved:?}",
            letter.id
        );
        actors.extend(resolved);
    }
    assert_eq!(
        actors,
        BTreeSet::from([
            "consumer:g@inst-a".to_owned(),
            "consumer:g@inst-b".to_owned()
        ]),
        "each instance redrives the letters of its partitions"
    );
    let firsts = runs
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, _, seq)| *seq == 0)
        .count();
    assert_eq!(firsts, 12, "a redriven event was handled twice");
    a.stop().await;
    b.stop().await;
}

/// An instance stops while one of its handlers runs longer than its claim's time: it keeps
/// renewing the claim while it drains, so the other instance takes the partition only once it
/// is released, and the event is handled once.
pub async fn a_stopping_instance_keeps_its_claims_while_it_drains<E: Engine>(engine: E) {
    if engine.transport().await.sharing() != Sharing::Claims {
        return;
    }
    let runs: Runs = Arc::default();
    let ttl = Duration::from_millis(500);
    let a = instance(&engine, "inst-a", &runs, ttl).await;
    let b = instance(&engine, "inst-b", &runs, ttl).await;
    settled(&[&a, &b], Duration::from_secs(20)).await;
    a.publisher()
        .publish(Envelope::event(Step {
            account: "slow".into(),
            seq: 0,
        }))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let runner = loop {
        let started = runs
            .lock()
            .unwrap()
            .iter()
            .find(|(_, account, _)| account == "slow-started")
            .map(|(instance, _, _)| instance.clone());
        if let Some(instance) = started {
            break instance;
        }
        assert!(Instant::now() < deadline, "the slow handler never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    // Stop the instance running it: its drain outlasts the claim's time four times over.
    let (stopping, staying) = if runner == "inst-a" { (a, b) } else { (b, a) };
    stopping.stop().await;
    assert!(staying.wait_idle(Duration::from_secs(10)).await);
    let runs = runs.lock().unwrap().clone();
    let starts = runs.iter().filter(|(_, a, _)| a == "slow-started").count();
    let done = runs.iter().filter(|(_, a, _)| a == "slow").count();
    assert_eq!(
        (starts, done),
        (1, 1),
        "the slow event ran on both instances: {runs:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while staying.owned("g").len() < PARTITIONS as usize {
        assert!(
            Instant::now() < deadline,
            "the partitions were not handed over"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    staying.stop().await;
}

/// Two instances each receive a record with one dedupe key (different partition keys, in
/// partitions the two own): the instance that claims the key first runs its handler; the other
/// waits for that claim instead of running its own at the same time, then finds the key marked.
/// Without claims taken before the handler (a check before, a mark after), both ran.
pub async fn instances_never_run_one_dedupe_key_at_once<E: Engine>(engine: E) {
    let sharing = engine.transport().await.sharing();
    if sharing == Sharing::None {
        return;
    }
    let started: Runs = Arc::default();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let mut running = Vec::new();
    for id in ["inst-a", "inst-b"] {
        let mut app = engine.app().await;
        let (started, gate, me) = (started.clone(), gate.clone(), id.to_owned());
        app.instance(id)
            .partitions(PARTITIONS)
            .group_options(
                "g",
                GroupOptions {
                    claim_ttl: claims(sharing),
                    ..GroupOptions::default()
                },
            )
            .subscribe::<Step, _>("g", move |event: Envelope<Step>, _ctx: Context| {
                let (started, gate, me) = (started.clone(), gate.clone(), me.clone());
                Box::pin(async move {
                    started
                        .lock()
                        .unwrap()
                        .push((me, event.data.account.clone(), event.data.seq));
                    gate.acquire().await.unwrap().forget();
                    Ok(())
                }) as HandlerFuture
            });
        running.push(app.start().await.unwrap());
    }
    let (a, b) = (&running[0], &running[1]);
    settled(&[a, b], Duration::from_secs(30)).await;
    // An account in a partition of each instance.
    let account_of = |owner: &Running<E::Transport>| {
        let owned = owner.owned("g");
        (0..1000)
            .map(|i| format!("acct-{i}"))
            .find(|account| {
                let partition =
                    event_runtime::partition::partition_for_key(account.as_bytes(), PARTITIONS);
                owned.iter().any(|(_, p)| *p == partition)
            })
            .expect("an account in a partition this instance owns")
    };
    for account in [account_of(a), account_of(b)] {
        let mut envelope = Envelope::event(Step { account, seq: 0 });
        envelope.dedupe_key = Some("transfer-11".into());
        a.publisher().publish(envelope).await.unwrap();
    }
    let waits = || {
        running
            .iter()
            .map(|r| r.stats("g").unwrap().claim_waits)
            .sum::<u64>()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while waits() == 0 {
        assert!(
            Instant::now() < deadline,
            "no instance waited for the other's claim; handlers started: {:?}",
            started.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        started.lock().unwrap().len(),
        1,
        "one handler runs while the other instance waits for the key"
    );
    gate.add_permits(2);
    for r in &running {
        assert!(r.wait_idle(Duration::from_secs(30)).await);
    }
    assert_eq!(
        started.lock().unwrap().len(),
        1,
        "the waiting record found the key marked"
    );
    let (handled, duplicates) = running.iter().fold((0, 0), |(h, d), r| {
        let stats = r.stats("g").unwrap();
        (h + stats.handled, d + stats.duplicates)
    });
    assert_eq!((handled, duplicates), (1, 1));
    for r in running {
        r.stop().await;
    }
}
