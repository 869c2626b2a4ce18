//! `evt trace <correlation-id>`: the causal tree of every event of one correlation, built from
//! our own records (the log, the groups' positions, the dead letters), so it is complete
//! whatever the tracing backend sampled.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write};

use event_runtime::dlq::{LetterFilter, LetterStatus};
use event_runtime::transport::Transport;
use serde_json::{Value, json};

use crate::cli::TraceArgs;
use crate::db::{Db, Error};
use crate::output::{self, clean};

/// Records fetched per partition per read.
const BATCH: usize = 512;

/// One event of the correlation.
struct Node {
    id: String,
    ty: String,
    version: u32,
    source: String,
    causation: Option<String>,
    time_ms: i64,
    topic: String,
    partition: u32,
    offset: u64,
    key: Option<String>,
    /// What each group reading its topic did with it.
    outcomes: Vec<(String, Outcome)>,
}

/// What a group did with an event.
enum Outcome {
    /// Its position is past the event, and no open dead letter holds it.
    Handled,
    /// Not reached yet.
    Pending,
    /// Dead-lettered (or parked): the letter's id, status, reason and attempts.
    DeadLettered {
        letter: u64,
        status: LetterStatus,
        reason: String,
        attempts: u32,
    },
}

impl Outcome {
    fn text(&self) -> String {
        match self {
            Outcome::Handled => "handled".to_owned(),
            Outcome::Pending => "pending".to_owned(),
            Outcome::DeadLettered {
                letter,
                status,
                reason,
                attempts,
            } => format!(
                "{} (letter {letter}, {attempts} attempt{}): {}",
                status.as_str(),
                if *attempts == 1 { "" } else { "s" },
                output::truncate(&clean(reason), 120)
            ),
        }
    }

    fn json(&self) -> Value {
        match self {
            Outcome::Handled => json!({ "outcome": "handled" }),
            Outcome::Pending => json!({ "outcome": "pending" }),
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

pub(crate) async fn run(db: &Db, args: &TraceArgs, json: bool) -> Result<(), Error> {
    let mut nodes = scan(db, &args.correlation_id).await?;
    if nodes.is_empty() {
        return Err(Error::Message(format!(
            "no event with correlation id `{}` in the log ({} topics read)",
            clean(&args.correlation_id),
            db.transport.topics().await.map_err(|e| db.fail(e))?.len()
        )));
    }
    outcomes(db, &mut nodes).await?;
    nodes.sort_by_key(|n| (n.time_ms, n.topic.clone(), n.partition, n.offset));
    let tree = Tree::new(&nodes);
    let mut out = io::stdout().lock();
    let written = if json {
        output::print_json(&json!({
            "correlation_id": args.correlation_id,
            "events": nodes.len(),
            "roots": tree.roots.iter().map(|&i| tree.json(&nodes, i)).collect::<Vec<_>>(),
        }))
    } else if args.mermaid {
        tree.mermaid(&nodes, &mut out)
    } else {
        tree.text(&nodes, &mut out)
    };
    written.map_err(Error::from)
}

/// Every record of every topic (dead-letter copies aside) whose correlation id is `id`.
async fn scan(db: &Db, id: &str) -> Result<Vec<Node>, Error> {
    let mut nodes = Vec::new();
    let topics = db.transport.topics().await.map_err(|e| db.fail(e))?;
    for (topic, _) in topics.into_iter().filter(|(t, _)| !t.ends_with(".dlq")) {
        let ends = db
            .transport
            .end_offsets(&topic)
            .await
            .map_err(|e| db.fail(e))?;
        for (partition, end) in ends.into_iter().enumerate() {
            let partition = partition as u32;
            let mut from = 0;
            while from < end {
                let records = db
                    .transport
                    .fetch(&topic, partition, from, BATCH)
                    .await
                    .map_err(|e| db.fail(e))?;
                let Some(last) = records.last() else { break };
                from = last.offset + 1;
                for record in &records {
                    let Ok(envelope) = output::decode(record) else {
                        continue;
                    };
                    if envelope.correlation_id.as_deref() != Some(id) {
                        continue;
                    }
                    nodes.push(Node {
                        id: envelope.id.to_string(),
                        ty: envelope.ty.to_string(),
                        version: envelope.version,
                        source: envelope.source.to_string(),
                        causation: envelope.causation_id.clone(),
                        time_ms: (envelope.time.unix_timestamp_nanos() / 1_000_000) as i64,
                        topic: topic.clone(),
                        partition,
                        offset: record.offset,
                        key: envelope.partition_key.clone(),
                        outcomes: Vec::new(),
                    });
                }
            }
        }
    }
    Ok(nodes)
}

/// Fills in what each group reading a node's topic did with it: its dead letter, else whether
/// its committed position is past the record.
async fn outcomes(db: &Db, nodes: &mut [Node]) -> Result<(), Error> {
    let positions = db
        .transport
        .group_positions()
        .await
        .map_err(|e| db.fail(e))?;
    let mut committed: BTreeMap<(String, u32), Vec<(String, u64)>> = BTreeMap::new();
    for (group, topic, partition, next) in positions {
        committed
            .entry((topic, partition))
            .or_default()
            .push((group, next));
    }
    let ids: BTreeSet<&str> = nodes.iter().map(|n| n.id.as_str()).collect();
    let mut letters: BTreeMap<(String, String), Outcome> = BTreeMap::new();
    if let Some(dlq) = db.dlq_if_any() {
        let all = dlq
            .list(&LetterFilter {
                include_closed: true,
                ..LetterFilter::default()
            })
            .await
            .map_err(|e| db.fail_store(e))?;
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
            .get(&(node.topic.clone(), node.partition))
            .cloned()
            .unwrap_or_default();
        for (group, next) in groups {
            let outcome = match letters.remove(&(group.clone(), node.id.clone())) {
                Some(letter) => letter,
                None if next > node.offset => Outcome::Handled,
                None => Outcome::Pending,
            };
            node.outcomes.push((group, outcome));
        }
    }
    Ok(())
}

/// The causal tree: each event under the event that caused it (its causation id), the others
/// as roots.
struct Tree {
    roots: Vec<usize>,
    children: Vec<Vec<usize>>,
}

impl Tree {
    fn new(nodes: &[Node]) -> Self {
        let index: BTreeMap<&str, usize> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.id.as_str(), i))
            .collect();
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
        Tree { roots, children }
    }

    fn json(&self, nodes: &[Node], i: usize) -> Value {
        let n = &nodes[i];
        let parent_time = n
            .causation
            .as_deref()
            .and_then(|c| nodes.iter().find(|p| p.id == c))
            .map(|p| p.time_ms);
        json!({
            "id": n.id,
            "type": n.ty,
            "version": n.version,
            "source": n.source,
            "causation_id": n.causation,
            "time": output::time_ms(n.time_ms),
            "after_cause_ms": parent_time.map(|t| n.time_ms - t),
            "topic": n.topic,
            "partition": n.partition,
            "offset": n.offset,
            "key": n.key,
            "groups": n.outcomes.iter().map(|(g, o)| {
                let mut v = o.json();
                v["group"] = json!(g);
                v
            }).collect::<Vec<_>>(),
            "caused": self.children[i].iter().map(|&c| self.json(nodes, c)).collect::<Vec<_>>(),
        })
    }

    fn text(&self, nodes: &[Node], out: &mut impl Write) -> io::Result<()> {
        for &root in &self.roots {
            self.text_node(nodes, root, "", true, true, out)?;
        }
        out.flush()
    }

    fn text_node(
        &self,
        nodes: &[Node],
        i: usize,
        prefix: &str,
        last: bool,
        root: bool,
        out: &mut impl Write,
    ) -> io::Result<()> {
        let n = &nodes[i];
        let (branch, next) = match (root, last) {
            (true, _) => ("", String::new()),
            (false, true) => ("└─ ", format!("{prefix}   ")),
            (false, false) => ("├─ ", format!("{prefix}│  ")),
        };
        let after = n
            .causation
            .as_deref()
            .and_then(|c| nodes.iter().find(|p| p.id == c))
            .map(|p| format!("  +{} ms", n.time_ms - p.time_ms))
            .unwrap_or_default();
        writeln!(
            out,
            "{prefix}{branch}{} v{}  {}/{}@{}  id={}  {}{}{}",
            clean(&n.ty),
            n.version,
            clean(&n.topic),
            n.partition,
            n.offset,
            clean(&n.id),
            output::time_ms(n.time_ms),
            after,
            n.key
                .as_deref()
                .map(|k| format!("  key={}", clean(k)))
                .unwrap_or_default(),
        )?;
        let children = &self.children[i];
        let rows = n.outcomes.len() + children.len();
        for (j, (group, outcome)) in n.outcomes.iter().enumerate() {
            let mark = if j + 1 == rows { "└─ " } else { "├─ " };
            writeln!(out, "{next}{mark}[{}] {}", clean(group), outcome.text())?;
        }
        for (j, &child) in children.iter().enumerate() {
            self.text_node(nodes, child, &next, j + 1 == children.len(), false, out)?;
        }
        Ok(())
    }

    fn mermaid(&self, nodes: &[Node], out: &mut impl Write) -> io::Result<()> {
        writeln!(out, "flowchart TD")?;
        let label = |s: &str| clean(s).replace('"', "'");
        for (i, n) in nodes.iter().enumerate() {
            writeln!(
                out,
                "  e{i}[\"{} v{}<br/>{}/{}@{}\"]",
                label(&n.ty),
                n.version,
                label(&n.topic),
                n.partition,
                n.offset
            )?;
            for (j, (group, outcome)) in n.outcomes.iter().enumerate() {
                let (shape_open, shape_close) = match outcome {
                    Outcome::Handled => ("([", "])"),
                    Outcome::Pending => ("[/", "/]"),
                    Outcome::DeadLettered { .. } => ("{{", "}}"),
                };
                let text = match outcome {
                    Outcome::DeadLettered { status, .. } => status.as_str().to_owned(),
                    other => other.text(),
                };
                writeln!(
                    out,
                    "  e{i}g{j}{shape_open}\"{}: {}\"{shape_close}",
                    label(group),
                    label(&text)
                )?;
                writeln!(out, "  e{i} -.-> e{i}g{j}")?;
            }
        }
        for (parent, children) in self.children.iter().enumerate() {
            for child in children {
                writeln!(out, "  e{parent} --> e{child}")?;
            }
        }
        out.flush()
    }
}
