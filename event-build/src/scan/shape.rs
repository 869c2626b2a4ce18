//! Containers to shapes: which fields serde writes and under what names (`rename`,
//! `rename_all`, `rename_all_fields`, `skip`, `flatten`, `default`, `skip_serializing_if`,
//! `transparent`, enum tagging), each field's wire type, and prost's declarations.

use event_model::Kind;
use event_model::ast::{self, Container, Data, Style};
use event_model::attr::RenameRule;
use serde_json::Value;
use syn::spanned::Spanned as _;

use super::types::{default_literal, is_option, placeholder_index, type_string, with_ty};
use super::{Builder, Ctx};
use crate::error::{Diagnostic, Location};
use crate::model::{EnumRepr, Field, ProstField, Shape, Ty, Variant};

/// Parses a container for its shape only; attribute errors were reported by the message pass
/// (for messages) or cannot exist (for other types, where `#[event]` would not compile).
pub(crate) fn parse_container(
    input: &syn::DeriveInput,
    kind: Option<Kind>,
) -> Option<Container<'_>> {
    let cx = event_model::Ctxt::new();
    let container = Container::from_ast(&cx, input, kind.unwrap_or(Kind::Event));
    let _ = cx.check();
    container
}

/// prost's declaration of one field: `#[prost(sint64, optional, tag = "2")]`.
pub(crate) struct Prost {
    pub(crate) ty: Option<String>,
    pub(crate) label: Option<String>,
    pub(crate) tag: Option<u32>,
    pub(crate) oneof: bool,
}

const PROTO_SCALARS: &[&str] = &[
    "double", "float", "int32", "int64", "uint32", "uint64", "sint32", "sint64", "fixed32",
    "fixed64", "sfixed32", "sfixed64", "bool", "string", "bytes",
];

pub(crate) fn prost_field(attrs: &[syn::Attribute]) -> Option<Prost> {
    let attr = attrs.iter().find(|a| a.path().is_ident("prost"))?;
    let mut out = Prost {
        ty: None,
        label: None,
        tag: None,
        oneof: false,
    };
    let _ = attr.parse_nested_meta(|meta| {
        let name = meta
            .path
            .get_ident()
            .map(ToString::to_string)
            .unwrap_or_default();
        let value = |meta: &syn::meta::ParseNestedMeta<'_>| -> syn::Result<Option<String>> {
            if meta.input.peek(syn::Token![=]) {
                let lit: syn::LitStr = meta.value()?.parse()?;
                Ok(Some(lit.value()))
            } else {
                Ok(None)
            }
        };
        match name.as_str() {
            "tag" => out.tag = value(&meta)?.and_then(|v| v.trim().parse().ok()),
            "optional" | "repeated" => out.label = Some(name),
            "oneof" => {
                out.oneof = true;
                value(&meta)?;
            }
            "map" | "btree_map" | "hash_map" => {
                let spec = value(&meta)?.unwrap_or_default();
                let parts: Vec<&str> = spec.split(',').map(str::trim).collect();
                if let [key, val] = parts[..]
                    && PROTO_SCALARS.contains(&key)
                    && PROTO_SCALARS.contains(&val)
                {
                    out.ty = Some(format!("map<{key}, {val}>"));
                }
            }
            "bytes" => {
                value(&meta)?;
                out.ty = Some("bytes".into());
            }
            scalar if PROTO_SCALARS.contains(&scalar) => out.ty = Some(name),
            _ => {
                if meta.input.peek(syn::Token![=]) {
                    meta.value()?.parse::<syn::Expr>()?;
                }
            }
        }
        Ok(())
    });
    Some(out)
}

impl Builder<'_> {
    fn file_of(&self, cx: &Ctx) -> std::path::PathBuf {
        let loaded = &self.index.loaded;
        let module = &loaded.modules[loaded.types[cx.item].module];
        loaded.files[module.file].display.clone()
    }

    fn set_location(&mut self, cx: &Ctx, field: &ast::Field<'_>) {
        let span = match &field.original.ident {
            Some(ident) => ident.span(),
            None => field.original.ty.span(),
        };
        self.location = Location::from_span(&self.file_of(cx), span);
    }

    /// The payload of a struct: an object, a newtype, a tuple or nothing.
    pub(crate) fn struct_shape(&mut self, cx: &Ctx, cont: &Container<'_>) -> Shape {
        let Data::Struct(style, fields) = &cont.data else {
            return Shape::Unit;
        };
        if cont.serde.transparent
            && let Some(field) = fields.iter().find(|f| !f.serde.skip)
        {
            self.set_location(cx, field);
            let path = format!("{}{}", cx.prefix, field.name());
            return Shape::Newtype {
                inner: self.field_ty(cx, field, &path),
            };
        }
        self.fields_shape(
            cx,
            *style,
            fields,
            cont.serde.rename_all,
            cont.serde.default,
        )
    }

    /// The payload of one enum variant.
    pub(crate) fn variant_shape(
        &mut self,
        cx: &Ctx,
        cont: &Container<'_>,
        variant: &ast::Variant<'_>,
    ) -> Shape {
        let rule = variant.serde.rename_all.or(cont.serde.rename_all_fields);
        self.fields_shape(cx, variant.style, &variant.fields, rule, false)
    }

    fn fields_shape(
        &mut self,
        cx: &Ctx,
        style: Style,
        fields: &[ast::Field<'_>],
        rule: Option<RenameRule>,
        all_default: bool,
    ) -> Shape {
        match style {
            Style::Named => {
                let mut out = Vec::new();
                let mut additional = None;
                self.named_fields(cx, fields, rule, all_default, 0, &mut out, &mut additional);
                Shape::Struct {
                    fields: out,
                    additional,
                    reserved: Vec::new(),
                    reserved_names: Vec::new(),
                }
            }
            // serde writes a one-field tuple struct or variant as its field alone.
            Style::Tuple if fields.len() == 1 => {
                self.set_location(cx, &fields[0]);
                let path = format!("{}0", cx.prefix);
                Shape::Newtype {
                    inner: self.field_ty(cx, &fields[0], &path),
                }
            }
            Style::Tuple => Shape::Tuple {
                items: fields
                    .iter()
                    .filter(|f| !f.serde.skip)
                    .map(|f| {
                        self.set_location(cx, f);
                        let path = format!("{}{}", cx.prefix, f.name());
                        self.field_ty(cx, f, &path)
                    })
                    .collect(),
            },
            Style::Unit => Shape::Unit,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn named_fields(
        &mut self,
        cx: &Ctx,
        fields: &[ast::Field<'_>],
        rule: Option<RenameRule>,
        all_default: bool,
        depth: u8,
        out: &mut Vec<Field>,
        additional: &mut Option<Ty>,
    ) {
        for field in fields {
            if field.serde.skip {
                continue;
            }
            let rust_name = field.name().trim_start_matches("r#").to_owned();
            let name = field.serde.rename.clone().unwrap_or_else(|| match rule {
                Some(rule) => rule.apply_to_field(&rust_name),
                None => rust_name.clone(),
            });
            let path = format!("{}{name}", cx.prefix);
            self.set_location(cx, field);
            let line = self.location.line;
            if field.serde.flatten {
                self.flatten(cx, field, &path, all_default, depth, out, additional);
                continue;
            }
            let ty = self.field_ty(cx, field, &path);
            let prost = prost_field(&field.original.attrs);
            if prost.as_ref().is_some_and(|p| p.oneof) {
                self.note(
                    cx,
                    &path,
                    "prost `oneof` fields are described by their Rust type; their proto numbers come from `tags`, which the scan does not read".into(),
                    false,
                );
            }
            let required = !(is_option(field.ty)
                || field.serde.default
                || all_default
                || field.serde.skip_serializing_if);
            let default = if field.serde.default && field.serde.default_path.is_none() {
                default_literal(&ty)
            } else {
                None
            };
            let tag = field
                .attrs
                .tag
                .as_ref()
                .map(|t| t.value)
                .or_else(|| prost.as_ref().and_then(|p| p.tag));
            out.push(Field {
                name,
                rust_name,
                doc: field.doc.clone(),
                rust_type: type_string(field.ty),
                ty,
                required,
                default,
                number: 0,
                tag,
                prost: prost.and_then(|p| p.ty.map(|ty| ProstField { ty, label: p.label })),
                line,
            });
        }
    }

    /// `#[serde(flatten)]`: a struct's fields are written inline, a map's entries too.
    #[allow(clippy::too_many_arguments)]
    fn flatten(
        &mut self,
        cx: &Ctx,
        field: &ast::Field<'_>,
        path: &str,
        all_default: bool,
        depth: u8,
        out: &mut Vec<Field>,
        additional: &mut Option<Ty>,
    ) {
        let mut ty = self.field_ty(cx, field, path);
        let mut optional = all_default || field.serde.default;
        while let Ty::Option { inner } = ty {
            optional = true;
            ty = *inner;
        }
        let open = |additional: &mut Option<Ty>, values: Ty| {
            *additional = Some(match additional.take() {
                Some(previous) if previous != values => Ty::Any,
                _ => values,
            });
        };
        match ty {
            Ty::Ref { name } if depth < 16 => {
                let index = self.index;
                let Some(item) = placeholder_index(&name) else {
                    return;
                };
                let input = &index.loaded.types[item].input;
                let container = parse_container(input, index.loaded.types[item].kind);
                match container.as_ref().map(|c| (&c.data, c)) {
                    Some((Data::Struct(Style::Named, fields), inner))
                        if !inner.serde.transparent =>
                    {
                        let inner_cx = Ctx {
                            item,
                            module: index.loaded.types[item].module,
                            ..cx.clone()
                        };
                        let start = out.len();
                        self.named_fields(
                            &inner_cx,
                            fields,
                            inner.serde.rename_all,
                            inner.serde.default || optional,
                            depth + 1,
                            out,
                            additional,
                        );
                        if optional {
                            for f in &mut out[start..] {
                                f.required = false;
                            }
                        }
                    }
                    _ => {
                        self.note(
                            cx,
                            path,
                            format!(
                                "flattened type `{}` is not a struct with named fields; the object is left open",
                                type_string(field.ty)
                            ),
                            false,
                        );
                        open(additional, Ty::Any);
                    }
                }
            }
            Ty::Map { values, .. } => open(additional, *values),
            Ty::Any | Ty::Unresolved { .. } | Ty::Schema { .. } => open(additional, Ty::Any),
            _ => {
                self.note(
                    cx,
                    path,
                    format!(
                        "cannot flatten `{}`: serde flattens structs and maps; the object is left open",
                        type_string(field.ty)
                    ),
                    false,
                );
                open(additional, Ty::Any);
            }
        }
    }

    /// The wire type of one field: `#[event(schema)]`, a known `#[serde(with)]`, or its type.
    fn field_ty(&mut self, cx: &Ctx, field: &ast::Field<'_>, path: &str) -> Ty {
        if let Some(schema) = &field.attrs.schema {
            let location = Location::from_span(&self.file_of(cx), schema.span);
            match serde_json::from_str::<Value>(&schema.value) {
                Ok(value) if value.is_object() || value.is_boolean() => {
                    return Ty::Schema { schema: value };
                }
                Ok(_) => self.errors.push(Diagnostic::new(
                    location,
                    "`schema` must be a JSON Schema: an object such as {\"type\": \"string\"}",
                )),
                Err(err) => self.errors.push(Diagnostic::new(
                    location,
                    format!("`schema` is not valid JSON: {err}"),
                )),
            }
            return Ty::Any;
        }
        if let Some(with) = &field.serde.with {
            if let Some(ty) = with_ty(with) {
                return ty;
            }
            let rust = type_string(field.ty);
            self.note(
                cx,
                path,
                format!(
                    "`{rust}` is written by #[serde(with = \"{with}\")], whose output the scan cannot know; the schema accepts any value there"
                ),
                true,
            );
            return Ty::Unresolved { rust };
        }
        self.ty(cx, field.ty, path)
    }

    /// A nested enum as serde writes it.
    pub(crate) fn enum_shape(&mut self, cx: &Ctx, cont: &Container<'_>) -> Shape {
        let Data::Enum(variants) = &cont.data else {
            return Shape::Unit;
        };
        let repr = if cont.serde.untagged.is_some() {
            EnumRepr::Untagged
        } else {
            match (&cont.serde.tag, &cont.serde.content) {
                (Some(tag), Some(content)) => EnumRepr::Adjacent {
                    tag: tag.value.clone(),
                    content: content.clone(),
                },
                (Some(tag), None) => EnumRepr::Internal {
                    tag: tag.value.clone(),
                },
                _ => EnumRepr::External,
            }
        };
        let mut out = Vec::new();
        for variant in variants.iter().filter(|v| !v.serde.skip) {
            let name = cont.serde_variant_name(variant);
            let variant_cx = Ctx {
                prefix: format!("{}{name}.", cx.prefix),
                ..cx.clone()
            };
            let payload = self.variant_shape(&variant_cx, cont, variant);
            if matches!(repr, EnumRepr::Internal { .. }) && matches!(payload, Shape::Tuple { .. }) {
                self.note(
                    cx,
                    &format!("{}{name}", cx.prefix),
                    "serde cannot write a tuple variant of an internally tagged enum".into(),
                    false,
                );
            }
            out.push(Variant {
                name,
                rust_name: variant.ident.to_string(),
                doc: variant.doc.clone(),
                number: 0,
                payload,
            });
        }
        Shape::Enum {
            repr,
            variants: out,
            reserved: Vec::new(),
        }
    }
}
