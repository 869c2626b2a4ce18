//! Code generation. Everything is wrapped in `const _: () = { ... };` and reaches the runtime only
//! through `<crate>::__private`, so the user's namespace gains nothing but one hidden marker
//! constant per wire name (which turns a same-module name collision into a compile error).

use event_model::ast::{Container, Data, Field, Variant};
use event_model::attr::{Codec, Deprecation, JsonUpcaster, Sla};
use event_model::{Ctxt, Kind, WireMessage, check};
use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

use crate::fallback;

pub(crate) fn derive(input: &syn::DeriveInput, kind: Kind) -> TokenStream {
    if kind == Kind::Command
        && let Some(event_attr) = input.attrs.iter().find(|a| a.path().is_ident("event"))
    {
        // `#[derive(DomainEvent, Command)]`: the DomainEvent derive expands as usual and this one
        // only reports, so that the mistake is not buried under conflicting `Message` impls.
        return syn::Error::new_spanned(
            event_attr.path(),
            format!(
                "`{}` derives both DomainEvent and Command: an event is a fact that happened, a command is a request that may be refused; split it into an event type and a command type",
                input.ident
            ),
        )
        .to_compile_error();
    }
    let cx = Ctxt::new();
    let container = Container::from_ast(&cx, input, kind);
    if let Some(container) = &container {
        check::check(&cx, container);
    }
    let crate_path = container
        .as_ref()
        .and_then(|c| c.attrs.crate_path.clone())
        .unwrap_or_else(|| syn::parse_quote!(::event_runtime));
    match (cx.check(), container) {
        (Ok(()), Some(container)) => expand(&container, &crate_path),
        (Err(errors), _) => fallback::expand(input, kind, &crate_path, errors),
        (Ok(()), None) => unreachable!("from_ast reports why it returned None"),
    }
}

fn opt_str(value: Option<&str>) -> TokenStream {
    match value {
        Some(text) => quote!(__ev::Some(#text)),
        None => quote!(__ev::None),
    }
}

fn opt_u64(value: Option<u64>) -> TokenStream {
    match value {
        Some(n) => quote!(__ev::Some(#n)),
        None => quote!(__ev::None),
    }
}

fn deprecation(dep: Option<&Deprecation>) -> TokenStream {
    match dep {
        None => quote!(__ev::None),
        Some(dep) => {
            let since = opt_str(dep.since.map(|d| d.to_string()).as_deref());
            let sunset = opt_str(dep.sunset.map(|d| d.to_string()).as_deref());
            let note = opt_str(dep.note.as_deref());
            quote!(__ev::Some(__ev::Deprecation { since: #since, sunset: #sunset, note: #note }))
        }
    }
}

fn sla(sla: &Sla) -> TokenStream {
    let latency = opt_u64(sla.max_latency_ms);
    let retention = opt_u64(sla.retention_secs);
    quote!(__ev::Sla { max_latency_ms: #latency, retention_secs: #retention })
}

/// `<Codec as PayloadCodec<Self>>`, spanned at `codec = ...` (or the type's name), for a struct.
///
/// The content type, the encoder and the decoder are all reached through these same tokens, so a
/// payload type that the codec cannot handle (no `Serialize`, no `prost::Message`) is reported
/// once: the three identical diagnostics collapse into one.
fn codec_impl(container: &Container<'_>) -> (TokenStream, Span) {
    let (codec, span) = match &container.attrs.codec {
        Some(codec) if codec.value == Codec::Protobuf => ("Protobuf", codec.span),
        Some(codec) => ("Json", codec.span),
        None => ("Json", container.ident.span()),
    };
    let codec = syn::Ident::new(codec, span);
    (
        quote_spanned!(span=> <__ev::#codec as __ev::PayloadCodec<Self>>),
        span,
    )
}

fn oldest_readable(container: &Container<'_>, message: &WireMessage) -> TokenStream {
    if let Some(prev) = &container.attrs.upcast_from {
        return quote_spanned!(prev.span()=>
            <#prev as __ev::Message>::DESCRIPTORS[0].oldest_readable_version
        );
    }
    let oldest = message
        .json_upcasts
        .iter()
        .copied()
        .min()
        .unwrap_or(message.version);
    quote!(#oldest)
}

fn descriptor(
    container: &Container<'_>,
    message: &WireMessage,
    content_type: &TokenStream,
) -> TokenStream {
    let kind = match message.kind {
        Kind::Event => quote!(__ev::MessageKind::Event),
        Kind::Command => quote!(__ev::MessageKind::Command),
    };
    let WireMessage {
        name,
        version,
        context,
        rust_path,
        key_fields,
        dedupe_fields,
        ..
    } = message;
    let description = opt_str(message.description.as_deref());
    let deprecated = deprecation(message.deprecated.as_ref());
    let sla = sla(&message.sla);
    let oldest = oldest_readable(container, message);
    quote! {
        __ev::Descriptor {
            kind: #kind,
            name: #name,
            version: #version,
            context: #context,
            description: #description,
            rust_type: ::core::concat!(::core::module_path!(), "::", #rust_path),
            content_type: #content_type,
            key_fields: &[#(#key_fields),*],
            dedupe_fields: &[#(#dedupe_fields),*],
            oldest_readable_version: #oldest,
            deprecated: #deprecated,
            sla: #sla,
        }
    }
}

/// `__ev::key_part(&self.a)`, spanned at the field's type so a non-key type is reported there.
fn key_parts<'a>(fields: impl Iterator<Item = &'a Field<'a>>) -> Vec<TokenStream> {
    fields
        .map(|field| {
            // The argument too, field name included: rustc reports an unsatisfied bound on the
            // argument's span.
            let span = at(field.ty.span());
            let mut member = field.member.clone();
            match &mut member {
                syn::Member::Named(ident) => ident.set_span(span),
                syn::Member::Unnamed(index) => index.span = span,
            }
            quote_spanned!(span=> __ev::key_part(&self.#member))
        })
        .collect()
}

fn computed_key(container: &Container<'_>) -> Option<TokenStream> {
    if let Some(expr) = &container.attrs.key_expr {
        return Some(
            quote_spanned!(expr.span()=> __ev::Some(__ev::key(&[__ev::key_part(&(#expr))]))),
        );
    }
    container.attrs.key_with.as_ref().map(
        |path| quote_spanned!(at(path.span())=> __ev::Some(__ev::key(&[__ev::key_part(&#path(self))]))),
    )
}

/// `span`'s place with the call site's hygiene: generated code that names `self`, `buf` or
/// `data` there still resolves them to the impl's own bindings when the user's tokens come from
/// a `macro_rules!` (whose hygiene would hide them), and a diagnostic still points at the place.
fn at(span: Span) -> Span {
    Span::call_site().located_at(span)
}

fn binding(i: usize, span: Span) -> syn::Ident {
    format_ident!("__k{}", i, span = span)
}

/// `Self::Variant { a: __k0, b: __k1, .. }` binding the fields selected by `pick`.
fn variant_pattern(
    variant: &Variant<'_>,
    pick: impl Fn(&Field<'_>) -> bool,
) -> (TokenStream, Vec<TokenStream>) {
    let ident = variant.ident;
    let mut members = Vec::new();
    let mut parts = Vec::new();
    for (i, field) in variant.fields.iter().filter(|f| pick(f)).enumerate() {
        let member = &field.member;
        // Spanned at the field's type, like the call, so a non-key type is reported there.
        let ty_span = field.ty.span();
        let name = binding(i, ty_span);
        members.push(quote!(#member: #name));
        parts.push(quote_spanned!(ty_span=> __ev::key_part(#name)));
    }
    (quote!(Self::#ident { #(#members,)* .. }), parts)
}

fn json_chain(upcasters: &[JsonUpcaster]) -> TokenStream {
    let steps = upcasters.iter().map(|u| {
        let from = u.from.value;
        let with = &u.with;
        quote_spanned!(with.span()=> (#from, #with as __ev::JsonUpcastFn))
    });
    quote!(&[#(#steps),*])
}

fn name_marker(message: &WireMessage, span: Span) -> TokenStream {
    let mut ident = String::from("__EVENT_NAME_");
    for ch in message.name.chars() {
        if ch.is_ascii_alphanumeric() || ch == '_' {
            ident.push(ch);
        } else {
            ident.push_str(&format!("_{:02x}_", ch as u32));
        }
    }
    ident.push_str(&format!("_V{}", message.version));
    let ident = syn::Ident::new(&ident, span);
    // The whole item at `span`: rustc reports a redefinition on the item, not on its name.
    quote_spanned! {span=>
        #[doc(hidden)]
        #[allow(non_upper_case_globals, dead_code)]
        const #ident: () = ();
    }
}

fn expand(container: &Container<'_>, crate_path: &syn::Path) -> TokenStream {
    let ident = container.ident;
    let messages = container.messages();
    let codec = codec_impl(container);
    let content_type = match &container.data {
        Data::Struct(..) => {
            let (codec, span) = &codec;
            quote_spanned!(*span=> #codec::CONTENT_TYPE)
        }
        // Event enums are always JSON (check.rs rejects other codecs). `()` is JSON-serializable,
        // so this names the content type without requiring `Self: Serialize` a second time; the
        // variant encoder and decoder report a missing impl.
        Data::Enum(_) => quote!(<__ev::Json as __ev::PayloadCodec<()>>::CONTENT_TYPE),
    };
    let descriptors: Vec<TokenStream> = messages
        .iter()
        .map(|m| descriptor(container, m, &content_type))
        .collect();

    let body = match &container.data {
        Data::Struct(_, fields) => expand_struct(container, fields, &messages[0], &codec),
        Data::Enum(variants) => expand_enum(container, variants, &messages),
    };
    let marker_trait = match container.kind {
        Kind::Event => quote!(DomainEvent),
        Kind::Command => quote!(Command),
    };
    let markers = match &container.data {
        Data::Struct(..) => {
            let span = container
                .attrs
                .name
                .as_ref()
                .map_or(ident.span(), |n| n.span);
            vec![name_marker(&messages[0], span)]
        }
        Data::Enum(variants) => messages
            .iter()
            .zip(variants)
            .map(|(m, v)| name_marker(m, v.attrs.name.as_ref().map_or(v.ident.span(), |n| n.span)))
            .collect(),
    };
    let chain_check = chain_assertion(container, &messages[0]);

    quote! {
        #(#markers)*
        #[doc(hidden)]
        const _: () = {
            use #crate_path::__private as __ev;

            #[automatically_derived]
            impl __ev::Message for #ident {
                const DESCRIPTORS: &'static [__ev::Descriptor] = &[#(#descriptors),*];
                #body
            }

            #[automatically_derived]
            impl __ev::#marker_trait for #ident {}

            __ev::inventory::submit! {
                __ev::Registration::new(<#ident as __ev::Message>::DESCRIPTORS)
                    .with_reader(__ev::read_payload::<#ident>)
            }

            #chain_check
        };
    }
}

fn chain_assertion(container: &Container<'_>, message: &WireMessage) -> TokenStream {
    let Some(prev) = &container.attrs.upcast_from else {
        return TokenStream::new();
    };
    let version = message.version;
    let name = &message.name;
    let prev_text = quote!(#prev).to_string().replace(' ', "");
    let what = container.kind.attr();
    let (other, kind) = match container.kind {
        Kind::Event => ("a command", quote!(__ev::MessageKind::Event)),
        Kind::Command => ("an event", quote!(__ev::MessageKind::Command)),
    };
    let wrong_version = format!(
        "broken upcast chain: `upcast_from = {prev_text}` must name the struct {what} `{name}` at version {} (exactly one version older than {version})",
        version - 1
    );
    let wrong_name = format!(
        "broken upcast chain: `{prev_text}` has a different {what} name than `{name}`; give it #[{what}(name = \"{name}\")]"
    );
    let wrong_kind = format!(
        "broken upcast chain: `{prev_text}` is {other}, and a {what} upcasts only from an older version of itself"
    );
    quote_spanned! {prev.span()=>
        const _: () = {
            let prev: &[__ev::Descriptor] = <#prev as __ev::Message>::DESCRIPTORS;
            ::core::assert!(prev.len() == 1 && prev[0].version + 1 == #version, #wrong_version);
            ::core::assert!(::core::matches!(prev[0].kind, #kind), #wrong_kind);
            ::core::assert!(__ev::str_eq(prev[0].name, #name), #wrong_name);
        };
    }
}

fn expand_struct(
    container: &Container<'_>,
    fields: &[Field<'_>],
    message: &WireMessage,
    codec: &(TokenStream, Span),
) -> TokenStream {
    let partition_key = computed_key(container).unwrap_or_else(|| {
        let parts = key_parts(fields.iter().filter(|f| f.attrs.key.is_some()));
        if parts.is_empty() {
            quote!(__ev::None)
        } else {
            quote!(__ev::Some(__ev::key(&[#(#parts),*])))
        }
    });
    let dedupe_parts = key_parts(fields.iter().filter(|f| f.attrs.dedupe.is_some()));
    let dedupe_key = if dedupe_parts.is_empty() {
        quote!(__ev::None)
    } else {
        quote!(__ev::Some(__ev::dedupe_key(&Self::DESCRIPTORS[0], &[#(#dedupe_parts),*])))
    };
    let older = if let Some(prev) = &container.attrs.upcast_from {
        let lift = match &container.attrs.upcast_with {
            Some(with) => quote_spanned!(with.span()=> #with(__prev)),
            None => quote_spanned!(prev.span()=> <Self as __ev::From<#prev>>::from(__prev)),
        };
        quote_spanned! {at(prev.span())=>
            let __prev = <#prev as __ev::Message>::decode_payload(name, version, data)?;
            __ev::Ok(#lift)
        }
    } else if !container.attrs.upcast_json.is_empty() {
        let chain = json_chain(&container.attrs.upcast_json);
        quote!(__ev::upcast_json::<Self>(__d, __ev::None, version, #chain, data))
    } else {
        quote!(__ev::Err(__ev::no_upcaster(__d, version)))
    };
    let _ = message;
    // What `__ev::encode` and `__ev::decode` do, but through the codec tokens shared with the
    // descriptor's content type (see `codec_impl`).
    let (codec, codec_span) = codec;
    let encode = quote_spanned!(at(*codec_span)=> #codec::encode(self, buf));
    let decode = quote_spanned!(at(*codec_span)=> #codec::decode(data));
    // JSON payloads of the current version can be read in the same pass as the envelope.
    let in_place = match &container.attrs.codec {
        Some(codec) if codec.value == Codec::Protobuf => TokenStream::new(),
        _ => quote_spanned! {*codec_span=>
            const JSON_IN_PLACE: bool = true;
            #[inline]
            fn deserialize_json_in_place<'de, D: __ev::serde::Deserializer<'de>>(
                deserializer: D,
            ) -> __ev::Result<Self, D::Error> {
                <Self as __ev::serde::Deserialize<'de>>::deserialize(deserializer)
            }
        },
    };
    quote! {
        #in_place
        fn descriptor(&self) -> &'static __ev::Descriptor {
            &Self::DESCRIPTORS[0]
        }
        fn partition_key(&self) -> __ev::Option<__ev::String> {
            #partition_key
        }
        fn dedupe_key(&self) -> __ev::Option<__ev::String> {
            #dedupe_key
        }
        // Inline: the serde_json code is then generated where the type is used, as for serde's
        // own generic impls, instead of once per derived type (the derive's compile-time cost).
        #[inline]
        fn encode_payload(&self, buf: &mut __ev::Vec<u8>) -> __ev::Result<(), __ev::EncodeError> {
            #encode.map_err(|source| __ev::EncodeError::Payload {
                event: Self::DESCRIPTORS[0].name,
                source,
            })
        }
        #[inline]
        fn payload_len(&self) -> __ev::Option<usize> {
            #codec::encoded_len(self)
        }
        #[inline]
        fn decode_payload(name: &str, version: u32, data: &[u8]) -> __ev::Result<Self, __ev::DecodeError> {
            let __d: &'static __ev::Descriptor = &Self::DESCRIPTORS[0];
            if name != __d.name {
                return __ev::Err(__ev::unknown_type(name, __d.rust_type));
            }
            if __ev::exact_version(__d, version)? {
                return #decode.map_err(|source| __ev::DecodeError::Payload {
                    event: __ev::String::from(__d.name),
                    version: __d.version,
                    source,
                });
            }
            #older
        }
    }
}

fn expand_enum(
    container: &Container<'_>,
    variants: &[Variant<'_>],
    messages: &[WireMessage],
) -> TokenStream {
    let indices: Vec<usize> = (0..variants.len()).collect();
    let all_patterns: Vec<TokenStream> = variants
        .iter()
        .map(|v| variant_pattern(v, |_| false).0)
        .collect();

    let partition_key = computed_key(container).unwrap_or_else(|| {
        let arms = variants.iter().map(|variant| {
            let (pattern, parts) = variant_pattern(variant, |f| f.attrs.key.is_some());
            if parts.is_empty() {
                quote!(#pattern => __ev::None,)
            } else {
                quote!(#pattern => __ev::Some(__ev::key(&[#(#parts),*])),)
            }
        });
        quote!(match self { #(#arms)* })
    });
    let dedupe_arms = variants.iter().zip(&indices).map(|(variant, i)| {
        let (pattern, parts) = variant_pattern(variant, |f| f.attrs.dedupe.is_some());
        if parts.is_empty() {
            quote!(#pattern => __ev::None,)
        } else {
            quote!(#pattern => __ev::Some(__ev::dedupe_key(&Self::DESCRIPTORS[#i], &[#(#parts),*])),)
        }
    });
    let serde_names: Vec<String> = messages
        .iter()
        .map(|m| m.serde_variant.clone().unwrap_or_default())
        .collect();
    let names: Vec<&str> = messages.iter().map(|m| m.name.as_str()).collect();
    let older = variants.iter().zip(&serde_names).map(|(variant, serde_name)| {
        if variant.attrs.upcast_json.is_empty() {
            quote!(__ev::Err(__ev::no_upcaster(__d, version)))
        } else {
            let chain = json_chain(&variant.attrs.upcast_json);
            quote!(__ev::upcast_json::<Self>(__d, __ev::Some(#serde_name), version, #chain, data))
        }
    });
    let enum_name = container.ident.to_string();
    // At the type's name, like the struct codec: a missing `Serialize` is reported there, once
    // (the calls are identical but for their arguments' values, so the diagnostics collapse).
    let span = at(container.ident.span());
    let encode_variant = indices.iter().zip(&serde_names).map(|(i, serde_name)| {
        quote_spanned!(span=> __ev::encode_variant(&Self::DESCRIPTORS[#i], #serde_name, self, buf))
    });
    let decode_variant = serde_names.iter().map(
        |serde_name| quote_spanned!(span=> __ev::decode_variant::<Self>(__d, #serde_name, data)),
    );
    quote! {
        fn descriptor(&self) -> &'static __ev::Descriptor {
            match self {
                #(#all_patterns => &Self::DESCRIPTORS[#indices],)*
            }
        }
        fn partition_key(&self) -> __ev::Option<__ev::String> {
            #partition_key
        }
        fn dedupe_key(&self) -> __ev::Option<__ev::String> {
            match self { #(#dedupe_arms)* }
        }
        // Inline: the serde_json code is then generated where the type is used, as for serde's
        // own generic impls, instead of once per derived type (the derive's compile-time cost).
        #[inline]
        fn encode_payload(&self, buf: &mut __ev::Vec<u8>) -> __ev::Result<(), __ev::EncodeError> {
            match self {
                #(#all_patterns => #encode_variant,)*
            }
        }
        #[inline]
        fn decode_payload(name: &str, version: u32, data: &[u8]) -> __ev::Result<Self, __ev::DecodeError> {
            match name {
                #(
                    #names => {
                        let __d: &'static __ev::Descriptor = &Self::DESCRIPTORS[#indices];
                        if __ev::exact_version(__d, version)? {
                            return #decode_variant;
                        }
                        #older
                    }
                )*
                _ => __ev::Err(__ev::unknown_type(name, ::core::concat!(::core::module_path!(), "::", #enum_name))),
            }
        }
    }
}
