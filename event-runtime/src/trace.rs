//! The causal tree of one correlation, built from the framework's own records: every event
//! and command in the log whose correlation id matches, each under the message that caused it,
//! with what each consumer group did with it (handled, pending, skipped as a duplicate,
//! dead-lettered and why), the
//! saga transitions it made and the saga timers still pending, and the events still in the
//! transactional outbox (not relayed yet, with the relay's failed attempts). It is complete whatever a
//! tracing backend sampled. `evt trace <correlation-id>` prints it; an app prints its own with
//! [`crate::app::Running::trace`].
//!
//! ```no_run
//! # async fn demo(running: &event_runtime::app::Running<event_runtime::transport::sqlite::SqliteTransport>) -> Result<(), Box<dyn std::error::Error>> {
//! let trace = running.trace("req-42").await?;
//! trace.write_text(&mut std::io::stdout().lock())?;
//! # Ok(()) }
//! ```
//!
//! Reading it scans every partition of every topic (dead-letter topics aside): a tool for an
//! operator or a test, not for a hot path. Cancelling [`Trace::collect`] only stops the reads.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write};

use serde_json::{Value, json};

use crate::dlq::{DeadLetters, LetterFilter, LetterStatus};
use crate::transport::{Transport, TransportError};

/// Records fetched per partition per read.
const BATCH: usize = 512;

/// Where consumer group `group` stands on one partition: `next` is the offset it reads next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupPosition {
    /// The group.
    pub group: String,
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// The next offset the group reads: every record before it is done.
    pub next: u64,
}

/// One event or command of the correlation.
#[derive(Clone, Debug)]
pub struct Node {
    /// The envelope's id.
    pub id: String,
    /// Its wire type.
    pub ty: String,
    /// Its schema version.
    pub version: u32,
    /// Its CloudEvents `source` (the producer).
    pub source: String,
    /// The id of the message that caused it.
    pub causation: Option<String>,
    /// When it was created, in milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// Where it is in the log.
    pub topic: String,
    /// See `topic`.
    pub partition: u32,
    /// See `topic`.
    pub offset: u64,
    /// Its partition key.
    pub key: Option<String>,
    /// The key its groups' dedupe stores know it by: its dedupe key, else its id.
    pub dedupe_key: String,
    /// What each group reading its topic did with it.
    pub outcomes: Vec<(String, Outcome)>,
    /// The saga transitions it made.
    pub transitions: Vec<Transition>,
    /// Saga timers its transitions scheduled that have not fired yet.
    pub timers: Vec<PendingTimer>,
    /// Set for an event still in the transactional outbox: not in the log yet (its partition
    /// and offset are 0 until the relay appends it).
    pub outbox: Option<OutboxRow>,
}

/// An event staged in the outbox and not relayed yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxRow {
    /// The row's id.
    pub row: i64,
    /// Appends the relay tried and failed.
    pub attempts: u32,
    /// Why the last one failed.
    pub last_error: Option<String>,
}

impl Node {
    /// Where it is in the log, as `topic/partition@offset` (the topic as it is: clean it to
    /// print it).
    fn place(&self) -> String {
        format!("{}/{}@{}", self.topic, self.partition, self.offset)
    }

    /// The order of the log: topic, partition, offset.
    fn log_order(&self) -> (&str, u32, u64) {
        (&self.topic, self.partition, self.offset)
    }

    /// The order of a trace: creation time, then the log's.
    fn trace_order(&self) -> (i64, (&str, u32, u64)) {
        (self.time_ms, self.log_order())
    }

    /// `record` as a node, when it decodes and is of correlation `id`.
    fn of(
        record: &crate::transport::Record,
        id: &str,
        limits: &crate::cloudevents::Limits,
        outbox: Option<OutboxRow>,
    ) -> Option<Node> {
        let envelope = crate::transport::decode_record(record, limits).ok()?;
        if envelope.correlation_id.as_deref() != Some(id) {
            return None;
        }
        let dedupe_key = envelope.effective_dedupe_key().into_owned();
        Some(Node {
            id: envelope.id.to_string(),
            ty: envelope.ty.to_string(),
            version: envelope.version,
            source: envelope.source.to_string(),
            causation: envelope.causation_id,
            time_ms: (envelope.time.unix_timestamp_nanos() / 1_000_000) as i64,
            topic: record.topic.to_string(),
            partition: record.partition,
            offset: record.offset,
            key: envelope.partition_key,
            dedupe_key,
            outcomes: Vec::new(),
            transitions: Vec::new(),
            timers: Vec::new(),
            outbox,
        })
    }
}

/// What a group did with an event.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// Its position is past the event, and no dead letter holds it.
    Handled,
    /// Skipped by the group's dedupe store: an earlier record with the same dedupe key (a
    /// producer's retry, a copy) was handled, and the store holds its mark. Inferred from the
    /// log and the store, which keeps one mark per key, not from a record of the skip: a copy
    /// read after the first's mark expired (`Retention::dedupe`) was handled again yet shows
    /// here too, and one read after its first was dead-lettered and then redriven shows
    /// [`Outcome::Handled`]. Only marks kept beside the dead letters are read (an inbox
    /// group's marks in the SQLite engine's file are not, with stores in memory).
    Duplicate {
        /// Where the record handled first is: `topic/partition@offset`.
        of: String,
    },
    /// Not reached yet.
    Pending,
    /// Dead-lettered (or parked): the letter's id, status, reason and attempts.
    DeadLettered {
        /// The letter's id.
        letter: u64,
        /// Open, redriven, purged...
        status: LetterStatus,
        /// Why it was given up on.
        reason: String,
        /// Attempts made before it was.
        attempts: u32,
    },
}

/// One saga transition a message made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// The saga.
    pub saga: String,
    /// The instance's key.
    pub key: String,
    /// The instance's version after it.
    pub version: i64,
    /// The instance's status after it (`running`, `completed`, `failed`, `stuck`).
    pub status: String,
}

/// A timer a saga instance scheduled that has not fired yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingTimer {
    /// The saga.
    pub saga: String,
    /// The instance's key.
    pub key: String,
    /// The timer's name.
    pub name: String,
    /// When it is due, in milliseconds since the Unix epoch.
    pub due_ms: i64,
    /// The id of the message whose transition scheduled it.
    pub causation_id: Option<String>,
}

/// The causal tree of one correlation: each message under the message that caused it (its
/// causation id), the others as roots, in the order they were created.
#[derive(Clone, Debug)]
pub struct Trace {
    /// The correlation id.
    pub correlation_id: String,
    /// Every message of the correlation, oldest first.
    pub nodes: Vec<Node>,
    /// Timers pending in the correlation whose scheduling message is not in the log.
    pub orphan_timers: Vec<PendingTimer>,
    roots: Vec<usize>,
    children: Vec<Vec<usize>>,
}

/// What [`Trace::collect`] reads: the log and the groups' positions, and the stores when
/// given ([`Sources::with_stores`]).
pub struct Sources<'a, T: ?Sized> {
    transport: &'a T,
    positions: Vec<GroupPosition>,
    dead_letters: Option<&'a DeadLetters>,
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    sagas: Option<crate::saga::Sagas>,
}

impl<'a, T: ?Sized> Sources<'a, T> {
    /// The log of `transport`, where a record before its group's position in `positions`
    /// is handled.
    pub fn new(transport: &'a T, positions: Vec<GroupPosition>) -> Self {
        Sources {
            transport,
            positions,
            dead_letters: None,
            #[cfg(any(feature = "sqlite", feature = "postgres"))]
            sagas: None,
        }
    }

    /// Also the stores of `dead_letters`: the dead letters, and (SQL stores) the saga tables
    /// and the outbox kept beside them.
    #[must_use]
    pub fn with_stores(mut self, dead_letters: &'a DeadLetters) -> Self {
        self.dead_letters = Some(dead_letters);
        #[cfg(any(feature = "sqlite", feature = "postgres"))]
        if self.sagas.is_none() {
            self.sagas = Some(dead_letters.sagas());
        }
        self
    }

    /// The saga tables in `sagas` rather than beside the dead letters: an app's sagas live
    /// in its inbox's database ([`crate::app::Running::sagas`]), the log's file on SQLite.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    #[must_use]
    pub fn with_sagas(mut self, sagas: crate::saga::Sagas) -> Self {
        self.sagas = Some(sagas);
        self
    }
}

/// Outbox rows read per page.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
const OUTBOX_PAGE: usize = 512;

impl Trace {
    /// Reads every record whose correlation id is `correlation_id` from `sources`' log and
    /// what the groups, dead letters and sagas recorded about each. An empty trace when the log
    /// holds none.
    ///
    /// # Errors
    ///
    /// The engine's or the stores' error. Cancelling it only stops the reads.
    pub async fn collect<T: Transport + ?Sized>(
        sources: &Sources<'_, T>,
        correlation_id: &str,
    ) -> Result<Trace, TransportError> {
        // The outbox first: a row relayed meanwhile is then found in the log too, and the
        // log's copy is kept.
        #[allow(unused_mut)]
        let mut staged: Vec<Node> = Vec::new();
        #[cfg(any(feature = "sqlite", feature = "postgres"))]
        if let Some(outbox) = sources.dead_letters.and_then(DeadLetters::outbox) {
            staged = staged_in(&outbox, correlation_id).await?;
        }
        let mut nodes = scan(sources.transport, correlation_id).await?;
        outcomes(sources, &mut nodes).await?;
        let logged: BTreeSet<String> = nodes.iter().map(|n| n.id.clone()).collect();
        nodes.extend(staged.into_iter().filter(|n| !logged.contains(&n.id)));
        #[allow(unused_mut)]
        let mut orphan_timers: Vec<PendingTimer> = Vec::new();
        #[cfg(any(feature = "sqlite", feature = "postgres"))]
        if let Some(sagas) = &sources.sagas {
            orphan_timers = saga_records(sagas, correlation_id, &mut nodes).await?;
        }
        nodes.sort_by(|a, b| a.trace_order().cmp(&b.trace_order()));
        let (roots, children) = tree(&nodes);
        Ok(Trace {
            correlation_id: correlation_id.to_owned(),
            nodes,
            orphan_timers,
            roots,
            children,
        })
    }

    /// Whether nothing of the correlation was found: no message, no pending timer.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty() && self.orphan_timers.is_empty()
    }

    /// The messages no other message of the correlation caused, oldest first.
    pub fn roots(&self) -> impl Iterator<Item = &Node> {
        self.roots.iter().map(|&i| &self.nodes[i])
    }

    /// The tree as JSON: `{correlation_id, events, roots: [{id, type, ..., groups, sagas,
    /// timers, caused: [...]}], timers}`.
    pub fn to_json(&self) -> Value {
        json!({
            "correlation_id": self.correlation_id,
            "events": self.nodes.len(),
            "roots": self.roots.iter().map(|&i| self.node_json(i)).collect::<Vec<_>>(),
            "timers": self.orphan_timers.iter().map(timer_json).collect::<Vec<_>>(),
        })
    }

    fn node_json(&self, i: usize) -> Value {
        let n = &self.nodes[i];
        json!({
            "id": n.id,
            "type": n.ty,
            "version": n.version,
            "source": n.source,
            "causation_id": n.causation,
            "time": time_ms(n.time_ms),
            "after_cause_ms": self.after_cause(n),
            "topic": n.topic,
            "partition": n.outbox.is_none().then_some(n.partition),
            "offset": n.outbox.is_none().then_some(n.offset),
            "outbox": n.outbox.as_ref().map(|o| json!({
                "row": o.row,
                "attempts": o.attempts,
                "last_error": o.last_error,
            })),
            "key": n.key,
            "groups": n.outcomes.iter().map(|(g, o)| {
                let mut v = o.json();
                v["group"] = json!(g);
                v
            }).collect::<Vec<_>>(),
            "sagas": n.transitions.iter().map(|t| json!({
                "saga": t.saga,
                "key": t.key,
                "version": t.version,
                "status": t.status,
            })).collect::<Vec<_>>(),
            "timers": n.timers.iter().map(timer_json).collect::<Vec<_>>(),
            "caused": self.children[i].iter().map(|&c| self.node_json(c)).collect::<Vec<_>>(),
        })
    }

    /// Milliseconds between the creation of `n`'s cause and its own.
    fn after_cause(&self, n: &Node) -> Option<i64> {
        let cause = n.causation.as_deref()?;
        let parent = self.nodes.iter().find(|p| p.id == cause)?;
        Some(n.time_ms - parent.time_ms)
    }

    /// The tree as text, one message per line with its groups, saga transitions and pending
    /// timers under it, then what it caused.
    ///
    /// # Errors
    ///
    /// When `out` fails.
    pub fn write_text(&self, out: &mut impl Write) -> io::Result<()> {
        for &root in &self.roots {
            self.text_node(root, "", true, true, out)?;
        }
        if !self.orphan_timers.is_empty() {
            writeln!(out, "pending timers scheduled by messages not in the log")?;
            for (j, timer) in self.orphan_timers.iter().enumerate() {
                let mark = if j + 1 == self.orphan_timers.len() {
                    "└─ "
                } else {
                    "├─ "
                };
                writeln!(out, "{mark}{}", timer_text(timer))?;
            }
        }
        out.flush()
    }

    fn text_node(
        &self,
        i: usize,
        prefix: &str,
        last: bool,
        root: bool,
        out: &mut impl Write,
    ) -> io::Result<()> {
        let n = &self.nodes[i];
        let (branch, next) = match (root, last) {
            (true, _) => ("", String::new()),
            (false, true) => ("└─ ", format!("{prefix}   ")),
            (false, false) => ("├─ ", format!("{prefix}│  ")),
        };
        let after = self
            .after_cause(n)
            .map(|ms| format!("  +{ms} ms"))
            .unwrap_or_default();
        let place = match &n.outbox {
            None => clean(&n.place()),
            Some(row) => format!(
                "{} (outbox row {}, not relayed yet{})",
                clean(&n.topic),
                row.row,
                match (row.attempts, &row.last_error) {
                    (0, _) => String::new(),
                    (attempts, error) => format!(
                        "; {attempts} failed append{}{}",
                        if attempts == 1 { "" } else { "s" },
                        error
                            .as_deref()
                            .map(|e| format!(": {}", truncate(&clean(e), 120)))
                            .unwrap_or_default()
                    ),
                }
            ),
        };
        writeln!(
            out,
            "{prefix}{branch}{} v{}  {place}  id={}  {}{}{}",
            clean(&n.ty),
            n.version,
            clean(&n.id),
            time_ms(n.time_ms),
            after,
            n.key
                .as_deref()
                .map(|k| format!("  key={}", clean(k)))
                .unwrap_or_default(),
        )?;
        let children = &self.children[i];
        let mut rows: Vec<String> = n
            .outcomes
            .iter()
            .map(|(group, outcome)| format!("[{}] {}", clean(group), outcome.text()))
            .collect();
        rows.extend(n.transitions.iter().map(|t| {
            format!(
                "saga {} {} v{}: {}",
                clean(&t.saga),
                clean(&t.key),
                t.version,
                t.status
            )
        }));
        rows.extend(n.timers.iter().map(timer_text));
        let count = rows.len() + children.len();
        for (j, row) in rows.iter().enumerate() {
            let mark = if j + 1 == count { "└─ " } else { "├─ " };
            writeln!(out, "{next}{mark}{row}")?;
        }
        for (j, &child) in children.iter().enumerate() {
            self.text_node(child, &next, j + 1 == children.len(), false, out)?;
        }
        Ok(())
    }

    /// The tree as a Mermaid flowchart: a box per message, a rounded box per group outcome (a
    /// parallelogram while pending, leaning the other way when skipped as a duplicate, a
    /// hexagon when dead-lettered), arrows from cause to effect.
    ///
    /// # Errors
    ///
    /// When `out` fails.
    pub fn write_mermaid(&self, out: &mut impl Write) -> io::Result<()> {
        writeln!(out, "flowchart TD")?;
        let label = |s: &str| clean(s).replace('"', "'");
        for (i, n) in self.nodes.iter().enumerate() {
            let place = match &n.outbox {
                None => label(&n.place()),
                Some(row) => format!("{} (outbox row {})", label(&n.topic), row.row),
            };
            writeln!(
                out,
                "  e{i}[\"{} v{}<br/>{place}\"]",
                label(&n.ty),
                n.version,
            )?;
            for (j, (group, outcome)) in n.outcomes.iter().enumerate() {
                let (open, close) = match outcome {
                    Outcome::Handled => ("([", "])"),
                    Outcome::Pending => ("[/", "/]"),
                    Outcome::Duplicate { .. } => ("[\\", "\\]"),
                    Outcome::DeadLettered { .. } => ("{{", "}}"),
                };
                let text = match outcome {
                    Outcome::DeadLettered { status, .. } => status.as_str().to_owned(),
                    other => other.text(),
                };
                writeln!(
                    out,
                    "  e{i}g{j}{open}\"{}: {}\"{close}",
                    label(group),
                    label(&text)
                )?;
                writeln!(out, "  e{i} -.-> e{i}g{j}")?;
            }
            for (j, t) in n.transitions.iter().enumerate() {
                writeln!(
                    out,
                    "  e{i}s{j}[[\"saga {} {} v{}: {}\"]]",
                    label(&t.saga),
                    label(&t.key),
                    t.version,
                    t.status
                )?;
                writeln!(out, "  e{i} -.-> e{i}s{j}")?;
            }
            for (j, timer) in n.timers.iter().enumerate() {
                writeln!(out, "  e{i}t{j}>\"{}\"]", label(&timer_text(timer)))?;
                writeln!(out, "  e{i} -.-> e{i}t{j}")?;
            }
        }
        for (j, timer) in self.orphan_timers.iter().enumerate() {
            writeln!(out, "  t{j}>\"{}\"]", label(&timer_text(timer)))?;
        }
        for (parent, children) in self.children.iter().enumerate() {
            for child in children {
                writeln!(out, "  e{parent} --> e{child}")?;
            }
        }
        out.flush()
    }
}

impl Outcome {
    /// One line for a person.
    pub fn text(&self) -> String {
        match self {
            Outcome::Handled => "handled".to_owned(),
            Outcome::Pending => "pending".to_owned(),
            Outcome::Duplicate { of } => {
                format!("duplicate of {}: skipped by dedupe", clean(of))
            }
            Outcome::DeadLettered {
                letter,
                status,
                reason,
                attempts,
            } => format!(
                "{} (letter {letter}, {attempts} attempt{}): {}",
                status.as_str(),
                if *attempts == 1 { "" } else { "s" },
                truncate(&clean(reason), 120)
            ),
        }
    }

    fn json(&self) -> Value {
        match self {
            Outcome::Handled => json!({ "outcome": "handled" }),
            Outcome::Pending => json!({ "outcome": "pending" }),
            Outcome::Duplicate { of } => json!({ "outcome": "duplicate", "of": of }),
            Outcome::DeadLettered {
                letter,
                status,
                reason,
                attempts,
            } => json!({
                "outcome": "dead_lettered",
                "letter": letter,
                "status": status.as_str(),
                "reason": reason,
                "attempts": attempts,
            }),
        }
    }
}

fn timer_text(timer: &PendingTimer) -> String {
    format!(
        "timer {} of saga {} {}: due {}",
        clean(&timer.name),
        clean(&timer.saga),
        clean(&timer.key),
        time_ms(timer.due_ms)
    )
}

fn timer_json(timer: &PendingTimer) -> Value {
    json!({
        "saga": timer.saga,
        "key": timer.key,
        "name": timer.name,
        "due": time_ms(timer.due_ms),
    })
}

/// Every record of every topic (dead-letter copies aside) whose correlation id is `id`.
async fn scan<T: Transport + ?Sized>(transport: &T, id: &str) -> Result<Vec<Node>, TransportError> {
    let mut nodes = Vec::new();
    let limits = crate::cloudevents::Limits::default();
    let topics = transport.topics().await?;
    for (topic, _) in topics.into_iter().filter(|(t, _)| !t.ends_with(".dlq")) {
        let ends = transport.end_offsets(&topic).await?;
        for (partition, end) in ends.into_iter().enumerate() {
            let partition = partition as u32;
            let mut from = 0;
            while from < end {
                let records = transport.fetch(&topic, partition, from, BATCH).await?;
                let Some(last) = records.last() else { break };
                from = last.offset + 1;
                nodes.extend(
                    records
                        .iter()
                        .filter_map(|r| Node::of(r, id, &limits, None)),
                );
            }
        }
    }
    Ok(nodes)
}

/// The events of correlation `id` staged in `outbox` and not relayed yet, read a page at a
/// time (only the matches are kept: memory stays bounded under any backlog).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
async fn staged_in(outbox: &crate::outbox::Outbox, id: &str) -> Result<Vec<Node>, TransportError> {
    let limits = crate::cloudevents::Limits::default();
    let mut nodes = Vec::new();
    let mut after = 0;
    loop {
        let page = outbox.staged(after, OUTBOX_PAGE).await?;
        let Some(last) = page.last() else {
            return Ok(nodes);
        };
        after = last.id;
        for staged in page {
            let row = OutboxRow {
                row: staged.id,
                attempts: staged.attempts,
                last_error: staged.last_error,
            };
            nodes.extend(Node::of(&staged.record, id, &limits, Some(row)));
        }
    }
}

/// Fills in what each group reading a node's topic did with it: its dead letter, else whether
/// its position is past the record, and then whether it was a copy the dedupe store skipped.
async fn outcomes<T: ?Sized>(
    sources: &Sources<'_, T>,
    nodes: &mut [Node],
) -> Result<(), TransportError> {
    let mut committed: BTreeMap<(&str, u32), Vec<(&str, u64)>> = BTreeMap::new();
    for p in &sources.positions {
        committed
            .entry((p.topic.as_str(), p.partition))
            .or_default()
            .push((p.group.as_str(), p.next));
    }
    let ids: BTreeSet<&str> = nodes.iter().map(|n| n.id.as_str()).collect();
    let mut letters: BTreeMap<(String, String), Outcome> = BTreeMap::new();
    if let Some(dlq) = sources.dead_letters {
        let all = dlq
            .list(&LetterFilter {
                include_closed: true,
                ..LetterFilter::default()
            })
            .await?;
        for letter in all {
            if let Some(event) = letter.event_id.as_deref().filter(|e| ids.contains(e)) {
                letters.insert(
                    (letter.group.clone(), event.to_owned()),
                    Outcome::DeadLettered {
                        letter: letter.id,
                        status: letter.status,
                        reason: letter.reason.clone(),
                        attempts: letter.attempts,
                    },
                );
            }
        }
    }
    for node in nodes.iter_mut() {
        let groups = committed
            .get(&(node.topic.as_str(), node.partition))
            .cloned()
            .unwrap_or_default();
        for (group, next) in groups {
            let outcome = match letters.remove(&(group.to_owned(), node.id.clone())) {
                Some(letter) => letter,
                None if next > node.offset => Outcome::Handled,
                None => Outcome::Pending,
            };
            node.outcomes.push((group.to_owned(), outcome));
        }
    }
    if let Some(dlq) = sources.dead_letters {
        duplicates(dlq, nodes).await?;
    }
    Ok(())
}

/// Marks as [`Outcome::Duplicate`] each record a group shows handled beside an earlier record
/// with the same dedupe key, when the group's store holds that key's mark (with dedupe on, the
/// copy found it and was skipped). Earlier: the lowest offset where the records share a
/// partition (the order the group read them in), else the earliest created.
async fn duplicates(dlq: &DeadLetters, nodes: &mut [Node]) -> Result<(), TransportError> {
    // (group, dedupe key) -> the (node, outcome) pairs the group shows handled.
    let mut handled: BTreeMap<(String, String), Vec<(usize, usize)>> = BTreeMap::new();
    for (i, node) in nodes.iter().enumerate() {
        for (j, (group, outcome)) in node.outcomes.iter().enumerate() {
            if *outcome == Outcome::Handled {
                handled
                    .entry((group.clone(), node.dedupe_key.clone()))
                    .or_default()
                    .push((i, j));
            }
        }
    }
    for ((group, key), copies) in handled {
        if copies.len() < 2 || !dlq.dedupe_seen(&group, &key).await? {
            continue;
        }
        // The first read of each partition (the lowest offset), then the earliest created.
        let mut firsts: BTreeMap<(&str, u32), usize> = BTreeMap::new();
        for &(i, _) in &copies {
            let n = &nodes[i];
            let first = firsts.entry((&n.topic, n.partition)).or_insert(i);
            if n.offset < nodes[*first].offset {
                *first = i;
            }
        }
        let first = firsts
            .into_values()
            .min_by_key(|&i| nodes[i].trace_order())
            .expect("two or more");
        let of = nodes[first].place();
        for (i, j) in copies {
            if i != first {
                nodes[i].outcomes[j].1 = Outcome::Duplicate { of: of.clone() };
            }
        }
    }
    Ok(())
}

/// Fills in each node's saga transitions and pending timers; returns the timers whose
/// scheduling message is not among the nodes.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
async fn saga_records(
    sagas: &crate::saga::Sagas,
    correlation_id: &str,
    nodes: &mut [Node],
) -> Result<Vec<PendingTimer>, TransportError> {
    // A message's transitions go to one of its copies: the first not skipped as a duplicate
    // (in the log's order), else the first.
    let mut order: Vec<usize> = (0..nodes.len()).collect();
    order.sort_by_key(|&i| {
        let n = &nodes[i];
        let skipped = n
            .outcomes
            .iter()
            .any(|(_, o)| matches!(o, Outcome::Duplicate { .. }));
        (skipped, n.log_order())
    });
    let mut read = BTreeSet::new();
    for i in order {
        let node = &mut nodes[i];
        if !read.insert(node.id.clone()) {
            continue;
        }
        for (saga, key, entry) in sagas.transitions_of(&node.id).await? {
            node.transitions.push(Transition {
                saga,
                key,
                version: entry.version,
                status: entry.status.as_str().to_owned(),
            });
        }
    }
    let mut orphans = Vec::new();
    for timer in sagas.timers_of(correlation_id).await? {
        match nodes
            .iter_mut()
            .find(|n| timer.causation_id.as_deref() == Some(n.id.as_str()))
        {
            Some(node) => node.timers.push(timer),
            None => orphans.push(timer),
        }
    }
    Ok(orphans)
}

/// Each node's children (the nodes whose causation id is its id) and the roots.
fn tree(nodes: &[Node]) -> (Vec<usize>, Vec<Vec<usize>>) {
    // Copies of one message (a producer's retry): its effects hang under the first in the log,
    // the one handled unless that one was dead-lettered.
    let mut index: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, n) in nodes.iter().enumerate() {
        index.entry(n.id.as_str()).or_insert(i);
    }
    let mut roots = Vec::new();
    let mut children = vec![Vec::new(); nodes.len()];
    for (i, node) in nodes.iter().enumerate() {
        match node
            .causation
            .as_deref()
            .and_then(|c| index.get(c))
            .filter(|&&p| p != i)
        {
            Some(&parent) => children[parent].push(i),
            None => roots.push(i),
        }
    }
    (roots, children)
}

/// Milliseconds since the Unix epoch as RFC 3339 (UTC); the number itself when out of range.
pub fn time_ms(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{ms} ms"))
}

/// Text safe to print on a terminal: control characters (escape sequences from the log
/// included) shown escaped, on one line.
pub fn clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// At most `max` characters, the last an ellipsis when cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, cause: Option<&str>, time_ms: i64) -> Node {
        Node {
            id: id.into(),
            ty: "t".into(),
            version: 1,
            source: "s".into(),
            causation: cause.map(str::to_owned),
            time_ms,
            topic: "x".into(),
            partition: 0,
            offset: time_ms as u64,
            key: None,
            dedupe_key: id.into(),
            outcomes: Vec::new(),
            transitions: Vec::new(),
            timers: Vec::new(),
            outbox: None,
        }
    }

    /// A message is a child of its cause, a message whose cause is missing (or itself) a
    /// root.
    #[test]
    fn a_message_hangs_under_its_cause() {
        let nodes = vec![
            node("a", None, 1),
            node("b", Some("a"), 2),
            node("c", Some("gone"), 3),
            node("d", Some("d"), 4),
            node("e", Some("b"), 5),
        ];
        let (roots, children) = tree(&nodes);
        assert_eq!(roots, vec![0, 2, 3]);
        assert_eq!(children[0], vec![1]);
        assert_eq!(children[1], vec![4]);
        assert!(children[2].is_empty());
    }

    /// A message's groups, saga transitions and timers hang under it, before what it caused;
    /// timers whose message is not in the log come last, under a heading; Mermaid draws the
    /// same.
    #[test]
    fn a_tree_is_written_with_its_rows_and_timers() {
        let timer = |name: &str| PendingTimer {
            saga: "checkout".into(),
            key: "c-1".into(),
            name: name.into(),
            due_ms: 0,
            causation_id: None,
        };
        let mut placed = node("a", None, 1);
        placed.outcomes.push(("billing".into(), Outcome::Handled));
        placed.transitions.push(Transition {
            saga: "checkout".into(),
            key: "c-1".into(),
            version: 1,
            status: "running".into(),
        });
        placed.timers.push(timer("pay"));
        let nodes = vec![placed, node("b", Some("a"), 2)];
        let (roots, children) = tree(&nodes);
        let trace = Trace {
            correlation_id: "r".into(),
            nodes,
            orphan_timers: vec![timer("late")],
            roots,
            children,
        };
        let mut text = Vec::new();
        trace.write_text(&mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        let rows: Vec<&str> = text.lines().collect();
        assert_eq!(rows.len(), 7, "{text}");
        assert!(rows[0].starts_with("t v1  x/0@1  id=a"), "{text}");
        assert_eq!(rows[1], "├─ [billing] handled");
        assert_eq!(rows[2], "├─ saga checkout c-1 v1: running");
        assert_eq!(
            rows[3],
            "├─ timer pay of saga checkout c-1: due 1970-01-01T00:00:00Z"
        );
        assert!(rows[4].starts_with("└─ t v1  x/0@2  id=b"), "{text}");
        assert_eq!(
            rows[5],
            "pending timers scheduled by messages not in the log"
        );
        assert_eq!(
            rows[6],
            "└─ timer late of saga checkout c-1: due 1970-01-01T00:00:00Z"
        );
        let mut mermaid = Vec::new();
        trace.write_mermaid(&mut mermaid).unwrap();
        let mermaid = String::from_utf8(mermaid).unwrap();
        for line in [
            "  e0g0([\"billing: handled\"])",
            "  e0s0[[\"saga checkout c-1 v1: running\"]]",
            "  e0t0>\"timer pay of saga checkout c-1: due 1970-01-01T00:00:00Z\"]",
            "  t0>\"timer late of saga checkout c-1: due 1970-01-01T00:00:00Z\"]",
            "  e0 --> e1",
        ] {
            assert!(mermaid.lines().any(|l| l == line), "{line} in {mermaid}");
        }
    }

    /// Control characters from the log never reach the terminal as such.
    #[test]
    fn text_is_cleaned_and_cut() {
        assert_eq!(clean("a\u{1b}[31mb\n"), "a\\u{1b}[31mb\\n");
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abc", 4), "abc");
        assert_eq!(time_ms(0), "1970-01-01T00:00:00Z");
        assert_eq!(time_ms(1500), "1970-01-01T00:00:01.5Z");
    }
}
