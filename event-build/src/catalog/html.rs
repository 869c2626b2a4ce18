//! The static site: `index.html` (every context and message, and the flow chart),
//! `flows.html` (the flow chart and every flow) and `events/<name>.html` per message (field
//! table, example payload, JSON Schema and `.proto` of each version with a version picker, the diff between
//! any two versions with its compatibility verdict, producers, consumers, owner context, key,
//! SLAs, deprecation, and the message's own flow chart).
//!
//! Pages load nothing but `mermaid.min.js`, shipped next to them: no server, no network. The
//! diffs are computed at build time; the inline script only shows the selected one.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::json_schema;

use super::markdown::{deprecation_text, sla_text, versions_text};
use super::{Catalog, CatalogMessage, CatalogVersion, Party, Team, Verdict, diff, mermaid, slug};

/// Escapes text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "\
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#1f2328;line-height:1.45}
header{background:#24292f;color:#fff;padding:.6rem 1.2rem}header a{color:#fff;margin-right:1rem;text-decoration:none}
main{padding:1rem 1.5rem;max-width:72rem}
table{border-collapse:collapse;margin:.5rem 0 1rem}td,th{border:1px solid #d0d7de;padding:.25rem .6rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.9em}
pre.schema,pre.example{background:#f6f8fa;border:1px solid #d0d7de;padding:.8rem;overflow:auto;max-height:40rem}
.scroll{overflow-x:auto}.ok{color:#1a7f37}ul.violations{margin-top:0;overflow-wrap:anywhere}
.diagram{overflow-x:auto}h1,p code,li code{overflow-wrap:anywhere}
@media (max-width:40rem){main{padding:.6rem}td,th{padding:.2rem .35rem}table{display:block;overflow-x:auto;max-width:100%}h1{font-size:1.3rem}}
.deprecated{color:#9a6700;font-weight:600}.added{color:#1a7f37}.removed{color:#cf222e}.changed{color:#9a6700}
.mermaid{background:#fff}.muted{color:#57606a}
";

const SCRIPT: &str = "\
function evtShow(attr, key) {
  document.querySelectorAll('[' + attr + ']').forEach(function (e) {
    e.hidden = e.getAttribute(attr) !== key;
  });
}
function evtDiff() {
  var a = document.getElementById('diff-from'), b = document.getElementById('diff-to');
  if (a && b) { evtShow('data-diff', a.value + '-' + b.value); }
}
function evtSearch() {
  var box = document.getElementById('search');
  if (!box) { return; }
  var words = box.value.toLowerCase().split(/\\s+/).filter(function (w) { return w; });
  var shown = 0, rows = document.querySelectorAll('tr[data-search]');
  rows.forEach(function (row) {
    var text = row.getAttribute('data-search');
    row.hidden = !words.every(function (w) { return text.indexOf(w) >= 0; });
    if (!row.hidden) { shown += 1; }
  });
  var count = document.getElementById('search-count');
  if (count) { count.textContent = words.length ? shown + ' of ' + rows.length : ''; }
}
document.addEventListener('DOMContentLoaded', function () {
  var box = document.getElementById('search');
  if (box) {
    var q = new URLSearchParams(window.location.search).get('q');
    if (q) { box.value = q; }
    box.addEventListener('input', evtSearch);
    evtSearch();
  }
  var v = document.getElementById('version-picker');
  if (v) { v.addEventListener('change', function () { evtShow('data-version', v.value); }); }
  ['diff-from', 'diff-to'].forEach(function (id) {
    var e = document.getElementById(id);
    if (e) { e.addEventListener('change', evtDiff); }
  });
  evtDiff();
});
";

fn page(title: &str, root: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
<title>{title}</title>\n<link rel=\"icon\" href=\"data:,\">\n<style>\n{STYLE}</style>\n</head>\n<body>\n\
<header><a href=\"{root}index.html\">Event catalog</a><a href=\"{root}flows.html\">Flows</a></header>\n\
<main>\n{body}</main>\n<script src=\"{root}mermaid.min.js\"></script>\n<script>\n{SCRIPT}\
mermaid.initialize({{ startOnLoad: true, securityLevel: 'strict', theme: 'default' }});\n</script>\n\
</body>\n</html>\n",
        title = escape(title),
    )
}

fn diagram(source: &str) -> String {
    format!(
        "<div class=\"diagram\"><pre class=\"mermaid\">\n{}</pre></div>\n",
        escape(source)
    )
}

fn event_href(root: &str, name: &str) -> String {
    format!("{root}events/{}.html", escape(&slug(name)))
}

fn context_href(root: &str, context: &str) -> String {
    format!("{root}contexts/{}.html", escape(&slug(context)))
}

fn team_href(root: &str, team: &str) -> String {
    format!("{root}teams/{}.html", escape(&super::team_slug(team)))
}

/// A table of messages, one row each, linked from a page `root` levels down.
fn messages_table(root: &str, list: &[&CatalogMessage], searchable: bool) -> String {
    let mut out = String::from(
        "<table class=\"messages\">\n<tr><th>message</th><th>kind</th><th>context</th><th>team</th><th>versions</th><th>description</th></tr>\n",
    );
    for m in list {
        let versions: Vec<u32> = m.versions.iter().map(|v| v.version).collect();
        let deprecated = if m.latest().deprecated.is_some() {
            " <span class=\"deprecated\">deprecated</span>"
        } else {
            ""
        };
        let team = m.owner.as_ref().map_or_else(String::new, |o| {
            format!(
                "<a href=\"{}\">{}</a>",
                team_href(root, &o.team),
                escape(&o.team)
            )
        });
        // What the search box matches: name, context, team, description and field names.
        let search = if searchable {
            let mut words = vec![m.name.clone(), m.context.clone()];
            words.extend(m.owner.as_ref().map(|o| o.team.clone()));
            words.extend(m.description.clone());
            words.extend(m.latest().fields.iter().map(|f| f.property.path.clone()));
            format!(
                " data-search=\"{}\"",
                escape(&words.join(" ").to_lowercase())
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "<tr{search}><td><a href=\"{}\"><code>{}</code></a>{deprecated}</td><td>{}</td><td><a href=\"{}\">{}</a></td><td>{team}</td><td>{}</td><td>{}</td></tr>",
            event_href(root, &m.name),
            escape(&m.name),
            m.kind.as_str(),
            context_href(root, &m.context),
            escape(&m.context),
            escape(&versions_text(&versions)),
            escape(m.description.as_deref().unwrap_or("").trim())
        );
    }
    out.push_str("</table>\n");
    out
}

fn index(catalog: &Catalog) -> String {
    let mut body = String::new();
    let _ = writeln!(
        body,
        "<h1>Event catalog: {}</h1>\n<p class=\"muted\">Generated from the code (handlers and producers) and the schema registry.</p>",
        escape(&catalog.service)
    );
    let _ = writeln!(
        body,
        "<p><label>Search <input id=\"search\" type=\"search\" placeholder=\"name, context, team, field\" autocomplete=\"off\"></label> <span id=\"search-count\" class=\"muted\"></span></p>"
    );
    let all: Vec<&CatalogMessage> = catalog.messages.iter().collect();
    body.push_str(&messages_table("", &all, true));
    let _ = writeln!(body, "<h2>Flows between contexts</h2>");
    body.push_str(&diagram(&mermaid::catalog_flowchart(catalog)));
    let _ = writeln!(
        body,
        "<h2>Contexts</h2>\n<table>\n<tr><th>context</th><th>owns</th><th>produces</th><th>consumes</th></tr>"
    );
    for context in &catalog.contexts {
        let count =
            |f: &dyn Fn(&CatalogMessage) -> bool| catalog.messages.iter().filter(|m| f(m)).count();
        let _ = writeln!(
            body,
            "<tr><td><a href=\"{}\"><code>{}</code></a></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            context_href("", context),
            escape(context),
            count(&|m| &m.context == context),
            count(&|m| m.producers.iter().any(|p| &p.context == context)),
            count(&|m| m.consumers.iter().any(|c| &c.context == context)),
        );
    }
    let _ = writeln!(body, "</table>");
    let _ = writeln!(body, "<h2>Teams</h2>");
    if catalog.teams.is_empty() {
        let _ = writeln!(
            body,
            "<p class=\"muted\">No message declares an owning team (<code>owner(team = \"...\", contact = \"...\")</code>).</p>"
        );
    } else {
        let _ = writeln!(
            body,
            "<table>\n<tr><th>team</th><th>contact</th><th>contexts</th><th>messages</th></tr>"
        );
        for team in &catalog.teams {
            let _ = writeln!(
                body,
                "<tr><td><a href=\"{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                team_href("", &team.name),
                escape(&team.name),
                escape(team.contact.as_deref().unwrap_or("")),
                escape(&team.contexts.join(", ")),
                team.messages.len()
            );
        }
        let _ = writeln!(body, "</table>");
    }
    page(&format!("Event catalog: {}", catalog.service), "", &body)
}

fn context_page(catalog: &Catalog, context: &str) -> String {
    let mut body = String::new();
    let _ = writeln!(body, "<h1>Context <code>{}</code></h1>", escape(context));
    let owned: Vec<&CatalogMessage> = catalog
        .messages
        .iter()
        .filter(|m| m.context == context)
        .collect();
    let mut teams: Vec<&str> = owned
        .iter()
        .filter_map(|m| m.owner.as_ref().map(|o| o.team.as_str()))
        .collect();
    teams.sort_unstable();
    teams.dedup();
    if !teams.is_empty() {
        let links: Vec<String> = teams
            .iter()
            .map(|t| format!("<a href=\"{}\">{}</a>", team_href("../", t), escape(t)))
            .collect();
        let _ = writeln!(body, "<p>Owned by {}</p>", links.join(", "));
    }
    let _ = writeln!(body, "<h2>Owns</h2>");
    if owned.is_empty() {
        let _ = writeln!(body, "<p class=\"muted\">No message.</p>");
    } else {
        body.push_str(&messages_table("../", &owned, false));
    }
    let produces: Vec<&CatalogMessage> = catalog
        .messages
        .iter()
        .filter(|m| m.producers.iter().any(|p| p.context == context))
        .collect();
    let consumes: Vec<&CatalogMessage> = catalog
        .messages
        .iter()
        .filter(|m| m.consumers.iter().any(|c| c.context == context))
        .collect();
    for (title, list) in [("Produces", produces), ("Consumes", consumes)] {
        let _ = writeln!(body, "<h2>{title}</h2>");
        if list.is_empty() {
            let _ = writeln!(body, "<p class=\"muted\">Nothing in the code.</p>");
        } else {
            body.push_str(&messages_table("../", &list, false));
        }
    }
    page(&format!("Context {context}"), "../", &body)
}

fn team_page(catalog: &Catalog, team: &Team) -> String {
    let mut body = String::new();
    let _ = writeln!(body, "<h1>Team {}</h1>", escape(&team.name));
    if let Some(contact) = &team.contact {
        let _ = writeln!(body, "<p>Contact: {}</p>", escape(contact));
    }
    let contexts: Vec<String> = team
        .contexts
        .iter()
        .map(|c| {
            format!(
                "<a href=\"{}\"><code>{}</code></a>",
                context_href("../", c),
                escape(c)
            )
        })
        .collect();
    let _ = writeln!(body, "<p>Contexts: {}</p>", contexts.join(", "));
    let owned: Vec<&CatalogMessage> = catalog
        .messages
        .iter()
        .filter(|m| m.owner.as_ref().is_some_and(|o| o.team == team.name))
        .collect();
    let _ = writeln!(body, "<h2>Owns</h2>");
    body.push_str(&messages_table("../", &owned, false));
    page(&format!("Team {}", team.name), "../", &body)
}

fn flows(catalog: &Catalog) -> String {
    let mut body = String::new();
    let _ = writeln!(body, "<h1>Flows between contexts</h1>");
    body.push_str(&diagram(&mermaid::catalog_flowchart(catalog)));
    for saga in &catalog.sagas {
        let _ = writeln!(
            body,
            "<h2 id=\"saga-{}\">Saga <code>{}</code></h2>\n<p>Consumer group <a href=\"{}\"><code>{}</code></a>, key <code>{}</code>, {} attempts per command.</p>",
            escape(&saga.name),
            escape(&saga.name),
            context_href("", &saga.group),
            escape(&saga.group),
            escape(&saga.key),
            saga.attempts
        );
        if let Some(doc) = &saga.doc {
            let _ = writeln!(body, "<p>{}</p>", escape(doc));
        }
        body.push_str(&diagram(&mermaid::saga_flowchart(saga)));
        let _ = writeln!(
            body,
            "<table>\n<tr><th>step</th><th>kind</th><th>command</th><th>reply</th><th>fault</th><th>timeout</th><th>compensation</th></tr>"
        );
        for step in &saga.steps {
            let code = |text: &str| format!("<code>{}</code>", escape(text));
            let _ = writeln!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} ms</td><td>{}</td></tr>",
                code(&step.name),
                super::markdown::step_kind(step.kind),
                code(&step.command.rust_type),
                code(&step.reply.rust_type),
                step.fault
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), |f| code(&f.rust_type)),
                step.timeout_ms,
                step.compensation
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), |c| code(&c.function)),
            );
        }
        let _ = writeln!(body, "</table>");
    }
    if !catalog.sagas.is_empty() {
        let _ = writeln!(body, "<h2>Messages between contexts</h2>");
    }
    let _ = writeln!(
        body,
        "<table>\n<tr><th>from</th><th>message</th><th>kind</th><th>to</th></tr>"
    );
    for f in &catalog.flows {
        let to = match &f.to {
            Some(to) => format!("<a href=\"{}\">{}</a>", context_href("", to), escape(to)),
            None => "<span class=\"muted\">no consumer in the code</span>".to_string(),
        };
        let _ = writeln!(
            body,
            "<tr><td><a href=\"{}\">{}</a></td><td><a href=\"{}\"><code>{}</code></a></td><td>{}</td><td>{to}</td></tr>",
            context_href("", &f.from),
            escape(&f.from),
            event_href("", &f.message),
            escape(&f.message),
            f.kind.as_str()
        );
    }
    let _ = writeln!(body, "</table>");
    page(&format!("Flows: {}", catalog.service), "", &body)
}

fn parties(body: &mut String, catalog: &Catalog, title: &str, list: &[Party]) {
    let _ = writeln!(body, "<h2>{title}</h2>");
    if list.is_empty() {
        let _ = writeln!(body, "<p class=\"muted\">None in the code.</p>");
        return;
    }
    let _ = writeln!(
        body,
        "<table>\n<tr><th>context</th><th>function</th><th>how</th><th>versions</th><th>source</th><th>messages of this function</th></tr>"
    );
    for p in list {
        // The other messages the same function handles or produces, linked.
        let mut others: Vec<&str> = catalog
            .messages
            .iter()
            .filter(|m| {
                m.consumers
                    .iter()
                    .chain(&m.producers)
                    .any(|q| q.function == p.function)
            })
            .map(|m| m.name.as_str())
            .collect();
        others.dedup();
        let others: Vec<String> = others
            .iter()
            .map(|n| {
                format!(
                    "<a href=\"{}\"><code>{}</code></a>",
                    event_href("../", n),
                    escape(n)
                )
            })
            .collect();
        let _ = writeln!(
            body,
            "<tr><td><a href=\"{}\">{}</a></td><td><code>{}</code></td><td>{}</td><td>{}</td><td><code>{}:{}</code></td><td>{}</td></tr>",
            context_href("../", &p.context),
            escape(&p.context),
            escape(&p.function),
            escape(&p.via),
            escape(&versions_text(&p.versions)),
            escape(&p.source.file),
            p.source.line,
            others.join(", ")
        );
    }
    let _ = writeln!(body, "</table>");
}

fn changes_table(changes: &[diff::Change]) -> String {
    if changes.is_empty() {
        return "<p class=\"muted\">No field changes.</p>\n".to_string();
    }
    let mut out = String::from(
        "<table>\n<tr><th>change</th><th>field</th><th>before</th><th>after</th></tr>\n",
    );
    let describe = |p: &diff::Property| {
        format!(
            "<code>{}</code>{}",
            escape(&p.ty),
            if p.required { " required" } else { "" }
        )
    };
    for c in changes {
        let (class, before, after) = match c {
            diff::Change::Added { property } => ("added", String::new(), describe(property)),
            diff::Change::Removed { property } => ("removed", describe(property), String::new()),
            diff::Change::Changed { from, to } => ("changed", describe(from), describe(to)),
        };
        let _ = writeln!(
            out,
            "<tr class=\"{class}\"><td>{class}</td><td><code>{}</code></td><td>{before}</td><td>{after}</td></tr>",
            escape(c.path())
        );
    }
    out.push_str("</table>\n");
    out
}

/// The field table of one version.
fn fields_table(v: &CatalogVersion) -> String {
    let mut out = String::from("<h3>Fields</h3>\n");
    if v.fields.is_empty() {
        out.push_str("<p class=\"muted\">No fields.</p>\n");
        return out;
    }
    out.push_str(
        "<div class=\"scroll\"><table class=\"fields\">\n<tr><th>field</th><th>type</th><th>required</th><th>proto</th><th>since</th><th>description</th></tr>\n",
    );
    for f in &v.fields {
        let _ = writeln!(
            out,
            "<tr><td><code>{}</code></td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&f.property.path),
            escape(&f.property.ty),
            if f.property.required { "yes" } else { "no" },
            f.proto_field
                .map_or_else(|| "—".to_owned(), |n| n.to_string()),
            f.since.map_or_else(|| "—".to_owned(), |n| format!("v{n}")),
            escape(f.description.as_deref().unwrap_or(""))
        );
    }
    out.push_str("</table></div>\n");
    out
}

/// The example payload of one version, and whether it matches the schema.
fn example_block(v: &CatalogVersion) -> String {
    let origin = if v.example_from_registry {
        "from the registry"
    } else {
        "generated from the schema"
    };
    let check = if v.example_problems.is_empty() {
        format!(
            "<span class=\"ok\">valid against the v{} schema</span>",
            v.version
        )
    } else {
        format!(
            "<span class=\"deprecated\">does not match the v{} schema: {}</span>",
            v.version,
            escape(&v.example_problems.join("; "))
        )
    };
    format!(
        "<h3>Example payload</h3>\n<p class=\"muted\">{origin}; {check}</p>\n<pre class=\"example\">{}</pre>\n",
        escape(json_schema::to_pretty(&v.example).trim_end())
    )
}

/// The compatibility verdict of a pair of versions.
fn verdict_block(verdict: Option<&Verdict>, mode: Option<&str>) -> String {
    let Some(verdict) = verdict else {
        return String::new();
    };
    let mode = mode.unwrap_or("BACKWARD");
    let class = match verdict.outcome.as_str() {
        "breaking" => "deprecated",
        _ => "ok",
    };
    let mut out = format!(
        "<p class=\"verdict\">Under <code>{}</code>: <strong class=\"{class}\">{}</strong>",
        escape(mode),
        escape(&verdict.outcome)
    );
    if let Some(upcaster) = &verdict.upcaster {
        let _ = write!(out, "; {}", escape(upcaster));
    }
    out.push_str("</p>\n");
    if !verdict.violations.is_empty() {
        out.push_str("<ul class=\"violations\">\n");
        for line in &verdict.violations {
            let _ = writeln!(out, "<li>{}</li>", escape(line));
        }
        out.push_str("</ul>\n");
    }
    out
}

fn message_page(catalog: &Catalog, m: &CatalogMessage) -> String {
    let latest = m.latest();
    let mut body = String::new();
    let _ = writeln!(
        body,
        "<h1><code>{}</code> <span class=\"muted\">{}</span></h1>",
        escape(&m.name),
        m.kind.as_str()
    );
    if let Some(d) = &m.description {
        let _ = writeln!(body, "<p>{}</p>", escape(d.trim()));
    }
    let versions: Vec<u32> = m.versions.iter().map(|v| v.version).collect();
    let _ = writeln!(body, "<table>");
    let rows = [
        (
            "owner context",
            format!(
                "<a href=\"{}\">{}</a>",
                context_href("../", &m.context),
                escape(&m.context)
            ),
        ),
        (
            "owner team",
            m.owner.as_ref().map_or_else(
                || "<span class=\"muted\">not declared</span>".to_owned(),
                |o| {
                    let contact = o
                        .contact
                        .as_ref()
                        .map(|c| format!(" ({})", escape(c)))
                        .unwrap_or_default();
                    format!(
                        "<a href=\"{}\">{}</a>{contact}",
                        team_href("../", &o.team),
                        escape(&o.team)
                    )
                },
            ),
        ),
        ("topic", format!("<code>{}</code>", escape(&m.topic))),
        (
            "versions",
            format!(
                "{} (latest v{})",
                escape(&versions_text(&versions)),
                m.latest_version
            ),
        ),
        ("partition key", escape(&latest.key_properties.join(", "))),
        ("dedupe key", escape(&latest.dedupe_fields.join(", "))),
        (
            "content type",
            escape(latest.content_type.as_deref().unwrap_or("")),
        ),
    ];
    for (k, v) in rows {
        let _ = writeln!(body, "<tr><th>{k}</th><td>{v}</td></tr>");
    }
    let _ = writeln!(body, "</table>");

    let _ = writeln!(body, "<h2>SLAs and deprecation</h2>");
    let _ = writeln!(
        body,
        "<table>\n<tr><th>version</th><th>SLA</th><th>deprecation</th><th>in code</th><th>Rust type</th></tr>"
    );
    for v in &m.versions {
        let deprecation = match deprecation_text(v) {
            Some(text) => format!("<span class=\"deprecated\">{}</span>", escape(&text)),
            None => "—".to_string(),
        };
        let _ = writeln!(
            body,
            "<tr><td>v{}</td><td>{}</td><td>{deprecation}</td><td>{}</td><td><code>{}</code></td></tr>",
            v.version,
            escape(&sla_text(v)),
            if v.in_code { "yes" } else { "registry only" },
            escape(v.rust_type.as_deref().unwrap_or(""))
        );
    }
    let _ = writeln!(body, "</table>");

    parties(&mut body, catalog, "Producers", &m.producers);
    parties(&mut body, catalog, "Consumers", &m.consumers);

    let _ = writeln!(body, "<h2>Flow</h2>");
    body.push_str(&diagram(&mermaid::message_flowchart(catalog, &m.name)));

    let _ = writeln!(body, "<h2>Fields, example and schema</h2>");
    let options: String = m
        .versions
        .iter()
        .map(|v| {
            format!(
                "<option value=\"{0}\"{1}>v{0}</option>",
                v.version,
                if v.version == m.latest_version {
                    " selected"
                } else {
                    ""
                }
            )
        })
        .collect();
    let _ = writeln!(
        body,
        "<label>Version <select id=\"version-picker\">{options}</select></label>"
    );
    for v in &m.versions {
        let _ = writeln!(
            body,
            "<section data-version=\"{0}\"{1}>\n{2}{3}<h3>JSON Schema</h3>\n<p class=\"muted\"><code>{4}</code></p>\n<pre class=\"schema\">{5}</pre>\n{6}</section>",
            v.version,
            if v.version == m.latest_version {
                ""
            } else {
                " hidden"
            },
            fields_table(v),
            example_block(v),
            escape(&v.schema_file),
            escape(json_schema::to_pretty(&v.schema).trim_end()),
            v.proto.as_deref().map_or_else(String::new, |proto| format!(
                "<h3>proto3</h3>\n<pre class=\"schema proto\">{}</pre>\n",
                escape(proto.trim_end())
            ))
        );
    }

    let _ = writeln!(body, "<h2>Changes between versions</h2>");
    if m.versions.len() < 2 {
        let _ = writeln!(body, "<p class=\"muted\">Only one version.</p>");
    } else {
        let select = |id: &str, selected: u32| {
            let options: String = versions
                .iter()
                .map(|v| {
                    format!(
                        "<option value=\"{v}\"{}>v{v}</option>",
                        if *v == selected { " selected" } else { "" }
                    )
                })
                .collect();
            format!("<select id=\"{id}\">{options}</select>")
        };
        let before = versions[versions.len() - 2];
        let _ = writeln!(
            body,
            "<p><label>From {}</label> <label>to {}</label></p>",
            select("diff-from", before),
            select("diff-to", m.latest_version)
        );
        for a in &m.versions {
            for b in &m.versions {
                let key = format!("{}-{}", a.version, b.version);
                let shown = a.version == before && b.version == m.latest_version;
                let content = if a.version == b.version {
                    "<p class=\"muted\">Same version.</p>\n".to_string()
                } else {
                    let verdict = m.verdicts.iter().find(|v| {
                        (v.from, v.to) == (a.version.min(b.version), a.version.max(b.version))
                    });
                    format!(
                        "{}{}",
                        verdict_block(verdict, m.compatibility.as_deref()),
                        changes_table(&diff::diff(&a.schema, &b.schema))
                    )
                };
                let _ = writeln!(
                    body,
                    "<section data-diff=\"{key}\"{}>\n<h3>v{} → v{}</h3>\n{content}</section>",
                    if shown { "" } else { " hidden" },
                    a.version,
                    b.version
                );
            }
        }
    }
    page(&m.name, "../", &body)
}

/// Every page, by path relative to the site directory.
pub fn render(catalog: &Catalog) -> BTreeMap<String, String> {
    let mut pages = BTreeMap::new();
    pages.insert("index.html".to_string(), index(catalog));
    pages.insert("flows.html".to_string(), flows(catalog));
    for context in &catalog.contexts {
        pages.insert(
            format!("contexts/{}.html", slug(context)),
            context_page(catalog, context),
        );
    }
    for team in &catalog.teams {
        pages.insert(
            format!("teams/{}.html", team.slug()),
            team_page(catalog, team),
        );
    }
    for m in &catalog.messages {
        pages.insert(
            format!("events/{}.html", m.slug()),
            message_page(catalog, m),
        );
    }
    pages
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn every_team_name_has_a_page_of_its_own() {
        use super::super::team_slug;
        let names = ["Team A", "Team_A", "Team/A", "team-a", "Équipe", "Équipé"];
        let slugs: std::collections::BTreeSet<String> =
            names.iter().map(|n| team_slug(n)).collect();
        assert_eq!(slugs.len(), names.len(), "{slugs:?}");
        assert_eq!(team_slug("Team A"), "Team_20A");
        assert!(slugs.iter().all(|s| {
            s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        }));
    }

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
