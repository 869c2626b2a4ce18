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
    parse_traceparent(value.as_bytes()).is_some()
}

/// A well-formed `traceparent`'s trace id, parent span id and flags: `vv-<32 hex>-<16 hex>-ff`,
/// lowercase, neither id all zeros, version `ff` invalid. A version above `00` may go on after
/// those 55 characters with `-` and more, which are ignored (W3C Trace Context, "Versioning of
/// traceparent"); version `00` is exactly 55. Read in place, with no allocation (a record's
/// header is read on every delivery).
pub(crate) fn parse_traceparent(value: &[u8]) -> Option<(u128, u64, u8)> {
    /// Each byte's value as a lowercase hex digit; 16 for any other byte.
    const DIGITS: [u8; 256] = {
        let mut table = [16u8; 256];
        let mut i = 0;
        while i < 10 {
            table[b'0' as usize + i] = i as u8;
            i += 1;
        }
        let mut i = 0;
        while i < 6 {
            table[b'a' as usize + i] = 10 + i as u8;
            i += 1;
        }
        table
    };
    fn hex(bytes: &[u8]) -> Option<u64> {
        let mut acc = 0u64;
        for &c in bytes {
            let digit = DIGITS[usize::from(c)];
            if digit > 15 {
                return None;
            }
            acc = acc << 4 | u64::from(digit);
        }
        Some(acc)
    }
    if value.len() < 55 || value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
        return None;
    }
    let version = hex(&value[0..2])?;
    if value.len() > 55 && (version == 0 || value[55] != b'-') {
        return None;
    }
    let trace = u128::from(hex(&value[3..19])?) << 64 | u128::from(hex(&value[19..35])?);
    let span = hex(&value[36..52])?;
    let flags = u8::try_from(hex(&value[53..55])?).ok()?;
    (version != 0xff && trace != 0 && span != 0).then_some((trace, span, flags))
}

#[cfg(feature = "http")]
mod layer;
#[cfg(feature = "http")]
pub use layer::{CorrelationLayer, CorrelationService};
