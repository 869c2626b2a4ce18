//! `catalog.md`: the flow chart of the whole service, then one section per context and one
//! subsection per message (versions, key, SLAs, deprecation, producers, consumers, the fields
//! of the newest version and what changed between versions).

use std::fmt::Write as _;

use super::{Catalog, CatalogMessage, CatalogVersion, Party, diff, mermaid};

/// Text in a table cell: no newlines, `|` escaped.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\n', '\r'], " ")
}

fn code_list(items: &[String]) -> String {
    if items.is_empty() {
        "—".to_string()
    } else {
        items
            .iter()
            .map(|i| format!("`{i}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `Deprecated since 2026-01-01, sunset 2026-12-31: use x.` or `no`.
pub(crate) fn deprecation_text(version: &CatalogVersion) -> Option<String> {
    let d = version.deprecated.as_ref()?;
    let mut text = String::from("deprecated");
    if let Some(since) = &d.since {
        let _ = write!(text, " since {since}");
    }
    if let Some(sunset) = &d.sunset {
        let _ = write!(text, ", sunset {sunset}");
    }
    if let Some(note) = &d.note {
        let _ = write!(text, ": {note}");
    }
    Some(text)
}

/// `max latency 500 ms, retention 30 days` or `—`.
pub(crate) fn sla_text(version: &CatalogVersion) -> String {
    let mut parts = Vec::new();
    if let Some(ms) = version.sla.max_latency_ms {
        parts.push(format!("max latency {ms} ms"));
    }
    if let Some(secs) = version.sla.retention_secs {
        if secs % 86_400 == 0 {
            parts.push(format!("retention {} days", secs / 86_400));
        } else {
            parts.push(format!("retention {secs} s"));
        }
    }
    if parts.is_empty() {
        "—".to_string()
    } else {
        parts.join(", ")
    }
}

pub(crate) fn versions_text(versions: &[u32]) -> String {
    versions
        .iter()
        .map(|v| format!("v{v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn parties(out: &mut String, title: &str, parties: &[Party]) {
    let _ = writeln!(out, "**{title}:**");
    let _ = writeln!(out);
    if parties.is_empty() {
        let _ = writeln!(out, "- none in the code");
    }
    for p in parties {
        let _ = writeln!(
            out,
            "- `{}` in context `{}` ({}, {}) — `{}:{}`",
            p.function,
            p.context,
            p.via,
            versions_text(&p.versions),
            p.source.file,
            p.source.line
        );
    }
    let _ = writeln!(out);
}

fn message(out: &mut String, m: &CatalogMessage) {
    let latest = m.latest();
    let _ = writeln!(out, "### `{}` ({})", m.name, m.kind.as_str());
    let _ = writeln!(out);
    if let Some(d) = &m.description {
        let _ = writeln!(out, "{}", d.trim());
        let _ = writeln!(out);
    }
    let _ = writeln!(out, "- Owner context: `{}`", m.context);
    if let Some(owner) = &m.owner {
        match &owner.contact {
            Some(contact) => {
                let _ = writeln!(out, "- Owner team: {} ({contact})", owner.team);
            }
            None => {
                let _ = writeln!(out, "- Owner team: {}", owner.team);
            }
        }
    }
    let _ = writeln!(out, "- Topic: `{}`", m.topic);
    let versions: Vec<u32> = m.versions.iter().map(|v| v.version).collect();
    let _ = writeln!(
        out,
        "- Versions: {} (latest v{})",
        versions_text(&versions),
        m.latest_version
    );
    let _ = writeln!(
        out,
        "- Partition key: {}",
        code_list(&latest.key_properties)
    );
    if let Some(expr) = &latest.key_expr {
        let _ = writeln!(out, "- Key expression: `{expr}`");
    }
    let _ = writeln!(out, "- Dedupe key: {}", code_list(&latest.dedupe_fields));
    let _ = writeln!(out);
    let _ = writeln!(out, "| version | schema | SLA | deprecation | in code |");
    let _ = writeln!(out, "|---|---|---|---|---|");
    for v in &m.versions {
        let _ = writeln!(
            out,
            "| v{} | `{}` | {} | {} | {} |",
            v.version,
            v.schema_file,
            cell(&sla_text(v)),
            cell(&deprecation_text(v).unwrap_or_else(|| "—".into())),
            if v.in_code { "yes" } else { "registry only" }
        );
    }
    let _ = writeln!(out);
    parties(out, "Producers", &m.producers);
    parties(out, "Consumers", &m.consumers);
    let _ = writeln!(out, "**Fields (v{}):**", m.latest_version);
    let _ = writeln!(out);
    let _ = writeln!(out, "| field | type | required |");
    let _ = writeln!(out, "|---|---|---|");
    for p in diff::properties(&latest.schema).values() {
        let _ = writeln!(
            out,
            "| `{}` | {} | {} |",
            cell(&p.path),
            cell(&p.ty),
            if p.required { "yes" } else { "no" }
        );
    }
    let _ = writeln!(out);
    for pair in m.versions.windows(2) {
        let changes = diff::diff(&pair[0].schema, &pair[1].schema);
        let _ = writeln!(
            out,
            "**v{} → v{}:** {}",
            pair[0].version,
            pair[1].version,
            if changes.is_empty() {
                "no field changes"
            } else {
                ""
            }
        );
        let _ = writeln!(out);
        for c in &changes {
            let line = match c {
                diff::Change::Added { property } => {
                    format!("- added `{}`: {}", property.path, cell(&property.ty))
                }
                diff::Change::Removed { property } => {
                    format!("- removed `{}`: {}", property.path, cell(&property.ty))
                }
                diff::Change::Changed { from, to } => format!(
                    "- changed `{}`: {}{} → {}{}",
                    to.path,
                    cell(&from.ty),
                    if from.required { " (required)" } else { "" },
                    cell(&to.ty),
                    if to.required { " (required)" } else { "" }
                ),
            };
            let _ = writeln!(out, "{line}");
        }
        if !changes.is_empty() {
            let _ = writeln!(out);
        }
    }
}

/// `catalog.md`.
pub fn render(catalog: &Catalog) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Event catalog: {}", catalog.service);
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Generated by event-build from the code (handlers and producers) and the schema registry. Do not edit."
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "## Flows");
    let _ = writeln!(out);
    let _ = writeln!(out, "```mermaid");
    out.push_str(&mermaid::catalog_flowchart(catalog));
    let _ = writeln!(out, "```");
    let _ = writeln!(out);
    for saga in &catalog.sagas {
        let _ = writeln!(
            out,
            "## Saga `{}` (group `{}`, key `{}`)",
            saga.name, saga.group, saga.key
        );
        let _ = writeln!(out);
        if let Some(doc) = &saga.doc {
            let _ = writeln!(out, "{doc}");
            let _ = writeln!(out);
        }
        let _ = writeln!(out, "```mermaid");
        out.push_str(&mermaid::saga_flowchart(saga));
        let _ = writeln!(out, "```");
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "| step | kind | command | reply | fault | timeout | compensation |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|");
        for step in &saga.steps {
            let _ = writeln!(
                out,
                "| `{}` | {} | `{}` | `{}` | {} | {} ms | {} |",
                step.name,
                step_kind(step.kind),
                step.command.rust_type,
                step.reply.rust_type,
                step.fault
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), |f| format!("`{}`", f.rust_type)),
                step.timeout_ms,
                step.compensation.as_ref().map_or_else(
                    || "-".to_owned(),
                    |c| format!(
                        "`{}`{}",
                        c.function,
                        step.compensated
                            .as_ref()
                            .map(|m| format!(", awaits `{}`", m.rust_type))
                            .unwrap_or_default()
                    )
                ),
            );
        }
        let _ = writeln!(out);
    }
    for context in &catalog.contexts {
        let owned: Vec<&CatalogMessage> = catalog
            .messages
            .iter()
            .filter(|m| &m.context == context)
            .collect();
        let _ = writeln!(out, "## Context `{context}`");
        let _ = writeln!(out);
        let produces: Vec<String> = catalog
            .messages
            .iter()
            .filter(|m| m.producers.iter().any(|p| &p.context == context))
            .map(|m| m.name.clone())
            .collect();
        let consumes: Vec<String> = catalog
            .messages
            .iter()
            .filter(|m| m.consumers.iter().any(|c| &c.context == context))
            .map(|m| m.name.clone())
            .collect();
        let _ = writeln!(
            out,
            "- Owns: {}",
            code_list(&owned.iter().map(|m| m.name.clone()).collect::<Vec<_>>())
        );
        let _ = writeln!(out, "- Produces: {}", code_list(&produces));
        let _ = writeln!(out, "- Consumes: {}", code_list(&consumes));
        let _ = writeln!(out);
        for m in owned {
            message(&mut out, m);
        }
    }
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

/// `compensatable`, `pivot`, `retriable`.
pub(crate) fn step_kind(kind: crate::model::StepKind) -> &'static str {
    match kind {
        crate::model::StepKind::Compensatable => "compensatable",
        crate::model::StepKind::Pivot => "pivot",
        crate::model::StepKind::Retriable => "retriable",
    }
}
