//! The protobuf differ: buf's `WIRE_JSON` and `WIRE` breaking rules over two `.proto` texts
//! parsed with protox, and the canonical contract text of a `.proto` file that the registry
//! digests. Above [`rule`](super::rule); [`check`](super::check) runs it.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;

use prost_types::field_descriptor_proto::{Label, Type as ProtoType};
use prost_types::{
    DescriptorProto, EnumDescriptorProto, FieldDescriptorProto, FileDescriptorProto,
};

use super::rule::{Difference, Rule, pointer};

/// Which of buf's breaking-change categories the protobuf check applies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProtoCategory {
    /// Changes that break the binary encoding or the JSON mapping (buf's recommended minimum).
    #[default]
    WireJson,
    /// Changes that break the binary encoding only.
    Wire,
}

/// A `.proto` text that does not parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtoError {
    /// Which file: `v2.proto`.
    pub file: String,
    /// protox's message.
    pub message: String,
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} does not parse as proto3: {}",
            self.file, self.message
        )
    }
}

impl std::error::Error for ProtoError {}

struct SourceResolver {
    name: String,
    source: String,
}

impl protox::file::FileResolver for SourceResolver {
    fn open_file(&self, name: &str) -> Result<protox::file::File, protox::Error> {
        if name == self.name {
            protox::file::File::from_source(name, &self.source)
        } else {
            Err(protox::Error::file_not_found(name))
        }
    }
}

/// Parses and links one `.proto` text (well-known `google/protobuf/*` imports resolve).
pub fn parse_proto(file_name: &str, source: &str) -> Result<FileDescriptorProto, ProtoError> {
    let mut resolver = protox::file::ChainFileResolver::new();
    resolver.add(SourceResolver {
        name: file_name.to_owned(),
        source: source.to_owned(),
    });
    resolver.add(protox::file::GoogleFileResolver::new());
    let mut compiler = protox::Compiler::with_file_resolver(resolver);
    compiler.open_file(file_name).map_err(|err| ProtoError {
        file: file_name.to_owned(),
        message: err.to_string(),
    })?;
    compiler
        .file_descriptor_set()
        .file
        .into_iter()
        .find(|file| file.name() == file_name)
        .ok_or_else(|| ProtoError {
            file: file_name.to_owned(),
            message: "no file descriptor produced".into(),
        })
}

struct ProtoIndex<'a> {
    package: String,
    messages: BTreeMap<String, &'a DescriptorProto>,
    enums: BTreeMap<String, &'a EnumDescriptorProto>,
}

impl<'a> ProtoIndex<'a> {
    fn new(file: &'a FileDescriptorProto) -> Self {
        let package = file.package().to_owned();
        let prefix = if package.is_empty() {
            String::from(".")
        } else {
            format!(".{package}.")
        };
        let mut index = ProtoIndex {
            package,
            messages: BTreeMap::new(),
            enums: BTreeMap::new(),
        };
        for message in &file.message_type {
            index.add_message(&prefix, message);
        }
        for enumeration in &file.enum_type {
            index
                .enums
                .insert(format!("{prefix}{}", enumeration.name()), enumeration);
        }
        index
    }

    fn add_message(&mut self, prefix: &str, message: &'a DescriptorProto) {
        let full = format!("{prefix}{}", message.name());
        for nested in &message.nested_type {
            self.add_message(&format!("{full}."), nested);
        }
        for enumeration in &message.enum_type {
            self.enums
                .insert(format!("{full}.{}", enumeration.name()), enumeration);
        }
        self.messages.insert(full, message);
    }

    /// The name relative to the package (`.orders.v2.Line` → `Line`).
    fn relative<'n>(&self, full: &'n str) -> &'n str {
        let full = full.trim_start_matches('.');
        if self.package.is_empty() {
            full
        } else {
            full.strip_prefix(&self.package)
                .map(|rest| rest.trim_start_matches('.'))
                .unwrap_or(full)
        }
    }

    /// The event's message: named like the hint (the schema's title, with or without a
    /// `V<n>` suffix), else the only top-level message no field refers to, else the first.
    fn root(
        &self,
        file: &'a FileDescriptorProto,
        hint: Option<&str>,
    ) -> Option<(&'a DescriptorProto, String)> {
        let prefix = if self.package.is_empty() {
            String::from(".")
        } else {
            format!(".{}.", self.package)
        };
        let top: Vec<&DescriptorProto> = file.message_type.iter().collect();
        if let Some(hint) = hint {
            // Titles of enum-variant events read `ShipmentEvent::Packed`; messages `ShipmentEventPackedV1`.
            let hint = hint.replace("::", "");
            let hint = hint.as_str();
            let base = strip_version_suffix(hint);
            if let Some(message) = top
                .iter()
                .find(|m| m.name() == hint)
                .or_else(|| top.iter().find(|m| strip_version_suffix(m.name()) == base))
            {
                return Some((message, format!("{prefix}{}", message.name())));
            }
        }
        let referenced: BTreeSet<&str> = self
            .messages
            .values()
            .flat_map(|m| m.field.iter())
            .map(|f| f.type_name())
            .filter(|name| !name.is_empty())
            .collect();
        let roots: Vec<&&DescriptorProto> = top
            .iter()
            .filter(|m| !referenced.contains(format!("{prefix}{}", m.name()).as_str()))
            .collect();
        let message = if roots.len() == 1 {
            roots[0]
        } else {
            top.first()?
        };
        Some((message, format!("{prefix}{}", message.name())))
    }
}

/// `OrderPlacedV2` → `OrderPlaced` (the name unchanged without a `V<digits>` suffix).
pub(crate) fn strip_version_suffix(name: &str) -> &str {
    let trimmed = name.trim_end_matches(|c: char| c.is_ascii_digit());
    if trimmed.len() < name.len()
        && let Some(base) = trimmed.strip_suffix('V')
        && !base.is_empty()
    {
        return base;
    }
    name
}

fn wire_json_group(ty: ProtoType) -> u8 {
    match ty {
        ProtoType::Int32 | ProtoType::Uint32 => 1,
        ProtoType::Int64 | ProtoType::Uint64 => 2,
        ProtoType::Fixed32 | ProtoType::Sfixed32 => 3,
        ProtoType::Fixed64 | ProtoType::Sfixed64 => 4,
        ProtoType::Bool => 5,
        ProtoType::Sint32 => 6,
        ProtoType::Sint64 => 7,
        ProtoType::String => 8,
        ProtoType::Bytes => 9,
        ProtoType::Double => 10,
        ProtoType::Float => 11,
        ProtoType::Group => 12,
        ProtoType::Message => 13,
        ProtoType::Enum => 14,
    }
}

fn wire_group(ty: ProtoType) -> u8 {
    match ty {
        ProtoType::Int32
        | ProtoType::Int64
        | ProtoType::Uint32
        | ProtoType::Uint64
        | ProtoType::Bool => 1,
        ProtoType::Sint32 | ProtoType::Sint64 => 2,
        ProtoType::String => 3,
        ProtoType::Bytes => 4,
        ProtoType::Fixed32 | ProtoType::Sfixed32 => 5,
        ProtoType::Fixed64 | ProtoType::Sfixed64 => 6,
        ProtoType::Double => 7,
        ProtoType::Float => 8,
        ProtoType::Group => 9,
        ProtoType::Message => 10,
        ProtoType::Enum => 11,
    }
}

fn proto_type_name(ty: ProtoType) -> &'static str {
    match ty {
        ProtoType::Double => "double",
        ProtoType::Float => "float",
        ProtoType::Int64 => "int64",
        ProtoType::Uint64 => "uint64",
        ProtoType::Int32 => "int32",
        ProtoType::Fixed64 => "fixed64",
        ProtoType::Fixed32 => "fixed32",
        ProtoType::Bool => "bool",
        ProtoType::String => "string",
        ProtoType::Group => "group",
        ProtoType::Message => "message",
        ProtoType::Bytes => "bytes",
        ProtoType::Uint32 => "uint32",
        ProtoType::Enum => "enum",
        ProtoType::Sfixed32 => "sfixed32",
        ProtoType::Sfixed64 => "sfixed64",
        ProtoType::Sint32 => "sint32",
        ProtoType::Sint64 => "sint64",
    }
}

/// The JSON name protoc derives: `order_id` → `orderId`.
fn default_json_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn json_name(field: &FieldDescriptorProto) -> String {
    field
        .json_name
        .clone()
        .unwrap_or_else(|| default_json_name(field.name()))
}

fn reserved_number(message: &DescriptorProto, number: i32) -> bool {
    message
        .reserved_range
        .iter()
        .any(|range| range.start() <= number && number < range.end())
}

fn reserved_enum_number(enumeration: &EnumDescriptorProto, number: i32) -> bool {
    // Enum reserved ranges are inclusive.
    enumeration
        .reserved_range
        .iter()
        .any(|range| range.start() <= number && number <= range.end())
}

/// A real (not proto3-`optional` synthetic) oneof a field belongs to.
fn oneof_name(message: &DescriptorProto, field: &FieldDescriptorProto) -> Option<String> {
    if field.proto3_optional() {
        return None;
    }
    let index = usize::try_from(field.oneof_index?).ok()?;
    message
        .oneof_decl
        .get(index)
        .map(|oneof| oneof.name().to_owned())
}

struct ProtoDiffer<'a> {
    old: ProtoIndex<'a>,
    new: ProtoIndex<'a>,
    old_root: String,
    new_root: String,
    category: ProtoCategory,
    seen: HashSet<(String, String)>,
    out: Vec<Difference>,
}

/// Lists the buf breaking changes (category `category`) from the `old` to the `new` `.proto`
/// text of one event. `root` names the event's message (the JSON schema's `title`); without it
/// the only top-level message that no field refers to is taken. Pointers are JSON pointers of
/// the fields (`/properties/lines/items/properties/sku`).
pub fn diff_proto(
    old: &str,
    new: &str,
    root: Option<&str>,
    category: ProtoCategory,
) -> Result<Vec<Difference>, ProtoError> {
    let old_file = parse_proto("old.proto", old)?;
    let new_file = parse_proto("new.proto", new)?;
    let old_index = ProtoIndex::new(&old_file);
    let new_index = ProtoIndex::new(&new_file);
    let (Some((old_root, old_name)), Some((new_root, new_name))) = (
        old_index.root(&old_file, root),
        new_index.root(&new_file, root),
    ) else {
        return Ok(Vec::new());
    };
    let mut differ = ProtoDiffer {
        old: old_index,
        new: new_index,
        old_root: old_name.clone(),
        new_root: new_name.clone(),
        category,
        seen: HashSet::new(),
        out: Vec::new(),
    };
    differ.seen.insert((old_name, new_name));
    differ.compare_message(old_root, new_root, &mut Vec::new());
    Ok(differ.out)
}

impl ProtoDiffer<'_> {
    fn push(&mut self, path: &[String], rule: Rule, detail: String) {
        self.out.push(Difference {
            rule,
            pointer: pointer(path),
            detail,
        });
    }

    /// The type name with the package removed and the event's message written `<event>`, so
    /// that `.orders.v1.OrderPlacedV1.Line` and `.orders.v2.OrderPlacedV2.Line` match.
    fn comparable(&self, index_is_old: bool, full: &str) -> String {
        let (index, root) = if index_is_old {
            (&self.old, &self.old_root)
        } else {
            (&self.new, &self.new_root)
        };
        if full == root {
            return "<event>".into();
        }
        if let Some(rest) = full.strip_prefix(root.as_str())
            && rest.starts_with('.')
        {
            return format!("<event>{rest}");
        }
        index.relative(full).to_owned()
    }

    fn compare_message(
        &mut self,
        old: &DescriptorProto,
        new: &DescriptorProto,
        path: &mut Vec<String>,
    ) {
        let wire_json = self.category == ProtoCategory::WireJson;
        let message_name = new.name().to_owned();

        // Reserved ranges and names may only grow.
        for range in &old.reserved_range {
            let kept = (range.start()..range.end()).all(|n| reserved_number(new, n));
            if !kept {
                let detail = format!(
                    "message `{message_name}` no longer reserves {}",
                    range_text(range.start(), range.end() - 1)
                );
                self.push(path, Rule::ReservedMessageNoDelete, detail);
            }
        }
        for name in &old.reserved_name {
            if !new.reserved_name.contains(name) {
                self.push(
                    path,
                    Rule::ReservedMessageNoDelete,
                    format!("message `{message_name}` no longer reserves \"{name}\""),
                );
            }
        }

        let new_by_number: BTreeMap<i32, &FieldDescriptorProto> =
            new.field.iter().map(|f| (f.number(), f)).collect();
        let mut old_fields: Vec<&FieldDescriptorProto> = old.field.iter().collect();
        old_fields.sort_by_key(|f| f.number());
        for old_field in old_fields {
            let number = old_field.number();
            path.push("properties".into());
            path.push(old_field.name().to_owned());
            match new_by_number.get(&number) {
                None => {
                    if !reserved_number(new, number) {
                        let detail = format!(
                            "field `{}` = {number} of `{message_name}` deleted without `reserved {number};`",
                            old_field.name()
                        );
                        self.push(path, Rule::FieldNoDeleteUnlessNumberReserved, detail);
                    }
                    if wire_json && !new.reserved_name.iter().any(|n| n == old_field.name()) {
                        let detail = format!(
                            "field `{}` = {number} of `{message_name}` deleted without `reserved \"{}\";`",
                            old_field.name(),
                            old_field.name()
                        );
                        self.push(path, Rule::FieldNoDeleteUnlessNameReserved, detail);
                    }
                }
                Some(new_field) => self.compare_field(old, new, old_field, new_field, path),
            }
            path.truncate(path.len() - 2);
        }
    }

    fn compare_field(
        &mut self,
        old_message: &DescriptorProto,
        new_message: &DescriptorProto,
        old: &FieldDescriptorProto,
        new: &FieldDescriptorProto,
        path: &mut Vec<String>,
    ) {
        let wire_json = self.category == ProtoCategory::WireJson;
        let number = old.number();
        let message_name = new_message.name().to_owned();
        if wire_json && old.name() != new.name() {
            let detail = format!(
                "field {number} of `{message_name}` was `{}`, now `{}`",
                old.name(),
                new.name()
            );
            self.push(path, Rule::FieldSameName, detail);
        } else if wire_json && json_name(old) != json_name(new) {
            let detail = format!(
                "field {number} of `{message_name}`: JSON name `{}` → `{}`",
                json_name(old),
                json_name(new)
            );
            self.push(path, Rule::FieldSameJsonName, detail);
        }

        let old_repeated = old.label() == Label::Repeated;
        let new_repeated = new.label() == Label::Repeated;
        if old_repeated != new_repeated {
            let text = |repeated: bool| if repeated { "repeated" } else { "singular" };
            let detail = format!(
                "field `{}` = {number}: {} → {}",
                new.name(),
                text(old_repeated),
                text(new_repeated)
            );
            self.push(path, Rule::FieldWireJsonCompatibleCardinality, detail);
            return;
        }

        let (old_ty, new_ty) = (old.r#type(), new.r#type());
        let (group, rule) = if wire_json {
            (
                wire_json_group as fn(ProtoType) -> u8,
                Rule::FieldWireJsonCompatibleType,
            )
        } else {
            (
                wire_group as fn(ProtoType) -> u8,
                Rule::FieldWireCompatibleType,
            )
        };
        let string_to_bytes =
            !wire_json && old_ty == ProtoType::String && new_ty == ProtoType::Bytes;
        if group(old_ty) != group(new_ty) && !string_to_bytes {
            let detail = format!(
                "field `{}` = {number}: {} → {}",
                new.name(),
                self.type_text(true, old),
                self.type_text(false, new)
            );
            self.push(path, rule, detail);
            return;
        }

        if old_ty == new_ty
            && matches!(
                old_ty,
                ProtoType::Message | ProtoType::Group | ProtoType::Enum
            )
        {
            let old_name = self.comparable(true, old.type_name());
            let new_name = self.comparable(false, new.type_name());
            let old_short = old_name.rsplit('.').next().unwrap_or_default().to_owned();
            let new_short = new_name.rsplit('.').next().unwrap_or_default().to_owned();
            if old_ty == ProtoType::Enum {
                // buf: enums match by short name, and the old values must remain.
                if old_short != new_short {
                    let detail = format!(
                        "field `{}` = {number}: enum {} → {}",
                        new.name(),
                        self.type_text(true, old),
                        self.type_text(false, new)
                    );
                    self.push(path, rule, detail);
                } else if let (Some(old_enum), Some(new_enum)) = (
                    self.old.enums.get(old.type_name()).copied(),
                    self.new.enums.get(new.type_name()).copied(),
                ) {
                    self.compare_enum(old_enum, new_enum, path);
                }
            } else if old_name != new_name {
                let detail = format!(
                    "field `{}` = {number}: message {} → {}",
                    new.name(),
                    self.type_text(true, old),
                    self.type_text(false, new)
                );
                self.push(path, rule, detail);
            } else if let (Some(old_type), Some(new_type)) = (
                self.old.messages.get(old.type_name()).copied(),
                self.new.messages.get(new.type_name()).copied(),
            ) {
                let key = (old.type_name().to_owned(), new.type_name().to_owned());
                if self.seen.insert(key) {
                    let map_entry = new_type.options.as_ref().is_some_and(|o| o.map_entry());
                    if map_entry {
                        path.push("additionalProperties".into());
                        // Compare the value fields of the two map entries directly.
                        let old_value = old_type.field.iter().find(|f| f.number() == 2);
                        let new_value = new_type.field.iter().find(|f| f.number() == 2);
                        if let (Some(a), Some(b)) = (old_value, new_value) {
                            self.compare_field(old_type, new_type, a, b, path);
                        }
                        path.pop();
                    } else {
                        if new_repeated {
                            path.push("items".into());
                        }
                        self.compare_message(old_type, new_type, path);
                        if new_repeated {
                            path.pop();
                        }
                    }
                }
            }
        }

        if wire_json {
            let (old_oneof, new_oneof) =
                (oneof_name(old_message, old), oneof_name(new_message, new));
            if old_oneof != new_oneof {
                let text = |name: &Option<String>| {
                    name.as_deref()
                        .map_or("no oneof".to_owned(), |n| format!("oneof `{n}`"))
                };
                let detail = format!(
                    "field `{}` = {number}: {} → {}",
                    new.name(),
                    text(&old_oneof),
                    text(&new_oneof)
                );
                self.push(path, Rule::FieldSameOneof, detail);
            }
        }
    }

    fn type_text(&self, old: bool, field: &FieldDescriptorProto) -> String {
        let index = if old { &self.old } else { &self.new };
        match field.r#type() {
            ProtoType::Message | ProtoType::Enum | ProtoType::Group => {
                index.relative(field.type_name()).to_owned()
            }
            other => proto_type_name(other).to_owned(),
        }
    }

    fn compare_enum(
        &mut self,
        old: &EnumDescriptorProto,
        new: &EnumDescriptorProto,
        path: &[String],
    ) {
        let key = (
            format!("enum:{}", old.name()),
            format!("enum:{}", new.name()),
        );
        if !self.seen.insert(key) {
            return;
        }
        let wire_json = self.category == ProtoCategory::WireJson;
        let enum_name = new.name().to_owned();
        for range in &old.reserved_range {
            if !(range.start()..=range.end()).all(|n| reserved_enum_number(new, n)) {
                let detail = format!(
                    "enum `{enum_name}` no longer reserves {}",
                    range_text(range.start(), range.end())
                );
                self.push(path, Rule::ReservedEnumNoDelete, detail);
            }
        }
        for name in &old.reserved_name {
            if !new.reserved_name.contains(name) {
                self.push(
                    path,
                    Rule::ReservedEnumNoDelete,
                    format!("enum `{enum_name}` no longer reserves \"{name}\""),
                );
            }
        }
        for value in &old.value {
            let number = value.number();
            let same_number: Vec<_> = new.value.iter().filter(|v| v.number() == number).collect();
            if same_number.is_empty() {
                if !reserved_enum_number(new, number) {
                    let detail = format!(
                        "value `{}` = {number} of enum `{enum_name}` deleted without `reserved {number};`",
                        value.name()
                    );
                    self.push(path, Rule::EnumValueNoDeleteUnlessNumberReserved, detail);
                }
                if wire_json && !new.reserved_name.iter().any(|n| n == value.name()) {
                    let detail = format!(
                        "value `{}` = {number} of enum `{enum_name}` deleted without `reserved \"{}\";`",
                        value.name(),
                        value.name()
                    );
                    self.push(path, Rule::EnumValueNoDeleteUnlessNameReserved, detail);
                }
            } else if wire_json && !same_number.iter().any(|v| v.name() == value.name()) {
                let detail = format!(
                    "enum `{enum_name}` value {number} was `{}`, now `{}`",
                    value.name(),
                    same_number[0].name()
                );
                self.push(path, Rule::EnumValueSameName, detail);
            }
        }
    }
}

/// The contract of a `.proto` text as canonical text: every message and enum with its
/// fields (number, name, JSON name, label, type, oneof), values and reservations, names
/// relative to the package and the event's message written `<event>`. Comments, options and
/// the event message's own name are left out, so a renamed Rust type is not a change.
pub(crate) fn proto_contract(text: &str, root: Option<&str>) -> Result<String, ProtoError> {
    let file = parse_proto("contract.proto", text)?;
    let index = ProtoIndex::new(&file);
    let root_name = index
        .root(&file, root)
        .map(|(_, name)| name)
        .unwrap_or_default();
    let comparable = |full: &str| -> String {
        if !root_name.is_empty() {
            if full == root_name {
                return "<event>".into();
            }
            if let Some(rest) = full.strip_prefix(root_name.as_str())
                && rest.starts_with('.')
            {
                return format!("<event>{rest}");
            }
        }
        index.relative(full).to_owned()
    };
    let mut lines = BTreeMap::new();
    for (full, message) in &index.messages {
        let mut text = String::new();
        let map_entry = message.options.as_ref().is_some_and(|o| o.map_entry());
        text.push_str(&format!(
            "message {}{}\n",
            comparable(full),
            if map_entry { " map_entry" } else { "" }
        ));
        let mut fields: Vec<&FieldDescriptorProto> = message.field.iter().collect();
        fields.sort_by_key(|f| f.number());
        for field in fields {
            let ty = match field.r#type() {
                ProtoType::Message | ProtoType::Enum | ProtoType::Group => {
                    comparable(field.type_name())
                }
                other => proto_type_name(other).to_owned(),
            };
            text.push_str(&format!(
                "  {} {} json={} {:?} {ty} oneof={} optional={}\n",
                field.number(),
                field.name(),
                json_name(field),
                field.label(),
                oneof_name(message, field).unwrap_or_default(),
                field.proto3_optional()
            ));
        }
        for range in &message.reserved_range {
            text.push_str(&format!(
                "  reserved {}\n",
                range_text(range.start(), range.end() - 1)
            ));
        }
        for name in &message.reserved_name {
            text.push_str(&format!("  reserved \"{name}\"\n"));
        }
        lines.insert(comparable(full), text);
    }
    for (full, enumeration) in &index.enums {
        let mut text = format!("enum {}\n", comparable(full));
        let mut values: Vec<_> = enumeration.value.iter().collect();
        values.sort_by_key(|v| (v.number(), v.name().to_owned()));
        for value in values {
            text.push_str(&format!("  {} {}\n", value.number(), value.name()));
        }
        for range in &enumeration.reserved_range {
            text.push_str(&format!(
                "  reserved {}\n",
                range_text(range.start(), range.end())
            ));
        }
        for name in &enumeration.reserved_name {
            text.push_str(&format!("  reserved \"{name}\"\n"));
        }
        lines.insert(format!("~enum {}", comparable(full)), text);
    }
    Ok(lines.into_values().collect())
}

fn range_text(start: i32, end_inclusive: i32) -> String {
    if start == end_inclusive {
        start.to_string()
    } else {
        format!("{start} to {end_inclusive}")
    }
}
