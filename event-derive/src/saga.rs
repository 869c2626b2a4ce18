//! `#[saga(key = ...)]` on an `impl` block: implements `Steps` (the step table, the commands, the
//! compensations, the message list) and one `Handles<M>` per message the saga reads, so that
//! `Orchestrated<YourSaga>` runs it. The grammar and the structural checks live in
//! `event_model::saga`.

use event_model::Ctxt;
use event_model::saga::{SagaImpl, StepDecl};
use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let item: syn::ItemImpl = match syn::parse2(item.clone()) {
        Ok(item) => item,
        Err(err) => {
            let err = err.to_compile_error();
            return quote!(#err #item);
        }
    };
    let cx = Ctxt::new();
    let parsed = event_model::saga::parse(&cx, args, &item);
    let stripped = strip(&item);
    if let Err(err) = cx.check() {
        let err = err.to_compile_error();
        // Keep the functions so that their bodies are still checked and uses of them resolve.
        return quote!(#err #stripped);
    }
    let saga = parsed.expect("no error means parsed");
    let generated = generate(&saga);
    quote! {
        #stripped
        #generated
    }
}

/// The impl block without the `#[start]` and `#[step]` attributes.
fn strip(item: &syn::ItemImpl) -> syn::ItemImpl {
    let mut item = item.clone();
    for member in &mut item.items {
        if let syn::ImplItem::Fn(f) = member {
            f.attrs.retain(|a| !event_model::saga::is_saga_attr(a));
        }
    }
    item
}

fn generate(saga: &SagaImpl<'_>) -> TokenStream {
    let krate = saga
        .crate_path
        .clone()
        .unwrap_or_else(|| syn::parse_quote!(::event_runtime));
    let this = &saga.item.self_ty;
    let name = &saga.name;
    let specs = saga.steps.iter().map(spec);
    let attempts = saga.attempts.map(|n| quote!(const ATTEMPTS: u32 = #n;));
    let state_version = saga
        .state_version
        .map(|n| quote!(const STATE_VERSION: u32 = #n;));
    let state_upcast = saga.state_upcast.as_ref().map(|f| {
        quote! {
            fn upcast_data(
                from: u32,
                data: __ev::serde_json::Value,
            ) -> __ev::Result<__ev::serde_json::Value, __ev::UpcastError> {
                Self::#f(from, data)
            }
        }
    });
    let requests = saga.steps.iter().map(|s| {
        let f = &s.func.sig.ident;
        let step = f.to_string();
        let send = quote_spanned!(s.command.span()=> step.send(Self::#f(self))?);
        quote!(#step => { #send; })
    });
    let compensations = saga.steps.iter().filter_map(|s| {
        let f = s.compensate.as_ref()?;
        let step = s.func.sig.ident.to_string();
        let send = quote_spanned!(f.span()=> step.send(Self::#f(self))?);
        Some(quote!(#step => { #send; }))
    });
    // Each message the saga reads: its type, its role, and the function a start or a reply
    // calls.
    let mut messages: Vec<(&syn::Type, TokenStream, Option<TokenStream>)> = Vec::new();
    for start in &saga.starts {
        let f = &start.func.sig.ident;
        let message = start.message;
        let body = quote! {
            fn start(message: &#message) -> __ev::Result<Self, __ev::HandlerError> {
                __ev::Ok(Self::#f(message))
            }
        };
        messages.push((message, quote!(__ev::saga::Role::Start), Some(body)));
    }
    for step in &saga.steps {
        let name = step.func.sig.ident.to_string();
        let reply = &step.reply;
        let record = step.on_reply.as_ref().map(|f| {
            quote! {
                fn record(&mut self, message: &#reply) {
                    Self::#f(self, message)
                }
            }
        });
        messages.push((reply, quote!(__ev::saga::Role::Reply(#name)), record));
        if let Some(fault) = &step.fault {
            let explain = step.on_fault.as_ref().map(|f| {
                quote! {
                    fn explain(&self, message: &#fault) -> __ev::Option<__ev::String> {
                        __ev::Some(Self::#f(self, message))
                    }
                }
            });
            messages.push((fault, quote!(__ev::saga::Role::Fault(#name)), explain));
        }
        if let Some(done) = &step.compensated {
            messages.push((done, quote!(__ev::saga::Role::Compensated(#name)), None));
        }
    }
    let key_field = &saga.key;
    let key_type = &saga.key_type;
    let handles = messages.iter().map(|(message, role, body)| {
        // Spanned at the message type: a message without the key field, or with one of
        // another type, is reported where the saga names that message.
        let field = syn::Ident::new(&key_field.to_string(), message.span());
        let key = quote_spanned! {message.span()=>
            __ev::saga::key::<#key_type>(&message.#field)
        };
        quote! {
            #[automatically_derived]
            impl __ev::saga::Handles<#message> for #this {
                const ROLE: __ev::saga::Role = #role;
                fn key(message: &#message) -> __ev::String {
                    #key
                }
                #body
            }
        }
    });
    let on = messages
        .iter()
        .map(|(message, _, _)| quote!(.on::<#message>()));
    let unknown = |what: &str| {
        let text = format!(
            "saga `{name}` has no step `{{}}` with {what} (a step renamed or removed while instances were in it)"
        );
        quote!(other => return __ev::Err(__ev::HandlerError::permanent(::std::format!(#text, other))),)
    };
    let unknown_step = unknown("a command");
    let unknown_undo = unknown("a compensation");
    let steps_impl = quote_spanned! {this.span()=>
        #[automatically_derived]
        impl __ev::saga::Steps for #this
    };
    quote! {
        #[doc(hidden)]
        const _: () = {
            use #krate::__private as __ev;

            #steps_impl {
                const NAME: &'static str = #name;
                const STEPS: &'static [__ev::saga::StepSpec] = &[#(#specs),*];
                #attempts
                #state_version
                #state_upcast

                fn request(&self, name: &str, step: &mut __ev::saga::Step<'_>) -> __ev::Result<(), __ev::HandlerError> {
                    match name {
                        #(#requests)*
                        #unknown_step
                    }
                    __ev::Ok(())
                }

                #[allow(unreachable_code)]
                fn compensate(&self, name: &str, step: &mut __ev::saga::Step<'_>) -> __ev::Result<(), __ev::HandlerError> {
                    match name {
                        #(#compensations)*
                        #unknown_undo
                    }
                    __ev::Ok(())
                }

                fn messages(on: &mut __ev::saga::Messages<__ev::saga::Orchestrated<Self>>) {
                    on #(#on)*;
                }
            }

            #(#handles)*
        };
    }
}

fn spec(step: &StepDecl<'_>) -> TokenStream {
    let name = step.func.sig.ident.to_string();
    let kind = if step.pivot.is_some() {
        quote!(Pivot)
    } else if step.compensatable {
        quote!(Compensatable)
    } else {
        quote!(Retriable)
    };
    let text = |ty: &syn::Type| {
        quote::ToTokens::to_token_stream(ty)
            .to_string()
            .replace(' ', "")
    };
    let command = text(step.command);
    let reply = text(&step.reply);
    let option = |v: Option<String>| match v {
        Some(v) => quote!(__ev::Some(#v)),
        None => quote!(__ev::None),
    };
    let fault = option(step.fault.as_ref().map(text));
    let compensation = option(step.compensate.as_ref().map(ToString::to_string));
    let compensated = option(step.compensated.as_ref().map(text));
    let ms = step.timeout_ms;
    quote! {
        __ev::saga::StepSpec {
            name: #name,
            kind: __ev::saga::StepKind::#kind,
            command: #command,
            reply: #reply,
            fault: #fault,
            timeout: __ev::Duration::from_millis(#ms),
            compensation: #compensation,
            compensated: #compensated,
        }
    }
}
