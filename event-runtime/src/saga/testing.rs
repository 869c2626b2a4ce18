//! The saga test kit: given/when/then with a virtual clock and no broker or database.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use super::{
    Decision, Instance, On, Outcome, Saga, Status, Step, TimerFired, decide_message, decide_timer,
    group_of, transit,
};
use crate::envelope::Envelope;
use crate::handler::{Delivery, Emitted, HandlerError};
use crate::message::{Command, DomainEvent, Message};

/// One instance as the runtime stores it: the state as JSON.
struct Stored {
    state: Vec<u8>,
    version: i64,
    status: Status,
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
            });
            let fired = self.react(&key, &envelope, |loaded, step| {
                decide_timer::<S>(loaded, &timer, token, step)
            });
            if let Err(err) = fired {
                self.due.insert((key, timer), (at, token));
                return Err(err);
            }
        }
        self.now = until;
        Ok(())
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
                timers: stored.timers.clone(),
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
