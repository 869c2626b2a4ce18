//! `evt trace <correlation-id>`: the causal tree of every message of one correlation, built from
//! the application's own records (the log, the groups' positions, the dead letters, the saga
//! tables, the outbox) by [`event_runtime::trace`], so it is complete whatever the tracing backend sampled.

use std::io;

use event_runtime::trace::{GroupPosition, Sources, Trace};
use event_runtime::transport::Transport;

use crate::cli::TraceArgs;
use crate::db::{Db, Error};
use crate::output::{self, clean};

pub(crate) async fn run(db: &Db, args: &TraceArgs, json: bool) -> Result<(), Error> {
    let positions = db
        .transport
        .group_positions()
        .await
        .map_err(|e| db.fail(e))?
        .into_iter()
        .map(|(group, topic, partition, next)| GroupPosition {
            group,
            topic,
            partition,
            next,
        })
        .collect();
    let mut sources = Sources::new(&db.transport, positions);
    if let Some(dead_letters) = db.dlq_if_any() {
        sources = sources.with_stores(dead_letters);
    }
    let trace = Trace::collect(&sources, &args.correlation_id)
        .await
        .map_err(|e| db.fail(e))?;
    if trace.is_empty() {
        return Err(Error::Message(format!(
            "no event with correlation id `{}` in the log ({} topics read)",
            clean(&args.correlation_id),
            db.transport.topics().await.map_err(|e| db.fail(e))?.len()
        )));
    }
    let mut out = io::stdout().lock();
    let written = if json {
        output::print_json(&trace.to_json())
    } else if args.mermaid {
        trace.write_mermaid(&mut out)
    } else {
        trace.write_text(&mut out)
    };
    written.map_err(Error::from)
}
