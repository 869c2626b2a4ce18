//! What is emitted next to compile errors: the trait impls with bodies that are never run, so
//! that code using the type does not pile further errors on top of the real one.

use event_model::Kind;
use proc_macro2::TokenStream;
use quote::quote;

pub(crate) fn expand(
    input: &syn::DeriveInput,
    kind: Kind,
    crate_path: &syn::Path,
    errors: syn::Error,
) -> TokenStream {
    let ident = &input.ident;
    // A generic type is itself one of the errors; bound the impls by what `Message` requires so
    // that they add none of their own (`T` cannot be sent between threads, ...).
    let mut generics = input.generics.clone();
    if !generics.params.is_empty() {
        generics
            .make_where_clause()
            .predicates
            .push(syn::parse_quote!(
                Self: ::core::marker::Send + ::core::marker::Sync + 'static
            ));
    }
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    let errors = errors.to_compile_error();
    let marker = match kind {
        Kind::Event => quote!(DomainEvent),
        Kind::Command => quote!(Command),
    };
    quote! {
        #errors
        const _: () = {
            use #crate_path::__private as __ev;
            #[automatically_derived]
            impl #impl_generics __ev::Message for #ident #ty_generics #where_clause {
                const DESCRIPTORS: &'static [__ev::Descriptor] = &[];
                fn descriptor(&self) -> &'static __ev::Descriptor {
                    ::core::unreachable!()
                }
                fn partition_key(&self) -> __ev::Option<__ev::String> {
                    ::core::unreachable!()
                }
                fn dedupe_key(&self) -> __ev::Option<__ev::String> {
                    ::core::unreachable!()
                }
                fn encode_payload(&self, _: &mut __ev::Vec<u8>) -> __ev::Result<(), __ev::EncodeError> {
                    ::core::unreachable!()
                }
                fn decode_payload(_: &str, _: u32, _: &[u8]) -> __ev::Result<Self, __ev::DecodeError> {
                    ::core::unreachable!()
                }
            }
            #[automatically_derived]
            impl #impl_generics __ev::#marker for #ident #ty_generics #where_clause {}
        };
    }
}
