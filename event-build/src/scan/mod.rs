//! Source scanning: a build script cannot see its own crate's types, so the scan parses the
//! sources with syn, the way cbindgen does. In the pipeline: above the [`Config`] settings and
//! the numbers (assigned at the end of a scan), below the emitters and the driver.
//!
//! 1. From `src/lib.rs` and `src/main.rs` (or the files given to
//!    [`Config::sources`](crate::Config::sources)) it follows `mod x;` to `x.rs`, `x/mod.rs`
//!    or the file a `#[path]` names, skipping `#[cfg(test)]` items.
//! 2. Every struct and enum deriving `DomainEvent` or `Command` (also written
//!    `event_runtime::DomainEvent`) goes through the same `event_model::ast::Container::from_ast`,
//!    `event_model::check::check` and `messages()` the derive uses, so the build and the derive
//!    cannot disagree; their errors are collected and reported together with file and line.
//! 3. Field types are resolved to wire types ([`Ty`]); the crate's other
//!    structs and enums become nested definitions, following the serde attributes that change
//!    the wire (`rename`, `rename_all`, `rename_all_fields`, `default`, `skip*`,
//!    `skip_serializing_if`, `flatten`, `tag`/`content`/`untagged`, `transparent`, `with`).
//!    A type it cannot resolve becomes "any value" and a warning naming the event, the field and
//!    the type, with the two ways to declare it: `#[event(schema = "...")]` on the field, or
//!    [`Config::type_schema`](crate::Config::type_schema) for a type used anywhere.
//! 4. `#[handler(group = "...")]` functions (through `event_model::handler::parse`) and the
//!    calls that create messages (`ctx.publish(T { .. })`, `ctx.send(..)`,
//!    `Envelope::event(..)`, `Envelope::command(..)`) give consumers and producers.
//! 5. Protobuf field numbers are assigned ([`crate::numbers`]).
//!
//! Not seen: items produced by macros, `cfg` conditions other than `test` (everything else is
//! scanned), generic nested types, and calls written inside macro invocations.

mod flow;
mod index;
mod load;
mod shape;
mod types;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

use event_model::ast::{Container, Data};
use event_model::attr::Codec;
use event_model::{Kind, WireMessage};
use serde_json::Value;

use self::flow::{MessageIndex, display};
use self::index::Index;
use self::shape::parse_container;
use self::types::{placeholder, placeholder_index};
use crate::config::Config;
use crate::error::{Diagnostic, Error, Location};
use crate::model::{
    Deprecation, MODEL_FORMAT, Message, MessageKind, MessageRef, Model, Shape, Sla, Source, Ty,
    TypeDef, inlined_struct,
};

/// What a scan found.
#[derive(Clone, Debug)]
pub struct Scan {
    /// The model, with protobuf numbers assigned.
    pub model: Model,
    /// Every source file read, as opened (for `cargo:rerun-if-changed`).
    pub files_read: Vec<PathBuf>,
    /// Problems that do not stop the build: unresolved types, modules without a file, ...
    pub warnings: Vec<Diagnostic>,
}

/// Scans the crate `config` describes.
///
/// # Errors
///
/// [`ErrorKind::Io`](crate::ErrorKind::Io) when a file cannot be read,
/// [`ErrorKind::Parse`](crate::ErrorKind::Parse) when one is not Rust,
/// [`ErrorKind::NoSources`](crate::ErrorKind::NoSources) without a root file, and
/// [`ErrorKind::Invalid`](crate::ErrorKind::Invalid) with every attribute error (the derive's
/// own messages) and field-number conflict, each with its file and line.
pub fn scan(config: &Config) -> Result<Scan, Error> {
    let crate_dir = config.resolved_crate_dir();
    let roots = roots(config, &crate_dir)?;
    let mut loader = load::Loader::new(&crate_dir);
    for root in &roots {
        loader.load_root(root)?;
    }
    let index = Index::new(loader.out);
    let mut builder = Builder {
        index: &index,
        type_schemas: &config.type_schemas,
        alias_stack: Vec::new(),
        location: Location {
            file: PathBuf::new(),
            line: 0,
            column: 0,
        },
        notes: Vec::new(),
        errors: index.loaded.errors.clone(),
        drafts: Vec::new(),
        defs: BTreeMap::new(),
    };
    builder.messages();
    builder.defs();
    let (mut model, mut errors, mut warnings) = builder.finish();
    errors.extend(crate::numbers::assign(&mut model, &config.field_numbers));
    if !errors.is_empty() {
        return Err(Error::invalid(errors));
    }
    warnings.extend(index.loaded.warnings.iter().cloned());
    warnings.sort();
    warnings.dedup();
    Ok(Scan {
        model,
        files_read: index.loaded.files.iter().map(|f| f.path.clone()).collect(),
        warnings,
    })
}

/// Who a warning is about.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Owner {
    /// A message (index into the drafts).
    Message(usize),
    /// A nested type (type item).
    Def(usize),
}

/// Where the types of one container are being resolved.
#[derive(Clone)]
pub(crate) struct Ctx {
    /// The type described (what `Self` means).
    pub(crate) item: usize,
    /// The module names are resolved in.
    pub(crate) module: usize,
    /// Who gets the warnings.
    pub(crate) owner: Owner,
    /// Prefix of field paths in warnings (`Line.` inside type `Line`).
    pub(crate) prefix: String,
}

struct Note {
    owner: Owner,
    field: String,
    text: String,
    /// Whether to add how to declare the type.
    hint: bool,
    location: Location,
}

struct Draft {
    item: usize,
    variant: Option<String>,
    message: Message,
}

pub(crate) struct Builder<'i> {
    pub(crate) index: &'i Index,
    pub(crate) type_schemas: &'i BTreeMap<String, Value>,
    pub(crate) alias_stack: Vec<usize>,
    /// The field being described, for warnings.
    pub(crate) location: Location,
    notes: Vec<Note>,
    pub(crate) errors: Vec<Diagnostic>,
    drafts: Vec<Draft>,
    defs: BTreeMap<usize, TypeDef>,
}

/// `OrderPlacedV2` -> `OrderPlaced` (as the default wire name does).
fn strip_version_suffix(name: &str) -> &str {
    let trimmed = name.trim_end_matches(|c: char| c.is_ascii_digit());
    if trimmed.len() < name.len()
        && trimmed.len() > 1
        && let Some(stripped) = trimmed.strip_suffix('V')
    {
        return stripped.trim_end_matches('_');
    }
    name
}

/// Calls `f` on every definition a shape names.
pub(crate) fn shape_refs(shape: &Shape, f: &mut dyn FnMut(&str)) {
    match shape {
        Shape::Struct {
            fields, additional, ..
        } => {
            fields.iter().for_each(|field| field.ty.for_each_ref(f));
            if let Some(additional) = additional {
                additional.for_each_ref(f);
            }
        }
        Shape::Newtype { inner } => inner.for_each_ref(f),
        Shape::Tuple { items } => items.iter().for_each(|t| t.for_each_ref(f)),
        Shape::Unit => {}
        Shape::Enum { variants, .. } => variants.iter().for_each(|v| shape_refs(&v.payload, f)),
    }
}

fn rename_ty(ty: &mut Ty, names: &BTreeMap<usize, String>) {
    match ty {
        Ty::Ref { name } => {
            if let Some(new) = placeholder_index(name).and_then(|i| names.get(&i)) {
                *name = new.clone();
            }
        }
        Ty::Option { inner } => rename_ty(inner, names),
        Ty::Seq { items, .. } | Ty::Array { items, .. } => rename_ty(items, names),
        Ty::Tuple { items } => items.iter_mut().for_each(|t| rename_ty(t, names)),
        Ty::Map { key, values } => {
            rename_ty(key, names);
            rename_ty(values, names);
        }
        _ => {}
    }
}

fn rename_shape(shape: &mut Shape, names: &BTreeMap<usize, String>) {
    match shape {
        Shape::Struct {
            fields, additional, ..
        } => {
            fields.iter_mut().for_each(|f| rename_ty(&mut f.ty, names));
            if let Some(additional) = additional {
                rename_ty(additional, names);
            }
        }
        Shape::Newtype { inner } => rename_ty(inner, names),
        Shape::Tuple { items } => items.iter_mut().for_each(|t| rename_ty(t, names)),
        Shape::Unit => {}
        Shape::Enum { variants, .. } => variants
            .iter_mut()
            .for_each(|v| rename_shape(&mut v.payload, names)),
    }
}

impl Builder<'_> {
    pub(crate) fn note(&mut self, cx: &Ctx, field: &str, text: String, hint: bool) {
        self.notes.push(Note {
            owner: cx.owner,
            field: field.to_owned(),
            text,
            hint,
            location: self.location.clone(),
        });
    }

    fn file_display(&self, module: usize) -> &Path {
        let loaded = &self.index.loaded;
        &loaded.files[loaded.modules[module].file].display
    }

    /// Every derived container, checked as the derive checks it, to messages.
    fn messages(&mut self) {
        let index = self.index;
        for (i, item) in index.loaded.types.iter().enumerate() {
            let Some(kind) = item.kind else {
                continue;
            };
            let file = self.file_display(item.module).to_path_buf();
            let cx = event_model::Ctxt::new();
            let container = Container::from_ast(&cx, &item.input, kind);
            if let Some(container) = &container {
                event_model::check::check(&cx, container);
            }
            if let Err(err) = cx.check() {
                self.errors.extend(Diagnostic::from_syn(&file, err));
                continue;
            }
            let Some(container) = container else {
                continue;
            };
            let source = Source {
                file: display(&file),
                line: item.input.ident.span().start().line,
            };
            for wire in container.messages() {
                let ctx = Ctx {
                    item: i,
                    module: item.module,
                    owner: Owner::Message(self.drafts.len()),
                    prefix: String::new(),
                };
                let payload = match (&container.data, &wire.variant) {
                    (Data::Struct(..), _) => self.struct_shape(&ctx, &container),
                    (Data::Enum(variants), Some(ident)) => {
                        match variants.iter().find(|v| v.ident == ident) {
                            Some(variant) => self.variant_shape(&ctx, &container, variant),
                            None => Shape::Unit,
                        }
                    }
                    (Data::Enum(_), None) => Shape::Unit,
                };
                let message = self.message(i, &container, &wire, payload, source.clone());
                self.drafts.push(Draft {
                    item: i,
                    variant: wire.variant.as_ref().map(ToString::to_string),
                    message,
                });
            }
        }
    }

    fn message(
        &self,
        item: usize,
        container: &Container<'_>,
        wire: &WireMessage,
        payload: Shape,
        source: Source,
    ) -> Message {
        let module_path = &self.index.loaded.modules[self.index.loaded.types[item].module].path;
        let mut rust_path = module_path.clone();
        rust_path.push(wire.rust_path.clone());
        let ident = container.ident.to_string();
        let base = match &wire.variant {
            Some(variant) => format!(
                "{}{}",
                strip_version_suffix(&ident),
                strip_version_suffix(&variant.to_string())
            ),
            None => strip_version_suffix(&ident).to_owned(),
        };
        let (kind, package_root) = match wire.kind {
            Kind::Event => (MessageKind::Event, "events"),
            Kind::Command => (MessageKind::Command, "commands"),
        };
        let dir = format!("schemas/{}/{}", wire.context, wire.name);
        Message {
            kind,
            name: wire.name.clone(),
            version: wire.version,
            context: wire.context.clone(),
            description: wire.description.clone(),
            deprecated: wire.deprecated.as_ref().map(|d| Deprecation {
                since: d.since.map(|s| s.to_string()),
                sunset: d.sunset.map(|s| s.to_string()),
                note: d.note.clone(),
            }),
            sla: Sla {
                max_latency_ms: wire.sla.max_latency_ms,
                retention_secs: wire.sla.retention_secs,
            },
            owner: wire.owner.as_ref().map(|o| crate::model::Owner {
                team: o.team.clone(),
                contact: o.contact.clone(),
            }),
            codec: wire.codec.as_str().to_owned(),
            content_type: match wire.codec {
                Codec::Json => "application/json",
                Codec::Protobuf => "application/protobuf",
            }
            .to_owned(),
            rust_type: wire.rust_path.clone(),
            rust_path: rust_path.join("::"),
            variant: wire.variant.as_ref().map(ToString::to_string),
            serde_variant: wire.serde_variant.clone(),
            key_fields: wire.key_fields.clone(),
            key_expr: wire.key_expr.clone(),
            dedupe_fields: wire.dedupe_fields.clone(),
            upcast_from: wire.upcast_from.clone(),
            json_upcasts: wire.json_upcasts.clone(),
            oldest_readable_version: wire.version,
            compatibility: container
                .attrs
                .compatibility
                .as_ref()
                .map(|c| c.value.clone()),
            payload,
            defs: Vec::new(),
            schema_file: format!("{dir}/v{}.schema.json", wire.version),
            proto_file: format!("{dir}/v{}.proto", wire.version),
            proto_package: format!("{package_root}.{}", wire.context.replace('-', "_")),
            proto_message: format!("{base}V{}", wire.version),
            source,
        }
    }

    /// Builds the definition of every type the messages use, transitively.
    fn defs(&mut self) {
        let mut queue = VecDeque::new();
        for draft in &self.drafts {
            shape_refs(&draft.message.payload, &mut |name| {
                queue.extend(placeholder_index(name));
            });
        }
        while let Some(i) = queue.pop_front() {
            if self.defs.contains_key(&i) {
                continue;
            }
            let index = self.index;
            let item = &index.loaded.types[i];
            let ident = item.input.ident.to_string();
            let ctx = Ctx {
                item: i,
                module: item.module,
                owner: Owner::Def(i),
                prefix: format!("{ident}."),
            };
            let shape = match parse_container(&item.input, item.kind) {
                Some(container) => match &container.data {
                    Data::Struct(..) => self.struct_shape(&ctx, &container),
                    Data::Enum(_) => self.enum_shape(&ctx, &container),
                },
                None => Shape::Unit,
            };
            shape_refs(&shape, &mut |name| queue.extend(placeholder_index(name)));
            let file = display(self.file_display(item.module));
            self.defs.insert(
                i,
                TypeDef {
                    name: placeholder(i),
                    rust_path: index.type_path_string(i),
                    doc: event_model::attr::doc_comment(&item.input.attrs),
                    shape,
                    source: Source {
                        file,
                        line: item.input.ident.span().start().line,
                    },
                },
            );
        }
    }

    /// Names the definitions, links messages to them, reads handlers and producers, and turns
    /// notes into warnings.
    fn finish(mut self) -> (Model, Vec<Diagnostic>, Vec<Diagnostic>) {
        // Definition names: the type's name, or its module-qualified name when two used types
        // share it.
        let mut by_ident: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for &i in self.defs.keys() {
            by_ident
                .entry(self.index.loaded.types[i].input.ident.to_string())
                .or_default()
                .push(i);
        }
        let mut names = BTreeMap::new();
        for (ident, items) in &by_ident {
            for &i in items {
                let name = if items.len() == 1 {
                    ident.clone()
                } else {
                    self.index.type_path(i).join(".")
                };
                names.insert(i, name);
            }
        }
        let mut types = BTreeMap::new();
        for (i, mut def) in std::mem::take(&mut self.defs) {
            rename_shape(&mut def.shape, &names);
            def.name = names[&i].clone();
            types.insert(def.name.clone(), def);
        }
        for draft in &mut self.drafts {
            rename_shape(&mut draft.message.payload, &names);
            // The definitions this message reaches. A newtype of a struct is written as the
            // struct's fields, which the schema inlines: start from those.
            let mut seen = BTreeSet::new();
            let mut queue = Vec::new();
            match inlined_struct(&draft.message.payload, &types) {
                Some(def) => shape_refs(&def.shape, &mut |n| queue.push(n.to_owned())),
                None => shape_refs(&draft.message.payload, &mut |n| queue.push(n.to_owned())),
            }
            while let Some(name) = queue.pop() {
                if seen.insert(name.clone())
                    && let Some(def) = types.get(&name)
                {
                    shape_refs(&def.shape, &mut |n| queue.push(n.to_owned()));
                }
            }
            draft.message.defs = seen.into_iter().collect();
        }
        // The oldest version each chain reads, as the derive computes it.
        let oldest: Vec<u32> = (0..self.drafts.len())
            .map(|i| self.oldest_readable(i, 0))
            .collect();
        for (draft, oldest) in self.drafts.iter_mut().zip(oldest) {
            draft.message.oldest_readable_version = oldest;
        }

        let mut message_index = MessageIndex {
            by_type: BTreeMap::new(),
            by_variant: BTreeMap::new(),
            by_struct: BTreeMap::new(),
        };
        for draft in &self.drafts {
            let reference = MessageRef {
                name: draft.message.name.clone(),
                version: draft.message.version,
            };
            message_index
                .by_type
                .entry(draft.item)
                .or_default()
                .push(reference.clone());
            let found = (reference, draft.message.rust_type.clone());
            match &draft.variant {
                Some(variant) => {
                    message_index
                        .by_variant
                        .insert((draft.item, variant.clone()), found);
                }
                None => {
                    message_index.by_struct.insert(draft.item, found);
                }
            }
        }
        let (mut handlers, mut producers) = self.flows(&message_index);
        let (sagas, saga_handlers, saga_producers) = self.sagas(&message_index);
        handlers.extend(saga_handlers);
        producers.extend(saga_producers);
        handlers.sort_by(|a, b| {
            (&a.group, &a.function, &a.source).cmp(&(&b.group, &b.function, &b.source))
        });
        producers.sort_by(|a, b| {
            (&a.message, &a.function, &a.source, a.via).cmp(&(
                &b.message,
                &b.function,
                &b.source,
                b.via,
            ))
        });

        // Warnings: one per note, naming the message (or every message using the type).
        let mut warnings = Vec::new();
        for note in &self.notes {
            let about: Vec<&Message> = match note.owner {
                Owner::Message(i) => vec![&self.drafts[i].message],
                Owner::Def(item) => {
                    let name = &names[&item];
                    self.drafts
                        .iter()
                        .map(|d| &d.message)
                        .filter(|m| m.defs.contains(name))
                        .collect()
                }
            };
            let hint = match (note.hint, note.owner) {
                (false, _) => String::new(),
                (true, Owner::Message(_)) => format!(
                    ". Declare its wire shape with #[{}(schema = \"{{\\\"type\\\": \\\"string\\\"}}\")] on the field, or with Config::type_schema(\"<type path>\", ..) in build.rs",
                    match about.first().map(|m| m.kind) {
                        Some(MessageKind::Command) => "command",
                        _ => "event",
                    }
                ),
                (true, Owner::Def(_)) => {
                    ". Declare its wire shape with Config::type_schema(\"<type path>\", ..) in build.rs".to_owned()
                }
            };
            for message in about {
                warnings.push(Diagnostic::new(
                    note.location.clone(),
                    format!(
                        "{} `{}` v{} ({}), field `{}`: {}{hint}",
                        message.kind.as_str(),
                        message.name,
                        message.version,
                        message.rust_type,
                        note.field,
                        note.text
                    ),
                ));
            }
        }

        let mut messages: Vec<Message> = self.drafts.into_iter().map(|d| d.message).collect();
        messages.sort_by(|a, b| {
            (&a.context, &a.name, a.version, a.kind).cmp(&(&b.context, &b.name, b.version, b.kind))
        });
        let model = Model {
            format: MODEL_FORMAT,
            messages,
            types,
            handlers,
            producers,
            sagas,
        };
        (model, self.errors, warnings)
    }

    fn oldest_readable(&self, draft: usize, depth: u8) -> u32 {
        let message = &self.drafts[draft].message;
        if let Some(prev) = &message.upcast_from
            && depth < 32
        {
            let prev_ident = prev
                .rsplit("::")
                .next()
                .unwrap_or(prev)
                .split('<')
                .next()
                .unwrap_or(prev);
            if let Some(found) = self.drafts.iter().position(|d| {
                d.variant.is_none()
                    && d.message.name == message.name
                    && self.index.loaded.types[d.item].input.ident == prev_ident
            }) {
                return self.oldest_readable(found, depth + 1);
            }
            return message.version.saturating_sub(1).max(1);
        }
        message
            .json_upcasts
            .iter()
            .copied()
            .min()
            .unwrap_or(message.version)
    }
}

/// The root files to scan: [`Config::sources`](crate::Config::sources) from the crate directory,
/// else its `src/lib.rs` and `src/main.rs` ([`ErrorKind::NoSources`](crate::ErrorKind::NoSources) without either).
fn roots(config: &Config, crate_dir: &Path) -> Result<Vec<PathBuf>, Error> {
    if !config.sources.is_empty() {
        return Ok(config.sources.iter().map(|p| crate_dir.join(p)).collect());
    }
    let roots = default_roots(crate_dir);
    if roots.is_empty() {
        return Err(Error::new(
            crate::error::ErrorKind::NoSources,
            Some(crate_dir.to_path_buf()),
        ));
    }
    Ok(roots)
}

/// `ErrorKind::NoSources` helper.
fn default_roots(crate_dir: &Path) -> Vec<PathBuf> {
    ["src/lib.rs", "src/main.rs"]
        .iter()
        .map(|p| crate_dir.join(p))
        .filter(|p| p.is_file())
        .collect()
}

#[cfg(test)]
mod tests;
