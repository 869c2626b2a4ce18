//! One attribute, one value: the parsers for `#[event(...)]`, `#[command(...)]` and the parts of
//! `#[serde(...)]` that change what goes over the wire.
//!
//! Nothing here looks at two attributes at once; rules that do live in [`crate::check`].

use proc_macro2::Span;
use quote::ToTokens;
use syn::meta::ParseNestedMeta;
use syn::spanned::Spanned as _;
use syn::{Attribute, LitInt, LitStr, Token};

use crate::Kind;
use crate::ctxt::Ctxt;
use crate::suggest;

/// A value together with the span of the tokens it was read from.
#[derive(Clone, Debug)]
pub struct Spanned<T> {
    /// The parsed value.
    pub value: T,
    /// Where the user wrote it.
    pub span: Span,
}

/// How the payload of a message is encoded on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    /// serde + serde_json; content type `application/json`. The default.
    Json,
    /// prost; content type `application/protobuf`. The type must implement `prost::Message`.
    Protobuf,
}

impl Codec {
    /// The name users write in `codec = ...`.
    pub fn as_str(self) -> &'static str {
        match self {
            Codec::Json => "json",
            Codec::Protobuf => "protobuf",
        }
    }
}

/// A calendar date written as `YYYY-MM-DD`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date {
    /// Four-digit year.
    pub year: u16,
    /// 1..=12.
    pub month: u8,
    /// 1..=31, checked against the month.
    pub day: u8,
}

impl Date {
    /// Parses `YYYY-MM-DD`, checking that the day exists.
    pub fn parse(text: &str) -> Result<Date, String> {
        let bad = || format!("`{text}` is not a date in the form YYYY-MM-DD");
        let parts: Vec<&str> = text.split('-').collect();
        if parts.len() != 3 || parts[0].len() != 4 || parts[1].len() != 2 || parts[2].len() != 2 {
            return Err(bad());
        }
        let year: u16 = parts[0].parse().map_err(|_| bad())?;
        let month: u8 = parts[1].parse().map_err(|_| bad())?;
        let day: u8 = parts[2].parse().map_err(|_| bad())?;
        let leap =
            (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400);
        let days_in_month = match month {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if leap => 29,
            2 => 28,
            _ => return Err(format!("`{text}`: month {month} does not exist")),
        };
        if day == 0 || day > days_in_month {
            return Err(format!("`{text}`: day {day} does not exist in that month"));
        }
        Ok(Date { year, month, day })
    }
}

impl std::fmt::Display for Date {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// `deprecated` or `deprecated(since = "...", sunset = "...", note = "...")`.
#[derive(Clone, Debug, Default)]
pub struct Deprecation {
    /// When the version was deprecated.
    pub since: Option<Date>,
    /// After this date producers must stop publishing the version (the build gate enforces it).
    pub sunset: Option<Date>,
    /// What to use instead.
    pub note: Option<String>,
}

/// The team that owns a message: `owner(team = "checkout", contact = "#checkout-oncall")`. The
/// catalog lists it on the message's page and gives every team a page of its own.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Owner {
    /// The team's name.
    pub team: String,
    /// How to reach it: a channel, an address, a URL.
    pub contact: Option<String>,
}

/// Service-level targets shown in the catalog: `sla(max_latency = "250ms", retention = "7d")`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sla {
    /// Maximum end-to-end latency (publish to handled), in milliseconds.
    pub max_latency_ms: Option<u64>,
    /// How long the event is kept on the broker, in seconds.
    pub retention_secs: Option<u64>,
}

/// Parses a duration such as `250ms`, `2s`, `15m`, `12h`, `7d` into milliseconds.
pub fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_end);
    let bad = || {
        format!(
            "`{text}` is not a duration; write a whole number and a unit: ms, s, m, h or d (e.g. \"250ms\", \"7d\")"
        )
    };
    let amount: u64 = digits.parse().map_err(|_| bad())?;
    let factor = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad()),
    };
    amount.checked_mul(factor).ok_or_else(bad)
}

/// `upcast_json(from = 1, with = path::to::function)`: lifts a JSON payload of version `from` to
/// version `from + 1` when the Rust type of version `from` no longer exists.
#[derive(Clone, Debug)]
pub struct JsonUpcaster {
    /// The version this function reads.
    pub from: Spanned<u32>,
    /// `fn(serde_json::Value) -> Result<serde_json::Value, UpcastError>`.
    pub with: syn::ExprPath,
}

/// Container-level attributes of `#[event(...)]` / `#[command(...)]`.
#[derive(Clone, Debug, Default)]
pub struct ContainerAttrs {
    /// `name = "..."`: the stable wire name (CloudEvents `type`).
    pub name: Option<Spanned<String>>,
    /// `version = N`.
    pub version: Option<Spanned<u32>>,
    /// `context = "..."`: the owning (event) or target (command) bounded context.
    pub context: Option<Spanned<String>>,
    /// `description = "..."`; the doc comment otherwise.
    pub description: Option<String>,
    /// `upcast_from = PreviousVersionType`.
    pub upcast_from: Option<syn::Type>,
    /// `upcast_with = path::to::fn`: lifts the `upcast_from` type instead of `From`.
    pub upcast_with: Option<syn::ExprPath>,
    /// `upcast_json(from = N, with = f)`, any number of them.
    pub upcast_json: Vec<JsonUpcaster>,
    /// `deprecated(...)`.
    pub deprecated: Option<Spanned<Deprecation>>,
    /// `sla(...)`.
    pub sla: Sla,
    /// `owner(team = "...", contact = "...")`: the owning team, for the catalog. The derive
    /// accepts it and otherwise ignores it.
    pub owner: Option<Spanned<Owner>>,
    /// `key = <expression using self>`.
    pub key_expr: Option<syn::Expr>,
    /// `key_with = path::to::fn` taking `&Self`.
    pub key_with: Option<syn::ExprPath>,
    /// `codec = json | protobuf`.
    pub codec: Option<Spanned<Codec>>,
    /// `crate = "path"`: where the runtime facade lives, for users who rename it.
    pub crate_path: Option<syn::Path>,
    /// `compatibility = "BACKWARD"`: the event's compatibility mode, checked by event-build's
    /// schema registry gate. The value is normalised to its Confluent name (one of
    /// [`COMPATIBILITY_MODES`]); the derive accepts it and otherwise ignores it.
    pub compatibility: Option<Spanned<String>>,
}

/// Variant-level attributes (enum events: each variant is its own event type).
#[derive(Clone, Debug, Default)]
pub struct VariantAttrs {
    /// `name = "..."`.
    pub name: Option<Spanned<String>>,
    /// `version = N`.
    pub version: Option<Spanned<u32>>,
    /// `description = "..."`.
    pub description: Option<String>,
    /// `upcast_json(from = N, with = f)`.
    pub upcast_json: Vec<JsonUpcaster>,
    /// `deprecated(...)`.
    pub deprecated: Option<Spanned<Deprecation>>,
    /// `sla(...)`.
    pub sla: Sla,
}

/// Field-level attributes.
#[derive(Clone, Debug, Default)]
pub struct FieldAttrs {
    /// `#[event(key)]`: part of the partition key.
    pub key: Option<Span>,
    /// `#[event(dedupe)]`: part of the dedupe key.
    pub dedupe: Option<Span>,
    /// `#[event(tag = 3)]`: the field's number in the generated `.proto` (event-build). The derive
    /// checks the number and otherwise ignores it.
    pub tag: Option<Spanned<u32>>,
    /// `#[event(schema = "{\"type\": \"string\"}")]`: the JSON Schema of the field's wire value,
    /// for a type event-build cannot resolve. The derive ignores it; event-build checks that it
    /// is a JSON object.
    pub schema: Option<Spanned<String>>,
}

/// Which names are allowed where; also the source of "did you mean" hints.
pub const EVENT_CONTAINER_ATTRS: &[&str] = &[
    "name",
    "version",
    "context",
    "description",
    "upcast_from",
    "upcast_with",
    "upcast_json",
    "deprecated",
    "sla",
    "owner",
    "key",
    "key_with",
    "codec",
    "crate",
    "compatibility",
];
/// Attributes allowed on `#[command(...)]` containers.
pub const COMMAND_CONTAINER_ATTRS: &[&str] = &[
    "name",
    "version",
    "context",
    "description",
    "upcast_from",
    "upcast_with",
    "upcast_json",
    "deprecated",
    "owner",
    "key",
    "key_with",
    "codec",
    "crate",
    "compatibility",
];
/// The values of `compatibility = "..."`, as Confluent Schema Registry names them. Written in
/// any case, with `-` or `_`.
pub const COMPATIBILITY_MODES: &[&str] = &[
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
    "NONE",
];

/// Normalises a compatibility mode as users may write it (`backward-transitive`) to its
/// Confluent name (`BACKWARD_TRANSITIVE`), or explains why it is not one.
pub fn parse_compatibility(text: &str) -> Result<&'static str, String> {
    let normal = text.trim().to_ascii_uppercase().replace('-', "_");
    COMPATIBILITY_MODES
        .iter()
        .find(|mode| **mode == normal)
        .copied()
        .ok_or_else(|| {
            format!(
                "unknown compatibility mode `{text}`{}",
                suggest::suffix(&normal, COMPATIBILITY_MODES)
            )
        })
}

fn compatibility(meta: &ParseNestedMeta<'_>) -> syn::Result<Spanned<String>> {
    let lit = lit_str(meta, "compatibility")?;
    let value = parse_compatibility(&lit.value).map_err(|msg| syn::Error::new(lit.span, msg))?;
    Ok(Spanned {
        value: value.to_owned(),
        span: lit.span,
    })
}

/// Attributes allowed on enum variants of an event enum.
pub const VARIANT_ATTRS: &[&str] = &[
    "name",
    "version",
    "description",
    "upcast_json",
    "deprecated",
    "sla",
];
/// Attributes allowed on fields of an event.
pub const EVENT_FIELD_ATTRS: &[&str] = &["key", "dedupe", "tag", "schema"];
/// Attributes allowed on fields of a command.
pub const COMMAND_FIELD_ATTRS: &[&str] = &["key", "tag", "schema"];

/// The largest protobuf field number.
pub const MAX_FIELD_NUMBER: u32 = 536_870_911;
/// Field numbers protobuf reserves for its own implementation.
pub const RESERVED_FIELD_NUMBERS: std::ops::RangeInclusive<u32> = 19_000..=19_999;

fn duplicate(cx: &Ctxt, kind: Kind, meta: &ParseNestedMeta<'_>, name: &str) {
    cx.error_spanned_by(
        &meta.path,
        format!("duplicate {} attribute `{name}`", kind.attr()),
    );
}

fn unknown(cx: &Ctxt, kind: Kind, meta: &ParseNestedMeta<'_>, place: &str, known: &[&str]) {
    let word = meta.path.to_token_stream().to_string().replace(' ', "");
    cx.error_spanned_by(
        &meta.path,
        format!(
            "unknown {} attribute `{word}` on {place}{}",
            kind.attr(),
            suggest::suffix(&word, known)
        ),
    );
    // Swallow the value so that parsing can go on with the next attribute.
    let _ = skip_value(meta);
}

/// Skips `= expr` or `(...)` after an attribute name that we do not interpret.
pub fn skip_value(meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        meta.value()?.parse::<syn::Expr>()?;
    } else if meta.input.peek(syn::token::Paren) {
        meta.parse_nested_meta(|inner| skip_value(&inner))?;
    }
    Ok(())
}

fn set<T>(
    cx: &Ctxt,
    kind: Kind,
    meta: &ParseNestedMeta<'_>,
    slot: &mut Option<T>,
    name: &str,
    value: T,
) {
    if slot.is_some() {
        duplicate(cx, kind, meta, name);
    } else {
        *slot = Some(value);
    }
}

fn lit_str(meta: &ParseNestedMeta<'_>, name: &str) -> syn::Result<Spanned<String>> {
    let input = meta.value()?;
    if !input.peek(LitStr) {
        return Err(input.error(format!("expected a string literal: `{name} = \"...\"`")));
    }
    let lit: LitStr = input.parse()?;
    Ok(Spanned {
        value: lit.value(),
        span: lit.span(),
    })
}

fn version(meta: &ParseNestedMeta<'_>) -> syn::Result<Spanned<u32>> {
    let input = meta.value()?;
    let expr: syn::Expr = input.parse()?;
    let bad = |what: &str| {
        syn::Error::new_spanned(
            &expr,
            format!("event version must be an integer >= 1, like `version = 2`; found {what}"),
        )
    };
    match &expr {
        syn::Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Int(int),
            ..
        }) => parse_version_int(int),
        syn::Expr::Unary(syn::ExprUnary {
            op: syn::UnOp::Neg(_),
            ..
        }) => Err(bad("a negative number")),
        syn::Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Str(s),
            ..
        }) => Err(bad(&format!("the string \"{}\"", s.value()))),
        _ => Err(bad(&format!("`{}`", expr.to_token_stream()))),
    }
}

fn parse_version_int(int: &LitInt) -> syn::Result<Spanned<u32>> {
    let value: u32 = int.base10_parse().map_err(|_| {
        syn::Error::new(
            int.span(),
            "event version must be an integer >= 1 that fits in u32",
        )
    })?;
    if value == 0 {
        return Err(syn::Error::new(
            int.span(),
            "event version must be >= 1: versions are counted from 1",
        ));
    }
    Ok(Spanned {
        value,
        span: int.span(),
    })
}

/// `tag = N`: a protobuf field number, 1..=536870911 outside protobuf's reserved 19000..=19999.
fn field_number(meta: &ParseNestedMeta<'_>) -> syn::Result<Spanned<u32>> {
    let input = meta.value()?;
    let expr: syn::Expr = input.parse()?;
    let bad = || {
        syn::Error::new_spanned(
            &expr,
            format!(
                "a protobuf field number is an integer from 1 to {MAX_FIELD_NUMBER}, like `tag = 3`; found `{}`",
                expr.to_token_stream()
            ),
        )
    };
    let syn::Expr::Lit(syn::ExprLit {
        lit: syn::Lit::Int(int),
        ..
    }) = &expr
    else {
        return Err(bad());
    };
    let value: u32 = int.base10_parse().map_err(|_| bad())?;
    if value == 0 || value > MAX_FIELD_NUMBER {
        return Err(bad());
    }
    if RESERVED_FIELD_NUMBERS.contains(&value) {
        return Err(syn::Error::new(
            int.span(),
            format!(
                "field number {value} is in 19000..=19999, which protobuf reserves for itself; choose another"
            ),
        ));
    }
    Ok(Spanned {
        value,
        span: int.span(),
    })
}

fn upcast_json(meta: &ParseNestedMeta<'_>) -> syn::Result<JsonUpcaster> {
    let mut from = None;
    let mut with = None;
    let span = meta.path.span();
    meta.parse_nested_meta(|inner| {
        if inner.path.is_ident("from") {
            let lit: LitInt = inner.value()?.parse()?;
            from = Some(parse_version_int(&lit)?);
        } else if inner.path.is_ident("with") {
            with = Some(inner.value()?.parse::<syn::ExprPath>()?);
        } else {
            return Err(inner.error("expected `from = N` or `with = path::to::function`"));
        }
        Ok(())
    })?;
    match (from, with) {
        (Some(from), Some(with)) => Ok(JsonUpcaster { from, with }),
        _ => Err(syn::Error::new(
            span,
            "write `upcast_json(from = 1, with = path::to::function)`",
        )),
    }
}

fn deprecated(meta: &ParseNestedMeta<'_>) -> syn::Result<Spanned<Deprecation>> {
    let mut out = Deprecation::default();
    let span = meta.path.span();
    let mut sunset_span = span;
    if meta.input.peek(syn::token::Paren) {
        meta.parse_nested_meta(|inner| {
            let date = |inner: &ParseNestedMeta<'_>, name: &str| -> syn::Result<Spanned<Date>> {
                let lit = lit_str(inner, name)?;
                let value =
                    Date::parse(&lit.value).map_err(|msg| syn::Error::new(lit.span, msg))?;
                Ok(Spanned {
                    value,
                    span: lit.span,
                })
            };
            if inner.path.is_ident("since") {
                out.since = Some(date(&inner, "since")?.value);
            } else if inner.path.is_ident("sunset") {
                let sunset = date(&inner, "sunset")?;
                sunset_span = sunset.span;
                out.sunset = Some(sunset.value);
            } else if inner.path.is_ident("note") {
                out.note = Some(lit_str(&inner, "note")?.value);
            } else {
                let word = inner.path.to_token_stream().to_string();
                return Err(inner.error(format!(
                    "unknown deprecation attribute `{word}`{}",
                    suggest::suffix(&word, &["since", "sunset", "note"])
                )));
            }
            Ok(())
        })?;
    }
    if let (Some(since), Some(sunset)) = (out.since, out.sunset)
        && sunset < since
    {
        return Err(syn::Error::new(
            sunset_span,
            format!(
                "sunset {sunset} is before the deprecation date {since}: a version is deprecated first and stops being published later"
            ),
        ));
    }
    Ok(Spanned { value: out, span })
}

fn owner(meta: &ParseNestedMeta<'_>) -> syn::Result<Spanned<Owner>> {
    let span = meta.path.span();
    let mut out = Owner::default();
    let mut team = None;
    meta.parse_nested_meta(|inner| {
        if inner.path.is_ident("team") {
            let lit = lit_str(&inner, "team")?;
            if lit.value.trim().is_empty() {
                return Err(syn::Error::new(lit.span, "the owning team's name is empty"));
            }
            team = Some(lit.value);
        } else if inner.path.is_ident("contact") {
            out.contact = Some(lit_str(&inner, "contact")?.value);
        } else {
            let word = inner.path.to_token_stream().to_string();
            return Err(inner.error(format!(
                "unknown owner attribute `{word}`{}",
                suggest::suffix(&word, &["team", "contact"])
            )));
        }
        Ok(())
    })?;
    out.team = team.ok_or_else(|| {
        syn::Error::new(
            span,
            "`owner` needs the team: owner(team = \"checkout\", contact = \"#checkout-oncall\")",
        )
    })?;
    Ok(Spanned { value: out, span })
}

fn sla(meta: &ParseNestedMeta<'_>, out: &mut Sla) -> syn::Result<()> {
    meta.parse_nested_meta(|inner| {
        let duration = |inner: &ParseNestedMeta<'_>, name: &str| -> syn::Result<u64> {
            let lit = lit_str(inner, name)?;
            parse_duration_ms(&lit.value).map_err(|msg| syn::Error::new(lit.span, msg))
        };
        if inner.path.is_ident("max_latency") {
            out.max_latency_ms = Some(duration(&inner, "max_latency")?);
        } else if inner.path.is_ident("retention") {
            out.retention_secs = Some(duration(&inner, "retention")? / 1_000);
        } else {
            let word = inner.path.to_token_stream().to_string();
            return Err(inner.error(format!(
                "unknown sla attribute `{word}`{}",
                suggest::suffix(&word, &["max_latency", "retention"])
            )));
        }
        Ok(())
    })
}

fn codec(meta: &ParseNestedMeta<'_>) -> syn::Result<Spanned<Codec>> {
    let input = meta.value()?;
    let (word, span) = if input.peek(LitStr) {
        let lit: LitStr = input.parse()?;
        (lit.value(), lit.span())
    } else {
        let ident: syn::Ident = input.parse()?;
        (ident.to_string(), ident.span())
    };
    let value = match word.as_str() {
        "json" => Codec::Json,
        "protobuf" | "proto" => Codec::Protobuf,
        other => {
            return Err(syn::Error::new(
                span,
                format!(
                    "unknown codec `{other}`{}",
                    suggest::suffix(other, &["json", "protobuf"])
                ),
            ));
        }
    };
    Ok(Spanned { value, span })
}

fn crate_path(meta: &ParseNestedMeta<'_>) -> syn::Result<syn::Path> {
    let input = meta.value()?;
    if input.peek(LitStr) {
        let lit: LitStr = input.parse()?;
        lit.parse().map_err(|_| {
            syn::Error::new(
                lit.span(),
                format!(
                    "`crate = \"{}\"` is not a path; write the path event_runtime is reachable at, e.g. `crate = \"my_app::rt\"`",
                    lit.value()
                ),
            )
        })
    } else {
        input.parse()
    }
}

fn each_attr(
    cx: &Ctxt,
    kind: Kind,
    attrs: &[Attribute],
    mut f: impl FnMut(&ParseNestedMeta<'_>) -> syn::Result<()>,
) {
    for attr in attrs {
        if !attr.path().is_ident(kind.attr()) {
            continue;
        }
        if let syn::Meta::Path(_) = attr.meta {
            cx.error_spanned_by(
                attr,
                format!("write `#[{}(...)]` with at least one setting", kind.attr()),
            );
            continue;
        }
        if let Err(err) = attr.parse_nested_meta(|meta| f(&meta)) {
            cx.syn_error(err);
        }
    }
}

impl ContainerAttrs {
    /// Reads every `#[event(...)]` (or `#[command(...)]`) on a container.
    pub fn parse(cx: &Ctxt, kind: Kind, attrs: &[Attribute]) -> ContainerAttrs {
        let mut out = ContainerAttrs::default();
        let known = match kind {
            Kind::Event => EVENT_CONTAINER_ATTRS,
            Kind::Command => COMMAND_CONTAINER_ATTRS,
        };
        each_attr(cx, kind, attrs, |meta| {
            let Some(ident) = meta.path.get_ident().map(|i| i.to_string()) else {
                unknown(cx, kind, meta, "a type", known);
                return Ok(());
            };
            if !known.contains(&ident.as_str()) {
                let place = match kind {
                    Kind::Command if EVENT_CONTAINER_ATTRS.contains(&ident.as_str()) => "a command",
                    _ => "a type",
                };
                unknown(cx, kind, meta, place, known);
                return Ok(());
            }
            match ident.as_str() {
                "name" => {
                    let value = lit_str(meta, "name")?;
                    set(cx, kind, meta, &mut out.name, "name", value);
                }
                "version" => {
                    let value = version(meta)?;
                    set(cx, kind, meta, &mut out.version, "version", value);
                }
                "context" => {
                    let value = lit_str(meta, "context")?;
                    set(cx, kind, meta, &mut out.context, "context", value);
                }
                "description" => {
                    let value = lit_str(meta, "description")?.value;
                    set(cx, kind, meta, &mut out.description, "description", value);
                }
                "upcast_from" => {
                    let value = meta.value()?.parse::<syn::Type>()?;
                    set(cx, kind, meta, &mut out.upcast_from, "upcast_from", value);
                }
                "upcast_with" => {
                    let value = meta.value()?.parse::<syn::ExprPath>()?;
                    set(cx, kind, meta, &mut out.upcast_with, "upcast_with", value);
                }
                "upcast_json" => out.upcast_json.push(upcast_json(meta)?),
                "deprecated" => {
                    let value = deprecated(meta)?;
                    set(cx, kind, meta, &mut out.deprecated, "deprecated", value);
                }
                "sla" => sla(meta, &mut out.sla)?,
                "owner" => {
                    let value = owner(meta)?;
                    set(cx, kind, meta, &mut out.owner, "owner", value);
                }
                "key" => {
                    let value = meta.value()?.parse::<syn::Expr>()?;
                    set(cx, kind, meta, &mut out.key_expr, "key", value);
                }
                "key_with" => {
                    let value = meta.value()?.parse::<syn::ExprPath>()?;
                    set(cx, kind, meta, &mut out.key_with, "key_with", value);
                }
                "codec" => {
                    let value = codec(meta)?;
                    set(cx, kind, meta, &mut out.codec, "codec", value);
                }
                "crate" => {
                    let value = crate_path(meta)?;
                    set(cx, kind, meta, &mut out.crate_path, "crate", value);
                }
                "compatibility" => {
                    let value = compatibility(meta)?;
                    set(
                        cx,
                        kind,
                        meta,
                        &mut out.compatibility,
                        "compatibility",
                        value,
                    );
                }
                _ => unreachable!("every known attribute is handled"),
            }
            Ok(())
        });
        out
    }
}

impl VariantAttrs {
    /// Reads every `#[event(...)]` on an enum variant.
    pub fn parse(cx: &Ctxt, kind: Kind, attrs: &[Attribute]) -> VariantAttrs {
        let mut out = VariantAttrs::default();
        each_attr(cx, kind, attrs, |meta| {
            let ident = meta.path.get_ident().map(|i| i.to_string());
            match ident.as_deref() {
                Some("name") => {
                    let value = lit_str(meta, "name")?;
                    set(cx, kind, meta, &mut out.name, "name", value);
                }
                Some("version") => {
                    let value = version(meta)?;
                    set(cx, kind, meta, &mut out.version, "version", value);
                }
                Some("description") => {
                    let value = lit_str(meta, "description")?.value;
                    set(cx, kind, meta, &mut out.description, "description", value);
                }
                Some("upcast_json") => out.upcast_json.push(upcast_json(meta)?),
                Some("deprecated") => {
                    let value = deprecated(meta)?;
                    set(cx, kind, meta, &mut out.deprecated, "deprecated", value);
                }
                Some("sla") => sla(meta, &mut out.sla)?,
                _ => unknown(cx, kind, meta, "an enum variant", VARIANT_ATTRS),
            }
            Ok(())
        });
        out
    }
}

impl FieldAttrs {
    /// Reads every `#[event(...)]` (or `#[command(...)]`) on a field.
    pub fn parse(cx: &Ctxt, kind: Kind, attrs: &[Attribute]) -> FieldAttrs {
        let mut out = FieldAttrs::default();
        let known = match kind {
            Kind::Event => EVENT_FIELD_ATTRS,
            Kind::Command => COMMAND_FIELD_ATTRS,
        };
        each_attr(cx, kind, attrs, |meta| {
            let ident = meta.path.get_ident().map(|i| i.to_string());
            match ident.as_deref() {
                Some("key") if !meta.input.peek(Token![=]) => {
                    set(cx, kind, meta, &mut out.key, "key", meta.path.span());
                }
                Some("key") => {
                    cx.error_spanned_by(
                        &meta.path,
                        "on a field, write `#[event(key)]` alone; a key expression goes on the type: `#[event(key = self.a.b)]`",
                    );
                    let _ = skip_value(meta);
                }
                Some("dedupe") if kind == Kind::Event => {
                    set(cx, kind, meta, &mut out.dedupe, "dedupe", meta.path.span());
                }
                Some("tag") => {
                    let value = field_number(meta)?;
                    set(cx, kind, meta, &mut out.tag, "tag", value);
                }
                Some("schema") => {
                    let value = lit_str(meta, "schema")?;
                    set(cx, kind, meta, &mut out.schema, "schema", value);
                }
                _ => unknown(cx, kind, meta, "a field", known),
            }
            Ok(())
        });
        out
    }
}

/// `#[serde(rename_all = "...")]` rules, as serde applies them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RenameRule {
    /// `lowercase`
    Lower,
    /// `UPPERCASE`
    Upper,
    /// `PascalCase`
    Pascal,
    /// `camelCase`
    Camel,
    /// `snake_case`
    Snake,
    /// `SCREAMING_SNAKE_CASE`
    ScreamingSnake,
    /// `kebab-case`
    Kebab,
    /// `SCREAMING-KEBAB-CASE`
    ScreamingKebab,
}

impl RenameRule {
    /// Parses serde's spelling of a rule.
    pub fn parse(text: &str) -> Option<RenameRule> {
        Some(match text {
            "lowercase" => RenameRule::Lower,
            "UPPERCASE" => RenameRule::Upper,
            "PascalCase" => RenameRule::Pascal,
            "camelCase" => RenameRule::Camel,
            "snake_case" => RenameRule::Snake,
            "SCREAMING_SNAKE_CASE" => RenameRule::ScreamingSnake,
            "kebab-case" => RenameRule::Kebab,
            "SCREAMING-KEBAB-CASE" => RenameRule::ScreamingKebab,
            _ => return None,
        })
    }

    /// How serde renames a `PascalCase` variant name.
    pub fn apply_to_variant(self, variant: &str) -> String {
        match self {
            RenameRule::Pascal => variant.to_owned(),
            RenameRule::Lower => variant.to_ascii_lowercase(),
            RenameRule::Upper => variant.to_ascii_uppercase(),
            RenameRule::Camel => {
                let mut chars = variant.chars();
                match chars.next() {
                    Some(first) => first.to_ascii_lowercase().to_string() + chars.as_str(),
                    None => String::new(),
                }
            }
            RenameRule::Snake => {
                let mut snake = String::new();
                for (i, ch) in variant.char_indices() {
                    if i > 0 && ch.is_uppercase() {
                        snake.push('_');
                    }
                    snake.push(ch.to_ascii_lowercase());
                }
                snake
            }
            RenameRule::ScreamingSnake => RenameRule::Snake
                .apply_to_variant(variant)
                .to_ascii_uppercase(),
            RenameRule::Kebab => RenameRule::Snake
                .apply_to_variant(variant)
                .replace('_', "-"),
            RenameRule::ScreamingKebab => RenameRule::ScreamingSnake
                .apply_to_variant(variant)
                .replace('_', "-"),
        }
    }

    /// How serde renames a `snake_case` field name.
    pub fn apply_to_field(self, field: &str) -> String {
        match self {
            RenameRule::Lower | RenameRule::Snake => field.to_owned(),
            RenameRule::Upper | RenameRule::ScreamingSnake => field.to_ascii_uppercase(),
            RenameRule::Pascal => {
                let mut pascal = String::new();
                let mut capitalize = true;
                for ch in field.chars() {
                    if ch == '_' {
                        capitalize = true;
                    } else if capitalize {
                        pascal.push(ch.to_ascii_uppercase());
                        capitalize = false;
                    } else {
                        pascal.push(ch);
                    }
                }
                pascal
            }
            RenameRule::Camel => {
                let pascal = RenameRule::Pascal.apply_to_field(field);
                let mut chars = pascal.chars();
                match chars.next() {
                    Some(first) => first.to_ascii_lowercase().to_string() + chars.as_str(),
                    None => String::new(),
                }
            }
            RenameRule::Kebab => field.replace('_', "-"),
            RenameRule::ScreamingKebab => field.to_ascii_uppercase().replace('_', "-"),
        }
    }
}

/// The container-level serde attributes that change the wire shape.
#[derive(Clone, Debug, Default)]
pub struct SerdeContainer {
    /// `rename = "..."` (the serialize name).
    pub rename: Option<String>,
    /// `rename_all = "..."` (the serialize rule).
    pub rename_all: Option<RenameRule>,
    /// Span of `deny_unknown_fields`, if present.
    pub deny_unknown_fields: Option<Span>,
    /// `tag = "..."` (internally or adjacently tagged enum).
    pub tag: Option<Spanned<String>>,
    /// `content = "..."` (adjacently tagged enum).
    pub content: Option<String>,
    /// Span of `untagged`, if present.
    pub untagged: Option<Span>,
    /// `transparent`.
    pub transparent: bool,
    /// `default` or `default = "path"`: every missing field takes its value from the default.
    pub default: bool,
    /// `rename_all_fields = "..."` (the serialize rule for the fields of every struct variant).
    pub rename_all_fields: Option<RenameRule>,
}

/// The variant- and field-level serde attributes that change the wire shape.
#[derive(Clone, Debug, Default)]
pub struct SerdeMember {
    /// `rename = "..."` (the serialize name).
    pub rename: Option<String>,
    /// `skip` or `skip_serializing`: never written.
    pub skip: bool,
    /// `skip_deserializing` (or `skip`): written but never read.
    pub skip_deserializing: bool,
    /// `skip_serializing_if = "..."`: written only sometimes.
    pub skip_serializing_if: bool,
    /// `default` or `default = "path"`.
    pub default: bool,
    /// The function of `default = "path"`, if one is named.
    pub default_path: Option<String>,
    /// `flatten`.
    pub flatten: bool,
    /// `rename_all = "..."` on a struct variant: the serialize rule for its fields.
    pub rename_all: Option<RenameRule>,
    /// `with = "module"` or `serialize_with = "function"`: the value is written by custom code.
    pub with: Option<String>,
}

fn serde_rename(meta: &ParseNestedMeta<'_>) -> syn::Result<Option<String>> {
    if meta.input.peek(Token![=]) {
        let lit: LitStr = meta.value()?.parse()?;
        return Ok(Some(lit.value()));
    }
    let mut serialize = None;
    meta.parse_nested_meta(|inner| {
        if inner.path.is_ident("serialize") {
            let lit: LitStr = inner.value()?.parse()?;
            serialize = Some(lit.value());
        } else {
            skip_value(&inner)?;
        }
        Ok(())
    })?;
    Ok(serialize)
}

fn each_serde(attrs: &[Attribute], mut f: impl FnMut(&ParseNestedMeta<'_>) -> syn::Result<bool>) {
    for attr in attrs.iter().filter(|a| a.path().is_ident("serde")) {
        // serde reports its own syntax errors; we only read what we understand.
        let _ = attr.parse_nested_meta(|meta| {
            if !f(&meta)? {
                skip_value(&meta)?;
            }
            Ok(())
        });
    }
}

impl SerdeContainer {
    /// Reads the wire-relevant parts of `#[serde(...)]` on a container.
    pub fn parse(attrs: &[Attribute]) -> SerdeContainer {
        let mut out = SerdeContainer::default();
        each_serde(attrs, |meta| {
            if meta.path.is_ident("rename") {
                out.rename = serde_rename(meta)?;
            } else if meta.path.is_ident("rename_all") {
                let rule = serde_rename(meta)?;
                out.rename_all = rule.as_deref().and_then(RenameRule::parse);
            } else if meta.path.is_ident("deny_unknown_fields") {
                out.deny_unknown_fields = Some(meta.path.span());
            } else if meta.path.is_ident("tag") {
                let lit: LitStr = meta.value()?.parse()?;
                out.tag = Some(Spanned {
                    value: lit.value(),
                    span: meta.path.span(),
                });
            } else if meta.path.is_ident("content") {
                let lit: LitStr = meta.value()?.parse()?;
                out.content = Some(lit.value());
            } else if meta.path.is_ident("untagged") {
                out.untagged = Some(meta.path.span());
            } else if meta.path.is_ident("transparent") {
                out.transparent = true;
            } else if meta.path.is_ident("default") {
                out.default = true;
                return Ok(false);
            } else if meta.path.is_ident("rename_all_fields") {
                let rule = serde_rename(meta)?;
                out.rename_all_fields = rule.as_deref().and_then(RenameRule::parse);
            } else {
                return Ok(false);
            }
            Ok(true)
        });
        out
    }
}

impl SerdeMember {
    /// Reads the wire-relevant parts of `#[serde(...)]` on a variant or field.
    pub fn parse(attrs: &[Attribute]) -> SerdeMember {
        let mut out = SerdeMember::default();
        each_serde(attrs, |meta| {
            if meta.path.is_ident("rename") {
                out.rename = serde_rename(meta)?;
            } else if meta.path.is_ident("skip") {
                out.skip = true;
                out.skip_deserializing = true;
            } else if meta.path.is_ident("skip_serializing") {
                out.skip = true;
            } else if meta.path.is_ident("skip_deserializing") {
                out.skip_deserializing = true;
            } else if meta.path.is_ident("skip_serializing_if") {
                out.skip_serializing_if = true;
                return Ok(false);
            } else if meta.path.is_ident("default") {
                out.default = true;
                if meta.input.peek(Token![=]) {
                    let lit: LitStr = meta.value()?.parse()?;
                    out.default_path = Some(lit.value());
                }
            } else if meta.path.is_ident("flatten") {
                out.flatten = true;
            } else if meta.path.is_ident("rename_all") {
                let rule = serde_rename(meta)?;
                out.rename_all = rule.as_deref().and_then(RenameRule::parse);
            } else if meta.path.is_ident("with") || meta.path.is_ident("serialize_with") {
                let lit: LitStr = meta.value()?.parse()?;
                out.with = Some(lit.value());
            } else {
                return Ok(false);
            }
            Ok(true)
        });
        out
    }
}

/// Collects the `///` doc comment of an item into one string (lines joined, trimmed).
pub fn doc_comment(attrs: &[Attribute]) -> Option<String> {
    let mut lines = Vec::new();
    for attr in attrs.iter().filter(|a| a.path().is_ident("doc")) {
        if let syn::Meta::NameValue(nv) = &attr.meta
            && let syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) = &nv.value
        {
            lines.push(s.value().trim().to_owned());
        }
    }
    let text = lines.join("\n").trim().to_owned();
    (!text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_dates_parse_or_say_why() {
        assert_eq!(parse_duration_ms("250ms"), Ok(250));
        assert_eq!(parse_duration_ms("7d"), Ok(7 * 86_400_000));
        assert!(parse_duration_ms("7 days").unwrap_err().contains("unit"));
        assert!(parse_duration_ms("").is_err());
        assert_eq!(Date::parse("2024-02-29").unwrap().to_string(), "2024-02-29");
        assert!(Date::parse("2023-02-29").unwrap_err().contains("day 29"));
        assert!(Date::parse("2023-13-01").is_err());
        assert!(Date::parse("23-1-1").is_err());
    }

    #[test]
    fn rename_rules_match_serde() {
        assert_eq!(
            RenameRule::Snake.apply_to_variant("OrderPlaced"),
            "order_placed"
        );
        assert_eq!(
            RenameRule::ScreamingKebab.apply_to_variant("OrderPlaced"),
            "ORDER-PLACED"
        );
        assert_eq!(RenameRule::Camel.apply_to_field("order_id"), "orderId");
        assert_eq!(RenameRule::Pascal.apply_to_field("order_id"), "OrderId");
    }

    fn field_attrs(attr: Attribute) -> (FieldAttrs, Result<(), syn::Error>) {
        let cx = Ctxt::new();
        let attrs = FieldAttrs::parse(&cx, Kind::Event, &[attr]);
        (attrs, cx.check())
    }

    #[test]
    fn field_numbers_and_schemas_parse_for_the_build_step() {
        let (attrs, result) = field_attrs(syn::parse_quote!(
            #[event(key, tag = 7, schema = "{\"type\": \"string\"}")]
        ));
        result.unwrap();
        assert!(attrs.key.is_some());
        assert_eq!(attrs.tag.map(|t| t.value), Some(7));
        assert_eq!(
            attrs.schema.map(|s| s.value).as_deref(),
            Some("{\"type\": \"string\"}")
        );
        for (attr, message) in [
            (
                syn::parse_quote!(#[event(tag = 0)]),
                "integer from 1 to 536870911",
            ),
            (
                syn::parse_quote!(#[event(tag = "3")]),
                "integer from 1 to 536870911",
            ),
            (syn::parse_quote!(#[event(tag = 19_500)]), "19000..=19999"),
            (
                syn::parse_quote!(#[event(schema = 3)]),
                "expected a string literal",
            ),
            (syn::parse_quote!(#[event(tag = 1, tag = 2)]), "duplicate"),
        ] {
            let (_, result) = field_attrs(attr);
            let err = result.unwrap_err().to_string();
            assert!(err.contains(message), "{err}");
        }
    }

    #[test]
    fn serde_member_attributes_that_change_the_wire() {
        let member = SerdeMember::parse(&[
            syn::parse_quote!(#[serde(default = "zero", skip_serializing_if = "is_zero")]),
            syn::parse_quote!(#[serde(skip_deserializing, with = "time::serde::rfc3339")]),
            syn::parse_quote!(#[serde(rename_all = "camelCase")]),
        ]);
        assert!(member.default && member.skip_serializing_if && member.skip_deserializing);
        assert!(!member.skip);
        assert_eq!(member.default_path.as_deref(), Some("zero"));
        assert_eq!(member.with.as_deref(), Some("time::serde::rfc3339"));
        assert_eq!(member.rename_all, Some(RenameRule::Camel));
        let skipped = SerdeMember::parse(&[syn::parse_quote!(#[serde(skip)])]);
        assert!(skipped.skip && skipped.skip_deserializing);
        let container = SerdeContainer::parse(&[syn::parse_quote!(
            #[serde(default, tag = "t", content = "c", rename_all_fields = "kebab-case")]
        )]);
        assert!(container.default);
        assert_eq!(container.tag.map(|t| t.value).as_deref(), Some("t"));
        assert_eq!(container.content.as_deref(), Some("c"));
        assert_eq!(container.rename_all_fields, Some(RenameRule::Kebab));
    }
}
