//! The CloudEvents protobuf event format (`application/cloudevents+protobuf`), using types
//! generated from the official `cloudevents.proto`.
//!
//! Optional attributes and extensions go into the `attributes` map with their CloudEvents types:
//! `time` as a timestamp, `dataschema` as a URI, `eventversion` as an integer, the rest as strings.
//! JSON and `text/*` payloads are written as `text_data`, everything else as `binary_data`;
//! `proto_data` (an `Any`) is accepted when reading.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use prost::Message as _;
use time::OffsetDateTime;

use super::pb::CloudEvent;
use super::pb::cloud_event::cloud_event_attribute_value::Attr;
use super::pb::cloud_event::{CloudEventAttributeValue, Data};
use super::structured::{
    check_extension_names, check_specversion, extension_name_error, format_sequence, parse_id,
    parse_sequence, parse_time,
};
use super::{Limits, SPEC_VERSION, is_json};
use crate::envelope::{Envelope, ExtensionValue, RawData, RawEnvelope, TraceContext};
use crate::error::{DecodeError, EncodeError, Format};

fn value(attr: Attr) -> CloudEventAttributeValue {
    CloudEventAttributeValue { attr: Some(attr) }
}

fn timestamp(time: &OffsetDateTime) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.unix_timestamp(),
        nanos: time.nanosecond() as i32,
    }
}

fn is_text(content_type: &str) -> bool {
    is_json(content_type) || content_type.trim_start().starts_with("text/")
}

/// Encodes a raw envelope in the protobuf event format.
///
/// # Errors
///
/// [`EncodeError::InvalidAttribute`] when `eventversion` does not fit the format's 32-bit integer
/// or an extension's name is invalid or reserved.
pub fn encode(envelope: &RawEnvelope) -> Result<Vec<u8>, EncodeError> {
    check_extension_names(envelope)?;
    let mut attributes: HashMap<String, CloudEventAttributeValue> = HashMap::with_capacity(12);
    let mut put = |name: &str, attr: Attr| {
        attributes.insert(name.to_owned(), value(attr));
    };
    put("time", Attr::CeTimestamp(timestamp(&envelope.time)));
    put(
        "datacontenttype",
        Attr::CeString(envelope.content_type.to_string()),
    );
    let version = i32::try_from(envelope.version).map_err(|_| EncodeError::InvalidAttribute {
        attribute: "eventversion".to_owned(),
        reason: format!("{} does not fit a CloudEvents integer", envelope.version),
    })?;
    put("eventversion", Attr::CeInteger(version));
    if let Some(schema) = &envelope.dataschema {
        put("dataschema", Attr::CeUri(schema.clone()));
    }
    let strings = [
        ("subject", envelope.subject.as_ref()),
        ("partitionkey", envelope.partition_key.as_ref()),
        ("correlationid", envelope.correlation_id.as_ref()),
        ("causationid", envelope.causation_id.as_ref()),
        (
            "traceparent",
            envelope.trace.as_ref().map(|t| &t.traceparent),
        ),
        (
            "tracestate",
            envelope.trace.as_ref().and_then(|t| t.tracestate.as_ref()),
        ),
        ("dedupekey", envelope.dedupe_key.as_ref()),
    ];
    for (name, text) in strings {
        if let Some(text) = text {
            put(name, Attr::CeString(text.clone()));
        }
    }
    if let Some(sequence) = envelope.sequence {
        put("sequence", Attr::CeString(format_sequence(sequence)));
    }
    for (name, ext) in &envelope.extensions {
        let attr = match ext {
            ExtensionValue::String(s) => Attr::CeString(s.clone()),
            ExtensionValue::Integer(i) => Attr::CeInteger(*i),
            ExtensionValue::Boolean(b) => Attr::CeBoolean(*b),
            ExtensionValue::Binary(b) => Attr::CeBytes(b.clone()),
        };
        put(name, attr);
    }
    let bytes = &envelope.data.0;
    let data = match std::str::from_utf8(bytes) {
        Ok(text) if is_text(&envelope.content_type) => Data::TextData(text.to_owned()),
        _ => Data::BinaryData(bytes.clone()),
    };
    let event = CloudEvent {
        id: envelope.id.hyphenated().to_string(),
        source: envelope.source.to_string(),
        spec_version: SPEC_VERSION.to_owned(),
        r#type: envelope.ty.to_string(),
        attributes,
        data: Some(data),
    };
    Ok(event.encode_to_vec())
}

fn invalid(attribute: &str, reason: impl Into<String>) -> DecodeError {
    DecodeError::InvalidAttribute {
        attribute: attribute.to_owned(),
        reason: reason.into(),
    }
}

fn text(name: &str, attr: Attr) -> Result<String, DecodeError> {
    match attr {
        Attr::CeString(s) | Attr::CeUri(s) | Attr::CeUriRef(s) => Ok(s),
        other => Err(invalid(name, format!("expected a string, found {other:?}"))),
    }
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
    Limits::check(limits.max_message_bytes, bytes.len(), "protobuf message")?;
    let event = CloudEvent::decode(bytes).map_err(|err| DecodeError::Malformed {
        format: Format::Protobuf,
        reason: err.to_string(),
    })?;
    if event.spec_version.is_empty() {
        return Err(missing("specversion"));
    }
    check_specversion(&event.spec_version)?;
    if event.id.is_empty() {
        return Err(missing("id"));
    }
    if event.source.is_empty() {
        return Err(missing("source"));
    }
    if event.r#type.is_empty() {
        return Err(missing("type"));
    }
    let id = parse_id(&event.id)?;
    let mut attrs: BTreeMap<String, Attr> = BTreeMap::new();
    for (name, value) in event.attributes {
        let attr = value
            .attr
            .ok_or_else(|| invalid(&name, "attribute value is empty"))?;
        attrs.insert(name, attr);
    }
    let mut take_text = |name: &'static str| attrs.remove(name).map(|a| text(name, a)).transpose();
    let content_type = take_text("datacontenttype")?;
    let subject = take_text("subject")?;
    let dataschema = take_text("dataschema")?;
    let partition_key = take_text("partitionkey")?;
    let correlation_id = take_text("correlationid")?;
    let causation_id = take_text("causationid")?;
    let traceparent = take_text("traceparent")?;
    let tracestate = take_text("tracestate")?;
    let dedupe_key = take_text("dedupekey")?;
    let sequence = take_text("sequence")?
        .map(|s| parse_sequence(&s))
        .transpose()?;
    let time = match attrs.remove("time") {
        Some(Attr::CeTimestamp(ts)) => {
            let nanos = i128::from(ts.seconds) * 1_000_000_000 + i128::from(ts.nanos);
            OffsetDateTime::from_unix_timestamp_nanos(nanos)
                .map_err(|err| invalid("time", err.to_string()))?
        }
        Some(Attr::CeString(s)) => parse_time(&s)?,
        Some(other) => {
            return Err(invalid(
                "time",
                format!("expected a timestamp, found {other:?}"),
            ));
        }
        None => return Err(missing("time")),
    };
    let version = match attrs.remove("eventversion") {
        None => 1,
        Some(Attr::CeInteger(v)) if v >= 1 => v as u32,
        Some(Attr::CeString(s)) => s
            .parse::<u32>()
            .ok()
            .filter(|v| *v >= 1)
            .ok_or_else(|| invalid("eventversion", format!("`{s}` is not an integer >= 1")))?,
        Some(other) => {
            return Err(invalid(
                "eventversion",
                format!("expected an integer >= 1, found {other:?}"),
            ));
        }
    };
    let data = match event.data {
        None => Vec::new(),
        Some(Data::BinaryData(bytes)) => bytes,
        Some(Data::TextData(text)) => text.into_bytes(),
        Some(Data::ProtoData(any)) => any.value,
    };
    Limits::check(limits.max_data_bytes, data.len(), "data")?;
    let extensions = attrs
        .into_iter()
        .map(|(name, attr)| {
            // Every attribute this library reads was taken above; what is left is an extension.
            if let Some(reason) = extension_name_error(&name) {
                return Err(invalid(&name, reason));
            }
            let value = match attr {
                Attr::CeBoolean(b) => ExtensionValue::Boolean(b),
                Attr::CeInteger(i) => ExtensionValue::Integer(i),
                Attr::CeBytes(b) => ExtensionValue::Binary(b),
                Attr::CeString(s) | Attr::CeUri(s) | Attr::CeUriRef(s) => ExtensionValue::String(s),
                Attr::CeTimestamp(ts) => {
                    // Nanoseconds included; a timestamp RFC 3339 cannot write is an error, not "".
                    let nanos = i128::from(ts.seconds) * 1_000_000_000 + i128::from(ts.nanos);
                    let text = OffsetDateTime::from_unix_timestamp_nanos(nanos)
                        .map_err(|err| err.to_string())
                        .and_then(|t| {
                            t.format(&time::format_description::well_known::Rfc3339)
                                .map_err(|err| err.to_string())
                        })
                        .map_err(|reason| invalid(&name, reason))?;
                    ExtensionValue::String(text)
                }
            };
            Ok((name, value))
        })
        .collect::<Result<_, DecodeError>>()?;
    Ok(Envelope {
        id,
        source: Cow::Owned(event.source),
        ty: Cow::Owned(event.r#type),
        version,
        subject,
        time,
        content_type: content_type.map_or(Cow::Borrowed(crate::codec::JSON), Cow::Owned),
        dataschema,
        partition_key,
        correlation_id,
        causation_id,
        trace: traceparent.map(|traceparent| TraceContext {
            traceparent,
            tracestate,
        }),
        dedupe_key,
        sequence,
        extensions,
        data: RawData(data),
    })
}
