//! The derive input, with our attributes parsed and a reference to every original syn node kept
//! for spans.

use crate::Kind;
use crate::attr::{
    ContainerAttrs, FieldAttrs, SerdeContainer, SerdeMember, VariantAttrs, doc_comment,
};
use crate::ctxt::Ctxt;

/// A struct or enum carrying `#[derive(DomainEvent)]` or `#[derive(Command)]`.
pub struct Container<'a> {
    /// The type's name.
    pub ident: &'a syn::Ident,
    /// Event or command.
    pub kind: Kind,
    /// Our attributes.
    pub attrs: ContainerAttrs,
    /// The serde attributes that shape the wire.
    pub serde: SerdeContainer,
    /// Fields or variants.
    pub data: Data<'a>,
    /// The doc comment.
    pub doc: Option<String>,
    /// The input as syn parsed it.
    pub original: &'a syn::DeriveInput,
}

/// The body of a container.
pub enum Data<'a> {
    /// A struct and its fields.
    Struct(Style, Vec<Field<'a>>),
    /// An enum: for events, every variant is one event type of the same entity.
    Enum(Vec<Variant<'a>>),
}

/// How the fields of a struct or variant are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// `{ a: T }`
    Named,
    /// `(T)`; one field is a newtype.
    Tuple,
    /// No fields.
    Unit,
}

/// One enum variant.
pub struct Variant<'a> {
    /// The variant's name.
    pub ident: &'a syn::Ident,
    /// Our attributes.
    pub attrs: VariantAttrs,
    /// serde's attributes.
    pub serde: SerdeMember,
    /// How its fields are written.
    pub style: Style,
    /// Its fields.
    pub fields: Vec<Field<'a>>,
    /// The doc comment.
    pub doc: Option<String>,
    /// The variant as syn parsed it.
    pub original: &'a syn::Variant,
}

/// One field of a struct or variant.
pub struct Field<'a> {
    /// `self.<member>`.
    pub member: syn::Member,
    /// The field's type.
    pub ty: &'a syn::Type,
    /// Our attributes.
    pub attrs: FieldAttrs,
    /// serde's attributes.
    pub serde: SerdeMember,
    /// The doc comment.
    pub doc: Option<String>,
    /// The field as syn parsed it.
    pub original: &'a syn::Field,
}

impl Field<'_> {
    /// The field's Rust name, or its index for tuple fields.
    pub fn name(&self) -> String {
        match &self.member {
            syn::Member::Named(ident) => ident.to_string(),
            syn::Member::Unnamed(index) => index.index.to_string(),
        }
    }
}

impl<'a> Container<'a> {
    /// Parses our attributes on `input`; `None` for unions (already reported on `cx`).
    pub fn from_ast(cx: &Ctxt, input: &'a syn::DeriveInput, kind: Kind) -> Option<Container<'a>> {
        let attrs = ContainerAttrs::parse(cx, kind, &input.attrs);
        let data = match &input.data {
            syn::Data::Struct(data) => {
                let (style, fields) = fields_from_ast(cx, kind, &data.fields);
                Data::Struct(style, fields)
            }
            syn::Data::Enum(data) => Data::Enum(
                data.variants
                    .iter()
                    .map(|variant| {
                        let (style, fields) = fields_from_ast(cx, kind, &variant.fields);
                        Variant {
                            ident: &variant.ident,
                            attrs: VariantAttrs::parse(cx, kind, &variant.attrs),
                            serde: SerdeMember::parse(&variant.attrs),
                            style,
                            fields,
                            doc: doc_comment(&variant.attrs),
                            original: variant,
                        }
                    })
                    .collect(),
            ),
            syn::Data::Union(data) => {
                cx.error_spanned_by(
                    data.union_token,
                    format!(
                        "#[derive({})] does not support unions; use a struct or an enum",
                        kind.derive_name()
                    ),
                );
                return None;
            }
        };
        Some(Container {
            ident: &input.ident,
            kind,
            attrs,
            serde: SerdeContainer::parse(&input.attrs),
            data,
            doc: doc_comment(&input.attrs),
            original: input,
        })
    }

    /// Every field of the container (all variants' fields for an enum).
    pub fn all_fields(&self) -> Box<dyn Iterator<Item = &Field<'a>> + '_> {
        match &self.data {
            Data::Struct(_, fields) => Box::new(fields.iter()),
            Data::Enum(variants) => Box::new(variants.iter().flat_map(|v| v.fields.iter())),
        }
    }
}

fn fields_from_ast<'a>(cx: &Ctxt, kind: Kind, fields: &'a syn::Fields) -> (Style, Vec<Field<'a>>) {
    let style = match fields {
        syn::Fields::Named(_) => Style::Named,
        syn::Fields::Unnamed(_) => Style::Tuple,
        syn::Fields::Unit => Style::Unit,
    };
    let fields = fields
        .iter()
        .enumerate()
        .map(|(i, field)| Field {
            member: match &field.ident {
                Some(ident) => syn::Member::Named(ident.clone()),
                None => syn::Member::Unnamed(i.into()),
            },
            ty: &field.ty,
            attrs: FieldAttrs::parse(cx, kind, &field.attrs),
            serde: SerdeMember::parse(&field.attrs),
            doc: doc_comment(&field.attrs),
            original: field,
        })
        .collect();
    (style, fields)
}
