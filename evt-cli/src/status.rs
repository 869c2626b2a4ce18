//! `evt lag` and `evt topics`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write};

use event_runtime::app::lag_of;
use event_runtime::transport::{Sharing, Transport, now_ms};
use serde_json::{Value, json};

use crate::db::{Db, Error};
use crate::output::{self, Table, clean};

pub(crate) async fn lag(db: &Db, json: bool) -> Result<(), Error> {
    let topics: BTreeMap<String, u32> = db
        .transport
        .topics()
        .await
        .map_err(|e| db.fail(e))?
        .into_iter()
        .collect();
    let positions = db
        .transport
        .group_positions()
        .await
        .map_err(|e| db.fail(e))?;
    // Every (group, topic) that committed somewhere: its partitions that never committed count
    // from offset 0.
    let subscriptions: BTreeSet<(String, String)> = positions
        .into_iter()
        .filter(|(_, topic, _, _)| topics.contains_key(topic))
        .map(|(group, topic, _, _)| (group, topic))
        .collect();
    let subscriptions: Vec<(String, String, u32)> = subscriptions
        .into_iter()
        .map(|(group, topic)| {
            let partitions = topics[&topic];
            (group, topic, partitions)
        })
        .collect();
    let lags = lag_of(&db.transport, &subscriptions)
        .await
        .map_err(|e| db.fail(e))?;
    // Which instance consumes each partition, where instances share them through claims: the
    // claim's owner while it holds.
    let mut owners = Vec::with_capacity(lags.len());
    let now = now_ms();
    for l in &lags {
        let owner = if db.transport.sharing() != Sharing::None {
            db.transport
                .slot(&l.group, &l.topic, l.partition)
                .await
                .map_err(|e| db.fail(e))?
                .claim
                .filter(|c| c.live_at(now))
                .map(|c| c.owner)
        } else {
            None
        };
        owners.push(owner);
    }
    let depth: BTreeMap<String, u64> = match db.dlq_if_any() {
        Some(dlq) => dlq
            .depth()
            .await
            .map_err(|e| db.fail_store(e))?
            .into_iter()
            .collect(),
        None => BTreeMap::new(),
    };
    // Groups known otherwise that never committed: the engine's (Kafka lists every group of
    // the cluster), and those with dead letters or pending requests in the stores. Their lag is
    // unknown: which topics they read is known only to their code.
    let mut known: BTreeSet<String> = db
        .transport
        .known_groups()
        .await
        .map_err(|e| db.fail(e))?
        .into_iter()
        .collect();
    if let Some(dlq) = db.dlq_if_any() {
        let pending = dlq
            .pending_requests(None, u32::MAX)
            .await
            .map_err(|e| db.fail_store(e))?;
        known.extend(pending.into_iter().map(|r| r.group));
    }
    known.extend(depth.keys().cloned());
    // group -> (lag, dlq depth, committed anywhere)
    let mut groups: BTreeMap<&str, (u64, u64, bool)> = BTreeMap::new();
    for lag in &lags {
        let entry = groups.entry(&lag.group).or_default();
        entry.0 += lag.lag();
        entry.2 = true;
    }
    for group in &known {
        groups.entry(group).or_default();
    }
    for (group, open) in &depth {
        groups.entry(group).or_default().1 = *open;
    }

    if json {
        let partitions: Vec<Value> = lags
            .iter()
            .zip(&owners)
            .map(|(l, owner)| {
                json!({
                    "group": l.group,
                    "topic": l.topic,
                    "partition": l.partition,
                    "committed": l.committed,
                    "end": l.end,
                    "lag": l.lag(),
                    "owner": owner,
                })
            })
            .collect();
        let groups: Vec<Value> = groups
            .iter()
            .map(|(group, (lag, open, committed))| {
                json!({
                    "group": group,
                    "lag": committed.then_some(*lag),
                    "dlq_depth": open,
                    "committed": committed,
                })
            })
            .collect();
        output::print_json(&json!({ "partitions": partitions, "groups": groups }))?;
        return Ok(());
    }
    let mut out = io::stdout().lock();
    if groups.is_empty() {
        writeln!(
            out,
            "no consumer group has committed a position in {}",
            db.name
        )?;
        return Ok(());
    }
    if !lags.is_empty() {
        let mut table = Table::new(&[
            "GROUP",
            "TOPIC",
            "PARTITION",
            "COMMITTED",
            "END",
            "LAG",
            "OWNER",
        ]);
        for (l, owner) in lags.iter().zip(&owners) {
            table.row(vec![
                clean(&l.group),
                clean(&l.topic),
                l.partition.to_string(),
                l.committed.to_string(),
                l.end.to_string(),
                l.lag().to_string(),
                owner.as_deref().map_or_else(|| "-".to_owned(), clean),
            ]);
        }
        table.write(&mut out)?;
        writeln!(out)?;
    }
    let mut table = Table::new(&["GROUP", "TOTAL LAG", "DLQ DEPTH"]);
    for (group, (lag, open, committed)) in &groups {
        let lag = if *committed {
            lag.to_string()
        } else {
            "never committed".to_owned()
        };
        table.row(vec![clean(group), lag, open.to_string()]);
    }
    table.write(&mut out)?;
    Ok(())
}

pub(crate) async fn topics(db: &Db, json: bool) -> Result<(), Error> {
    let topics = db.transport.topics().await.map_err(|e| db.fail(e))?;
    let mut rows = Vec::with_capacity(topics.len());
    for (topic, partitions) in topics {
        let ends = db
            .transport
            .end_offsets(&topic)
            .await
            .map_err(|e| db.fail(e))?;
        rows.push((topic, partitions, ends));
    }
    if json {
        let topics: Vec<Value> = rows
            .iter()
            .map(|(topic, partitions, ends)| {
                json!({
                    "topic": topic,
                    "partitions": partitions,
                    "end_offsets": ends,
                    "records": ends.iter().sum::<u64>(),
                })
            })
            .collect();
        output::print_json(&json!({ "topics": topics }))?;
        return Ok(());
    }
    let mut out = io::stdout().lock();
    if rows.is_empty() {
        writeln!(out, "no topics in {}", db.name)?;
        return Ok(());
    }
    let mut table = Table::new(&["TOPIC", "PARTITIONS", "RECORDS", "END OFFSETS"]);
    for (topic, partitions, ends) in &rows {
        table.row(vec![
            clean(topic),
            partitions.to_string(),
            ends.iter().sum::<u64>().to_string(),
            ends.iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(" "),
        ]);
    }
    table.write(&mut out)?;
    Ok(())
}
