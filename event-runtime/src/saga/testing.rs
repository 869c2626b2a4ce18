//! The saga test kit: given/when/then with a virtual clock and no broker or database.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use super::{
    Decision, Handles, Instance, On, Orchestrated, Outcome, Role, Saga, Status, Step, StepKind,
    StepSpec, Steps, TimerFired, decide_message, decide_timer, group_of, transit,
};
use crate::envelope::Envelope;
use crate::handler::{Delivery, Emitted, HandlerError};
use crate::message::{Command, DomainEvent, Message};

/// One instance as the runtime stores it: the state as JSON.
struct Stored {
    state: Vec<u8>,
    version: i64,
    status: Status,
    reason: Option<String>,
    timers: BTreeMap<String, i64>,
}

/// Runs a saga's reactions as the runtime does — the same decisions, the [`super::Unknown`]
/// policies, the state stored as JSON between messages, timers with tokens — against a virtual
/// clock, in memory. A reaction that fails leaves the instance, its timers and the effects as
/// they were, as the rolled-back transaction does (a failed timeout stays due, as the runtime
/// retries it).
pub struct SagaTest<S> {
    now: SystemTime,
    instances: BTreeMap<String, Stored>,
    /// (key, timer) -> (due, token).
    due: BTreeMap<(String, String), (SystemTime, i64)>,
    effects: Vec<Emitted>,
    discarded: u64,
    _saga: std::marker::PhantomData<fn() -> S>,
}

impl<S> std::fmt::Debug for SagaTest<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SagaTest")
            .field("now", &self.now)
            .field("instances", &self.instances.len())
            .field("due", &self.due)
            .field("effects", &self.effects.len())
            .finish_non_exhaustive()
    }
}

impl<S: Saga> Default for SagaTest<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: Saga> SagaTest<S> {
    /// No instance, no effect; the clock at 2026-01-01T00:00:00Z.
    pub fn new() -> Self {
        SagaTest {
            now: SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600),
            instances: BTreeMap::new(),
            due: BTreeMap::new(),
            effects: Vec::new(),
            discarded: 0,
            _saga: std::marker::PhantomData,
        }
    }

    /// The virtual clock: what [`Step::now`] answers.
    pub fn now(&self) -> SystemTime {
        self.now
    }

    /// Delivers `message`, as the saga's group would.
    ///
    /// # Errors
    ///
    /// The reaction's error, or the policy's (a message for no instance under
    /// [`super::Unknown::DeadLetter`] is a permanent error): the message would be retried or
    /// dead-lettered, and nothing changed.
    pub fn when<M: Message>(&mut self, message: M) -> Result<(), HandlerError>
    where
        S: On<M>,
    {
        let key = S::key(&message);
        let envelope = Envelope::new(message);
        self.react(&key, &envelope, |loaded, step| {
            decide_message::<S, M>(loaded, &envelope.data, step)
        })
    }

    /// Moves the clock `by`, firing the timers that fall due on the way, in due order, each at
    /// its due time.
    ///
    /// # Errors
    ///
    /// The first failing timeout's error; the clock stops at that timer.
    pub fn advance(&mut self, by: Duration) -> Result<(), HandlerError> {
        let until = self.now + by;
        loop {
            let next = self
                .due
                .iter()
                .filter(|(_, (at, _))| *at <= until)
                .min_by_key(|(_, (at, _))| *at)
                .map(|(id, (at, token))| (id.clone(), *at, *token));
            let Some(((key, timer), at, token)) = next else {
                break;
            };
            self.due.remove(&(key.clone(), timer.clone()));
            self.now = self.now.max(at);
            let envelope = Envelope::event(TimerFired {
                saga: S::NAME.to_owned(),
                key: key.clone(),
                timer: timer.clone(),
                token,
                started_ms: None,
            });
            let fired = self.react(&key, &envelope, |loaded, step| {
                decide_timer::<S>(loaded, &envelope.data, step)
            });
            if let Err(err) = fired {
                self.due.insert((key, timer), (at, token));
                return Err(err);
            }
        }
        self.now = until;
        Ok(())
    }

    /// An operator's `repair` of instance `key`, asked at its current version (see
    /// [`super::Repair`]).
    ///
    /// # Errors
    ///
    /// The saga's refusal (a permanent error: the repair would be dead-lettered).
    pub fn repair(&mut self, key: &str, repair: super::Repair) -> Result<(), HandlerError> {
        let token = self.version(key).unwrap_or(0);
        let timer = format!("{}{}:test", super::REPAIR, repair.as_str());
        let envelope = Envelope::event(TimerFired {
            saga: S::NAME.to_owned(),
            key: key.to_owned(),
            timer,
            token,
            started_ms: None,
        });
        self.react(key, &envelope, |loaded, step| {
            decide_timer::<S>(loaded, &envelope.data, step)
        })
    }

    fn react<M>(
        &mut self,
        key: &str,
        envelope: &Envelope<M>,
        decide: impl FnOnce(Option<Instance<S>>, &mut Step<'_>) -> Result<Decision<S>, HandlerError>,
    ) -> Result<(), HandlerError> {
        let ctx = crate::testing::context(&group_of(S::NAME), envelope, Delivery::Live);
        let loaded = match self.instances.get(key) {
            Some(stored) => Some(Instance {
                state: serde_json::from_slice(&stored.state).map_err(|err| {
                    HandlerError::permanent(format!("the stored state does not decode: {err}"))
                })?,
                version: stored.version,
                status: stored.status,
                reason: stored.reason.clone(),
                timers: stored.timers.clone(),
                started_ms: None,
            }),
            None => None,
        };
        match transit::<S>(loaded, key, self.now, &ctx, decide)? {
            Outcome::Written(written) => {
                for name in &written.cancel {
                    self.due.remove(&(key.to_owned(), name.clone()));
                }
                for (name, at) in &written.schedule {
                    self.due
                        .insert((key.to_owned(), name.clone()), (*at, written.version));
                }
                self.instances.insert(
                    key.to_owned(),
                    Stored {
                        state: written.state,
                        version: written.version,
                        status: written.status,
                        reason: written.reason,
                        timers: written.timers,
                    },
                );
                let emitted = std::mem::take(
                    &mut *ctx
                        .emitted
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner),
                );
                self.effects.extend(emitted);
            }
            Outcome::Dropped(_) => {}
            Outcome::Discarded(_) => self.discarded += 1,
        }
        Ok(())
    }

    /// The state of the instance with `key`.
    ///
    /// # Panics
    ///
    /// If the stored state does not decode (it was encoded by this type: a serde bug).
    pub fn state(&self, key: &str) -> Option<S> {
        self.instances.get(key).map(|stored| {
            serde_json::from_slice(&stored.state).expect("the state decodes as it was encoded")
        })
    }

    /// Where the instance with `key` stands.
    pub fn status(&self, key: &str) -> Option<Status> {
        self.instances.get(key).map(|stored| stored.status)
    }

    /// The transitions the instance with `key` made (its version).
    pub fn version(&self, key: &str) -> Option<i64> {
        self.instances.get(key).map(|stored| stored.version)
    }

    /// The pending timers of the instance with `key`, with their due times, by name.
    pub fn timers(&self, key: &str) -> Vec<(String, SystemTime)> {
        self.due
            .iter()
            .filter(|((k, _), _)| k == key)
            .map(|((_, name), (at, _))| (name.clone(), *at))
            .collect()
    }

    /// Every command of type `C` sent so far, in order.
    ///
    /// # Panics
    ///
    /// If one does not decode (it was encoded by this type: a codec bug).
    pub fn sent<C: Command>(&self) -> Vec<C> {
        self.effects_of::<C>()
    }

    /// Every event of type `E` published so far, in order.
    ///
    /// # Panics
    ///
    /// If one does not decode (it was encoded by this type: a codec bug).
    pub fn published<E: DomainEvent>(&self) -> Vec<E> {
        self.effects_of::<E>()
    }

    /// The CloudEvents types of the messages sent or published so far, in order.
    pub fn effect_types(&self) -> Vec<&str> {
        self.effects.iter().map(|e| &*e.envelope.ty).collect()
    }

    /// How many messages were sent or published so far, of any type.
    pub fn effects(&self) -> usize {
        self.effects.len()
    }

    /// Forgets the effects so far (the instances and timers stay).
    pub fn clear_effects(&mut self) {
        self.effects.clear();
    }

    /// Messages dropped by [`super::Unknown::Discard`] or a second start.
    pub fn discarded(&self) -> u64 {
        self.discarded
    }

    fn effects_of<M: Message>(&self) -> Vec<M> {
        self.effects
            .iter()
            .filter(|e| M::DESCRIPTORS.iter().any(|d| d.name == e.envelope.ty))
            .map(|e| {
                e.envelope
                    .decode::<M>()
                    .expect("an effect decodes as its type")
                    .data
            })
            .collect()
    }
}

/// The test kit of an orchestrated saga: answers by step, and the checks derived from its
/// declared structure.
impl<D: Steps> SagaTest<Orchestrated<D>> {
    /// Step `step` of instance `key` gets its reply (as if the reply message arrived; its
    /// `on_reply` function does not run, having no message).
    ///
    /// # Errors
    ///
    /// The transition's error.
    pub fn reply(&mut self, key: &str, step: &'static str) -> Result<(), HandlerError> {
        self.answer(key, Role::Reply(step))
    }

    /// Step `step` of instance `key` gets its fault.
    ///
    /// # Errors
    ///
    /// The transition's error.
    pub fn fault(&mut self, key: &str, step: &'static str) -> Result<(), HandlerError> {
        self.answer(key, Role::Fault(step))
    }

    /// The compensation of step `step` of instance `key` gets its reply.
    ///
    /// # Errors
    ///
    /// The transition's error.
    pub fn compensated(&mut self, key: &str, step: &'static str) -> Result<(), HandlerError> {
        self.answer(key, Role::Compensated(step))
    }

    fn answer(&mut self, key: &str, role: Role) -> Result<(), HandlerError> {
        let envelope = Envelope::event(TimerFired {
            saga: D::NAME.to_owned(),
            key: key.to_owned(),
            timer: format!("{role:?}"),
            token: 0,
            started_ms: None,
        });
        self.react(key, &envelope, |loaded, step| match loaded {
            Some(instance) if !instance.status.is_finished() => instance
                .state
                .on_role(role, |_| {}, |_| None, "(test kit)", step)
                .map(Decision::Apply),
            _ => Ok(Decision::Drop(format!("no running instance `{key}`"))),
        })
    }

    /// The checks derived from the saga's declared steps, on instances started by `start`:
    ///
    /// - every step answered: the saga completes, with no timer left;
    /// - each step failed in turn (by its fault, and by its timeout): a compensatable step or
    ///   the pivot unwinds the steps done (and a timed-out compensatable step itself) by their
    ///   compensations in reverse order, answering the awaited ones, and ends failed with no
    ///   timer left; the pivot or a retriable step that times out is sent again, and is stuck
    ///   after [`Steps::ATTEMPTS`] sends;
    /// - every answer delivered twice: the second changes neither the state nor the effects.
    ///
    /// # Errors
    ///
    /// What went wrong, naming the step and the check.
    pub fn check_structure<M>(start: &M) -> Result<(), String>
    where
        M: Message + Clone,
        D: Handles<M>,
    {
        let key = <D as Handles<M>>::key(start);
        let started = || -> Result<Self, String> {
            let mut test = Self::new();
            test.when(start.clone())
                .map_err(|e| format!("the start failed: {e}"))?;
            // Delivered twice: nothing new.
            test.twice(&key, "the start", |t| t.when(start.clone()))?;
            Ok(test)
        };
        let fail = |step: &str, check: &str, why: String| {
            Err(format!("saga `{}`, step `{step}`, {check}: {why}", D::NAME))
        };
        // The happy path.
        let mut test = started()?;
        for spec in D::STEPS {
            test.reply(&key, spec.name).map_err(|e| e.to_string())?;
            test.twice(&key, spec.name, |t| t.reply(&key, spec.name))?;
        }
        if test.status(&key) != Some(Status::Completed) || !test.timers(&key).is_empty() {
            return fail(
                "(all)",
                "every step answered",
                format!(
                    "status {:?}, timers {:?}",
                    test.status(&key),
                    test.timers(&key)
                ),
            );
        }
        for (index, spec) in D::STEPS.iter().enumerate() {
            let ways: &[(&str, bool)] = match (spec.kind, spec.fault.is_some()) {
                (StepKind::Retriable, _) => &[("timeout", true)],
                (_, true) => &[("fault", false), ("timeout", true)],
                (_, false) => &[("timeout", true)],
            };
            for &(way, timeout) in ways {
                let mut test = started()?;
                for before in &D::STEPS[..index] {
                    test.reply(&key, before.name).map_err(|e| e.to_string())?;
                }
                test.clear_effects();
                let resent = timeout && spec.kind != StepKind::Compensatable;
                if resent {
                    for attempt in 1..D::ATTEMPTS {
                        test.advance(spec.timeout).map_err(|e| e.to_string())?;
                        if test.effects() != attempt as usize {
                            return fail(
                                spec.name,
                                "timeout",
                                format!(
                                    "attempt {} sent {} command(s), not one more",
                                    attempt + 1,
                                    test.effects()
                                ),
                            );
                        }
                    }
                    test.advance(spec.timeout).map_err(|e| e.to_string())?;
                    if test.status(&key) != Some(Status::Stuck) {
                        return fail(
                            spec.name,
                            "timeout",
                            format!(
                                "after {} sends the instance is {:?}, not stuck",
                                D::ATTEMPTS,
                                test.status(&key)
                            ),
                        );
                    }
                    // A late reply moves it on.
                    test.reply(&key, spec.name).map_err(|e| e.to_string())?;
                    if test.status(&key) == Some(Status::Stuck) {
                        return fail(spec.name, "timeout", "a late reply left it stuck".into());
                    }
                    continue;
                }
                let data = test.state(&key).map(|s| s.data);
                if timeout {
                    test.advance(spec.timeout).map_err(|e| e.to_string())?;
                } else {
                    test.fault(&key, spec.name).map_err(|e| e.to_string())?;
                    test.twice(&key, spec.name, |t| t.fault(&key, spec.name))?;
                }
                // The unwind: the compensations of the steps done, in reverse order.
                let mut undone: Vec<&StepSpec> = D::STEPS[..index]
                    .iter()
                    .filter(|s| s.kind == StepKind::Compensatable)
                    .collect();
                if timeout && spec.kind == StepKind::Compensatable {
                    undone.push(spec);
                }
                let mut expected = Vec::new();
                for undo in undone.iter().rev().filter(|s| s.compensation.is_some()) {
                    let Some(data) = &data else { break };
                    let types = compensation_types(data, &key, undo.name)?;
                    if types.is_empty() {
                        return fail(
                            undo.name,
                            "compensation",
                            format!(
                                "its compensation `{}` sends nothing",
                                undo.compensation.unwrap_or_default()
                            ),
                        );
                    }
                    expected.extend(types);
                    while test.state(&key).is_some_and(|s| s.step == undo.name)
                        && undo.compensated.is_some()
                    {
                        test.compensated(&key, undo.name)
                            .map_err(|e| e.to_string())?;
                        test.twice(&key, undo.name, |t| t.compensated(&key, undo.name))?;
                    }
                }
                let sent = test.effect_types();
                if sent != expected {
                    return fail(
                        spec.name,
                        way,
                        format!(
                            "the unwind sent {sent:?}, expected {expected:?} (the compensations of the steps done, in reverse order)"
                        ),
                    );
                }
                if test.status(&key) != Some(Status::Failed) || !test.timers(&key).is_empty() {
                    return fail(
                        spec.name,
                        way,
                        format!(
                            "after the unwind the instance is {:?} with timers {:?}, not failed with none",
                            test.status(&key),
                            test.timers(&key)
                        ),
                    );
                }
            }
        }
        Ok(())
    }

    /// Runs `again` (an answer delivered a second time) and checks it changed neither the
    /// state nor the effects.
    fn twice(
        &mut self,
        key: &str,
        what: &str,
        again: impl FnOnce(&mut Self) -> Result<(), HandlerError>,
    ) -> Result<(), String> {
        let before = (
            self.instances.get(key).map(|s| s.state.clone()),
            self.effects.len(),
        );
        again(self).map_err(|e| format!("{what} delivered twice failed: {e}"))?;
        let after = (
            self.instances.get(key).map(|s| s.state.clone()),
            self.effects.len(),
        );
        if before != after {
            return Err(format!(
                "saga `{}`: {what} delivered twice changed the state or sent again",
                D::NAME
            ));
        }
        Ok(())
    }
}

/// The types of what the compensation of step `name` sends for `data`.
fn compensation_types<D: Steps>(data: &D, key: &str, name: &str) -> Result<Vec<String>, String> {
    let envelope = Envelope::event(TimerFired {
        saga: D::NAME.to_owned(),
        key: key.to_owned(),
        timer: name.to_owned(),
        token: 0,
        started_ms: None,
    });
    let ctx = crate::testing::context(&group_of(D::NAME), &envelope, Delivery::Live);
    let mut step = Step {
        key,
        now: SystemTime::UNIX_EPOCH,
        ctx: &ctx,
        timers: Vec::new(),
    };
    data.compensate(name, &mut step)
        .map_err(|e| e.to_string())?;
    let emitted = ctx
        .emitted
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    Ok(emitted.iter().map(|e| e.envelope.ty.to_string()).collect())
}
