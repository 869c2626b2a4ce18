//! The cases of the suite, one public async function each, generic over the [`Engine`]: what
//! [`conformance_tests!`](crate::conformance_tests) runs, one test per function. A case panics
//! (an assertion) when the engine breaks the contract; call one directly with [`run`](crate::run)
//! to run it on its own.
//!
//! Every case uses a fresh engine from [`Engine::create`] and its own topics (`contract`,
//! `ledger`, `timed`, the groups' dead-letter topics), so cases can run in parallel on one
//! server as long as each engine instance is isolated (a prefix of its own).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use event_runtime::app::{GroupOptions, lag_of};
use event_runtime::cloudevents::binary::{Binding, to_binary};
use event_runtime::dlq::{LetterFilter, LetterStatus, ReasonKind, Selection};
use event_runtime::retry::RetryPolicy;
use event_runtime::transport::{OutgoingRecord, Transport, TransportErrorKind};
use event_runtime::{Context, Delivery, Envelope, HandlerError};

use crate::Engine;
use crate::fixture::{Seen, Step, recorder, steps};

mod instances;
pub use instances::{
    a_dead_instances_partitions_move_to_the_survivors, a_deposed_instance_never_commits_again,
    a_stopping_instance_keeps_its_claims_while_it_drains,
    instances_never_run_one_dedupe_key_at_once, instances_share_a_groups_partitions,
    redrives_run_once_across_instances, slots_are_compare_and_set,
};

fn sorted(headers: &event_runtime::transport::Headers) -> Vec<(String, Vec<u8>)> {
    let mut headers: Vec<(String, Vec<u8>)> = headers
        .iter()
        .map(|(name, value)| (name.to_owned(), value.to_vec()))
        .collect();
    headers.sort();
    headers
}

/// The `Transport` contract itself: topics, offsets from 0 per partition, fetch from any
/// offset, wait, positions per group, end offsets, and the errors.
pub async fn transport_contract<E: Engine>(engine: E) {
    let t = engine.transport().await;
    assert_eq!(t.ensure_topic("contract", 3).await.unwrap(), 3);
    assert_eq!(
        t.ensure_topic("contract", 5).await.unwrap(),
        3,
        "an existing topic keeps its count"
    );
    assert!(
        t.topics()
            .await
            .unwrap()
            .contains(&("contract".to_owned(), 3))
    );
    assert_eq!(t.end_offsets("contract").await.unwrap(), [0, 0, 0]);
    assert!(t.fetch("contract", 0, 0, 10).await.unwrap().is_empty());
    assert_eq!(t.committed("g", "contract", 1).await.unwrap(), 0);

    let record = |partition: u32, n: u8| OutgoingRecord {
        partition,
        key: Some(format!("key-{n}").into()),
        headers: vec![
            ("ce_id".to_owned(), format!("id-{n}").into_bytes()),
            ("ce_type".to_owned(), b"contract.thing".to_vec()),
            ("content-type".to_owned(), b"application/json".to_vec()),
            ("x-custom".to_owned(), vec![b'v', n]),
        ]
        .into(),
        payload: vec![n; usize::from(n) * 100].into(),
    };
    let outgoing: Vec<OutgoingRecord> = [0, 1, 0, 2, 0]
        .iter()
        .zip(1u8..)
        .map(|(p, n)| record(*p, n))
        .collect();
    let positions = t.append("contract", outgoing.clone()).await.unwrap();
    let positions: Vec<(u32, u64)> = positions.iter().map(|p| (p.partition, p.offset)).collect();
    assert_eq!(positions, [(0, 0), (1, 0), (0, 1), (2, 0), (0, 2)]);
    assert_eq!(t.end_offsets("contract").await.unwrap(), [3, 1, 1]);

    // Another handle on the same engine reads what this one wrote, byte for byte.
    let other = engine.transport().await;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let fetched = other.fetch("contract", 0, 0, 10).await.unwrap();
    assert_eq!(
        fetched.iter().map(|r| r.offset).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    for (record, sent) in fetched
        .iter()
        .zip([&outgoing[0], &outgoing[2], &outgoing[4]])
    {
        assert_eq!((&*record.topic, record.partition), ("contract", 0));
        assert_eq!(record.key, sent.key);
        assert_eq!(sorted(&record.headers), sorted(&sent.headers));
        assert_eq!(record.payload, sent.payload);
        assert!(
            (record.timestamp_ms - now_ms).abs() < 60_000,
            "{}",
            record.timestamp_ms
        );
    }
    let middle = other.fetch("contract", 0, 1, 1).await.unwrap();
    assert_eq!(middle.len(), 1);
    assert_eq!(middle[0].offset, 1);
    assert_eq!(middle[0].payload, outgoing[2].payload);
    assert_eq!(
        other
            .fetch("contract", 0, 2, 10)
            .await
            .unwrap()
            .iter()
            .map(|r| r.offset)
            .collect::<Vec<_>>(),
        [2]
    );
    assert!(other.fetch("contract", 0, 3, 10).await.unwrap().is_empty());
    assert_eq!(other.fetch("contract", 2, 0, 10).await.unwrap().len(), 1);

    // wait: at once when a record is there, after the timeout when none comes, and woken by an
    // append when one does.
    let started = Instant::now();
    t.wait("contract", 0, 2, Duration::from_secs(5)).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    let started = Instant::now();
    t.wait("contract", 1, 1, Duration::from_millis(200)).await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(150) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    let writer = engine.transport().await;
    let appended = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        writer.append("contract", vec![record(1, 9)]).await.unwrap()
    });
    let started = Instant::now();
    t.wait("contract", 1, 1, Duration::from_secs(10)).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "not woken by the append"
    );
    assert_eq!(appended.await.unwrap()[0].offset, 1);
    let woken = t.fetch("contract", 1, 1, 10).await.unwrap();
    assert_eq!(woken.len(), 1);
    assert_eq!(woken[0].offset, 1);
    assert_eq!(woken[0].payload, record(1, 9).payload);

    // Positions are per group, may move anywhere, and survive the handle.
    t.commit("g", "contract", 1, 2).await.unwrap();
    t.commit("g", "contract", 0, 3).await.unwrap();
    assert_eq!(other.committed("g", "contract", 1).await.unwrap(), 2);
    assert_eq!(other.committed("h", "contract", 1).await.unwrap(), 0);
    t.commit("g", "contract", 1, 0).await.unwrap();
    assert_eq!(t.committed("g", "contract", 1).await.unwrap(), 0);
    assert_eq!(t.committed("g", "contract", 0).await.unwrap(), 3);

    // Errors.
    let kind = |err: event_runtime::transport::TransportError| err.kind;
    assert_eq!(
        kind(t.append("nope", vec![record(0, 1)]).await.unwrap_err()),
        TransportErrorKind::UnknownTopic
    );
    // (The SQLite engine answers a fetch from an unknown topic with no records.)
    match t.fetch("nope", 0, 0, 1).await {
        Ok(records) => assert!(records.is_empty()),
        Err(err) => assert_eq!(err.kind, TransportErrorKind::UnknownTopic),
    }
    assert_eq!(
        kind(t.end_offsets("nope").await.unwrap_err()),
        TransportErrorKind::UnknownTopic
    );
    assert_eq!(
        kind(t.append("contract", vec![record(3, 1)]).await.unwrap_err()),
        TransportErrorKind::InvalidPartition
    );
    assert_eq!(t.end_offsets("contract").await.unwrap(), [3, 2, 1]);
}

/// Producers publish batches concurrently into four partitions while the group runs: per key,
/// the group handles records in exactly the order the log holds them, each once.
pub async fn per_key_order_holds_under_concurrency<E: Engine>(engine: E) {
    let mut app = engine.app().await;
    let seen: Seen = Arc::default();
    app.partitions(4)
        .subscribe::<Step, _>("ledger-view", recorder(seen.clone()));
    let running = app.start().await.unwrap();
    let publisher = running.publisher();
    let producers: Vec<_> = steps(20, 15)
        .chunks(37)
        .map(|batch| {
            let (publisher, batch) = (publisher.clone(), batch.to_vec());
            tokio::spawn(async move { publisher.publish_all(batch).await.unwrap() })
        })
        .collect();
    // Batches go out concurrently, so the order between them is the log's: per key, the group
    // must handle records in exactly the order the log holds them.
    for producer in producers {
        producer.await.unwrap();
    }
    assert!(
        running.wait_idle(Duration::from_secs(30)).await,
        "consumer did not catch up"
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 20);
    // Per key, the handling order is the log order.
    let transport = engine.transport().await;
    let mut log_order: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for (partition, end) in transport
        .end_offsets("ledger")
        .await
        .unwrap()
        .into_iter()
        .enumerate()
    {
        let mut from = 0;
        while from < end {
            for record in transport
                .fetch("ledger", partition as u32, from, 500)
                .await
                .unwrap()
            {
                let raw =
                    event_runtime::transport::decode_record(&record, &Default::default()).unwrap();
                let step = raw.decode::<Step>().unwrap().data;
                log_order.entry(step.account).or_default().push(step.seq);
                from = record.offset + 1;
            }
        }
    }
    for (account, deliveries) in &seen {
        let seqs: Vec<u32> = deliveries.iter().map(|(s, _)| *s).collect();
        assert_eq!(&seqs, &log_order[account], "order broken for {account}");
        let unique: BTreeSet<u32> = seqs.iter().copied().collect();
        assert_eq!(unique.len(), 15, "{account}: {seqs:?}");
    }
    assert_eq!(running.stats("ledger-view").unwrap().handled, 300);
    assert!(running.lag().await.unwrap().iter().all(|l| l.lag() == 0));
    running.stop().await;
}

/// A new process on the same engine starts where the group committed: only what was published
/// while it was stopped is handled.
pub async fn restart_resumes_from_the_committed_position<E: Engine>(engine: E) {
    let seen: Seen = Arc::default();
    {
        let mut app = engine.app().await;
        app.partitions(3)
            .subscribe::<Step, _>("g", recorder(seen.clone()));
        let running = app.start().await.unwrap();
        running.publisher().publish_all(steps(3, 4)).await.unwrap();
        assert!(running.wait_idle(Duration::from_secs(20)).await);
        assert_eq!(running.stats("g").unwrap().handled, 12);
        running.stop().await;
    }
    {
        // A new process: publishes while stopped, then starts where the group committed.
        let mut app = engine.app().await;
        app.subscribe::<Step, _>("g", recorder(seen.clone()));
        let more: Vec<Envelope<Step>> = (0..3)
            .map(|a| {
                Envelope::event(Step {
                    account: format!("acct-{a}"),
                    seq: 4,
                })
            })
            .collect();
        app.publisher().publish_all(more).await.unwrap();
        let running = app.start().await.unwrap();
        assert!(running.wait_idle(Duration::from_secs(20)).await);
        let stats = running.stats("g").unwrap();
        assert_eq!(
            (stats.handled, stats.duplicates),
            (3, 0),
            "only the new records: {stats:?}"
        );
        running.stop().await;
    }
    let seen = seen.lock().unwrap().clone();
    for account in ["acct-0", "acct-1", "acct-2"] {
        let seqs: Vec<u32> = seen[account].iter().map(|(s, _)| *s).collect();
        assert_eq!(seqs, [0, 1, 2, 3, 4], "{account}");
    }
}

/// A consumer dies while one key's handler runs and later records of other keys are done (its
/// tasks are aborted, not stopped). The committed position is the oldest record not done, so a
/// new app on the same engine gets that record and everything after it again: what was handled
/// and marked is dropped as a duplicate, the rest is handled, in order.
pub async fn uncommitted_records_are_redelivered_after_a_crash<E: Engine>(engine: E) {
    let seen: Seen = Arc::default();
    let stuck = Arc::new(AtomicUsize::new(0));
    {
        let mut app = engine.app().await;
        let (record, hung) = (recorder(seen.clone()), stuck.clone());
        app.partitions(1)
            .subscribe::<Step, _>("g", move |event: Envelope<Step>, ctx: Context| {
                // Offsets 0..=5 are seq 0 and 1 of the three accounts; acct-0's seq 2 is 6.
                let hang = event.data.account == "acct-0" && event.data.seq == 2;
                let stuck = hung.clone();
                let fut = record(event, ctx);
                async move {
                    if hang {
                        // The process "dies" while this handler runs.
                        stuck.fetch_add(1, Ordering::SeqCst);
                        std::future::pending::<()>().await;
                    }
                    fut.await
                }
            });
        app.publisher().publish_all(steps(3, 4)).await.unwrap();
        let running = app.start().await.unwrap();
        // Everything but acct-0's seq 2 (stuck) and seq 3 (behind it in its lane) is handled,
        // and the position stops at the stuck record: 6 of the 12 are not committed.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let handled = running.stats("g").unwrap().handled;
            let lag: u64 = running.lag().await.unwrap().iter().map(|l| l.lag()).sum();
            assert!(lag >= 6, "committed past a record not done: lag {lag}");
            if stuck.load(Ordering::SeqCst) == 1 && handled == 10 && lag == 6 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "did not reach the crash point: {handled} handled, lag {lag}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // A crash: the consumers are aborted, not stopped.
        drop(running);
    }
    {
        let mut app = engine.app().await;
        app.subscribe::<Step, _>("g", recorder(seen.clone()));
        let running = app.start().await.unwrap();
        assert!(running.wait_idle(Duration::from_secs(20)).await);
        let stats = running.stats("g").unwrap();
        assert_eq!(
            (stats.handled, stats.duplicates),
            (2, 4),
            "acct-0's seq 2 and 3 are new; the other accounts' were handled and marked: {stats:?}"
        );
        running.stop().await;
    }
    let seen = seen.lock().unwrap().clone();
    for account in ["acct-0", "acct-1", "acct-2"] {
        let seqs: Vec<u32> = seen[account].iter().map(|(s, _)| *s).collect();
        assert_eq!(seqs, [0, 1, 2, 3], "{account}");
    }
}

/// One key's handler blocks: the partition keeps reading (here in fetches of 4) and the other
/// keys' events, in later fetches, are all handled while it blocks; the blocked key's later
/// event waits behind it, and the committed position stays at the blocked record until it is
/// done. No head-of-line blocking across keys.
pub async fn a_slow_key_does_not_hold_back_other_keys<E: Engine>(engine: E) {
    let seen: Seen = Arc::default();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let blocked = Arc::new(AtomicBool::new(false));
    let mut app = engine.app().await;
    let (record, held, flag) = (recorder(seen.clone()), gate.clone(), blocked.clone());
    app.partitions(1)
        .group_options(
            "g",
            GroupOptions {
                batch: 4,
                ..GroupOptions::default()
            },
        )
        .subscribe::<Step, _>("g", move |event: Envelope<Step>, ctx: Context| {
            let block = event.data.account == "slow" && event.data.seq == 0;
            let (gate, flag) = (held.clone(), flag.clone());
            let fut = record(event, ctx);
            async move {
                if block {
                    flag.store(true, Ordering::SeqCst);
                    gate.acquire().await.unwrap().forget();
                }
                fut.await
            }
        });
    let publisher = app.publisher();
    let slow = |seq| {
        Envelope::event(Step {
            account: "slow".to_owned(),
            seq,
        })
    };
    let mut events = vec![slow(0)];
    events.extend(steps(8, 10));
    events.push(slow(1));
    publisher.publish_all(events).await.unwrap();
    let running = app.start().await.unwrap();

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let others: usize = {
            let seen = seen.lock().unwrap();
            seen.iter()
                .filter(|(account, _)| *account != "slow")
                .map(|(_, d)| d.len())
                .sum()
        };
        if others == 80 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {others} of the other keys' 80 events were handled while one key blocked"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(blocked.load(Ordering::SeqCst), "the slow handler ran");
    assert!(
        !seen.lock().unwrap().contains_key("slow"),
        "the slow key's later event waits behind its blocked one"
    );
    let lag: u64 = running.lag().await.unwrap().iter().map(|l| l.lag()).sum();
    assert_eq!(lag, 82, "the position stays at the record not done");

    gate.add_permits(1);
    assert!(running.wait_idle(Duration::from_secs(20)).await);
    let seen = seen.lock().unwrap().clone();
    let slow_seqs: Vec<u32> = seen["slow"].iter().map(|(s, _)| *s).collect();
    assert_eq!(slow_seqs, [0, 1]);
    for (account, deliveries) in &seen {
        let seqs: Vec<u32> = deliveries.iter().map(|(s, _)| *s).collect();
        if account != "slow" {
            assert_eq!(seqs, (0..10).collect::<Vec<_>>(), "{account}");
        }
    }
    assert_eq!(running.stats("g").unwrap().handled, 82);
    running.stop().await;
}

/// Handlers of distinct keys run at the same time (more than one is observed running at once),
/// and never two of one key.
pub async fn keys_run_concurrently_and_each_key_one_at_a_time<E: Engine>(engine: E) {
    #[derive(Default)]
    struct Gauge {
        running: usize,
        most: usize,
        per_key: BTreeMap<String, usize>,
        most_per_key: usize,
    }
    let gauge: Arc<Mutex<Gauge>> = Arc::default();
    let mut app = engine.app().await;
    let g = gauge.clone();
    app.partitions(1)
        .subscribe::<Step, _>("g", move |event: Envelope<Step>, _ctx: Context| {
            let gauge = g.clone();
            async move {
                {
                    let mut g = gauge.lock().unwrap();
                    g.running += 1;
                    g.most = g.most.max(g.running);
                    let mine = g.per_key.entry(event.data.account.clone()).or_default();
                    *mine += 1;
                    let mine = *mine;
                    g.most_per_key = g.most_per_key.max(mine);
                }
                tokio::time::sleep(Duration::from_millis(3)).await;
                let mut g = gauge.lock().unwrap();
                g.running -= 1;
                *g.per_key.get_mut(&event.data.account).unwrap() -= 1;
                Ok::<(), HandlerError>(())
            }
        });
    app.publisher().publish_all(steps(16, 8)).await.unwrap();
    let running = app.start().await.unwrap();
    assert!(running.wait_idle(Duration::from_secs(30)).await);
    assert_eq!(running.stats("g").unwrap().handled, 128);
    let (most, most_per_key) = {
        let g = gauge.lock().unwrap();
        (g.most, g.most_per_key)
    };
    assert!(most > 1, "distinct keys never ran at once");
    assert_eq!(most_per_key, 1, "two handlers of one key ran at once");
    running.stop().await;
}

/// Four producers publish one by one and in batches at once: every event is stored and handled
/// exactly once.
pub async fn nothing_is_lost_with_concurrent_producers<E: Engine>(engine: E) {
    let mut app = engine.app().await;
    let seen: Seen = Arc::default();
    app.partitions(3)
        .subscribe::<Step, _>("g", recorder(seen.clone()));
    let running = app.start().await.unwrap();
    let producers: Vec<_> = (0..4)
        .map(|producer| {
            let publisher = running.publisher();
            tokio::spawn(async move {
                for seq in 0..50 {
                    let event = Envelope::event(Step {
                        account: format!("p{producer}-{}", seq % 7),
                        seq,
                    });
                    publisher.publish(event).await.unwrap();
                }
                let batch: Vec<Envelope<Step>> = (50..100)
                    .map(|seq| {
                        Envelope::event(Step {
                            account: format!("p{producer}-{}", seq % 7),
                            seq,
                        })
                    })
                    .collect();
                publisher.publish_all(batch).await.unwrap();
            })
        })
        .collect();
    for producer in producers {
        producer.await.unwrap();
    }
    assert!(running.wait_idle(Duration::from_secs(30)).await);
    let seen = seen.lock().unwrap().clone();
    let handled: BTreeSet<(String, u32)> = seen
        .iter()
        .flat_map(|(account, d)| d.iter().map(move |(seq, _)| (account.clone(), *seq)))
        .collect();
    let expected: BTreeSet<(String, u32)> = (0..4)
        .flat_map(|p| (0..100).map(move |seq| (format!("p{p}-{}", seq % 7), seq)))
        .collect();
    assert_eq!(handled, expected);
    assert_eq!(seen.values().map(Vec::len).sum::<usize>(), 400, "each once");
    let ends = engine
        .transport()
        .await
        .end_offsets("ledger")
        .await
        .unwrap();
    assert_eq!(ends.iter().sum::<u64>(), 400);
    assert_eq!(running.stats("g").unwrap().handled, 400);
    running.stop().await;
}

/// Two events with different ids and one dedupe key (a client that retried by building the
/// event again; the key a type declares with `#[event(dedupe)]` travels as `ce_dedupekey`): the
/// first is handled, the second is a duplicate, and an event without a key is deduped by its id.
pub async fn events_sharing_a_dedupe_key_are_handled_once<E: Engine>(engine: E) {
    let mut app = engine.app().await;
    let seen: Seen = Arc::default();
    app.partitions(2)
        .subscribe::<Step, _>("g", recorder(seen.clone()));
    let running = app.start().await.unwrap();
    let publisher = running.publisher();
    let step = |seq, key: Option<&str>| {
        let mut envelope = Envelope::event(Step {
            account: "a".into(),
            seq,
        });
        envelope.dedupe_key = key.map(str::to_owned);
        envelope
    };
    let first = step(0, Some("transfer-7"));
    let again = step(1, Some("transfer-7"));
    assert_ne!(first.id, again.id);
    publisher.publish(first).await.unwrap();
    publisher.publish(again).await.unwrap();
    publisher.publish(step(2, None)).await.unwrap();
    assert!(running.wait_idle(Duration::from_secs(30)).await);
    let seqs: Vec<u32> = seen.lock().unwrap()["a"].iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, [0, 2], "the second event with the key had no effect");
    let stats = running.stats("g").unwrap();
    assert_eq!((stats.handled, stats.duplicates), (2, 1), "{stats:?}");
    running.stop().await;
}

/// Two records with one dedupe key in flight at once (different partition keys, so different
/// lanes, maybe partitions): the first claims the key before its handler runs, the second waits
/// for that claim instead of running too, then finds the key marked. Before claims, both passed
/// the check and both handlers ran.
pub async fn a_dedupe_key_in_flight_is_handled_once<E: Engine>(engine: E) {
    let mut app = engine.app().await;
    let started = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let (count, held) = (started.clone(), gate.clone());
    app.partitions(2)
        .subscribe::<Step, _>("g", move |_: Envelope<Step>, _: Context| {
            let (count, gate) = (count.clone(), held.clone());
            async move {
                count.fetch_add(1, Ordering::SeqCst);
                gate.acquire().await.unwrap().forget();
                Ok::<(), HandlerError>(())
            }
        });
    let running = app.start().await.unwrap();
    let publisher = running.publisher();
    for account in ["a", "b"] {
        let mut envelope = Envelope::event(Step {
            account: account.into(),
            seq: 0,
        });
        envelope.dedupe_key = Some("transfer-9".into());
        publisher.publish(envelope).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while running.stats("g").unwrap().claim_waits == 0 {
        assert!(
            Instant::now() < deadline,
            "the second record never waited for the claim"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        started.load(Ordering::SeqCst),
        1,
        "one handler runs while the other record waits for its key"
    );
    gate.add_permits(2);
    assert!(running.wait_idle(Duration::from_secs(30)).await);
    assert_eq!(
        started.load(Ordering::SeqCst),
        1,
        "the waiting record found the key marked"
    );
    let stats = running.stats("g").unwrap();
    assert_eq!((stats.handled, stats.duplicates), (1, 1), "{stats:?}");
    running.stop().await;
}

/// A producer that could not confirm a publish sends it again: same event id, one effect.
pub async fn a_producer_retry_has_its_effect_once<E: Engine>(engine: E) {
    let mut app = engine.app().await;
    let seen: Seen = Arc::default();
    app.partitions(2)
        .subscribe::<Step, _>("g", recorder(seen.clone()));
    let publisher = app.publisher();
    let events = steps(3, 1);
    let first = publisher.publish_all(events.clone()).await.unwrap();
    let again = publisher.publish_all(events.clone()).await.unwrap();
    let single = publisher.publish(events[0].clone()).await.unwrap();
    let running = app.start().await.unwrap();
    assert!(running.wait_idle(Duration::from_secs(20)).await);
    let stats = running.stats("g").unwrap();
    let stored: u64 = running
        .transport()
        .end_offsets("ledger")
        .await
        .unwrap()
        .iter()
        .sum();
    if engine.dedupes_appends() {
        // The engine stored each record once and acknowledged the copies with its position.
        assert_eq!(first, again);
        assert_eq!(single, first[0]);
        assert_eq!(stored, 3);
        assert_eq!((stats.handled, stats.duplicates), (3, 0), "{stats:?}");
    } else {
        assert_ne!(first, again);
        assert_eq!(stored, 7);
        assert_eq!((stats.handled, stats.duplicates), (3, 4), "{stats:?}");
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.values().map(Vec::len).sum::<usize>(), 3);
    running.stop().await;
}

/// A context adds an event type this consumer's binary does not have (`ledger.step_reversed`):
/// by default its records are skipped and counted, not dead-lettered, and the group commits past
/// them; the records around them are handled in order.
pub async fn a_type_added_to_the_context_later_is_skipped_and_counted<E: Engine>(engine: E) {
    let mut app = engine.app().await;
    let seen: Seen = Arc::default();
    app.partitions(1)
        .subscribe::<Step, _>("g", recorder(seen.clone()));
    let running = app.start().await.unwrap();
    let publisher = running.publisher();
    let step = |seq| {
        Envelope::event(Step {
            account: "a".into(),
            seq,
        })
    };
    publisher.publish(step(0)).await.unwrap();
    // What a newer producer of the context writes: a type of its own.
    let mut newer = to_binary(&step(99), Binding::Kafka).unwrap();
    newer.headers = newer.headers.with("ce_type", b"ledger.step_reversed");
    engine
        .transport()
        .await
        .append(
            "ledger",
            vec![OutgoingRecord {
                partition: 0,
                key: newer.key,
                headers: newer.headers,
                payload: newer.payload,
            }],
        )
        .await
        .unwrap();
    publisher.publish(step(1)).await.unwrap();
    assert!(running.wait_idle(Duration::from_secs(30)).await);

    let seqs: Vec<u32> = seen.lock().unwrap()["a"].iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, [0, 1], "the known records, in order");
    let stats = running.stats("g").unwrap();
    assert_eq!(
        (stats.handled, stats.unknown_types, stats.dead_lettered),
        (2, 1, 0),
        "{stats:?}"
    );
    let letters = running
        .dead_letters()
        .list(&LetterFilter::default())
        .await
        .unwrap();
    assert!(letters.is_empty(), "{letters:?}");
    let lags = running.lag().await.unwrap();
    assert!(
        lags.iter().all(|l| l.lag() == 0),
        "committed past it: {lags:?}"
    );
    running.stop().await;
}

/// Records a foreign producer wrote (garbage headers, an unknown type, a version from the future)
/// go to the dead letters, and to the group's dead-letter topic on the engine, byte for byte;
/// the good records around them are handled in order.
pub async fn poison_goes_to_the_dlq_without_blocking_other_records<E: Engine>(engine: E) {
    let mut app = engine.app().await;
    let seen: Seen = Arc::default();
    app.partitions(1)
        .group_options(
            "g",
            GroupOptions {
                // Unknown types are skipped by default; this group must know every type.
                dead_letter_unknown_types: true,
                ..GroupOptions::default()
            },
        )
        .subscribe::<Step, _>("g", recorder(seen.clone()));
    let running = app.start().await.unwrap();
    let publisher = running.publisher();
    publisher
        .publish(Envelope::event(Step {
            account: "a".into(),
            seq: 0,
        }))
        .await
        .unwrap();

    // Garbage headers, an unknown type and a version from the future, written by a foreign
    // producer straight into the log (through another handle), between good records.
    let good = Envelope::event(Step {
        account: "a".into(),
        seq: 1,
    });
    let mut future = to_binary(&good, Binding::Kafka).unwrap();
    future.headers = future
        .headers
        .with("ce_eventversion", b"7")
        .with("ce_id", uuid::Uuid::now_v7().to_string().as_bytes());
    let mut unknown = future.clone();
    unknown.headers = unknown
        .headers
        .with("ce_type", b"ledger.step_reversed")
        .with("ce_eventversion", b"1")
        .with("ce_id", uuid::Uuid::now_v7().to_string().as_bytes());
    let garbage_headers: event_runtime::transport::Headers =
        [("ce_id", &b"\xff"[..])].into_iter().collect();
    engine
        .transport()
        .await
        .append(
            "ledger",
            vec![
                OutgoingRecord {
                    partition: 0,
                    key: None,
                    headers: garbage_headers.clone(),
                    payload: b"{".to_vec().into(),
                },
                OutgoingRecord {
                    partition: 0,
                    key: None,
                    headers: unknown.headers,
                    payload: unknown.payload,
                },
                OutgoingRecord {
                    partition: 0,
                    key: None,
                    headers: future.headers,
                    payload: future.payload,
                },
            ],
        )
        .await
        .unwrap();
    publisher.publish(good).await.unwrap();
    assert!(running.wait_idle(Duration::from_secs(20)).await);

    let seqs: Vec<u32> = seen.lock().unwrap()["a"].iter().map(|(s, _)| *s).collect();
    assert_eq!(
        seqs,
        [0, 1],
        "good records around the poison are handled in order"
    );
    let mut letters = running
        .dead_letters()
        .list(&LetterFilter::default())
        .await
        .unwrap();
    letters.sort_by_key(|l| l.record.offset);
    let kinds: Vec<(&str, u64)> = letters
        .iter()
        .map(|l| (l.reason_kind.as_str(), l.record.offset))
        .collect();
    assert_eq!(
        kinds,
        [("malformed", 1), ("unknown-type", 2), ("future-version", 3)]
    );
    assert!(
        letters[0].reason.contains("ce_id") || letters[0].reason.contains("UTF-8"),
        "{}",
        letters[0].reason
    );
    assert!(
        letters[1].reason.contains("ledger.step_reversed"),
        "{}",
        letters[1].reason
    );
    assert!(
        letters[2].reason.contains("version 7"),
        "{}",
        letters[2].reason
    );
    // The original record is kept, byte for byte.
    assert_eq!(letters[0].record.payload, &b"{"[..]);
    assert_eq!(letters[0].record.headers, garbage_headers);
    assert_eq!(running.stats("g").unwrap().dead_lettered, 3);

    // Each letter was also copied to the group's dead-letter topic on the engine (`g.dlq`):
    // the record as it was, plus where it came from and why it failed.
    let t = engine.transport().await;
    let dlq_topic = event_runtime::transport::dead_letter_topic("g");
    let header = |record: &event_runtime::transport::Record, name: &str| {
        record
            .headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    };
    let expected: Vec<(String, String, String)> = letters
        .iter()
        .map(|l| {
            (
                format!("ledger/0/{}", l.record.offset),
                l.reason_kind.to_string(),
                "g".to_owned(),
            )
        })
        .collect();
    // Each copy was appended (and acknowledged) before its letter was stored, but an engine's
    // reads may lag its acknowledged writes for a moment (librdkafka's mock cluster under
    // load): read again for a bounded time before judging.
    let deadline = Instant::now() + Duration::from_secs(5);
    let (copies, mirrored) = loop {
        let mut copies = Vec::new();
        for partition in 0..t.end_offsets(&dlq_topic).await.unwrap().len() as u32 {
            copies.extend(t.fetch(&dlq_topic, partition, 0, 100).await.unwrap());
        }
        let mut mirrored: Vec<(String, String, String)> = copies
            .iter()
            .map(|c| {
                (
                    header(c, "x-evt-dlq-source").unwrap_or_default(),
                    header(c, "x-evt-dlq-reason").unwrap_or_default(),
                    header(c, "x-evt-dlq-group").unwrap_or_default(),
                )
            })
            .collect();
        mirrored.sort();
        mirrored.dedup();
        if mirrored == expected || Instant::now() > deadline {
            break (copies, mirrored);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(mirrored, expected, "dead-letter topic copies");
    let malformed = copies
        .iter()
        .find(|c| header(c, "x-evt-dlq-reason").as_deref() == Some("malformed"))
        .unwrap();
    assert_eq!(malformed.payload, &b"{"[..]);
    assert!(header(malformed, "x-evt-dlq-error").is_some_and(|e| !e.is_empty()));
    running.stop().await;
}

/// In sequenced mode a failed record parks the later records of its key (other keys go on); a
/// redrive of the head, once fixed, delivers them in order and resolves every letter.
pub async fn sequenced_mode_parks_later_events_of_a_failed_key_until_redrive<E: Engine>(engine: E) {
    let mut app = engine.app().await;
    let seen: Seen = Arc::default();
    let broken = Arc::new(AtomicBool::new(true));
    let (record, flag) = (recorder(seen.clone()), broken.clone());
    app.partitions(2)
        .group_options(
            "seq",
            GroupOptions {
                sequenced: true,
                retry: RetryPolicy::none(),
                ..GroupOptions::default()
            },
        )
        .subscribe::<Step, _>("seq", move |event: Envelope<Step>, ctx: Context| {
            let fail =
                flag.load(Ordering::SeqCst) && event.data.account == "bad" && event.data.seq == 0;
            let fut = record(event, ctx);
            async move {
                if fail {
                    return Err(HandlerError::permanent("account `bad` is frozen"));
                }
                fut.await
            }
        });
    let running = app.start().await.unwrap();
    let publisher = running.publisher();
    for seq in 0..3 {
        for account in ["bad", "good"] {
            publisher
                .publish(Envelope::event(Step {
                    account: account.into(),
                    seq,
                }))
                .await
                .unwrap();
        }
    }
    assert!(running.wait_idle(Duration::from_secs(20)).await);
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen["good"].len(), 3, "other keys are not blocked");
        assert!(!seen.contains_key("bad"));
    }
    let dlq = running.dead_letters();
    let letters = dlq.list(&LetterFilter::default()).await.unwrap();
    let statuses: Vec<(LetterStatus, Option<u64>)> = letters
        .iter()
        .map(|l| (l.status, l.parked_behind))
        .collect();
    let head = letters[0].id;
    assert_eq!(
        statuses,
        [
            (LetterStatus::Dead, None),
            (LetterStatus::Parked, Some(head)),
            (LetterStatus::Parked, Some(head))
        ]
    );

    // Fix the cause, then redrive the head: the parked events follow in order.
    broken.store(false, Ordering::SeqCst);
    assert_eq!(
        dlq.request_redrive(Some("seq"), Selection::Ids(&[head]), "alice")
            .await
            .unwrap(),
        1
    );
    assert!(running.wait_idle(Duration::from_secs(20)).await);
    let bad: Vec<(u32, Delivery)> = seen.lock().unwrap()["bad"].clone();
    assert_eq!(
        bad,
        [
            (0, Delivery::Redrive),
            (1, Delivery::Redrive),
            (2, Delivery::Redrive)
        ]
    );
    let closed = dlq
        .list(&LetterFilter {
            include_closed: true,
            ..LetterFilter::default()
        })
        .await
        .unwrap();
    assert!(closed.iter().all(|l| l.status == LetterStatus::Resolved));
    let audit: Vec<(String, String)> = dlq
        .audit(head)
        .await
        .unwrap()
        .into_iter()
        .map(|a| (a.action, a.actor))
        .collect();
    assert_eq!(
        audit,
        [
            (
                "dead-lettered".to_owned(),
                format!("consumer:seq@{}", running.instance())
            ),
            ("redrive-requested".to_owned(), "alice".to_owned()),
            (
                "resolved".to_owned(),
                format!("consumer:seq@{}", running.instance())
            ),
        ]
    );
    running.stop().await;
}

/// A replay of handled records is dropped by the dedupe marks, unless it bypasses them.
pub async fn replay_is_idempotent_unless_dedupe_is_bypassed<E: Engine>(engine: E) {
    let mut app = engine.app().await;
    let seen: Seen = Arc::default();
    app.partitions(1)
        .subscribe::<Step, _>("g", recorder(seen.clone()));
    let running = app.start().await.unwrap();
    let written = running.publisher().publish_all(steps(1, 3)).await.unwrap();
    assert!(running.wait_idle(Duration::from_secs(20)).await);
    let positions: Vec<(String, u32, u64)> = written
        .iter()
        .map(|p| ("ledger".to_owned(), p.partition, p.offset))
        .collect();
    assert_eq!(positions.iter().map(|p| p.2).collect::<Vec<_>>(), [0, 1, 2]);
    let dlq = running.dead_letters();
    dlq.request_replay("g", &positions, false).await.unwrap();
    assert!(running.wait_idle(Duration::from_secs(20)).await);
    assert_eq!(
        seen.lock().unwrap()["acct-0"].len(),
        3,
        "deduped replay has no effect"
    );
    assert_eq!(running.stats("g").unwrap().duplicates, 3);
    dlq.request_replay("g", &positions[1..2], true)
        .await
        .unwrap();
    assert!(running.wait_idle(Duration::from_secs(20)).await);
    let deliveries = seen.lock().unwrap()["acct-0"].clone();
    assert_eq!(deliveries.len(), 4);
    assert_eq!(deliveries.last(), Some(&(1, Delivery::Replay)));
    running.stop().await;
}

/// Requests this instance cannot run never hold up those it can: behind more than a page of
/// replays of a topic the group does not read here (which `evt replay` only warns about, and
/// which are left for an instance that reads it, or dropped where none shares the group), a
/// replay queued later still runs. Cancelling the others leaves the queue empty.
pub async fn requests_this_instance_cannot_run_never_hold_up_the_others<E: Engine>(engine: E) {
    let mut app = engine.app().await;
    let seen: Seen = Arc::default();
    app.partitions(1)
        .subscribe::<Step, _>("g", recorder(seen.clone()));
    let running = app.start().await.unwrap();
    let written = running.publisher().publish_all(steps(1, 1)).await.unwrap();
    assert!(running.wait_idle(Duration::from_secs(20)).await);
    let dlq = running.dead_letters();
    let elsewhere: Vec<(String, u32, u64)> = (0..100)
        .map(|offset| ("nobody-reads".to_owned(), 0, offset))
        .collect();
    dlq.request_replay("g", &elsewhere, true).await.unwrap();
    let wanted = [("ledger".to_owned(), written[0].partition, written[0].offset)];
    dlq.request_replay("g", &wanted, true).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while seen.lock().unwrap()["acct-0"].len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the replay queued behind the others never ran"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let deliveries = seen.lock().unwrap()["acct-0"].clone();
    assert_eq!(
        deliveries.last(),
        Some(&(0, Delivery::Replay)),
        "{deliveries:?}"
    );
    // Its request is finished just after its handler ran; the others stay.
    loop {
        let left = dlq.pending_requests(Some("g"), u32::MAX).await.unwrap();
        if left.iter().all(|r| r.topic == "nobody-reads") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the replay that ran is still pending: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    dlq.cancel_replays(Some("g"), None).await.unwrap();
    assert!(running.wait_idle(Duration::from_secs(20)).await);
    assert!(dlq.pending_redeliveries("g", 1).await.unwrap().is_empty());
    running.stop().await;
}

/// Dead-lettering a record that already has an open letter in its group (a batch fetched again
/// after another lane failed) returns that letter instead of storing a second one; once the
/// letter is closed, a new failure of the same record is a new letter.
pub async fn a_record_has_one_open_dead_letter<E: Engine>(engine: E) {
    use event_runtime::dlq::NewDeadLetter;
    let app = engine.app().await;
    let dlq = app.dead_letters().clone();
    let letter = |group: &str| NewDeadLetter {
        group: group.to_owned(),
        record: event_runtime::transport::Record {
            topic: "ledger".into(),
            partition: 1,
            offset: 41,
            timestamp_ms: 1,
            key: Some(b"a".to_vec().into()),
            headers: Default::default(),
            payload: b"{".to_vec().into(),
        },
        event_type: None,
        event_id: None,
        partition_key: Some("a".into()),
        reason_kind: ReasonKind::Malformed,
        error_chain: vec!["bad".into()],
        attempts: 1,
        first_failure_ms: 1,
        parked_behind: None,
        instance: None,
    };
    let first = dlq.put(letter("g")).await.unwrap();
    let mut again = letter("g");
    again.error_chain = vec!["worse".into()];
    assert_eq!(dlq.put(again).await.unwrap(), first);
    // The second failure is on the letter: its reason, its attempts, its audit trail.
    let stored = dlq.get(first).await.unwrap().unwrap();
    assert_eq!(stored.reason, "worse");
    assert_eq!(stored.attempts, 2);
    let actions: Vec<String> = dlq
        .audit(first)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.action)
        .collect();
    assert!(actions.contains(&"failed-again".to_owned()), "{actions:?}");
    let again_by = dlq.audit(first).await.unwrap();
    let again_by = again_by
        .iter()
        .find(|a| a.action == "failed-again")
        .unwrap();
    assert_eq!(again_by.actor, "consumer:g", "the audit names the group");
    // A parking letter for a record that is itself open changes nothing.
    let mut parked = letter("g");
    parked.reason_kind = ReasonKind::Parked;
    parked.parked_behind = Some(first);
    assert_eq!(dlq.put(parked).await.unwrap(), first);
    assert_eq!(
        dlq.get(first).await.unwrap().unwrap().reason_kind,
        ReasonKind::Malformed
    );
    let other_group = dlq.put(letter("h")).await.unwrap();
    assert_ne!(other_group, first);
    let open = dlq.list(&LetterFilter::default()).await.unwrap();
    assert_eq!(open.len(), 2, "one open letter per group and record");
    dlq.purge(Some("g"), Selection::Ids(&[first]), "test")
        .await
        .unwrap();
    let again = dlq.put(letter("g")).await.unwrap();
    assert_ne!(again, first, "a closed letter is not reused");
}

/// Purging a key's letters together (`evt dlq purge --all`) purges the parked ones too: each
/// purge releases the next parked letter (queues its redrive), and purging that one cancels the
/// redrive, so no purged event is run and no request is left; the audit says so. A redrive that
/// was still running when its letter was purged finishes without reopening or resolving it.
pub async fn purging_a_keys_letters_cancels_their_released_redrives<E: Engine>(engine: E) {
    use event_runtime::dlq::{LetterStatus, NewDeadLetter};
    let app = engine.app().await;
    let dlq = app.dead_letters().clone();
    let letter = |offset: u64, parked_behind: Option<u64>| NewDeadLetter {
        group: "g".to_owned(),
        record: event_runtime::transport::Record {
            topic: "ledger".into(),
            partition: 0,
            offset,
            timestamp_ms: 1,
            key: Some(b"a".to_vec().into()),
            headers: Default::default(),
            payload: b"{}".to_vec().into(),
        },
        event_type: None,
        event_id: None,
        partition_key: Some("a".into()),
        reason_kind: if parked_behind.is_some() {
            ReasonKind::Parked
        } else {
            ReasonKind::Permanent
        },
        error_chain: vec!["broken".into()],
        attempts: 1,
        first_failure_ms: 1,
        parked_behind,
        instance: Some("i-1".into()),
    };
    let first = dlq.put(letter(0, None)).await.unwrap();
    let parked = [
        dlq.put(letter(1, Some(first))).await.unwrap(),
        dlq.put(letter(2, Some(first))).await.unwrap(),
    ];
    // A redrive of the first letter is read by an instance, which is still running it when
    // the operator purges everything.
    dlq.request_redrive(Some("g"), Selection::Ids(&[first]), "ops")
        .await
        .unwrap();
    let running = dlq.pending_redeliveries("g", 64).await.unwrap();
    assert_eq!(running.len(), 1);
    assert_eq!(
        dlq.purge(Some("g"), Selection::All, "ops").await.unwrap(),
        3
    );
    assert!(
        dlq.pending_redeliveries("g", 64).await.unwrap().is_empty(),
        "no purged letter is redriven"
    );
    for id in [first, parked[0], parked[1]] {
        assert_eq!(
            dlq.get(id).await.unwrap().unwrap().status,
            LetterStatus::Purged
        );
        let purge = dlq.audit(id).await.unwrap();
        let purge = purge.iter().find(|a| a.action == "purged").unwrap();
        assert_eq!(purge.actor, "ops");
        assert_eq!(purge.detail, "its queued redrive cancelled", "letter {id}");
    }
    // The instance that was running the redrive finishes it, successfully or not: the letter
    // stays purged, and nothing behind it is released again.
    dlq.finish_redelivery(&running[0], None, Some("i-1"))
        .await
        .unwrap();
    dlq.finish_redelivery(&running[0], Some(&["failed".to_owned()]), Some("i-1"))
        .await
        .unwrap();
    assert_eq!(
        dlq.get(first).await.unwrap().unwrap().status,
        LetterStatus::Purged
    );
    assert!(dlq.pending_redeliveries("g", 64).await.unwrap().is_empty());
}

/// Closed dead letters (purged, resolved) are deleted with their audit trail once their
/// retention has passed since they were closed; open letters never are.
pub async fn closed_dead_letters_are_deleted_after_their_retention<E: Engine>(engine: E) {
    use event_runtime::dlq::NewDeadLetter;
    let app = engine.app().await;
    let dlq = app.dead_letters().clone();
    let letter = |offset: u64| NewDeadLetter {
        group: "g".to_owned(),
        record: event_runtime::transport::Record {
            topic: "ledger".into(),
            partition: 0,
            offset,
            timestamp_ms: 1,
            key: Some(format!("k{offset}").into()),
            headers: Default::default(),
            payload: b"{".to_vec().into(),
        },
        event_type: None,
        event_id: None,
        partition_key: Some(format!("k{offset}")),
        reason_kind: ReasonKind::Malformed,
        error_chain: vec!["bad".into()],
        attempts: 1,
        first_failure_ms: 1,
        parked_behind: None,
        instance: None,
    };
    let closed = dlq.put(letter(1)).await.unwrap();
    let open = dlq.put(letter(2)).await.unwrap();
    dlq.purge(Some("g"), Selection::Ids(&[closed]), "test")
        .await
        .unwrap();
    assert_eq!(
        dlq.delete_closed(Duration::from_secs(3600)).await.unwrap(),
        0,
        "closed just now"
    );
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(dlq.delete_closed(Duration::ZERO).await.unwrap(), 1);
    assert!(dlq.get(closed).await.unwrap().is_none());
    assert!(
        dlq.audit(closed).await.unwrap().is_empty(),
        "its audit trail too"
    );
    let all = dlq
        .list(&LetterFilter {
            include_closed: true,
            ..LetterFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(all.iter().map(|l| l.id).collect::<Vec<_>>(), [open]);
    assert!(!dlq.audit(open).await.unwrap().is_empty());
    assert_eq!(dlq.delete_closed(Duration::ZERO).await.unwrap(), 0);
}

/// `offset_for_time` finds the first record at or after a time (the engine's own lookup on
/// Kafka, a bisection elsewhere), and a replay planned by time window selects exactly the
/// records appended inside it.
pub async fn replay_by_time_starts_at_the_engines_time_lookup<E: Engine>(engine: E) {
    let t = engine.transport().await;
    t.ensure_topic("timed", 1).await.unwrap();
    let burst = |n: u8| -> Vec<OutgoingRecord> {
        (0..4)
            .map(|i| OutgoingRecord {
                partition: 0,
                key: Some(vec![b'k', n].into()),
                headers: Default::default(),
                payload: vec![n, i].into(),
            })
            .collect()
    };
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    };
    let before = now() - 1;
    t.append("timed", burst(1)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(60)).await;
    let second_from = now();
    let second = t.append("timed", burst(2)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(60)).await;
    let third_from = now();
    t.append("timed", burst(3)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(60)).await;
    let after = now();

    assert_eq!(t.offset_for_time("timed", 0, before).await.unwrap(), 0);
    assert_eq!(
        t.offset_for_time("timed", 0, second_from).await.unwrap(),
        second[0].offset
    );
    assert_eq!(t.offset_for_time("timed", 0, after).await.unwrap(), 12);
    assert!(
        t.offset_for_time("timed", 7, before).await.is_err(),
        "a partition outside the topic is an error"
    );

    let window = event_runtime::replay::ReplayFilter {
        topic: "timed".into(),
        since_ms: Some(second_from),
        until_ms: Some(third_from - 1),
        ..Default::default()
    };
    let planned = event_runtime::replay::plan(&t, &window).await.unwrap();
    let payloads: Vec<Vec<u8>> = planned.into_iter().map(|r| r.payload.to_vec()).collect();
    assert_eq!(payloads, [[2, 0], [2, 1], [2, 2], [2, 3]]);
}

/// A foreign producer writing the bindings' structured content mode (the whole event as JSON or
/// protobuf in the payload) straight into the engine, with ids that are not UUIDs: the app
/// handles those events like its own binary-mode ones, in order per key.
pub async fn structured_mode_records_of_foreign_producers_are_handled<E: Engine>(engine: E) {
    let mut app = engine.app().await;
    let seen: Seen = Arc::default();
    app.partitions(1)
        .subscribe::<Step, _>("g", recorder(seen.clone()));
    let running = app.start().await.unwrap();
    running
        .publisher()
        .publish(Envelope::event(Step {
            account: "a".into(),
            seq: 0,
        }))
        .await
        .unwrap();
    let step = |seq| {
        Envelope::event(Step {
            account: "a".into(),
            seq,
        })
    };
    // Ids of the producers' own making: CloudEvents allows any non-empty string.
    let foreign = |seq, id: &str| {
        let mut event = step(seq);
        event.id = id.parse().unwrap();
        event
    };
    let json = event_runtime::cloudevents::to_json(&foreign(1, "A234-1234-1234")).unwrap();
    let proto = event_runtime::cloudevents::protobuf::encode(
        &foreign(2, "sensor-7/reading/\"2\"").to_raw().unwrap(),
    )
    .unwrap();
    // No record key, as a foreign NATS producer writes them: the key is inside the event.
    let structured = |content_type: &str, payload: Vec<u8>| OutgoingRecord {
        partition: 0,
        key: None,
        headers: [("content-type", content_type)].into_iter().collect(),
        payload: payload.into(),
    };
    engine
        .transport()
        .await
        .append(
            "ledger",
            vec![
                structured("application/cloudevents+json; charset=utf-8", json),
                structured("application/cloudevents+protobuf", proto),
            ],
        )
        .await
        .unwrap();
    running.publisher().publish(step(3)).await.unwrap();
    assert!(running.wait_idle(Duration::from_secs(20)).await);
    let seqs: Vec<u32> = seen.lock().unwrap()["a"].iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, [0, 1, 2, 3]);
    assert_eq!(running.stats("g").unwrap().dead_lettered, 0);
    running.stop().await;
}

/// `lag_of` counts, per partition, what a group has not committed; once the group catches up
/// every handle sees no lag.
pub async fn lag_counts_what_a_group_has_not_committed<E: Engine>(engine: E) {
    let mut app = engine.app().await;
    let handled = Arc::new(Mutex::new(0usize));
    let counter = handled.clone();
    app.partitions(2)
        .subscribe::<Step, _>("g", move |_: Envelope<Step>, _: Context| {
            let counter = counter.clone();
            async move {
                *counter.lock().unwrap() += 1;
                Ok(())
            }
        });
    // Published before the group starts: all of it is lag.
    let events = steps(5, 2);
    let mut per_partition = [0u64; 2];
    for event in &events {
        let key = event.partition_key.as_deref().unwrap().as_bytes();
        per_partition[event_runtime::partition::partition_for_key(key, 2) as usize] += 1;
    }
    let positions = app.publisher().publish_all(events).await.unwrap();
    assert_eq!(positions.len(), 10);
    let transport = engine.transport().await;
    assert!(
        transport
            .topics()
            .await
            .unwrap()
            .contains(&("ledger".to_owned(), 2))
    );
    let subscriptions = [("g".to_owned(), "ledger".to_owned(), 2)];
    let lags = lag_of(&transport, &subscriptions).await.unwrap();
    assert_eq!(
        lags.iter()
            .map(|l| (l.partition, l.committed, l.end))
            .collect::<Vec<_>>(),
        [(0, 0, per_partition[0]), (1, 0, per_partition[1])]
    );
    assert_eq!(lags.iter().map(|l| l.lag()).sum::<u64>(), 10);

    let running = app.start().await.unwrap();
    assert!(running.wait_idle(Duration::from_secs(20)).await);
    assert_eq!(*handled.lock().unwrap(), 10);
    let lags = running.lag().await.unwrap();
    assert!(
        lags.iter().all(|l| l.lag() == 0 && l.committed == l.end),
        "{lags:?}"
    );
    let after = lag_of(&transport, &subscriptions).await.unwrap();
    assert_eq!(after, lags, "another handle sees the same positions");
    running.stop().await;
}
