//! The command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Operate an application's event engine and stores: dead letters, replay, tail, lag, topics.
///
/// The engine is the embedded SQLite file (--db), NATS JetStream (--nats) or Kafka (--kafka);
/// the stores (dead letters, redrive and replay requests) are the SQLite file (--db) or
/// PostgreSQL (--postgres), as the application configured them. The application may be
/// running: redrive and replay are requests its consumers pick up.
#[derive(Debug, Parser)]
#[command(name = "evt", version, propagate_version = true)]
pub(crate) struct Cli {
    /// The SQLite file the application opened: the engine (`App::embedded`) unless --nats or
    /// --kafka is given, and the stores (`Stores::sqlite`) unless --postgres is given.
    #[arg(long, env = "EVT_DB", global = true, value_name = "PATH")]
    pub(crate) db: Option<PathBuf>,

    /// The NATS server(s) of the engine, as in the application's `NatsConfig` (`nats://host:4222`).
    #[arg(
        long,
        env = "EVT_NATS",
        global = true,
        value_name = "URL",
        conflicts_with = "kafka"
    )]
    pub(crate) nats: Option<String>,

    /// The Kafka bootstrap servers of the engine, as in the application's `KafkaConfig`.
    #[arg(long, env = "EVT_KAFKA", global = true, value_name = "HOSTS")]
    pub(crate) kafka: Option<String>,

    /// The engine's namespace, the `prefix` of the application's `NatsConfig` or `KafkaConfig`
    /// [default: that of the config: `evt` on NATS, none on Kafka].
    #[arg(long, env = "EVT_PREFIX", global = true, value_name = "PREFIX")]
    pub(crate) prefix: Option<String>,

    /// The application's PostgreSQL stores (`Stores::postgres`), instead of the SQLite file's.
    #[arg(long, env = "EVT_POSTGRES", global = true, value_name = "URL")]
    pub(crate) postgres: Option<String>,

    /// Print one JSON document on stdout instead of tables (`tail --follow`: one per line).
    #[arg(long, global = true)]
    pub(crate) json: bool,

    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Inspect, redrive and purge dead letters.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Queue records of a topic for redelivery to one consumer group.
    Replay(ReplayArgs),
    /// Redrive and replay requests waiting for their consumer: list them, cancel replays.
    #[command(subcommand)]
    Requests(RequestsCommand),
    /// Print the records of a topic, decoded.
    Tail(TailArgs),
    /// Consumer lag per group, topic and partition, and dead-letter depth per group.
    Lag,
    /// Topics with their partition counts and end offsets.
    Topics,
    /// The causal tree of every event of one correlation id, with what each group did with it.
    Trace(TraceArgs),
    /// The event schemas of a crate and its schema registry.
    #[command(subcommand)]
    Schema(SchemaCommand),
    /// Saga instances: list them, show one with its state, timers and history, repair one.
    #[command(subcommand)]
    Saga(SagaCommand),
}

#[derive(Debug, Subcommand)]
pub(crate) enum SagaCommand {
    /// Instances, oldest first.
    List(SagaListArgs),
    /// One instance: its state, pending timers and every transition.
    Show {
        /// The saga's name (`Saga::NAME`).
        saga: String,
        /// The instance's key.
        key: String,
    },
    /// Send a stuck instance's current command (or compensation) again, with fresh attempts.
    Resume(RepairArgs),
    /// Take an instance's current step (or compensation) as answered and go on.
    Skip(RepairArgs),
    /// Undo an instance now: compensate its steps done (refused at or past the pivot).
    Compensate(RepairArgs),
}

/// One instance to repair.
#[derive(Debug, Args)]
pub(crate) struct RepairArgs {
    /// The saga's name.
    pub(crate) saga: String,
    /// The instance's key.
    pub(crate) key: String,
    /// Who is acting, for the instance's history [default: $USER, else "cli"].
    #[arg(long, value_name = "NAME")]
    pub(crate) actor: Option<String>,
    /// Only if the instance is still at this version (the one `evt saga show` printed): refused
    /// if it has moved on since [default: the version read just before queueing].
    #[arg(long, value_name = "VERSION")]
    pub(crate) at_version: Option<i64>,
}

#[derive(Debug, Args)]
pub(crate) struct SagaListArgs {
    /// Only instances of this saga.
    #[arg(long, value_name = "NAME")]
    pub(crate) saga: Option<String>,
    /// Only instances with this status.
    #[arg(long, value_name = "STATUS", value_parser = ["running", "completed", "failed", "stuck"])]
    pub(crate) status: Option<String>,
    /// Only stuck instances: the ones waiting for an operator (same as `--status stuck`).
    #[arg(long, conflicts_with = "status")]
    pub(crate) stuck: bool,
    /// At most this many [default: 100].
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub(crate) limit: usize,
}

#[derive(Debug, Subcommand)]
pub(crate) enum SchemaCommand {
    /// Run the build's compatibility gate against the registry, writing nothing (for CI).
    Check(SchemaCheckArgs),
}

#[derive(Debug, Args)]
pub(crate) struct SchemaCheckArgs {
    /// The crate to scan [default: the current directory].
    #[arg(long = "crate", value_name = "DIR")]
    pub(crate) crate_dir: Option<PathBuf>,
    /// The registry directory, relative to the crate [default: schemas].
    #[arg(long, value_name = "DIR")]
    pub(crate) registry: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum RequestsCommand {
    /// Pending requests, oldest first.
    List {
        /// Only requests of this consumer group.
        #[arg(long, value_name = "G")]
        group: Option<String>,
    },
    /// Cancel pending replay requests before their consumer delivers them (redrive requests
    /// stay: their letter waits for the consumer's outcome).
    Cancel(CancelArgs),
}

#[derive(Debug, Args)]
pub(crate) struct CancelArgs {
    /// Request ids (from `requests list`).
    #[arg(
        value_name = "ID",
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    pub(crate) ids: Vec<u64>,
    /// Every pending replay request (of --group, if given).
    #[arg(long)]
    pub(crate) all: bool,
    /// Only requests of this consumer group.
    #[arg(long, value_name = "G")]
    pub(crate) group: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum DlqCommand {
    /// List dead letters, oldest first (open ones unless --all).
    List(ListArgs),
    /// Show one dead letter in full, with its audit trail.
    Show {
        /// The letter's id (from `dlq list`).
        id: u64,
    },
    /// Queue dead letters for redelivery to their consumer group.
    Redrive(ActArgs),
    /// Mark dead letters purged (kept, with their audit trail).
    Purge(ActArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Only letters of this consumer group.
    #[arg(long, value_name = "G")]
    pub(crate) group: Option<String>,
    /// Include resolved and purged letters.
    #[arg(long)]
    pub(crate) all: bool,
    /// At most this many letters.
    #[arg(long, value_name = "N")]
    pub(crate) limit: Option<u32>,
}

#[derive(Debug, Args)]
pub(crate) struct ActArgs {
    /// Letter ids.
    #[arg(
        value_name = "ID",
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    pub(crate) ids: Vec<u64>,
    /// Every open letter (of --group, if given).
    #[arg(long)]
    pub(crate) all: bool,
    /// Only letters of this consumer group.
    #[arg(long, value_name = "G")]
    pub(crate) group: Option<String>,
    /// Who is acting, for the audit trail [default: $USER, else "cli"].
    #[arg(long, value_name = "NAME")]
    pub(crate) actor: Option<String>,
}

impl ActArgs {
    pub(crate) fn actor(&self) -> String {
        actor(self.actor.as_deref())
    }
}

/// `given`, else $USER (or $USERNAME), else "cli".
pub(crate) fn actor(given: Option<&str>) -> String {
    given
        .map(str::to_owned)
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("USERNAME").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "cli".to_owned())
}

#[derive(Debug, Args)]
pub(crate) struct ReplayArgs {
    /// The consumer group to deliver to.
    #[arg(long, value_name = "G")]
    pub(crate) group: String,
    /// The topic to read.
    #[arg(long, value_name = "T")]
    pub(crate) topic: String,
    /// Only this partition.
    #[arg(long, value_name = "P")]
    pub(crate) partition: Option<u32>,
    /// From this offset (inclusive).
    #[arg(long, value_name = "N")]
    pub(crate) from_offset: Option<u64>,
    /// Up to this offset (inclusive).
    #[arg(long, value_name = "N")]
    pub(crate) to_offset: Option<u64>,
    /// Appended at or after this time (RFC 3339, e.g. 2026-03-01T00:00:00Z).
    #[arg(long, value_name = "RFC3339", value_parser = parse_time)]
    pub(crate) since: Option<OffsetDateTime>,
    /// Appended at or before this time (RFC 3339).
    #[arg(long, value_name = "RFC3339", value_parser = parse_time)]
    pub(crate) until: Option<OffsetDateTime>,
    /// Only this CloudEvents type (e.g. orders.order_placed).
    #[arg(long = "type", value_name = "TYPE")]
    pub(crate) event_type: Option<String>,
    /// Only this partition key.
    #[arg(long, value_name = "K")]
    pub(crate) key: Option<String>,
    /// Only this correlation id.
    #[arg(long, value_name = "C")]
    pub(crate) correlation_id: Option<String>,
    /// Deliver even records the group's dedupe store has already seen.
    #[arg(long)]
    pub(crate) bypass_dedupe: bool,
    /// Only list what would be queued.
    #[arg(long)]
    pub(crate) dry_run: bool,
}

#[derive(Debug, Args)]
pub(crate) struct TraceArgs {
    /// The correlation id (an HTTP request's `X-Correlation-Id`, or the first event's id).
    #[arg(value_name = "CORRELATION_ID")]
    pub(crate) correlation_id: String,
    /// Print a Mermaid flowchart instead of the tree.
    #[arg(long)]
    pub(crate) mermaid: bool,
}

#[derive(Debug, Args)]
pub(crate) struct TailArgs {
    /// The topic to read.
    #[arg(long, value_name = "T")]
    pub(crate) topic: String,
    /// Start at the first record of every partition instead of the last --limit records.
    #[arg(long)]
    pub(crate) from_beginning: bool,
    /// Keep printing new records (Ctrl-C to stop).
    #[arg(long)]
    pub(crate) follow: bool,
    /// Without --from-beginning: how many of the last records to print [default: 10].
    /// With it: stop after this many records.
    #[arg(long, value_name = "N")]
    pub(crate) limit: Option<usize>,
}

fn parse_time(text: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(text, &Rfc3339).map_err(|err| {
        format!("`{text}` is not an RFC 3339 time like 2026-03-01T12:00:00Z ({err})")
    })
}

/// Milliseconds since the epoch.
pub(crate) fn to_ms(time: OffsetDateTime) -> i64 {
    (time.unix_timestamp_nanos() / 1_000_000) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn times_parse_as_rfc3339() {
        assert_eq!(to_ms(parse_time("1970-01-01T00:00:01.5Z").unwrap()), 1500);
        assert!(parse_time("yesterday").unwrap_err().contains("RFC 3339"));
    }
}
