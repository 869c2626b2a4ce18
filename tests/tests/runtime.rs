//! The embedded runtime's own behaviour, beyond the engine-independent conformance suite
//! (`conformance.rs`, which covers ordering, restarts, poison, sequenced parking, redrive and
//! replay on every engine): retries, torn records in the SQLite log, restart with dedupe counts,
//! choreography with correlation, and the inbox pattern.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use event_runtime::app::GroupOptions;
use event_runtime::dlq::{LetterFilter, ReasonKind};
use event_runtime::retry::RetryPolicy;
use event_runtime::transport::{OutgoingRecord, Transport};
use event_runtime::{App, Context, DomainEvent, Envelope, HandlerError};
use serde::{Deserialize, Serialize};

mod common;
use common::{Flaky, Seen, Step, recorder, steps, tempdir};

/// Emitted by the ledger when a step is handled.
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(context = "audit")]
struct StepSeen {
    #[event(key)]
    account: String,
    seq: u32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_resumes_from_the_committed_position_and_dedupes() {
    let dir = tempdir("restart");
    let path = dir.join("log.db");
    let seen: Seen = Arc::default();
    {
        let mut app = App::embedded(&path).await.unwrap();
        app.subscribe::<Step, _>("g", recorder(seen.clone()));
        let running = app.start().await.unwrap();
        running.publisher().publish_all(steps(3, 4)).await.unwrap();
        assert!(running.wait_idle(Duration::from_secs(10)).await);
        running.stop().await;
    }
    {
        let mut app = App::embedded(&path).await.unwrap();
        app.subscribe::<Step, _>("g", recorder(seen.clone()));
        let publisher = app.publisher();
        // The same envelopes again (a producer retry) and new ones.
        let again = steps(3, 1);
        publisher.publish_all(again.clone()).await.unwrap();
        publisher.publish_all(again).await.unwrap();
        let running = app.start().await.unwrap();
        assert!(running.wait_idle(Duration::from_secs(10)).await);
        let stats = running.stats("g").unwrap();
        assert_eq!((stats.handled, stats.duplicates), (3, 3), "{stats:?}");
        running.stop().await;
    }
    let total: usize = seen.lock().unwrap().values().map(Vec::len).sum();
    assert_eq!(total, 12 + 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_then_dead_lettered() {
    let mut app = App::in_memory().await.unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    app.group_options(
        "flaky",
        GroupOptions {
            retry: RetryPolicy {
                immediate: 1,
                backoff: 2,
                initial_delay: Duration::from_millis(5),
                ..RetryPolicy::default()
            },
            ..GroupOptions::default()
        },
    )
    .subscribe::<Step, _>("flaky", move |event: Envelope<Step>, ctx: Context| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            match event.data.seq {
                // Succeeds on the third attempt.
                0 if ctx.attempt() < 3 => Err(HandlerError::transient("database busy")),
                0 => Ok(()),
                // Never succeeds.
                1 => Err(HandlerError::transient(std::io::Error::other("timed out"))),
                // Invalid input.
                _ => Err(HandlerError::permanent("amount must be positive")),
            }
        }
    });
    let running = app.start().await.unwrap();
    let publisher = running.publisher();
    for seq in 0..3 {
        publisher
            .publish(Envelope::event(Step {
                account: format!("a{seq}"),
                seq,
            }))
            .await
            .unwrap();
    }
    assert!(running.wait_idle(Duration::from_secs(10)).await);
    // 3 for seq 0, 4 (max attempts) for seq 1, 1 for seq 2.
    assert_eq!(calls.load(Ordering::SeqCst), 3 + 4 + 1);
    let letters = running
        .dead_letters()
        .list(&LetterFilter::default())
        .await
        .unwrap();
    // The exhausted letter spans its retries: 1 immediate, then backoff of 5 and 10 ms.
    let exhausted = letters
        .iter()
        .find(|l| l.reason_kind == ReasonKind::RetriesExhausted)
        .unwrap();
    assert!(
        exhausted.last_failure_ms - exhausted.first_failure_ms >= 10,
        "first failure {} vs last {}",
        exhausted.first_failure_ms,
        exhausted.last_failure_ms
    );
    let mut summary: Vec<(String, u32, String)> = letters
        .iter()
        .map(|l| (l.reason_kind.to_string(), l.attempts, l.reason.clone()))
        .collect();
    summary.sort();
    assert_eq!(
        summary,
        [
            (
                "permanent".to_owned(),
                1,
                "amount must be positive".to_owned()
            ),
            ("retries-exhausted".to_owned(), 4, "timed out".to_owned()),
        ]
    );
    let stats = running.stats("flaky").unwrap();
    assert_eq!(
        (stats.handled, stats.dead_lettered, stats.retries),
        (1, 2, 2 + 3)
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_goes_to_the_dlq_without_blocking_other_records() {
    let dir = tempdir("poison");
    let mut app = App::embedded(dir.join("log.db")).await.unwrap();
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
    let transport_path = dir.join("log.db");
    let running = app.start().await.unwrap();
    let publisher = running.publisher();
    publisher
        .publish(Envelope::event(Step {
            account: "a".into(),
            seq: 0,
        }))
        .await
        .unwrap();

    // Garbage headers, an unknown type, and a version from the future, written by a foreign
    // producer straight into the log, between good records.
    let good = Envelope::event(Step {
        account: "a".into(),
        seq: 1,
    });
    let mut future = event_runtime::cloudevents::binary::to_binary(
        &good,
        event_runtime::cloudevents::binary::Binding::Kafka,
    )
    .unwrap();
    // Ids of their own: with `good`'s id they would be copies of it, and dropped as duplicates
    // once `good` (handled concurrently, in its key's lane) is marked.
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
    let transport = event_runtime::transport::sqlite::SqliteTransport::open(&transport_path)
        .await
        .unwrap();
    transport
        .append(
            "ledger",
            vec![
                OutgoingRecord {
                    partition: 0,
                    key: None,
                    headers: vec![("ce_id".into(), b"\xff".to_vec())].into(),
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
    // A record whose stored header blob is truncated (a torn write from another tool).
    sqlx::query("INSERT INTO evt_records (topic, partition, offset, ts_ms, key, headers, payload) VALUES ('ledger', 0, 4, 0, NULL, x'0300', x'00')")
        .execute(transport.pool())
        .await
        .unwrap();
    publisher.publish(good).await.unwrap();
    assert!(running.wait_idle(Duration::from_secs(10)).await);

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
    // Unkeyed records run in lanes of their own, concurrently: order the letters by position.
    letters.sort_by_key(|l| l.record.offset);
    let kinds: Vec<&str> = letters.iter().map(|l| l.reason_kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["malformed", "unknown-type", "future-version", "malformed"]
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
    assert!(
        letters[3].reason.contains("truncated"),
        "{}",
        letters[3].reason
    );
    assert_eq!(
        letters[0].record.payload,
        &b"{"[..],
        "the original record is kept"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn choreography_carries_correlation_and_inbox_effects_happen_once() {
    let dir = tempdir("inbox");
    let mut app = App::embedded(dir.join("log.db")).await.unwrap();
    let pool = common::sqlite_pool(dir.join("log.db")).await;
    sqlx::query("CREATE TABLE balances (account TEXT PRIMARY KEY, steps INTEGER NOT NULL)")
        .execute(&pool)
        .await
        .unwrap();
    let audit: Arc<Mutex<Vec<Envelope<StepSeen>>>> = Arc::default();
    let sink = audit.clone();
    app.group_options("ledger", GroupOptions { inbox: true, ..GroupOptions::default() })
        .subscribe::<Step, _>("ledger", |event: Envelope<Step>, ctx: Context| async move {
            {
                let mut tx = ctx.transaction::<sqlx::Sqlite>().await.expect("inbox mode on SQLite");
                sqlx::query("INSERT INTO balances VALUES (?, 1) ON CONFLICT (account) DO UPDATE SET steps = steps + 1")
                    .bind(&event.data.account)
                    .execute(&mut **tx)
                    .await?;
            }
            ctx.publish(StepSeen { account: event.data.account.clone(), seq: event.data.seq })?;
            Ok(())
        })
        .subscribe::<StepSeen, _>("auditor", move |event: Envelope<StepSeen>, _ctx: Context| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push(event);
                Ok(())
            }
        });
    let running = app.start().await.unwrap();
    let first = Envelope::event(Step {
        account: "x".into(),
        seq: 0,
    });
    let publisher = running.publisher();
    // Published twice: the effect and the emitted event happen once.
    publisher.publish(first.clone()).await.unwrap();
    publisher.publish(first.clone()).await.unwrap();
    assert!(running.wait_idle(Duration::from_secs(10)).await);
    let steps: i64 = sqlx::query_scalar("SELECT steps FROM balances WHERE account = 'x'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(steps, 1);
    let audit = audit.lock().unwrap().clone();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].correlation_id, first.correlation_id);
    assert_eq!(audit[0].causation_id, Some(first.id.to_string()));
    assert_eq!(running.stats("ledger").unwrap().duplicates, 1);
    running.stop().await;
}

/// An event without a partition key.
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(context = "pings")]
struct Ping {
    n: u32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_dead_letters_its_record_and_the_partition_goes_on() {
    let mut app = App::in_memory().await.unwrap();
    let seen: Arc<Mutex<Vec<u32>>> = Arc::default();
    let sink = seen.clone();
    app.partitions(1)
        .subscribe::<Step, _>("g", move |event: Envelope<Step>, _ctx: Context| {
            let sink = sink.clone();
            async move {
                assert!(event.data.seq != 0, "bug in the handler for seq 0");
                sink.lock().unwrap().push(event.data.seq);
                Ok::<(), HandlerError>(())
            }
        });
    let running = app.start().await.unwrap();
    let publisher = running.publisher();
    // Same key first (one lane: the handler runs on the partition's own task), then others.
    for (account, seq) in [("x", 0), ("x", 1), ("y", 2)] {
        publisher
            .publish(Envelope::event(Step {
                account: account.into(),
                seq,
            }))
            .await
            .unwrap();
    }
    assert!(
        running.wait_idle(Duration::from_secs(10)).await,
        "the partition stopped"
    );
    let mut seen = seen.lock().unwrap().clone();
    seen.sort_unstable();
    assert_eq!(seen, [1, 2], "the records after the panic are handled");
    let letters = running
        .dead_letters()
        .list(&LetterFilter::default())
        .await
        .unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].reason_kind, ReasonKind::Permanent);
    assert!(
        letters[0].reason.contains("bug in the handler for seq 0"),
        "{}",
        letters[0].reason
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_of_a_keyless_event_in_one_batch_have_their_effect_once() {
    let mut app = App::in_memory().await.unwrap();
    let count = Arc::new(AtomicU32::new(0));
    let counter = count.clone();
    app.partitions(1)
        .subscribe::<Ping, _>("g", move |_event: Envelope<Ping>, _ctx: Context| {
            let counter = counter.clone();
            async move {
                tokio::task::yield_now().await;
                counter.fetch_add(1, Ordering::SeqCst);
                Ok::<(), HandlerError>(())
            }
        });
    let publisher = app.publisher();
    let ping = Envelope::event(Ping { n: 1 });
    // Written before the consumer starts, so both copies arrive in one batch.
    publisher
        .publish_all(vec![ping.clone(), ping])
        .await
        .unwrap();
    let running = app.start().await.unwrap();
    assert!(running.wait_idle(Duration::from_secs(10)).await);
    assert_eq!(count.load(Ordering::SeqCst), 1);
    assert_eq!(running.stats("g").unwrap().duplicates, 1);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inbox_handler_can_emit_to_a_topic_nobody_here_consumes() {
    let dir = tempdir("inbox-new-topic");
    let mut app = App::embedded(dir.join("log.db")).await.unwrap();
    app.group_options(
        "ledger",
        GroupOptions {
            inbox: true,
            ..GroupOptions::default()
        },
    )
    .subscribe::<Step, _>("ledger", |event: Envelope<Step>, ctx: Context| async move {
        ctx.publish(StepSeen {
            account: event.data.account.clone(),
            seq: event.data.seq,
        })?;
        Ok(())
    });
    let running = app.start().await.unwrap();
    let started = std::time::Instant::now();
    running
        .publisher()
        .publish(Envelope::event(Step {
            account: "a".into(),
            seq: 0,
        }))
        .await
        .unwrap();
    assert!(running.wait_idle(Duration::from_secs(10)).await);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the inbox waited on its own lock"
    );
    assert_eq!(running.stats("ledger").unwrap().handled, 1);
    assert!(
        running
            .dead_letters()
            .list(&LetterFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
    let ends = running.transport().end_offsets("audit").await.unwrap();
    assert_eq!(
        ends.iter().sum::<u64>(),
        1,
        "the emitted event is in the audit topic"
    );
    running.stop().await;
}

/// Sequenced mode releases parked events one at a time: when the released one fails again, the
/// later ones stay parked behind it; purging a letter releases what waited behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_events_are_released_one_at_a_time_in_order() {
    use event_runtime::dlq::{LetterStatus, Selection};
    let dir = tempdir("sequenced-release");
    let mut app = App::embedded(dir.join("log.db")).await.unwrap();
    let handled: Arc<Mutex<Vec<u32>>> = Arc::default();
    let broken: Arc<Mutex<Vec<u32>>> = Arc::new(Mutex::new(vec![0, 1]));
    let (sink, failing) = (handled.clone(), broken.clone());
    app.partitions(1)
        .group_options(
            "seq",
            GroupOptions {
                sequenced: true,
                retry: RetryPolicy::none(),
                ..GroupOptions::default()
            },
        )
        .subscribe::<Step, _>("seq", move |event: Envelope<Step>, _ctx: Context| {
            let (sink, failing) = (sink.clone(), failing.clone());
            async move {
                if failing.lock().unwrap().contains(&event.data.seq) {
                    return Err(HandlerError::permanent(format!(
                        "seq {} is broken",
                        event.data.seq
                    )));
                }
                sink.lock().unwrap().push(event.data.seq);
                Ok(())
            }
        });
    let running = app.start().await.unwrap();
    for seq in 0..4 {
        running
            .publisher()
            .publish(Envelope::event(Step {
                account: "k".into(),
                seq,
            }))
            .await
            .unwrap();
    }
    assert!(running.wait_idle(Duration::from_secs(10)).await);
    let dlq = running.dead_letters();
    let letters = dlq.list(&LetterFilter::default()).await.unwrap();
    let ids: Vec<u64> = letters.iter().map(|l| l.id).collect();
    assert_eq!(
        letters
            .iter()
            .filter(|l| l.status == LetterStatus::Parked)
            .count(),
        3
    );

    // Fix seq 0 only: it is resolved, seq 1 is released and fails again, seq 2 and 3 wait.
    broken.lock().unwrap().retain(|s| *s != 0);
    dlq.request_redrive(Some("seq"), Selection::Ids(&ids[..1]), "ops")
        .await
        .unwrap();
    assert!(running.wait_idle(Duration::from_secs(10)).await);
    assert_eq!(*handled.lock().unwrap(), [0]);
    let status = |letters: &[event_runtime::dlq::DeadLetter], id| {
        letters.iter().find(|l| l.id == id).map(|l| l.status)
    };
    let all = dlq
        .list(&LetterFilter {
            include_closed: true,
            ..LetterFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(status(&all, ids[1]), Some(LetterStatus::Dead));
    assert_eq!(status(&all, ids[2]), Some(LetterStatus::Parked));
    assert_eq!(status(&all, ids[3]), Some(LetterStatus::Parked));

    // Give up on seq 1: purging it releases seq 2, then seq 3, in order.
    dlq.purge(Some("seq"), Selection::Ids(&ids[1..2]), "ops")
        .await
        .unwrap();
    assert!(running.wait_idle(Duration::from_secs(10)).await);
    assert_eq!(*handled.lock().unwrap(), [0, 2, 3]);
    assert!(dlq.list(&LetterFilter::default()).await.unwrap().is_empty());
    running.stop().await;
}

/// Dedupe marks are not kept forever: past `Retention::dedupe` they are purged (in the SQLite
/// file here), so the table stays bounded, and a copy arriving after that is handled again.
/// With `dedupe: None` the same copy is a duplicate.
#[tokio::test]
async fn dedupe_marks_past_their_retention_are_purged() {
    use event_runtime::app::Retention;
    for (keep, handled) in [(Some(Duration::from_millis(150)), 2), (None, 1)] {
        let dir = tempdir("retention");
        let mut app = App::embedded(dir.join("log.db")).await.unwrap();
        let seen: Seen = Arc::default();
        app.retention(Retention {
            dedupe: keep,
            every: Duration::from_millis(25),
            ..Retention::default()
        })
        .partitions(1)
        .subscribe::<Step, _>("g", recorder(seen.clone()));
        let running = app.start().await.unwrap();
        let event = Envelope::event(Step {
            account: "a".into(),
            seq: 0,
        });
        running.publisher().publish(event.clone()).await.unwrap();
        assert!(running.wait_idle(Duration::from_secs(10)).await);
        if keep.is_some() {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while running.dedupe_marks_purged() == 0 {
                assert!(std::time::Instant::now() < deadline, "never purged");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        } else {
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert_eq!(running.dedupe_marks_purged(), 0);
        }
        // The producer's copy of the same event (same id), late.
        running.publisher().publish(event).await.unwrap();
        assert!(running.wait_idle(Duration::from_secs(10)).await);
        let stats = running.stats("g").unwrap();
        assert_eq!(stats.handled, handled, "retention {keep:?}: {stats:?}");
        running.stop().await;
    }
}

/// The embedded log keeps what its limits say: by age and by size per partition, the newest
/// record always (offsets never restart), and by default nothing a group with a committed
/// position has not read yet.
#[tokio::test]
async fn the_sqlite_log_deletes_by_age_and_size_and_keeps_what_a_group_still_needs() {
    use event_runtime::transport::LogLimits;
    use event_runtime::transport::sqlite::SqliteTransport;
    let dir = tempdir("log-retention");
    let t = SqliteTransport::open(dir.join("log.db")).await.unwrap();
    t.ensure_topic("t", 2).await.unwrap();
    let record = |partition: u32, n: u8| OutgoingRecord {
        partition,
        key: None,
        headers: Default::default(),
        payload: vec![n; 100].into(),
    };
    let append = |partition: u32, range: std::ops::Range<u8>| {
        let t = t.clone();
        async move {
            for n in range {
                t.append("t", vec![record(partition, n)]).await.unwrap();
            }
        }
    };
    append(0, 0..10).await;
    append(1, 0..3).await;
    let offsets = |partition: u32| {
        let t = t.clone();
        async move {
            t.fetch("t", partition, 0, 100)
                .await
                .unwrap()
                .iter()
                .map(|r| r.offset)
                .collect::<Vec<_>>()
        }
    };
    let age_zero = |keep_unconsumed| LogLimits {
        max_age: Some(Duration::ZERO),
        max_bytes: None,
        keep_unconsumed,
    };
    tokio::time::sleep(Duration::from_millis(5)).await;

    // Nothing old enough under the default 7 days, and no size bound: nothing goes.
    assert_eq!(
        t.delete_records("t", &LogLimits::default()).await.unwrap(),
        0
    );
    // A group read partition 0 up to offset 4: with the default it keeps 4.. . Partition 1
    // has no committed group: all but its newest record go. 4 + 2 records.
    t.commit("g", "t", 0, 4).await.unwrap();
    assert_eq!(t.delete_records("t", &age_zero(true)).await.unwrap(), 4 + 2);
    assert_eq!(offsets(0).await, (4..10).collect::<Vec<_>>());
    assert_eq!(offsets(1).await, [2]);
    // By size: three records of 100 bytes (and an empty header block of 2) fit in 306 bytes.
    let by_size = LogLimits {
        max_age: None,
        max_bytes: Some(306),
        keep_unconsumed: false,
    };
    assert_eq!(t.delete_records("t", &by_size).await.unwrap(), 3);
    assert_eq!(offsets(0).await, [7, 8, 9]);
    // By age alone, as Kafka does: only the newest record stays, and offsets go on from it.
    assert_eq!(t.delete_records("t", &age_zero(false)).await.unwrap(), 2);
    assert_eq!(offsets(0).await, [9]);
    assert_eq!(t.end_offsets("t").await.unwrap(), [10, 3]);
    let next = t.append("t", vec![record(0, 10)]).await.unwrap();
    assert_eq!(next[0].offset, 10, "offsets never restart");
    // A reader from an offset that was deleted starts at the first one kept.
    let from_gap = t.fetch("t", 0, 3, 10).await.unwrap();
    assert_eq!(
        from_gap.iter().map(|r| r.offset).collect::<Vec<_>>(),
        [9, 10]
    );
}

/// The app's retention task applies the log limits (the declared `sla(retention)` of a topic's
/// events over the default) and deletes closed dead letters with their audit trail; open
/// letters stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retention_task_trims_the_log_and_forgets_closed_dead_letters() {
    use event_runtime::app::Retention;
    use event_runtime::dlq::Selection;
    use event_runtime::transport::LogLimits;
    let dir = tempdir("app-retention");
    let mut app = App::embedded(dir.join("log.db")).await.unwrap();
    let mut retention = Retention {
        log: LogLimits {
            max_age: Some(Duration::ZERO),
            ..LogLimits::default()
        },
        closed_letters: Some(Duration::ZERO),
        every: Duration::from_millis(25),
        ..Retention::default()
    };
    // A topic of its own keeps everything.
    retention.topics.insert(
        "kept".into(),
        LogLimits {
            max_age: None,
            ..LogLimits::default()
        },
    );
    assert_eq!(retention.limits_for("kept").max_age, None);
    assert_eq!(retention.limits_for("ledger").max_age, Some(Duration::ZERO));
    app.retention(retention).partitions(1).subscribe::<Step, _>(
        "g",
        |event: Envelope<Step>, _ctx: Context| async move {
            match event.data.seq {
                1 | 2 => Err(HandlerError::permanent("refused")),
                _ => Ok(()),
            }
        },
    );
    let running = app.start().await.unwrap();
    for event in steps(1, 5) {
        running.publisher().publish(event).await.unwrap();
    }
    assert!(running.wait_idle(Duration::from_secs(10)).await);
    let dlq = running.dead_letters();
    let letters = dlq.list(&LetterFilter::default()).await.unwrap();
    assert_eq!(letters.len(), 2);
    // One letter closed by an operator, the other left open.
    dlq.purge(Some("g"), Selection::Ids(&[letters[0].id]), "test")
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let stats = running.retention_stats();
        if stats.records >= 4 && stats.closed_letters == 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{stats:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The group committed all 5 records: 4 deleted, the newest kept.
    let kept = running.transport().fetch("ledger", 0, 0, 10).await.unwrap();
    assert_eq!(kept.iter().map(|r| r.offset).collect::<Vec<_>>(), [4]);
    let all = dlq
        .list(&LetterFilter {
            include_closed: true,
            ..LetterFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(
        all.iter().map(|l| l.id).collect::<Vec<_>>(),
        [letters[1].id],
        "the open letter stays"
    );
    assert!(dlq.audit(letters[0].id).await.unwrap().is_empty());
    assert!(!dlq.audit(letters[1].id).await.unwrap().is_empty());
    running.stop().await;
}

/// Counts the consumer's log events by level (target `event_runtime::consumer`), process-wide.
struct ConsumerLog {
    warnings: AtomicU32,
    infos: AtomicU32,
}

impl tracing::Subscriber for &'static ConsumerLog {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        metadata.target() == "event_runtime::consumer"
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        match *event.metadata().level() {
            tracing::Level::WARN => self.warnings.fetch_add(1, Ordering::SeqCst),
            tracing::Level::INFO => self.infos.fetch_add(1, Ordering::SeqCst),
            _ => 0,
        };
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// Failed fetches and commits are retried, counted in `engine_errors` and logged once per
/// streak (a warning, and the recovery); every event is still handled once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_failures_are_retried_counted_and_logged() {
    static LOG: ConsumerLog = ConsumerLog {
        warnings: AtomicU32::new(0),
        infos: AtomicU32::new(0),
    };
    // nextest runs each test in a process of its own.
    let _ = tracing::subscriber::set_global_default(&LOG);
    let transport = Flaky::new(event_runtime::transport::memory::MemoryTransport::new(), 0)
        .failing_fetches(3)
        .failing_commits(2);
    let mut app = App::new(
        transport.clone(),
        event_runtime::app::Stores::in_memory().await.unwrap(),
    );
    let handled = Arc::new(AtomicU32::new(0));
    let count = handled.clone();
    app.partitions(1)
        .subscribe::<Ping, _>("g", move |_event: Envelope<Ping>, _ctx: Context| {
            let count = count.clone();
            async move {
                count.fetch_add(1, Ordering::SeqCst);
                Ok::<(), HandlerError>(())
            }
        });
    let running = app.start().await.unwrap();
    for n in 0..20 {
        running
            .publisher()
            .publish(Envelope::event(Ping { n }))
            .await
            .unwrap();
    }
    assert!(running.wait_idle(Duration::from_secs(20)).await, "lag left");
    assert_eq!(handled.load(Ordering::SeqCst), 20);
    assert_eq!(
        transport.fetches.load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    assert_eq!(
        transport.commits.load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    assert_eq!(running.stats("g").unwrap().engine_errors, 5);
    // One streak of fetch failures and one of commit failures: a warning and a recovery each.
    assert_eq!(LOG.warnings.load(Ordering::SeqCst), 2);
    assert_eq!(LOG.infos.load(Ordering::SeqCst), 2);
    running.stop().await;
}

/// An HTTP request served behind `CorrelationLayer` publishes an event: the handler sees the
/// request's correlation id and trace context on it, and the response names the id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_request_s_context_reaches_the_handler() {
    use event_runtime::request::{CORRELATION_HEADER, CorrelationLayer};
    use tower_layer::Layer as _;
    use tower_service::Service as _;

    const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[derive(Clone)]
    struct PlaceOrder(event_runtime::Publisher<event_runtime::transport::memory::MemoryTransport>);

    impl tower_service::Service<http::Request<()>> for PlaceOrder {
        type Response = http::Response<()>;
        type Error = std::convert::Infallible;
        type Future = std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<http::Response<()>, Self::Error>> + Send>,
        >;

        fn poll_ready(
            &mut self,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Self::Error>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<()>) -> Self::Future {
            let publisher = self.0.clone();
            Box::pin(async move {
                publisher
                    .publish(Envelope::event(Ping { n: 1 }))
                    .await
                    .unwrap();
                Ok(http::Response::new(()))
            })
        }
    }

    let mut app = App::in_memory().await.unwrap();
    // (correlation id, traceparent) of each event handled.
    type Handled = Arc<Mutex<Vec<(Option<String>, Option<String>)>>>;
    let seen: Handled = Arc::default();
    let sink = seen.clone();
    app.subscribe::<Ping, _>("audit", move |event: Envelope<Ping>, _ctx: Context| {
        let sink = sink.clone();
        async move {
            sink.lock().unwrap().push((
                event.correlation_id.clone(),
                event.trace.as_ref().map(|t| t.traceparent.clone()),
            ));
            Ok::<(), HandlerError>(())
        }
    });
    let running = app.start().await.unwrap();
    let mut service = CorrelationLayer.layer(PlaceOrder(running.publisher()));
    let request = http::Request::builder()
        .header(CORRELATION_HEADER, "checkout-7")
        .header("traceparent", TRACEPARENT)
        .body(())
        .unwrap();
    let response = service.call(request).await.unwrap();
    assert_eq!(response.headers()[CORRELATION_HEADER], "checkout-7");
    assert!(running.wait_idle(Duration::from_secs(10)).await);
    assert_eq!(
        *seen.lock().unwrap(),
        [(Some("checkout-7".to_owned()), Some(TRACEPARENT.to_owned()))]
    );
    running.stop().await;
}

/// An SQLite log file written before partitions were shared (positions without claims) opens
/// with its positions intact, and its slots then work as a fresh file's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_file_from_before_claims_keeps_its_positions() {
    use event_runtime::transport::Claim;
    use event_runtime::transport::sqlite::SqliteTransport;
    let path = tempdir("old_positions").join("log.db");
    {
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
        sqlx::raw_sql(
            "CREATE TABLE evt_positions (grp TEXT NOT NULL, topic TEXT NOT NULL, \
             partition INTEGER NOT NULL, next_offset INTEGER NOT NULL, \
             PRIMARY KEY (grp, topic, partition)) WITHOUT ROWID; \
             INSERT INTO evt_positions VALUES ('g', 'ledger', 2, 41);",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    }
    let t = SqliteTransport::open(&path).await.unwrap();
    assert_eq!(t.committed("g", "ledger", 2).await.unwrap(), 41);
    let slot = t.slot("g", "ledger", 2).await.unwrap();
    assert_eq!((slot.next_offset, &slot.claim), (41, &None));
    let claim = Claim {
        owner: "one".into(),
        until_ms: i64::MAX,
    };
    let revision = t
        .swap_slot("g", "ledger", 2, 42, Some(&claim), slot.revision)
        .await
        .unwrap()
        .expect("the old row's revision");
    let slot = t.slot("g", "ledger", 2).await.unwrap();
    assert_eq!(
        (slot.next_offset, slot.claim, slot.revision),
        (42, Some(claim), revision)
    );
}

/// The claim rules of every dedupe store, in memory, in an SQLite file and in PostgreSQL: a
/// claim excludes others until it is marked, released or lapses; a renewal keeps it; a lapsed
/// claim (its holder died) is taken over; a mark is for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedupe_claims_exclude_until_marked_released_or_lapsed() {
    use event_runtime::dedupe::{DedupeStore, MemoryDedupe, SqliteDedupe};
    claim_rules(MemoryDedupe::new()).await;
    let dir = tempdir("dedupe-claims");
    let file = event_runtime::transport::sqlite::SqliteTransport::open(dir.join("log.db"))
        .await
        .unwrap();
    claim_rules(SqliteDedupe::new(&file)).await;
    if let Some((pool, _)) = common::postgres_schema().await {
        claim_rules(event_runtime::dedupe::PgDedupe::new(pool).await.unwrap()).await;
    }

    async fn claim_rules<S: DedupeStore>(store: S) {
        use event_runtime::dedupe::Claim;
        let now = event_runtime::transport::now_ms;
        let minute = Duration::from_secs(60);
        let before = now();
        assert_eq!(
            store.claim("g", "k", "one", minute).await.unwrap(),
            Claim::Claimed
        );
        // Held: by the other instance, and by the holder itself for a second record.
        for who in ["two", "one"] {
            match store.claim("g", "k", who, minute).await.unwrap() {
                Claim::Held { holder, until_ms } => {
                    assert_eq!(holder, "one", "{who}");
                    assert!(
                        until_ms >= before + 60_000 && until_ms <= now() + 60_000,
                        "{who}"
                    );
                }
                other => panic!("{who}: {other:?}"),
            }
        }
        assert!(
            !store.seen("g", "k").await.unwrap(),
            "a claim is not a mark"
        );
        // Other groups and keys are free.
        assert_eq!(
            store.claim("h", "k", "two", minute).await.unwrap(),
            Claim::Claimed
        );
        // A renewal extends only the holder's claims on the keys named.
        let hour = Duration::from_secs(3600);
        assert_eq!(store.renew("g", "one", &["k", "x"], hour).await.unwrap(), 1);
        assert_eq!(store.renew("g", "three", &["k"], hour).await.unwrap(), 0);
        assert_eq!(store.renew("g", "one", &[], hour).await.unwrap(), 0);
        match store.claim("g", "k", "two", minute).await.unwrap() {
            Claim::Held { until_ms, .. } => assert!(until_ms >= before + 3_600_000),
            other => panic!("{other:?}"),
        }
        // A release by another than the holder does nothing; by the holder frees the key.
        store.release("g", "k", "two").await.unwrap();
        assert!(matches!(
            store.claim("g", "k", "two", minute).await.unwrap(),
            Claim::Held { .. }
        ));
        store.release("g", "k", "one").await.unwrap();
        assert_eq!(
            store.claim("g", "k", "two", minute).await.unwrap(),
            Claim::Claimed
        );
        // A mark ends the claim for good, whoever holds it.
        store.mark("g", "k").await.unwrap();
        assert!(store.seen("g", "k").await.unwrap());
        assert_eq!(
            store.claim("g", "k", "one", minute).await.unwrap(),
            Claim::Done
        );
        store.release("g", "k", "two").await.unwrap();
        assert_eq!(
            store.claim("g", "k", "one", minute).await.unwrap(),
            Claim::Done,
            "a release never removes a mark"
        );
        assert_eq!(
            store.renew("g", "two", &["k"], hour).await.unwrap(),
            0,
            "a mark is not renewed"
        );
        // A claim that lapsed (its holder died without marking) is taken over.
        let short = Duration::from_millis(1);
        assert_eq!(
            store.claim("g", "dead", "gone", short).await.unwrap(),
            Claim::Claimed
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            store.claim("g", "dead", "two", minute).await.unwrap(),
            Claim::Claimed
        );
        assert_eq!(
            store.renew("g", "gone", &["dead"], minute).await.unwrap(),
            0,
            "the dead holder holds nothing"
        );
    }
}

/// On the embedded engine, the events an inbox handler emits are appended to the log in its
/// transaction; once it commits, this process's consumers of them are woken at once rather
/// than at their next read of the file. With the file read every 5 s, ten hops of a chain
/// (each handler emitting the next step in its inbox transaction) take milliseconds each;
/// unwoken, each would wait out the consumer's 500 ms wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_an_inbox_commits_to_the_embedded_log_wake_its_consumers_at_once() {
    use event_runtime::transport::sqlite::SqliteTransport;
    const HOPS: u32 = 10;
    let dir = tempdir("inbox-wake");
    let transport = SqliteTransport::open(dir.join("log.db"))
        .await
        .unwrap()
        .poll_every(Duration::from_secs(5));
    let stores = event_runtime::Stores::sqlite(&transport);
    let mut app = App::new(transport, stores);
    let times: Arc<Mutex<Vec<std::time::Instant>>> = Arc::default();
    let seen = times.clone();
    app.partitions(1)
        .group_options(
            "chain",
            GroupOptions {
                inbox: true,
                ..GroupOptions::default()
            },
        )
        .subscribe::<Step, _>("chain", move |event: Envelope<Step>, ctx: Context| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push(std::time::Instant::now());
                if event.data.seq < HOPS {
                    ctx.publish(Step {
                        account: event.data.account.clone(),
                        seq: event.data.seq + 1,
                    })?;
                }
                Ok::<(), HandlerError>(())
            }
        });
    let running = app.start().await.unwrap();
    running
        .publisher()
        .publish(Envelope::event(Step {
            account: "a".into(),
            seq: 0,
        }))
        .await
        .unwrap();
    assert!(running.wait_idle(Duration::from_secs(30)).await);
    let times = times.lock().unwrap().clone();
    assert_eq!(times.len(), HOPS as usize + 1, "every step handled once");
    let chain = times[HOPS as usize] - times[0];
    eprintln!("{HOPS} inbox hops on the embedded engine: {chain:?}");
    assert!(
        chain < Duration::from_secs(2),
        "{HOPS} hops took {chain:?}: the consumers were not woken by the commits"
    );
    running.stop().await;
}

/// Where no other instance shares the group (an engine without shared partitions), a request
/// for a partition the group does not read can run nowhere: it is dropped, so the queue drains;
/// a redrive's letter goes back to `dead`, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_nobody_can_run_are_dropped_where_no_instance_shares_the_group() {
    use event_runtime::dlq::{LetterStatus, NewDeadLetter, Selection};
    let flaky = Flaky::new(event_runtime::transport::memory::MemoryTransport::new(), 0);
    let seen: Seen = Arc::default();
    let mut app = App::with_transport(flaky).await.unwrap();
    app.partitions(1)
        .subscribe::<Step, _>("g", recorder(seen.clone()));
    let running = app.start().await.unwrap();
    let dlq = running.dead_letters();
    let letter = dlq
        .put(NewDeadLetter {
            group: "g".to_owned(),
            record: event_runtime::transport::Record {
                topic: "nobody-reads".into(),
                partition: 0,
                offset: 7,
                timestamp_ms: 1,
                key: None,
                headers: Default::default(),
                payload: b"{}".to_vec().into(),
            },
            event_type: None,
            event_id: None,
            partition_key: None,
            reason_kind: ReasonKind::Permanent,
            error_chain: vec!["broken".into()],
            attempts: 1,
            first_failure_ms: 1,
            parked_behind: None,
            instance: None,
        })
        .await
        .unwrap();
    dlq.request_redrive(Some("g"), Selection::Ids(&[letter]), "ops")
        .await
        .unwrap();
    dlq.request_replay("g", &[("nobody-reads".to_owned(), 0, 0)], true)
        .await
        .unwrap();
    assert!(running.wait_idle(Duration::from_secs(10)).await);
    assert!(
        dlq.pending_requests(Some("g"), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let letter = dlq.get(letter).await.unwrap().unwrap();
    assert_eq!(letter.status, LetterStatus::Dead);
    assert_eq!(letter.reason, "group g does not read nobody-reads/0");
    assert!(seen.lock().unwrap().is_empty());
    running.stop().await;
}

/// PostgreSQL, sequenced mode: a record of a key whose dead letter another transaction is
/// closing at that moment (a redrive of that letter finishing; here an UPDATE held open) waits
/// for that transaction, then runs. Read without the lock, the letter was still open, and the
/// record was parked behind a letter about to close, where nothing would ever release it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_record_is_never_parked_behind_a_letter_closing_at_that_moment() {
    let Some((pool, _)) = common::postgres_schema().await else {
        return;
    };
    let stores = event_runtime::Stores::postgres(pool.clone()).await.unwrap();
    let mut app = App::new(
        event_runtime::transport::memory::MemoryTransport::new(),
        stores,
    );
    let seen: Seen = Arc::default();
    let record = recorder(seen.clone());
    app.group_options(
        "seq",
        GroupOptions {
            sequenced: true,
            retry: RetryPolicy::none(),
            ..GroupOptions::default()
        },
    )
    .subscribe::<Step, _>("seq", move |event: Envelope<Step>, ctx: Context| {
        let poison = event.data.seq == 0;
        let fut = record(event, ctx);
        async move {
            if poison {
                return Err(HandlerError::permanent("step 0 is poison"));
            }
            fut.await
        }
    });
    let running = app.start().await.unwrap();
    let publisher = running.publisher();
    let step = |seq| {
        Envelope::event(Step {
            account: "k".into(),
            seq,
        })
    };
    publisher.publish(step(0)).await.unwrap();
    assert!(running.wait_idle(Duration::from_secs(20)).await);
    let dlq = running.dead_letters();
    let letters = dlq.list(&LetterFilter::default()).await.unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    let head = i64::try_from(letters[0].id).unwrap();

    let mut closing = pool.begin().await.unwrap();
    let closer: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *closing)
        .await
        .unwrap();
    sqlx::query("UPDATE evt_dead_letters SET status = 'resolved' WHERE id = $1")
        .bind(head)
        .execute(&mut *closing)
        .await
        .unwrap();
    publisher.publish(step(1)).await.unwrap();
    // The consumer's look for the key's open letter waits for the closing transaction.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
             AND query LIKE '%evt_dead_letters%FOR UPDATE%' AND $1 = ANY(pg_blocking_pids(pid))",
        )
        .bind(closer)
        .fetch_one(&pool)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        let letters: Vec<_> = dlq
            .list(&LetterFilter::default())
            .await
            .unwrap()
            .into_iter()
            .map(|l| (l.id, l.status, l.parked_behind))
            .collect();
        assert!(
            letters.len() == 1 && std::time::Instant::now() < deadline,
            "the consumer did not wait for the letter being closed: {letters:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    closing.commit().await.unwrap();
    assert!(running.wait_idle(Duration::from_secs(20)).await);
    let handled: Vec<u32> = seen.lock().unwrap()["k"]
        .iter()
        .map(|(seq, _)| *seq)
        .collect();
    assert_eq!(handled, [1], "step 1 runs once the letter before it closed");
    let open = dlq.list(&LetterFilter::default()).await.unwrap();
    assert!(open.is_empty(), "nothing parked: {open:?}");
    running.stop().await;
}
