//! `evt dlq ...`.

use std::io::{self, Write};

use event_runtime::dlq::{DeadLetter, LetterFilter, LetterStatus, Selection};
use serde_json::{Value, json};

use crate::cli::{ActArgs, ListArgs};
use crate::db::{Db, Error};
use crate::output::{self, Table, clean, or_dash, time_ms, truncate};

fn key_of(letter: &DeadLetter) -> Option<String> {
    letter
        .partition_key
        .clone()
        .or_else(|| output::record_key(&letter.record))
}

fn position(letter: &DeadLetter) -> String {
    format!(
        "{}/{}@{}",
        letter.record.topic, letter.record.partition, letter.record.offset
    )
}

fn summary_json(letter: &DeadLetter) -> Value {
    json!({
        "id": letter.id,
        "group": letter.group,
        "topic": &*letter.record.topic,
        "partition": letter.record.partition,
        "offset": letter.record.offset,
        "event_type": letter.event_type,
        "event_id": letter.event_id,
        "key": key_of(letter),
        "reason_kind": letter.reason_kind.as_str(),
        "reason": letter.reason,
        "attempts": letter.attempts,
        "status": letter.status.as_str(),
        "parked_behind": letter.parked_behind,
        "first_failure_at": time_ms(letter.first_failure_ms),
        "last_failure_at": time_ms(letter.last_failure_ms),
    })
}

pub(crate) async fn list(db: &Db, args: &ListArgs, json: bool) -> Result<(), Error> {
    let letters = db
        .dlq()?
        .list(&LetterFilter {
            group: args.group.clone(),
            include_closed: args.all,
            limit: Some(args.limit.unwrap_or(u32::MAX)),
        })
        .await
        .map_err(|e| db.fail_store(e))?;
    if json {
        let letters: Vec<Value> = letters.iter().map(summary_json).collect();
        output::print_json(&json!({ "dead_letters": letters }))?;
        return Ok(());
    }
    let mut out = io::stdout().lock();
    if letters.is_empty() {
        let which = if args.all { "" } else { "open " };
        match &args.group {
            Some(group) => writeln!(out, "no {which}dead letters for group {}", clean(group))?,
            None => writeln!(out, "no {which}dead letters")?,
        }
        return Ok(());
    }
    let mut table = Table::new(&[
        "ID",
        "GROUP",
        "RECORD",
        "TYPE",
        "KEY",
        "KIND",
        "REASON",
        "ATTEMPTS",
        "STATUS",
        "FIRST FAILURE",
        "LAST FAILURE",
    ]);
    for letter in &letters {
        table.row(vec![
            letter.id.to_string(),
            clean(&letter.group),
            clean(&position(letter)),
            or_dash(letter.event_type.as_deref()),
            truncate(&or_dash(key_of(letter).as_deref()), 24),
            clean(letter.reason_kind.as_str()),
            truncate(&clean(&letter.reason), 60),
            letter.attempts.to_string(),
            match letter.parked_behind {
                Some(head) if letter.status == LetterStatus::Parked => {
                    format!("parked behind {head}")
                }
                _ => letter.status.to_string(),
            },
            time_ms(letter.first_failure_ms),
            time_ms(letter.last_failure_ms),
        ]);
    }
    table.write(&mut out)?;
    Ok(())
}

async fn get(db: &Db, id: u64) -> Result<DeadLetter, Error> {
    db.dlq()?
        .get(id)
        .await
        .map_err(|e| db.fail_store(e))?
        .ok_or_else(|| {
            Error::msg(format!(
                "no dead letter with id {id} in {}",
                db.stores_name()
            ))
        })
}

pub(crate) async fn show(db: &Db, id: u64, json: bool) -> Result<(), Error> {
    let letter = get(db, id).await?;
    let audit = db.dlq()?.audit(id).await.map_err(|e| db.fail_store(e))?;
    let record = &letter.record;
    if json {
        let mut value = summary_json(&letter);
        let object = value.as_object_mut().expect("an object");
        object.insert("error_chain".into(), json!(letter.error_chain));
        object.insert(
            "record_key".into(),
            record
                .key
                .as_deref()
                .map_or(Value::Null, output::bytes_json),
        );
        object.insert(
            "headers".into(),
            record
                .headers
                .iter()
                .map(|(name, value)| {
                    let mut header = output::bytes_json(value);
                    header["name"] = json!(name);
                    header
                })
                .collect(),
        );
        object.insert("payload".into(), output::payload_json(&record.payload));
        object.insert(
            "audit".into(),
            audit
                .iter()
                .map(|entry| {
                    json!({
                        "at": time_ms(entry.at_ms),
                        "action": entry.action,
                        "actor": entry.actor,
                        "detail": entry.detail,
                    })
                })
                .collect(),
        );
        output::print_json(&value)?;
        return Ok(());
    }
    let mut out = io::stdout().lock();
    writeln!(out, "dead letter {} ({})", letter.id, letter.status)?;
    let fields = [
        ("group", clean(&letter.group)),
        ("record", clean(&position(&letter))),
        ("event type", or_dash(letter.event_type.as_deref())),
        ("event id", or_dash(letter.event_id.as_deref())),
        ("key", or_dash(key_of(&letter).as_deref())),
        ("reason kind", clean(letter.reason_kind.as_str())),
        ("reason", clean(&letter.reason)),
        ("attempts", letter.attempts.to_string()),
        ("first failure", time_ms(letter.first_failure_ms)),
        ("last failure", time_ms(letter.last_failure_ms)),
        (
            "parked behind",
            letter
                .parked_behind
                .map_or_else(|| "-".to_owned(), |id| id.to_string()),
        ),
    ];
    for (name, value) in fields {
        writeln!(out, "  {name:<14} {value}")?;
    }
    writeln!(out, "error chain:")?;
    for (i, error) in letter.error_chain.iter().enumerate() {
        writeln!(out, "  {}. {}", i + 1, clean(error))?;
    }
    writeln!(out, "headers:")?;
    for (name, value) in &record.headers {
        writeln!(out, "  {}: {}", clean(name), output::bytes_text(value))?;
    }
    match output::payload_as_json(&record.payload) {
        Some(value) => {
            writeln!(out, "payload (JSON, {} bytes):", record.payload.len())?;
            let pretty = serde_json::to_string_pretty(&value).unwrap_or_default();
            for line in pretty.lines() {
                writeln!(out, "  {line}")?;
            }
        }
        None => match std::str::from_utf8(&record.payload) {
            Ok(text) => {
                writeln!(
                    out,
                    "payload (text, not JSON, {} bytes):",
                    record.payload.len()
                )?;
                for line in text.lines() {
                    writeln!(out, "  {}", clean(line))?;
                }
            }
            Err(_) => {
                writeln!(out, "payload (base64, {} bytes):", record.payload.len())?;
                writeln!(out, "  {}", output::base64(&record.payload))?;
            }
        },
    }
    writeln!(out, "audit trail:")?;
    let mut table = Table::new(&["  AT", "ACTION", "ACTOR", "DETAIL"]);
    for entry in &audit {
        table.row(vec![
            format!("  {}", time_ms(entry.at_ms)),
            clean(&entry.action),
            clean(&entry.actor),
            clean(&entry.detail),
        ]);
    }
    table.write(&mut out)?;
    Ok(())
}

/// What an operator action does.
#[derive(Clone, Copy)]
enum Action {
    Redrive,
    Purge,
}

impl Action {
    fn past(self) -> &'static str {
        match self {
            Action::Redrive => "queued for redrive",
            Action::Purge => "purged",
        }
    }

    /// Why `letter` cannot be acted on, if it cannot.
    fn refusal(self, letter: &DeadLetter) -> Option<String> {
        match (self, letter.status) {
            (Action::Redrive, LetterStatus::Dead) => None,
            (Action::Redrive, LetterStatus::Parked) => Some(match letter.parked_behind {
                Some(head) => {
                    format!("is parked behind dead letter {head}; redrive {head} and it follows")
                }
                None => "is parked".to_owned(),
            }),
            (Action::Redrive, LetterStatus::Redriving) => {
                Some("is already queued for redrive".to_owned())
            }
            (Action::Purge, status) if status.is_open() => None,
            (_, status) => Some(format!("is {status}")),
        }
    }
}

async fn act(db: &Db, args: &ActArgs, json: bool, action: Action) -> Result<(), Error> {
    let actor = args.actor();
    let group = args.group.as_deref();
    let mut skipped: Vec<(u64, String)> = Vec::new();
    let mut selected = Vec::new();
    // Check every id first: nothing is done when one does not exist. (An empty id list means
    // "every letter" to the queue, so ids that all turn out ineligible must not reach it.)
    let mut missing = Vec::new();
    for &id in &args.ids {
        let Some(letter) = db.dlq()?.get(id).await.map_err(|e| db.fail_store(e))? else {
            missing.push(id.to_string());
            continue;
        };
        if let Some(group) = group.filter(|g| *g != letter.group) {
            skipped.push((
                id,
                format!("belongs to group {}, not {}", letter.group, group),
            ));
        } else if let Some(reason) = action.refusal(&letter) {
            skipped.push((id, reason));
        } else if !selected.contains(&id) {
            selected.push(id);
        }
    }
    match missing.as_slice() {
        [] => {}
        [id] => {
            return Err(Error::msg(format!(
                "no dead letter with id {id} in {}; nothing done",
                db.stores_name()
            )));
        }
        ids => {
            return Err(Error::msg(format!(
                "no dead letters with ids {} in {}; nothing done",
                ids.join(", "),
                db.stores_name()
            )));
        }
    }
    let done = if args.all || !selected.is_empty() {
        let selection = if args.all {
            Selection::All
        } else {
            Selection::Ids(&selected)
        };
        match action {
            Action::Redrive => db.dlq()?.request_redrive(group, selection, &actor).await,
            Action::Purge => db.dlq()?.purge(group, selection, &actor).await,
        }
        .map_err(|e| db.fail_store(e))?
    } else {
        0
    };
    if json {
        let skipped: Vec<Value> = skipped
            .iter()
            .map(|(id, reason)| json!({ "id": id, "reason": reason }))
            .collect();
        let count = match action {
            Action::Redrive => "queued",
            Action::Purge => "purged",
        };
        let mut value = json!({ "actor": actor, "skipped": skipped });
        value[count] = json!(done);
        // Per id, what happened: the ids acted on (with --all: every open letter, by count).
        if !args.all {
            value[format!("{count}_ids")] = json!(selected);
        }
        output::print_json(&value)?;
        return Ok(());
    }
    for id in selected.iter().filter(|_| !args.all) {
        eprintln!("evt: dead letter {id}: {}", action.past());
    }
    for (id, reason) in &skipped {
        eprintln!("evt: dead letter {id} {}: skipped", clean(reason));
    }
    let noun = if done == 1 {
        "dead letter"
    } else {
        "dead letters"
    };
    let mut out = io::stdout().lock();
    write!(out, "{done} {noun} {}", action.past())?;
    match (action, done) {
        (Action::Redrive, 1..) => writeln!(
            out,
            " by {}; the running consumer of each group picks them up",
            clean(&actor)
        )?,
        _ => writeln!(out, " by {}", clean(&actor))?,
    }
    Ok(())
}

pub(crate) async fn redrive(db: &Db, args: &ActArgs, json: bool) -> Result<(), Error> {
    act(db, args, json, Action::Redrive).await
}

pub(crate) async fn purge(db: &Db, args: &ActArgs, json: bool) -> Result<(), Error> {
    act(db, args, json, Action::Purge).await
}
