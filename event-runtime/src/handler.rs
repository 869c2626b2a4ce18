//! Handlers: what a consumer group runs for each event, the [`Context`] it gets, and how it
//! reports failure.
//!
//! A handler is any `async fn(Envelope<E>, Context) -> Result<(), HandlerError>` (or a type
//! implementing [`Handler`]). `#[handler(group = "...")]` on such a function declares it, so that
//! start-up can check it was wired. Events a handler publishes through [`Context::publish`] are
//! written only after it succeeds, carry the incoming correlation id, and get a deterministic
//! dedupe key, so a redelivered handler that publishes again does not duplicate downstream effects.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};

use crate::envelope::{Causation, Envelope, RawEnvelope};
use crate::error::EncodeError;
use crate::message::{Command, DomainEvent, Message};

/// How a record reached the handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Delivery {
    /// Read from the log in order.
    Live,
    /// Re-delivered by a replay request.
    Replay,
    /// A dead letter redriven by an operator.
    Redrive,
}

/// Whether a failure may go away on retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Retried with the group's policy, then dead-lettered.
    Transient,
    /// Dead-lettered at once.
    Permanent,
}

/// A handler's failure: an error chain and whether to retry.
///
/// `?` on any error gives a transient failure; use [`HandlerError::permanent`] for failures that
/// will never succeed (invalid business input).
pub struct HandlerError {
    class: ErrorClass,
    source: Box<dyn StdError + Send + Sync>,
}

impl HandlerError {
    /// A failure that retrying may fix (a timeout, a busy database).
    pub fn transient(err: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        HandlerError {
            class: ErrorClass::Transient,
            source: err.into(),
        }
    }

    /// A failure that retrying cannot fix: the event goes to the dead-letter queue at once.
    pub fn permanent(err: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        HandlerError {
            class: ErrorClass::Permanent,
            source: err.into(),
        }
    }

    /// Transient or permanent.
    pub fn class(&self) -> ErrorClass {
        self.class
    }

    /// The error and its sources as text, outermost first.
    pub fn chain(&self) -> Vec<String> {
        let mut chain = vec![self.source.to_string()];
        let mut next = self.source.source();
        while let Some(err) = next {
            chain.push(err.to_string());
            next = err.source();
        }
        chain
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.class, self.chain().join(": "))
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.chain().join(": "))
    }
}

impl<E: Into<Box<dyn StdError + Send + Sync>>> From<E> for HandlerError {
    fn from(err: E) -> Self {
        HandlerError::transient(err)
    }
}

/// Shared state handed to every handler (`App::with_state`).
#[derive(Clone, Default)]
pub(crate) struct States(Arc<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>);

impl States {
    pub(crate) fn insert<S: Send + Sync + 'static>(&mut self, state: S) {
        Arc::make_mut(&mut self.0).insert(TypeId::of::<S>(), Arc::new(state));
    }
}

/// An event or command a handler asked to emit, written after it succeeds.
#[derive(Debug)]
pub(crate) struct Emitted {
    pub(crate) topic: String,
    pub(crate) envelope: RawEnvelope,
}

/// What a handler gets besides the event: the delivery, the causation to carry forward, shared
/// state, the events to emit and, in inbox mode, the database transaction.
#[derive(Clone)]
pub struct Context {
    pub(crate) group: Arc<str>,
    pub(crate) delivery: Delivery,
    pub(crate) attempt: u32,
    pub(crate) causation: Causation,
    pub(crate) incoming_id: crate::envelope::EventId,
    pub(crate) states: States,
    pub(crate) emitted: Arc<Mutex<Vec<Emitted>>>,
    /// In inbox mode, the inbox transaction: a `tokio::sync::Mutex<sqlx::Transaction<DB>>` of
    /// the stores' database, whichever it is.
    pub(crate) inbox: Option<Arc<dyn std::any::Any + Send + Sync>>,
    /// The app's deprecation counts and policy (none in unit-test contexts).
    pub(crate) deprecations: Option<Arc<crate::deprecation::Deprecations>>,
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("group", &self.group)
            .field("delivery", &self.delivery)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// The consumer group running the handler.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// Live, replay or redrive.
    pub fn delivery(&self) -> Delivery {
        self.delivery
    }

    /// Whether this is a replay or a redrive rather than live delivery.
    pub fn is_replay(&self) -> bool {
        self.delivery != Delivery::Live
    }

    /// 1 for the first attempt, then 2, 3, ... on retries.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The causation to pass to anything this handler emits by other means.
    pub fn causation(&self) -> &Causation {
        &self.causation
    }

    /// Shared state registered with `App::with_state`.
    pub fn state<S: Send + Sync + 'static>(&self) -> Option<Arc<S>> {
        self.states
            .0
            .get(&TypeId::of::<S>())
            .cloned()
            .and_then(|state| state.downcast::<S>().ok())
    }

    fn emit<M: Message>(&self, envelope: Envelope<M>, topic: String) -> Result<(), EncodeError> {
        if let Some(deprecations) = &self.deprecations {
            deprecations.published(envelope.data.descriptor())?;
        }
        let mut envelope = envelope.with_causation(self.causation.clone());
        let mut emitted = self
            .emitted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if envelope.dedupe_key.is_none() {
            // Deterministic across redeliveries of the same incoming event: downstream dedupe
            // then drops what a retried handler emits twice.
            envelope.dedupe_key = Some(format!(
                "{}/{}/{}",
                self.incoming_id,
                self.group,
                emitted.len()
            ));
        }
        emitted.push(Emitted {
            topic,
            envelope: envelope.to_raw()?,
        });
        Ok(())
    }

    /// Publishes `event` after the handler succeeds, caused by the incoming event.
    ///
    /// # Errors
    ///
    /// When the payload cannot be encoded, or the event's version is past its sunset
    /// ([`crate::deprecation`]).
    pub fn publish<E: DomainEvent>(&self, event: E) -> Result<(), EncodeError> {
        let topic = event.descriptor().context.to_owned();
        self.emit(Envelope::event(event), topic)
    }

    /// Sends `command` to its target context after the handler succeeds.
    ///
    /// # Errors
    ///
    /// When the payload cannot be encoded, or the command's version is past its sunset.
    pub fn send<C: Command>(&self, command: C) -> Result<(), EncodeError> {
        let topic = crate::transport::command_topic(command.descriptor().context);
        self.emit(Envelope::command(command), topic)
    }

    /// In inbox mode ([`crate::GroupOptions::inbox`]), the transaction of the stores' database
    /// that also holds the dedupe claim and the events this handler emits: write your effects
    /// through it and they commit exactly once, together with the emitted events; a failed or
    /// rolled-back attempt emits nothing. `DB` is the stores' database: [`sqlx::Sqlite`] on the
    /// embedded engine ([`crate::Stores::sqlite`]), [`sqlx::Postgres`] with
    /// [`crate::Stores::postgres`] (the events are then staged in the transactional outbox,
    /// [`crate::outbox`], and relayed after the commit; see docs/delivery.md). `None` outside
    /// inbox mode, or for another `DB`.
    ///
    /// ```no_run
    /// # use event_runtime::{Context, HandlerError};
    /// # async fn handle(ctx: Context) -> Result<(), HandlerError> {
    /// let mut tx = ctx.transaction::<sqlx::Sqlite>().await.ok_or("inbox mode expected")?;
    /// sqlx::query("INSERT INTO ledger (entry) VALUES (?)")
    ///     .bind("e-1")
    ///     .execute(&mut **tx)
    ///     .await
    ///     .map_err(HandlerError::transient)?;
    /// # Ok(()) }
    /// ```
    ///
    /// On PostgreSQL the transaction is a lease of [`crate::GroupOptions::claim_ttl`] (at least
    /// 1 s): the server ends it once it sits idle that long, so that an instance paused inside
    /// a handler cannot hold its keys. The runtime keeps it alive while the guard is dropped;
    /// hold the guard only around statements, not across other waits longer than about five
    /// sixths of `claim_ttl` (docs/delivery.md, "Inbox on SQL stores").
    ///
    /// Cancellation: dropping the returned future before it resolves only stops waiting for the
    /// lock; the transaction is unaffected.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub async fn transaction<DB: crate::store::Dialect>(
        &self,
    ) -> Option<tokio::sync::MutexGuard<'_, sqlx::Transaction<'static, DB>>> {
        let tx = self
            .inbox
            .as_deref()?
            .downcast_ref::<tokio::sync::Mutex<sqlx::Transaction<'static, DB>>>()?;
        Some(tx.lock().await)
    }
}

/// Handles events of type `E`.
pub trait Handler<E: Message>: Send + Sync + 'static {
    /// Handles one event. Return `Err` to retry (transient) or dead-letter (permanent).
    fn handle(
        &self,
        event: Envelope<E>,
        ctx: Context,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

impl<E, F, Fut> Handler<E> for F
where
    E: Message,
    F: Fn(Envelope<E>, Context) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send,
{
    fn handle(
        &self,
        event: Envelope<E>,
        ctx: Context,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send {
        self(event, ctx)
    }
}

/// A handler declared with `#[handler(group = "...")]`: the generated unit struct implements it.
pub trait HandlerSpec: Handler<Self::Event> {
    /// The event type handled.
    type Event: Message;
    /// The consumer group.
    const GROUP: &'static str;
    /// `module::path::function`.
    const NAME: &'static str;
}

/// A declaration submitted by `#[handler]`, checked against what was wired at start-up.
#[doc(hidden)]
#[derive(Debug)]
pub struct HandlerDecl {
    /// `module::path::function`.
    pub name: &'static str,
    /// Group.
    pub group: &'static str,
    /// The event type's descriptors.
    pub events: &'static [crate::message::Descriptor],
    /// The handler, for [`crate::App::register_all`] and [`crate::App::register_module`].
    pub make: fn() -> DeclaredHandler,
}

/// A declared handler with its event type erased, ready to be subscribed.
#[doc(hidden)]
pub struct DeclaredHandler(pub(crate) std::sync::Arc<dyn crate::consumer::ErasedHandler>);

impl DeclaredHandler {
    /// `handler`, which handles `E`.
    pub fn new<E: Message, H: Handler<E>>(handler: H) -> Self {
        DeclaredHandler(std::sync::Arc::new(crate::consumer::Typed::<E, H>::new(
            handler,
        )))
    }
}

impl std::fmt::Debug for DeclaredHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeclaredHandler")
    }
}

inventory::collect!(HandlerDecl);

/// Every handler declared with `#[handler]` in this binary.
pub fn declared() -> impl Iterator<Item = &'static HandlerDecl> {
    inventory::iter::<HandlerDecl>.into_iter()
}
