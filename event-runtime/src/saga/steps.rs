//! Orchestration in Richardson's terms: a saga as named steps, each a command that expects a
//! reply, a fault or a timeout. Steps before the pivot are compensatable, the pivot is the point
//! of no return, steps after it are retriable. `#[saga]` derives [`Steps`] and [`Handles`] from
//! an `impl` block; [`Orchestrated`] runs them as a [`Saga`].
//!
//! The rules, per step kind:
//!
//! | step | reply | fault | timeout |
//! |---|---|---|---|
//! | compensatable | next step | compensate the steps done | compensate the steps done and this one |
//! | pivot | next step (no way back) | compensate the steps done | send again, then stuck |
//! | retriable | next step | send again, then stuck | send again, then stuck |
//! | compensation | previous compensation | - | send again, then stuck |
//!
//! A timed-out compensatable step is compensated too: its command may have taken effect, so
//! its compensation must be safe to run for something that never happened (the participant
//! keys it by the saga's key). A step "sent again" sends a new command: participants are
//! idempotent by the saga's key, as they must be under at-least-once delivery anyway.
//!
//! Compensations run in the reverse order of the steps. A compensation that declares its reply
//! (`compensated = ...`) is awaited before the one before it is sent; one that does not is sent
//! and left to the participant (the outbox delivers it at least once).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Messages, On, Repair, Saga, Step, Transition, Unknown};
use crate::handler::HandlerError;
use crate::message::Message;

/// Where a step stands relative to the pivot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepKind {
    /// Before the pivot: undone by its compensation when a later step fails.
    Compensatable,
    /// The go/no-go step: once it succeeded the saga only moves forward.
    Pivot,
    /// After the pivot: retried until it succeeds (or the saga is stuck).
    Retriable,
}

/// One step as declared: what the catalog draws and the orchestrator follows.
#[derive(Clone, Copy, Debug)]
pub struct StepSpec {
    /// The step's stable name (its function's name). Stored in running instances: renaming a
    /// step orphans the instances in it.
    pub name: &'static str,
    /// Compensatable, pivot or retriable.
    pub kind: StepKind,
    /// The command it sends (Rust type name).
    pub command: &'static str,
    /// The message that says it succeeded (Rust type name).
    pub reply: &'static str,
    /// The message that says it failed (`None`: the participant never refuses).
    pub fault: Option<&'static str>,
    /// How long it waits for the reply or the fault.
    pub timeout: Duration,
    /// Its compensation (the function's name; `None`: none needed, or not compensatable).
    pub compensation: Option<&'static str>,
    /// The message that says the compensation is done (`None`: sent, not awaited).
    pub compensated: Option<&'static str>,
}

/// What a message means to an orchestrated saga.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// It starts an instance.
    Start,
    /// The reply of the named step.
    Reply(&'static str),
    /// The fault of the named step.
    Fault(&'static str),
    /// The reply of the named step's compensation.
    Compensated(&'static str),
}

/// A saga declared as steps: derived by `#[saga]`, run as [`Orchestrated`].
pub trait Steps: Serialize + serde::de::DeserializeOwned + Send + Sync + 'static {
    /// The saga's name (see [`Saga::NAME`]).
    const NAME: &'static str;
    /// The steps, in order.
    const STEPS: &'static [StepSpec];
    /// How many times a command that timed out is sent before the instance is stuck.
    const ATTEMPTS: u32 = 5;
    /// The version of the data's stored form (see [`Saga::STATE_VERSION`]).
    const STATE_VERSION: u32 = 1;

    /// Lifts the data stored at version `from` to version `from + 1` (see
    /// [`Saga::upcast_state`]); `#[saga(state_version = N, state_upcast = f)]` names `f`.
    ///
    /// # Errors
    ///
    /// When the data cannot be lifted. The default has no upcaster.
    fn upcast_data(
        from: u32,
        data: serde_json::Value,
    ) -> Result<serde_json::Value, crate::error::UpcastError> {
        let _ = data;
        Err(crate::error::UpcastError::new(format!(
            "saga `{}` has no upcaster from state version {from} (state_upcast)",
            Self::NAME
        )))
    }

    /// Sends the command of step `name`.
    ///
    /// # Errors
    ///
    /// When the command cannot be encoded.
    fn request(&self, name: &str, step: &mut Step<'_>) -> Result<(), HandlerError>;

    /// Sends the compensation of step `name` (nothing when it has none).
    ///
    /// # Errors
    ///
    /// When the command cannot be encoded.
    fn compensate(&self, name: &str, step: &mut Step<'_>) -> Result<(), HandlerError>;

    /// Lists the messages: `on.on::<A>()...`, one per [`Handles`] implementation.
    fn messages(on: &mut Messages<Orchestrated<Self>>);
}

/// How an orchestrated saga reads messages of type `M`.
pub trait Handles<M: Message> {
    /// What `M` means to the saga (one meaning per message type).
    const ROLE: Role;

    /// The instance `message` belongs to.
    fn key(message: &M) -> String;

    /// The data of a new instance (called for [`Role::Start`] only).
    ///
    /// # Errors
    ///
    /// The default refuses: `M` does not start the saga.
    fn start(message: &M) -> Result<Self, HandlerError>
    where
        Self: Sized,
    {
        Err(HandlerError::permanent(format!(
            "message `{}` does not start this saga",
            message.descriptor().name
        )))
    }

    /// Records what a reply says (the step's `on_reply` function; nothing by default).
    fn record(&mut self, message: &M) {
        let _ = message;
    }

    /// Why a fault failed its step (the step's `on_fault` function; `None`: the reason names
    /// the step and the message type).
    fn explain(&self, message: &M) -> Option<String> {
        let _ = message;
        None
    }
}

/// Which way an orchestrated instance moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Through the steps.
    Forward,
    /// Back through the compensations.
    Compensating,
}

/// The stored form of an orchestrated saga: the user's data and where the instance stands.
/// Wire it with `App::saga::<Orchestrated<YourSaga>>()`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound(deserialize = "D: serde::de::DeserializeOwned"))]
pub struct Orchestrated<D> {
    /// The saga's own data.
    pub data: D,
    /// The step under way (forward) or being compensated (empty: none).
    pub step: String,
    /// Forward or compensating.
    pub phase: Phase,
    /// The compensatable steps done, in order (the ones a failure undoes).
    pub done: Vec<String>,
    /// Times the current command was sent.
    pub attempts: u32,
    /// Why the instance compensates, or is stuck.
    pub failure: Option<String>,
}

fn spec<D: Steps>(name: &str) -> Option<(usize, &'static StepSpec)> {
    D::STEPS.iter().enumerate().find(|(_, s)| s.name == name)
}

/// The timer of a compensation: `undo:<step>`.
fn undo_timer(name: &str) -> String {
    format!("undo:{name}")
}

impl<D: Steps> Orchestrated<D> {
    /// Fails (permanently, naming it) when the instance is in a step this code no longer
    /// declares: a removed step stays declared until no instance is in it.
    fn declared(&self) -> Result<(), HandlerError> {
        if self.step.is_empty() || spec::<D>(&self.step).is_some() {
            return Ok(());
        }
        Err(HandlerError::permanent(format!(
            "saga `{}`: the instance is in step `{}`, which this code does not declare any more \
             (declare it again until no instance is in it)",
            D::NAME,
            self.step
        )))
    }

    /// Sends step `index` (or completes the saga past the last one).
    fn enter(
        mut self,
        index: usize,
        step: &mut Step<'_>,
    ) -> Result<Transition<Self>, HandlerError> {
        let Some(spec) = D::STEPS.get(index) else {
            self.step.clear();
            return Ok(Transition::complete(self));
        };
        self.step = spec.name.to_owned();
        self.attempts = 0;
        self.resend(spec, step)
    }

    /// Sends the current step's command, or its compensation when compensating, again (with
    /// its timer); stuck once it was sent [`Steps::ATTEMPTS`] times.
    fn resend(
        mut self,
        spec: &StepSpec,
        step: &mut Step<'_>,
    ) -> Result<Transition<Self>, HandlerError> {
        let undoing = self.phase == Phase::Compensating;
        if self.attempts >= D::ATTEMPTS {
            let what = if undoing {
                format!("the compensation of step `{}`", spec.name)
            } else {
                format!("step `{}`", spec.name)
            };
            let why = format!("{what} got no answer after {} attempts", self.attempts);
            if !undoing {
                self.failure = Some(why.clone());
            }
            // A fault can make it stuck while the last send's timer is still pending.
            step.cancel(&if undoing {
                undo_timer(spec.name)
            } else {
                spec.name.to_owned()
            });
            return Ok(Transition::stuck(self, why));
        }
        self.attempts += 1;
        if undoing {
            self.data.compensate(spec.name, step)?;
            step.schedule(&undo_timer(spec.name), spec.timeout);
        } else {
            self.data.request(spec.name, step)?;
            step.schedule(spec.name, spec.timeout);
        }
        Ok(Transition::next(self))
    }

    /// Starts compensating, for `why`; `including` the current step when it may have happened.
    fn fail(
        mut self,
        why: String,
        including: bool,
        step: &mut Step<'_>,
    ) -> Result<Transition<Self>, HandlerError> {
        step.cancel(&self.step);
        if including && !self.step.is_empty() {
            let current = std::mem::take(&mut self.step);
            self.done.push(current);
        }
        self.phase = Phase::Compensating;
        self.failure = Some(why);
        self.unwind(step)
    }

    /// Sends the compensations of the steps done, last first, up to one that is awaited;
    /// fails the saga when none is left.
    fn unwind(mut self, step: &mut Step<'_>) -> Result<Transition<Self>, HandlerError> {
        while let Some(name) = self.done.pop() {
            let Some((_, spec)) = spec::<D>(&name) else {
                return Err(HandlerError::permanent(format!(
                    "saga `{}` has no step `{name}` any more: a removed step stays declared until no instance is in it",
                    D::NAME
                )));
            };
            if spec.compensation.is_none() {
                continue;
            }
            if spec.compensated.is_some() {
                self.step = name;
                self.attempts = 0;
                return self.resend(spec, step);
            }
            self.data.compensate(spec.name, step)?;
        }
        self.step.clear();
        let why = self.failure.clone().unwrap_or_default();
        Ok(Transition::fail(self, why))
    }

    /// `message` (of `D`'s type `M`) reached a running instance.
    fn answer<M>(self, message: &M, step: &mut Step<'_>) -> Result<Transition<Self>, HandlerError>
    where
        D: Handles<M>,
        M: Message,
    {
        let what = message.descriptor().name;
        self.on_role(
            D::ROLE,
            |data| data.record(message),
            |data| data.explain(message),
            what,
            step,
        )
    }

    /// An answer in `role` reached a running instance: `record` keeps what a reply says,
    /// `explain` says why a fault failed its step, `what` names the message.
    pub(crate) fn on_role(
        mut self,
        role: Role,
        record: impl FnOnce(&mut D),
        explain: impl FnOnce(&D) -> Option<String>,
        what: &str,
        step: &mut Step<'_>,
    ) -> Result<Transition<Self>, HandlerError> {
        self.declared()?;
        let current = |name: &str| self.step == name;
        match role {
            // A start for a running instance: a duplicate.
            Role::Start => Ok(Transition::unchanged(self)),
            Role::Reply(name) if self.phase == Phase::Forward && current(name) => {
                step.cancel(name);
                record(&mut self.data);
                let Some((index, spec)) = spec::<D>(name) else {
                    return Ok(Transition::unchanged(self));
                };
                if spec.kind == StepKind::Compensatable {
                    self.done.push(name.to_owned());
                }
                self.failure = None;
                self.enter(index + 1, step)
            }
            Role::Fault(name) if self.phase == Phase::Forward && current(name) => {
                let Some((_, spec)) = spec::<D>(name) else {
                    return Ok(Transition::unchanged(self));
                };
                let why =
                    explain(&self.data).unwrap_or_else(|| format!("step `{name}` failed: {what}"));
                match spec.kind {
                    StepKind::Compensatable | StepKind::Pivot => self.fail(why, false, step),
                    StepKind::Retriable => {
                        self.failure = Some(why);
                        self.resend(spec, step)
                    }
                }
            }
            Role::Compensated(name) if self.phase == Phase::Compensating && current(name) => {
                step.cancel(&undo_timer(name));
                self.unwind(step)
            }
            // A late or repeated answer, for a step the instance is no longer in: nothing to do.
            Role::Reply(_) | Role::Fault(_) | Role::Compensated(_) => {
                Ok(Transition::unchanged(self))
            }
        }
    }
}

impl<D: Steps> Saga for Orchestrated<D> {
    const NAME: &'static str = D::NAME;
    const STATE_VERSION: u32 = D::STATE_VERSION;

    /// The orchestration's own fields keep their form; the data is lifted by
    /// [`Steps::upcast_data`].
    fn upcast_state(
        from: u32,
        mut state: serde_json::Value,
    ) -> Result<serde_json::Value, crate::error::UpcastError> {
        let data = state
            .get_mut("data")
            .ok_or_else(|| crate::error::UpcastError::new("the stored state has no `data`"))?;
        *data = D::upcast_data(from, data.take())?;
        Ok(state)
    }

    fn check(&self) -> Result<(), String> {
        self.declared().map_err(|err| err.to_string())
    }

    fn knows_timer(timer: &str) -> bool {
        let name = timer.strip_prefix("undo:").unwrap_or(timer);
        spec::<D>(name).is_some()
    }

    fn messages(on: &mut Messages<Self>) {
        D::messages(on);
    }

    fn timeout(self, timer: &str, step: &mut Step<'_>) -> Result<Transition<Self>, HandlerError> {
        let (name, undoing) = match timer.strip_prefix("undo:") {
            Some(name) => (name, true),
            None => (timer, false),
        };
        self.declared()?;
        let Some((_, spec)) = spec::<D>(name) else {
            return Ok(Transition::unchanged(self));
        };
        if self.step != name || (self.phase == Phase::Compensating) != undoing {
            return Ok(Transition::unchanged(self));
        }
        if !undoing && spec.kind == StepKind::Compensatable {
            let why = format!("step `{name}` timed out after {:?}", spec.timeout);
            return self.fail(why, true, step);
        }
        self.resend(spec, step)
    }

    fn repair(
        mut self,
        repair: Repair,
        step: &mut Step<'_>,
    ) -> Result<Transition<Self>, HandlerError> {
        self.declared()?;
        let current = spec::<D>(&self.step).map(|(_, spec)| spec);
        let refuse = |why: String| {
            Err(HandlerError::permanent(format!(
                "saga `{}` key `{}`: no `{}` repair: {why}",
                D::NAME,
                step.key,
                repair.as_str()
            )))
        };
        match (repair, current) {
            (Repair::Resume | Repair::Skip, None) => {
                refuse("the instance waits for no step".to_owned())
            }
            (Repair::Resume, Some(spec)) => {
                self.attempts = 0;
                self.resend(spec, step)
            }
            (Repair::Skip, Some(spec)) => {
                let role = match self.phase {
                    Phase::Forward => Role::Reply(spec.name),
                    Phase::Compensating => Role::Compensated(spec.name),
                };
                let by = format!("repair `skip` of step `{}`", spec.name);
                self.on_role(role, |_| {}, |_| None, &by, step)
            }
            (Repair::Compensate, _) if self.phase == Phase::Compensating => refuse(
                "it is compensating already (resume or skip its current compensation)".to_owned(),
            ),
            (Repair::Compensate, Some(spec)) if spec.kind != StepKind::Compensatable => {
                refuse(format!(
                    "step `{}` is {}: its outcome is unknown or cannot be undone, so the saga \
                     only goes forward (resume it, or skip it if it happened)",
                    spec.name,
                    if spec.kind == StepKind::Pivot {
                        "the pivot"
                    } else {
                        "past the pivot"
                    }
                ))
            }
            (Repair::Compensate, current) => {
                let including = current.is_some_and(|spec| spec.kind == StepKind::Compensatable);
                self.fail("compensated by an operator".to_owned(), including, step)
            }
        }
    }
}

impl<D: Steps + Handles<M>, M: Message> On<M> for Orchestrated<D> {
    // A late reply for a finished instance is expected (it timed out, or was compensated).
    const UNKNOWN: Unknown = match D::ROLE {
        Role::Start => Unknown::Start,
        _ => Unknown::Discard,
    };

    fn key(message: &M) -> String {
        D::key(message)
    }

    fn start(message: &M, step: &mut Step<'_>) -> Result<Transition<Self>, HandlerError> {
        let data = D::start(message)?;
        Orchestrated {
            data,
            step: String::new(),
            phase: Phase::Forward,
            done: Vec::new(),
            attempts: 0,
            failure: None,
        }
        .enter(0, step)
    }

    fn handle(self, message: &M, step: &mut Step<'_>) -> Result<Transition<Self>, HandlerError> {
        self.answer(message, step)
    }
}
