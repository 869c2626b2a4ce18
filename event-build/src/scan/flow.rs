//! Who consumes and who produces: `#[handler(group = "...")]` functions (parsed by
//! `event_model::handler`, like the macro does), and the calls that hand a message over:
//! `ctx.publish(T { .. })`, `ctx.send(T { .. })`, `Envelope::event(T { .. })`,
//! `Envelope::command(T { .. })` (also `T(..)`, `Enum::Variant { .. }` and unit values).

use std::collections::BTreeMap;

use event_model::Ctxt;
use syn::spanned::Spanned as _;
use syn::visit::Visit;

use super::Builder;
use super::index::{Item, Target};
use super::load::FnItem;
use crate::error::{Diagnostic, Location};
use crate::model::{
    Handler, MessageRef, Producer, Saga, SagaCompensation, SagaMessage, SagaStep, Source, StepKind,
    Via,
};

/// Messages by type item, and by (type item, variant) for event enums.
pub(crate) struct MessageIndex {
    pub(crate) by_type: BTreeMap<usize, Vec<MessageRef>>,
    pub(crate) by_variant: BTreeMap<(usize, String), (MessageRef, String)>,
    pub(crate) by_struct: BTreeMap<usize, (MessageRef, String)>,
}

fn is_handler_attr(attr: &syn::Attribute) -> bool {
    attr.path()
        .segments
        .last()
        .is_some_and(|s| s.ident == "handler")
}

struct Found {
    via: Via,
    path: syn::Path,
    span: proc_macro2::Span,
}

#[derive(Default)]
struct Calls {
    found: Vec<Found>,
}

/// The type a message-building expression names.
fn constructed(expr: &syn::Expr) -> Option<&syn::Path> {
    match expr {
        syn::Expr::Struct(s) => Some(&s.path),
        syn::Expr::Call(c) => match &*c.func {
            syn::Expr::Path(p) if p.qself.is_none() => Some(&p.path),
            _ => None,
        },
        syn::Expr::Path(p) if p.qself.is_none() => Some(&p.path),
        syn::Expr::Paren(p) => constructed(&p.expr),
        syn::Expr::Group(g) => constructed(&g.expr),
        _ => None,
    }
}

impl<'ast> Visit<'ast> for Calls {
    fn visit_expr_method_call(&mut self, call: &'ast syn::ExprMethodCall) {
        let via = match call.method.to_string().as_str() {
            "publish" => Some(Via::Publish),
            "send" => Some(Via::Send),
            _ => None,
        };
        if let (Some(via), 1) = (via, call.args.len())
            && let Some(path) = constructed(&call.args[0])
        {
            self.found.push(Found {
                via,
                path: path.clone(),
                span: call.method.span(),
            });
        }
        syn::visit::visit_expr_method_call(self, call);
    }

    fn visit_expr_call(&mut self, call: &'ast syn::ExprCall) {
        if let syn::Expr::Path(func) = &*call.func
            && call.args.len() == 1
        {
            let segments: Vec<String> = func
                .path
                .segments
                .iter()
                .map(|s| s.ident.to_string())
                .collect();
            let via = match segments
                .iter()
                .rev()
                .take(2)
                .map(String::as_str)
                .collect::<Vec<_>>()[..]
            {
                ["event", "Envelope"] => Some(Via::EnvelopeEvent),
                ["command", "Envelope"] => Some(Via::EnvelopeCommand),
                _ => None,
            };
            if let Some(via) = via
                && let Some(path) = constructed(&call.args[0])
            {
                self.found.push(Found {
                    via,
                    path: path.clone(),
                    span: func.path.span(),
                });
            }
        }
        syn::visit::visit_expr_call(self, call);
    }
}

impl Builder<'_> {
    /// Handlers and producers, once the messages are known.
    pub(crate) fn flows(&mut self, messages: &MessageIndex) -> (Vec<Handler>, Vec<Producer>) {
        let index = self.index;
        let mut handlers = Vec::new();
        let mut producers = Vec::new();
        for function in &index.loaded.fns {
            let (module, name, attrs, self_ty, block) = match function {
                FnItem::Free { module, item } => {
                    (*module, &item.sig.ident, &item.attrs, None, &*item.block)
                }
                FnItem::Method {
                    module,
                    self_ty,
                    item,
                } => (
                    *module,
                    &item.sig.ident,
                    &item.attrs,
                    Some(self_ty),
                    &item.block,
                ),
            };
            let file = index.loaded.files[index.loaded.modules[module].file]
                .display
                .clone();
            let mut qualified = index.loaded.modules[module].path.clone();
            if let Some(self_ty) = self_ty
                && let Some(last) = self_ty.last()
            {
                qualified.push(last.clone());
            }
            qualified.push(name.to_string());
            let function_name = qualified.join("::");
            let mut group = None;
            if let (FnItem::Free { item, .. }, Some(attr)) =
                (function, attrs.iter().find(|a| is_handler_attr(a)))
            {
                let args = match &attr.meta {
                    syn::Meta::List(list) => list.tokens.clone(),
                    _ => proc_macro2::TokenStream::new(),
                };
                let cx = Ctxt::new();
                let parsed = event_model::handler::parse(&cx, args, item);
                let parsed = parsed.map(|p| (p.group.clone(), p.event.clone()));
                match cx.check() {
                    Err(err) => {
                        // `missing group` is reported at the call site: point at the attribute.
                        let attr_location = Location::from_span(&file, attr.span());
                        self.errors.extend(Diagnostic::from_syn_at(
                            &file,
                            err,
                            Some(&attr_location),
                        ));
                    }
                    Ok(()) => {
                        if let Some((handler_group, event)) = parsed {
                            let refs = self.message_refs(module, &event, messages);
                            handlers.push(Handler {
                                function: function_name.clone(),
                                group: handler_group.clone(),
                                doc: event_model::attr::doc_comment(attrs),
                                event_type: super::types::type_string(&event),
                                messages: refs,
                                source: Source {
                                    file: display(&file),
                                    line: name.span().start().line,
                                },
                            });
                            group = Some(handler_group);
                        }
                    }
                }
            }
            let mut calls = Calls::default();
            calls.visit_block(block);
            for found in calls.found {
                let Some((message, rust_type)) =
                    self.produced(module, self_ty.map(Vec::as_slice), &found.path, messages)
                else {
                    continue;
                };
                producers.push(Producer {
                    message,
                    rust_type,
                    via: found.via,
                    function: function_name.clone(),
                    module: index.loaded.modules[module].path.join("::"),
                    group: group.clone(),
                    source: Source {
                        file: display(&file),
                        line: found.span.start().line,
                    },
                });
            }
        }
        (handlers, producers)
    }

    /// The wire messages the type `ty`, written in `module`, is (every variant of an event
    /// enum); empty when it is not a message declared in this crate.
    fn message_refs(
        &self,
        module: usize,
        ty: &syn::Type,
        messages: &MessageIndex,
    ) -> Vec<MessageRef> {
        let syn::Type::Path(p) = ty else {
            return Vec::new();
        };
        if p.qself.is_some() {
            return Vec::new();
        }
        let segments: Vec<String> = p
            .path
            .segments
            .iter()
            .map(|s| s.ident.to_string())
            .collect();
        self.resolve_type_item(module, &segments)
            .and_then(|ty| messages.by_type.get(&ty).cloned())
            .unwrap_or_default()
    }

    /// The `#[saga]` impl blocks: each one's model, and its messages as handlers (the ones it
    /// reads) and producers (the commands its steps and compensations send) in its group.
    pub(crate) fn sagas(
        &mut self,
        messages: &MessageIndex,
    ) -> (Vec<Saga>, Vec<Handler>, Vec<Producer>) {
        let index = self.index;
        let mut sagas = Vec::new();
        let mut handlers = Vec::new();
        let mut producers = Vec::new();
        for block in &index.loaded.sagas {
            let module = block.module;
            let file = index.loaded.files[index.loaded.modules[module].file]
                .display
                .clone();
            let cx = Ctxt::new();
            let parsed = event_model::saga::parse(&cx, block.args.clone(), &block.item);
            let model = parsed.map(|parsed| {
                let message = |ty: &syn::Type| SagaMessage {
                    rust_type: super::types::type_string(ty),
                    messages: self.message_refs(module, ty, messages),
                };
                let rust_type = super::types::type_string(&block.item.self_ty);
                let mut qualified = index.loaded.modules[module].path.clone();
                qualified.push(rust_type.clone());
                let prefix = qualified.join("::");
                let group = format!("saga.{}", parsed.name);
                let at = |span: proc_macro2::Span| Source {
                    file: display(&file),
                    line: span.start().line,
                };
                // One consumer per function: a start reads its message, a step its reply, its
                // fault and its compensation's reply.
                let mut consume = |function: &syn::Ident, types: &[&syn::Type]| {
                    handlers.push(Handler {
                        function: format!("{prefix}::{function}"),
                        group: group.clone(),
                        doc: None,
                        event_type: types
                            .iter()
                            .map(super::types::type_string)
                            .collect::<Vec<_>>()
                            .join(" | "),
                        messages: types
                            .iter()
                            .flat_map(|ty| self.message_refs(module, ty, messages))
                            .collect(),
                        source: at(function.span()),
                    });
                };
                for start in &parsed.starts {
                    consume(&start.func.sig.ident, &[start.message]);
                }
                for step in &parsed.steps {
                    let mut types = vec![&step.reply];
                    types.extend(&step.fault);
                    types.extend(&step.compensated);
                    consume(&step.func.sig.ident, &types);
                }
                let mut send = |function: &syn::Ident, ty: &syn::Type| {
                    for message in self.message_refs(module, ty, messages) {
                        producers.push(Producer {
                            message,
                            rust_type: super::types::type_string(ty),
                            via: Via::Send,
                            function: format!("{prefix}::{function}"),
                            module: index.loaded.modules[module].path.join("::"),
                            group: Some(group.clone()),
                            source: at(function.span()),
                        });
                    }
                };
                let returns = |name: &syn::Ident| {
                    block.item.items.iter().find_map(|item| match item {
                        syn::ImplItem::Fn(f) if f.sig.ident == *name => match &f.sig.output {
                            syn::ReturnType::Type(_, ty) => Some((&f.sig.ident, &**ty)),
                            syn::ReturnType::Default => None,
                        },
                        _ => None,
                    })
                };
                let mut steps = Vec::new();
                for step in &parsed.steps {
                    send(&step.func.sig.ident, step.command);
                    let compensation = step.compensate.as_ref().map(|f| {
                        let command = returns(f).map(|(ident, ty)| {
                            send(ident, ty);
                            message(ty)
                        });
                        SagaCompensation {
                            function: f.to_string(),
                            command,
                        }
                    });
                    steps.push(SagaStep {
                        name: step.func.sig.ident.to_string(),
                        kind: if step.pivot.is_some() {
                            StepKind::Pivot
                        } else if step.compensatable {
                            StepKind::Compensatable
                        } else {
                            StepKind::Retriable
                        },
                        command: message(step.command),
                        reply: message(&step.reply),
                        fault: step.fault.as_ref().map(message),
                        timeout_ms: step.timeout_ms,
                        compensation,
                        compensated: step.compensated.as_ref().map(message),
                    });
                }
                Saga {
                    name: parsed.name.clone(),
                    group: group.clone(),
                    rust_type,
                    key: parsed.key.to_string(),
                    attempts: parsed.attempts.unwrap_or(5),
                    doc: event_model::attr::doc_comment(&block.item.attrs),
                    starts: parsed.starts.iter().map(|s| message(s.message)).collect(),
                    steps,
                    source: at(block.attr_span),
                }
            });
            match cx.check() {
                Err(err) => {
                    let location = Location::from_span(&file, block.attr_span);
                    self.errors
                        .extend(Diagnostic::from_syn_at(&file, err, Some(&location)));
                }
                Ok(()) => sagas.extend(model),
            }
        }
        (sagas, handlers, producers)
    }

    fn resolve_type_item(&self, module: usize, segments: &[String]) -> Option<usize> {
        match self.index.resolve(module, segments) {
            Target::Item(Item::Type(i)) => Some(i),
            Target::Item(Item::Alias(a)) => {
                let alias = &self.index.loaded.aliases[a];
                match &alias.ty {
                    syn::Type::Path(p) if p.qself.is_none() => {
                        let segments: Vec<String> = p
                            .path
                            .segments
                            .iter()
                            .map(|s| s.ident.to_string())
                            .collect();
                        match self.index.resolve(alias.module, &segments) {
                            Target::Item(Item::Type(i)) => Some(i),
                            _ => None,
                        }
                    }
                    _ => None,
                }
            }
            Target::External(_) => None,
        }
    }

    /// The message `path` builds: a struct message, or `Enum::Variant` of an event enum.
    fn produced(
        &self,
        module: usize,
        self_ty: Option<&[String]>,
        path: &syn::Path,
        messages: &MessageIndex,
    ) -> Option<(MessageRef, String)> {
        let mut segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        if segments.first().is_some_and(|s| s == "Self") {
            let self_ty = self_ty?;
            segments.splice(0..1, self_ty.iter().cloned());
        }
        if let Some(ty) = self.resolve_type_item(module, &segments)
            && let Some(found) = messages.by_struct.get(&ty)
        {
            return Some(found.clone());
        }
        let (variant, enum_path) = segments.split_last()?;
        let ty = self.resolve_type_item(module, enum_path)?;
        messages.by_variant.get(&(ty, variant.clone())).cloned()
    }
}

/// A path for the model: `/` separators.
pub(crate) fn display(path: &std::path::Path) -> String {
    path.to_string_lossy().replace('\\', "/")
}
