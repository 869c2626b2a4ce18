//! `evt saga list`, `show` and the repairs: the saga instances in the application's stores.

use std::io::{self, Write};

use event_runtime::saga::{InstanceRecord, Repair, Status};
use serde_json::{Value, json};

use crate::cli::{RepairArgs, SagaListArgs};
use crate::db::{Db, Error};
use crate::output::{self, Table, clean, or_dash, time_ms, truncate};

fn instance_json(instance: &InstanceRecord) -> Value {
    json!({
        "saga": instance.saga,
        "key": instance.key,
        "status": instance.status.as_str(),
        "version": instance.version,
        "state": instance.state,
        "state_version": instance.state_version,
        "reason": instance.reason,
        "timers": instance.timers,
        "created": time_ms(instance.created_ms),
        "updated": time_ms(instance.updated_ms),
    })
}

fn timers_text(instance: &InstanceRecord) -> String {
    if instance.timers.is_empty() {
        "-".to_owned()
    } else {
        clean(
            &instance
                .timers
                .keys()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(","),
        )
    }
}

pub(crate) async fn list(db: &Db, args: &SagaListArgs, json: bool) -> Result<(), Error> {
    let status = if args.stuck {
        Some(Status::Stuck)
    } else {
        args.status.as_deref().map(|s| {
            Status::parse(s).expect("clap accepts only running, completed, failed and stuck")
        })
    };
    let instances = db
        .dlq()?
        .sagas()
        .list(args.saga.as_deref(), status, args.limit)
        .await
        .map_err(|e| db.fail_store(e))?;
    if json {
        output::print_json(&json!({
            "instances": instances.iter().map(instance_json).collect::<Vec<_>>(),
        }))?;
        return Ok(());
    }
    let mut out = io::stdout().lock();
    if instances.is_empty() {
        writeln!(out, "no saga instances")?;
        return Ok(());
    }
    let mut table = Table::new(&[
        "SAGA", "KEY", "STATUS", "VERSION", "TIMERS", "UPDATED", "REASON",
    ]);
    for instance in &instances {
        table.row(vec![
            clean(&instance.saga),
            truncate(&clean(&instance.key), 32),
            instance.status.as_str().to_owned(),
            instance.version.to_string(),
            timers_text(instance),
            time_ms(instance.updated_ms),
            truncate(&or_dash(instance.reason.as_deref()), 60),
        ]);
    }
    table.write(&mut out)?;
    Ok(())
}

pub(crate) async fn show(db: &Db, saga: &str, key: &str, json: bool) -> Result<(), Error> {
    let sagas = db.dlq()?.sagas();
    let instance = sagas
        .instance(saga, key)
        .await
        .map_err(|e| db.fail_store(e))?
        .ok_or_else(|| {
            Error::msg(format!(
                "no instance of saga `{}` with key `{}` in {}",
                clean(saga),
                clean(key),
                db.stores_name()
            ))
        })?;
    let history = sagas
        .history(saga, key)
        .await
        .map_err(|e| db.fail_store(e))?;
    if json {
        let mut value = instance_json(&instance);
        value["history"] = history
            .iter()
            .map(|h| {
                json!({
                    "version": h.version,
                    "message_type": h.message_type,
                    "message_id": h.message_id,
                    "status": h.status.as_str(),
                    "at": time_ms(h.at_ms),
                })
            })
            .collect();
        output::print_json(&value)?;
        return Ok(());
    }
    let mut out = io::stdout().lock();
    writeln!(out, "saga      {}", clean(&instance.saga))?;
    writeln!(out, "key       {}", clean(&instance.key))?;
    writeln!(out, "status    {}", instance.status.as_str())?;
    writeln!(out, "version   {}", instance.version)?;
    writeln!(out, "started   {}", time_ms(instance.created_ms))?;
    writeln!(out, "updated   {}", time_ms(instance.updated_ms))?;
    if let Some(reason) = &instance.reason {
        writeln!(out, "reason    {}", clean(reason))?;
    }
    writeln!(out, "timers    {}", timers_text(&instance))?;
    let state = serde_json::to_string_pretty(&instance.state).expect("JSON values print");
    writeln!(out, "state")?;
    for line in state.lines() {
        writeln!(out, "  {}", clean(line))?;
    }
    writeln!(out, "history")?;
    let mut table = Table::new(&["VERSION", "MESSAGE", "ID", "STATUS", "AT"]);
    for h in &history {
        table.row(vec![
            h.version.to_string(),
            clean(&h.message_type),
            clean(&h.message_id),
            h.status.as_str().to_owned(),
            time_ms(h.at_ms),
        ]);
    }
    table.write(&mut out)?;
    Ok(())
}

/// Queues `repair` of one instance (see `evt saga resume`).
pub(crate) async fn repair(
    db: &Db,
    repair: Repair,
    args: &RepairArgs,
    json: bool,
) -> Result<(), Error> {
    let actor = crate::cli::actor(args.actor.as_deref());
    let sagas = db.dlq()?.sagas();
    let instance = sagas
        .instance(&args.saga, &args.key)
        .await
        .map_err(|e| db.fail_store(e))?;
    // The repair applies to the state the operator saw: the version given, else the one just
    // read (so a transition between the read and the queueing refuses it too).
    let expected = args.at_version.or(instance.as_ref().map(|i| i.version));
    let queued = sagas
        .request_repair_at(&args.saga, &args.key, repair, &actor, expected)
        .await
        .map_err(|e| db.fail_store(e))?;
    let unfinished = |now: Option<InstanceRecord>| -> Error {
        match now {
            Some(now) if !now.status.is_finished() => Error::msg(format!(
                "saga `{}` key `{}` is {} at version {}, not at version {}: it moved on; look again with `evt saga show {} {}`",
                clean(&args.saga),
                clean(&args.key),
                now.status.as_str(),
                now.version,
                expected.unwrap_or(now.version),
                clean(&args.saga),
                clean(&args.key),
            )),
            _ => Error::msg(format!(
                "no unfinished instance of saga `{}` has key `{}` (see `evt saga list --saga {}`)",
                args.saga, args.key, args.saga
            )),
        }
    };
    let instance = match instance {
        Some(instance) if queued => instance,
        // Refused: say why, from what the instance is now.
        Some(_) => {
            let now = sagas
                .instance(&args.saga, &args.key)
                .await
                .map_err(|e| db.fail_store(e))?;
            return Err(unfinished(now));
        }
        None => return Err(unfinished(None)),
    };
    if json {
        output::print_json(&json!({
            "queued": repair.as_str(),
            "saga": args.saga,
            "key": args.key,
            "version": instance.version,
            "actor": actor,
        }))?;
        return Ok(());
    }
    writeln!(
        io::stdout().lock(),
        "queued `{}` of saga {} {} at version {} ({}) by {actor}: a running app with the saga applies it within its timer poll",
        repair.as_str(),
        clean(&args.saga),
        clean(&args.key),
        instance.version,
        instance.status.as_str()
    )?;
    Ok(())
}
