//! The CloudEvents JSON event format (`application/cloudevents+json`).
//!
//! JSON payloads are embedded as JSON under `data`; other payloads are base64 under
//! `data_base64`. Integer extensions (`eventversion`) are JSON numbers; `sequence` is a string, as
//! the sequence extension defines it.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::io::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::de::{self, Deserializer as _, MapAccess, Visitor};
use serde_json::value::RawValue;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use super::attributes::{Text, TextValues, Typed, content_type, is_reserved};
use super::{Limits, SPEC_VERSION, is_json};
use crate::envelope::{Envelope, EventId, ExtensionValue, RawData, RawEnvelope};
use crate::error::{DecodeError, EncodeError, Format};
use crate::message::Message;

fn put_str(out: &mut Vec<u8>, key: &str, value: &str) {
    out.push(b',');
    out.push(b'"');
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
    // Writing a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
}

/// `time` in RFC 3339, appended to `out` (every format writes it so).
pub(crate) fn format_time_into(
    time: &OffsetDateTime,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    time.format_into(out, &Rfc3339)
        .map(drop)
        .map_err(|err| EncodeError::InvalidAttribute {
            attribute: "time".to_owned(),
            reason: err.to_string(),
        })
}

/// Sequence numbers are strings that sort in numeric order: zero-padded to 20 digits.
pub(crate) fn format_sequence(sequence: u64) -> String {
    format!("{sequence:020}")
}

/// Writes `envelope`'s attributes, calling `write_data` for the payload bytes.
pub(crate) fn encode_with<M>(
    envelope: &Envelope<M>,
    out: &mut Vec<u8>,
    write_data: impl FnOnce(&mut Vec<u8>) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    check_extension_names(envelope)?;
    out.extend_from_slice(b"{\"specversion\":\"1.0\"");
    // A UUID id, time and eventversion never need JSON escaping: written in place, without
    // temporaries. A foreign id may need it.
    match envelope.id.as_uuid() {
        Some(uuid) => {
            out.extend_from_slice(b",\"id\":\"");
            out.extend_from_slice(
                uuid.hyphenated()
                    .encode_lower(&mut Uuid::encode_buffer())
                    .as_bytes(),
            );
            out.push(b'"');
        }
        None => put_str(out, "id", envelope.id.encode(&mut [0; 45])),
    }
    put_str(out, "source", &envelope.source);
    put_str(out, "type", &envelope.ty);
    out.extend_from_slice(b",\"time\":\"");
    format_time_into(&envelope.time, out)?;
    out.push(b'"');
    put_str(out, "datacontenttype", &envelope.content_type);
    // Writing an integer into a Vec cannot fail.
    let _ = write!(out, ",\"eventversion\":{}", envelope.version);
    for (attr, value) in Text::present(envelope) {
        put_str(out, attr.name(), value);
    }
    if let Some(sequence) = envelope.sequence {
        put_str(out, "sequence", &format_sequence(sequence));
    }
    for (name, value) in &envelope.extensions {
        match value {
            ExtensionValue::String(s) => put_str(out, name, s),
            ExtensionValue::Integer(i) => {
                out.extend_from_slice(format!(",\"{name}\":{i}").as_bytes());
            }
            ExtensionValue::Boolean(b) => {
                out.extend_from_slice(format!(",\"{name}\":{b}").as_bytes());
            }
            ExtensionValue::Binary(bytes) => put_str(out, name, &BASE64.encode(bytes)),
        }
    }
    if is_json(&envelope.content_type) {
        let member = out.len();
        out.extend_from_slice(b",\"data\":");
        let start = out.len();
        write_data(out)?;
        if out.len() == start {
            // No data: leave the member out, which the decoder reads back as no data.
            out.truncate(member);
        }
    } else {
        let mut data = Vec::new();
        write_data(&mut data)?;
        put_str(out, "data_base64", &BASE64.encode(&data));
    }
    out.push(b'}');
    Ok(())
}

/// Encodes a raw envelope in the JSON event format. JSON data is checked to be valid JSON first,
/// so a foreign reader never receives a broken document; empty data is written as no `data`.
///
/// # Errors
///
/// [`EncodeError::InvalidAttribute`] when the content type says JSON but the data is not, or an
/// extension's name is invalid or reserved.
pub fn encode(envelope: &RawEnvelope, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let data = &envelope.data.0;
    encode_with(envelope, out, |buf| {
        if is_json(&envelope.content_type)
            && !data.is_empty()
            && let Err(err) = serde_json::from_slice::<de::IgnoredAny>(data)
        {
            return Err(EncodeError::InvalidAttribute {
                attribute: "data".to_owned(),
                reason: format!("datacontenttype is JSON but data is not: {err}"),
            });
        }
        buf.extend_from_slice(data);
        Ok(())
    })
}

/// A string that borrows from the input when it has no escapes.
struct Str<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Str<'de> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StrVisitor;
        impl<'de> Visitor<'de> for StrVisitor {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(StrVisitor)
    }
}

/// An extension value as JSON allows it: string, integer or boolean.
struct ExtValue(ExtensionValue);

impl<'de> de::Deserialize<'de> for ExtValue {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ExtVisitor;
        impl Visitor<'_> for ExtVisitor {
            type Value = ExtValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, an integer or a boolean")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ExtValue, E> {
                Ok(ExtValue(ExtensionValue::String(v.to_owned())))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<ExtValue, E> {
                Ok(ExtValue(ExtensionValue::Boolean(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ExtValue, E> {
                i32::try_from(v)
                    .map(|i| ExtValue(ExtensionValue::Integer(i)))
                    .map_err(|_| E::custom("extension integer out of the 32-bit range"))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ExtValue, E> {
                i32::try_from(v)
                    .map(|i| ExtValue(ExtensionValue::Integer(i)))
                    .map_err(|_| E::custom("extension integer out of the 32-bit range"))
            }
        }
        deserializer.deserialize_any(ExtVisitor)
    }
}

/// `eventversion` as a number, or as a string holding a number (binary-mode peers write strings).
struct VersionValue(u32);

impl<'de> de::Deserialize<'de> for VersionValue {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = VersionValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a positive integer")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<VersionValue, E> {
                u32::try_from(v)
                    .ok()
                    .filter(|v| *v >= 1)
                    .map(VersionValue)
                    .ok_or_else(|| E::custom(format!("eventversion {v} is not in 1..=4294967295")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<VersionValue, E> {
                Err(E::custom(format!(
                    "eventversion {v} is not in 1..=4294967295"
                )))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<VersionValue, E> {
                v.parse::<u64>()
                    .map_err(|_| E::custom(format!("eventversion `{v}` is not an integer")))
                    .and_then(|n| self.visit_u64(n))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// The attributes as read, before validation.
#[derive(Default)]
struct Wire<'de> {
    specversion: Option<Str<'de>>,
    id: Option<Str<'de>>,
    source: Option<Str<'de>>,
    ty: Option<Str<'de>>,
    time: Option<Str<'de>>,
    datacontenttype: Option<Str<'de>>,
    eventversion: Option<u32>,
    texts: TextValues,
    sequence: Option<Str<'de>>,
    data: Option<&'de RawValue>,
    data_base64: Option<Str<'de>>,
    extensions: BTreeMap<String, ExtensionValue>,
}

/// A payload type that can be decoded while the envelope is read, in one pass over the bytes.
pub(crate) trait TypedData: Sized {
    /// Whether a `data` of wire type `ty` at `version` is read directly as `Self`.
    fn fast_path(ty: &str, version: u32) -> bool;
    /// Reads the payload.
    fn deserialize<'de, D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error>;
    /// The event and version to name when reading in place failed.
    fn describe_failure() -> (String, u32);
}

/// The raw path: `data` is always kept as bytes.
pub(crate) enum NoTyped {}

impl TypedData for NoTyped {
    fn fast_path(_: &str, _: u32) -> bool {
        false
    }
    fn deserialize<'de, D: de::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(de::Error::custom(
            "the raw path never decodes data in place",
        ))
    }
    fn describe_failure() -> (String, u32) {
        (String::new(), 0)
    }
}

/// A message read in place when its wire type and version are exactly the type's own (the
/// common case: a consumer reading what a producer of the same version wrote).
pub(crate) struct InPlace<M>(pub(crate) M);

impl<M: Message> TypedData for InPlace<M> {
    fn fast_path(ty: &str, version: u32) -> bool {
        M::JSON_IN_PLACE
            && M::DESCRIPTORS.len() == 1
            && M::DESCRIPTORS[0].name == ty
            && M::DESCRIPTORS[0].version == version
    }
    fn deserialize<'de, D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        M::deserialize_json_in_place(deserializer).map(InPlace)
    }
    fn describe_failure() -> (String, u32) {
        let descriptor = &M::DESCRIPTORS[0];
        (descriptor.name.to_owned(), descriptor.version)
    }
}

struct Seed<T>(std::marker::PhantomData<T>);

impl<'de, T: TypedData> de::DeserializeSeed<'de> for Seed<T> {
    type Value = T;
    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<T, D::Error> {
        T::deserialize(deserializer)
    }
}

struct WireVisitor<'a, T> {
    /// Set when decoding `data` in place failed: the error is the payload's, not the envelope's.
    payload_failed: &'a std::cell::Cell<bool>,
    /// Whether `data` may be decoded in place (it may not when a data limit below the message
    /// limit has to be measured).
    in_place: bool,
    typed: &'a std::cell::RefCell<Option<T>>,
}

fn dup<E: de::Error>(name: &str) -> E {
    E::custom(format!("duplicate attribute `{name}`"))
}

macro_rules! once {
    ($map:ident, $slot:expr, $name:literal, $ty:ty) => {{
        if $slot.is_some() {
            return Err(dup($name));
        }
        let value: $ty = $map
            .next_value()
            .map_err(|err: A::Error| de::Error::custom(format!("attribute `{}`: {err}", $name)))?;
        $slot = Some(value);
    }};
}

impl<'de, T: TypedData> Visitor<'de> for WireVisitor<'_, T> {
    type Value = Wire<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a CloudEvents JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Wire<'de>, A::Error> {
        let mut wire = Wire::default();
        while let Some(key) = map.next_key::<Str<'de>>()? {
            match key.0.as_ref() {
                "specversion" => once!(map, wire.specversion, "specversion", Str<'de>),
                "id" => once!(map, wire.id, "id", Str<'de>),
                "source" => once!(map, wire.source, "source", Str<'de>),
                "type" => once!(map, wire.ty, "type", Str<'de>),
                "time" => once!(map, wire.time, "time", Str<'de>),
                "datacontenttype" => {
                    once!(map, wire.datacontenttype, "datacontenttype", Str<'de>)
                }
                "eventversion" => {
                    if wire.eventversion.is_some() {
                        return Err(dup("eventversion"));
                    }
                    let v: VersionValue = map.next_value()?;
                    wire.eventversion = Some(v.0);
                }
                "sequence" => once!(map, wire.sequence, "sequence", Str<'de>),
                "data" => {
                    let in_place = self.in_place
                        && wire.data.is_none()
                        && self.typed.borrow().is_none()
                        && wire.datacontenttype.as_ref().is_none_or(|c| is_json(&c.0))
                        && match (&wire.ty, wire.eventversion) {
                            (Some(ty), Some(version)) => T::fast_path(&ty.0, version),
                            _ => false,
                        };
                    if in_place {
                        match map.next_value_seed(Seed::<T>(std::marker::PhantomData)) {
                            Ok(value) => *self.typed.borrow_mut() = Some(value),
                            Err(err) => {
                                self.payload_failed.set(true);
                                return Err(err);
                            }
                        }
                    } else {
                        if self.typed.borrow().is_some() {
                            return Err(dup("data"));
                        }
                        once!(map, wire.data, "data", &'de RawValue)
                    }
                }
                "data_base64" => once!(map, wire.data_base64, "data_base64", Str<'de>),
                other => {
                    if let Some(attr) = Text::named(other) {
                        if wire.texts.has(attr) {
                            return Err(dup(attr.name()));
                        }
                        let value: String = map.next_value().map_err(|err: A::Error| {
                            de::Error::custom(format!("attribute `{}`: {err}", attr.name()))
                        })?;
                        wire.texts.set(attr, value);
                        continue;
                    }
                    let name = other.to_owned();
                    if !valid_extension_name(&name) {
                        return Err(de::Error::custom(format!(
                            "`{name}` is not a valid CloudEvents attribute name (a-z and 0-9 only)"
                        )));
                    }
                    let value: ExtValue = map.next_value().map_err(|err: A::Error| {
                        de::Error::custom(format!("extension `{name}`: {err}"))
                    })?;
                    if wire.extensions.insert(name.clone(), value.0).is_some() {
                        return Err(dup(&name));
                    }
                }
            }
        }
        Ok(wire)
    }
}

pub(crate) fn valid_extension_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// Why `name` cannot name an extension, if it cannot.
pub(crate) fn extension_name_error(name: &str) -> Option<&'static str> {
    if !valid_extension_name(name) {
        Some("not a valid CloudEvents attribute name (a-z and 0-9 only)")
    } else if is_reserved(name) {
        Some("names an attribute of its own, not an extension")
    } else {
        None
    }
}

/// Refuses to write an extension whose name is invalid or reserved: every format would write a
/// broken or ambiguous message.
pub(crate) fn check_extension_names<M>(envelope: &Envelope<M>) -> Result<(), EncodeError> {
    for name in envelope.extensions.keys() {
        if let Some(reason) = extension_name_error(name) {
            return Err(EncodeError::InvalidAttribute {
                attribute: name.clone(),
                reason: reason.to_owned(),
            });
        }
    }
    Ok(())
}

fn malformed(reason: impl Into<String>) -> DecodeError {
    DecodeError::Malformed {
        format: Format::StructuredJson,
        reason: reason.into(),
    }
}

fn missing(attribute: &'static str) -> DecodeError {
    DecodeError::MissingAttribute {
        format: Format::StructuredJson,
        attribute,
    }
}

/// Any non-empty string (CloudEvents 1.0.2, `id`); a canonical UUID is held as one.
pub(crate) fn parse_id(id: &str) -> Result<EventId, DecodeError> {
    id.parse().map_err(
        |err: crate::envelope::EmptyId| DecodeError::InvalidAttribute {
            attribute: "id".to_owned(),
            reason: err.to_string(),
        },
    )
}

pub(crate) fn parse_time(time: &str) -> Result<OffsetDateTime, DecodeError> {
    OffsetDateTime::parse(time, &Rfc3339).map_err(|err| DecodeError::InvalidAttribute {
        attribute: "time".to_owned(),
        reason: format!("`{time}` is not an RFC 3339 timestamp: {err}"),
    })
}

pub(crate) fn parse_sequence(sequence: &str) -> Result<u64, DecodeError> {
    sequence.parse().map_err(|_| DecodeError::InvalidAttribute {
        attribute: "sequence".to_owned(),
        reason: format!("`{sequence}` is not an unsigned integer"),
    })
}

/// `source` and `type` must be non-empty (the protobuf format cannot tell empty from absent).
pub(crate) fn non_empty(attribute: &str, value: Cow<'_, str>) -> Result<String, DecodeError> {
    if value.is_empty() {
        Err(DecodeError::InvalidAttribute {
            attribute: attribute.to_owned(),
            reason: "must not be empty".to_owned(),
        })
    } else {
        Ok(value.into_owned())
    }
}

pub(crate) fn check_specversion(specversion: &str) -> Result<(), DecodeError> {
    if specversion == SPEC_VERSION {
        Ok(())
    } else {
        Err(DecodeError::UnsupportedSpecVersion(specversion.to_owned()))
    }
}

/// Decodes the JSON event format.
///
/// `id` must be a UUID and `time` is required: this library's own envelopes always carry both.
/// `eventversion` defaults to 1 when a foreign producer leaves it out.
///
/// # Errors
///
/// [`DecodeError::TooLarge`] before parsing, [`DecodeError::Malformed`] with the line and column,
/// [`DecodeError::MissingAttribute`], [`DecodeError::InvalidAttribute`] or
/// [`DecodeError::UnsupportedSpecVersion`].
pub fn decode(bytes: &[u8], limits: &Limits) -> Result<RawEnvelope, DecodeError> {
    decode_at(bytes, limits, None)
}

/// [`decode`], with `default_time` for an event without `time` (none: it is an error).
pub(crate) fn decode_at(
    bytes: &[u8],
    limits: &Limits,
    default_time: Option<OffsetDateTime>,
) -> Result<RawEnvelope, DecodeError> {
    match parse::<NoTyped>(bytes, limits, default_time)? {
        (envelope, Payload::Bytes(data)) => Ok(envelope.map_data(|()| RawData(data))),
        (_, Payload::Typed(never)) => match never {},
    }
}

/// Decodes the JSON event format straight into `M`. When the wire type and version are `M`'s own
/// and the data is JSON, the payload is read in the same pass as the attributes; otherwise (older
/// versions, enums, protobuf payloads) it goes through [`RawEnvelope::decode`] and upcasting.
pub(crate) fn decode_typed<M: Message>(
    bytes: &[u8],
    limits: &Limits,
) -> Result<Envelope<M>, DecodeError> {
    match parse::<InPlace<M>>(bytes, limits, None)? {
        (envelope, Payload::Typed(InPlace(message))) => Ok(envelope.map_data(|()| message)),
        (envelope, Payload::Bytes(data)) => envelope.map_data(|()| RawData(data)).into_decoded(),
    }
}

enum Payload<T> {
    Typed(T),
    Bytes(Vec<u8>),
}

fn parse<T: TypedData>(
    bytes: &[u8],
    limits: &Limits,
    default_time: Option<OffsetDateTime>,
) -> Result<(Envelope<()>, Payload<T>), DecodeError> {
    Limits::check(limits.max_message_bytes, bytes.len(), "structured message")?;
    let payload_failed = std::cell::Cell::new(false);
    let typed = std::cell::RefCell::new(None);
    let visitor = WireVisitor {
        payload_failed: &payload_failed,
        // In place, the data's size is not measured: only when the message limit implies it.
        in_place: limits.max_data_bytes >= bytes.len(),
        typed: &typed,
    };
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let wire = match deserializer
        .deserialize_map(visitor)
        .and_then(|wire| deserializer.end().map(|()| wire))
    {
        Ok(wire) => wire,
        Err(err) if payload_failed.get() => {
            let (event, version) = T::describe_failure();
            return Err(DecodeError::Payload {
                event,
                version,
                source: crate::error::PayloadError::Json(err),
            });
        }
        Err(err) => return Err(malformed(err.to_string())),
    };
    let typed = typed.into_inner();
    let specversion = wire.specversion.ok_or_else(|| missing("specversion"))?;
    check_specversion(&specversion.0)?;
    let id = parse_id(&wire.id.ok_or_else(|| missing("id"))?.0)?;
    let source = non_empty("source", wire.source.ok_or_else(|| missing("source"))?.0)?;
    let ty = non_empty("type", wire.ty.ok_or_else(|| missing("type"))?.0)?;
    let time = match wire.time {
        Some(text) => parse_time(&text.0)?,
        None => default_time.ok_or_else(|| missing("time"))?,
    };
    let content_type = content_type(wire.datacontenttype.map(|t| t.0.into_owned()));
    if typed.is_some() && wire.data_base64.is_some() {
        return Err(malformed("both `data` and `data_base64` are present"));
    }
    let data = match (wire.data, wire.data_base64) {
        (Some(_), Some(_)) => {
            return Err(malformed("both `data` and `data_base64` are present"));
        }
        (Some(raw), None) => {
            let text = raw.get();
            if text.starts_with('"') && !is_json(&content_type) {
                // Non-JSON text data is carried as a JSON string.
                serde_json::from_str::<String>(text)
                    .map_err(|err| malformed(format!("attribute `data`: {err}")))?
                    .into_bytes()
            } else {
                text.as_bytes().to_vec()
            }
        }
        (None, Some(b64)) => {
            BASE64
                .decode(b64.0.as_bytes())
                .map_err(|err| DecodeError::InvalidAttribute {
                    attribute: "data_base64".to_owned(),
                    reason: err.to_string(),
                })?
        }
        (None, None) => Vec::new(),
    };
    Limits::check(limits.max_data_bytes, data.len(), "data")?;
    let payload = match typed {
        Some(typed) => Payload::Typed(typed),
        None => Payload::Bytes(data),
    };
    let sequence = wire.sequence.map(|s| parse_sequence(&s.0)).transpose()?;
    let envelope = wire.texts.envelope(Typed {
        id,
        source,
        ty,
        version: wire.eventversion.unwrap_or(1),
        time,
        content_type,
        sequence,
        extensions: wire.extensions,
        data: (),
    });
    Ok((envelope, payload))
}
