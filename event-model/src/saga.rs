//! `#[saga(...)]` on an `impl` block: the grammar of an orchestrated saga and the rules that make
//! its structure sound, checked before anything is generated.
//!
//! ```
//! use event_model::{Ctxt, saga};
//!
//! let item: syn::ItemImpl = syn::parse_quote! {
//!     impl Checkout {
//!         #[start]
//!         fn requested(event: &CheckoutRequested) -> Self { Checkout }
//!
//!         #[step(reply = StockHeld, fault = none, timeout = "5s", compensate = release)]
//!         fn hold(&self) -> HoldStock { HoldStock }
//!
//!         fn release(&self) -> ReleaseStock { ReleaseStock }
//!
//!         #[step(pivot, reply = CardCharged, fault = CardDeclined, timeout = "30s")]
//!         fn charge(&self) -> ChargeCard { ChargeCard }
//!     }
//! };
//! let cx = Ctxt::new();
//! let parsed = saga::parse(&cx, syn::parse_quote!(key = order_id), &item);
//! cx.check().unwrap();
//! let parsed = parsed.unwrap();
//! assert_eq!(parsed.name, "checkout");
//! assert_eq!(parsed.steps.len(), 2);
//! assert!(parsed.steps[1].pivot.is_some());
//! ```

use proc_macro2::{Span, TokenStream, TokenTree};
use syn::spanned::Spanned;

use crate::{Ctxt, attr, suggest};

/// A parsed `#[saga]` impl block.
pub struct SagaImpl<'a> {
    /// `name = "..."`, else the type's name in snake case.
    pub name: String,
    /// `key = field`: the field of every message that names the instance.
    pub key: syn::Ident,
    /// `key = field: Type`: its type (`String` when not given).
    pub key_type: syn::Type,
    /// `attempts = N`: sends of a command that gets no answer before the instance is stuck.
    pub attempts: Option<u32>,
    /// `state_version = N`: the version of the data's stored form (1 when not given).
    pub state_version: Option<u32>,
    /// `state_upcast = f`: `fn f(from: u32, data: serde_json::Value) -> Result<serde_json::Value,
    /// UpcastError>` lifts the data stored at `from` to `from + 1`.
    pub state_upcast: Option<syn::Ident>,
    /// `crate = "..."`.
    pub crate_path: Option<syn::Path>,
    /// The impl block.
    pub item: &'a syn::ItemImpl,
    /// The `#[start]` functions.
    pub starts: Vec<Start<'a>>,
    /// The `#[step]` functions, in order.
    pub steps: Vec<StepDecl<'a>>,
}

/// One `#[start] fn f(message: &M) -> Self`.
pub struct Start<'a> {
    /// The function.
    pub func: &'a syn::ImplItemFn,
    /// `M`.
    pub message: &'a syn::Type,
}

/// One `#[step(...)] fn f(&self) -> Command`.
pub struct StepDecl<'a> {
    /// The function (its name is the step's name).
    pub func: &'a syn::ImplItemFn,
    /// The command it returns.
    pub command: &'a syn::Type,
    /// `reply = M`.
    pub reply: syn::Type,
    /// `fault = M`; `None` for `fault = none` or a retriable step without one.
    pub fault: Option<syn::Type>,
    /// `timeout = "30s"`, in milliseconds.
    pub timeout_ms: u64,
    /// `compensate = f`; `None` for `compensate = none` or a step that cannot be compensated.
    pub compensate: Option<syn::Ident>,
    /// `compensated = M`: the compensation's reply, awaited.
    pub compensated: Option<syn::Type>,
    /// `pivot`, where it was written.
    pub pivot: Option<Span>,
    /// `on_reply = f`: `fn f(&mut self, reply: &M)` records what the reply says.
    pub on_reply: Option<syn::Ident>,
    /// `on_fault = f`: `fn f(&self, fault: &M) -> String` says why the step failed.
    pub on_fault: Option<syn::Ident>,
    /// Before the pivot (or no pivot at all): compensatable.
    pub compensatable: bool,
    /// Whether `fault = ...` was written (`none` included).
    fault_given: bool,
    /// Where `compensate = ...` was written (`none` included).
    compensate_given: Option<Span>,
    /// The `#[step(...)]` attribute.
    attr_span: Span,
}

/// `fault = none` / `compensate = none`, or a value.
enum OrNone<T> {
    None,
    Some(T),
}

fn or_none<T: syn::parse::Parse>(input: syn::parse::ParseStream<'_>) -> syn::Result<OrNone<T>> {
    if input.peek(syn::Ident) && input.fork().parse::<syn::Ident>()? == "none" {
        input.parse::<syn::Ident>()?;
        Ok(OrNone::None)
    } else {
        input.parse().map(OrNone::Some)
    }
}

const SAGA_ARGS: &[&str] = &[
    "name",
    "key",
    "attempts",
    "state_version",
    "state_upcast",
    "crate",
];
const STEP_ARGS: &[&str] = &[
    "reply",
    "fault",
    "timeout",
    "compensate",
    "compensated",
    "pivot",
    "on_reply",
    "on_fault",
];

/// Why the path `path` (its segments, as written) makes a saga function impure, if it does:
/// the clock, randomness, threads and tasks, file or network I/O, the environment. Only
/// qualified paths and the few free functions that are unambiguous count, so a field, a local
/// or a method named `fs`, `rng`, `spawn` or `sleep` does not.
fn impure(path: &[&str]) -> Option<&'static str> {
    let ends = |tail: &[&str]| path.ends_with(tail);
    let has = |pair: [&str; 2]| path.windows(2).any(|w| w == pair);
    let first = path.first().copied().unwrap_or_default();
    let qualified = path.len() > 1;
    if ["SystemTime", "Instant", "Utc", "Local"]
        .iter()
        .any(|clock| ends(&[*clock, "now"]))
        || ends(&["OffsetDateTime", "now_utc"])
        || ends(&["Uuid", "now_v7"])
    {
        Some("reads the clock")
    } else if (first == "rand" && qualified) || path == ["thread_rng"] || ends(&["Uuid", "new_v4"])
    {
        Some("draws random numbers")
    } else if ends(&["thread", "spawn"])
        || ends(&["tokio", "spawn"])
        || ends(&["task", "spawn"])
        || ends(&["task", "spawn_blocking"])
        || ends(&["task", "spawn_local"])
    {
        Some("spawns a task or a thread")
    } else if (matches!(first, "fs" | "File") && qualified)
        || has(["std", "fs"])
        || has(["tokio", "fs"])
    {
        Some("does file I/O")
    } else if (matches!(first, "TcpStream" | "UdpSocket" | "TcpListener" | "reqwest") && qualified)
        || has(["std", "net"])
        || has(["tokio", "net"])
    {
        Some("does network I/O")
    } else if ends(&["env", "var"]) || ends(&["env", "var_os"]) || ends(&["env", "vars"]) {
        Some("reads the environment")
    } else if ends(&["thread", "sleep"]) || ends(&["time", "sleep"]) {
        Some("waits on the clock")
    } else {
        None
    }
}

/// Parses `args` (the attribute's arguments) and `item` and checks the saga's structure.
pub fn parse<'a>(cx: &Ctxt, args: TokenStream, item: &'a syn::ItemImpl) -> Option<SagaImpl<'a>> {
    let mut name: Option<String> = None;
    let mut key: Option<(syn::Ident, Option<syn::Type>)> = None;
    let mut attempts = None;
    let mut state_version: Option<(u32, Span)> = None;
    let mut state_upcast: Option<syn::Ident> = None;
    let mut crate_path = None;
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("name") {
            let lit: syn::LitStr = meta.value()?.parse()?;
            name = Some(lit.value());
        } else if meta.path.is_ident("key") {
            let input = meta.value()?;
            let field: syn::Ident = input.parse()?;
            let ty = if input.peek(syn::Token![:]) {
                input.parse::<syn::Token![:]>()?;
                Some(input.parse()?)
            } else {
                None
            };
            key = Some((field, ty));
        } else if meta.path.is_ident("attempts") {
            let lit: syn::LitInt = meta.value()?.parse()?;
            let n: u32 = lit.base10_parse()?;
            if n == 0 {
                return Err(syn::Error::new(lit.span(), "`attempts` must be at least 1"));
            }
            attempts = Some(n);
        } else if meta.path.is_ident("state_version") {
            let lit: syn::LitInt = meta.value()?.parse()?;
            let n: u32 = lit.base10_parse()?;
            if n == 0 {
                return Err(syn::Error::new(lit.span(), "`state_version` starts at 1"));
            }
            state_version = Some((n, lit.span()));
        } else if meta.path.is_ident("state_upcast") {
            state_upcast = Some(meta.value()?.parse()?);
        } else if meta.path.is_ident("crate") {
            let lit: syn::LitStr = meta.value()?.parse()?;
            crate_path = Some(lit.parse()?);
        } else {
            let word = quote::ToTokens::to_token_stream(&meta.path).to_string();
            return Err(meta.error(format!(
                "unknown saga attribute `{word}`{}",
                suggest::suffix(&word, SAGA_ARGS)
            )));
        }
        Ok(())
    });
    if let Err(err) = syn::parse::Parser::parse2(parser, args) {
        cx.syn_error(err);
        return None;
    }
    if item.trait_.is_some() {
        cx.error_spanned_by(
            &item.self_ty,
            "#[saga] goes on an inherent `impl YourSaga { ... }` block, not a trait impl",
        );
        return None;
    }
    if !item.generics.params.is_empty() {
        cx.error_spanned_by(
            &item.generics,
            "a saga cannot be generic: its stored state has one type",
        );
    }
    let type_name = match &*item.self_ty {
        syn::Type::Path(path) => path.path.segments.last().map(|s| s.ident.to_string()),
        _ => None,
    };
    let name = name.unwrap_or_else(|| {
        heck::ToSnakeCase::to_snake_case(type_name.as_deref().unwrap_or("saga"))
    });
    let Some((key, key_type)) = key else {
        cx.error_at(
            Span::call_site(),
            "missing `key`: write #[saga(key = order_id)], the field of every message that names the instance",
        );
        return None;
    };
    let key_type = key_type.unwrap_or_else(|| syn::parse_quote!(::std::string::String));

    let functions: Vec<&syn::ImplItemFn> = item
        .items
        .iter()
        .filter_map(|i| match i {
            syn::ImplItem::Fn(f) => Some(f),
            _ => None,
        })
        .collect();
    let mut starts = Vec::new();
    let mut steps = Vec::new();
    let mut step_attrs = 0;
    for func in &functions {
        check_pure(cx, func);
        for attr in &func.attrs {
            if attr.path().is_ident("start") {
                if let Some(start) = parse_start(cx, attr, func) {
                    starts.push(start);
                }
            } else if attr.path().is_ident("step") {
                step_attrs += 1;
                if let Some(step) = parse_step(cx, attr, func) {
                    steps.push(step);
                }
            }
        }
    }
    if starts.is_empty() {
        cx.error_spanned_by(
            &item.self_ty,
            format!(
                "saga `{name}` has no start message: mark the function that creates an instance from the first message with #[start], as in `#[start] fn placed(event: &OrderPlaced) -> Self`"
            ),
        );
    }
    if step_attrs == 0 {
        cx.error_spanned_by(
            &item.self_ty,
            format!("saga `{name}` has no step: mark each function that returns a step's command with #[step(reply = ..., fault = ..., timeout = \"...\")]"),
        );
    }
    check_structure(cx, &functions, &mut steps);
    match (&state_version, &state_upcast) {
        (Some((version, span)), None) if *version > 1 => cx.error_at(
            *span,
            format!("state version {version} needs `state_upcast = f` to read the instances stored at older versions: `fn f(from: u32, data: serde_json::Value) -> Result<serde_json::Value, UpcastError>`"),
        ),
        (None | Some((1, _)), Some(f)) => cx.error_spanned_by(
            f,
            "`state_upcast` without `state_version` above 1: there is no older stored form to lift",
        ),
        (_, Some(f)) if !functions.iter().any(|func| func.sig.ident == *f) => cx.error_spanned_by(
            f,
            format!("no function `{f}` in this impl block: add `fn {f}(from: u32, data: serde_json::Value) -> Result<serde_json::Value, UpcastError>`"),
        ),
        _ => {}
    }
    check_meanings(cx, &starts, &steps);
    Some(SagaImpl {
        name,
        key,
        key_type,
        attempts,
        state_version: state_version.map(|(n, _)| n),
        state_upcast,
        crate_path,
        item,
        starts,
        steps,
    })
}

fn parse_start<'a>(
    cx: &Ctxt,
    attr: &syn::Attribute,
    func: &'a syn::ImplItemFn,
) -> Option<Start<'a>> {
    if !matches!(attr.meta, syn::Meta::Path(_)) {
        cx.error_spanned_by(attr, "#[start] takes no arguments");
    }
    let sig = &func.sig;
    let message = match (sig.inputs.len(), sig.inputs.first()) {
        (1, Some(syn::FnArg::Typed(pat))) => match &*pat.ty {
            syn::Type::Reference(r) if r.mutability.is_none() => Some(&*r.elem),
            _ => None,
        },
        _ => None,
    };
    let Some(message) = message else {
        cx.error_spanned_by(
            &sig.inputs,
            "a #[start] function takes the message by reference and nothing else: `fn placed(event: &OrderPlaced) -> Self`",
        );
        return None;
    };
    check_sync(cx, func);
    Some(Start { func, message })
}

fn parse_step<'a>(
    cx: &Ctxt,
    attr: &syn::Attribute,
    func: &'a syn::ImplItemFn,
) -> Option<StepDecl<'a>> {
    let step = func.sig.ident.to_string();
    let mut reply = None;
    let mut fault: Option<OrNone<syn::Type>> = None;
    let mut timeout = None;
    let mut compensate: Option<(OrNone<syn::Ident>, Span)> = None;
    let mut compensated = None;
    let mut pivot = None;
    let mut on_reply = None;
    let mut on_fault = None;
    let result = attr.parse_nested_meta(|meta| {
        if meta.path.is_ident("reply") {
            reply = Some(meta.value()?.parse::<syn::Type>()?);
        } else if meta.path.is_ident("fault") {
            fault = Some(or_none(meta.value()?)?);
        } else if meta.path.is_ident("timeout") {
            let lit: syn::LitStr = meta.value()?.parse()?;
            match attr::parse_duration_ms(&lit.value()) {
                Ok(0) => {
                    return Err(syn::Error::new(
                        lit.span(),
                        "a step's timeout must be above zero",
                    ));
                }
                Ok(ms) => timeout = Some(ms),
                Err(why) => return Err(syn::Error::new(lit.span(), format!("bad timeout: {why}"))),
            }
        } else if meta.path.is_ident("compensate") {
            let span = meta.path.span();
            compensate = Some((or_none(meta.value()?)?, span));
        } else if meta.path.is_ident("compensated") {
            compensated = Some(meta.value()?.parse::<syn::Type>()?);
        } else if meta.path.is_ident("pivot") {
            pivot = Some(meta.path.span());
        } else if meta.path.is_ident("on_reply") {
            on_reply = Some(meta.value()?.parse::<syn::Ident>()?);
        } else if meta.path.is_ident("on_fault") {
            on_fault = Some(meta.value()?.parse::<syn::Ident>()?);
        } else {
            let word = quote::ToTokens::to_token_stream(&meta.path).to_string();
            return Err(meta.error(format!(
                "unknown step attribute `{word}`{}",
                suggest::suffix(&word, STEP_ARGS)
            )));
        }
        Ok(())
    });
    if let Err(err) = result {
        cx.syn_error(err);
        return None;
    }
    let sig = &func.sig;
    let by_ref = takes_ref_self(sig);
    if !by_ref {
        cx.error_spanned_by(
            &sig.inputs,
            format!(
                "step `{step}` takes `&self` and nothing else, and returns the command it sends"
            ),
        );
    }
    check_sync(cx, func);
    let command = match &sig.output {
        syn::ReturnType::Type(_, ty) => Some(&**ty),
        syn::ReturnType::Default => {
            cx.error_spanned_by(
                &sig.ident,
                format!("step `{step}` returns no command: a step is the command it sends, as in `fn charge(&self) -> ChargeCard`"),
            );
            None
        }
    };
    let Some(reply) = reply else {
        cx.error_spanned_by(
            attr,
            format!("step `{step}` sends a command but expects no reply: add `reply = TheEventThatSaysItWorked`"),
        );
        return None;
    };
    let Some(timeout_ms) = timeout else {
        cx.error_spanned_by(
            attr,
            format!("step `{step}` sends a command whose timeout is not handled: add `timeout = \"30s\"` (how long to wait for the reply or the fault)"),
        );
        return None;
    };
    let fault_given = fault.is_some();
    let fault = match fault {
        Some(OrNone::Some(ty)) => Some(ty),
        _ => None,
    };
    let (compensate, compensate_given) = match compensate {
        Some((OrNone::Some(f), span)) => (Some(f), Some(span)),
        Some((OrNone::None, span)) => (None, Some(span)),
        None => (None, None),
    };
    Some(StepDecl {
        func,
        command: command?,
        reply,
        fault,
        timeout_ms,
        compensate,
        compensated,
        pivot,
        on_reply,
        on_fault,
        compensatable: false,
        fault_given,
        compensate_given,
        attr_span: attr.span(),
    })
}

/// The pivot, compensations and faults: Richardson's structure.
fn check_structure(cx: &Ctxt, functions: &[&syn::ImplItemFn], steps: &mut [StepDecl<'_>]) {
    let pivots: Vec<usize> = (0..steps.len())
        .filter(|&i| steps[i].pivot.is_some())
        .collect();
    for &second in pivots.iter().skip(1) {
        let first = steps[pivots[0]].func.sig.ident.to_string();
        cx.error_at(
            steps[second].pivot.expect("a pivot"),
            format!(
                "step `{}` is a second pivot: `{first}` already is the saga's point of no return, and a saga has one",
                steps[second].func.sig.ident
            ),
        );
    }
    let pivot = pivots.first().copied();
    let pivot_name = pivot
        .map(|p| steps[p].func.sig.ident.to_string())
        .unwrap_or_default();
    let find = |name: &syn::Ident| functions.iter().find(|f| f.sig.ident == *name);
    for (i, step) in steps.iter_mut().enumerate() {
        let name = step.func.sig.ident.to_string();
        let (fault_given, attr_span) = (step.fault_given, step.attr_span);
        let before = pivot.is_none_or(|p| i < p);
        let is_pivot = pivot == Some(i);
        step.compensatable = before;
        if (before || is_pivot) && !fault_given {
            cx.error_at(
                attr_span,
                format!("step `{name}` sends a command whose fault is not handled: add `fault = TheEventThatSaysItFailed`, or `fault = none` if the participant never refuses"),
            );
        }
        if before && step.compensate_given.is_none() {
            cx.error_at(
                attr_span,
                format!("compensatable step `{name}` has no compensation: add `compensate = undo_function`, or `compensate = none` if nothing needs undoing"),
            );
        }
        if let (false, Some(span)) = (before, step.compensate_given) {
            if is_pivot {
                cx.error_at(span, format!("step `{name}` is the pivot: once it succeeded there is no way back, so it has no compensation"));
            } else {
                cx.error_at(span, format!("step `{name}` comes after the pivot `{pivot_name}`: it cannot be compensated, only retried until it succeeds; move it before the pivot or drop `compensate`"));
            }
        }
        if let Some(f) = &step.compensate {
            match find(f) {
                None => cx.error_spanned_by(f, format!("no function `{f}` in this impl block to compensate step `{name}`: add `fn {f}(&self) -> TheUndoCommand`")),
                Some(func) => {
                    check_sync(cx, func);
                    if !takes_ref_self(&func.sig) || matches!(func.sig.output, syn::ReturnType::Default) {
                        cx.error_spanned_by(&func.sig, format!("the compensation `{f}` takes `&self` and returns the command that undoes step `{name}`"));
                    }
                }
            }
        }
        if step.compensated.is_some() && step.compensate.is_none() {
            cx.error_at(
                attr_span,
                format!("step `{name}` awaits `compensated` but has no `compensate` function"),
            );
        }
        if let Some(f) = &step.on_reply {
            match find(f) {
                None => cx.error_spanned_by(
                    f,
                    format!(
                        "no function `{f}` in this impl block: add `fn {f}(&mut self, reply: &{})`",
                        quote::ToTokens::to_token_stream(&step.reply)
                    ),
                ),
                Some(func) => check_sync(cx, func),
            }
        }
        if let Some(f) = &step.on_fault {
            match (&step.fault, find(f)) {
                (None, _) => cx.error_spanned_by(f, format!("step `{name}` has `on_fault` but no `fault` message")),
                (Some(fault), None) => cx.error_spanned_by(f, format!("no function `{f}` in this impl block: add `fn {f}(&self, fault: &{}) -> String`", quote::ToTokens::to_token_stream(fault))),
                (Some(_), Some(func)) => check_sync(cx, func),
            }
        }
    }
}

/// A message has one meaning in a saga: a start, a reply, a fault or a compensation's reply.
fn check_meanings(cx: &Ctxt, starts: &[Start<'_>], steps: &[StepDecl<'_>]) {
    let mut seen: Vec<(String, String)> = Vec::new();
    let mut claim = |ty: &syn::Type, meaning: String| {
        let text = quote::ToTokens::to_token_stream(ty).to_string();
        if let Some((_, before)) = seen.iter().find(|(t, _)| *t == text) {
            cx.error_spanned_by(
                ty,
                format!("message `{}` is handled twice: it already is {before}, and a message has one meaning in a saga", text.replace(' ', "")),
            );
        } else {
            seen.push((text, meaning));
        }
    };
    for start in starts {
        claim(
            start.message,
            format!("the start of `{}`", start.func.sig.ident),
        );
    }
    for step in steps {
        let name = &step.func.sig.ident;
        claim(&step.reply, format!("the reply of step `{name}`"));
        if let Some(fault) = &step.fault {
            claim(fault, format!("the fault of step `{name}`"));
        }
        if let Some(done) = &step.compensated {
            claim(
                done,
                format!("the reply of the compensation of step `{name}`"),
            );
        }
    }
}

/// `(&self)` and nothing else.
fn takes_ref_self(sig: &syn::Signature) -> bool {
    matches!(
        (sig.inputs.len(), sig.inputs.first()),
        (1, Some(syn::FnArg::Receiver(r)))
            if matches!(r.kind, syn::ReceiverKind::Reference(_, _, None))
    )
}

/// A saga's functions run inside a transaction and must be plain functions.
fn check_sync(cx: &Ctxt, func: &syn::ImplItemFn) {
    if let Some(token) = func.sig.asyncness {
        cx.error_spanned_by(
            token,
            format!("`{}` is async: a saga's functions are pure and synchronous (no I/O); the runtime does the I/O after the transition commits", func.sig.ident),
        );
    }
}

/// Rejects calls that make a transition depend on more than the state and the message.
fn check_pure(cx: &Ctxt, func: &syn::ImplItemFn) {
    let name = func.sig.ident.to_string();
    scan(
        cx,
        &name,
        func.block
            .stmts
            .iter()
            .map(quote::ToTokens::to_token_stream)
            .collect(),
    );
}

fn scan(cx: &Ctxt, func: &str, tokens: TokenStream) {
    // The path being read (`a::b::c`), and what came before its next token.
    let mut path: Vec<(String, Span)> = Vec::new();
    let mut colons = 0;
    let mut after_dot = false;
    let flush = |path: &mut Vec<(String, Span)>| {
        let words: Vec<&str> = path.iter().map(|(w, _)| w.as_str()).collect();
        if let (Some(what), Some((_, span))) = (impure(&words), path.last()) {
            cx.error_at(
                *span,
                format!("`{}` in saga function `{func}` {what}: a saga's functions are pure, so a transition depends only on the state and the message (take times and ids from the message; the runtime does the I/O)", words.join("::")),
            );
        }
        path.clear();
    };
    for token in tokens {
        match token {
            TokenTree::Ident(ident) => {
                let word = ident.to_string();
                if after_dot {
                    // A field or a method: not a path.
                    if word == "await" {
                        cx.error_at(ident.span(), format!("`.await` in saga function `{func}`: a saga's functions are pure and synchronous (no I/O); the runtime does the I/O after the transition commits"));
                    }
                    flush(&mut path);
                } else if colons == 2 {
                    path.push((word, ident.span()));
                } else {
                    flush(&mut path);
                    path.push((word, ident.span()));
                }
                colons = 0;
                after_dot = false;
            }
            TokenTree::Punct(p) if p.as_char() == ':' => {
                colons += 1;
                if colons > 2 {
                    flush(&mut path);
                    colons = 1;
                }
                after_dot = false;
            }
            TokenTree::Punct(p) => {
                flush(&mut path);
                colons = 0;
                after_dot = p.as_char() == '.';
            }
            TokenTree::Group(group) => {
                flush(&mut path);
                scan(cx, func, group.stream());
                colons = 0;
                after_dot = false;
            }
            TokenTree::Literal(_) => {
                flush(&mut path);
                colons = 0;
                after_dot = false;
            }
        }
    }
    flush(&mut path);
}

/// The attributes `#[saga]` reads on functions, to strip before the impl is emitted.
pub fn is_saga_attr(attr: &syn::Attribute) -> bool {
    attr.path().is_ident("start") || attr.path().is_ident("step")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(body: TokenStream) -> Vec<String> {
        let cx = Ctxt::new();
        scan(&cx, "f", body);
        match cx.check() {
            Ok(()) => Vec::new(),
            Err(err) => err.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn clocks_randomness_spawns_and_io_are_refused_by_path() {
        for body in [
            quote::quote!(let t = std::time::SystemTime::now();),
            quote::quote!(let t = Instant::now();),
            quote::quote!(let n: u8 = rand::random();),
            quote::quote!(let r = thread_rng();),
            quote::quote!(tokio::spawn(async {});),
            quote::quote!(let s = std::fs::read_to_string("x");),
            quote::quote!(let s = fs::read("x");),
            quote::quote!(let f = File::open("x");),
            quote::quote!(let c = TcpStream::connect("x");),
            quote::quote!(let v = std::env::var("X");),
            quote::quote!(std::thread::sleep(d);),
            quote::quote!(let x = y.await;),
        ] {
            assert_eq!(errors(body.clone()).len(), 1, "{body}");
        }
    }

    #[test]
    fn fields_locals_methods_and_struct_fields_with_those_names_are_fine() {
        for body in [
            quote::quote!(let rng = self.rng; let fs = self.fs.clone();),
            quote::quote!(let handle = self.pool.spawn(); x.sleep();),
            quote::quote!(Cmd {
                sleep: 1,
                spawn: true,
                fs: 2
            }),
            quote::quote!(match k {
                Kind::File => 1,
                _ => 2,
            }),
            quote::quote!(let now = self.now; let t = event.at;),
        ] {
            assert!(
                errors(body.clone()).is_empty(),
                "{body}: {:?}",
                errors(body.clone())
            );
        }
    }
}
