//! `#[handler(group = "...")]`: the arguments of the handler attribute, and the shape of the
//! function it goes on.

use proc_macro2::{Span, TokenStream};
use syn::spanned::Spanned;

use crate::Ctxt;
use crate::suggest;

/// The parsed arguments and the pieces of the function the expansion needs.
pub struct HandlerFn<'a> {
    /// `group = "..."`: the consumer group.
    pub group: String,
    /// `crate = "..."`.
    pub crate_path: Option<syn::Path>,
    /// The function.
    pub item: &'a syn::ItemFn,
    /// `E` in the first parameter `Envelope<E>`.
    pub event: &'a syn::Type,
}

/// Valid consumer-group names: what every engine accepts as a consumer or durable name.
pub fn valid_group(group: &str) -> bool {
    !group.is_empty()
        && group
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
}

/// Parses `args` (the attribute's arguments) and checks `item`.
pub fn parse<'a>(cx: &Ctxt, args: TokenStream, item: &'a syn::ItemFn) -> Option<HandlerFn<'a>> {
    let mut group: Option<(String, Span)> = None;
    let mut crate_path = None;
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("group") {
            let lit: syn::LitStr = meta.value()?.parse()?;
            if group.is_some() {
                return Err(meta.error("duplicate handler attribute `group`"));
            }
            group = Some((lit.value(), lit.span()));
        } else if meta.path.is_ident("crate") {
            let lit: syn::LitStr = meta.value()?.parse()?;
            crate_path = Some(lit.parse()?);
        } else {
            let word = quote::ToTokens::to_token_stream(&meta.path).to_string();
            return Err(meta.error(format!(
                "unknown handler attribute `{word}`{}",
                suggest::suffix(&word, &["group", "crate"])
            )));
        }
        Ok(())
    });
    if let Err(err) = syn::parse::Parser::parse2(parser, args) {
        cx.syn_error(err);
        return None;
    }
    let group = match group {
        Some((group, span)) => {
            if !valid_group(&group) {
                cx.error_at(
                    span,
                    format!("consumer group `{group}` must be non-empty and use only ASCII letters, digits, `-` and `_`"),
                );
            }
            group
        }
        None => {
            cx.error_at(
                Span::call_site(),
                "missing `group`: write #[handler(group = \"billing\")]; a handler runs in one consumer group",
            );
            String::new()
        }
    };
    if item.sig.asyncness.is_none() {
        cx.error_spanned_by(item.sig.fn_token, "a handler must be an `async fn`");
    }
    if !item.sig.generics.params.is_empty() {
        cx.error_spanned_by(
            &item.sig.generics,
            "a handler cannot be generic: it handles one event type",
        );
    }
    if item.sig.inputs.len() != 2 {
        cx.error_spanned_by(
            &item.sig.inputs,
            "a handler takes two parameters: `(event: Envelope<YourEvent>, ctx: Context)`",
        );
        return None;
    }
    let event = match item.sig.inputs.first() {
        Some(syn::FnArg::Typed(pat)) => envelope_argument(&pat.ty),
        _ => None,
    };
    let Some(event) = event else {
        let span = item
            .sig
            .inputs
            .first()
            .map_or_else(Span::call_site, |a| a.span());
        cx.error_at(
            span,
            "the first parameter of a handler must be `Envelope<YourEvent>`",
        );
        return None;
    };
    Some(HandlerFn {
        group,
        crate_path,
        item,
        event,
    })
}

fn envelope_argument(ty: &syn::Type) -> Option<&syn::Type> {
    let syn::Type::Path(path) = ty else {
        return None;
    };
    let last = path.path.segments.last()?;
    if last.ident != "Envelope" {
        return None;
    }
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.first()? {
        syn::GenericArgument::Type(ty) if args.args.len() == 1 => Some(ty),
        _ => None,
    }
}
