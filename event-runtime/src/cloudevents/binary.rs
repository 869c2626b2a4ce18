//! Binary content mode: attributes in message headers, the payload as the message body.
//!
//! [`Binding::Kafka`] names headers `ce_<attribute>` and puts `datacontenttype` in `content-type`,
//! as the Kafka protocol binding says, and returns the partition key as the record key.
//! [`Binding::Nats`] uses `ce-<attribute>` and `content-type`, as the NATS protocol binding says.
//! Header values are UTF-8 strings; binary extensions are base64.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::Limits;
use super::attributes::{TYPED, Text, TextValues, Typed, content_type};
use super::structured::{
    check_extension_names, check_specversion, extension_name_error, format_sequence,
    format_time_into, non_empty, parse_id, parse_sequence, parse_time,
};
use crate::envelope::{Envelope, ExtensionValue, RawData, RawEnvelope};
use crate::error::{DecodeError, EncodeError, Format};
use crate::message::Message;
use crate::transport::{Bytes, Headers};

/// Which protocol binding's header names to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binding {
    /// `ce_` prefix (Kafka protocol binding).
    Kafka,
    /// `ce-` prefix (NATS protocol binding).
    Nats,
}

impl Binding {
    /// The attribute header prefix.
    pub fn prefix(self) -> &'static str {
        match self {
            Binding::Kafka => "ce_",
            Binding::Nats => "ce-",
        }
    }
}

/// The header that carries `datacontenttype` in both bindings.
pub const CONTENT_TYPE_HEADER: &str = "content-type";

/// A message in binary content mode.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct BinaryMessage {
    /// Record key: the partition key (Kafka's key mapping), if any.
    pub key: Option<Bytes>,
    /// Headers in the order written.
    pub headers: Headers,
    /// The payload, exactly as the codec wrote it.
    pub payload: Bytes,
}

impl BinaryMessage {
    /// The first header named `name` (compared without regard to ASCII case).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.get(name)
    }
}

/// Encodes a raw envelope in binary mode.
///
/// # Errors
///
/// [`EncodeError::InvalidAttribute`] for a time that cannot be formatted or an extension whose
/// name is invalid or reserved.
pub fn encode(envelope: &RawEnvelope, binding: Binding) -> Result<BinaryMessage, EncodeError> {
    encode_parts(envelope, envelope.data.0.clone(), binding, None)
}

/// Encodes `envelope`'s attributes in binary mode around `payload` (its encoded data), which
/// becomes the message body as it is; with `hop`, the `send` span's context in the protocol
/// headers `traceparent` and `tracestate` ([`crate::telemetry::stamp`]).
pub(crate) fn encode_parts<M>(
    envelope: &Envelope<M>,
    payload: Vec<u8>,
    binding: Binding,
    hop: Option<&crate::envelope::TraceContext>,
) -> Result<BinaryMessage, EncodeError> {
    check_extension_names(envelope)?;
    let prefix = binding.prefix();
    // One buffer for every header: the attribute values are short, so this rarely grows.
    let mut headers = Headers::builder();
    macro_rules! put {
        ($name:expr, $value:expr) => {
            headers.push_parts(&[prefix, $name], $value)
        };
    }
    put!("specversion", super::SPEC_VERSION.as_bytes());
    let mut id = uuid::Uuid::encode_buffer();
    put!("id", envelope.id.encode(&mut id).as_bytes());
    put!("source", envelope.source.as_bytes());
    put!("type", envelope.ty.as_bytes());
    headers.push_with(&[prefix, "time"], |buf| {
        format_time_into(&envelope.time, buf)
    })?;
    put!(
        "eventversion",
        itoa_u32(envelope.version, &mut [0; 10]).as_bytes()
    );
    for (attr, value) in Text::present(envelope) {
        put!(attr.name(), value.as_bytes());
    }
    if let Some(sequence) = envelope.sequence {
        put!("sequence", format_sequence(sequence).as_bytes());
    }
    for (name, value) in &envelope.extensions {
        match value {
            ExtensionValue::String(s) => put!(name, s.as_bytes()),
            ExtensionValue::Integer(i) => put!(name, i.to_string().as_bytes()),
            ExtensionValue::Boolean(b) => put!(name, if *b { b"true" } else { b"false" }),
            ExtensionValue::Binary(bytes) => put!(name, BASE64.encode(bytes).as_bytes()),
        }
    }
    headers.push(CONTENT_TYPE_HEADER, envelope.content_type.as_bytes());
    crate::telemetry::stamp(&mut headers, hop);
    Ok(BinaryMessage {
        key: envelope
            .partition_key
            .as_ref()
            .map(|k| Bytes::copy_from_slice(k.as_bytes())),
        headers: headers.finish(),
        payload: Bytes::from(payload),
    })
}

/// `value` in decimal, written into `buf` (the event version, on every publish).
fn itoa_u32(mut value: u32, buf: &mut [u8; 10]) -> &str {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[at..]).unwrap_or("0")
}

/// Encodes a typed envelope in binary mode.
///
/// # Errors
///
/// The payload codec's error.
pub fn to_binary<M: Message>(
    envelope: &Envelope<M>,
    binding: Binding,
) -> Result<BinaryMessage, EncodeError> {
    to_binary_hop(envelope, binding, None)
}

/// [`to_binary`] with the `send` span's context `hop` (see [`encode_parts`]).
pub(crate) fn to_binary_hop<M: Message>(
    envelope: &Envelope<M>,
    binding: Binding,
    hop: Option<&crate::envelope::TraceContext>,
) -> Result<BinaryMessage, EncodeError> {
    let mut payload = Vec::with_capacity(envelope.data.payload_len().unwrap_or(128));
    envelope.data.encode_payload(&mut payload)?;
    encode_parts(envelope, payload, binding, hop)
}

fn invalid(attribute: &str, reason: impl Into<String>) -> DecodeError {
    DecodeError::InvalidAttribute {
        attribute: attribute.to_owned(),
        reason: reason.into(),
    }
}

/// Decodes binary mode from headers and a payload. Headers without the binding's prefix (other
/// than `content-type`) are ignored; unknown `ce` attributes become string extensions.
///
/// # Errors
///
/// [`DecodeError::TooLarge`] for too many or too large headers or payload,
/// [`DecodeError::MissingAttribute`], [`DecodeError::InvalidAttribute`] (non-UTF-8 values
/// included) or [`DecodeError::UnsupportedSpecVersion`].
pub fn decode<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    payload: &[u8],
    binding: Binding,
    limits: &Limits,
) -> Result<RawEnvelope, DecodeError> {
    let headers = headers
        .into_iter()
        .map(|(name, value)| (name.as_bytes(), value));
    decode_at(headers, payload, binding, limits, None)
}

/// The slot of `attribute` (any ASCII case) among [`TYPED`] and then [`Text::ALL`].
fn slot(attribute: &[u8]) -> Option<usize> {
    TYPED
        .iter()
        .position(|own| own.as_bytes().eq_ignore_ascii_case(attribute))
        .or_else(|| {
            Text::ALL
                .iter()
                .position(|text| text.name().as_bytes().eq_ignore_ascii_case(attribute))
                .map(|i| TYPED.len() + i)
        })
}

/// [`decode`], with `default_time` for an event without `time` (none: it is an error), over
/// header names as bytes (a record's [`crate::transport::Headers`] are read without checking
/// their names as UTF-8 again).
///
/// Header values are borrowed while reading: only what the envelope keeps is copied.
pub(crate) fn decode_at<'a>(
    headers: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    payload: &[u8],
    binding: Binding,
    limits: &Limits,
    default_time: Option<time::OffsetDateTime>,
) -> Result<RawEnvelope, DecodeError> {
    Limits::check(limits.max_data_bytes, payload.len(), "payload")?;
    let prefix = binding.prefix();
    let mut slots: [Option<&'a str>; TYPED.len() + Text::ALL.len()] = Default::default();
    let mut extensions: BTreeMap<String, ExtensionValue> = BTreeMap::new();
    let mut content = None;
    let (mut count, mut total) = (0usize, 0usize);
    for (name, value) in headers {
        count += 1;
        total += name.len() + value.len();
        Limits::check(limits.max_headers, count, "header count")?;
        Limits::check(limits.max_header_bytes, total, "headers")?;
        let named = |reason: &str| invalid(&String::from_utf8_lossy(name), reason);
        let text = || std::str::from_utf8(value).map_err(|_| named("header value is not UTF-8"));
        if name.eq_ignore_ascii_case(CONTENT_TYPE_HEADER.as_bytes()) {
            if content.replace(text()?).is_some() {
                return Err(named("header appears twice"));
            }
        } else if name.len() > prefix.len()
            && name[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
        {
            let attribute = &name[prefix.len()..];
            let duplicate = match slot(attribute) {
                Some(index) => slots[index].replace(text()?).is_some(),
                None => {
                    let attribute = std::str::from_utf8(attribute)
                        .map_err(|_| named("header name is not UTF-8"))?
                        .to_ascii_lowercase();
                    if let Some(reason) = extension_name_error(&attribute) {
                        return Err(named(reason));
                    }
                    let value = ExtensionValue::String(text()?.to_owned());
                    extensions.insert(attribute, value).is_some()
                }
            };
            if duplicate {
                return Err(named("header appears twice"));
            }
        }
    }
    let [
        specversion,
        id,
        source,
        ty,
        time,
        _datacontenttype,
        version,
        sequence,
    ] = [0, 1, 2, 3, 4, 5, 6, 7].map(|i| slots[i]);
    let missing = |attribute: &'static str| DecodeError::MissingAttribute {
        format: Format::Binary,
        attribute,
    };
    check_specversion(specversion.ok_or_else(|| missing("specversion"))?)?;
    let id = parse_id(id.ok_or_else(|| missing("id"))?)?;
    let source = non_empty("source", source.ok_or_else(|| missing("source"))?.into())?;
    let ty = non_empty("type", ty.ok_or_else(|| missing("type"))?.into())?;
    let time = match time {
        Some(text) => parse_time(text)?,
        None => default_time.ok_or_else(|| missing("time"))?,
    };
    let version = match version {
        None => 1,
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|v| *v >= 1)
            .ok_or_else(|| invalid("eventversion", format!("`{text}` is not an integer >= 1")))?,
    };
    let sequence = sequence.map(parse_sequence).transpose()?;
    let mut texts = TextValues::default();
    for (attr, value) in Text::ALL.into_iter().zip(&slots[TYPED.len()..]) {
        if let Some(value) = value {
            texts.set(attr, (*value).to_owned());
        }
    }
    Ok(texts.envelope(Typed {
        id,
        source,
        ty,
        version,
        time,
        content_type: content_type(content),
        sequence,
        extensions,
        data: RawData(payload.to_vec()),
    }))
}
