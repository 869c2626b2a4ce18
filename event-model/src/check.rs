//! Rules that look at several attributes at once. Each violation is reported on the span of the
//! attribute that has to change.

use proc_macro2::{Span, TokenStream};
use quote::ToTokens as _;

use crate::Kind;
use crate::ast::{Container, Data, Field};
use crate::attr::{Codec, JsonUpcaster, Spanned};
use crate::ctxt::Ctxt;

/// Applies every cross-attribute rule to `cont`, recording violations on `cx`.
///
/// Does nothing when parsing already recorded an error: a setting whose value was rejected (or an
/// attribute whose parsing stopped early) is missing from `cont`, and the rules would report that
/// absence as further mistakes (a "missing `context`" next to a bad `version`, for instance).
pub fn check(cx: &Ctxt, cont: &Container<'_>) {
    if cx.has_errors() {
        return;
    }
    check_generics(cx, cont);
    check_context(cx, cont);
    check_names(cx, cont);
    check_serde(cx, cont);
    check_keys(cx, cont);
    check_upcasting(cx, cont);
    check_codec(cx, cont);
    check_field_numbers(cx, cont);
}

fn check_generics(cx: &Ctxt, cont: &Container<'_>) {
    let generics = &cont.original.generics;
    if !generics.params.is_empty() {
        cx.error_spanned_by(
            generics,
            format!(
                "{} type cannot be generic: each one has a single wire name and schema",
                match cont.kind {
                    Kind::Event => "an event",
                    Kind::Command => "a command",
                }
            ),
        );
    }
}

fn check_context(cx: &Ctxt, cont: &Container<'_>) {
    match &cont.attrs.context {
        None => {
            let what = match cont.kind {
                Kind::Event => {
                    "missing `context`: every event is owned by one bounded context; add #[event(context = \"orders\")]"
                }
                Kind::Command => {
                    "missing `context`: every command targets one bounded context; add #[command(context = \"payments\")]"
                }
            };
            cx.error_spanned_by(cont.ident, what);
        }
        Some(context) => {
            let valid = context
                .value
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_lowercase())
                && context
                    .value
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
            if !valid {
                cx.error_at(
                    context.span,
                    format!(
                        "context `{}` must start with a lowercase letter and use only a-z, 0-9, `_` and `-`",
                        context.value
                    ),
                );
            }
        }
    }
}

fn check_name(cx: &Ctxt, name: &Spanned<String>) {
    let valid = !name.value.is_empty()
        && name
            .value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !valid {
        cx.error_at(
            name.span,
            format!(
                "name `{}` must be non-empty and use only ASCII letters, digits, `.`, `_` and `-` (it becomes the CloudEvents `type`)",
                name.value
            ),
        );
    }
}

fn check_names(cx: &Ctxt, cont: &Container<'_>) {
    if let Some(name) = &cont.attrs.name {
        check_name(cx, name);
    }
    if let Data::Enum(variants) = &cont.data {
        for (attr, what) in [
            (cont.attrs.name.as_ref().map(|n| n.span), "name"),
            (cont.attrs.version.as_ref().map(|v| v.span), "version"),
        ] {
            if let Some(span) = attr {
                cx.error_at(
                    span,
                    format!(
                        "on an enum every variant is its own event: put `{what}` on the variants, e.g. #[event({what} = ...)] above the variant"
                    ),
                );
            }
        }
        if variants.is_empty() {
            cx.error_spanned_by(cont.ident, "an event enum needs at least one variant");
        }
        for variant in variants {
            if let Some(name) = &variant.attrs.name {
                check_name(cx, name);
            }
        }
        // Two variants claiming one name: each variant is a distinct event type.
        let messages = cont.messages();
        for (i, a) in messages.iter().enumerate() {
            for (b, variant) in messages.iter().zip(variants).skip(i + 1) {
                if a.name == b.name {
                    // On the `name = "..."` that repeats the name, else on the variant whose
                    // derived name does.
                    let span = variant
                        .attrs
                        .name
                        .as_ref()
                        .map_or_else(|| variant.ident.span(), |n| n.span);
                    cx.error_at(
                        span,
                        format!(
                            "event name `{}` is already used by variant `{}`; every variant is its own event type and needs its own name",
                            b.name,
                            a.variant.as_ref().map(ToString::to_string).unwrap_or_default()
                        ),
                    );
                }
            }
        }
    }
}

fn check_serde(cx: &Ctxt, cont: &Container<'_>) {
    if let Some(span) = cont.serde.deny_unknown_fields {
        cx.error_at(
            span,
            "#[serde(deny_unknown_fields)] is not allowed on a message: consumers must ignore unknown fields so that producers can add optional fields without breaking them (remove it; the schema registry checks compatibility instead)",
        );
    }
    if let Data::Enum(_) = &cont.data {
        if let Some(tag) = &cont.serde.tag {
            cx.error_at(
                tag.span,
                "an event enum must keep serde's default (externally tagged) representation: the CloudEvents `type` already says which variant it is, and the payload is the variant's own fields",
            );
        }
        if let Some(span) = cont.serde.untagged {
            cx.error_at(
                span,
                "an event enum cannot be #[serde(untagged)]: the CloudEvents `type` says which variant it is, and the payload is the variant's own fields",
            );
        }
    }
}

fn check_keys(cx: &Ctxt, cont: &Container<'_>) {
    let field_key = cont.all_fields().find_map(|f| f.attrs.key);
    let on_fields = format!("#[{}(key)] on fields", cont.kind.attr());
    // The tokens of each source, so that the error underlines all of the second one.
    let sources: Vec<(TokenStream, &str)> = [
        field_key.map(|span| (quote::quote_spanned!(span=> key), on_fields.as_str())),
        cont.attrs
            .key_expr
            .as_ref()
            .map(|e| (e.to_token_stream(), "`key = ...`")),
        cont.attrs
            .key_with
            .as_ref()
            .map(|p| (p.to_token_stream(), "`key_with = ...`")),
    ]
    .into_iter()
    .flatten()
    .collect();
    if sources.len() > 1 {
        let names: Vec<&str> = sources.iter().map(|(_, what)| *what).collect();
        cx.error_spanned_by(
            &sources[1].0,
            format!(
                "the partition key is given twice ({}); choose one",
                names.join(" and ")
            ),
        );
    }
}

fn check_json_upcasters(cx: &Ctxt, version: u32, version_span: Span, upcasters: &[JsonUpcaster]) {
    let mut seen: Vec<u32> = Vec::new();
    for upcaster in upcasters {
        let from = upcaster.from.value;
        if seen.contains(&from) {
            cx.error_at(
                upcaster.from.span,
                format!("duplicate upcaster: version {from} already has an `upcast_json`"),
            );
        } else if from >= version {
            cx.error_at(
                upcaster.from.span,
                format!(
                    "`upcast_json(from = {from})` cannot lift to version {version}: it must read an older version than {version}"
                ),
            );
        }
        seen.push(from);
    }
    if seen.is_empty() {
        return;
    }
    // The chain must run without a gap from its lowest version up to `version`.
    let lowest = *seen.iter().min().expect("non-empty");
    for missing in lowest..version {
        if !seen.contains(&missing) {
            cx.error_at(
                version_span,
                format!(
                    "broken upcast chain: versions {lowest}..{version} need an upcaster for every step, but there is none from version {missing} to {}; add upcast_json(from = {missing}, with = ...)",
                    missing + 1
                ),
            );
        }
    }
}

fn check_upcasting(cx: &Ctxt, cont: &Container<'_>) {
    let span_of_version = |v: &Option<Spanned<u32>>, fallback: &syn::Ident| {
        v.as_ref().map_or_else(|| fallback.span(), |v| v.span)
    };
    match &cont.data {
        Data::Struct(..) => {
            let version = cont.attrs.version.as_ref().map_or(1, |v| v.value);
            let version_span = span_of_version(&cont.attrs.version, cont.ident);
            if let (Some(with), None) = (&cont.attrs.upcast_with, &cont.attrs.upcast_from) {
                cx.error_spanned_by(
                    with,
                    "`upcast_with` needs `upcast_from = PreviousType`: it names the function that lifts that type",
                );
            }
            if let Some(from) = &cont.attrs.upcast_from {
                if version == 1 {
                    cx.error_spanned_by(
                        from,
                        "`upcast_from` on version 1: there is no older version to read; set `version = 2` (or higher) on this type",
                    );
                }
                if let Some(first) = cont.attrs.upcast_json.first() {
                    cx.error_at(
                        first.from.span,
                        "this type already reads older versions through `upcast_from`; put `upcast_json` on the oldest Rust type in the chain",
                    );
                }
            }
            check_json_upcasters(cx, version, version_span, &cont.attrs.upcast_json);
        }
        Data::Enum(variants) => {
            if let Some(from) = &cont.attrs.upcast_from {
                cx.error_spanned_by(
                    from,
                    "`upcast_from` goes on struct events; for a variant whose old type was deleted use #[event(upcast_json(from = N, with = f))] on the variant",
                );
            }
            for variant in variants {
                let version = variant.attrs.version.as_ref().map_or(1, |v| v.value);
                let version_span = span_of_version(&variant.attrs.version, variant.ident);
                check_json_upcasters(cx, version, version_span, &variant.attrs.upcast_json);
            }
        }
    }
}

fn check_codec(cx: &Ctxt, cont: &Container<'_>) {
    let Some(codec) = &cont.attrs.codec else {
        return;
    };
    if codec.value != Codec::Protobuf {
        return;
    }
    if let Data::Enum(_) = cont.data {
        cx.error_at(
            codec.span,
            "`codec = protobuf` needs a struct deriving prost::Message; an enum of events uses the JSON codec",
        );
    }
    let has_json_upcaster = !cont.attrs.upcast_json.is_empty();
    if has_json_upcaster {
        cx.error_at(
            codec.span,
            "`upcast_json` reads JSON payloads and cannot lift protobuf ones; use `upcast_from` with the old prost type",
        );
    }
}

fn check_field_numbers(cx: &Ctxt, cont: &Container<'_>) {
    let protobuf = cont
        .attrs
        .codec
        .as_ref()
        .is_some_and(|c| c.value == Codec::Protobuf);
    let check_fields = |fields: &[Field<'_>]| {
        let mut seen: Vec<(u32, String)> = Vec::new();
        for field in fields {
            let Some(tag) = &field.attrs.tag else {
                continue;
            };
            if protobuf {
                cx.error_at(
                    tag.span,
                    "on a `codec = protobuf` type the field number is prost's `#[prost(..., tag = \"N\")]`; remove `tag` here",
                );
            } else if let Some((_, other)) = seen.iter().find(|(n, _)| *n == tag.value) {
                cx.error_at(
                    tag.span,
                    format!(
                        "field number {} is already used by field `{other}`; every field needs its own number",
                        tag.value
                    ),
                );
            }
            seen.push((tag.value, field.name()));
        }
    };
    match &cont.data {
        Data::Struct(_, fields) => check_fields(fields),
        Data::Enum(variants) => variants.iter().for_each(|v| check_fields(&v.fields)),
    }
}
