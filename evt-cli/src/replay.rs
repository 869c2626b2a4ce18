//! `evt replay ...`.

use std::io::{self, Write};

use event_runtime::replay::{self, ReplayFilter};
use serde_json::{Value, json};

use event_runtime::dlq::RedeliverySource;

use crate::cli::{CancelArgs, ReplayArgs, to_ms};
use crate::db::{Db, Error};
use crate::output::{self, Progress, Table, clean, or_dash, time_ms};

/// Records queued per transaction: short writes keep the running application's writers waiting
/// for at most a moment.
const CHUNK: usize = 500;

/// Plans at least this big show a progress bar (on a terminal).
const PROGRESS_FROM: usize = 2_000;

fn filter(args: &ReplayArgs) -> Result<ReplayFilter, Error> {
    if let (Some(from), Some(to)) = (args.from_offset, args.to_offset)
        && from > to
    {
        return Err(Error::msg(format!(
            "--from-offset {from} is after --to-offset {to}"
        )));
    }
    if let (Some(since), Some(until)) = (args.since, args.until)
        && since > until
    {
        return Err(Error::msg(format!(
            "--since {} is after --until {}",
            output::time(since),
            output::time(until)
        )));
    }
    Ok(ReplayFilter {
        topic: args.topic.clone(),
        partition: args.partition,
        from_offset: args.from_offset,
        to_offset: args.to_offset,
        since_ms: args.since.map(to_ms),
        until_ms: args.until.map(to_ms),
        event_type: args.event_type.clone(),
        key: args.key.clone(),
        correlation_id: args.correlation_id.clone(),
    })
}

pub(crate) async fn run(db: &Db, args: &ReplayArgs, json: bool) -> Result<(), Error> {
    let filter = filter(args)?;
    let partitions = db.partitions_of(&args.topic).await?;
    if let Some(partition) = args.partition.filter(|p| *p >= partitions) {
        return Err(Error::msg(format!(
            "topic `{}` has {partitions} partitions (0..{}); there is no partition {partition}",
            args.topic,
            partitions - 1
        )));
    }
    let records = replay::plan(&db.transport, &filter)
        .await
        .map_err(|e| db.fail(e))?;

    if args.dry_run {
        if json {
            let selected: Vec<Value> = records
                .iter()
                .map(|record| {
                    let decoded = output::decode(record);
                    let envelope = decoded.as_ref().ok();
                    json!({
                        "partition": record.partition,
                        "offset": record.offset,
                        "appended_at": time_ms(record.timestamp_ms),
                        "type": envelope.map(|e| e.ty.to_string()),
                        "id": envelope.map(|e| e.id.to_string()),
                        "key": envelope.and_then(|e| e.partition_key.clone())
                            .or_else(|| output::record_key(record)),
                        "correlation_id": envelope.and_then(|e| e.correlation_id.clone()),
                        "error": decoded.as_ref().err(),
                    })
                })
                .collect();
            output::print_json(&json!({
                "dry_run": true,
                "group": args.group,
                "topic": args.topic,
                "bypass_dedupe": args.bypass_dedupe,
                "count": records.len(),
                "records": selected,
            }))?;
            return Ok(());
        }
        let mut table = Table::new(&["PARTITION", "OFFSET", "APPENDED", "TYPE", "ID", "KEY"]);
        for record in &records {
            let (ty, id, key) = match output::decode(record) {
                Ok(envelope) => (
                    clean(&envelope.ty),
                    envelope.id.to_string(),
                    envelope.partition_key.clone(),
                ),
                Err(reason) => (
                    format!("<undecodable: {}>", output::truncate(&clean(&reason), 50)),
                    "-".to_owned(),
                    None,
                ),
            };
            table.row(vec![
                record.partition.to_string(),
                record.offset.to_string(),
                time_ms(record.timestamp_ms),
                ty,
                id,
                or_dash(key.or_else(|| output::record_key(record)).as_deref()),
            ]);
        }
        let mut out = io::stdout().lock();
        if !table.is_empty() {
            table.write(&mut out)?;
        }
        writeln!(
            out,
            "{} record{} selected for group {} (dry run: nothing queued)",
            records.len(),
            if records.len() == 1 { "" } else { "s" },
            clean(&args.group)
        )?;
        return Ok(());
    }

    // A group that never committed on this topic may be misspelt: its requests would wait until
    // a consumer of that name runs.
    let positions = db
        .transport
        .group_positions()
        .await
        .map_err(|e| db.fail(e))?;
    if !records.is_empty()
        && !positions
            .iter()
            .any(|(group, topic, _, _)| *group == args.group && *topic == args.topic)
    {
        eprintln!(
            "evt: warning: group {} has never committed a position on topic {}; the replay waits until a consumer of that group reads that topic, pending until then (`evt requests cancel` removes it)",
            clean(&args.group),
            clean(&args.topic)
        );
    }

    let mut progress = Progress::new("queueing", records.len(), PROGRESS_FROM);
    let mut queued = 0;
    for chunk in records.chunks(CHUNK) {
        match replay::request(db.dlq()?, &args.group, chunk, args.bypass_dedupe).await {
            Ok(n) => queued += n,
            Err(err) => {
                progress.finish();
                return Err(Error::msg(format!(
                    "{} ({queued} of {} records had been queued)",
                    db.describe(&err),
                    records.len()
                )));
            }
        }
        progress.advance(chunk.len());
    }
    progress.finish();

    if json {
        output::print_json(&json!({
            "dry_run": false,
            "group": args.group,
            "topic": args.topic,
            "bypass_dedupe": args.bypass_dedupe,
            "queued": queued,
        }))?;
        return Ok(());
    }
    let mut out = io::stdout().lock();
    if queued == 0 {
        writeln!(out, "no records match; nothing queued")?;
    } else {
        writeln!(
            out,
            "{queued} record{} of {} queued for replay to group {}{}",
            if queued == 1 { "" } else { "s" },
            clean(&args.topic),
            clean(&args.group),
            if args.bypass_dedupe {
                " (dedupe bypassed)"
            } else {
                " (records the group already handled are skipped by its dedupe store)"
            }
        )?;
    }
    Ok(())
}

fn source(source: RedeliverySource) -> &'static str {
    match source {
        RedeliverySource::Redrive => "redrive",
        RedeliverySource::Replay => "replay",
    }
}

/// `evt requests list`.
pub(crate) async fn pending(db: &Db, group: Option<&str>, json: bool) -> Result<(), Error> {
    let requests = db
        .dlq()?
        .pending_requests(group, u32::MAX)
        .await
        .map_err(|e| db.fail_store(e))?;
    if json {
        let requests: Vec<Value> = requests
            .iter()
            .map(|r| {
                json!({
                    "id": r.id,
                    "group": r.group,
                    "source": source(r.source),
                    "letter_id": r.letter_id,
                    "topic": r.topic,
                    "partition": r.partition,
                    "offset": r.offset,
                    "bypass_dedupe": r.bypass_dedupe,
                })
            })
            .collect();
        output::print_json(&json!({ "requests": requests }))?;
        return Ok(());
    }
    let mut out = io::stdout().lock();
    if requests.is_empty() {
        writeln!(out, "no pending requests in {}", db.stores_name())?;
        return Ok(());
    }
    let mut table = Table::new(&["ID", "GROUP", "SOURCE", "LETTER", "RECORD", "BYPASS DEDUPE"]);
    for r in &requests {
        table.row(vec![
            r.id.to_string(),
            clean(&r.group),
            source(r.source).to_owned(),
            r.letter_id
                .map_or_else(|| "-".to_owned(), |id| id.to_string()),
            format!("{}/{}@{}", clean(&r.topic), r.partition, r.offset),
            if r.bypass_dedupe { "yes" } else { "no" }.to_owned(),
        ]);
    }
    table.write(&mut out)?;
    Ok(())
}

/// `evt requests cancel`.
pub(crate) async fn cancel(db: &Db, args: &CancelArgs, json: bool) -> Result<(), Error> {
    let dlq = db.dlq()?;
    let group = args.group.as_deref();
    // Say why an id is not cancelled: not pending (delivered, cancelled, never queued), another
    // group's, or a redrive.
    let pending = dlq
        .pending_requests(None, u32::MAX)
        .await
        .map_err(|e| db.fail_store(e))?;
    let mut refused = Vec::new();
    for id in &args.ids {
        let reason = match pending.iter().find(|r| r.id == *id) {
            None => "no pending request with this id (delivered already, or cancelled)".to_owned(),
            Some(r) if group.is_some_and(|g| g != r.group) => {
                format!("belongs to group {}", r.group)
            }
            Some(r) if r.source == RedeliverySource::Redrive => {
                "a redrive request: its letter waits for the consumer's outcome".to_owned()
            }
            Some(_) => continue,
        };
        refused.push((*id, reason));
    }
    let ids = (!args.all).then_some(args.ids.as_slice());
    let cancelled = if args.all || refused.len() < args.ids.len() {
        dlq.cancel_replays(group, ids)
            .await
            .map_err(|e| db.fail_store(e))?
    } else {
        Vec::new()
    };
    if !args.all && cancelled.is_empty() {
        let reasons: Vec<String> = refused
            .iter()
            .map(|(id, reason)| format!("request {id}: {reason}"))
            .collect();
        return Err(Error::msg(format!(
            "nothing cancelled: {}",
            clean(&reasons.join("; "))
        )));
    }
    if json {
        let refused: Vec<Value> = refused
            .iter()
            .map(|(id, reason)| json!({ "id": id, "reason": reason }))
            .collect();
        output::print_json(&json!({ "cancelled": cancelled, "not_cancelled": refused }))?;
        return Ok(());
    }
    for (id, reason) in &refused {
        eprintln!("evt: request {id}: not cancelled: {}", clean(reason));
    }
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "{} replay request(s) cancelled{}",
        cancelled.len(),
        if cancelled.is_empty() {
            String::new()
        } else {
            format!(
                ": {}",
                cancelled
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    )?;
    Ok(())
}
