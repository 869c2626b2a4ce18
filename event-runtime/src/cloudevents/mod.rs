//! CloudEvents 1.0.2 encodings of an [`Envelope`]: the JSON event format (structured mode),
//! binary content mode for the Kafka and NATS bindings, and the protobuf event format; and
//! [`decode_record`], which reads a stored record in whichever of them it is. The attributes are
//! listed once (a private table every format walks), so the formats cannot disagree on them.
//!
//! ```
//! use event_runtime::{DomainEvent, Envelope, cloudevents};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(DomainEvent, Serialize, Deserialize, Debug, PartialEq)]
//! #[event(context = "orders")]
//! struct OrderPlaced { #[event(key)] order_id: String, total_cents: u64 }
//!
//! let sent = Envelope::event(OrderPlaced { order_id: "o-1".into(), total_cents: 1250 });
//! let bytes = cloudevents::to_json(&sent).unwrap();
//! let raw = cloudevents::structured::decode(&bytes, &cloudevents::Limits::default()).unwrap();
//! assert_eq!(raw.ty, "orders.order_placed");
//! let received = raw.decode::<OrderPlaced>().unwrap();
//! assert_eq!(received, sent);
//! ```

mod attributes;
pub mod binary;
pub mod protobuf;
pub(crate) mod record;
pub mod structured;

pub use record::decode_record;

/// The types prost-build generates from the official `cloudevents.proto` (kept in sync by a
/// golden test). The codec in [`protobuf`] reads and writes the same bytes without them; they are
/// here for code that wants the generated message, and for the tests that cross-check the two.
#[allow(missing_docs, unreachable_pub, clippy::all)]
#[rustfmt::skip]
pub mod pb;

use crate::envelope::Envelope;
use crate::error::{DecodeError, EncodeError};
use crate::message::Message;

/// The `specversion` this library writes and reads.
pub const SPEC_VERSION: &str = "1.0";
/// Content type of the JSON event format.
pub const STRUCTURED_JSON: &str = "application/cloudevents+json";
/// Content type of the protobuf event format.
pub const STRUCTURED_PROTOBUF: &str = "application/cloudevents+protobuf";

/// Size limits applied before anything is decoded; oversized input is rejected, never truncated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// A whole encoded message (structured formats), default 1 MiB.
    pub max_message_bytes: usize,
    /// The `data` of one event, default 1 MiB.
    pub max_data_bytes: usize,
    /// Number of headers in binary mode, default 64.
    pub max_headers: usize,
    /// Sum of header names and values in binary mode, default 16 KiB.
    pub max_header_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 1 << 20,
            max_data_bytes: 1 << 20,
            max_headers: 64,
            max_header_bytes: 16 << 10,
        }
    }
}

impl Limits {
    pub(crate) fn check(
        limit: usize,
        actual: usize,
        what: &'static str,
    ) -> Result<(), DecodeError> {
        if actual > limit {
            Err(DecodeError::TooLarge {
                what,
                limit,
                actual,
            })
        } else {
            Ok(())
        }
    }
}

/// Whether `content_type` is JSON (`application/json`, `text/json` or a `+json` suffix), in which
/// case the JSON format embeds `data` as JSON rather than base64.
pub fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    let suffix = essence
        .len()
        .checked_sub(5)
        .and_then(|at| essence.get(at..));
    essence.eq_ignore_ascii_case("application/json")
        || essence.eq_ignore_ascii_case("text/json")
        || suffix.is_some_and(|suffix| suffix.eq_ignore_ascii_case("+json"))
}

/// Encodes a typed envelope in the JSON event format, writing the payload straight into the
/// output.
///
/// # Errors
///
/// The payload codec's error.
pub fn to_json<M: Message>(envelope: &Envelope<M>) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(256);
    structured::encode_with(envelope, &mut out, |buf| envelope.data.encode_payload(buf))?;
    Ok(out)
}

/// Decodes the JSON event format into `M`, upcasting older versions.
///
/// # Errors
///
/// Any [`DecodeError`]: malformed input, limits, unknown type, future version, payload.
pub fn from_json<M: Message>(bytes: &[u8], limits: &Limits) -> Result<Envelope<M>, DecodeError> {
    structured::decode_typed(bytes, limits)
}

/// Encodes a typed envelope in the protobuf event format.
///
/// # Errors
///
/// The payload codec's error.
pub fn to_protobuf<M: Message>(envelope: &Envelope<M>) -> Result<Vec<u8>, EncodeError> {
    protobuf::encode_typed(envelope)
}

/// Decodes the protobuf event format into `M`, upcasting older versions.
///
/// # Errors
///
/// Any [`DecodeError`].
pub fn from_protobuf<M: Message>(
    bytes: &[u8],
    limits: &Limits,
) -> Result<Envelope<M>, DecodeError> {
    protobuf::decode_typed(bytes, limits)
}

#[cfg(test)]
mod tests {
    use super::is_json;

    #[test]
    fn json_media_types_are_told_apart_in_any_case() {
        for json in [
            "application/json",
            "Application/JSON; charset=utf-8",
            " text/json ",
            "application/cloudevents+json",
            "application/vnd.shop.order+JSON;v=2",
        ] {
            assert!(is_json(json), "{json}");
        }
        for other in [
            "application/protobuf",
            "application/json-seq",
            "text/plain",
            "json",
            "",
            "application/x+jsön",
        ] {
            assert!(!is_json(other), "{other}");
        }
    }
}
