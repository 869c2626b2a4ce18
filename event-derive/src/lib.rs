//! Derive macros of the event framework. Depend on `event-runtime`, which re-exports them; the
//! generated code only names items through `event_runtime::__private` (or the path given with
//! `#[event(crate = "...")]`).
//!
//! Layout, as in serde_derive: the attribute grammar is parsed and checked by `event-model`
//! (shared with `event-build`), [`expand`] generates code, and [`fallback`] emits minimal impls
//! next to the errors so that a mistake is reported once.

use proc_macro::TokenStream;
use syn::{DeriveInput, parse_macro_input};

mod expand;
mod fallback;
mod handler;
mod saga;

/// Derives `DomainEvent` for a struct (one event type) or an enum (one event type per variant).
/// See `event_runtime` for the attributes.
#[proc_macro_derive(DomainEvent, attributes(event))]
pub fn derive_domain_event(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand::derive(&input, event_model::Kind::Event).into()
}

/// Derives `Command` for a struct. See `event_runtime` for the attributes.
#[proc_macro_derive(Command, attributes(command))]
pub fn derive_command(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand::derive(&input, event_model::Kind::Command).into()
}

/// Declares an `async fn(Envelope<E>, Context) -> Result<(), HandlerError>` as the handler of
/// `E` in a consumer group: `#[handler(group = "billing")]`. The function becomes a unit struct of
/// the same name to pass to `App::register`.
#[proc_macro_attribute]
pub fn handler(args: TokenStream, item: TokenStream) -> TokenStream {
    handler::expand(args.into(), item.into()).into()
}

/// Declares an orchestrated saga on an `impl` block: `#[start]` functions create an instance
/// from a message, `#[step(...)]` functions return the command of each step, in order. See
/// `event_runtime::saga` for the attributes and the rules.
#[proc_macro_attribute]
pub fn saga(args: TokenStream, item: TokenStream) -> TokenStream {
    saga::expand(args.into(), item.into()).into()
}
