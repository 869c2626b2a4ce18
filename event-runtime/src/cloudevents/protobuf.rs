//! The CloudEvents protobuf event format (`application/cloudevents+protobuf`), using types
//! generated from the official `cloudevents.proto`.
//!
//! Optional attributes and extensions go into the `attributes` map with their CloudEvents types:
//! `time` as a timestamp, `dataschema` as a URI, `eventversion` as an integer, the rest as strings.
//! JSON and `text/*` payloads are written as `text_data`, everything else as `binary_data`;
//! `proto_data` (an `Any`) is accepted when reading.

use std::collections::BTreeMap;

use prost::encoding::{
    DecodeContext, WireType, decode_key, decode_varint, encode_key, encode_varint,
    encoded_len_varint, skip_field,
};
use time::OffsetDateTime;

use super::attributes::{Text, TextValues, Typed, content_type};
use super::structured::{
    check_extension_names, check_specversion, extension_name_error, format_sequence, parse_id,
    parse_sequence, parse_time,
};
use super::{Limits, SPEC_VERSION, is_json};
use crate::envelope::{Envelope, ExtensionValue, RawData, RawEnvelope};
use crate::error::{DecodeError, EncodeError, Format};
use crate::message::Message;

fn is_text(content_type: &str) -> bool {
    is_json(content_type) || content_type.trim_start().starts_with("text/")
}

/// One value of the `attributes` map, borrowed: written without building the generated types.
enum AttrRef<'a> {
    Boolean(bool),
    Integer(i32),
    String(&'a str),
    Bytes(&'a [u8]),
    Uri(&'a str),
    Timestamp { seconds: i64, nanos: i32 },
}

/// Field numbers of `CloudEventAttributeValue.attr` in the official proto.
impl AttrRef<'_> {
    fn tag(&self) -> u32 {
        match self {
            AttrRef::Boolean(_) => 1,
            AttrRef::Integer(_) => 2,
            AttrRef::String(_) => 3,
            AttrRef::Bytes(_) => 4,
            AttrRef::Uri(_) => 5,
            AttrRef::Timestamp { .. } => 7,
        }
    }

    fn timestamp_len(seconds: i64, nanos: i32) -> usize {
        let mut len = 0;
        if seconds != 0 {
            len += 1 + encoded_len_varint(seconds as u64);
        }
        if nanos != 0 {
            len += 1 + encoded_len_varint(i64::from(nanos) as u64);
        }
        len
    }

    /// Length of the encoded `CloudEventAttributeValue` message.
    fn len(&self) -> usize {
        1 + match self {
            AttrRef::Boolean(_) => 1,
            AttrRef::Integer(i) => encoded_len_varint(i64::from(*i) as u64),
            AttrRef::String(s) | AttrRef::Uri(s) => encoded_len_varint(s.len() as u64) + s.len(),
            AttrRef::Bytes(b) => encoded_len_varint(b.len() as u64) + b.len(),
            AttrRef::Timestamp { seconds, nanos } => {
                let len = Self::timestamp_len(*seconds, *nanos);
                encoded_len_varint(len as u64) + len
            }
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            AttrRef::Boolean(b) => {
                encode_key(self.tag(), WireType::Varint, out);
                encode_varint(u64::from(*b), out);
            }
            AttrRef::Integer(i) => {
                encode_key(self.tag(), WireType::Varint, out);
                encode_varint(i64::from(*i) as u64, out);
            }
            AttrRef::String(s) | AttrRef::Uri(s) => put_bytes(out, self.tag(), s.as_bytes()),
            AttrRef::Bytes(b) => put_bytes(out, self.tag(), b),
            AttrRef::Timestamp { seconds, nanos } => {
                encode_key(self.tag(), WireType::LengthDelimited, out);
                encode_varint(Self::timestamp_len(*seconds, *nanos) as u64, out);
                if *seconds != 0 {
                    encode_key(1, WireType::Varint, out);
                    encode_varint(*seconds as u64, out);
                }
                if *nanos != 0 {
                    encode_key(2, WireType::Varint, out);
                    encode_varint(i64::from(*nanos) as u64, out);
                }
            }
        }
    }
}

fn put_bytes(out: &mut Vec<u8>, tag: u32, bytes: &[u8]) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// One `attributes` map entry (field 5): `{1: name, 2: value}`.
fn put_attribute(out: &mut Vec<u8>, name: &str, value: &AttrRef<'_>) {
    let value_len = value.len();
    let entry_len = 1
        + encoded_len_varint(name.len() as u64)
        + name.len()
        + 1
        + encoded_len_varint(value_len as u64)
        + value_len;
    encode_key(5, WireType::LengthDelimited, out);
    encode_varint(entry_len as u64, out);
    put_bytes(out, 1, name.as_bytes());
    encode_key(2, WireType::LengthDelimited, out);
    encode_varint(value_len as u64, out);
    value.write(out);
}

/// Encodes a raw envelope in the protobuf event format.
///
/// The bytes are those of the official `CloudEvent` message, written directly (attributes in a
/// fixed order, so equal envelopes give equal bytes).
///
/// # Errors
///
/// [`EncodeError::InvalidAttribute`] when `eventversion` does not fit the format's 32-bit integer
/// or an extension's name is invalid or reserved.
pub fn encode(envelope: &RawEnvelope) -> Result<Vec<u8>, EncodeError> {
    encode_with_data(envelope, &envelope.data.0)
}

/// Encodes `envelope`'s attributes with `data` as its payload.
pub(crate) fn encode_with_data<M>(
    envelope: &Envelope<M>,
    data: &[u8],
) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(256 + data.len());
    encode_attributes(envelope, &mut out)?;
    match std::str::from_utf8(data) {
        Ok(text) if is_text(&envelope.content_type) => put_bytes(&mut out, 7, text.as_bytes()),
        _ => put_bytes(&mut out, 6, data),
    }
    Ok(out)
}

/// Encodes a typed envelope, writing a payload whose length the codec knows
/// ([`Message::payload_len`], protobuf) in place after its length prefix: no temporary buffer,
/// no copy. Other payloads go through [`encode_with_data`].
pub(crate) fn encode_typed<M: Message>(envelope: &Envelope<M>) -> Result<Vec<u8>, EncodeError> {
    if let Some(len) = envelope.data.payload_len()
        && !is_text(&envelope.content_type)
    {
        let mut out = Vec::with_capacity(256 + len);
        encode_attributes(envelope, &mut out)?;
        encode_key(6, WireType::LengthDelimited, &mut out);
        encode_varint(len as u64, &mut out);
        let start = out.len();
        envelope.data.encode_payload(&mut out)?;
        if out.len() - start == len {
            return Ok(out);
        }
        // A codec whose length hint was wrong: never write a corrupt frame.
    }
    let mut data = Vec::new();
    envelope.data.encode_payload(&mut data)?;
    encode_with_data(envelope, &data)
}

/// Writes every field of the `CloudEvent` message but the data.
fn encode_attributes<M>(envelope: &Envelope<M>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    check_extension_names(envelope)?;
    let version = i32::try_from(envelope.version).map_err(|_| EncodeError::InvalidAttribute {
        attribute: "eventversion".to_owned(),
        reason: format!("{} does not fit a CloudEvents integer", envelope.version),
    })?;
    let mut id = uuid::Uuid::encode_buffer();
    put_bytes(out, 1, envelope.id.encode(&mut id).as_bytes());
    put_bytes(out, 2, envelope.source.as_bytes());
    put_bytes(out, 3, SPEC_VERSION.as_bytes());
    put_bytes(out, 4, envelope.ty.as_bytes());
    put_attribute(
        out,
        "time",
        &AttrRef::Timestamp {
            seconds: envelope.time.unix_timestamp(),
            nanos: envelope.time.nanosecond() as i32,
        },
    );
    put_attribute(
        out,
        "datacontenttype",
        &AttrRef::String(&envelope.content_type),
    );
    put_attribute(out, "eventversion", &AttrRef::Integer(version));
    for (attr, text) in Text::present(envelope) {
        let value = if attr.is_uri() {
            AttrRef::Uri(text)
        } else {
            AttrRef::String(text)
        };
        put_attribute(out, attr.name(), &value);
    }
    if let Some(sequence) = envelope.sequence {
        put_attribute(
            out,
            "sequence",
            &AttrRef::String(&format_sequence(sequence)),
        );
    }
    for (name, ext) in &envelope.extensions {
        let value = match ext {
            ExtensionValue::String(s) => AttrRef::String(s),
            ExtensionValue::Integer(i) => AttrRef::Integer(*i),
            ExtensionValue::Boolean(b) => AttrRef::Boolean(*b),
            ExtensionValue::Binary(b) => AttrRef::Bytes(b),
        };
        put_attribute(out, name, &value);
    }
    Ok(())
}

fn invalid(attribute: &str, reason: impl Into<String>) -> DecodeError {
    DecodeError::InvalidAttribute {
        attribute: attribute.to_owned(),
        reason: reason.into(),
    }
}

/// A decoded attribute value, borrowing from the input.
#[derive(Debug)]
enum Attr<'a> {
    Boolean(bool),
    Integer(i32),
    String(&'a str),
    Bytes(&'a [u8]),
    Uri(&'a str),
    UriRef(&'a str),
    Timestamp { seconds: i64, nanos: i32 },
}

impl std::fmt::Display for Attr<'_> {
    /// How an attribute of the wrong type is named in an error.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Attr::Boolean(b) => write!(f, "the boolean {b}"),
            Attr::Integer(i) => write!(f, "the integer {i}"),
            Attr::String(s) => write!(f, "the string {s:?}"),
            Attr::Bytes(b) => write!(f, "{} bytes", b.len()),
            Attr::Uri(s) => write!(f, "the URI {s:?}"),
            Attr::UriRef(s) => write!(f, "the URI reference {s:?}"),
            Attr::Timestamp { seconds, nanos } => write!(f, "the timestamp {seconds}s+{nanos}ns"),
        }
    }
}

/// A wire-level reader over the official `CloudEvent` message: no intermediate map or copies.
/// The attributes this library reads go into slots by name; the others (extensions) into a list
/// that stays unallocated when there are none.
struct Wire<'a> {
    id: &'a str,
    source: &'a str,
    spec_version: &'a str,
    ty: &'a str,
    /// `Some(value)` for an attribute present (`value` is `None` when its value is empty), by
    /// [`known_slot`].
    known: [Option<Option<Attr<'a>>>; KNOWN.len()],
    extensions: Vec<(&'a str, Option<Attr<'a>>)>,
    data: &'a [u8],
}

/// The attributes of the `attributes` map this library reads, in slot order: the typed ones,
/// then the text attributes in [`Text::ALL`] order.
const KNOWN: [&str; 12] = [
    "datacontenttype",
    "sequence",
    "time",
    "eventversion",
    Text::ALL[0].name(),
    Text::ALL[1].name(),
    Text::ALL[2].name(),
    Text::ALL[3].name(),
    Text::ALL[4].name(),
    Text::ALL[5].name(),
    Text::ALL[6].name(),
    Text::ALL[7].name(),
];

/// The slot of an attribute this library reads (names are compared exactly, as protobuf map
/// keys are).
fn known_slot(name: &str) -> Option<usize> {
    KNOWN.iter().position(|known| *known == name)
}

fn malformed(reason: impl Into<String>) -> DecodeError {
    DecodeError::Malformed {
        format: Format::Protobuf,
        reason: reason.into(),
    }
}

fn wire_err(err: prost::DecodeError) -> DecodeError {
    malformed(err.to_string())
}

fn key(buf: &mut &[u8]) -> Result<(u32, WireType), DecodeError> {
    decode_key(buf).map_err(wire_err)
}

fn length_delimited<'a>(
    buf: &mut &'a [u8],
    wire_type: WireType,
    what: &str,
) -> Result<&'a [u8], DecodeError> {
    if wire_type != WireType::LengthDelimited {
        return Err(malformed(format!(
            "{what}: invalid wire type {wire_type:?}"
        )));
    }
    let len = decode_varint(buf).map_err(wire_err)?;
    if len > buf.len() as u64 {
        return Err(malformed(format!(
            "{what}: length {len} runs past the end of the message"
        )));
    }
    let (head, rest) = buf.split_at(len as usize);
    *buf = rest;
    Ok(head)
}

fn utf8<'a>(bytes: &'a [u8], what: &str) -> Result<&'a str, DecodeError> {
    std::str::from_utf8(bytes).map_err(|_| {
        malformed(format!(
            "{what}: invalid string value: data is not UTF-8 encoded"
        ))
    })
}

fn varint(buf: &mut &[u8], wire_type: WireType, what: &str) -> Result<u64, DecodeError> {
    if wire_type != WireType::Varint {
        return Err(malformed(format!(
            "{what}: invalid wire type {wire_type:?}"
        )));
    }
    decode_varint(buf).map_err(wire_err)
}

fn skip(buf: &mut &[u8], tag: u32, wire_type: WireType) -> Result<(), DecodeError> {
    skip_field(wire_type, tag, buf, DecodeContext::default()).map_err(wire_err)
}

fn read_timestamp(mut buf: &[u8]) -> Result<Attr<'_>, DecodeError> {
    let (mut seconds, mut nanos) = (0i64, 0i32);
    while !buf.is_empty() {
        let (tag, wire_type) = key(&mut buf)?;
        match tag {
            1 => seconds = varint(&mut buf, wire_type, "Timestamp.seconds")? as i64,
            2 => nanos = varint(&mut buf, wire_type, "Timestamp.nanos")? as i32,
            _ => skip(&mut buf, tag, wire_type)?,
        }
    }
    Ok(Attr::Timestamp { seconds, nanos })
}

fn read_value(mut buf: &[u8]) -> Result<Option<Attr<'_>>, DecodeError> {
    let mut attr = None;
    while !buf.is_empty() {
        let (tag, wire_type) = key(&mut buf)?;
        attr = Some(match tag {
            1 => Attr::Boolean(varint(&mut buf, wire_type, "ce_boolean")? != 0),
            2 => Attr::Integer(varint(&mut buf, wire_type, "ce_integer")? as i32),
            3 => Attr::String(utf8(
                length_delimited(&mut buf, wire_type, "ce_string")?,
                "ce_string",
            )?),
            4 => Attr::Bytes(length_delimited(&mut buf, wire_type, "ce_bytes")?),
            5 => Attr::Uri(utf8(
                length_delimited(&mut buf, wire_type, "ce_uri")?,
                "ce_uri",
            )?),
            6 => Attr::UriRef(utf8(
                length_delimited(&mut buf, wire_type, "ce_uri_ref")?,
                "ce_uri_ref",
            )?),
            7 => read_timestamp(length_delimited(&mut buf, wire_type, "ce_timestamp")?)?,
            _ => {
                skip(&mut buf, tag, wire_type)?;
                continue;
            }
        });
    }
    Ok(attr)
}

fn read_entry<'a>(mut buf: &'a [u8], wire: &mut Wire<'a>) -> Result<(), DecodeError> {
    let (mut name, mut value) = ("", None);
    while !buf.is_empty() {
        let (tag, wire_type) = key(&mut buf)?;
        match tag {
            1 => {
                name = utf8(
                    length_delimited(&mut buf, wire_type, "attributes key")?,
                    "attributes key",
                )?
            }
            2 => value = read_value(length_delimited(&mut buf, wire_type, "attributes value")?)?,
            _ => skip(&mut buf, tag, wire_type)?,
        }
    }
    // A repeated key keeps its last value, as protobuf maps do.
    match known_slot(name) {
        Some(slot) => wire.known[slot] = Some(value),
        None => wire.extensions.push((name, value)),
    }
    Ok(())
}

fn read_any(mut buf: &[u8]) -> Result<&[u8], DecodeError> {
    let mut value: &[u8] = &[];
    while !buf.is_empty() {
        let (tag, wire_type) = key(&mut buf)?;
        match tag {
            1 => {
                length_delimited(&mut buf, wire_type, "Any.type_url")?;
            }
            2 => value = length_delimited(&mut buf, wire_type, "Any.value")?,
            _ => skip(&mut buf, tag, wire_type)?,
        }
    }
    Ok(value)
}

fn read_event(mut buf: &[u8]) -> Result<Wire<'_>, DecodeError> {
    let mut wire = Wire {
        id: "",
        source: "",
        spec_version: "",
        ty: "",
        known: [const { None }; KNOWN.len()],
        extensions: Vec::new(),
        data: &[],
    };
    while !buf.is_empty() {
        let (tag, wire_type) = key(&mut buf)?;
        match tag {
            1 => {
                wire.id = utf8(
                    length_delimited(&mut buf, wire_type, "CloudEvent.id")?,
                    "CloudEvent.id",
                )?
            }
            2 => {
                wire.source = utf8(
                    length_delimited(&mut buf, wire_type, "CloudEvent.source")?,
                    "CloudEvent.source",
                )?
            }
            3 => {
                wire.spec_version = utf8(
                    length_delimited(&mut buf, wire_type, "CloudEvent.spec_version")?,
                    "CloudEvent.spec_version",
                )?;
            }
            4 => {
                wire.ty = utf8(
                    length_delimited(&mut buf, wire_type, "CloudEvent.type")?,
                    "CloudEvent.type",
                )?
            }
            5 => read_entry(
                length_delimited(&mut buf, wire_type, "CloudEvent.attributes")?,
                &mut wire,
            )?,
            6 => wire.data = length_delimited(&mut buf, wire_type, "CloudEvent.binary_data")?,
            7 => {
                let text = length_delimited(&mut buf, wire_type, "CloudEvent.text_data")?;
                wire.data = utf8(text, "CloudEvent.text_data")?.as_bytes();
            }
            8 => {
                wire.data = read_any(length_delimited(
                    &mut buf,
                    wire_type,
                    "CloudEvent.proto_data",
                )?)?
            }
            _ => skip(&mut buf, tag, wire_type)?,
        }
    }
    Ok(wire)
}

fn text(name: &str, attr: Attr<'_>) -> Result<String, DecodeError> {
    match attr {
        Attr::String(s) | Attr::Uri(s) | Attr::UriRef(s) => Ok(s.to_owned()),
        other => Err(invalid(name, format!("expected a string, found {other}"))),
    }
}

fn timestamp_to_time(seconds: i64, nanos: i32) -> Result<OffsetDateTime, String> {
    let total = i128::from(seconds) * 1_000_000_000 + i128::from(nanos);
    OffsetDateTime::from_unix_timestamp_nanos(total).map_err(|err| err.to_string())
}

fn missing(attribute: &'static str) -> DecodeError {
    DecodeError::MissingAttribute {
        format: Format::Protobuf,
        attribute,
    }
}

/// Decodes the protobuf event format.
///
/// # Errors
///
/// [`DecodeError::TooLarge`] before parsing, [`DecodeError::Malformed`] for bytes that are not a
/// `CloudEvent` message, and the attribute errors of the JSON format.
pub fn decode(bytes: &[u8], limits: &Limits) -> Result<RawEnvelope, DecodeError> {
    decode_at(bytes, limits, None)
}

/// [`decode`], with `default_time` for an event without `time` (none: it is an error).
pub(crate) fn decode_at(
    bytes: &[u8],
    limits: &Limits,
    default_time: Option<OffsetDateTime>,
) -> Result<RawEnvelope, DecodeError> {
    let (envelope, data) = decode_parts(bytes, limits, default_time)?;
    Ok(envelope.map_data(|()| RawData(data.to_vec())))
}

/// Decodes straight into `M`: the payload is read from the message bytes without a copy.
pub(crate) fn decode_typed<M: crate::message::Message>(
    bytes: &[u8],
    limits: &Limits,
) -> Result<Envelope<M>, DecodeError> {
    let (envelope, data) = decode_parts(bytes, limits, None)?;
    let message = M::decode_payload(&envelope.ty, envelope.version, data)?;
    let mut envelope = envelope.map_data(|()| message);
    envelope.version = envelope.data.descriptor().version;
    Ok(envelope)
}

fn decode_parts<'a>(
    bytes: &'a [u8],
    limits: &Limits,
    default_time: Option<OffsetDateTime>,
) -> Result<(Envelope<()>, &'a [u8]), DecodeError> {
    Limits::check(limits.max_message_bytes, bytes.len(), "protobuf message")?;
    let event = read_event(bytes)?;
    if event.spec_version.is_empty() {
        return Err(missing("specversion"));
    }
    check_specversion(event.spec_version)?;
    if event.id.is_empty() {
        return Err(missing("id"));
    }
    if event.source.is_empty() {
        return Err(missing("source"));
    }
    if event.ty.is_empty() {
        return Err(missing("type"));
    }
    let id = parse_id(event.id)?;
    let empty = |name: &str| invalid(name, "attribute value is empty");
    let mut known: [Option<Attr<'_>>; KNOWN.len()] = [const { None }; KNOWN.len()];
    for ((slot, value), name) in known.iter_mut().zip(event.known).zip(KNOWN) {
        if let Some(value) = value {
            *slot = Some(value.ok_or_else(|| empty(name))?);
        }
    }
    // The last value of a repeated extension wins, as in a protobuf map.
    let extensions: BTreeMap<&str, Option<Attr<'_>>> = event.extensions.into_iter().collect();
    let mut attrs: BTreeMap<&str, Attr<'_>> = BTreeMap::new();
    for (name, value) in extensions {
        attrs.insert(name, value.ok_or_else(|| empty(name))?);
    }
    let mut take = |name: &'static str| known_slot(name).and_then(|slot| known[slot].take());
    let mut take_text = |name: &'static str| take(name).map(|a| text(name, a)).transpose();
    let content = take_text("datacontenttype")?;
    let texts = TextValues::read(&mut take_text)?;
    let sequence = take_text("sequence")?
        .map(|s| parse_sequence(&s))
        .transpose()?;
    let time = match take("time") {
        Some(Attr::Timestamp { seconds, nanos }) => {
            timestamp_to_time(seconds, nanos).map_err(|reason| invalid("time", reason))?
        }
        Some(Attr::String(s)) => parse_time(s)?,
        Some(other) => {
            return Err(invalid(
                "time",
                format!("expected a timestamp, found {other}"),
            ));
        }
        None => default_time.ok_or_else(|| missing("time"))?,
    };
    let version = match take("eventversion") {
        None => 1,
        Some(Attr::Integer(v)) if v >= 1 => v as u32,
        Some(Attr::String(s)) => s
            .parse::<u32>()
            .ok()
            .filter(|v| *v >= 1)
            .ok_or_else(|| invalid("eventversion", format!("`{s}` is not an integer >= 1")))?,
        Some(other) => {
            return Err(invalid(
                "eventversion",
                format!("expected an integer >= 1, found {other}"),
            ));
        }
    };
    Limits::check(limits.max_data_bytes, event.data.len(), "data")?;
    let extensions = attrs
        .into_iter()
        .map(|(name, attr)| {
            // Every attribute this library reads was taken above; what is left is an extension.
            if let Some(reason) = extension_name_error(name) {
                return Err(invalid(name, reason));
            }
            let value = match attr {
                Attr::Boolean(b) => ExtensionValue::Boolean(b),
                Attr::Integer(i) => ExtensionValue::Integer(i),
                Attr::Bytes(b) => ExtensionValue::Binary(b.to_vec()),
                Attr::String(s) | Attr::Uri(s) | Attr::UriRef(s) => {
                    ExtensionValue::String(s.to_owned())
                }
                Attr::Timestamp { seconds, nanos } => {
                    // Nanoseconds included; a timestamp RFC 3339 cannot write is an error, not "".
                    let text = timestamp_to_time(seconds, nanos)
                        .and_then(|t| {
                            t.format(&time::format_description::well_known::Rfc3339)
                                .map_err(|err| err.to_string())
                        })
                        .map_err(|reason| invalid(name, reason))?;
                    ExtensionValue::String(text)
                }
            };
            Ok((name.to_owned(), value))
        })
        .collect::<Result<_, DecodeError>>()?;
    let envelope = texts.envelope(Typed {
        id,
        source: event.source.to_owned(),
        ty: event.ty.to_owned(),
        version,
        time,
        content_type: content_type(content),
        sequence,
        extensions,
        data: (),
    });
    Ok((envelope, event.data))
}
