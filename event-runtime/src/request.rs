//! The context of the request being served: its correlation id and W3C trace context, which
//! every envelope created while serving it carries ([`Envelope::event`](crate::Envelope::event)
//! and [`Envelope::command`](crate::Envelope::command) read it), so that one HTTP request can be
//! followed into the asynchronous world.
//!
//! With the `http` feature, [`CorrelationLayer`] sets it for every request of a tower service
//! (axum, tonic, hyper); any other framework calls [`scope`] with
//! [`RequestContext::from_headers`] (or its own values).
//!
//! ```
//! use event_runtime::request::{self, RequestContext};
//! use event_runtime::{DomainEvent, Envelope};
//!
//! #[derive(DomainEvent, serde::Serialize, serde::Deserialize)]
//! #[event(context = "orders")]
//! struct OrderPlaced { order_id: String }
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let ctx = RequestContext::new("req-42", None);
//! let envelope = request::scope(ctx, async {
//!     Envelope::event(OrderPlaced { order_id: "o-1".into() })
//! })
//! .await;
//! assert_eq!(envelope.correlation_id.as_deref(), Some("req-42"));
//! # });
//! ```

use std::future::Future;

use crate::envelope::TraceContext;

/// The header a correlation id travels in, read and written by [`CorrelationLayer`].
pub const CORRELATION_HEADER: &str = "x-correlation-id";

/// Correlation id and trace context of the request being served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestContext {
    /// The correlation id every envelope created in the request carries.
    pub correlation_id: String,
    /// The request's trace context (`traceparent`, `tracestate`), when it came with one.
    pub trace: Option<TraceContext>,
}

impl RequestContext {
    /// A context with `correlation_id` and `trace`.
    pub fn new(correlation_id: impl Into<String>, trace: Option<TraceContext>) -> Self {
        RequestContext {
            correlation_id: correlation_id.into(),
            trace,
        }
    }
}

tokio::task_local! {
    static CURRENT: RequestContext;
}

/// Runs `future` with `ctx` as the request context: envelopes created inside it carry its
/// correlation id and trace context. Dropping the returned future drops `future` (nothing else
/// is left behind).
pub async fn scope<F: Future>(ctx: RequestContext, future: F) -> F::Output {
    CURRENT.scope(ctx, future).await
}

/// The request context of the current task, if it is serving one.
pub fn current() -> Option<RequestContext> {
    CURRENT.try_with(Clone::clone).ok()
}

/// Whether a `traceparent` is well formed (W3C Trace Context, version 00): ids not all zero.
pub fn valid_traceparent(value: &str) -> bool {
    let parts: Vec<&str> = value.split('-').collect();
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    matches!(parts.as_slice(), [version, trace, parent, flags]
        if hex(version, 2) && *version != "ff" && hex(trace, 32) && hex(parent, 16) && hex(flags, 2)
            && trace.bytes().any(|b| b != b'0') && parent.bytes().any(|b| b != b'0'))
}

#[cfg(feature = "http")]
mod layer;
#[cfg(feature = "http")]
pub use layer::{CorrelationLayer, CorrelationService};
