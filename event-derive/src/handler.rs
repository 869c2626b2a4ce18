//! `#[handler(group = "...")]`: turns an `async fn(Envelope<E>, Context) -> Result<(), HandlerError>`
//! into a unit struct of the same name implementing `Handler<E>` and `HandlerSpec`, and declares it
//! so that `App::start` can refuse to run with a handler nobody wired.

use event_model::Ctxt;
use proc_macro2::TokenStream;
use quote::quote;

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let item: syn::ItemFn = match syn::parse2(item.clone()) {
        Ok(item) => item,
        Err(err) => {
            let err = err.to_compile_error();
            return quote!(#err #item);
        }
    };
    let cx = Ctxt::new();
    let parsed = event_model::handler::parse(&cx, args, &item);
    if let Err(err) = cx.check() {
        let err = err.to_compile_error();
        // Keep the function so that its body is still checked and uses of it resolve.
        return quote!(#err #item);
    }
    let parsed = parsed.expect("no error means parsed");
    let crate_path = parsed
        .crate_path
        .clone()
        .unwrap_or_else(|| syn::parse_quote!(::event_runtime));
    let group = &parsed.group;
    let event = parsed.event;
    let ident = &item.sig.ident;
    let vis = &item.vis;
    let docs: Vec<&syn::Attribute> = item
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .collect();
    let other_attrs: Vec<&syn::Attribute> = item
        .attrs
        .iter()
        .filter(|a| !a.path().is_ident("doc"))
        .collect();
    let inputs = &item.sig.inputs;
    let output = &item.sig.output;
    let block = &item.block;
    quote! {
        #(#docs)*
        #[allow(non_camel_case_types)]
        #[derive(Clone, Copy, Debug, Default)]
        #vis struct #ident;

        #[doc(hidden)]
        const _: () = {
            use #crate_path::__private as __ev;

            impl #ident {
                #(#other_attrs)*
                async fn __handle(#inputs) #output #block
            }

            #[automatically_derived]
            impl __ev::Handler<#event> for #ident {
                fn handle(
                    &self,
                    event: __ev::Envelope<#event>,
                    ctx: __ev::Context,
                ) -> impl ::core::future::Future<Output = __ev::Result<(), __ev::HandlerError>> + ::core::marker::Send {
                    Self::__handle(event, ctx)
                }
            }

            #[automatically_derived]
            impl __ev::HandlerSpec for #ident {
                type Event = #event;
                const GROUP: &'static str = #group;
                const NAME: &'static str = ::core::concat!(::core::module_path!(), "::", ::core::stringify!(#ident));
            }

            __ev::inventory::submit! {
                __ev::HandlerDecl {
                    name: <#ident as __ev::HandlerSpec>::NAME,
                    group: #group,
                    events: <#event as __ev::Message>::DESCRIPTORS,
                    make: || __ev::DeclaredHandler::new::<#event, #ident>(#ident),
                }
            }
        };
    }
}
