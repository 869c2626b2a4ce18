//! Payload codecs: how the CloudEvents `data` of one message is written.
//!
//! The derive picks the codec from `#[event(codec = json | protobuf)]` (JSON by default) and calls
//! it through [`PayloadCodec`]. Both codecs ignore unknown fields when decoding: serde skips them
//! (and `#[serde(deny_unknown_fields)]` is a compile error on messages), prost keeps them out of the
//! decoded value.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{DecodeError, PayloadError, UpcastError};

/// Encodes and decodes the payload of `T`.
pub trait PayloadCodec<T> {
    /// The content type written as `datacontenttype`.
    const CONTENT_TYPE: &'static str;
    /// Appends the encoding of `value` to `buf`.
    ///
    /// # Errors
    ///
    /// The codec's error.
    fn encode(value: &T, buf: &mut Vec<u8>) -> Result<(), PayloadError>;
    /// Decodes `data`.
    ///
    /// # Errors
    ///
    /// The codec's error.
    fn decode(data: &[u8]) -> Result<T, PayloadError>;
    /// The exact length [`PayloadCodec::encode`] will append, when the codec knows it without
    /// encoding (protobuf does): lets an envelope format write the payload's length prefix
    /// first and then the payload in place, instead of through a temporary buffer.
    fn encoded_len(value: &T) -> Option<usize> {
        let _ = value;
        None
    }
}

/// serde + serde_json, `application/json`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Json;

/// prost, `application/protobuf`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Protobuf;

/// The JSON content type.
pub const JSON: &str = "application/json";
/// The protobuf content type.
pub const PROTOBUF: &str = "application/protobuf";

impl<T: Serialize + DeserializeOwned> PayloadCodec<T> for Json {
    const CONTENT_TYPE: &'static str = JSON;

    fn encode(value: &T, buf: &mut Vec<u8>) -> Result<(), PayloadError> {
        serde_json::to_writer(buf, value).map_err(PayloadError::Json)
    }

    fn decode(data: &[u8]) -> Result<T, PayloadError> {
        serde_json::from_slice(data).map_err(PayloadError::Json)
    }
}

impl<T: prost::Message + Default> PayloadCodec<T> for Protobuf {
    const CONTENT_TYPE: &'static str = PROTOBUF;

    fn encode(value: &T, buf: &mut Vec<u8>) -> Result<(), PayloadError> {
        // A `Vec` grows as needed, so prost's capacity check (which walks the message for its
        // length a second time: callers size the buffer from `encoded_len` already) cannot fail.
        value.encode_raw(buf);
        Ok(())
    }

    fn decode(data: &[u8]) -> Result<T, PayloadError> {
        T::decode(data).map_err(PayloadError::Protobuf)
    }

    fn encoded_len(value: &T) -> Option<usize> {
        Some(value.encoded_len())
    }
}

/// Writes the payload of one variant of an externally tagged enum: serde writes
/// `{"Variant":<fields>}` and the payload is `<fields>` (the CloudEvents `type` names the variant).
pub(crate) fn encode_variant<T: Serialize>(
    value: &T,
    variant: &str,
    buf: &mut Vec<u8>,
) -> Result<(), PayloadError> {
    let start = buf.len();
    serde_json::to_writer(&mut *buf, value)?;
    let prefix = variant_prefix(variant);
    let written = &buf[start..];
    if written.starts_with(prefix.as_bytes()) && written.ends_with(b"}") {
        let inner_end = buf.len() - 1;
        buf.copy_within(start + prefix.len()..inner_end, start);
        buf.truncate(inner_end - prefix.len());
        Ok(())
    } else if written == format!("\"{variant}\"").as_bytes() {
        // A unit variant: serde writes the bare name; its payload is `null`.
        buf.truncate(start);
        buf.extend_from_slice(b"null");
        Ok(())
    } else {
        buf.truncate(start);
        Err(PayloadError::Shape(format!(
            "enum variant `{variant}` did not serialize as {{\"{variant}\": ...}}; event enums must use serde's default representation"
        )))
    }
}

fn variant_prefix(variant: &str) -> String {
    // Variant names come from Rust identifiers or serde renames: escape them like serde_json does.
    let quoted = serde_json::to_string(variant).unwrap_or_else(|_| format!("\"{variant}\""));
    format!("{{{quoted}:")
}

/// Reads the payload of one variant: wraps it back into `{"Variant":<payload>}` for serde.
pub(crate) fn decode_variant<T: DeserializeOwned>(
    variant: &str,
    data: &[u8],
) -> Result<T, PayloadError> {
    let prefix = variant_prefix(variant);
    let mut wrapped = Vec::with_capacity(prefix.len() + data.len() + 1);
    wrapped.extend_from_slice(prefix.as_bytes());
    wrapped.extend_from_slice(data);
    wrapped.push(b'}');
    serde_json::from_slice(&wrapped).map_err(PayloadError::Json)
}

/// A JSON-level upcaster: lifts a payload of version `v` to version `v + 1`.
pub type JsonUpcastFn = fn(serde_json::Value) -> Result<serde_json::Value, UpcastError>;

/// Lifts `data` (at `version`) through `chain` (pairs of `(from, f)`) to `target`.
pub(crate) fn upcast_json(
    name: &str,
    version: u32,
    target: u32,
    chain: &[(u32, JsonUpcastFn)],
    data: &[u8],
) -> Result<serde_json::Value, DecodeError> {
    let oldest = chain.iter().map(|(from, _)| *from).min().unwrap_or(target);
    if version < oldest {
        return Err(DecodeError::NoUpcaster {
            event: name.to_owned(),
            version,
            oldest_readable: oldest,
        });
    }
    let mut value: serde_json::Value =
        serde_json::from_slice(data).map_err(|err| DecodeError::Payload {
            event: name.to_owned(),
            version,
            source: PayloadError::Json(err),
        })?;
    for current in version..target {
        let Some((_, upcast)) = chain.iter().find(|(from, _)| *from == current) else {
            return Err(DecodeError::NoUpcaster {
                event: name.to_owned(),
                version: current,
                oldest_readable: oldest,
            });
        };
        value = upcast(value).map_err(|source| DecodeError::Upcast {
            event: name.to_owned(),
            from: current,
            source,
        })?;
    }
    Ok(value)
}
