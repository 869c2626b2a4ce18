//! Saga timers: the message a due timer becomes, and the task that fires due timers.
//!
//! A timer is a row of `evt_saga_timers`, written in the transaction of the transition that
//! scheduled it. [`fire`] takes the due rows in one writing transaction of the stores, deletes
//! them and emits one [`TimerFired`] per row in that same transaction (into the outbox, or the
//! log itself on the SQLite engine): a timer fires once, or its row stays to fire later. Every
//! app that wires a saga runs the task, and it fires the due rows of every saga in its
//! database (the message goes to that saga's topic); on PostgreSQL the rows are taken
//! `FOR UPDATE SKIP LOCKED`, so two instances never fire the same row nor wait for each other.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::Pool;
use tokio::sync::watch;

use crate::codec::Json;
use crate::envelope::{Causation, Envelope};
use crate::error::{DecodeError, EncodeError};
use crate::handler::Emitted;
use crate::message::{Descriptor, DomainEvent, Message, MessageKind, Sla};
use crate::publish::Publisher;
use crate::store::inbox::{Inbox, Work};
use crate::store::sql::{Exec, args};
use crate::transport::{Transport, TransportError, TransportErrorKind, now_ms};

/// Due timers fired per transaction, at most.
const BATCH: usize = 256;
/// How often the task looks for due timers when the last look found none due.
const POLL: Duration = Duration::from_millis(100);

/// A saga timer is due: the message [`fire`] emits on the saga's timer topic.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub(crate) struct TimerFired {
    /// The saga's name.
    pub(crate) saga: String,
    /// The instance's key.
    pub(crate) key: String,
    /// The timer's name.
    pub(crate) timer: String,
    /// The version of the transition that scheduled it.
    pub(crate) token: i64,
    /// When the instance started (its `created_ms`): tells one lifetime of a key from the next,
    /// whose versions, and so timer tokens, start again at 1. Absent from timers fired before
    /// it was added, and for an instance gone before its timer fired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) started_ms: Option<i64>,
}

/// The wire name of [`TimerFired`].
pub(crate) const TIMER_TYPE: &str = "evt.saga.TimerFired";

const DESCRIPTOR: Descriptor = Descriptor {
    kind: MessageKind::Event,
    name: TIMER_TYPE,
    version: 1,
    context: "evt.saga",
    description: Some("A saga timer is due."),
    rust_type: "event_runtime::saga::TimerFired",
    content_type: "application/json",
    key_fields: &["key"],
    dedupe_fields: &["saga", "key", "started_ms", "timer", "token"],
    oldest_readable_version: 1,
    deprecated: None,
    sla: Sla {
        max_latency_ms: None,
        retention_secs: None,
    },
};

impl Message for TimerFired {
    const DESCRIPTORS: &'static [Descriptor] = &[DESCRIPTOR];

    fn descriptor(&self) -> &'static Descriptor {
        &Self::DESCRIPTORS[0]
    }

    fn partition_key(&self) -> Option<String> {
        Some(self.key.clone())
    }

    fn dedupe_key(&self) -> Option<String> {
        // With the instance's start: a key used again after its instance was deleted schedules
        // timers with the same names and tokens, which the old lifetime's dedupe marks (kept
        // longer than finished instances, or forever) would otherwise swallow.
        Some(match self.started_ms {
            Some(started) => format!(
                "{TIMER_TYPE}:{}/{}@{started}/{}/{}",
                self.saga, self.key, self.timer, self.token
            ),
            None => format!(
                "{TIMER_TYPE}:{}/{}/{}/{}",
                self.saga, self.key, self.timer, self.token
            ),
        })
    }

    fn encode_payload(&self, buf: &mut Vec<u8>) -> Result<(), EncodeError> {
        crate::__private::encode::<Self, Json>(&Self::DESCRIPTORS[0], self, buf)
    }

    fn decode_payload(name: &str, version: u32, data: &[u8]) -> Result<Self, DecodeError> {
        let descriptor = &Self::DESCRIPTORS[0];
        if name != descriptor.name {
            return Err(crate::__private::unknown_type(name, descriptor.rust_type));
        }
        if crate::__private::exact_version(descriptor, version)? {
            return crate::__private::decode::<Self, Json>(descriptor, data);
        }
        Err(crate::__private::no_upcaster(descriptor, version))
    }
}

impl DomainEvent for TimerFired {}

/// The descriptors a saga's group subscribes with for its timers: [`TimerFired`] on the saga's
/// own topic, [`super::timer_topic`]. Built once per [`crate::App::saga`] call.
pub(crate) fn descriptors(saga: &str) -> &'static [Descriptor] {
    let context: &'static str = Box::leak(super::timer_topic(saga).into_boxed_str());
    Box::leak(Box::new([Descriptor {
        context,
        ..DESCRIPTOR
    }]))
}

/// Fires due timers until `shutdown`: see the module docs.
///
/// Cancellation: dropping the future between transactions loses nothing; inside one, the
/// transaction rolls back and its timers fire on the next look.
pub(crate) async fn fire<T: Transport>(
    inbox: Inbox,
    publisher: Publisher<T>,
    mut shutdown: watch::Receiver<bool>,
) {
    while !*shutdown.borrow() {
        let due = Due {
            now_ms: now_ms(),
            limit: BATCH,
        };
        let pause = match inbox.transact(&publisher, "fire saga timers", &due).await {
            Ok(fired) if fired == BATCH => continue,
            Ok(_) => POLL,
            Err(err) => {
                tracing::warn!(
                    target: "event_runtime::saga",
                    error = %err,
                    "firing saga timers failed; they fire on the next try"
                );
                Duration::from_secs(1)
            }
        };
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            // Shutdown, or the app is gone.
            _ = shutdown.changed() => {}
        }
    }
}

/// Takes the timers due at `now_ms`, at most `limit`, and turns each into a [`TimerFired`].
struct Due {
    now_ms: i64,
    limit: usize,
}

impl Work for Due {
    async fn wanted<DB: Exec>(&self, pool: &Pool<DB>) -> Result<bool, TransportError> {
        let error = |err| DB::error("look for due saga timers".to_owned(), err);
        let mut conn = pool.acquire().await.map_err(error)?;
        let row = DB::row(
            &mut conn,
            DB::sql("SELECT MIN(due_ms) AS due FROM evt_saga_timers"),
            args![],
        )
        .await
        .map_err(error)?;
        let due = match row {
            Some(row) => DB::opt_int(&row, "due").map_err(error)?,
            None => None,
        };
        Ok(due.is_some_and(|due| due <= self.now_ms))
    }

    async fn run<DB: Exec>(
        &self,
        conn: &mut DB::Connection,
    ) -> Result<Vec<Emitted>, TransportError> {
        let error = |err| DB::error("fire saga timers".to_owned(), err);
        let limit = i64::try_from(self.limit).unwrap_or(i64::MAX);
        let rows = DB::rows(
            conn,
            DB::sql(
                "SELECT saga, key, name, token, correlation_id, causation_id, \
                 (SELECT created_ms FROM evt_sagas s WHERE s.saga = evt_saga_timers.saga \
                 AND s.key = evt_saga_timers.key) AS started_ms FROM evt_saga_timers \
                 WHERE due_ms <= ? ORDER BY due_ms LIMIT ? FOR UPDATE SKIP LOCKED",
            ),
            args![self.now_ms, limit],
        )
        .await
        .map_err(error)?;
        let mut emitted = Vec::with_capacity(rows.len());
        for row in &rows {
            let fired = TimerFired {
                saga: DB::text(row, "saga").map_err(error)?,
                key: DB::text(row, "key").map_err(error)?,
                timer: DB::text(row, "name").map_err(error)?,
                token: DB::int(row, "token").map_err(error)?,
                started_ms: DB::opt_int(row, "started_ms").map_err(error)?,
            };
            let causation = Causation {
                correlation_id: DB::opt_text(row, "correlation_id").map_err(error)?,
                causation_id: DB::opt_text(row, "causation_id").map_err(error)?,
                trace: None,
            };
            DB::exec(
                conn,
                DB::sql(
                    "DELETE FROM evt_saga_timers WHERE saga = ? AND key = ? AND name = ? AND token = ?",
                ),
                args![&fired.saga, &fired.key, &fired.timer, fired.token],
            )
            .await
            .map_err(error)?;
            let topic = super::timer_topic(&fired.saga);
            // The dedupe key is the timer's (saga, key with the instance's start, name,
            // token): a copy of this append (a relay retry) is dropped downstream.
            let envelope = Envelope::event(fired)
                .with_causation(causation)
                .to_raw()
                .map_err(|err| {
                    TransportError::new(
                        TransportErrorKind::Other,
                        "fire saga timers",
                        err.to_string(),
                    )
                })?;
            emitted.push(Emitted { topic, envelope });
        }
        if !emitted.is_empty() {
            crate::crash::point("timers.taken");
        }
        Ok(emitted)
    }
}
