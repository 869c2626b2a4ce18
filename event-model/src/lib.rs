//! The attribute grammar of the event framework, parsed once.
//!
//! Both `event-derive` (the proc macros) and `event-build` (the build-script helper that emits
//! schemas and the catalog) read `#[event(...)]` and `#[command(...)]` through this crate, so the
//! two can never disagree about a name, a version or a key.
//!
//! The pipeline is the one serde_derive uses: [`ast::Container::from_ast`] parses (one attribute,
//! one value), [`check::check`] applies the rules that look at several attributes at once, and the
//! caller expands. Every error goes into a [`Ctxt`] with its own span.
//!
//! ```
//! use event_model::{Ctxt, Kind, ast::Container};
//!
//! let input: syn::DeriveInput = syn::parse_quote! {
//!     /// A customer placed an order.
//!     #[event(context = "orders", version = 2)]
//!     struct OrderPlacedV2 { #[event(key)] order_id: String }
//! };
//! let cx = Ctxt::new();
//! let container = Container::from_ast(&cx, &input, Kind::Event).unwrap();
//! event_model::check::check(&cx, &container);
//! cx.check().unwrap();
//! let wire = container.messages();
//! assert_eq!(wire[0].name, "orders.order_placed"); // the `V2` suffix is not part of the name
//! assert_eq!(wire[0].version, 2);
//! assert_eq!(wire[0].key_fields, ["order_id"]);
//! ```

pub mod ast;
pub mod attr;
pub mod check;
mod ctxt;
pub mod handler;
pub mod saga;
pub mod suggest;

pub use ctxt::Ctxt;

use attr::{Codec, Deprecation, Owner, Sla};

/// Which derive is being expanded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `#[derive(DomainEvent)]`: a fact that happened.
    Event,
    /// `#[derive(Command)]`: a request to a context.
    Command,
}

impl Kind {
    /// The attribute this derive reads: `event` or `command`.
    pub fn attr(self) -> &'static str {
        match self {
            Kind::Event => "event",
            Kind::Command => "command",
        }
    }

    /// The derive's name as users write it.
    pub fn derive_name(self) -> &'static str {
        match self {
            Kind::Event => "DomainEvent",
            Kind::Command => "Command",
        }
    }
}

/// One message type as it appears on the wire: a struct, or one variant of an event enum.
#[derive(Clone, Debug)]
pub struct WireMessage {
    /// Event or command.
    pub kind: Kind,
    /// The CloudEvents `type`. Derived names are frozen once published: renaming the Rust type
    /// changes a derived name, so set `name = "..."` explicitly before renaming.
    pub name: String,
    /// The schema version (1 for commands).
    pub version: u32,
    /// Owning (event) or target (command) bounded context.
    pub context: String,
    /// `description = ...`, else the doc comment.
    pub description: Option<String>,
    /// Deprecation and sunset, if any.
    pub deprecated: Option<Deprecation>,
    /// Service-level targets.
    pub sla: Sla,
    /// The owning team, if declared.
    pub owner: Option<Owner>,
    /// Payload codec.
    pub codec: Codec,
    /// The Rust type (`OrderPlaced`) or `Enum::Variant`.
    pub rust_path: String,
    /// The enum variant, for event enums.
    pub variant: Option<syn::Ident>,
    /// The serde name of the variant (what serde writes as the external tag).
    pub serde_variant: Option<String>,
    /// Fields that make up the partition key, in order (empty when the key is an expression or
    /// there is no key).
    pub key_fields: Vec<String>,
    /// The key expression or function, as written, when the key is not a list of fields.
    pub key_expr: Option<String>,
    /// Fields that make up the dedupe key (empty: the event id is the dedupe key).
    pub dedupe_fields: Vec<String>,
    /// The previous version's Rust type, for typed upcasting.
    pub upcast_from: Option<String>,
    /// Versions with a JSON-level upcaster (each lifts `v` to `v + 1`).
    pub json_upcasts: Vec<u32>,
}

/// The default wire name: `<context>.<snake_case type name>`, with a trailing `V<n>` dropped so that
/// `OrderPlacedV1` and `OrderPlaced` share one name.
pub fn default_name(context: &str, type_name: &str) -> String {
    use heck::ToSnakeCase;
    format!(
        "{context}.{}",
        strip_version_suffix(type_name).to_snake_case()
    )
}

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

impl ast::Container<'_> {
    /// The wire messages this container defines, defaults resolved. Call after [`check::check`].
    pub fn messages(&self) -> Vec<WireMessage> {
        let context = self
            .attrs
            .context
            .as_ref()
            .map(|c| c.value.clone())
            .unwrap_or_default();
        let codec = self.attrs.codec.as_ref().map_or(Codec::Json, |c| c.value);
        let key_expr = self
            .attrs
            .key_expr
            .as_ref()
            .map(|e| quote::ToTokens::to_token_stream(e).to_string())
            .or_else(|| {
                self.attrs
                    .key_with
                    .as_ref()
                    .map(|p| quote::ToTokens::to_token_stream(p).to_string())
            });
        let keys = |fields: &[ast::Field<'_>]| -> Vec<String> {
            fields
                .iter()
                .filter(|f| f.attrs.key.is_some())
                .map(ast::Field::name)
                .collect()
        };
        let dedupe = |fields: &[ast::Field<'_>]| -> Vec<String> {
            fields
                .iter()
                .filter(|f| f.attrs.dedupe.is_some())
                .map(ast::Field::name)
                .collect()
        };
        match &self.data {
            ast::Data::Struct(_, fields) => vec![WireMessage {
                kind: self.kind,
                name: self.attrs.name.as_ref().map_or_else(
                    || default_name(&context, &self.ident.to_string()),
                    |n| n.value.clone(),
                ),
                version: self.attrs.version.as_ref().map_or(1, |v| v.value),
                context,
                description: self.attrs.description.clone().or_else(|| self.doc.clone()),
                deprecated: self.attrs.deprecated.as_ref().map(|d| d.value.clone()),
                sla: self.attrs.sla.clone(),
                owner: self.attrs.owner.as_ref().map(|o| o.value.clone()),
                codec,
                rust_path: self.ident.to_string(),
                variant: None,
                serde_variant: None,
                key_fields: keys(fields),
                key_expr,
                dedupe_fields: dedupe(fields),
                upcast_from: self.attrs.upcast_from.as_ref().map(|t| {
                    quote::ToTokens::to_token_stream(t)
                        .to_string()
                        .replace(' ', "")
                }),
                json_upcasts: self
                    .attrs
                    .upcast_json
                    .iter()
                    .map(|u| u.from.value)
                    .collect(),
            }],
            ast::Data::Enum(variants) => variants
                .iter()
                .map(|variant| WireMessage {
                    kind: self.kind,
                    name: variant.attrs.name.as_ref().map_or_else(
                        || default_name(&context, &variant.ident.to_string()),
                        |n| n.value.clone(),
                    ),
                    version: variant.attrs.version.as_ref().map_or(1, |v| v.value),
                    context: context.clone(),
                    description: variant
                        .attrs
                        .description
                        .clone()
                        .or_else(|| variant.doc.clone()),
                    deprecated: variant
                        .attrs
                        .deprecated
                        .as_ref()
                        .or(self.attrs.deprecated.as_ref())
                        .map(|d| d.value.clone()),
                    sla: Sla {
                        max_latency_ms: variant
                            .attrs
                            .sla
                            .max_latency_ms
                            .or(self.attrs.sla.max_latency_ms),
                        retention_secs: variant
                            .attrs
                            .sla
                            .retention_secs
                            .or(self.attrs.sla.retention_secs),
                    },
                    owner: self.attrs.owner.as_ref().map(|o| o.value.clone()),
                    codec,
                    rust_path: format!("{}::{}", self.ident, variant.ident),
                    variant: Some(variant.ident.clone()),
                    serde_variant: Some(self.serde_variant_name(variant)),
                    key_fields: keys(&variant.fields),
                    key_expr: key_expr.clone(),
                    dedupe_fields: dedupe(&variant.fields),
                    upcast_from: None,
                    json_upcasts: variant
                        .attrs
                        .upcast_json
                        .iter()
                        .map(|u| u.from.value)
                        .collect(),
                })
                .collect(),
        }
    }

    /// The name serde writes for `variant` (its `rename`, or the container's `rename_all`).
    pub fn serde_variant_name(&self, variant: &ast::Variant<'_>) -> String {
        if let Some(rename) = &variant.serde.rename {
            return rename.clone();
        }
        let name = variant.ident.to_string();
        match self.serde.rename_all {
            Some(rule) => rule.apply_to_variant(&name),
            None => name,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_drop_version_suffixes_only() {
        assert_eq!(default_name("orders", "OrderPlaced"), "orders.order_placed");
        assert_eq!(
            default_name("orders", "OrderPlacedV12"),
            "orders.order_placed"
        );
        assert_eq!(
            default_name("orders", "OrderPlaced_V2"),
            "orders.order_placed"
        );
        assert_eq!(default_name("iot", "Sensor2"), "iot.sensor2");
        assert_eq!(default_name("iot", "V2"), "iot.v2");
    }
}
