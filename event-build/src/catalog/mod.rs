//! The event catalog: what every event and command of a crate looks like, who produces it and
//! who consumes it, rendered as JSON, Markdown and a static HTML site, and the AsyncAPI document
//! ([`asyncapi`]). Near the top of the pipeline: it reads the model and the JSON schemas, and
//! only the driver is above it.
//!
//! Everything comes from the scanned [`Model`] (producers and consumers from the code: handler
//! registrations and the places that publish or send) and, when a schema registry directory is
//! given, from its published versions (`<registry>/<context>/<name>/v<N>.schema.json`, listed by
//! reading the directory), so versions whose Rust types are gone still appear.
//!
//! | file | what |
//! |---|---|
//! | `catalog.json` | the machine-readable catalog ([`json`]) |
//! | `catalog.md` | one section per context and message, and a Mermaid flow chart ([`markdown`]) |
//! | `asyncapi.json` | the AsyncAPI 3.0 document of the service ([`asyncapi`]) |
//! | `site/index.html`, `site/flows.html`, `site/events/<name>.html` | the static site ([`html`]) |
//! | `site/mermaid.min.js`, `site/mermaid.LICENSE` | Mermaid, shipped with the site: no CDN |
//!
//! The site needs no server and no network: open `site/index.html` from the file system. The
//! diff between any two versions of a message is computed here ([`diff`]) with the
//! compatibility verdict under the message's mode and the upcaster that covers it ([`Verdict`]),
//! and embedded in the page; a few lines of inline JavaScript switch between the precomputed
//! pairs. Each version shows its field table (type, required, description, protobuf number, the
//! version it appeared in), an example payload (the registry's, else generated from the
//! schema, checked against it), its JSON Schema and its `.proto`.
//!
//! ```no_run
//! # fn main() -> Result<(), event_build::Error> {
//! let generated = event_build::Config::new().generate()?;
//! event_build::catalog::write(&generated.model, std::path::Path::new("target/catalog"))?;
//! # Ok(())
//! # }
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::compat::CompatibilityMode;
use crate::error::Error;
use crate::model::{Deprecation, MessageKind, Model, Owner, Sla, Source, Via};
use crate::{example, json_schema, proto};

pub mod asyncapi;
pub mod diff;
pub mod html;
pub mod json;
pub mod markdown;
pub mod mermaid;

/// How to build the catalog.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The service (crate) name, the AsyncAPI `info.title` (default: `service`).
    pub service: Option<String>,
    /// A schema registry directory (`<dir>/<context>/<name>/v<N>.schema.json`) whose published
    /// versions are listed next to the ones in the code. Ignored when it does not exist.
    pub registry_dir: Option<PathBuf>,
}

/// The whole catalog, as data.
#[derive(Clone, Debug, Serialize)]
pub struct Catalog {
    /// The service the model was scanned from.
    pub service: String,
    /// Every context that owns, produces or consumes a message, sorted.
    pub contexts: Vec<String>,
    /// Every team that owns a message, sorted by name.
    pub teams: Vec<Team>,
    /// Every message name, sorted by context and name.
    pub messages: Vec<CatalogMessage>,
    /// The flows between contexts, sorted.
    pub flows: Vec<Flow>,
    /// The `#[saga]` sagas, as scanned.
    pub sagas: Vec<crate::model::Saga>,
}

/// One message name with all its versions.
#[derive(Clone, Debug, Serialize)]
pub struct CatalogMessage {
    /// `event` or `command`.
    pub kind: MessageKind,
    /// The CloudEvents `type`.
    pub name: String,
    /// The owning (event) or target (command) context.
    pub context: String,
    /// The owning team (`owner(team = ...)` on the newest version that declares one).
    pub owner: Option<Owner>,
    /// The newest version's description.
    pub description: Option<String>,
    /// The newest version.
    pub latest_version: u32,
    /// The broker topic (events: the context; commands: `<context>.commands`).
    pub topic: String,
    /// Every version, oldest first.
    pub versions: Vec<CatalogVersion>,
    /// The compatibility mode its versions are checked under (the newest version's).
    pub compatibility: Option<String>,
    /// The compatibility verdict of every pair of versions, older first.
    pub verdicts: Vec<Verdict>,
    /// Where it is produced, from the code.
    pub producers: Vec<Party>,
    /// The handlers that consume it, from the code.
    pub consumers: Vec<Party>,
}

/// One version of a message.
#[derive(Clone, Debug, Serialize)]
pub struct CatalogVersion {
    /// The version.
    pub version: u32,
    /// Whether a Rust type of the crate declares it (else only the registry has it).
    pub in_code: bool,
    /// Whether the registry has published it (`None`: no registry given).
    pub published: Option<bool>,
    /// Its description.
    pub description: Option<String>,
    /// Deprecation schedule.
    pub deprecated: Option<Deprecation>,
    /// Service-level targets.
    pub sla: Sla,
    /// `json` or `protobuf`.
    pub codec: Option<String>,
    /// The content type.
    pub content_type: Option<String>,
    /// The Rust type.
    pub rust_type: Option<String>,
    /// The partition key fields (Rust names).
    pub key_fields: Vec<String>,
    /// The wire names of the key fields.
    pub key_properties: Vec<String>,
    /// The key expression, when the key is not a list of fields.
    pub key_expr: Option<String>,
    /// The dedupe key fields (Rust names).
    pub dedupe_fields: Vec<String>,
    /// The JSON Schema file, relative to the output directory of the build.
    pub schema_file: String,
    /// The JSON Schema.
    pub schema: Value,
    /// The proto3 file: generated for a version in the code, the registry's for one only the
    /// registry has (`None` when it has none).
    pub proto: Option<String>,
    /// Every field (nested ones as `a.b`, `lines[].sku`), with its type, requiredness,
    /// description, protobuf number and the first version it appeared in.
    pub fields: Vec<diff::FieldRow>,
    /// An example payload: the registry's (`v<N>.example.json`) when it has one, else generated
    /// from the schema.
    pub example: Value,
    /// Whether [`example`](Self::example) comes from the registry.
    pub example_from_registry: bool,
    /// Where the example does not match the schema (empty: it matches).
    pub example_problems: Vec<String>,
    /// Where the Rust type is declared.
    pub source: Option<Source>,
}

/// Whether a newer version keeps the promises of an older one under the message's mode.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// The older version.
    pub from: u32,
    /// The newer version.
    pub to: u32,
    /// `compatible`, `covered by upcaster` (only breaks the newer type's upcaster chain reads
    /// around, as the gate waives them), `breaking`, or `unknown` (the `.proto` files could not
    /// be compared).
    pub outcome: String,
    /// What breaks the mode, one line each.
    pub violations: Vec<String>,
    /// How the newer type reads the older version, when an upcaster chain covers it.
    pub upcaster: Option<String>,
}

/// The verdict of `to` against `from` under `mode`.
fn verdict(
    name: &str,
    mode: CompatibilityMode,
    from: &CatalogVersion,
    to: &CatalogVersion,
) -> Verdict {
    use crate::compat::{self, Direction, SchemaVersion};
    // The gate's check: the JSON schemas, and the `.proto` files when both versions have one.
    fn version(v: &CatalogVersion, with_proto: bool) -> SchemaVersion<'_> {
        match &v.proto {
            Some(proto) if with_proto => SchemaVersion::with_proto(v.version, &v.schema, proto),
            _ => SchemaVersion::json(v.version, &v.schema),
        }
    }
    let with_proto = from.proto.is_some() && to.proto.is_some();
    let checked = compat::check(
        name,
        mode,
        &version(to, with_proto),
        &[version(from, with_proto)],
    );
    let (violations, unreadable) = match checked {
        Ok(violations) => (violations, None),
        Err(err) => (Vec::new(), Some(err.to_string())),
    };
    let upcast_from = to
        .schema
        .pointer("/x-event/upcast_from")
        .and_then(Value::as_u64)
        .filter(|oldest| *oldest <= u64::from(from.version));
    let upcaster = upcast_from.map(|oldest| {
        format!(
            "v{} reads v{} through its upcaster chain (which starts at v{oldest})",
            to.version, from.version
        )
    });
    // As the gate waives them: backward breaks, and protobuf ones when the mode promises
    // nothing forward.
    let covered = upcaster.is_some()
        && violations.iter().all(|v| {
            v.direction == Direction::Backward
                || (v.direction == Direction::Wire && !mode.checks_forward())
        });
    let outcome = if unreadable.is_some() {
        "unknown"
    } else if violations.is_empty() {
        "compatible"
    } else if covered {
        "covered by upcaster"
    } else {
        "breaking"
    };
    let lines = violations
        .iter()
        .map(|v| {
            let field = v.field();
            let place = if field.is_empty() {
                "the payload".to_owned()
            } else {
                format!("`{field}`")
            };
            let detail = if v.detail.is_empty() {
                String::new()
            } else {
                format!(" ({})", v.detail)
            };
            format!("{}: {place}: {}{detail}", v.direction, v.rule)
        })
        .chain(unreadable.map(|err| format!("the .proto files could not be compared: {err}")))
        .collect();
    Verdict {
        from: from.version,
        to: to.version,
        outcome: outcome.to_owned(),
        violations: lines,
        upcaster,
    }
}

/// The registry's file `v<version>.<suffix>` of a version, when it has one.
fn registry_file(
    registry: Option<&Path>,
    context: &str,
    name: &str,
    version: u32,
    suffix: &str,
) -> Option<String> {
    let path = registry?
        .join(context)
        .join(name)
        .join(format!("v{version}.{suffix}"));
    std::fs::read_to_string(path).ok()
}

/// Fills what is derived from the schema: fields, example, and when each field appeared.
fn complete(
    versions: &mut BTreeMap<u32, CatalogVersion>,
    registry: Option<&Path>,
    context: &str,
    name: &str,
) {
    let mut first_seen: BTreeMap<String, u32> = BTreeMap::new();
    for v in versions.values_mut() {
        v.fields = diff::fields(&v.schema);
        for field in &mut v.fields {
            let since = *first_seen
                .entry(field.property.path.clone())
                .or_insert(v.version);
            field.since = Some(since);
        }
        if v.proto.is_none() {
            v.proto = registry_file(registry, context, name, v.version, "proto");
        }
        let stored = registry_file(registry, context, name, v.version, "example.json")
            .and_then(|text| serde_json::from_str(&text).ok());
        match stored {
            Some(example) => {
                v.example = example;
                v.example_from_registry = true;
            }
            None => v.example = example::example(&v.schema),
        }
        v.example_problems = example::validate(&v.schema, &v.example)
            .iter()
            .map(ToString::to_string)
            .collect();
    }
}

/// A team and what it owns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Team {
    /// The team's name.
    pub name: String,
    /// How to reach it (the first contact declared for it).
    pub contact: Option<String>,
    /// The messages it owns, by name.
    pub messages: Vec<String>,
    /// The contexts of those messages.
    pub contexts: Vec<String>,
}

impl Team {
    /// A file-name-safe slug of the name, one per name: letters, digits, `-` and `.` are
    /// kept, every other byte is written `_xx` (so "Team A" and "Team_A" get different pages).
    pub fn slug(&self) -> String {
        team_slug(&self.name)
    }
}

/// See [`Team::slug`].
pub fn team_slug(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'.' {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("_{byte:02x}"));
        }
    }
    out
}

/// A producer or a consumer.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Party {
    /// The context (consumer group, or the first module of the function when it is not in a
    /// handler).
    pub context: String,
    /// `module::function`.
    pub function: String,
    /// The consumer group, for handlers.
    pub group: Option<String>,
    /// `publish`, `send`, `envelope_event`, `envelope_command` or `handler`.
    pub via: String,
    /// The versions it produces or consumes.
    pub versions: Vec<u32>,
    /// Where.
    pub source: Source,
}

/// A message going from one context to another.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Flow {
    /// The producing context.
    pub from: String,
    /// The message name.
    pub message: String,
    /// The consuming context (`None`: nobody in the code consumes it).
    pub to: Option<String>,
    /// `event` or `command`.
    pub kind: MessageKind,
}

impl CatalogMessage {
    /// The newest version.
    pub fn latest(&self) -> &CatalogVersion {
        self.versions
            .iter()
            .find(|v| v.version == self.latest_version)
            .unwrap_or_else(|| unreachable!("a catalog message has its latest version"))
    }

    /// A file-name-safe slug of the name.
    pub fn slug(&self) -> String {
        slug(&self.name)
    }
}

/// A file-name-safe form of `name`.
pub fn slug(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The topic a message goes to: events to their context, commands to `<context>.commands`.
pub fn topic(kind: MessageKind, context: &str) -> String {
    match kind {
        MessageKind::Event => context.to_string(),
        MessageKind::Command => format!("{context}.commands"),
    }
}

/// The context a producer acts in: its handler's group; outside a handler, for an event, the
/// event's own context (a fact is its owner's, whichever function builds it); for a command,
/// the top module it is sent from (modules named after contexts), else the command's context.
fn producer_context(p: &crate::model::Producer, kind: MessageKind, context: &str) -> String {
    if let Some(group) = &p.group {
        return group.clone();
    }
    let top = p.module.split("::").next().filter(|top| !top.is_empty());
    match (kind, top) {
        (MessageKind::Command, Some(top)) => top.to_owned(),
        _ => context.to_owned(),
    }
}

fn via_str(via: Via) -> &'static str {
    match via {
        Via::Publish => "publish",
        Via::Send => "send",
        Via::EnvelopeEvent => "envelope_event",
        Via::EnvelopeCommand => "envelope_command",
    }
}

/// The versions published in `registry/<context>/<name>/`, with their schemas.
fn registry_versions(
    registry: &Path,
    context: &str,
    name: &str,
) -> Result<BTreeMap<u32, Value>, Error> {
    let dir = registry.join(context).join(name);
    let mut out = BTreeMap::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(err) => return Err(Error::io(&dir, err)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(&dir, e))?;
        let file = entry.file_name();
        let file = file.to_string_lossy();
        let Some(version) = file
            .strip_prefix('v')
            .and_then(|f| f.strip_suffix(".schema.json"))
            .and_then(|v| v.parse::<u32>().ok())
        else {
            continue;
        };
        let path = entry.path();
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let schema = serde_json::from_str(&text).map_err(|e| {
            Error::io(
                &path,
                std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            )
        })?;
        out.insert(version, schema);
    }
    Ok(out)
}

/// The wire (serde) names of `rust_fields` in a struct payload.
fn wire_names(payload: &crate::model::Shape, rust_fields: &[String]) -> Vec<String> {
    rust_fields
        .iter()
        .map(|rust| match payload {
            crate::model::Shape::Struct { fields, .. } => fields
                .iter()
                .find(|f| &f.rust_name == rust)
                .map_or_else(|| rust.clone(), |f| f.name.clone()),
            _ => rust.clone(),
        })
        .collect()
}

impl Catalog {
    /// Builds the catalog of `model`.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Io`] when the registry directory cannot be read or holds a schema
    /// that is not JSON.
    pub fn build(model: &Model, options: &Options) -> Result<Catalog, Error> {
        let registry = options.registry_dir.as_deref().filter(|d| d.is_dir());
        let mut names: Vec<(&str, &str, MessageKind)> = Vec::new();
        for m in &model.messages {
            if !names.iter().any(|(_, n, _)| *n == m.name) {
                names.push((&m.context, &m.name, m.kind));
            }
        }
        names.sort();
        let mut messages = Vec::new();
        for (context, name, kind) in names {
            let published = match registry {
                Some(dir) => Some(registry_versions(dir, context, name)?),
                None => None,
            };
            let mut versions: BTreeMap<u32, CatalogVersion> = BTreeMap::new();
            for m in model.messages.iter().filter(|m| m.name == name) {
                versions.insert(
                    m.version,
                    CatalogVersion {
                        version: m.version,
                        in_code: true,
                        published: published.as_ref().map(|p| p.contains_key(&m.version)),
                        description: m.description.clone(),
                        deprecated: m.deprecated.clone(),
                        sla: m.sla.clone(),
                        codec: Some(m.codec.clone()),
                        content_type: Some(m.content_type.clone()),
                        rust_type: Some(m.rust_type.clone()),
                        key_fields: m.key_fields.clone(),
                        key_properties: wire_names(&m.payload, &m.key_fields),
                        key_expr: m.key_expr.clone(),
                        dedupe_fields: m.dedupe_fields.clone(),
                        schema_file: m.schema_file.clone(),
                        schema: json_schema::message_schema(model, m),
                        proto: Some(proto::message_proto(model, m)),
                        fields: Vec::new(),
                        example: Value::Null,
                        example_from_registry: false,
                        example_problems: Vec::new(),
                        source: Some(m.source.clone()),
                    },
                );
            }
            for (version, schema) in published.iter().flatten() {
                versions
                    .entry(*version)
                    .or_insert_with(|| published_only(context, name, *version, schema));
            }
            complete(&mut versions, registry, context, name);
            let latest_version = *versions
                .keys()
                .next_back()
                .unwrap_or_else(|| unreachable!("a message name has a version"));
            let description = versions[&latest_version].description.clone();
            let owner = model
                .messages
                .iter()
                .filter(|m| m.name == name && m.owner.is_some())
                .max_by_key(|m| m.version)
                .and_then(|m| m.owner.clone());
            let compatibility = versions[&latest_version]
                .schema
                .pointer("/x-event/compatibility")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let mode: CompatibilityMode = compatibility
                .as_deref()
                .and_then(|m| m.parse().ok())
                .unwrap_or_default();
            let list: Vec<&CatalogVersion> = versions.values().collect();
            let mut verdicts = Vec::new();
            for (i, older) in list.iter().enumerate() {
                for newer in &list[i + 1..] {
                    verdicts.push(verdict(name, mode, older, newer));
                }
            }
            let mut producers: BTreeMap<(String, String, String), Party> = BTreeMap::new();
            for p in model.producers_of(name) {
                let context = producer_context(p, kind, context);
                let party = producers
                    .entry((
                        context.clone(),
                        p.function.clone(),
                        via_str(p.via).to_string(),
                    ))
                    .or_insert_with(|| Party {
                        context,
                        function: p.function.clone(),
                        group: p.group.clone(),
                        via: via_str(p.via).to_string(),
                        versions: Vec::new(),
                        source: p.source.clone(),
                    });
                if !party.versions.contains(&p.message.version) {
                    party.versions.push(p.message.version);
                    party.versions.sort_unstable();
                }
            }
            let consumers: Vec<Party> = model
                .consumers_of(name)
                .map(|h| {
                    let mut versions: Vec<u32> = h
                        .messages
                        .iter()
                        .filter(|m| m.name == name)
                        .map(|m| m.version)
                        .collect();
                    versions.sort_unstable();
                    versions.dedup();
                    Party {
                        context: h.group.clone(),
                        function: h.function.clone(),
                        group: Some(h.group.clone()),
                        via: "handler".into(),
                        versions,
                        source: h.source.clone(),
                    }
                })
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            messages.push(CatalogMessage {
                kind,
                name: name.to_string(),
                context: context.to_string(),
                owner,
                description,
                latest_version,
                topic: topic(kind, context),
                versions: versions.into_values().collect(),
                compatibility,
                verdicts,
                producers: producers.into_values().collect(),
                consumers,
            });
        }
        let mut flows = BTreeSet::new();
        for m in &messages {
            // An event flows from its owner (a producer elsewhere in the crate acts on its
            // behalf); a command from whoever sends it, else from its own context.
            let mut from: BTreeSet<String> = BTreeSet::new();
            if m.kind == MessageKind::Command {
                from.extend(m.producers.iter().map(|p| p.context.clone()));
            }
            if from.is_empty() {
                from.insert(m.context.clone());
            }
            let to: BTreeSet<String> = m.consumers.iter().map(|c| c.context.clone()).collect();
            for f in &from {
                if to.is_empty() {
                    flows.insert(Flow {
                        from: f.clone(),
                        message: m.name.clone(),
                        to: None,
                        kind: m.kind,
                    });
                }
                for t in &to {
                    flows.insert(Flow {
                        from: f.clone(),
                        message: m.name.clone(),
                        to: Some(t.clone()),
                        kind: m.kind,
                    });
                }
            }
        }
        let mut contexts = BTreeSet::new();
        for f in &flows {
            contexts.insert(f.from.clone());
            contexts.extend(f.to.clone());
        }
        for m in &messages {
            contexts.insert(m.context.clone());
        }
        let mut teams: BTreeMap<String, Team> = BTreeMap::new();
        for m in &messages {
            let Some(owner) = &m.owner else { continue };
            let team = teams.entry(owner.team.clone()).or_insert_with(|| Team {
                name: owner.team.clone(),
                contact: None,
                messages: Vec::new(),
                contexts: Vec::new(),
            });
            if team.contact.is_none() {
                team.contact.clone_from(&owner.contact);
            }
            team.messages.push(m.name.clone());
            if !team.contexts.contains(&m.context) {
                team.contexts.push(m.context.clone());
                team.contexts.sort();
            }
        }
        Ok(Catalog {
            teams: teams.into_values().collect(),
            service: options
                .service
                .clone()
                .unwrap_or_else(|| "service".to_string()),
            contexts: contexts.into_iter().collect(),
            messages,
            flows: flows.into_iter().collect(),
            sagas: model.sagas.clone(),
        })
    }

    /// The message called `name`.
    pub fn message(&self, name: &str) -> Option<&CatalogMessage> {
        self.messages.iter().find(|m| m.name == name)
    }
}

fn published_only(context: &str, name: &str, version: u32, schema: &Value) -> CatalogVersion {
    let meta = schema.get("x-event");
    let text = |key: &str| {
        meta.and_then(|m| m.get(key))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    CatalogVersion {
        version,
        in_code: false,
        published: Some(true),
        description: schema
            .get("description")
            .and_then(Value::as_str)
            .map(str::to_string),
        deprecated: None,
        sla: Sla::default(),
        codec: text("codec"),
        content_type: text("content_type"),
        rust_type: None,
        key_fields: Vec::new(),
        key_properties: Vec::new(),
        key_expr: None,
        dedupe_fields: Vec::new(),
        schema_file: format!("schemas/{context}/{name}/v{version}.schema.json"),
        schema: schema.clone(),
        proto: None,
        fields: Vec::new(),
        example: Value::Null,
        example_from_registry: false,
        example_problems: Vec::new(),
        source: None,
    }
}

/// Every file of the catalog, relative to its output directory (with `/`), to its content.
///
/// # Errors
///
/// Those of [`Catalog::build`].
pub fn render(model: &Model, options: &Options) -> Result<BTreeMap<String, Vec<u8>>, Error> {
    let catalog = Catalog::build(model, options)?;
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    files.insert("catalog.json".into(), json::render(&catalog).into_bytes());
    files.insert("catalog.md".into(), markdown::render(&catalog).into_bytes());
    files.insert(
        "asyncapi.json".into(),
        json_schema::to_pretty(&asyncapi::document(model, &catalog)).into_bytes(),
    );
    for (path, content) in html::render(&catalog) {
        files.insert(format!("site/{path}"), content.into_bytes());
    }
    files.insert("site/mermaid.min.js".into(), mermaid::MERMAID_JS.to_vec());
    files.insert(
        "site/mermaid.LICENSE".into(),
        mermaid::MERMAID_LICENSE.to_vec(),
    );
    Ok(files)
}

/// Writes the catalog of `model` into `out_dir` (see the [module docs](self) for the files),
/// with no registry and the service called `service`. Each file is written only when its
/// content changed. Returns the files written.
///
/// This is what [`Config::catalog_dir`](crate::Config::catalog_dir) uses (or [`write_with`], to
/// add the registry's versions).
///
/// # Errors
///
/// [`crate::ErrorKind::Io`] when a file cannot be written.
pub fn write(model: &Model, out_dir: &Path) -> Result<Vec<PathBuf>, Error> {
    write_with(model, out_dir, &Options::default())
}

/// [`write()`] with [`Options`].
///
/// # Errors
///
/// [`crate::ErrorKind::Io`] when the registry cannot be read or a file cannot be written.
pub fn write_with(model: &Model, out_dir: &Path, options: &Options) -> Result<Vec<PathBuf>, Error> {
    let files = render(model, options)?;
    let mut written = Vec::new();
    for (relative, content) in &files {
        let path = out_dir.join(relative);
        if std::fs::read(&path).is_ok_and(|existing| existing == *content) {
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        std::fs::write(&path, content).map_err(|e| Error::io(&path, e))?;
        written.push(path);
    }
    Ok(written)
}

/// The catalog step of [`crate::Config::emit`]: the service is the package being built
/// (`CARGO_PKG_NAME`, else the crate directory's name), and the registry's published versions
/// are included when `registry` exists.
pub(crate) fn emit_for_config(
    model: &Model,
    crate_dir: &Path,
    registry: &Path,
    out_dir: &Path,
) -> Result<Vec<PathBuf>, Error> {
    let service = std::env::var("CARGO_PKG_NAME").ok().or_else(|| {
        crate_dir
            .canonicalize()
            .ok()
            .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
    });
    write_with(
        model,
        out_dir,
        &Options {
            service,
            registry_dir: Some(registry.to_path_buf()),
        },
    )
}
