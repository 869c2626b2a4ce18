//! Mermaid flow charts of the flows between contexts, and the Mermaid library the site ships.
//!
//! `assets/mermaid.min.js` is Mermaid 11.17.2 (`dist/mermaid.min.js` of the npm package,
//! MIT, `assets/mermaid.LICENSE`), 3.6 MB: vendored once and embedded here so that the site
//! works offline, from the file system, with no CDN.

use std::collections::BTreeSet;

use crate::model::{MessageKind, Saga, StepKind};

use super::{Catalog, Flow};

/// `mermaid.min.js`.
pub static MERMAID_JS: &[u8] = include_bytes!("../../assets/mermaid.min.js");
/// Its license.
pub static MERMAID_LICENSE: &[u8] = include_bytes!("../../assets/mermaid.LICENSE");
/// The Mermaid version shipped.
pub const MERMAID_VERSION: &str = "11.17.2";

/// A label inside `["..."]`: Mermaid's entity codes for the characters it would read as syntax.
fn label(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("#quot;"),
            '#' => out.push_str("#35;"),
            '<' => out.push_str("#lt;"),
            '>' => out.push_str("#gt;"),
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// The flow chart of `flows` (all of the catalog's, or those of one message): context ->
/// message -> context, events as rounded boxes, commands as hexagons.
pub fn flowchart(catalog: &Catalog, flows: &[&Flow]) -> String {
    let mut out = String::from("flowchart LR\n");
    let contexts: BTreeSet<&str> = flows
        .iter()
        .flat_map(|f| std::iter::once(f.from.as_str()).chain(f.to.as_deref()))
        .collect();
    let context_id = |name: &str| {
        let index = catalog
            .contexts
            .iter()
            .position(|c| c == name)
            .unwrap_or(usize::MAX);
        format!("c{index}")
    };
    let message_id = |name: &str| {
        let index = catalog
            .messages
            .iter()
            .position(|m| m.name == name)
            .unwrap_or(usize::MAX);
        format!("m{index}")
    };
    for c in &contexts {
        out.push_str(&format!("  {}[\"{}\"]\n", context_id(c), label(c)));
    }
    let messages: BTreeSet<(&str, MessageKind)> =
        flows.iter().map(|f| (f.message.as_str(), f.kind)).collect();
    for (m, kind) in &messages {
        let id = message_id(m);
        match kind {
            MessageKind::Event => out.push_str(&format!("  {id}([\"{}\"])\n", label(m))),
            MessageKind::Command => out.push_str(&format!("  {id}{{{{\"{}\"}}}}\n", label(m))),
        }
    }
    let mut edges = BTreeSet::new();
    for f in flows {
        edges.insert(format!(
            "  {} --> {}\n",
            context_id(&f.from),
            message_id(&f.message)
        ));
        if let Some(to) = &f.to {
            edges.insert(format!(
                "  {} --> {}\n",
                message_id(&f.message),
                context_id(to)
            ));
        }
    }
    for e in edges {
        out.push_str(&e);
    }
    out.push_str("  classDef context fill:#e8f0fe,stroke:#3367d6\n");
    if !contexts.is_empty() {
        let ids: Vec<String> = contexts.iter().map(|c| context_id(c)).collect();
        out.push_str(&format!("  class {} context\n", ids.join(",")));
    }
    out
}

/// The flow chart of the whole catalog.
pub fn catalog_flowchart(catalog: &Catalog) -> String {
    let flows: Vec<&Flow> = catalog.flows.iter().collect();
    flowchart(catalog, &flows)
}

/// The flow chart of one message.
pub fn message_flowchart(catalog: &Catalog, name: &str) -> String {
    let flows: Vec<&Flow> = catalog.flows.iter().filter(|f| f.message == name).collect();
    flowchart(catalog, &flows)
}

/// The flow chart of one saga: its start, its steps left to right (commands as hexagons, the
/// pivot drawn thick) with their replies on the edges, and below them its compensations, which
/// the faults and timeouts lead into (dotted), unwinding right to left to `failed`.
pub fn saga_flowchart(saga: &Saga) -> String {
    let mut out = String::from("flowchart LR\n");
    let starts: Vec<&str> = saga.starts.iter().map(|m| m.rust_type.as_str()).collect();
    out.push_str(&format!("  start([\"{}\"])\n", label(&starts.join(" / "))));
    for (i, step) in saga.steps.iter().enumerate() {
        out.push_str(&format!(
            "  s{i}{{{{\"{}<br/>{}\"}}}}\n",
            label(&step.name),
            label(&step.command.rust_type)
        ));
        if let Some(command) = step.compensation.as_ref().and_then(|c| c.command.as_ref()) {
            out.push_str(&format!(
                "  u{i}[\"{}<br/>{}\"]\n",
                label(step.compensation.as_ref().map_or("", |c| &c.function)),
                label(&command.rust_type)
            ));
        }
    }
    out.push_str("  done([\"completed\"])\n  failed([\"failed\"])\n");
    let compensated = |i: usize| {
        saga.steps[i]
            .compensation
            .as_ref()
            .is_some_and(|c| c.command.is_some())
    };
    // Where undoing goes once the steps before `i` (exclusive) are to be undone.
    let undo_from = |i: usize| {
        (0..i)
            .rev()
            .find(|&j| saga.steps[j].kind == StepKind::Compensatable && compensated(j))
            .map_or_else(|| "failed".to_owned(), |j| format!("u{j}"))
    };
    if !saga.steps.is_empty() {
        out.push_str("  start --> s0\n");
    }
    for (i, step) in saga.steps.iter().enumerate() {
        let next = if i + 1 < saga.steps.len() {
            format!("s{}", i + 1)
        } else {
            "done".to_owned()
        };
        out.push_str(&format!(
            "  s{i} -->|\"{}\"| {next}\n",
            label(&step.reply.rust_type)
        ));
        let timeout = format!("timeout {}", duration(step.timeout_ms));
        if let Some(fault) = &step.fault {
            match step.kind {
                StepKind::Retriable => out.push_str(&format!(
                    "  s{i} -.->|\"{}: again\"| s{i}\n",
                    label(&fault.rust_type)
                )),
                _ => out.push_str(&format!(
                    "  s{i} -.->|\"{}\"| {}\n",
                    label(&fault.rust_type),
                    undo_from(i)
                )),
            }
        }
        match step.kind {
            StepKind::Compensatable => out.push_str(&format!(
                "  s{i} -.->|\"{timeout}\"| {}\n",
                undo_from(i + 1)
            )),
            StepKind::Pivot | StepKind::Retriable => {
                out.push_str(&format!("  s{i} -.->|\"{timeout}: again\"| s{i}\n"))
            }
        }
        if compensated(i) {
            let label_text = step
                .compensated
                .as_ref()
                .map(|m| format!("|\"{}\"|", label(&m.rust_type)))
                .unwrap_or_default();
            out.push_str(&format!("  u{i} -->{label_text} {}\n", undo_from(i)));
        }
    }
    out.push_str("  classDef pivot stroke-width:4px\n");
    if let Some(i) = saga.steps.iter().position(|s| s.kind == StepKind::Pivot) {
        out.push_str(&format!("  class s{i} pivot\n"));
    }
    out
}

/// `5s`, `1m`, `250ms`: a timeout as written.
fn duration(ms: u64) -> String {
    match ms {
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1_000 == 0 => format!("{}s", ms / 1_000),
        ms => format!("{ms}ms"),
    }
}
