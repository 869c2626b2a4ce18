//! Sagas: orchestrated workflows whose state, effects and timers commit in one transaction.
//!
//! A saga is a serialisable Rust type (its state) with a name. Each message it reacts to names
//! the instance it belongs to (its key, usually an order or booking id) and moves that
//! instance by a pure function: (state, message, [`Step`]) -> [`Transition`]. The function does
//! no I/O: it sends commands, publishes events and schedules or cancels timers through the
//! [`Step`], and all of that — the incoming message's dedupe claim, the new state (with its
//! version), the emitted messages and the timer rows — commits in one transaction of the
//! stores' database (the inbox, [`crate::GroupOptions::inbox`]). Nothing is replayed, so a
//! deploy that changes a handler cannot break running instances with non-determinism errors.
//!
//! ```
//! use std::time::Duration;
//! use event_runtime::saga::{On, Saga, SagaTest, Messages, Status, Step, Transition, Unknown};
//! use event_runtime::{Command, DomainEvent, HandlerError};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(DomainEvent, Serialize, Deserialize, Clone, Debug)]
//! #[event(context = "orders")]
//! struct OrderPlaced { #[event(key)] order: String, cents: u64 }
//!
//! #[derive(DomainEvent, Serialize, Deserialize, Clone, Debug)]
//! #[event(context = "payments")]
//! struct PaymentCaptured { #[event(key)] order: String }
//!
//! #[derive(Command, Serialize, Deserialize, Clone, Debug, PartialEq)]
//! #[command(context = "payments")]
//! struct Charge { #[command(key)] order: String, cents: u64 }
//!
//! /// The checkout of one order.
//! #[derive(Serialize, Deserialize, Debug, PartialEq)]
//! enum Checkout { Charging, Paid, TimedOut }
//!
//! impl Saga for Checkout {
//!     const NAME: &'static str = "checkout";
//!     fn messages(on: &mut Messages<Self>) {
//!         on.on::<OrderPlaced>().on::<PaymentCaptured>();
//!     }
//!     fn timeout(self, timer: &str, _step: &mut Step<'_>) -> Result<Transition<Self>, HandlerError> {
//!         Ok(Transition::fail(Checkout::TimedOut, format!("timer {timer} fired")))
//!     }
//! }
//!
//! impl On<OrderPlaced> for Checkout {
//!     const UNKNOWN: Unknown = Unknown::Start;
//!     fn key(event: &OrderPlaced) -> String { event.order.clone() }
//!     fn start(event: &OrderPlaced, step: &mut Step<'_>) -> Result<Transition<Self>, HandlerError> {
//!         step.send(Charge { order: event.order.clone(), cents: event.cents })?;
//!         step.schedule("payment", Duration::from_secs(30));
//!         Ok(Transition::next(Checkout::Charging))
//!     }
//!     fn handle(self, _: &OrderPlaced, _: &mut Step<'_>) -> Result<Transition<Self>, HandlerError> {
//!         Ok(Transition::next(self))
//!     }
//! }
//!
//! impl On<PaymentCaptured> for Checkout {
//!     fn key(event: &PaymentCaptured) -> String { event.order.clone() }
//!     fn handle(self, _: &PaymentCaptured, step: &mut Step<'_>) -> Result<Transition<Self>, HandlerError> {
//!         step.cancel("payment");
//!         Ok(Transition::complete(Checkout::Paid))
//!     }
//! }
//!
//! // The test kit: no broker, a virtual clock.
//! let mut test = SagaTest::<Checkout>::new();
//! test.when(OrderPlaced { order: "o-1".into(), cents: 500 }).unwrap();
//! assert_eq!(test.sent::<Charge>(), [Charge { order: "o-1".into(), cents: 500 }]);
//! test.advance(Duration::from_secs(31)).unwrap();
//! assert_eq!(test.status("o-1"), Some(Status::Failed));
//! ```
//!
//! Wire it with [`crate::App::saga`]: the saga runs as the consumer group `saga.<name>` in inbox
//! mode, so it needs SQL stores (the embedded SQLite engine, [`crate::Stores::sqlite`] or
//! [`crate::Stores::postgres`]).
//!
//! # Orchestration: `#[saga]`
//!
//! A saga that is a sequence of requests with undo steps is declared, not hand-written: each
//! `#[step]` returns the command it sends and names its reply, its fault, its timeout and its
//! compensation; the steps before the `pivot` are compensated in reverse order when a later one
//! fails, the ones after it are retried. [`Orchestrated`] runs it (the table of what a reply, a
//! fault and a timeout do is in `docs/architecture.md#sagas`); the macro refuses at compile
//! time a structure that cannot be run safely.
//!
//! ```
//! use event_runtime::saga::{Orchestrated, SagaTest, Status};
//! use event_runtime::{Command, DomainEvent, saga};
//! use serde::{Deserialize, Serialize};
//!
//! # #[derive(DomainEvent, Serialize, Deserialize, Clone)]
//! # #[event(context = "orders")]
//! # struct OrderPlaced { #[event(key)] order: String, cents: u64 }
//! # #[derive(Command, Serialize, Deserialize)]
//! # #[command(context = "inventory")]
//! # struct HoldStock { #[command(key)] order: String }
//! # #[derive(Command, Serialize, Deserialize)]
//! # #[command(context = "inventory")]
//! # struct ReleaseStock { #[command(key)] order: String }
//! # #[derive(DomainEvent, Serialize, Deserialize)]
//! # #[event(context = "inventory")]
//! # struct StockHeld { #[event(key)] order: String }
//! # #[derive(Command, Serialize, Deserialize)]
//! # #[command(context = "payments")]
//! # struct Charge { #[command(key)] order: String, cents: u64 }
//! # #[derive(DomainEvent, Serialize, Deserialize)]
//! # #[event(context = "payments")]
//! # struct Charged { #[event(key)] order: String }
//! # #[derive(DomainEvent, Serialize, Deserialize)]
//! # #[event(context = "payments")]
//! # struct Declined { #[event(key)] order: String }
//! #[derive(Serialize, Deserialize)]
//! struct Checkout { order: String, cents: u64 }
//!
//! #[saga(key = order)]
//! impl Checkout {
//!     #[start]
//!     fn placed(event: &OrderPlaced) -> Self {
//!         Checkout { order: event.order.clone(), cents: event.cents }
//!     }
//!
//!     #[step(reply = StockHeld, fault = none, timeout = "5s", compensate = release)]
//!     fn hold(&self) -> HoldStock { HoldStock { order: self.order.clone() } }
//!
//!     fn release(&self) -> ReleaseStock { ReleaseStock { order: self.order.clone() } }
//!
//!     #[step(pivot, reply = Charged, fault = Declined, timeout = "30s")]
//!     fn charge(&self) -> Charge { Charge { order: self.order.clone(), cents: self.cents } }
//! }
//!
//! let placed = OrderPlaced { order: "o-1".into(), cents: 500 };
//! // Every step failed in turn, every answer delivered twice: see `check_structure`.
//! SagaTest::<Orchestrated<Checkout>>::check_structure(&placed).unwrap();
//!
//! let mut test = SagaTest::<Orchestrated<Checkout>>::new();
//! test.when(placed).unwrap();
//! test.when(StockHeld { order: "o-1".into() }).unwrap();
//! test.when(Declined { order: "o-1".into() }).unwrap();
//! assert_eq!(test.effect_types(), ["inventory.hold_stock", "payments.charge", "inventory.release_stock"]);
//! assert_eq!(test.status("o-1"), Some(Status::Failed));
//! ```
//!
//! # Timers
//!
//! [`Step::schedule`] writes a row in `evt_saga_timers` in the transition's transaction. A task
//! of every running app that wires a saga fires the due rows of the database: in one
//! transaction it deletes them and appends a timer message to the saga's timer topic (`evt.saga.<name>`, through the outbox or, on the SQLite
//! engine, the log itself), which the saga's group consumes like any other message. A timer
//! carries the version of the transition that scheduled it (its token); the instance keeps the
//! token of each pending timer (and forgets it when it fires), so a timer that was cancelled or
//! scheduled again, or whose instance has finished, or that already fired, drops itself when
//! it arrives: none fires after completion, and none twice.
//!
//! # Several instances of a service
//!
//! Every instance of the service must use the same stores' database (PostgreSQL, or the one
//! SQLite file of the embedded engine): the saga's state lives there. Each transition loads the
//! instance row with `SELECT ... FOR UPDATE` (PostgreSQL; SQLite has one writer) and writes it
//! back only at the version it read; a concurrent writer makes the attempt fail transiently,
//! and the retry sees the new state. Messages for one instance can arrive on different topics
//! and partitions, so this check, not the partitioning, is what keeps one writer per instance.
//!
//! A replay of the saga's group re-runs nothing unless the saga sets [`Saga::REPLAYS`] (then a
//! replay that bypasses dedupe runs its transitions again, against the current state, with
//! their effects). A redriven dead letter runs: it never ran.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::envelope::Causation;
use crate::error::EncodeError;
use crate::handler::{Context, HandlerError};
use crate::message::{Command, DomainEvent, Message};

mod run;
mod steps;
pub(crate) mod store;
mod testing;
pub(crate) mod timers;

pub(crate) use run::Timers;
pub use steps::{Handles, Orchestrated, Phase, Role, StepKind, StepSpec, Steps};
pub use store::{HistoryEntry, InstanceRecord, Unreadable};
pub use testing::SagaTest;
pub(crate) use timers::{TimerFired, descriptors as timer_descriptors};

/// A long-running process coordinated by messages: its state type.
///
/// The state is stored as JSON (`serde_json`) between transitions.
pub trait Saga: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// Stable name: the consumer group is `saga.<NAME>`, the rows in `evt_sagas` carry it.
    /// Renaming a saga orphans its running instances.
    const NAME: &'static str;

    /// Lists the messages the saga reacts to: `on.on::<A>().on::<B>()`, one per [`On`]
    /// implementation.
    fn messages(on: &mut Messages<Self>);

    /// A timer this instance scheduled is due (and still current: not cancelled, scheduled
    /// again, or outlived by the instance). The default fails the message permanently: a saga
    /// that schedules timers handles them.
    ///
    /// # Errors
    ///
    /// A [`HandlerError`]: transient to retry, permanent to dead-letter the timer message.
    fn timeout(self, timer: &str, step: &mut Step<'_>) -> Result<Transition<Self>, HandlerError> {
        let _ = step;
        Err(HandlerError::permanent(format!(
            "saga `{}` scheduled timer `{timer}` but does not handle timeouts (Saga::timeout)",
            Self::NAME
        )))
    }

    /// Whether a replayed message (a replay request's redelivery, [`crate::Delivery::Replay`])
    /// runs its transition again, with its effects. Default `false`: a replay of the saga's
    /// group re-sends no command and moves no instance, even when it bypasses dedupe; each
    /// replayed message is logged and skipped. A redriven dead letter always runs (it never
    /// ran). Set it for a saga whose replay is how you repair it.
    const REPLAYS: bool = false;

    /// The version of the state's stored form: 1 until a change to the type stops reading
    /// what running instances stored. Raise it then, and lift the older forms in
    /// [`Saga::upcast_state`]. Every row records the version it was written at.
    const STATE_VERSION: u32 = 1;

    /// Lifts a stored state of version `from` (below [`Saga::STATE_VERSION`]) to the JSON of
    /// version `from + 1`, as an event's JSON upcaster lifts a payload. The default has none.
    ///
    /// # Errors
    ///
    /// When the state cannot be lifted: the instance's next transition fails permanently,
    /// naming the saga, the key and the versions, and [`Sagas::check`] reports it.
    fn upcast_state(
        from: u32,
        state: serde_json::Value,
    ) -> Result<serde_json::Value, crate::error::UpcastError> {
        let _ = state;
        Err(crate::error::UpcastError::new(format!(
            "saga `{}` has no upcaster from state version {from} (Saga::upcast_state)",
            Self::NAME
        )))
    }

    /// Whether this code can carry on the instance in `self`, beyond decoding it (a
    /// `#[saga]`: its current step is still declared). Used by [`Sagas::check`].
    ///
    /// # Errors
    ///
    /// Why it cannot.
    fn check(&self) -> Result<(), String> {
        Ok(())
    }

    /// Whether a pending timer named `timer` means something to this code. Used by
    /// [`Sagas::check`]; the default takes every name.
    fn knows_timer(timer: &str) -> bool {
        let _ = timer;
        true
    }

    /// An operator asked for `repair` of this instance (see [`Repair`]). The default refuses:
    /// the repair's message is dead-lettered with the reason.
    ///
    /// # Errors
    ///
    /// A [`HandlerError`]: permanent when the repair does not apply.
    fn repair(self, repair: Repair, step: &mut Step<'_>) -> Result<Transition<Self>, HandlerError> {
        let _ = step;
        Err(HandlerError::permanent(format!(
            "saga `{}` has no `{}` repair (sagas declared with #[saga] have them)",
            Self::NAME,
            repair.as_str()
        )))
    }
}

/// An operator's repair of an instance (`evt saga resume|skip|compensate`, or
/// [`Sagas::request_repair`]). It reaches the saga as a timer named `repair:<action>:<actor>`
/// carrying the instance's version when it was asked: if the instance moved since, the repair
/// drops itself (the operator looked at a state that is gone). The transition it makes is in
/// the instance's history like any other, with the action and the actor as its message type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Repair {
    /// Send the current step's command (or compensation) again, with its attempts reset.
    Resume,
    /// Take the current step (or compensation) as answered and go on.
    Skip,
    /// Undo now: compensate the steps done and the current one (refused at and past the pivot).
    Compensate,
}

impl Repair {
    /// `resume`, `skip`, `compensate`.
    pub fn as_str(self) -> &'static str {
        match self {
            Repair::Resume => "resume",
            Repair::Skip => "skip",
            Repair::Compensate => "compensate",
        }
    }

    /// The action named `text`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "resume" => Some(Repair::Resume),
            "skip" => Some(Repair::Skip),
            "compensate" => Some(Repair::Compensate),
            _ => None,
        }
    }
}

/// The prefix of a repair's timer name.
pub(crate) const REPAIR: &str = "repair:";

/// What a message does when it finds no running instance of the saga under its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unknown {
    /// No instance: start one with [`On::start`]. A finished instance: discard the message (a
    /// second start for a key whose saga ended; a new key starts a new saga).
    Start,
    /// Dead-letter the message, with the saga, the key and whether the instance is missing or
    /// finished as the reason. The default.
    DeadLetter,
    /// Drop the message, log it and count it ([`crate::Running::saga_discarded`]; the count is
    /// of attempts, so a discard whose commit failed and was retried counts twice).
    Discard,
    /// No instance yet: fail transiently, so the message is retried (the message that starts
    /// the saga may still be on its way) and dead-lettered when the retries run out. A finished
    /// instance: dead-letter at once (retrying cannot help).
    Retry,
}

/// How a saga reacts to messages of type `M`.
pub trait On<M: Message>: Saga {
    /// The policy for a message with no running instance. Default [`Unknown::DeadLetter`].
    const UNKNOWN: Unknown = Unknown::DeadLetter;

    /// The instance `message` belongs to.
    fn key(message: &M) -> String;

    /// Starts an instance (called only when [`On::UNKNOWN`] is [`Unknown::Start`] and no
    /// instance has this key).
    ///
    /// # Errors
    ///
    /// A [`HandlerError`]; the default is a permanent one (this message does not start the
    /// saga).
    fn start(message: &M, step: &mut Step<'_>) -> Result<Transition<Self>, HandlerError> {
        let _ = (message, step);
        Err(HandlerError::permanent(format!(
            "saga `{}` has UNKNOWN = Start for this message but no On::start",
            Self::NAME
        )))
    }

    /// Moves a running instance.
    ///
    /// # Errors
    ///
    /// A [`HandlerError`]: transient to retry (the transaction rolls back: no state change, no
    /// effect), permanent to dead-letter the message.
    fn handle(self, message: &M, step: &mut Step<'_>) -> Result<Transition<Self>, HandlerError>;
}

/// Where an instance stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    /// Waiting for messages or timers.
    Running,
    /// Ended successfully.
    Completed,
    /// Ended unsuccessfully (after its compensations, if any).
    Failed,
    /// Waiting for an operator: a step or a compensation that keeps getting no answer. It
    /// still takes messages (a late answer moves it on).
    Stuck,
}

impl Status {
    /// `running`, `completed`, `failed`: the stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Stuck => "stuck",
        }
    }

    /// The status stored as `text`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "running" => Some(Status::Running),
            "completed" => Some(Status::Completed),
            "failed" => Some(Status::Failed),
            "stuck" => Some(Status::Stuck),
            _ => None,
        }
    }

    /// Completed or failed: the instance takes no more messages and its timers are gone.
    pub fn is_finished(self) -> bool {
        matches!(self, Status::Completed | Status::Failed)
    }
}

/// The outcome of one reaction: the new state and where the instance stands.
#[derive(Debug)]
pub struct Transition<S> {
    pub(crate) state: S,
    pub(crate) status: Status,
    pub(crate) reason: Option<String>,
    /// [`Transition::unchanged`]: keep the stored status and reason.
    pub(crate) unchanged: bool,
}

impl<S> Transition<S> {
    /// Nothing happens: the instance keeps its state, status and reason. When the reaction
    /// changed no timer and emitted nothing, nothing is written at all (no new version, no
    /// history row), so a late or repeated message leaves no trace but a log line.
    pub fn unchanged(state: S) -> Self {
        Transition {
            state,
            status: Status::Running,
            reason: None,
            unchanged: true,
        }
    }

    /// The instance goes on in `state`.
    pub fn next(state: S) -> Self {
        Transition {
            state,
            status: Status::Running,
            reason: None,
            unchanged: false,
        }
    }

    /// The instance ends successfully in `state`; its pending timers are cancelled.
    pub fn complete(state: S) -> Self {
        Transition {
            state,
            status: Status::Completed,
            reason: None,
            unchanged: false,
        }
    }

    /// The instance waits for an operator in `state`, for `reason` (it keeps its timers and
    /// still takes messages).
    pub fn stuck(state: S, reason: impl Into<String>) -> Self {
        Transition {
            state,
            status: Status::Stuck,
            reason: Some(reason.into()),
            unchanged: false,
        }
    }

    /// The instance ends unsuccessfully in `state`, for `reason`; its pending timers are
    /// cancelled.
    pub fn fail(state: S, reason: impl Into<String>) -> Self {
        Transition {
            state,
            status: Status::Failed,
            reason: Some(reason.into()),
            unchanged: false,
        }
    }
}

/// A change to one of an instance's timers, in the order the handler asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TimerChange {
    At(SystemTime),
    Cancel,
}

/// What a reaction may do besides returning the new state: send commands, publish events,
/// schedule and cancel timers, and read the transition's clock. Everything it does commits with
/// the transition, or not at all.
pub struct Step<'a> {
    pub(crate) key: &'a str,
    pub(crate) now: SystemTime,
    pub(crate) ctx: &'a Context,
    pub(crate) timers: Vec<(String, TimerChange)>,
}

impl std::fmt::Debug for Step<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Step")
            .field("key", &self.key)
            .field("now", &self.now)
            .field("timers", &self.timers)
            .finish_non_exhaustive()
    }
}

impl Step<'_> {
    /// The instance's key.
    pub fn key(&self) -> &str {
        self.key
    }

    /// The transition's time: read once, before the reaction runs (the test kit's virtual
    /// clock under [`SagaTest`]). Use it instead of the system clock.
    pub fn now(&self) -> SystemTime {
        self.now
    }

    /// The correlation and causation the emitted messages carry.
    pub fn causation(&self) -> &Causation {
        self.ctx.causation()
    }

    /// Sends `command` when the transition commits.
    ///
    /// # Errors
    ///
    /// When the command cannot be encoded, or its version is past its sunset.
    pub fn send<C: Command>(&mut self, command: C) -> Result<(), EncodeError> {
        self.ctx.send(command)
    }

    /// Publishes `event` when the transition commits.
    ///
    /// # Errors
    ///
    /// When the event cannot be encoded, or its version is past its sunset.
    pub fn publish<E: DomainEvent>(&mut self, event: E) -> Result<(), EncodeError> {
        self.ctx.publish(event)
    }

    /// Schedules the timer `timer` of this instance `after` from [`Step::now`], replacing a
    /// pending one of the same name. When it is due, [`Saga::timeout`] runs with its name.
    pub fn schedule(&mut self, timer: &str, after: Duration) {
        // Past the year 292 million, the end of what a row's milliseconds hold: never.
        let never = SystemTime::UNIX_EPOCH + Duration::from_millis(i64::MAX as u64);
        let at = self.now.checked_add(after).unwrap_or(never).min(never);
        self.schedule_at(timer, at);
    }

    /// Schedules the timer `timer` at `at` (see [`Step::schedule`]).
    pub fn schedule_at(&mut self, timer: &str, at: SystemTime) {
        self.timers.push((timer.to_owned(), TimerChange::At(at)));
    }

    /// Cancels the pending timer `timer`, if any: it will not fire, even if it is already on
    /// its way.
    pub fn cancel(&mut self, timer: &str) {
        self.timers.push((timer.to_owned(), TimerChange::Cancel));
    }
}

/// The messages a saga reacts to, listed by [`Saga::messages`].
pub struct Messages<S> {
    pub(crate) routes: Vec<Route>,
    /// Messages dropped by [`Unknown::Discard`] (or a second start), shared by the routes.
    pub(crate) discarded: Arc<std::sync::atomic::AtomicU64>,
    _saga: PhantomData<fn() -> S>,
}

impl<S> std::fmt::Debug for Messages<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(
                self.routes
                    .iter()
                    .flat_map(|r| r.descriptors.iter().map(|d| d.name)),
            )
            .finish()
    }
}

/// One message type's route into a saga.
pub(crate) struct Route {
    pub(crate) descriptors: &'static [crate::message::Descriptor],
    pub(crate) handler: Arc<dyn crate::consumer::ErasedHandler>,
}

impl<S: Saga> Messages<S> {
    pub(crate) fn new() -> Self {
        Messages {
            routes: Vec::new(),
            discarded: Arc::default(),
            _saga: PhantomData,
        }
    }

    /// The saga reacts to `M` (see [`On`]).
    pub fn on<M: Message>(&mut self) -> &mut Self
    where
        S: On<M>,
    {
        self.routes.push(Route {
            descriptors: M::DESCRIPTORS,
            handler: Arc::new(crate::consumer::Typed::<M, run::Reaction<S, M>>::new(
                run::Reaction::new(self.discarded.clone()),
            )),
        });
        self
    }
}

/// The CloudEvents types saga `S` reads (every version's name once, in its listing order):
/// what its group subscribes to, besides its timers.
pub fn message_types<S: Saga>() -> Vec<&'static str> {
    let mut on = Messages::<S>::new();
    S::messages(&mut on);
    let mut names: Vec<&'static str> = Vec::new();
    for name in on
        .routes
        .iter()
        .flat_map(|r| r.descriptors.iter().map(|d| d.name))
    {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// The consumer group a saga runs as: `saga.<name>`.
pub fn group_of(saga: &str) -> String {
    format!("saga.{saga}")
}

/// The topic a saga's timers fire on: `evt.saga.<name>`.
pub fn timer_topic(saga: &str) -> String {
    format!("evt.saga.{saga}")
}

/// One stored instance: its state, version, status and pending timers (name -> token).
#[derive(Debug)]
pub(crate) struct Instance<S> {
    pub(crate) state: S,
    pub(crate) version: i64,
    pub(crate) status: Status,
    pub(crate) reason: Option<String>,
    pub(crate) timers: BTreeMap<String, i64>,
    /// When it started (`created_ms`), where it is stored: tells its timers from those of an
    /// earlier instance with the same key.
    pub(crate) started_ms: Option<i64>,
}

/// What to do with one message or timer, decided before anything is written.
pub(crate) enum Decision<S> {
    /// Write this transition.
    Apply(Transition<S>),
    /// Drop the message: the reason, for the log.
    Drop(String),
    /// Drop the message and count it ([`Unknown::Discard`]).
    Discard(String),
}

/// The reaction of instance `loaded` of saga `S` to `message`, after the message's
/// [`On::UNKNOWN`] policy.
pub(crate) fn decide_message<S: On<M>, M: Message>(
    loaded: Option<Instance<S>>,
    message: &M,
    step: &mut Step<'_>,
) -> Result<Decision<S>, HandlerError> {
    let name = message.descriptor().name;
    let missing = |finished: Option<Status>| {
        let what = match finished {
            None => format!("no instance of saga `{}` has key `{}`", S::NAME, step.key),
            Some(status) => format!(
                "the instance of saga `{}` with key `{}` is {}",
                S::NAME,
                step.key,
                status.as_str()
            ),
        };
        format!("{name}: {what}")
    };
    match loaded {
        Some(instance) if !instance.status.is_finished() => {
            S::handle(instance.state, message, step).map(Decision::Apply)
        }
        Some(instance) => {
            let reason = missing(Some(instance.status));
            match S::UNKNOWN {
                Unknown::Start | Unknown::Discard => Ok(Decision::Discard(reason)),
                Unknown::DeadLetter | Unknown::Retry => Err(HandlerError::permanent(reason)),
            }
        }
        None => match S::UNKNOWN {
            Unknown::Start => S::start(message, step).map(Decision::Apply),
            Unknown::DeadLetter => Err(HandlerError::permanent(missing(None))),
            Unknown::Discard => Ok(Decision::Discard(missing(None))),
            Unknown::Retry => Err(HandlerError::transient(missing(None))),
        },
    }
}

/// The reaction of instance `loaded` of saga `S` to its timer `fired` (named `fired.timer`,
/// scheduled at version `fired.token`): dropped unless the instance runs, is the one that
/// scheduled it, and that timer is still pending with that token.
pub(crate) fn decide_timer<S: Saga>(
    loaded: Option<Instance<S>>,
    fired: &TimerFired,
    step: &mut Step<'_>,
) -> Result<Decision<S>, HandlerError> {
    let (timer, token) = (fired.timer.as_str(), fired.token);
    // A timer of an earlier instance with this key (its dead letter redriven after the key was
    // used again): the same name and token may be pending in this one.
    if let (Some(fired_start), Some(started)) =
        (fired.started_ms, loaded.as_ref().and_then(|i| i.started_ms))
        && fired_start != started
    {
        return Ok(Decision::Drop(format!(
            "timer `{timer}` of saga `{}` key `{}` is of an earlier instance with that key \
             (started at {fired_start} ms, this one at {started} ms)",
            S::NAME,
            step.key
        )));
    }
    if let Some(asked) = timer.strip_prefix(REPAIR) {
        let action = asked.split(':').next().unwrap_or_default();
        let Some(repair) = Repair::parse(action) else {
            return Err(HandlerError::permanent(format!(
                "unknown repair `{action}` for saga `{}` key `{}`",
                S::NAME,
                step.key
            )));
        };
        return match loaded {
            Some(instance) if !instance.status.is_finished() && instance.version == token => {
                S::repair(instance.state, repair, step).map(Decision::Apply)
            }
            Some(instance) => Ok(Decision::Drop(format!(
                "repair `{asked}` of saga `{}` key `{}` asked at version {token} is stale: the instance is {} at version {}",
                S::NAME,
                step.key,
                instance.status.as_str(),
                instance.version
            ))),
            None => Ok(Decision::Drop(format!(
                "repair `{asked}` of saga `{}` key `{}` has no instance",
                S::NAME,
                step.key
            ))),
        };
    }
    match loaded {
        Some(instance)
            if !instance.status.is_finished() && instance.timers.get(timer) == Some(&token) =>
        {
            // It fired: no longer pending (a timeout that schedules it again adds it back).
            step.timers
                .insert(0, (timer.to_owned(), TimerChange::Cancel));
            S::timeout(instance.state, timer, step).map(Decision::Apply)
        }
        Some(instance) => Ok(Decision::Drop(format!(
            "timer `{timer}` of saga `{}` key `{}` (token {token}) is stale: the instance is {} with timers {:?}",
            S::NAME,
            step.key,
            instance.status.as_str(),
            instance.timers
        ))),
        None => Ok(Decision::Drop(format!(
            "timer `{timer}` of saga `{}` key `{}` has no instance",
            S::NAME,
            step.key
        ))),
    }
}

/// What one message or timer does to an instance: the rows to write, or why nothing is.
#[derive(Debug)]
pub(crate) enum Outcome {
    Written(Written),
    Dropped(String),
    Discarded(String),
}

/// Runs `decide` on instance `loaded` of saga `S` with `key`, at `now`, emitting through `ctx`:
/// the one place the runtime and the test kit turn a decision into what they store.
pub(crate) fn transit<S: Saga>(
    loaded: Option<Instance<S>>,
    key: &str,
    now: SystemTime,
    ctx: &Context,
    decide: impl FnOnce(Option<Instance<S>>, &mut Step<'_>) -> Result<Decision<S>, HandlerError>,
) -> Result<Outcome, HandlerError> {
    let (read, timers, kept) = loaded
        .as_ref()
        .map(|instance| {
            (
                instance.version,
                instance.timers.clone(),
                (instance.status, instance.reason.clone()),
            )
        })
        .unwrap_or((0, BTreeMap::new(), (Status::Running, None)));
    let mut step = Step {
        key,
        now,
        ctx,
        timers: Vec::new(),
    };
    Ok(match decide(loaded, &mut step)? {
        Decision::Apply(transition) if transition.unchanged => {
            let emitted = ctx
                .emitted
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .len();
            if step.timers.is_empty() && emitted == 0 {
                Outcome::Dropped(format!(
                    "saga `{}` key `{key}`: the message changed nothing",
                    S::NAME
                ))
            } else {
                let (status, reason) = kept;
                let transition = Transition {
                    status,
                    reason,
                    unchanged: false,
                    ..transition
                };
                Outcome::Written(written::<S>(read, timers, transition, step.timers)?)
            }
        }
        Decision::Apply(transition) => {
            Outcome::Written(written::<S>(read, timers, transition, step.timers)?)
        }
        Decision::Drop(reason) => Outcome::Dropped(reason),
        Decision::Discard(reason) => Outcome::Discarded(reason),
    })
}

/// What a transition writes: the instance after it, and the timer rows to set or delete.
#[derive(Debug)]
pub(crate) struct Written {
    /// The version it writes: one past the version it read (0: no instance).
    pub(crate) version: i64,
    /// The state's stored form ([`Saga::STATE_VERSION`]).
    pub(crate) state_version: u32,
    pub(crate) status: Status,
    pub(crate) state: Vec<u8>,
    pub(crate) timers: BTreeMap<String, i64>,
    pub(crate) reason: Option<String>,
    /// Timer rows to write (name, due) and to delete (name).
    pub(crate) schedule: Vec<(String, SystemTime)>,
    pub(crate) cancel: Vec<String>,
}

/// Applies `transition` to an instance at `version` (0: new) with pending `timers` and the
/// timer changes the reaction asked for.
pub(crate) fn written<S: Saga>(
    version: i64,
    mut timers: BTreeMap<String, i64>,
    transition: Transition<S>,
    changes: Vec<(String, TimerChange)>,
) -> Result<Written, HandlerError> {
    let state = serde_json::to_vec(&transition.state).map_err(|err| {
        HandlerError::permanent(format!(
            "the state of saga `{}` cannot be stored as JSON: {err}",
            S::NAME
        ))
    })?;
    let version = version + 1;
    let mut due: BTreeMap<String, Option<SystemTime>> = BTreeMap::new();
    for (name, change) in changes {
        match change {
            TimerChange::At(at) => {
                timers.insert(name.clone(), version);
                due.insert(name, Some(at));
            }
            TimerChange::Cancel => {
                if timers.remove(&name).is_some() || due.contains_key(&name) {
                    due.insert(name, None);
                }
            }
        }
    }
    if transition.status.is_finished() {
        // A finished instance has no timers: every pending row goes.
        for name in std::mem::take(&mut timers).into_keys() {
            due.insert(name, None);
        }
    }
    let mut schedule = Vec::new();
    let mut cancel = Vec::new();
    for (name, at) in due {
        match at {
            Some(at) if timers.contains_key(&name) => schedule.push((name, at)),
            _ => cancel.push(name),
        }
    }
    Ok(Written {
        version,
        state_version: S::STATE_VERSION,
        status: transition.status,
        state,
        timers,
        reason: transition.reason,
        schedule,
        cancel,
    })
}

/// Milliseconds since the Unix epoch of `at` (0 before it).
pub(crate) fn epoch_ms(at: SystemTime) -> i64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// `$sql` on the stores' SQL pool, bound to `$pool`, whichever database; `$memory` for stores
/// in memory (which keep no sagas).
macro_rules! on_pool {
    ($db:expr, $pool:ident => $sql:expr, memory => $memory:expr) => {
        match $db {
            #[cfg(feature = "sqlite")]
            crate::store::Db::Sqlite(db) => {
                let $pool = &db.pool;
                $sql
            }
            #[cfg(feature = "postgres")]
            crate::store::Db::Postgres(db) => {
                let $pool = &db.pool;
                $sql
            }
            crate::store::Db::Memory(_) => $memory,
        }
    };
}

/// The saga instances in the stores, for operators and tests: read-only.
#[derive(Clone, Debug)]
pub struct Sagas {
    pub(crate) db: crate::store::Db,
}

impl Sagas {
    /// The instance of `saga` with `key`.
    ///
    /// # Errors
    ///
    /// When the database fails, or a row does not decode. Cancelling it only stops the read.
    pub async fn instance(
        &self,
        saga: &str,
        key: &str,
    ) -> Result<Option<InstanceRecord>, crate::transport::TransportError> {
        on_pool!(&self.db, pool => store::instance(pool, saga, key).await, memory => Ok(None))
    }

    /// The instances of `saga` (every saga when `None`) with `status` (any when `None`),
    /// oldest first, at most `limit`.
    ///
    /// # Errors
    ///
    /// When the database fails, or a row does not decode. Cancelling it only stops the read.
    pub async fn list(
        &self,
        saga: Option<&str>,
        status: Option<Status>,
        limit: usize,
    ) -> Result<Vec<InstanceRecord>, crate::transport::TransportError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        on_pool!(&self.db, pool => store::instances(pool, saga, status, limit).await, memory => Ok(Vec::new()))
    }

    /// How many instances each saga has in each status: `(saga, status, count)`.
    ///
    /// # Errors
    ///
    /// When the database fails. Cancelling it only stops the read.
    pub async fn counts(
        &self,
    ) -> Result<Vec<(String, Status, u64)>, crate::transport::TransportError> {
        on_pool!(&self.db, pool => store::counts(pool).await, memory => Ok(Vec::new()))
    }

    /// Pending timers per saga, with the due time of the earliest in milliseconds since the
    /// Unix epoch: `(saga, pending, earliest_ms)`. A due time in the past is a timer not yet
    /// fired: its age is the timers' lateness.
    ///
    /// # Errors
    ///
    /// When the database fails. Cancelling it only stops the read.
    pub async fn timers(
        &self,
    ) -> Result<Vec<(String, u64, i64)>, crate::transport::TransportError> {
        on_pool!(&self.db, pool => store::timer_counts(pool).await, memory => Ok(Vec::new()))
    }

    /// Queues `repair` of the instance of `saga` with `key`, by `actor`, at the instance's
    /// current version (see [`Repair`]): a running app with the saga applies it within its
    /// timer poll. `false` when no unfinished instance has that key.
    ///
    /// # Errors
    ///
    /// When the database fails. Cancelling it before it returns may leave the repair queued
    /// or not.
    pub async fn request_repair(
        &self,
        saga: &str,
        key: &str,
        repair: Repair,
        actor: &str,
    ) -> Result<bool, crate::transport::TransportError> {
        self.request_repair_at(saga, key, repair, actor, None).await
    }

    /// [`Self::request_repair`], only if the instance is still at `version` (the one the
    /// operator looked at, `evt saga show`): a repair decided on a state that has moved on since
    /// (a late reply took a stuck step further) is refused, not applied to the new state.
    /// `false` when no unfinished instance with that key is at that version. (A repair queued
    /// is still dropped if the instance moves before the repair fires.)
    ///
    /// # Errors
    ///
    /// When the database fails. Cancelling it before it returns may leave the repair queued
    /// or not.
    pub async fn request_repair_at(
        &self,
        saga: &str,
        key: &str,
        repair: Repair,
        actor: &str,
        version: Option<i64>,
    ) -> Result<bool, crate::transport::TransportError> {
        on_pool!(&self.db, pool => store::request_repair(pool, saga, key, repair, actor, version).await, memory => Ok(false))
    }

    /// Loads every unfinished instance of saga `S` and every pending timer with this code, as
    /// its next transition would: the state lifted from its stored version and decoded, its
    /// step still declared, its timers understood. Run it in CI against a copy of production's
    /// stores before deploying a change to a saga: each problem is an instance that the new
    /// code would fail. Finished instances take no more messages and are not read.
    ///
    /// # Errors
    ///
    /// When the database fails. Cancelling it only stops the read.
    pub async fn check<S: Saga>(
        &self,
    ) -> Result<Vec<Unreadable>, crate::transport::TransportError> {
        on_pool!(&self.db, pool => store::check::<_, S>(pool).await, memory => Ok(Vec::new()))
    }

    /// The transitions of the instance of `saga` with `key`, oldest first.
    ///
    /// # Errors
    ///
    /// When the database fails, or a row does not decode. Cancelling it only stops the read.
    pub async fn history(
        &self,
        saga: &str,
        key: &str,
    ) -> Result<Vec<HistoryEntry>, crate::transport::TransportError> {
        on_pool!(&self.db, pool => store::history(pool, saga, key).await, memory => Ok(Vec::new()))
    }

    /// The transitions the message with id `message_id` made, one per saga instance it moved:
    /// `(saga, key, transition)`.
    ///
    /// # Errors
    ///
    /// When the database fails, or a row does not decode. Cancelling it only stops the read.
    pub async fn transitions_of(
        &self,
        message_id: &str,
    ) -> Result<Vec<(String, String, HistoryEntry)>, crate::transport::TransportError> {
        on_pool!(&self.db, pool => store::transitions_of(pool, message_id).await, memory => Ok(Vec::new()))
    }

    /// The timers pending in correlation `correlation_id`, earliest first.
    ///
    /// # Errors
    ///
    /// When the database fails, or a row does not decode. Cancelling it only stops the read.
    pub async fn timers_of(
        &self,
        correlation_id: &str,
    ) -> Result<Vec<PendingTimer>, crate::transport::TransportError> {
        on_pool!(&self.db, pool => store::timers_of(pool, correlation_id).await, memory => Ok(Vec::new()))
    }
}

/// A timer an instance scheduled that has not fired yet ([`Sagas::timers_of`]).
pub use crate::trace::PendingTimer;

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Count(u32);

    impl Saga for Count {
        const NAME: &'static str = "count";
        fn messages(_: &mut Messages<Self>) {}
    }

    fn at(ms: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
    }

    /// A handler's context for a timer message.
    fn timer_context() -> Context {
        crate::testing::context(
            "saga.test",
            &crate::Envelope::event(TimerFired {
                saga: "test".into(),
                key: "k".into(),
                timer: "t".into(),
                token: 1,
                started_ms: None,
            }),
            crate::handler::Delivery::Live,
        )
    }

    /// Timer `timer` of instance `k`, scheduled at version `token` of the instance started at
    /// `started_ms`.
    fn fired(timer: &str, token: i64, started_ms: Option<i64>) -> TimerFired {
        TimerFired {
            saga: "test".into(),
            key: "k".into(),
            timer: timer.into(),
            token,
            started_ms,
        }
    }

    /// A step of instance `k` at time 0, in `ctx`.
    fn step(ctx: &Context) -> Step<'_> {
        Step {
            key: "k",
            now: at(0),
            ctx,
            timers: Vec::new(),
        }
    }

    #[test]
    fn a_timer_scheduled_gets_the_transitions_version_as_its_token() {
        let w = written::<Count>(
            4,
            BTreeMap::from([("old".to_owned(), 2)]),
            Transition::next(Count(1)),
            vec![("pay".to_owned(), TimerChange::At(at(10)))],
        )
        .unwrap();
        assert_eq!(w.version, 5);
        assert_eq!(
            w.timers,
            BTreeMap::from([("old".to_owned(), 2), ("pay".to_owned(), 5)])
        );
        assert_eq!(w.schedule, [("pay".to_owned(), at(10))]);
        assert!(w.cancel.is_empty());
        assert_eq!(w.state, b"1");
    }

    #[test]
    fn the_last_change_to_a_timer_wins_within_a_transition() {
        let w = written::<Count>(
            1,
            BTreeMap::from([("pay".to_owned(), 1)]),
            Transition::next(Count(0)),
            vec![
                ("pay".to_owned(), TimerChange::Cancel),
                ("ship".to_owned(), TimerChange::At(at(5))),
                ("ship".to_owned(), TimerChange::Cancel),
                ("pay".to_owned(), TimerChange::At(at(7))),
            ],
        )
        .unwrap();
        assert_eq!(w.timers, BTreeMap::from([("pay".to_owned(), 2)]));
        assert_eq!(w.schedule, [("pay".to_owned(), at(7))]);
        assert_eq!(w.cancel, ["ship"]);
    }

    #[test]
    fn a_finished_instance_keeps_no_timer() {
        for transition in [
            Transition::complete(Count(0)),
            Transition::fail(Count(0), "no"),
        ] {
            let w = written::<Count>(
                3,
                BTreeMap::from([("pay".to_owned(), 2)]),
                transition,
                vec![("later".to_owned(), TimerChange::At(at(1)))],
            )
            .unwrap();
            assert!(w.timers.is_empty(), "{w:?}");
            assert!(w.schedule.is_empty(), "{w:?}");
            assert_eq!(w.cancel, ["later", "pay"]);
        }
    }

    /// Counts its timeouts and goes on.
    #[derive(Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Tick(u32);

    impl Saga for Tick {
        const NAME: &'static str = "tick";
        fn messages(_: &mut Messages<Self>) {}
        fn timeout(self, _: &str, _: &mut Step<'_>) -> Result<Transition<Self>, HandlerError> {
            Ok(Transition::next(Tick(self.0 + 1)))
        }
    }

    #[test]
    fn a_fired_timer_is_no_longer_pending_and_its_second_delivery_drops() {
        let ctx = timer_context();
        let timers = BTreeMap::from([("t".to_owned(), 1), ("other".to_owned(), 1)]);
        let loaded = Instance {
            state: Tick(0),
            reason: None,
            version: 1,
            status: Status::Running,
            timers: timers.clone(),
            started_ms: None,
        };
        let mut first = step(&ctx);
        let Decision::Apply(transition) =
            decide_timer::<Tick>(Some(loaded), &fired("t", 1, None), &mut first).unwrap()
        else {
            panic!("a current timer runs the timeout");
        };
        let w = written::<Tick>(1, timers, transition, first.timers).unwrap();
        assert_eq!(w.timers, BTreeMap::from([("other".to_owned(), 1)]));
        assert_eq!(w.state, b"1");
        // The same TimerFired again (a redelivery past the dedupe window, a replay).
        let again = Instance {
            state: Tick(1),
            reason: None,
            version: w.version,
            status: Status::Running,
            timers: w.timers,
            started_ms: None,
        };
        let mut second = step(&ctx);
        let d = decide_timer::<Tick>(Some(again), &fired("t", 1, None), &mut second).unwrap();
        assert!(matches!(d, Decision::Drop(_)));
    }

    #[test]
    fn a_timer_of_an_earlier_instance_with_the_key_is_dropped() {
        let ctx = timer_context();
        // The instance now running with key `k` started at 2,000 ms; timer `t` is pending in it
        // with token 1, the name and token the earlier instance's timer had too.
        let loaded = || Instance {
            state: Tick(0),
            reason: None,
            version: 1,
            status: Status::Running,
            timers: BTreeMap::from([("t".to_owned(), 1)]),
            started_ms: Some(2_000),
        };
        let mut earlier = step(&ctx);
        let d = decide_timer::<Tick>(Some(loaded()), &fired("t", 1, Some(1_000)), &mut earlier);
        let Decision::Drop(why) = d.unwrap() else {
            panic!("the earlier instance's timer must not run this one's timeout");
        };
        assert!(why.contains("earlier instance"), "{why}");
        assert!(earlier.timers.is_empty(), "{:?}", earlier.timers);
        // This instance's own timer runs, and so does one fired before timers named their
        // instance's start.
        for started in [Some(2_000), None] {
            let mut step = step(&ctx);
            let d = decide_timer::<Tick>(Some(loaded()), &fired("t", 1, started), &mut step);
            assert!(matches!(d.unwrap(), Decision::Apply(_)), "{started:?}");
        }
    }

    #[test]
    fn a_timeout_that_schedules_its_timer_again_keeps_it_with_the_new_token() {
        let ctx = timer_context();
        let mut step = step(&ctx);
        let timers = BTreeMap::from([("t".to_owned(), 1)]);
        let loaded = Instance {
            state: Tick(0),
            reason: None,
            version: 4,
            status: Status::Running,
            timers: timers.clone(),
            started_ms: None,
        };
        let Decision::Apply(transition) =
            decide_timer::<Tick>(Some(loaded), &fired("t", 1, None), &mut step).unwrap()
        else {
            panic!("a current timer runs the timeout");
        };
        step.schedule("t", Duration::from_secs(1));
        let w = written::<Tick>(4, timers, transition, step.timers).unwrap();
        assert_eq!(w.timers, BTreeMap::from([("t".to_owned(), 5)]));
        assert_eq!(w.schedule, [("t".to_owned(), at(1000))]);
    }

    #[test]
    fn a_schedule_past_the_end_of_time_saturates() {
        let ctx = timer_context();
        let mut step = step(&ctx);
        step.schedule("t", Duration::MAX);
        let TimerChange::At(due) = step.timers[0].1 else {
            panic!("scheduled");
        };
        assert_eq!(epoch_ms(due), i64::MAX);
    }

    #[test]
    fn a_stale_or_orphan_timer_is_dropped_and_a_current_one_runs() {
        let ctx = timer_context();
        let mut step = step(&ctx);
        let instance = |status, token| Instance {
            state: Count(0),
            reason: None,
            version: 3,
            status,
            timers: BTreeMap::from([("pay".to_owned(), token)]),
            started_ms: None,
        };
        let dropped = |decision: Decision<Count>| matches!(decision, Decision::Drop(_));
        // Scheduled again since (token 2 pending, 1 fired).
        let d = decide_timer::<Count>(
            Some(instance(Status::Running, 2)),
            &fired("pay", 1, None),
            &mut step,
        );
        assert!(dropped(d.unwrap()));
        // The instance finished.
        let d = decide_timer::<Count>(
            Some(instance(Status::Completed, 1)),
            &fired("pay", 1, None),
            &mut step,
        );
        assert!(dropped(d.unwrap()));
        // No instance.
        assert!(dropped(
            decide_timer::<Count>(None, &fired("pay", 1, None), &mut step).unwrap()
        ));
        // Current: the saga's timeout runs (the default refuses, naming the timer).
        let err = decide_timer::<Count>(
            Some(instance(Status::Running, 1)),
            &fired("pay", 1, None),
            &mut step,
        )
        .err()
        .expect("the default timeout fails");
        assert!(err.to_string().contains("timer `pay`"), "{err}");
    }
}
