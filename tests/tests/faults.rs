//! Engine faults while scaled: two instances of one service, sharing their groups' partitions,
//! ride through a PostgreSQL restart (an immediate shutdown: every connection cut, recovery at
//! the next start) and through the SIGKILL of one node of a three-node NATS cluster (streams and
//! buckets with three replicas), under load. Each run checks that nothing was lost (every event
//! handled), that the inbox ledger in PostgreSQL has every event exactly once, and that the fault
//! really reached the consumers. And a Kafka broker refusing a member's session timeout
//! (`claim_ttl` outside its bounds) is an error saying so, not a silent group.
//!
//! The servers are the test's own (`event_conformance::servers`): a PostgreSQL cluster it can
//! restart, three `nats-server`s it can kill. Without them the tests are skipped with a message,
//! except under `CI`, where they fail.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use event_conformance::servers::{NatsServer, PostgresServer, free_port};
use event_nats::{NatsConfig, NatsTransport};
use event_runtime::app::GroupOptions;
use event_runtime::{
    App, Context, DomainEvent, Envelope, HandlerError, Publisher, Running, Stores,
};
use serde::{Deserialize, Serialize};

mod common;

#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone)]
#[event(context = "ledger", name = "ledger.entry")]
struct Entry {
    #[event(key)]
    account: String,
    seq: u32,
}

const EVENTS: u32 = 600;
const ACCOUNTS: u32 = 16;

/// Event id -> how many times the `count` group's handlers ran for it, across instances.
type Counts = Arc<Mutex<BTreeMap<String, u32>>>;

/// One instance: group `ledger` books each entry in PostgreSQL in inbox mode (exactly once);
/// group `count` counts its handler runs (dedupe store: at least once, dropped when marked).
async fn instance(
    transport: NatsTransport,
    pool: sqlx::PgPool,
    id: &str,
    counts: Counts,
) -> Running<NatsTransport> {
    let stores = Stores::postgres(pool).await.unwrap();
    let mut app = App::new(transport, stores);
    let options = GroupOptions {
        claim_ttl: Duration::from_secs(3),
        ..GroupOptions::default()
    };
    let who = id.to_owned();
    app.instance(id)
        .partitions(4)
        .group_options(
            "ledger",
            GroupOptions {
                inbox: true,
                ..options.clone()
            },
        )
        .group_options("count", options)
        .subscribe::<Entry, _>("ledger", move |event: Envelope<Entry>, ctx: Context| {
            let who = who.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(2)).await;
                let mut tx = ctx
                    .transaction::<sqlx::Postgres>()
                    .await
                    .ok_or_else(|| HandlerError::permanent("no inbox transaction"))?;
                sqlx::query("INSERT INTO ledger (event_id, seq, instance) VALUES ($1, $2, $3)")
                    .bind(event.id.to_string())
                    .bind(i64::from(event.data.seq))
                    .bind(&who)
                    .execute(&mut **tx)
                    .await?;
                Ok(())
            }
        })
        .subscribe::<Entry, _>("count", move |event: Envelope<Entry>, _: Context| {
            let counts = counts.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(2)).await;
                *counts
                    .lock()
                    .unwrap()
                    .entry(event.id.to_string())
                    .or_default() += 1;
                Ok::<(), HandlerError>(())
            }
        });
    app.start().await.unwrap()
}

fn entries() -> Vec<Envelope<Entry>> {
    (0..EVENTS)
        .map(|seq| {
            Envelope::event(Entry {
                account: format!("acct-{}", seq % ACCOUNTS),
                seq,
            })
        })
        .collect()
}

/// Publishes `events` in slices of 20, one slice every 50 ms, each slice retried until the
/// engine takes it (a publish during a fault may fail; the retry carries the same ids).
async fn publish_slowly(publisher: &Publisher<NatsTransport>, events: &[Envelope<Entry>]) {
    for slice in events.chunks(20) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while let Err(err) = publisher.publish_all(slice.to_vec()).await {
            assert!(
                Instant::now() < deadline,
                "publishing never recovered: {err}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until both groups have handled every event, then checks: the ledger has each event
/// exactly once (read through `ledger`, a pool that can reach the database now), and the count
/// group ran every event's handler (at least once). Returns the count group's duplicate runs.
async fn check(ledger: &sqlx::PgPool, counts: &Counts, events: &[Envelope<Entry>]) -> u32 {
    let ids: BTreeSet<String> = events.iter().map(|e| e.id.to_string()).collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let booked: i64 = sqlx::query_scalar("SELECT count(DISTINCT event_id) FROM ledger")
            .fetch_one(ledger)
            .await
            .unwrap_or(0);
        let counted = counts.lock().unwrap().len();
        if booked == i64::from(EVENTS) && counted == ids.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after the fault, {booked} of {EVENTS} events booked and {counted} counted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT event_id, count(*) FROM ledger GROUP BY event_id")
            .fetch_all(ledger)
            .await
            .unwrap();
    let doubled: Vec<&(String, i64)> = rows.iter().filter(|(_, n)| *n != 1).collect();
    assert!(doubled.is_empty(), "booked more than once: {doubled:?}");
    let booked: BTreeSet<String> = rows.into_iter().map(|(id, _)| id).collect();
    assert_eq!(booked, ids, "the ledger has exactly the published events");
    let counts = counts.lock().unwrap();
    let counted: BTreeSet<String> = counts.keys().cloned().collect();
    assert_eq!(counted, ids, "the count group handled every event");
    counts.values().map(|n| n - 1).sum()
}

async fn ledger_table(pool: &sqlx::PgPool) {
    sqlx::raw_sql(
        "CREATE TABLE ledger (row_id BIGSERIAL PRIMARY KEY, event_id TEXT NOT NULL, seq BIGINT NOT NULL, instance TEXT NOT NULL)",
    )
    .execute(pool)
    .await
    .unwrap();
}

/// Waits until the count group has handled `n` events.
async fn until_counted(counts: &Counts, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while counts.lock().unwrap().len() < n {
        assert!(Instant::now() < deadline, "the consumers never got going");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn engine_errors(instances: &[&Running<NatsTransport>]) -> u64 {
    instances
        .iter()
        .flat_map(|r| ["ledger", "count"].map(|g| r.stats(g).unwrap().engine_errors))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_ride_through_a_postgres_restart_under_load() {
    let Some(nats) = common::server_url("EVT_NATS_URL") else {
        return;
    };
    let Some((bin, user)) = PostgresServer::binaries() else {
        return;
    };
    let mut postgres = PostgresServer::start(&bin, user, &common::tempdir("pg-restart"));
    let url = postgres.url();
    let pool = || {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(1))
            .connect_lazy(&url)
            .unwrap()
    };
    ledger_table(&pool()).await;
    let prefix = format!("pgr{}", uuid::Uuid::now_v7().simple());
    let transport = || async {
        NatsTransport::connect(NatsConfig::new(nats.clone()).prefix(&prefix))
            .await
            .unwrap()
    };
    let counts = Counts::default();
    let one = instance(transport().await, pool(), "one", counts.clone()).await;
    let two = instance(transport().await, pool(), "two", counts.clone()).await;
    let events = entries();
    let producer = {
        let (events, publisher) = (events.clone(), two.publisher());
        tokio::spawn(async move { publish_slowly(&publisher, &events).await })
    };
    until_counted(&counts, 50).await;
    // Down for 2 s while the events keep coming: every claim, mark and inbox transaction of
    // that time fails (the pools give up acquiring after 1 s).
    tokio::task::block_in_place(|| postgres.stop());
    tokio::time::sleep(Duration::from_secs(2)).await;
    tokio::task::block_in_place(|| postgres.restart());
    producer.await.unwrap();
    let doubled = check(&pool(), &counts, &events).await;
    assert!(
        engine_errors(&[&one, &two]) > 0,
        "the restart never reached a consumer (no failed store call)"
    );
    eprintln!(
        "postgres restart: {} store or engine errors retried, {doubled} handler runs of the count group repeated",
        engine_errors(&[&one, &two])
    );
    one.stop().await;
    two.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_ride_through_the_kill_of_a_nats_cluster_node() {
    let Some(binary) = NatsServer::binary() else {
        return;
    };
    let Some((pool, _)) = common::postgres_schema().await else {
        return;
    };
    ledger_table(&pool).await;
    let dir = common::tempdir("nats-cluster");
    let routes: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut nodes: Vec<NatsServer> = (0..3)
        .map(|i| {
            let others: Vec<String> = routes
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, port)| format!("nats://127.0.0.1:{port}"))
                .collect();
            NatsServer::start(
                &binary,
                &dir.join(format!("n{i}")),
                &[
                    "--name",
                    &format!("n{i}"),
                    "--cluster_name",
                    "evt",
                    "--cluster",
                    &format!("nats://127.0.0.1:{}", routes[i]),
                    "--routes",
                    &others.join(","),
                ],
            )
        })
        .collect();
    let urls: Vec<String> = nodes.iter().map(NatsServer::url).collect();
    let config = NatsConfig {
        replicas: 3,
        ..NatsConfig::new(urls.join(",")).prefix(format!("clu{}", uuid::Uuid::now_v7().simple()))
    };
    // The cluster elects its JetStream leader after the routes connect: until then, creating a
    // stream fails.
    let deadline = Instant::now() + Duration::from_secs(60);
    let transport = loop {
        match NatsTransport::connect(config.clone()).await {
            Ok(transport) => {
                use event_runtime::transport::Transport;
                match transport.ensure_topic("ledger", 4).await {
                    Ok(_) => break transport,
                    Err(err) => assert!(Instant::now() < deadline, "no JetStream cluster: {err}"),
                }
            }
            Err(err) => assert!(Instant::now() < deadline, "no JetStream cluster: {err}"),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let counts = Counts::default();
    let one = instance(transport, pool.clone(), "one", counts.clone()).await;
    let second = NatsTransport::connect(config.clone()).await.unwrap();
    let two = instance(second, pool.clone(), "two", counts.clone()).await;
    let events = entries();
    let (first, rest) = events.split_at(EVENTS as usize / 3);
    publish_slowly(&one.publisher(), first).await;
    until_counted(&counts, 50).await;
    tokio::task::block_in_place(|| nodes[1].kill());
    publish_slowly(&two.publisher(), rest).await;
    let doubled = check(&pool, &counts, &events).await;
    eprintln!(
        "nats node killed: {} engine errors retried, {doubled} handler runs of the count group repeated",
        engine_errors(&[&one, &two])
    );
    one.stop().await;
    two.stop().await;
    drop(nodes);
}

/// Where the global subscriber of [`a_kafka_broker_refusing_the_session_timeout_names_claim_ttl`]
/// writes: every log line of the process.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// The broker (librdkafka's mock cluster, told to answer as a broker whose
/// `group.min.session.timeout.ms` is above ours: the mock checks no bounds itself) refuses the
/// group member's session timeout, which is `claim_ttl`: the member's thread logs an error that
/// names `claim_ttl` and the broker's settings (once, not at each of its retries), and the group
/// handles nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_broker_refusing_the_session_timeout_names_claim_ttl() {
    let logs = Logs::default();
    let writer = logs.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish(),
    )
    .expect("one subscriber per process");
    let cluster = event_kafka::mock::MockKafka::start(1);
    cluster.fail_joins(
        event_kafka::mock::RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_SESSION_TIMEOUT,
        1000,
    );
    let transport =
        event_kafka::KafkaTransport::connect(cluster.config().prefix("refused")).unwrap();
    let mut app = App::new(transport, Stores::in_memory().await.unwrap());
    let handled = Arc::new(Mutex::new(0u32));
    let count = handled.clone();
    app.group_options(
        "ledger",
        GroupOptions {
            claim_ttl: Duration::from_secs(2),
            ..GroupOptions::default()
        },
    )
    .subscribe::<Entry, _>("ledger", move |_: Envelope<Entry>, _: Context| {
        let count = count.clone();
        async move {
            *count.lock().unwrap() += 1;
            Ok::<(), HandlerError>(())
        }
    });
    let running = app.start().await.unwrap();
    running
        .publisher()
        .publish(Envelope::event(Entry {
            account: "a-1".into(),
            seq: 1,
        }))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !logs
        .text()
        .contains("refuses this member's session timeout")
    {
        assert!(
            Instant::now() < deadline,
            "no refusal logged:\n{}",
            logs.text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let line = logs
        .text()
        .lines()
        .find(|l| l.contains("refuses this member's session timeout"))
        .unwrap()
        .to_owned();
    for part in [
        "ERROR",
        "GroupOptions::claim_ttl",
        "group.min.session.timeout.ms",
        "session_timeout_ms=2000",
        "group=",
        "Invalid session timeout",
    ] {
        assert!(line.contains(part), "`{part}` missing from: {line}");
    }
    // librdkafka asks to join again 3 s after a refusal, then every 2 s: the same refusal is
    // not logged again within a minute.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let refusals = logs
        .text()
        .matches("refuses this member's session timeout")
        .count();
    assert_eq!(refusals, 1, "{}", logs.text());
    assert_eq!(*handled.lock().unwrap(), 0, "the group never joined");
    running.stop().await;
}
