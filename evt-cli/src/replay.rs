//! `evt replay ...`.

use std::io::{self, Write};

use event_runtime::replay::{self, ReplayFilter};
use serde_json::{Value, json};

use crate::cli::{ReplayArgs, to_ms};
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
            "evt: warning: group {} has never committed a position on topic {}; the replay waits until a consumer of that group runs",
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
