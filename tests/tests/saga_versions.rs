//! Sagas across deploys: every instance row records the version of its state's stored form;
//! new code lifts older states through its upcasters (`Saga::upcast_state`, or
//! `#[saga(state_version, state_upcast)]`), and `Sagas::check` loads every unfinished instance
//! and pending timer with the new code before it is deployed, naming each one it would fail.
//! Stores created before the column existed get it when opened (SQLite and PostgreSQL). A replay
//! of a saga's group re-runs nothing unless the saga asks (`Saga::REPLAYS`).

use std::time::Duration;

use event_runtime::error::UpcastError;
use event_runtime::saga::{Messages, On, Orchestrated, Saga, Status, Step, Transition, Unknown};
use event_runtime::transport::Transport;
use event_runtime::{App, Command, DomainEvent, Envelope, HandlerError, Stores, saga};
use serde::{Deserialize, Serialize};

mod common;

#[derive(DomainEvent, Serialize, Deserialize, Clone, Debug)]
#[event(context = "tally", name = "tally.counted")]
struct Counted {
    #[event(key)]
    key: String,
}

/// Version 1 of the tally: a bare number.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct TallyV1(u32);

impl Saga for TallyV1 {
    const NAME: &'static str = "tally";
    fn messages(on: &mut Messages<Self>) {
        on.on::<Counted>();
    }
}

impl On<Counted> for TallyV1 {
    const UNKNOWN: Unknown = Unknown::Start;
    fn key(event: &Counted) -> String {
        event.key.clone()
    }
    fn start(_: &Counted, _: &mut Step<'_>) -> Result<Transition<Self>, HandlerError> {
        Ok(Transition::next(TallyV1(1)))
    }
    fn handle(self, _: &Counted, _: &mut Step<'_>) -> Result<Transition<Self>, HandlerError> {
        Ok(Transition::next(TallyV1(self.0 + 1)))
    }
}

/// Version 2: a struct with a label, lifted from the bare number.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct TallyV2 {
    count: u32,
    label: String,
}

impl Saga for TallyV2 {
    const NAME: &'static str = "tally";
    const STATE_VERSION: u32 = 2;
    fn messages(on: &mut Messages<Self>) {
        on.on::<Counted>();
    }
    fn upcast_state(from: u32, state: serde_json::Value) -> Result<serde_json::Value, UpcastError> {
        match from {
            1 => {
                let count = state
                    .as_u64()
                    .ok_or_else(|| UpcastError::new("version 1 is a number"))?;
                Ok(serde_json::json!({ "count": count, "label": "lifted" }))
            }
            other => Err(UpcastError::new(format!("no version {other}"))),
        }
    }
}

impl On<Counted> for TallyV2 {
    const UNKNOWN: Unknown = Unknown::Start;
    fn key(event: &Counted) -> String {
        event.key.clone()
    }
    fn start(_: &Counted, _: &mut Step<'_>) -> Result<Transition<Self>, HandlerError> {
        Ok(Transition::next(TallyV2 {
            count: 1,
            label: "new".into(),
        }))
    }
    fn handle(self, _: &Counted, _: &mut Step<'_>) -> Result<Transition<Self>, HandlerError> {
        Ok(Transition::next(TallyV2 {
            count: self.count + 1,
            ..self
        }))
    }
}

/// Version 2 with the type changed and no upcaster: what a careless deploy looks like.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct TallyBroken {
    count: u32,
}

/// Only checked against the stores, never wired.
impl Saga for TallyBroken {
    const NAME: &'static str = "tally";
    fn messages(_: &mut Messages<Self>) {}
}

async fn count<T: Transport, S: On<Counted>>(mut app: App<T>, keys: &[&str]) {
    app.saga::<S>();
    let running = app.start().await.unwrap();
    for key in keys {
        running
            .publisher()
            .publish(Envelope::event(Counted {
                key: (*key).to_owned(),
            }))
            .await
            .unwrap();
    }
    assert!(running.wait_idle(Duration::from_secs(20)).await);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_state_version_lifts_stored_instances_and_the_check_names_what_would_fail() {
    let db = common::tempdir("saga-versions").join("shop.db");
    count::<_, TallyV1>(App::embedded(&db).await.unwrap(), &["a", "a", "b"]).await;

    let app = App::embedded(&db).await.unwrap();
    let sagas = app.dead_letters().sagas();
    // The careless version cannot read either instance; the lifted one reads both.
    let problems = sagas.check::<TallyBroken>().await.unwrap();
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["a", "b"], "{problems:?}");
    assert!(problems[0].why.contains("does not decode"), "{problems:?}");
    assert_eq!(sagas.check::<TallyV2>().await.unwrap(), []);
    drop(app);

    count::<_, TallyV2>(App::embedded(&db).await.unwrap(), &["a", "c"]).await;
    let app = App::embedded(&db).await.unwrap();
    let sagas = app.dead_letters().sagas();
    let a = sagas.instance("tally", "a").await.unwrap().unwrap();
    assert_eq!(a.state, serde_json::json!({"count": 3, "label": "lifted"}));
    assert_eq!(a.state_version, 2);
    let b = sagas.instance("tally", "b").await.unwrap().unwrap();
    assert_eq!(
        (b.state.clone(), b.state_version),
        (serde_json::json!(1), 1),
        "untouched"
    );
    let c = sagas.instance("tally", "c").await.unwrap().unwrap();
    assert_eq!(c.state, serde_json::json!({"count": 1, "label": "new"}));
    // Older code cannot read what newer code wrote, and says so.
    let problems = sagas.check::<TallyV1>().await.unwrap();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].why.contains("newer code"), "{problems:?}");
}

#[derive(Command, Serialize, Deserialize, Clone, Debug)]
#[command(context = "flow", name = "flow.go")]
struct Go {
    #[command(key)]
    key: String,
}

#[derive(DomainEvent, Serialize, Deserialize, Clone, Debug)]
#[event(context = "flow", name = "flow.gone")]
struct Gone {
    #[event(key)]
    key: String,
}

#[derive(Command, Serialize, Deserialize, Clone, Debug)]
#[command(context = "flow", name = "flow.wait")]
struct Wait {
    #[command(key)]
    key: String,
}

#[derive(DomainEvent, Serialize, Deserialize, Clone, Debug)]
#[event(context = "flow", name = "flow.waited")]
struct Waited {
    #[event(key)]
    key: String,
}

/// Version 1 of a flow: go, then wait.
#[derive(Serialize, Deserialize, Debug)]
struct Flow {
    key: String,
}

#[saga(name = "flow", key = key)]
impl Flow {
    #[start]
    fn counted(event: &Counted) -> Self {
        Flow {
            key: event.key.clone(),
        }
    }

    #[step(pivot, reply = Gone, fault = none, timeout = "1h")]
    fn go(&self) -> Go {
        Go {
            key: self.key.clone(),
        }
    }

    #[step(reply = Waited, timeout = "1h")]
    fn wait(&self) -> Wait {
        Wait {
            key: self.key.clone(),
        }
    }
}

/// Version 2: the data gained a field (lifted), and the `go` step was removed too early.
#[derive(Serialize, Deserialize, Debug)]
struct FlowV2 {
    key: String,
    attempt: u32,
}

#[saga(name = "flow", key = key, state_version = 2, state_upcast = lift)]
impl FlowV2 {
    #[start]
    fn counted(event: &Counted) -> Self {
        FlowV2 {
            key: event.key.clone(),
            attempt: 1,
        }
    }

    fn lift(from: u32, mut data: serde_json::Value) -> Result<serde_json::Value, UpcastError> {
        if from != 1 {
            return Err(UpcastError::new(format!("no version {from}")));
        }
        data["attempt"] = serde_json::json!(1);
        Ok(data)
    }

    #[step(pivot, reply = Waited, fault = none, timeout = "1h")]
    fn wait(&self) -> Wait {
        Wait {
            key: self.key.clone(),
        }
    }
}

async fn flows_in_their_first_step(stores: Stores, transport: impl Transport) {
    let mut app = App::new(transport, stores);
    app.saga::<Orchestrated<Flow>>();
    let running = app.start().await.unwrap();
    running
        .publisher()
        .publish(Envelope::event(Counted { key: "f-1".into() }))
        .await
        .unwrap();
    let sagas = running.sagas().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while sagas.instance("flow", "f-1").await.unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the flow never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Its step's timer is pending, the instance waits for `Gone`.
    let problems = sagas.check::<Orchestrated<FlowV2>>().await.unwrap();
    let found: Vec<(&str, Option<&str>)> = problems
        .iter()
        .map(|p| (p.key.as_str(), p.timer.as_deref()))
        .collect();
    assert_eq!(found, [("f-1", None), ("f-1", Some("go"))], "{problems:?}");
    assert!(problems[0].why.contains("step `go`"), "{problems:?}");
    assert_eq!(sagas.check::<Orchestrated<Flow>>().await.unwrap(), []);
    let status = sagas.instance("flow", "f-1").await.unwrap().unwrap().status;
    assert_eq!(status, Status::Running);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_check_names_an_instance_in_a_removed_step_and_its_timer() {
    let db = common::tempdir("saga-flow").join("shop.db");
    let transport = event_runtime::transport::sqlite::SqliteTransport::open(&db)
        .await
        .unwrap();
    let stores = Stores::sqlite(&transport);
    flows_in_their_first_step(stores, transport).await;
}

/// The saga table as the first release created it, before `state_version` (PostgreSQL).
const OLD_SAGAS: &str = "CREATE TABLE evt_sagas (saga TEXT NOT NULL, key TEXT NOT NULL, \
    version BIGINT NOT NULL, status TEXT NOT NULL, state BYTEA NOT NULL, timers TEXT NOT NULL, \
    reason TEXT, created_ms BIGINT NOT NULL, updated_ms BIGINT NOT NULL, PRIMARY KEY (saga, key))";

/// The same in SQLite.
const OLD_SAGAS_SQLITE: &str = "CREATE TABLE evt_sagas (saga TEXT NOT NULL, key TEXT NOT NULL, \
    version INTEGER NOT NULL, status TEXT NOT NULL, state BLOB NOT NULL, timers TEXT NOT NULL, \
    reason TEXT, created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL, PRIMARY KEY (saga, key))";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_created_before_state_versions_gets_the_column_when_opened() {
    let db = common::tempdir("saga-old").join("shop.db");
    {
        let pool = sqlx::SqlitePool::connect_with(
            sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&db)
                .create_if_missing(true),
        )
        .await
        .unwrap();
        sqlx::query(OLD_SAGAS_SQLITE).execute(&pool).await.unwrap();
        sqlx::query(
            "INSERT INTO evt_sagas VALUES ('tally', 'old', 1, 'running', '4', '{}', NULL, 0, 0)",
        )
        .execute(&pool)
        .await
        .unwrap();
    }
    count::<_, TallyV2>(App::embedded(&db).await.unwrap(), &["old"]).await;
    let app = App::embedded(&db).await.unwrap();
    let sagas = app.dead_letters().sagas();
    let old = sagas.instance("tally", "old").await.unwrap().unwrap();
    assert_eq!(
        old.state,
        serde_json::json!({"count": 5, "label": "lifted"})
    );
    assert_eq!(old.state_version, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_schema_created_before_state_versions_gets_the_column_when_opened() {
    let Some((pool, _)) = common::postgres_schema().await else {
        return;
    };
    sqlx::query(OLD_SAGAS).execute(&pool).await.unwrap();
    sqlx::query(
        "INSERT INTO evt_sagas VALUES ('tally', 'old', 1, 'running', '4', '{}', NULL, 0, 0)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let stores = Stores::postgres(pool.clone()).await.unwrap();
    let app = App::new(
        event_runtime::transport::memory::MemoryTransport::new(),
        stores,
    );
    let sagas = app.dead_letters().sagas();
    assert_eq!(sagas.check::<TallyV2>().await.unwrap(), []);
    let old = sagas.instance("tally", "old").await.unwrap().unwrap();
    assert_eq!(old.state_version, 1);
    // The memory engine with PostgreSQL stores: the instance moves on in a transaction there.
    count::<_, TallyV2>(app, &["old"]).await;
    let stores = Stores::postgres(pool).await.unwrap();
    let app = App::new(
        event_runtime::transport::memory::MemoryTransport::new(),
        stores,
    );
    let old = app
        .dead_letters()
        .sagas()
        .instance("tally", "old")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        old.state,
        serde_json::json!({"count": 5, "label": "lifted"})
    );
    assert_eq!(old.state_version, 2);
}

/// The tally, but its replays run again (`Saga::REPLAYS`).
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct TallyReplayed(u32);

impl Saga for TallyReplayed {
    const NAME: &'static str = "tally";
    const REPLAYS: bool = true;
    fn messages(on: &mut Messages<Self>) {
        on.on::<Counted>();
    }
}

impl On<Counted> for TallyReplayed {
    const UNKNOWN: Unknown = Unknown::Start;
    fn key(event: &Counted) -> String {
        event.key.clone()
    }
    fn start(_: &Counted, _: &mut Step<'_>) -> Result<Transition<Self>, HandlerError> {
        Ok(Transition::next(TallyReplayed(1)))
    }
    fn handle(self, _: &Counted, _: &mut Step<'_>) -> Result<Transition<Self>, HandlerError> {
        Ok(Transition::next(TallyReplayed(self.0 + 1)))
    }
}

/// Counts `a` three times with saga `S`, then replays every `Counted` record into the saga's
/// group with dedupe bypassed: the tally's state after the replay.
async fn replayed<S: On<Counted>>() -> serde_json::Value {
    let db = common::tempdir("saga-replay").join("shop.db");
    let mut app = App::embedded(&db).await.unwrap();
    app.saga::<S>();
    let running = app.start().await.unwrap();
    for _ in 0..3 {
        running
            .publisher()
            .publish(Envelope::event(Counted { key: "a".into() }))
            .await
            .unwrap();
    }
    assert!(running.wait_idle(Duration::from_secs(20)).await);
    let ends = running.transport().end_offsets("tally").await.unwrap();
    let records: Vec<(String, u32, u64)> = ends
        .iter()
        .enumerate()
        .flat_map(|(p, end)| (0..*end).map(move |o| ("tally".to_owned(), p as u32, o)))
        .collect();
    assert_eq!(records.len(), 3);
    let queued = running
        .dead_letters()
        .request_replay("saga.tally", &records, true)
        .await
        .unwrap();
    assert_eq!(queued, 3);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !running
        .dead_letters()
        .pending_redeliveries("saga.tally", 1)
        .await
        .unwrap()
        .is_empty()
    {
        assert!(std::time::Instant::now() < deadline, "the replay never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(running.wait_idle(Duration::from_secs(20)).await);
    let state = running
        .sagas()
        .unwrap()
        .instance("tally", "a")
        .await
        .unwrap()
        .unwrap()
        .state;
    running.stop().await;
    state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_re_runs_no_saga_transition_unless_the_saga_asks() {
    assert_eq!(replayed::<TallyV1>().await, serde_json::json!(3));
    assert_eq!(replayed::<TallyReplayed>().await, serde_json::json!(6));
}
