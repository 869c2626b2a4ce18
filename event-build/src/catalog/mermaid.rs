//! Mermaid flow charts of the flows between contexts, and the Mermaid library the site ships.
//!
//! `assets/mermaid.min.js` is Mermaid 11.17.2 (`dist/mermaid.min.js` of the npm package,
//! MIT, `assets/mermaid.LICENSE`), 3.6 MB: vendored once and embedded here so that the site
//! works offline, from the file system, with no CDN.

use std::collections::BTreeSet;

use crate::model::MessageKind;

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
