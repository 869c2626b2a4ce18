//! `evt`: operate the embedded event engine's SQLite file from a shell.
//!
//! The application opens its engine with `App::embedded("shop.db")`; `evt` opens the same file,
//! also while the application runs. Reading commands only read. A redrive or a replay is a
//! request row in the file that the running consumer of that group picks up (within about 50 ms),
//! so `evt` never delivers anything itself.
//!
//! Every command takes `--db <path>` (or the `EVT_DB` environment variable) and prints tables for
//! people, or with `--json` one JSON document on stdout for scripts. A missing file is an error,
//! never created. Exit codes: 0 success, 1 error (the message on stderr names what is wrong),
//! 2 invalid command line.
//!
//! # `evt dlq list [--group G] [--all] [--limit N]`
//!
//! Open dead letters (dead, parked, redriving), oldest first: id, group, topic/partition@offset,
//! event type, key, reason kind, reason, attempts, status, first and last failure (RFC 3339).
//! `--all` adds resolved and purged letters.
//!
//! ```text
//! evt --db shop.db dlq list --group billing
//! ```
//!
//! # `evt dlq show <id>`
//!
//! One letter in full: the error chain, the record's headers, its payload (JSON pretty-printed,
//! other UTF-8 as text, anything else base64) and the audit trail of every action taken on it.
//!
//! ```text
//! evt --db shop.db dlq show 42
//! ```
//!
//! # `evt dlq redrive (<id>... | --all) [--group G] [--actor NAME]`
//!
//! Queues dead letters for redelivery to their group (dedupe bypassed: the handler failed, so it
//! never marked the event). Parked letters follow the letter they wait for. The actor in the audit
//! trail is `--actor`, else `$USER`, else `cli`. Prints how many were queued; ids that cannot be
//! redriven (resolved, parked, already redriving, another group) are named on stderr.
//!
//! ```text
//! evt --db shop.db dlq redrive 42 43 --actor alice
//! evt --db shop.db dlq redrive --all --group billing
//! ```
//!
//! # `evt dlq purge (<id>... | --all) [--group G] [--actor NAME]`
//!
//! Marks open letters purged. They stay in the file with their audit trail (`dlq list --all`).
//!
//! ```text
//! evt --db shop.db dlq purge 42 --actor alice
//! ```
//!
//! # `evt replay --group G --topic T [filters] [--bypass-dedupe] [--dry-run]`
//!
//! Selects records of a topic and queues them for redelivery to one group. Filters (all
//! optional, combined with "and"): `--partition P`, `--from-offset N`, `--to-offset N` (both
//! inclusive), `--since`/`--until` (RFC 3339, compared with the append time), `--type TYPE`,
//! `--key K` (partition key), `--correlation-id C`. Replays go through the group's dedupe store,
//! so records it already handled are skipped unless `--bypass-dedupe`. `--dry-run` lists the
//! selected records (partition, offset, append time, type, id, key) and their count and queues
//! nothing. Large plans show a progress bar when stderr is a terminal.
//!
//! ```text
//! evt --db shop.db replay --group billing --topic orders --type orders.order_placed \
//!     --since 2026-03-01T00:00:00Z --dry-run
//! evt --db shop.db replay --group billing --topic orders --key o-17 --bypass-dedupe
//! ```
//!
//! # `evt tail --topic T [--from-beginning] [--follow] [--limit N]`
//!
//! Prints records decoded: event time, partition@offset, type and version, id, correlation id,
//! key and the data (compact JSON when it is JSON). A record that cannot be decoded is printed as
//! such with the reason. By default the last `--limit` records (10) are printed, like `tail -n`;
//! `--from-beginning` prints from the first record on, and there `--limit` caps the output.
//! `--follow` keeps printing new records until Ctrl-C (with `--json`, one JSON object per line).
//!
//! ```text
//! evt --db shop.db tail --topic orders --follow
//! evt --db shop.db --json tail --topic orders --from-beginning --limit 100
//! ```
//!
//! # `evt lag`
//!
//! Per consumer group, topic and partition: the committed position, the end of the log and the
//! lag; then per group the total lag and the dead-letter depth (open letters). Groups that never
//! committed a position are not known to the file and only appear through their dead letters.
//!
//! ```text
//! evt --db shop.db lag
//! ```
//!
//! # `evt schema check [--crate DIR] [--registry DIR]`
//!
//! Runs the build's schema registry gate (event-build) on a crate, writing nothing: scans its
//! events, renders their JSON Schema and proto, and checks them against the registry
//! (`schemas/` in the crate unless `--registry`, relative to the crate): published versions
//! unchanged, new versions compatible under their mode, protobuf numbers never reused, no
//! version past its sunset still produced. Exit 0 when the registry accepts them (new versions
//! are listed: the next `cargo build` publishes them), 1 with every violation (event, versions,
//! field, rule, fix), one paragraph each. Needs no `--db`.
//!
//! ```text
//! evt schema check --crate services/orders
//! evt --json schema check --crate . --registry schemas
//! ```
//!
//! # `evt trace <correlation-id>`
//!
//! Every event of one correlation (read from the log, so complete whatever a tracing backend
//! sampled), each under the event that caused it, with the time since its cause and what each
//! group reading its topic did: `handled`, `pending`, a `duplicate` its dedupe store skipped, or
//! its dead letter (status, attempts, reason). `--json` nests the same tree; `--mermaid` prints a flowchart. It reads every topic:
//! on a large log it takes as long as reading it.
//!
//! ```text
//! evt --db shop.db trace 0b4e3c1e-7b1f-4c0e-9d7e-0d1f2a3b4c5d
//! orders.order_placed v1  orders/3@0  id=0193...  2026-12-03T21:40:00.120Z  key=o-1
//! ├─ [billing] handled
//! └─ shipping.order_shipped v1  shipping/5@0  id=0193...  2026-12-03T21:40:00.131Z  +11 ms  key=o-1
//!    └─ [mail] dead (letter 1, 3 attempts): smtp refused
//! ```
//!
//! # `evt saga list [--saga NAME] [--status running|completed|failed|stuck | --stuck] [--limit N]`
//!
//! Saga instances in the stores, oldest first: saga, key, status, version (transitions made),
//! pending timers, last change and, for a failed one, the reason.
//!
//! ```text
//! evt --db shop.db saga list --status running
//! ```
//!
//! # `evt saga show <saga> <key>`
//!
//! One instance: its status, state (JSON), pending timers (with `--json`, the version that
//! scheduled each), and every transition with the message that caused it.
//!
//! ```text
//! evt --db shop.db saga show checkout o-17
//! ```
//!
//! # `evt saga resume|skip|compensate <saga> <key> [--actor NAME]`
//!
//! Repairs an instance of a `#[saga]` saga: `resume` sends its current command (or
//! compensation) again with fresh attempts (a stuck instance runs again), `skip` takes the
//! current step (or compensation) as answered, `compensate` undoes the steps done (refused at or past
//! the pivot). The repair is queued at the instance's current version and a running app with
//! the saga applies it within its timer poll; if the instance moved in between, the repair
//! drops itself. It shows in `saga show` as a transition by `timer:repair:<action>:<actor>`;
//! one the saga refuses is dead-lettered with the reason.
//!
//! ```text
//! evt --db shop.db saga resume checkout o-17 --actor alice
//! ```
//!
//! # `evt topics`
//!
//! Every topic with its partition count, the end offset of each partition and the total.
//!
//! ```text
//! evt --db shop.db topics
//! ```

mod cli;
mod db;
mod dlq;
mod output;
mod replay;
mod saga;
mod schema;
mod status;
mod tail;
mod trace;

use std::process::ExitCode;

use clap::Parser;
use event_runtime::saga::Repair;

use crate::cli::{Cli, Command, DlqCommand, RequestsCommand, SagaCommand, SchemaCommand};
use crate::db::Error;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("evt: error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        // A closed stdout (`evt tail | head`) is a normal way to stop.
        Ok(()) | Err(Error::BrokenPipe) => ExitCode::SUCCESS,
        Err(Error::Message(message)) => {
            eprintln!("evt: error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), Error> {
    // Needs no engine file.
    if let Command::Schema(SchemaCommand::Check(args)) = &cli.command {
        return schema::check(args, cli.json);
    }
    let db = db::Db::open(&db::Target {
        db: cli.db.as_deref(),
        nats: cli.nats.as_deref(),
        kafka: cli.kafka.as_deref(),
        prefix: cli.prefix.as_deref(),
        postgres: cli.postgres.as_deref(),
    })
    .await?;
    let json = cli.json;
    match cli.command {
        Command::Dlq(DlqCommand::List(args)) => dlq::list(&db, &args, json).await,
        Command::Dlq(DlqCommand::Show { id }) => dlq::show(&db, id, json).await,
        Command::Dlq(DlqCommand::Redrive(args)) => dlq::redrive(&db, &args, json).await,
        Command::Dlq(DlqCommand::Purge(args)) => dlq::purge(&db, &args, json).await,
        Command::Replay(args) => replay::run(&db, &args, json).await,
        Command::Requests(RequestsCommand::List { group }) => {
            replay::pending(&db, group.as_deref(), json).await
        }
        Command::Requests(RequestsCommand::Cancel(args)) => replay::cancel(&db, &args, json).await,
        Command::Tail(args) => tail::run(&db, &args, json).await,
        Command::Lag => status::lag(&db, json).await,
        Command::Topics => status::topics(&db, json).await,
        Command::Trace(args) => trace::run(&db, &args, json).await,
        Command::Saga(SagaCommand::List(args)) => saga::list(&db, &args, json).await,
        Command::Saga(SagaCommand::Show { saga, key }) => saga::show(&db, &saga, &key, json).await,
        Command::Saga(SagaCommand::Resume(args)) => {
            saga::repair(&db, Repair::Resume, &args, json).await
        }
        Command::Saga(SagaCommand::Skip(args)) => {
            saga::repair(&db, Repair::Skip, &args, json).await
        }
        Command::Saga(SagaCommand::Compensate(args)) => {
            saga::repair(&db, Repair::Compensate, &args, json).await
        }
        Command::Schema(_) => unreachable!("handled before the engine file is opened"),
    }
}
