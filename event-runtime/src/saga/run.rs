//! The handlers a saga's group runs: one per message type it reacts to ([`Reaction`]) and one
//! for its timers ([`Timers`]). Each loads the instance in the inbox transaction, decides, and
//! writes the transition in that same transaction.

use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use super::store::{self, Cause};
use super::{
    Decision, Instance, On, Outcome, Saga, Step, TimerFired, decide_message, decide_timer,
};
use crate::envelope::Envelope;
use crate::handler::{Context, Handler, HandlerError};
use crate::message::Message;
use crate::store::sql::Exec;
use tracing::Instrument;

/// Saga `S` reacting to messages of type `M`.
pub(crate) struct Reaction<S, M> {
    discarded: Arc<AtomicU64>,
    _types: PhantomData<fn() -> (S, M)>,
}

impl<S, M> Reaction<S, M> {
    pub(crate) fn new(discarded: Arc<AtomicU64>) -> Self {
        Reaction {
            discarded,
            _types: PhantomData,
        }
    }
}

/// Whether `ctx` is a replay that saga `S` does not re-run ([`super::Saga::REPLAYS`]); logs it.
fn skipped_replay<S: Saga>(ctx: &Context, key: &str, what: &str) -> bool {
    let skip = ctx.delivery() == crate::handler::Delivery::Replay && !S::REPLAYS;
    if skip {
        tracing::info!(
            target: "event_runtime::saga",
            saga = S::NAME,
            key,
            message = what,
            "replayed message skipped: the saga does not re-run transitions on replay (Saga::REPLAYS)"
        );
    }
    skip
}

impl<S: On<M>, M: Message> Handler<M> for Reaction<S, M> {
    async fn handle(&self, event: Envelope<M>, ctx: Context) -> Result<(), HandlerError> {
        let key = S::key(&event.data);
        if skipped_replay::<S>(&ctx, &key, event.data.descriptor().name) {
            return Ok(());
        }
        let id = event.id.to_string();
        let cause = Cause {
            message_type: event.data.descriptor().name,
            message_id: &id,
            correlation_id: ctx.causation().correlation_id.as_deref(),
        };
        let discarded = transition::<S, _>(&ctx, &key, &cause, |loaded, step| {
            decide_message::<S, M>(loaded, &event.data, step)
        })
        .await?;
        if discarded {
            self.discarded.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// Saga `S` handling its own timers.
pub(crate) struct Timers<S>(PhantomData<fn() -> S>);

impl<S> Timers<S> {
    pub(crate) fn new() -> Self {
        Timers(PhantomData)
    }
}

impl<S: Saga> Handler<TimerFired> for Timers<S> {
    async fn handle(&self, event: Envelope<TimerFired>, ctx: Context) -> Result<(), HandlerError> {
        let fired = &event.data;
        if skipped_replay::<S>(&ctx, &fired.key, &fired.timer) {
            return Ok(());
        }
        if fired.saga != S::NAME {
            return Err(HandlerError::permanent(format!(
                "a timer of saga `{}` reached saga `{}`",
                fired.saga,
                S::NAME
            )));
        }
        let id = event.id.to_string();
        let message_type = format!("timer:{}", fired.timer);
        let cause = Cause {
            message_type: &message_type,
            message_id: &id,
            correlation_id: ctx.causation().correlation_id.as_deref(),
        };
        transition::<S, _>(&ctx, &fired.key, &cause, |loaded, step| {
            decide_timer::<S>(loaded, fired, step)
        })
        .await
        .map(drop)
    }
}

/// Runs one transition of the instance of `S` with `key` in the inbox transaction of `ctx`,
/// whichever database it is on; whether the message was discarded ([`super::Unknown::Discard`]).
async fn transition<S, F>(
    ctx: &Context,
    key: &str,
    cause: &Cause<'_>,
    decide: F,
) -> Result<bool, HandlerError>
where
    S: Saga,
    F: FnOnce(Option<Instance<S>>, &mut Step<'_>) -> Result<Decision<S>, HandlerError> + Send,
{
    let span = crate::telemetry::saga_span(S::NAME, key);
    #[cfg(feature = "sqlite")]
    if let Some(mut tx) = ctx.transaction::<sqlx::Sqlite>().await {
        return in_transaction::<S, sqlx::Sqlite, F>(&mut tx, ctx, key, cause, decide)
            .instrument(span)
            .await;
    }
    #[cfg(feature = "postgres")]
    if let Some(mut tx) = ctx.transaction::<sqlx::Postgres>().await {
        return in_transaction::<S, sqlx::Postgres, F>(&mut tx, ctx, key, cause, decide)
            .instrument(span)
            .await;
    }
    let _ = (key, cause, decide);
    Err(HandlerError::permanent(format!(
        "saga `{}` runs without an inbox transaction (its group `{}` must run in inbox mode, on SQL stores)",
        S::NAME,
        ctx.group()
    )))
}

async fn in_transaction<S, DB, F>(
    conn: &mut DB::Connection,
    ctx: &Context,
    key: &str,
    cause: &Cause<'_>,
    decide: F,
) -> Result<bool, HandlerError>
where
    S: Saga,
    DB: Exec,
    F: FnOnce(Option<Instance<S>>, &mut Step<'_>) -> Result<Decision<S>, HandlerError>,
{
    let loaded = store::load::<DB, S>(conn, key).await?;
    match super::transit::<S>(loaded, key, SystemTime::now(), ctx, decide)? {
        Outcome::Written(written) => {
            store::save::<DB>(conn, S::NAME, key, &written, cause).await?;
            let span = tracing::Span::current();
            span.record("evt.saga.version", written.version);
            span.record("evt.saga.status", written.status.as_str());
            span.record("evt.saga.decision", "applied");
            tracing::debug!(
                target: "event_runtime::saga",
                saga = S::NAME,
                key,
                version = written.version,
                status = written.status.as_str(),
                message = cause.message_type,
                "saga transition"
            );
            Ok(false)
        }
        Outcome::Dropped(reason) => {
            tracing::Span::current().record("evt.saga.decision", "dropped");
            if reason.starts_with("repair ") {
                // An operator asked for it and was told it was queued: say why it did nothing.
                tracing::warn!(target: "event_runtime::saga", saga = S::NAME, key, reason, "repair dropped");
            } else {
                tracing::debug!(target: "event_runtime::saga", saga = S::NAME, key, reason, "message dropped");
            }
            Ok(false)
        }
        Outcome::Discarded(reason) => {
            tracing::Span::current().record("evt.saga.decision", "discarded");
            tracing::info!(target: "event_runtime::saga", saga = S::NAME, key, reason, "message discarded");
            Ok(true)
        }
    }
}
