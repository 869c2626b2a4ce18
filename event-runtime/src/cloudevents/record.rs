//! A stored record read as a CloudEvent, in whichever content mode its producer chose: what the
//! consumer, replay filters and the CLI all do with a record of any engine.

use time::OffsetDateTime;

use super::binary::{self, Binding};
use super::{Limits, protobuf, structured};
use crate::envelope::RawEnvelope;
use crate::error::{DecodeError, Format};
use crate::transport::{CORRUPT_HEADERS, Record};

/// Reads a record as a CloudEvent: in binary content mode (`ce_` headers, the Kafka binding's
/// names, which every engine stores) or, when its `content-type` is
/// `application/cloudevents+json` or `application/cloudevents+protobuf`, in structured content
/// mode (the whole event in the payload, as foreign producers may write it). An event without
/// `time` (optional in CloudEvents, required by [`crate::Envelope`]) takes the record's timestamp
/// (the append time; on Kafka the producer's timestamp), unless the record has none. The record
/// is read once, whatever the mode.
///
/// # Errors
///
/// [`DecodeError::Malformed`] for a record whose headers could not be read back, or in a
/// structured mode this library does not read, and every error of the format's decoder
/// ([`binary::decode`], [`structured::decode`], [`protobuf::decode`]).
pub fn decode_record(record: &Record, limits: &Limits) -> Result<RawEnvelope, DecodeError> {
    decode_record_hop(record, limits).0
}

/// The previous hop's trace context in a record's protocol headers: `traceparent` and
/// `tracestate`, as they are (unchecked).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Hop<'a> {
    pub(crate) traceparent: Option<&'a [u8]>,
    pub(crate) tracestate: Option<&'a [u8]>,
}

/// [`decode_record`], also giving the record's [`Hop`] headers, found in the same pass.
pub(crate) fn decode_record_hop<'r>(
    record: &'r Record,
    limits: &Limits,
) -> (Result<RawEnvelope, DecodeError>, Hop<'r>) {
    // One pass over the names for what decides how to read the rest, and the hop's context.
    let (mut corrupt, mut content_type) = (None, None);
    let mut hop = Hop::default();
    for (name, value) in record.headers.raw_iter() {
        if corrupt.is_none() && name == CORRUPT_HEADERS.as_bytes() {
            corrupt = Some(value);
        } else if content_type.is_none() && name.eq_ignore_ascii_case(b"content-type") {
            content_type = Some(value);
        } else if hop.traceparent.is_none() && name.eq_ignore_ascii_case(b"traceparent") {
            hop.traceparent = Some(value);
        } else if hop.tracestate.is_none() && name.eq_ignore_ascii_case(b"tracestate") {
            hop.tracestate = Some(value);
        }
    }
    (decode_with(record, limits, corrupt, content_type), hop)
}

/// [`decode_record`] once the first pass found the record's `corrupt` marker and `content_type`.
fn decode_with(
    record: &Record,
    limits: &Limits,
    corrupt: Option<&[u8]>,
    content_type: Option<&[u8]>,
) -> Result<RawEnvelope, DecodeError> {
    if let Some(reason) = corrupt {
        return Err(DecodeError::Malformed {
            format: Format::Binary,
            reason: format!("corrupt record: {}", String::from_utf8_lossy(reason)),
        });
    }
    let log_time = (record.timestamp_ms > 0)
        .then(|| {
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(record.timestamp_ms) * 1_000_000)
                .ok()
        })
        .flatten();
    // Structured content mode (the Kafka and NATS bindings, 3.2): the whole event is the
    // payload, and the content type says its format.
    match content_type.and_then(structured_media) {
        Some(Structured::Json) => structured::decode_at(&record.payload, limits, log_time),
        Some(Structured::Protobuf) => protobuf::decode_at(&record.payload, limits, log_time),
        Some(Structured::Other(other)) => Err(DecodeError::Malformed {
            format: Format::Binary,
            reason: format!(
                "content type `{other}`: only application/cloudevents+json and \
                 application/cloudevents+protobuf are read in structured mode"
            ),
        }),
        None => binary::decode_at(
            record.headers.raw_iter(),
            &record.payload,
            Binding::Kafka,
            limits,
            log_time,
        ),
    }
}

/// A structured content mode.
enum Structured {
    Json,
    Protobuf,
    /// Another `application/cloudevents...` media type, lower-cased, without parameters.
    Other(String),
}

/// The structured mode of a record whose `content-type` (`value`) starts with
/// `application/cloudevents`; `None` in binary mode. Binary records, the common case on the
/// consume path, are told apart without allocating.
fn structured_media(value: &[u8]) -> Option<Structured> {
    const PREFIX: &[u8] = b"application/cloudevents";
    if value.len() < PREFIX.len() || !value[..PREFIX.len()].eq_ignore_ascii_case(PREFIX) {
        return None;
    }
    let value = String::from_utf8_lossy(value).to_ascii_lowercase();
    let essence = value.split(';').next().unwrap_or_default().trim();
    Some(match essence {
        super::STRUCTURED_JSON => Structured::Json,
        super::STRUCTURED_PROTOBUF => Structured::Protobuf,
        other => Structured::Other(other.to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::decode_record;
    use crate::cloudevents::pb::CloudEvent;
    use crate::cloudevents::pb::cloud_event::cloud_event_attribute_value::Attr;
    use crate::cloudevents::pb::cloud_event::{CloudEventAttributeValue, Data};
    use crate::cloudevents::{Limits, STRUCTURED_PROTOBUF};
    use crate::transport::Record;

    fn record(payload: Vec<u8>, timestamp_ms: i64) -> Record {
        Record {
            topic: "t".into(),
            partition: 0,
            offset: 0,
            timestamp_ms,
            key: None,
            headers: [(
                "Content-Type",
                format!("{STRUCTURED_PROTOBUF}; charset=binary"),
            )]
            .into_iter()
            .collect(),
            payload: payload.into(),
        }
    }

    /// The protobuf event format without `time` (the other modes are in tests/tests/interop.rs):
    /// the append time, in one pass; without a record time, the missing attribute is named.
    #[test]
    fn a_protobuf_event_without_time_takes_the_append_time() {
        let event = CloudEvent {
            id: "0193a1c4-2b6e-7f00-8a11-22b3c4d5e6fb".into(),
            source: "/x".into(),
            spec_version: "1.0".into(),
            r#type: "shipping.parcel_dispatched".into(),
            attributes: [(
                "subject".to_owned(),
                CloudEventAttributeValue {
                    attr: Some(Attr::CeString("p-9".into())),
                },
            )]
            .into(),
            data: Some(Data::TextData("{\"a\":1}".into())),
        };
        let raw = decode_record(
            &record(event.encode_to_vec(), 1_764_158_400_250),
            &Limits::default(),
        )
        .expect("read with the append time");
        assert_eq!(raw.time.unix_timestamp_nanos(), 1_764_158_400_250_000_000);
        assert_eq!(raw.subject.as_deref(), Some("p-9"));
        assert_eq!(raw.data.0, b"{\"a\":1}");
        let err = decode_record(&record(event.encode_to_vec(), 0), &Limits::default())
            .expect_err("no time at all");
        assert!(err.to_string().contains("time"), "{err}");
    }

    #[test]
    fn other_structured_media_types_are_refused_by_name() {
        let mut rec = record(b"{}".to_vec(), 1);
        rec.headers = [("Content-Type", "application/cloudevents-batch+json")]
            .into_iter()
            .collect();
        let err = decode_record(&rec, &Limits::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("application/cloudevents-batch+json"), "{err}");
    }
}
