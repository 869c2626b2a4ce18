//! [`App`]: wires handlers to consumer groups on a transport, publishes, and runs.
//!
//! ```no_run
//! use event_runtime::{App, Context, DomainEvent, Envelope, HandlerError};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(DomainEvent, Serialize, Deserialize, Debug)]
//! #[event(context = "orders")]
//! struct OrderPlaced { #[event(key)] order_id: String }
//!
//! #[event_runtime::handler(group = "billing")]
//! async fn bill(event: Envelope<OrderPlaced>, _ctx: Context) -> Result<(), HandlerError> {
//!     println!("billing {}", event.data.order_id);
//!     Ok(())
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let mut app = App::embedded("shop.db").await?;
//! app.register(bill);
//! let running = app.start().await?;
//! running.publisher().publish(Envelope::event(OrderPlaced { order_id: "o-1".into() })).await?;
//! running.stop().await;
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::cloudevents::Limits;
use crate::consumer::share::Shared;
use crate::consumer::{Activity, ErasedHandler, GroupRunner, GroupStats, Typed};
use crate::deprecation::{DeprecatedUse, DeprecationPolicy, Deprecations};
use crate::dlq::DeadLetters;
use crate::handler::{Handler, HandlerSpec, States, declared};
use crate::message::{Message, MessageKind};
#[cfg(any(feature = "sqlite", feature = "postgres"))]
use crate::outbox::Outbox;
pub use crate::publish::{PublishError, Publisher};
use crate::registry::{Registry, RegistryError};
use crate::retry::{PublishRetry, RetryPolicy};
use crate::store::Db;
use crate::transport::memory::MemoryTransport;
use crate::transport::{LogLimits, Sharing, Transport, TransportError, command_topic, event_topic};

#[cfg(feature = "sqlite")]
use crate::transport::sqlite::SqliteTransport;

fn topic_of(kind: MessageKind, context: &str) -> String {
    match kind {
        MessageKind::Event => event_topic(context),
        MessageKind::Command => command_topic(context),
    }
}

/// How one consumer group runs.
#[derive(Clone, Debug)]
pub struct GroupOptions {
    /// Lanes (distinct keys) handled at once per partition. Default 16.
    pub concurrency: usize,
    /// Records read per partition per fetch, at most. Default 256.
    pub batch: usize,
    /// Records read and not yet done per partition: how far a partition reads ahead of its
    /// handlers. A partition at the bound reads nothing more until lanes finish. Default 1024.
    pub max_in_flight: usize,
    /// Records read and not yet done across all the group's partitions. Default 8192.
    pub max_in_flight_per_group: usize,
    /// Offsets per partition between the committed position and the newest record read: the
    /// records done behind an unfinished one (a key whose handler is slow or retrying). Past
    /// it, the partition waits for that record, so one stuck key stalls the others only after
    /// this many records (each costs 16 bytes here until the position passes it). Default 65,536.
    pub max_uncommitted: usize,
    /// How long [`crate::Running::stop`] lets the handlers running finish before abandoning
    /// them (they are redelivered on the next start). Default 10 s.
    pub drain_timeout: Duration,
    /// Axon's "sequenced" dead-lettering: once an event is dead-lettered, later events with the
    /// same key are parked behind it until it is resolved. Default off.
    pub sequenced: bool,
    /// Retries for transient failures.
    pub retry: RetryPolicy,
    /// Inbox pattern. On the SQLite engine, the dedupe mark, the handler's writes through
    /// [`crate::Context::transaction`] and the events it emits commit in one transaction. With
    /// SQL stores on another engine ([`Stores::postgres`], [`Stores::sqlite`]), the dedupe mark,
    /// the handler's writes through [`crate::Context::transaction`] and the events it emits
    /// (staged in the transactional outbox, [`crate::outbox`]) commit in one transaction of the
    /// stores' database; the outbox's relay then appends the events to the log, at least once
    /// (see docs/delivery.md).
    pub inbox: bool,
    /// Dead-letter records whose type no type in this binary has, instead of skipping them
    /// (the default). Topics are per context, so a context that adds an event type writes
    /// records of a type its older consumers do not know: adding a type is a compatible change,
    /// and those records are skipped, counted (`StatsSnapshot::unknown_types`) and committed
    /// past. Turn this on for a group that must know every type it reads. Default off.
    pub dead_letter_unknown_types: bool,
    /// Also copy each dead letter to the topic `<group>.dlq` on the engine (a NATS stream, a
    /// Kafka topic; [`crate::transport::dead_letter_topic`]), with `x-evt-dlq-group`,
    /// `x-evt-dlq-source` (`topic/partition/offset`), `x-evt-dlq-reason`, `x-evt-dlq-error` and
    /// `x-evt-dlq-attempts` headers. The copy is written before the letter is stored, so it
    /// exists at least once for every letter. Default on.
    pub dead_letter_topic: bool,
    /// On an engine where instances share a group's partitions
    /// ([`Transport::sharing`]: memory, SQLite, NATS, Kafka), how long an instance's claim on
    /// a partition holds unless renewed (renewed every third of it). After an instance dies
    /// without stopping, its partitions move to the others within about this time; an instance
    /// cut off for longer loses them and starts no new handler. Default 10 s.
    ///
    /// It is also the lease of an inbox transaction on PostgreSQL (at least 1 s; see
    /// [`crate::Context::transaction`]): a handler must not hold that transaction idle for
    /// longer than about five sixths of it.
    pub claim_ttl: Duration,
}

impl Default for GroupOptions {
    fn default() -> Self {
        GroupOptions {
            concurrency: 16,
            batch: 256,
            max_in_flight: 1024,
            max_in_flight_per_group: 8192,
            max_uncommitted: 65_536,
            drain_timeout: Duration::from_secs(10),
            sequenced: false,
            retry: RetryPolicy::default(),
            inbox: false,
            dead_letter_unknown_types: false,
            dead_letter_topic: true,
            claim_ttl: Duration::from_secs(10),
        }
    }
}

/// Why the app could not start or publish.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    /// The message registry is inconsistent.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// `#[handler]` functions that were declared but never registered.
    #[error("declared handlers are not wired: {}; call app.register(<handler>) for each", .0.join(", "))]
    NotWired(Vec<&'static str>),
    /// Two handlers for one event type in one group.
    #[error("group `{group}` has two handlers for `{event}`")]
    DuplicateHandler {
        /// Group.
        group: String,
        /// Event type.
        event: String,
    },
    /// An instance id ([`App::instance`]) that engines cannot carry.
    #[error(
        "instance id `{0}` is invalid: use 1 to 64 ASCII letters, digits, `-` or `_` (it becomes part of engine keys)"
    )]
    InvalidInstance(String),
    /// A saga ([`App::saga`]) wired on stores without transactions.
    #[error(
        "saga `{0}` needs SQL stores: its state, effects and timers commit in one transaction; use the embedded SQLite engine, Stores::sqlite or Stores::postgres"
    )]
    SagaStores(&'static str),
    /// Two sagas with one name.
    #[error("two sagas are named `{0}`")]
    DuplicateSaga(&'static str),
    /// The engine failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
}

/// The ids of the apps running in this process, so that two at once never share one.
static INSTANCES: std::sync::Mutex<BTreeSet<String>> = std::sync::Mutex::new(BTreeSet::new());

/// Holds an instance id in [`INSTANCES`] while its app runs (or until it is dropped, as in a
/// crash).
#[derive(Debug)]
struct InstanceId(Arc<str>);

impl InstanceId {
    /// `wanted`, or else this host's name with the process id; when an app of this process
    /// runs under that id already, a suffix `-2`, `-3`...
    fn take(wanted: Option<&str>) -> Self {
        let base = wanted.map_or_else(default_instance, str::to_owned);
        let mut taken = INSTANCES
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut id = base.clone();
        let mut n = 1;
        while taken.contains(&id) {
            n += 1;
            id = format!("{base}-{n}");
        }
        taken.insert(id.clone());
        InstanceId(Arc::from(id))
    }
}

impl Drop for InstanceId {
    fn drop(&mut self) {
        INSTANCES
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&*self.0);
    }
}

/// `<host>-<pid>-<random>` (the random part once per process: containers on one host network
/// can share a host name and pid), with what an engine key cannot hold replaced.
fn default_instance() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .map(|c| if valid_instance_char(c) { c } else { '-' })
        .take(40)
        .collect();
    let host = if host.is_empty() {
        "host".to_owned()
    } else {
        host
    };
    static SUFFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    // The last hex digits of a UUIDv7 are random.
    let suffix = SUFFIX.get_or_init(|| {
        let id = uuid::Uuid::now_v7().simple().to_string();
        id[id.len() - 6..].to_owned()
    });
    format!("{host}-{}-{suffix}", std::process::id())
}

fn valid_instance_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

struct Group {
    options: GroupOptions,
    handlers: crate::FastMap<String, Arc<dyn ErasedHandler>>,
    descriptors: Vec<&'static crate::message::Descriptor>,
}

/// The application: a transport, its stores, and the consumer groups wired to it.
pub struct App<T: Transport> {
    transport: Arc<T>,
    dlq: DeadLetters,
    stores: Db,
    inbox: Option<crate::store::inbox::Inbox>,
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    outbox: Option<Outbox>,
    publisher: Publisher<T>,
    groups: BTreeMap<String, Group>,
    wired: BTreeSet<&'static str>,
    states: States,
    limits: Limits,
    retention: Retention,
    instance: Option<String>,
    errors: Vec<AppError>,
    /// Per saga wired with [`App::saga`]: the messages it discarded.
    sagas: BTreeMap<&'static str, Arc<std::sync::atomic::AtomicU64>>,
}

/// How long an app keeps what its log and stores accumulate; a task of [`App::start`] enforces
/// it, at start and then every [`Retention::every`]. Every instance of a service may run it: the
/// deletions are idempotent.
///
/// ```
/// use std::time::Duration;
/// use event_runtime::app::Retention;
/// use event_runtime::transport::LogLimits;
///
/// let mut retention = Retention::default();
/// // Audit topics: two years, whatever their events declare.
/// retention.topics.insert(
///     "audit".into(),
///     LogLimits { max_age: Some(Duration::from_secs(2 * 365 * 86_400)), ..LogLimits::default() },
/// );
/// // Every other partition of the embedded log: at most 512 MiB.
/// retention.log.max_bytes = Some(512 << 20);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Dedupe marks (and inbox claims) older than this are forgotten, so the table stays
    /// bounded; a copy of an event that arrives later than this after the first is handled
    /// again. Default 7 days; `None` keeps them forever.
    pub dedupe: Option<Duration>,
    /// The embedded log's records ([`Transport::delete_records`]: the SQLite engine; a broker
    /// applies its own retention). A topic whose event types declare `sla(retention = ...)`
    /// keeps its records for the longest they declare instead of `log.max_age`. Default:
    /// [`LogLimits::default`] (7 days, no size bound, never what a known group has not read).
    pub log: LogLimits,
    /// Limits for named topics, over the declared and default ones.
    pub topics: BTreeMap<String, LogLimits>,
    /// Closed dead letters (resolved or purged) are deleted, with their audit trail, this long
    /// after they were closed. Open letters are never deleted. Default 30 days; `None` keeps
    /// them forever.
    pub closed_letters: Option<Duration>,
    /// Finished saga instances (completed or failed), with their history, are deleted this long
    /// after their last transition. Running ones are never deleted. A message for a deleted
    /// instance finds none (under `Unknown::Start` it would start a new one), so keep this
    /// longer than any redelivery or replay of a saga's messages. Default 30 days; `None` keeps
    /// them forever.
    pub finished_sagas: Option<Duration>,
    /// How often the task runs. Default 1 hour.
    pub every: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            dedupe: Some(Duration::from_secs(7 * 24 * 3600)),
            log: LogLimits::default(),
            topics: BTreeMap::new(),
            closed_letters: Some(Duration::from_secs(30 * 24 * 3600)),
            finished_sagas: Some(Duration::from_secs(30 * 24 * 3600)),
            every: Duration::from_secs(3600),
        }
    }
}

impl Retention {
    /// The limits of `topic`: its own, else the longest `sla(retention)` its message types
    /// declare (over [`Retention::log`]), else [`Retention::log`].
    pub fn limits_for(&self, topic: &str) -> LogLimits {
        if let Some(limits) = self.topics.get(topic) {
            return *limits;
        }
        let declared = Registry::global()
            .ok()
            .into_iter()
            .flat_map(|registry| registry.iter())
            .filter(|d| topic_of(d.kind, d.context) == topic)
            .filter_map(|d| d.sla.retention_secs)
            .max();
        match declared {
            Some(secs) => LogLimits {
                max_age: Some(Duration::from_secs(secs)),
                ..self.log
            },
            None => self.log,
        }
    }
}

/// What the retention task has deleted so far ([`Running::retention_stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetentionStats {
    /// Dedupe marks forgotten.
    pub dedupe_marks: u64,
    /// Records deleted from the embedded log.
    pub records: u64,
    /// Closed dead letters deleted.
    pub closed_letters: u64,
    /// Finished saga instances deleted.
    pub finished_sagas: u64,
}

#[derive(Debug, Default)]
struct RetentionCounters {
    dedupe_marks: AtomicU64,
    records: AtomicU64,
    closed_letters: AtomicU64,
    finished_sagas: AtomicU64,
}

#[cfg(feature = "sqlite")]
impl App<SqliteTransport> {
    /// The durable embedded engine in the SQLite file at `path` (created if missing): log,
    /// positions, dedupe marks and dead letters survive restarts.
    ///
    /// # Errors
    ///
    /// When the file cannot be opened.
    pub async fn embedded(path: impl AsRef<std::path::Path>) -> Result<Self, AppError> {
        let transport = SqliteTransport::open(path).await?;
        let stores = Stores::sqlite(&transport);
        Ok(App::new(transport, stores))
    }
}

impl App<MemoryTransport> {
    /// Everything in memory (engine, dead letters, dedupe marks; no SQL at all):
    /// for tests and demos.
    ///
    /// # Errors
    ///
    /// None today (kept fallible for stores that need set-up).
    pub async fn in_memory() -> Result<Self, AppError> {
        App::with_transport(MemoryTransport::new()).await
    }
}

/// Where an app keeps what is not the log: its dead-letter queue (with redrive and replay
/// requests) and its dedupe marks. Cloning shares them, so several apps (or an app and its
/// restart) can use the same stores.
#[derive(Clone)]
pub struct Stores {
    db: Db,
    dlq: DeadLetters,
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    outbox: Option<Outbox>,
}

impl Stores {
    /// The default for any engine: the dead-letter queue and the dedupe marks in memory, no SQL
    /// at all. Nothing survives the process, so a restarted process handles again the events it
    /// had handled but not committed; use [`Stores::sqlite`] to keep them.
    ///
    /// # Errors
    ///
    /// None today; kept fallible so that a store needing set-up can take its place.
    pub async fn in_memory() -> Result<Self, TransportError> {
        Ok(Stores::on(Db::memory()))
    }

    fn on(db: Db) -> Self {
        Stores {
            dlq: DeadLetters::on(db.clone()),
            #[cfg(any(feature = "sqlite", feature = "postgres"))]
            outbox: Outbox::of(&db),
            db,
        }
    }

    /// Both in the SQLite file of `file`: durable, and what [`App::embedded`] uses. An app on
    /// another engine can keep its stores in a file this way (`SqliteTransport::open(path)`;
    /// its log tables then stay empty), and gets the inbox ([`GroupOptions::inbox`]) on it.
    /// Also the transactional outbox ([`Stores::outbox`]), whose relay [`App::start`] runs.
    #[cfg(feature = "sqlite")]
    pub fn sqlite(file: &SqliteTransport) -> Self {
        Stores::on(Db::sqlite(file))
    }

    /// Both in PostgreSQL, on `pool` (tables created if missing, in the pool's current schema):
    /// durable, shared by every process of the app, and the inbox
    /// ([`GroupOptions::inbox`]) on any engine through [`crate::Context::transaction`]. Also
    /// the transactional outbox ([`Stores::outbox`]), whose relay [`App::start`] runs.
    ///
    /// # Errors
    ///
    /// When the schema cannot be created. The message never holds the connection URL.
    #[cfg(feature = "postgres")]
    pub async fn postgres(pool: sqlx::PgPool) -> Result<Self, TransportError> {
        Ok(Stores::on(Db::postgres(pool).await?))
    }

    /// The dead-letter queue.
    pub fn dead_letters(&self) -> &DeadLetters {
        &self.dlq
    }

    /// The transactional outbox ([`crate::outbox`]): with SQL stores ([`Stores::sqlite`],
    /// [`Stores::postgres`]), stage events in your own transaction on the stores' database and
    /// the app's relay publishes them after the commit. `None` for in-memory stores.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub fn outbox(&self) -> Option<&Outbox> {
        self.outbox.as_ref()
    }
}

impl<T: Transport> App<T> {
    /// An app on any engine, e.g. `event_nats::NatsTransport`, with its dead letters and dedupe
    /// marks in `stores`. Inbox mode ([`GroupOptions::inbox`]) needs the SQLite engine or SQL
    /// stores ([`Stores::sqlite`], [`Stores::postgres`]); with in-memory stores a group with
    /// `inbox: true` uses the dedupe store.
    pub fn new(transport: T, stores: Stores) -> Self {
        let Stores {
            db,
            dlq,
            #[cfg(any(feature = "sqlite", feature = "postgres"))]
            outbox,
        } = stores;
        let inbox = db.inbox_for(&transport);
        let transport = Arc::new(transport);
        App {
            publisher: Publisher {
                transport: transport.clone(),
                partitions: 8,
                topics: Arc::default(),
                retry: PublishRetry::default(),
                deprecations: Arc::new(Deprecations::new(
                    DeprecationPolicy::default(),
                    Registry::global().ok(),
                )),
                sent: Arc::default(),
            },
            transport,
            dlq,
            stores: db,
            inbox,
            #[cfg(any(feature = "sqlite", feature = "postgres"))]
            outbox,
            groups: BTreeMap::new(),
            wired: BTreeSet::new(),
            states: States::default(),
            limits: Limits::default(),
            retention: Retention::default(),
            instance: None,
            errors: Vec::new(),
            sagas: BTreeMap::new(),
        }
    }

    /// This instance's id among the instances of its service: it names the claims it holds on
    /// the groups' partitions ([`Transport::sharing`]), and its logs. Keep it stable
    /// across restarts of one instance (a pod or host name, like Kafka's `group.instance.id`):
    /// a restart under the same id takes its partitions back at once, instead of waiting for
    /// the claims of the process that died to lapse ([`GroupOptions::claim_ttl`]). Two
    /// instances running at once must have different ids; in one process a suffix keeps them
    /// apart. Default: `<host>-<pid>-<random>`. 1 to 64 ASCII letters, digits, `-` or `_`.
    pub fn instance(&mut self, id: &str) -> &mut Self {
        if id.is_empty() || id.len() > 64 || !id.chars().all(valid_instance_char) {
            self.errors.push(AppError::InvalidInstance(id.to_owned()));
        } else {
            self.instance = Some(id.to_owned());
        }
        self
    }

    /// How long this app keeps dedupe marks, and how often it purges ([`Retention`]; default:
    /// 7 days, hourly).
    pub fn retention(&mut self, retention: Retention) -> &mut Self {
        self.retention = retention;
        self
    }

    /// An app on `transport` with the default stores ([`Stores::in_memory`]).
    ///
    /// # Errors
    ///
    /// None today (kept fallible for stores that need set-up).
    pub async fn with_transport(transport: T) -> Result<Self, AppError> {
        Ok(App::new(transport, Stores::in_memory().await?))
    }

    /// Partitions of topics this app creates (existing topics keep theirs). Default 8.
    pub fn partitions(&mut self, partitions: u32) -> &mut Self {
        self.publisher.partitions = partitions.max(1);
        self
    }

    /// Options of `group` (created if needed).
    pub fn group_options(&mut self, group: &str, options: GroupOptions) -> &mut Self {
        self.group_mut(group).options = options;
        self
    }

    /// State handlers can read with [`crate::Context::state`].
    pub fn with_state<S: Send + Sync + 'static>(&mut self, state: S) -> &mut Self {
        self.states.insert(state);
        self
    }

    fn group_mut(&mut self, group: &str) -> &mut Group {
        self.groups
            .entry(group.to_owned())
            .or_insert_with(|| Group {
                options: GroupOptions::default(),
                handlers: crate::FastMap::default(),
                descriptors: Vec::new(),
            })
    }

    /// Subscribes `handler` to events (or commands) of type `E` in `group`.
    pub fn subscribe<E: Message, H: Handler<E>>(&mut self, group: &str, handler: H) -> &mut Self {
        let erased: Arc<dyn ErasedHandler> = Arc::new(Typed::<E, H>::new(handler));
        self.subscribe_erased(group, E::DESCRIPTORS, erased)
    }

    fn subscribe_erased(
        &mut self,
        group: &str,
        descriptors: &'static [crate::message::Descriptor],
        erased: Arc<dyn ErasedHandler>,
    ) -> &mut Self {
        let mut duplicates = Vec::new();
        let entry = self.group_mut(group);
        for descriptor in descriptors {
            if entry
                .handlers
                .insert(descriptor.name.to_owned(), erased.clone())
                .is_some()
            {
                duplicates.push(descriptor.name.to_owned());
            } else {
                entry.descriptors.push(descriptor);
            }
        }
        for event in duplicates {
            self.errors.push(AppError::DuplicateHandler {
                group: group.to_owned(),
                event,
            });
        }
        self
    }

    /// Wires saga `S` ([`crate::saga`]): its group `saga.<name>` in inbox mode, subscribed to
    /// the messages [`crate::saga::Saga::messages`] lists and to its timers; [`App::start`]
    /// then also runs the task that fires due timers.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub fn saga<S: crate::saga::Saga>(&mut self) -> &mut Self {
        if self.sagas.contains_key(S::NAME) {
            self.errors.push(AppError::DuplicateSaga(S::NAME));
            return self;
        }
        let group = crate::saga::group_of(S::NAME);
        let mut on = crate::saga::Messages::<S>::new();
        S::messages(&mut on);
        self.sagas.insert(S::NAME, on.discarded.clone());
        for route in on.routes {
            self.subscribe_erased(&group, route.descriptors, route.handler);
        }
        let timers: Arc<dyn ErasedHandler> = Arc::new(Typed::<crate::saga::TimerFired, _>::new(
            crate::saga::Timers::<S>::new(),
        ));
        self.subscribe_erased(&group, crate::saga::timer_descriptors(S::NAME), timers);
        self
    }

    /// Registers a handler declared with `#[handler(group = "...")]`.
    pub fn register<H: HandlerSpec>(&mut self, handler: H) -> &mut Self {
        self.wired.insert(H::NAME);
        self.subscribe::<H::Event, H>(H::GROUP, handler)
    }

    /// Registers every handler declared with `#[handler]` in this binary that is not registered
    /// yet, each in its declared group: one call instead of one [`App::register`] per handler.
    /// Handlers registered before (explicitly, or by an earlier call) are left as they are.
    pub fn register_all(&mut self) -> &mut Self {
        self.register_declared(|_| true)
    }

    /// Registers the handlers declared with `#[handler]` in the module `module` (a
    /// `module_path!()` such as `"shop::billing"`) and the modules inside it, as
    /// [`App::register_all`] does. A binary that holds several services' handlers wires each
    /// service's modules this way; [`App::start`] still refuses a declared handler nobody wired.
    pub fn register_module(&mut self, module: &str) -> &mut Self {
        let module = module.trim_end_matches("::").to_owned();
        self.register_declared(move |name| {
            name.strip_prefix(module.as_str())
                .is_some_and(|rest| rest.starts_with("::"))
        })
    }

    fn register_declared(&mut self, wanted: impl Fn(&str) -> bool) -> &mut Self {
        let mut declared: Vec<&'static crate::handler::HandlerDecl> = declared()
            .filter(|d| wanted(d.name) && !self.wired.contains(d.name))
            .collect();
        // The link order of `inventory` is not stable: register in name order.
        declared.sort_by_key(|d| d.name);
        for decl in declared {
            self.wired.insert(decl.name);
            let handler = (decl.make)();
            self.subscribe_erased(decl.group, decl.events, handler.0);
        }
        self
    }

    /// How this app's publisher rides out an engine outage (default: [`PublishRetry::default`],
    /// up to 10 s). Events emitted by handlers are not under it: a failed write fails the
    /// attempt, which the group's [`crate::retry::RetryPolicy`] retries.
    pub fn publish_retry(&mut self, retry: PublishRetry) -> &mut Self {
        self.publisher.retry = retry;
        self
    }

    /// What happens to deprecated message versions ([`crate::deprecation`]; default: counted,
    /// logged once each, refused for publishing after their sunset date). Applies to the
    /// publishers already handed out too.
    pub fn deprecation_policy(&mut self, policy: DeprecationPolicy) -> &mut Self {
        self.publisher.deprecations.set_policy(policy);
        self
    }

    /// The publisher of this app.
    pub fn publisher(&self) -> Publisher<T> {
        self.publisher.clone()
    }

    /// The dead-letter queue.
    pub fn dead_letters(&self) -> &DeadLetters {
        &self.dlq
    }

    /// The transactional outbox of this app's stores ([`Stores::outbox`]): `Some` with SQL
    /// stores (the embedded default among them).
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub fn outbox(&self) -> Option<Outbox> {
        self.outbox.clone()
    }

    /// Validates the registry and the wiring, creates the topics, and starts every group; with
    /// SQL stores, also the outbox's relay ([`crate::outbox`]), which publishes what was
    /// staged (before this start too) and stops with the app. On an engine where instances
    /// share partitions ([`Transport::sharing`]), it returns once each group made its
    /// first round of claims: alone, this instance then owns every partition; beside running
    /// instances, it takes its share as they hand it over (see docs/delivery.md).
    ///
    /// # Errors
    ///
    /// [`AppError::Registry`] for duplicate names or broken upcast chains, [`AppError::NotWired`]
    /// for `#[handler]` functions never registered, [`AppError::DuplicateHandler`], or the
    /// engine's error.
    pub async fn start(mut self) -> Result<Running<T>, AppError> {
        let registry = Registry::global().map_err(|err| AppError::Registry(err.clone()))?;
        if let Some(err) = self.errors.drain(..).next() {
            return Err(err);
        }
        let not_wired: Vec<&'static str> = declared()
            .map(|d| d.name)
            .filter(|name| !self.wired.contains(name))
            .collect();
        if !not_wired.is_empty() {
            return Err(AppError::NotWired(not_wired));
        }
        if let Some(saga) = self.sagas.keys().next()
            && self.inbox.is_none()
        {
            return Err(AppError::SagaStores(saga));
        }
        #[cfg(any(feature = "sqlite", feature = "postgres"))]
        for saga in self.sagas.keys() {
            // A saga's transitions are its inbox transactions, whatever the options say.
            if let Some(group) = self.groups.get_mut(&crate::saga::group_of(saga)) {
                group.options.inbox = true;
            }
        }
        let (shutdown, receiver) = watch::channel(false);
        let instance = InstanceId::take(self.instance.as_deref());
        let shared = self.transport.sharing() != Sharing::None;
        let mut shares = BTreeMap::new();
        let mut tasks = JoinSet::new();
        let mut renewals = JoinSet::new();
        let mut stats = BTreeMap::new();
        let mut subscriptions = Vec::new();
        let activity = Arc::new(Activity::default());
        for (name, group) in std::mem::take(&mut self.groups) {
            let topics: BTreeSet<String> = group
                .descriptors
                .iter()
                .map(|d| topic_of(d.kind, d.context))
                .collect();
            let group_stats = Arc::new(GroupStats::default());
            stats.insert(name.clone(), group_stats.clone());
            let runner = Arc::new(GroupRunner {
                group: Arc::from(name.as_str()),
                instance: instance.0.clone(),
                in_flight: Arc::new(tokio::sync::Semaphore::new(
                    group.options.max_in_flight_per_group.max(1),
                )),
                options: group.options,
                handlers: group.handlers,
                transport: self.transport.clone(),
                publisher: self.publisher.clone(),
                dlq: self.dlq.clone(),
                stores: self.stores.clone(),
                inbox: self.inbox.clone(),
                registry,
                states: self.states.clone(),
                stats: group_stats,
                activity: activity.clone(),
                limits: self.limits,
                held: std::sync::Mutex::default(),
            });
            renewals.spawn(runner.clone().run_claim_renewals());
            let mut owned = Vec::new();
            for topic in topics {
                let partitions = self.publisher.partitions_of(&topic).await?;
                subscriptions.push((name.clone(), topic.clone(), partitions));
                let topic: Arc<str> = Arc::from(topic);
                owned.extend((0..partitions).map(|p| (topic.clone(), p)));
            }
            let read: Arc<[(Arc<str>, u32)]> = owned.clone().into();
            if shared {
                let (view, viewed) = watch::channel(Shared::default());
                shares.insert(name.clone(), viewed.clone());
                tasks.spawn(runner.clone().run_shared(owned, view, receiver.clone()));
                tasks.spawn(runner.run_redeliveries(read, Some(viewed), receiver.clone()));
            } else {
                for (topic, partition) in owned {
                    tasks.spawn(runner.clone().run_partition(
                        topic.to_string(),
                        partition,
                        None,
                        receiver.clone(),
                    ));
                }
                tasks.spawn(runner.run_redeliveries(read, None, receiver.clone()));
            }
        }
        #[cfg(any(feature = "sqlite", feature = "postgres"))]
        if let Some(outbox) = &self.outbox {
            tasks.spawn(outbox.relay(self.publisher.clone(), activity.clone(), receiver.clone()));
        }
        #[cfg(any(feature = "sqlite", feature = "postgres"))]
        if let Some(inbox) = self.inbox.clone().filter(|_| !self.sagas.is_empty()) {
            tasks.spawn(crate::saga::timers::fire(
                inbox,
                self.publisher.clone(),
                receiver.clone(),
            ));
        }
        // Each group's first round of claims is made before `start` returns: this instance
        // then owns its share (all of it, alone), and the retention below already sees the
        // groups' positions.
        for viewed in shares.values_mut() {
            let _ = viewed.changed().await;
        }
        let retained = Arc::new(RetentionCounters::default());
        // The inbox's claims are dedupe marks too, in the log's file on the SQLite engine.
        let mut dbs = vec![self.stores.clone()];
        dbs.extend(self.inbox.as_ref().map(|inbox| inbox.db.clone()));
        tasks.spawn(retain(
            Retainer {
                transport: self.transport.clone(),
                dlq: self.dlq.clone(),
                dbs,
                retention: self.retention.clone(),
                counters: retained.clone(),
            },
            receiver.clone(),
        ));
        Ok(Running {
            transport: self.transport,
            publisher: self.publisher,
            dlq: self.dlq,
            #[cfg(any(feature = "sqlite", feature = "postgres"))]
            outbox: self.outbox,
            stats,
            subscriptions,
            activity,
            retained,
            shares,
            shutdown,
            tasks,
            renewals,
            instance,
            sagas: self.sagas,
            #[cfg(any(feature = "sqlite", feature = "postgres"))]
            inbox: self.inbox,
        })
    }
}

/// What the retention task works on.
struct Retainer<T> {
    transport: Arc<T>,
    dlq: DeadLetters,
    dbs: Vec<Db>,
    retention: Retention,
    counters: Arc<RetentionCounters>,
}

/// Applies `retention`, now and then every [`Retention::every`], until `shutdown`: dedupe marks,
/// the embedded log's topics, closed dead letters. A failed round is tried again at the next
/// (what it would have deleted only waits longer).
async fn retain<T: Transport>(r: Retainer<T>, mut shutdown: watch::Receiver<bool>) {
    use std::sync::atomic::Ordering::Relaxed;
    while !*shutdown.borrow() {
        if let Some(keep) = r.retention.dedupe {
            for db in &r.dbs {
                if let Ok(n) = db.purge_dedupe(keep).await {
                    r.counters.dedupe_marks.fetch_add(n, Relaxed);
                }
            }
        }
        if let Ok(topics) = r.transport.topics().await {
            for (topic, _) in topics {
                let limits = r.retention.limits_for(&topic);
                if let Ok(n) = r.transport.delete_records(&topic, &limits).await {
                    r.counters.records.fetch_add(n, Relaxed);
                }
            }
        }
        if let Some(age) = r.retention.closed_letters
            && let Ok(n) = r.dlq.delete_closed(age).await
        {
            r.counters.closed_letters.fetch_add(n, Relaxed);
        }
        if let Some(age) = r.retention.finished_sagas {
            for db in &r.dbs {
                match db.purge_finished_sagas(age).await {
                    Ok(n) => {
                        r.counters.finished_sagas.fetch_add(n, Relaxed);
                    }
                    Err(err) => tracing::warn!(
                        target: "event_runtime::saga",
                        error = %err,
                        "deleting finished saga instances failed; the next round tries again"
                    ),
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(r.retention.every) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Consumer lag of one group on one partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lag {
    /// Group.
    pub group: String,
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// Next offset the group will read.
    pub committed: u64,
    /// Next offset to be written.
    pub end: u64,
}

impl Lag {
    /// Records written and not yet committed by the group.
    pub fn lag(&self) -> u64 {
        self.end.saturating_sub(self.committed)
    }
}

/// Lag of every group position the transport knows, for the groups and topics given.
///
/// # Errors
///
/// The engine's error.
pub async fn lag_of<T: Transport>(
    transport: &T,
    subscriptions: &[(String, String, u32)],
) -> Result<Vec<Lag>, TransportError> {
    let mut out = Vec::new();
    for (group, topic, _) in subscriptions {
        let ends = transport.end_offsets(topic).await?;
        for (partition, end) in ends.into_iter().enumerate() {
            let partition = partition as u32;
            out.push(Lag {
                group: group.clone(),
                topic: topic.clone(),
                partition,
                committed: transport.committed(group, topic, partition).await?,
                end,
            });
        }
    }
    Ok(out)
}

/// A started app. Dropping it without [`Running::stop`] aborts the consumers.
pub struct Running<T: Transport> {
    transport: Arc<T>,
    publisher: Publisher<T>,
    dlq: DeadLetters,
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    outbox: Option<Outbox>,
    stats: BTreeMap<String, Arc<GroupStats>>,
    subscriptions: Vec<(String, String, u32)>,
    activity: Arc<Activity>,
    retained: Arc<RetentionCounters>,
    /// Per group, on an engine that shares partitions: what this instance owns.
    shares: BTreeMap<String, watch::Receiver<Shared>>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
    /// The groups' dedupe-claim renewals, aborted once `tasks` have ended (dropped with this).
    renewals: JoinSet<()>,
    /// Per saga: the messages it discarded.
    sagas: BTreeMap<&'static str, Arc<std::sync::atomic::AtomicU64>>,
    /// Where the sagas' instances are ([`Running::sagas`]).
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    inbox: Option<crate::store::inbox::Inbox>,
    /// Dropped after the tasks (fields drop in order), so a restarted app in this process can
    /// take the id again only once these consumers are gone.
    instance: InstanceId,
}

impl<T: Transport> Running<T> {
    /// The saga instances in the stores the sagas write to (the inbox's database); `None`
    /// without SQL stores.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub fn sagas(&self) -> Option<crate::saga::Sagas> {
        self.inbox.as_ref().map(|inbox| crate::saga::Sagas {
            db: inbox.db.clone(),
        })
    }

    /// Messages saga `saga` dropped under [`crate::saga::Unknown::Discard`] (or as a second
    /// start of a finished instance) since the app started; `None` for a saga not wired.
    pub fn saga_discarded(&self, saga: &str) -> Option<u64> {
        self.sagas
            .get(saga)
            .map(|count| count.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// This instance's id ([`App::instance`]).
    pub fn instance(&self) -> &str {
        &self.instance.0
    }

    /// The partitions of `group` this instance consumes now, as `(topic, partition)`: all of
    /// them on an engine that does not share partitions, else this instance's share as last
    /// claimed ([`Transport::sharing`]).
    pub fn owned(&self, group: &str) -> Vec<(String, u32)> {
        match self.shares.get(group) {
            Some(view) => view.borrow().owned.clone(),
            None => self
                .subscriptions
                .iter()
                .filter(|(g, _, _)| g == group)
                .flat_map(|(_, topic, n)| (0..*n).map(move |p| (topic.clone(), p)))
                .collect(),
        }
    }

    /// The live instances of `group` this instance saw at its last announcement (itself alone
    /// on an engine that does not share partitions).
    pub fn members(&self, group: &str) -> Vec<String> {
        match self.shares.get(group) {
            Some(view) => view.borrow().members.clone(),
            None => vec![self.instance().to_owned()],
        }
    }

    /// Dedupe marks this app's retention task has forgotten so far ([`Retention`]).
    pub fn dedupe_marks_purged(&self) -> u64 {
        self.retention_stats().dedupe_marks
    }

    /// The deprecated message versions this process has published or consumed, with counts
    /// ([`crate::deprecation`]).
    pub fn deprecated_uses(&self) -> Vec<DeprecatedUse> {
        self.publisher.deprecations.uses()
    }

    /// The app's metrics ([`crate::metrics`]): counters, lag, DLQ depth, outbox backlog.
    #[cfg(feature = "prometheus")]
    pub fn metrics(&self) -> crate::metrics::Metrics<T> {
        crate::metrics::Metrics::new(
            self.transport.clone(),
            self.stats.clone(),
            self.subscriptions.clone(),
            self.dlq.clone(),
            self.publisher.sent.clone(),
            self.publisher.deprecations.clone(),
            #[cfg(any(feature = "sqlite", feature = "postgres"))]
            self.outbox.clone(),
            #[cfg(any(feature = "sqlite", feature = "postgres"))]
            self.sagas().map(|store| (store, self.sagas.clone())),
        )
    }

    /// Serves the app's metrics at `GET /metrics` on `addr` in the OpenMetrics text format,
    /// until the app stops; returns the bound address (`127.0.0.1:0` picks a free port). A
    /// scrape reads the engine and the stores (lag, DLQ depth, outbox): when they fail, it
    /// answers 503 with the error.
    ///
    /// # Errors
    ///
    /// When `addr` cannot be bound.
    #[cfg(feature = "prometheus")]
    pub async fn serve_metrics(
        &mut self,
        addr: impl tokio::net::ToSocketAddrs,
    ) -> std::io::Result<std::net::SocketAddr> {
        use axum::http::{StatusCode, header::CONTENT_TYPE};
        use axum::response::IntoResponse;
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let metrics = self.metrics();
        let router = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let metrics = metrics.clone();
                async move {
                    match metrics.encode().await {
                        Ok(text) => (
                            [(
                                CONTENT_TYPE,
                                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            )],
                            text,
                        )
                            .into_response(),
                        Err(err) => {
                            (StatusCode::SERVICE_UNAVAILABLE, err.to_string()).into_response()
                        }
                    }
                }
            }),
        );
        let mut shutdown = self.shutdown.subscribe();
        self.tasks.spawn(async move {
            let stopped = async move {
                while !*shutdown.borrow_and_update() {
                    if shutdown.changed().await.is_err() {
                        break;
                    }
                }
            };
            if let Err(err) = axum::serve(listener, router)
                .with_graceful_shutdown(stopped)
                .await
            {
                tracing::warn!(target: "event_runtime::metrics", error = %err, "the metrics endpoint stopped");
            }
        });
        Ok(local)
    }

    /// What this app's retention task has deleted so far ([`Retention`]).
    pub fn retention_stats(&self) -> RetentionStats {
        use std::sync::atomic::Ordering::Relaxed;
        RetentionStats {
            dedupe_marks: self.retained.dedupe_marks.load(Relaxed),
            records: self.retained.records.load(Relaxed),
            closed_letters: self.retained.closed_letters.load(Relaxed),
            finished_sagas: self.retained.finished_sagas.load(Relaxed),
        }
    }

    /// The publisher.
    pub fn publisher(&self) -> Publisher<T> {
        self.publisher.clone()
    }

    /// The transport.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// The dead-letter queue.
    pub fn dead_letters(&self) -> &DeadLetters {
        &self.dlq
    }

    /// The transactional outbox ([`Stores::outbox`]): `Some` with SQL stores, whose relay this
    /// app runs.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub fn outbox(&self) -> Option<&Outbox> {
        self.outbox.as_ref()
    }

    /// Counters of `group`.
    pub fn stats(&self, group: &str) -> Option<crate::consumer::StatsSnapshot> {
        self.stats.get(group).map(|s| s.snapshot())
    }

    /// Lag of every group on every partition it reads.
    ///
    /// # Errors
    ///
    /// The engine's error.
    pub async fn lag(&self) -> Result<Vec<Lag>, TransportError> {
        lag_of(&*self.transport, &self.subscriptions).await
    }

    /// The causal tree of correlation `correlation_id` from this app's log, its groups'
    /// positions, its dead letters and (with SQL stores) its sagas: see [`crate::trace`].
    ///
    /// # Errors
    ///
    /// The engine's or the stores' error. Cancelling it only stops the reads.
    pub async fn trace(&self, correlation_id: &str) -> Result<crate::trace::Trace, TransportError> {
        let positions = self
            .lag()
            .await?
            .into_iter()
            .map(|lag| crate::trace::GroupPosition {
                group: lag.group,
                topic: lag.topic,
                partition: lag.partition,
                next: lag.committed,
            })
            .collect();
        #[allow(unused_mut)]
        let mut sources =
            crate::trace::Sources::new(&*self.transport, positions).with_stores(&self.dlq);
        #[cfg(any(feature = "sqlite", feature = "postgres"))]
        if let Some(sagas) = self.sagas() {
            sources = sources.with_sagas(sagas);
        }
        crate::trace::Trace::collect(&sources, correlation_id).await
    }

    /// Waits until every group has committed everything written and has no pending redrive or
    /// replay, and (with SQL stores) the outbox holds no row, or `timeout` passes.
    /// Returns whether it became idle.
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Idle means: nothing in flight, every lag zero and no pending redelivery, with no
            // batch starting or ending while those were read (a handler's emitted event lands
            // before its position is committed, so a consistent reading cannot miss it).
            let changes = self
                .activity
                .changes
                .load(std::sync::atomic::Ordering::SeqCst);
            let quiet = self
                .activity
                .in_flight
                .load(std::sync::atomic::Ordering::SeqCst)
                == 0;
            let caught_up =
                quiet && matches!(self.lag().await, Ok(lags) if lags.iter().all(|l| l.lag() == 0));
            let mut pending = false;
            for group in self.stats.keys() {
                // An unreadable queue counts as busy: idle must never be reported by mistake.
                if self
                    .dlq
                    .pending_redeliveries(group, 1)
                    .await
                    .map_or(true, |pending| !pending.is_empty())
                {
                    pending = true;
                }
            }
            // Rows staged and not yet relayed (read after the lags: the relay marks itself busy
            // in `activity` from before its append until its rows are deleted).
            #[cfg(any(feature = "sqlite", feature = "postgres"))]
            if let Some(outbox) = &self.outbox
                && outbox.has_pending().await.unwrap_or(true)
            {
                pending = true;
            }
            let unchanged = changes
                == self
                    .activity
                    .changes
                    .load(std::sync::atomic::Ordering::SeqCst);
            if caught_up && !pending && unchanged {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops every consumer and waits for them: each partition reads nothing more, lets the
    /// handlers running finish (up to [`GroupOptions::drain_timeout`]; those still running are
    /// abandoned) and commits what was done.
    ///
    /// Cancellation: dropping this future leaves the consumers stopping in the background; what
    /// they had not committed is redelivered on the next start.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
        self.renewals.shutdown().await;
    }
}
