//! The static site: `index.html` (every context and message, and the flow chart),
//! `flows.html` (the flow chart and every flow) and `events/<name>.html` per message (schema of
//! each version with a version picker, the diff between any two versions, producers,
//! consumers, owner context, key, SLAs, deprecation, and the message's own flow chart).
//!
//! Pages load nothing but `mermaid.min.js`, shipped next to them: no server, no network. The
//! diffs are computed at build time; the inline script only shows the selected one.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::json_schema;

use super::markdown::{deprecation_text, sla_text, versions_text};
use super::{Catalog, CatalogMessage, Party, diff, mermaid, slug};

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
pre.schema{background:#f6f8fa;border:1px solid #d0d7de;padding:.8rem;overflow:auto;max-height:40rem}
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
document.addEventListener('DOMContentLoaded', function () {
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
    format!("{root}index.html#context-{}", escape(&slug(context)))
}

fn index(catalog: &Catalog) -> String {
    let mut body = String::new();
    let _ = writeln!(
        body,
        "<h1>Event catalog: {}</h1>\n<p class=\"muted\">Generated from the code (handlers and producers) and the schema registry.</p>",
        escape(&catalog.service)
    );
    let _ = writeln!(body, "<h2>Flows between contexts</h2>");
    body.push_str(&diagram(&mermaid::catalog_flowchart(catalog)));
    for context in &catalog.contexts {
        let _ = writeln!(
            body,
            "<h2 id=\"context-{}\">Context <code>{}</code></h2>",
            escape(&slug(context)),
            escape(context)
        );
        let owned: Vec<&CatalogMessage> = catalog
            .messages
            .iter()
            .filter(|m| &m.context == context)
            .collect();
        if !owned.is_empty() {
            let _ = writeln!(
                body,
                "<table>\n<tr><th>message</th><th>kind</th><th>versions</th><th>description</th></tr>"
            );
            for m in owned {
                let versions: Vec<u32> = m.versions.iter().map(|v| v.version).collect();
                let deprecated = if m.latest().deprecated.is_some() {
                    " <span class=\"deprecated\">deprecated</span>"
                } else {
                    ""
                };
                let _ = writeln!(
                    body,
                    "<tr><td><a href=\"{}\"><code>{}</code></a>{deprecated}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    event_href("", &m.name),
                    escape(&m.name),
                    m.kind.as_str(),
                    escape(&versions_text(&versions)),
                    escape(m.description.as_deref().unwrap_or(""))
                );
            }
            let _ = writeln!(body, "</table>");
        }
        let consumes: Vec<&CatalogMessage> = catalog
            .messages
            .iter()
            .filter(|m| m.consumers.iter().any(|c| &c.context == context))
            .collect();
        let produces: Vec<&CatalogMessage> = catalog
            .messages
            .iter()
            .filter(|m| m.producers.iter().any(|p| &p.context == context))
            .collect();
        for (title, list) in [("Produces", produces), ("Consumes", consumes)] {
            if list.is_empty() {
                continue;
            }
            let links: Vec<String> = list
                .iter()
                .map(|m| {
                    format!(
                        "<a href=\"{}\"><code>{}</code></a>",
                        event_href("", &m.name),
                        escape(&m.name)
                    )
                })
                .collect();
            let _ = writeln!(body, "<p>{title}: {}</p>", links.join(", "));
        }
    }
    page(&format!("Event catalog: {}", catalog.service), "", &body)
}

fn flows(catalog: &Catalog) -> String {
    let mut body = String::new();
    let _ = writeln!(body, "<h1>Flows between contexts</h1>");
    body.push_str(&diagram(&mermaid::catalog_flowchart(catalog)));
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

    let _ = writeln!(body, "<h2>Schema</h2>");
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
            "<section data-version=\"{0}\"{1}>\n<p class=\"muted\"><code>{2}</code></p>\n<pre class=\"schema\">{3}</pre>\n</section>",
            v.version,
            if v.version == m.latest_version {
                ""
            } else {
                " hidden"
            },
            escape(&v.schema_file),
            escape(json_schema::to_pretty(&v.schema).trim_end())
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
                    changes_table(&diff::diff(&a.schema, &b.schema))
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
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
