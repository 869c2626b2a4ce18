//! The NATS binding's structured content mode, written at the boundary. The publisher hands the
//! transport the events it publishes in that mode already ([`prewritten`]); other records come
//! in binary mode (the Kafka binding's `ce_<attribute>` headers, the payload as the body), and in
//! structured mode the message body is the whole event in the CloudEvents JSON event format
//! instead, with only the headers the transport needs ([`encode`]).
//!
//! | record (trait side) | NATS message in structured mode |
//! |---|---|
//! | `ce_<attr>` headers | members of the JSON body (`eventversion` a number, the rest strings) |
//! | `content-type` | the body's `datacontenttype`; the header says `application/cloudevents+json` |
//! | payload | `data`, embedded as it is, when the content type is JSON (none: no `data`); else `data_base64` |
//! | other headers, key | as in binary mode ([`crate::headers`]) |
//! | — | `Nats-Msg-Id` = the `ce_id` value |
//!
//! Nothing is parsed: attribute values are written with serde_json's string escaping and a JSON
//! payload is copied in, so a JSON content type must come with JSON data (the runtime's codecs
//! write nothing else). A record that this mode could not carry so that a reader gets the same
//! event as from binary mode is left in binary mode: one without `ce_specversion: 1.0`, with an
//! attribute name that is not plain lower-case `a-z0-9` or that appears twice, a non-UTF-8
//! value, an attribute `data` or `datacontenttype`, a `content-type` that is itself a structured
//! one (`application/cloudevents...`) or appears twice, or a body that would exceed the
//! readers' default message limit (1 MiB, [`Limits::max_message_bytes`]: `data_base64` grows
//! a payload by a third).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use event_runtime::cloudevents::{Limits, STRUCTURED_JSON, is_json};

use event_runtime::transport::Headers;

const PREFIX: &str = "ce_";
const CONTENT_TYPE: &str = "content-type";
/// What the runtime's JSON codec writes: the common case, told apart without [`is_json`]'s
/// allocation.
const JSON: &str = "application/json";

/// A record in structured mode, borrowing from the record's headers.
#[derive(Debug)]
pub(crate) struct Structured<'a> {
    /// The JSON event format.
    pub(crate) body: Vec<u8>,
    /// The event id, for `Nats-Msg-Id` (when the client can carry it as a header value).
    pub(crate) id: Option<&'a str>,
    /// The record headers that are not CloudEvents attributes (besides `content-type:
    /// application/cloudevents+json`, which the wire adds).
    pub(crate) headers: Vec<(&'a str, &'a [u8])>,
}

/// A record the publisher wrote in structured mode already
/// ([`Transport::structured_records`](event_runtime::transport::Transport::structured_records)):
/// the event as the payload, `content-type: application/cloudevents+json` and the event id in
/// `ce_id`, nothing else. Returns the id for `Nats-Msg-Id` (`None` when the client could not
/// carry it); `None` for any other record.
pub(crate) fn prewritten(headers: &Headers) -> Option<Option<&str>> {
    if headers.len() != 2 {
        return None;
    }
    let mut pairs = headers.iter();
    let (a, b) = (pairs.next()?, pairs.next()?);
    let (content_type, id) = match (a.0, b.0) {
        (name, "ce_id") if name.eq_ignore_ascii_case(CONTENT_TYPE) => (a.1, b.1),
        ("ce_id", name) if name.eq_ignore_ascii_case(CONTENT_TYPE) => (b.1, a.1),
        _ => return None,
    };
    if !content_type.eq_ignore_ascii_case(STRUCTURED_JSON.as_bytes()) {
        return None;
    }
    Some(
        std::str::from_utf8(id)
            .ok()
            .filter(|id| !id.is_empty() && crate::headers::clean(id)),
    )
}

/// The attribute a record header carries (`ce_<attribute>`), if it carries one; `None` for other
/// headers. `Err` for an attribute header this mode does not write.
fn attribute(name: &str) -> Result<Option<&str>, ()> {
    if name.len() <= PREFIX.len()
        || !name.as_bytes()[..PREFIX.len()].eq_ignore_ascii_case(PREFIX.as_bytes())
    {
        // Also what binary mode's reader ignores: a header named just `ce_`.
        return Ok(None);
    }
    let attribute = &name[PREFIX.len()..];
    let plain = name.starts_with(PREFIX)
        && attribute
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !plain || attribute == "data" || attribute == "datacontenttype" {
        return Err(());
    }
    Ok(Some(attribute))
}

/// Whether `text` is a JSON number as written (no sign, no leading zero): `eventversion` is
/// written as one, as the JSON format writes integer attributes; anything else stays a string
/// (which the reader parses the same way, and rejects the same way).
fn json_integer(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 19
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text.len() == 1 || !text.starts_with('0'))
}

/// The record as a JSON-format event, or `None` when it stays in binary mode.
pub(crate) fn encode<'a>(headers: &'a Headers, payload: &[u8]) -> Option<Structured<'a>> {
    // One pass over the headers writes the attributes; the content type, which decides how the
    // data is written, comes last whatever its place. A record found unfit on the way costs the
    // body's allocation only, and it is rare (the runtime writes no such record).
    // The size to allocate: the attributes and the data as written, escapes aside (rare; the
    // buffer grows for them). Not more: an allocation past about 1 KiB is a large one for
    // glibc's malloc, which first consolidates its free lists, and the body of a typical event
    // is just under.
    let (mut size, mut base64) = (2, false);
    for (name, value) in headers.iter() {
        if name.eq_ignore_ascii_case(CONTENT_TYPE) {
            base64 = std::str::from_utf8(value).is_ok_and(|ct| ct != JSON && !is_json(ct));
            size += value.len() + 20;
        } else {
            size += name.len() + value.len() + 4;
        }
    }
    size += if base64 {
        payload.len().div_ceil(3) * 4 + 16
    } else {
        payload.len() + 8
    };
    let mut body = Vec::with_capacity(size);
    let (mut specversion, mut content_type, mut id, mut others) = (false, None, None, 0);
    body.push(b'{');
    for (index, (name, value)) in headers.iter().enumerate() {
        if name.eq_ignore_ascii_case(CONTENT_TYPE) {
            let text = std::str::from_utf8(value).ok()?;
            let structured = text.len() >= 23
                && text.as_bytes()[..23].eq_ignore_ascii_case(b"application/cloudevents");
            if structured || content_type.replace(text).is_some() {
                return None;
            }
            continue;
        }
        let Some(attribute) = attribute(name).ok()? else {
            others += 1;
            continue;
        };
        let text = std::str::from_utf8(value).ok()?;
        if attribute == "specversion" {
            if text != event_runtime::cloudevents::SPEC_VERSION {
                return None;
            }
            specversion = true;
        } else if attribute == "id" && !text.is_empty() && crate::headers::clean(text) {
            id = Some(text);
        }
        if headers.iter().take(index).any(|(other, _)| other == name) {
            return None;
        }
        if body.len() > 1 {
            body.push(b',');
        }
        body.push(b'"');
        body.extend_from_slice(attribute.as_bytes());
        body.extend_from_slice(b"\":");
        if attribute == "eventversion" && json_integer(text) {
            body.extend_from_slice(text.as_bytes());
        } else {
            // Writing a &str into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut body, text);
        }
    }
    if !specversion {
        return None;
    }
    if let Some(content_type) = content_type {
        body.extend_from_slice(b",\"datacontenttype\":");
        let _ = serde_json::to_writer(&mut body, content_type);
    }
    // No content type reads as JSON, as the readers default it.
    if content_type.is_none_or(|ct| ct == JSON || is_json(ct)) {
        // No data: no member, which the reader reads back as no data.
        if !payload.is_empty() {
            body.extend_from_slice(b",\"data\":");
            body.extend_from_slice(payload);
        }
    } else {
        body.extend_from_slice(b",\"data_base64\":\"");
        let start = body.len();
        body.resize(start + payload.len().div_ceil(3) * 4, 0);
        // The buffer was sized for the padded encoding, so this cannot fail.
        let written = BASE64
            .encode_slice(payload, &mut body[start..])
            .unwrap_or_default();
        body.truncate(start + written);
        body.push(b'"');
    }
    body.push(b'}');
    if body.len() > Limits::default().max_message_bytes {
        return None;
    }
    let rest = if others == 0 {
        Vec::new()
    } else {
        headers
            .iter()
            .filter(|(name, _)| {
                !name.eq_ignore_ascii_case(CONTENT_TYPE) && matches!(attribute(name), Ok(None))
            })
            .collect()
    };
    Some(Structured {
        body,
        id,
        headers: rest,
    })
}

#[cfg(test)]
mod tests {
    use event_runtime::cloudevents::{Limits, structured};
    use event_runtime::envelope::RawEnvelope;
    use event_runtime::error::DecodeErrorKind;
    use event_runtime::transport::{Record, decode_record};

    use super::*;

    fn header(name: &str, value: &str) -> (String, Vec<u8>) {
        (name.to_owned(), value.as_bytes().to_vec())
    }

    type List = Vec<(String, Vec<u8>)>;

    /// A record as the runtime hands it over.
    fn event(content_type: Option<&str>, extra: &[(&str, &str)]) -> List {
        let mut headers = vec![
            header("ce_specversion", "1.0"),
            header("ce_id", "0193a1c4-2b6e-7f00-8a11-22b3c4d5e6f7"),
            header("ce_source", "/meters"),
            header("ce_type", "meters.reading"),
            header("ce_time", "2026-11-26T12:00:00.123456789Z"),
            header("ce_eventversion", "3"),
            header("ce_partitionkey", "meter-7"),
            header("ce_subject", "a \"quoted\"\tline\u{1}é"),
        ];
        headers.extend(extra.iter().map(|(n, v)| header(n, v)));
        if let Some(content_type) = content_type {
            headers.push(header("content-type", content_type));
        }
        headers
    }

    fn record(headers: List, payload: Vec<u8>) -> Record {
        Record {
            topic: "t".into(),
            partition: 0,
            offset: 0,
            timestamp_ms: 1_764_158_400_250,
            key: None,
            headers: headers.into(),
            payload: payload.into(),
        }
    }

    /// [`encode`], returning what it wrote with owned headers.
    fn written(headers: &List, payload: &[u8]) -> Option<(Vec<u8>, Option<String>, List)> {
        let headers = Headers::from(headers.clone());
        encode(&headers, payload).map(|event| {
            let rest = event
                .headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), v.to_vec()))
                .collect();
            (event.body, event.id.map(str::to_owned), rest)
        })
    }

    /// The event a reader gets from the record in binary mode and from its structured form.
    fn both(
        headers: List,
        payload: &[u8],
    ) -> (RawEnvelope, RawEnvelope, (Vec<u8>, Option<String>, List)) {
        let binary = decode_record(
            &record(headers.clone(), payload.to_vec()),
            &Limits::default(),
        )
        .expect("binary mode reads");
        let written = written(&headers, payload).expect("written in structured mode");
        let structured = decode_record(
            &record(
                vec![header("content-type", "application/cloudevents+json")],
                written.0.clone(),
            ),
            &Limits::default(),
        )
        .expect("structured mode reads");
        (binary, structured, written)
    }

    #[test]
    fn a_reader_gets_the_same_event_from_either_mode() {
        let json = br#"{"meter":"meter-7","watts":[1,2.5,null],"note":"\u00e9"}"#;
        /// Content type, extra headers, payload.
        type Case<'a> = (Option<&'a str>, &'a [(&'a str, &'a str)], Vec<u8>);
        let cases: Vec<Case<'_>> = vec![
            (Some("application/json"), &[], json.to_vec()),
            // JSON by suffix, an extension, a sequence, and no payload at all.
            (
                Some("application/vnd.meter+json; charset=utf-8"),
                &[
                    ("ce_tenant", "acme"),
                    ("ce_sequence", "00000000000000000042"),
                ],
                Vec::new(),
            ),
            // No content type: JSON, as the readers default it.
            (None, &[], json.to_vec()),
            // Not JSON: base64, of every length modulo 3.
            (Some("application/protobuf"), &[], vec![0, 255, 7, 1]),
            (Some("text/plain"), &[], b"two words".to_vec()),
            (Some("application/octet-stream"), &[], vec![9; 5]),
            (Some("application/octet-stream"), &[], Vec::new()),
        ];
        for (content_type, extra, payload) in cases {
            let (binary, structured, written) = both(event(content_type, extra), &payload);
            assert_eq!(structured, binary, "{content_type:?} {extra:?}");
            assert_eq!(structured.data.0, payload);
            assert_eq!(
                written.1.as_deref(),
                Some("0193a1c4-2b6e-7f00-8a11-22b3c4d5e6f7")
            );
            assert!(written.2.is_empty());
            // The official parser of the format reads it too.
            let value: serde_json::Value = serde_json::from_slice(&written.0).unwrap();
            assert_eq!(value["specversion"], "1.0");
            assert_eq!(value["eventversion"], 3);
            assert_eq!(value["subject"], "a \"quoted\"\tline\u{1}é");
        }
        // Without `time` (optional in CloudEvents) both read the record's time.
        let mut headers = event(Some("application/json"), &[]);
        headers.retain(|(name, _)| name != "ce_time");
        let (binary, structured, _) = both(headers, json);
        assert_eq!(structured, binary);
    }

    /// An `eventversion` that is not a JSON number is written as a string, which the JSON
    /// reader parses as binary mode's does: the same version, or an error either way.
    #[test]
    fn an_odd_eventversion_reads_as_in_binary_mode() {
        for version in ["007", "0", "x", "-1", "", "99999999999999999999"] {
            let mut headers = event(Some("application/json"), &[]);
            for (name, value) in &mut headers {
                if name == "ce_eventversion" {
                    *value = version.as_bytes().to_vec();
                }
            }
            let binary =
                decode_record(&record(headers.clone(), b"{}".to_vec()), &Limits::default());
            let written = written(&headers, b"{}").unwrap();
            let structured = structured::decode(&written.0, &Limits::default());
            match (binary, structured) {
                (Ok(binary), Ok(structured)) => assert_eq!(structured, binary),
                // The JSON reader reports some as a malformed document rather than a bad
                // attribute: both are what a consumer dead-letters as `malformed`.
                (Err(binary), Err(structured)) => {
                    for err in [binary, structured] {
                        assert!(
                            matches!(
                                err.kind(),
                                DecodeErrorKind::Malformed | DecodeErrorKind::Attribute
                            ),
                            "eventversion {version:?}: {err}"
                        );
                    }
                }
                (binary, structured) => {
                    panic!("eventversion {version:?}: {binary:?} vs {structured:?}")
                }
            }
        }
    }

    #[test]
    fn a_record_the_publisher_wrote_in_structured_mode_goes_as_it_is() {
        let id = "0193a1c4-2b6e-7f00-8a11-22b3c4d5e6f7";
        let structured = header("content-type", "application/cloudevents+json");
        for headers in [
            vec![structured.clone(), header("ce_id", id)],
            vec![
                header("ce_id", id),
                header("Content-Type", "application/cloudevents+json"),
            ],
        ] {
            assert_eq!(prewritten(&headers.into()), Some(Some(id)));
        }
        // An id the client cannot carry as a header value: no `Nats-Msg-Id`, still structured.
        let headers: Headers = vec![structured.clone(), header("ce_id", " padded ")].into();
        assert_eq!(prewritten(&headers), Some(None));
        // Anything else is not one.
        for headers in [
            vec![structured.clone()],
            vec![
                structured.clone(),
                header("ce_id", id),
                header("x-more", "1"),
            ],
            vec![structured.clone(), header("ce_type", "t")],
            vec![
                header("content-type", "application/json"),
                header("ce_id", id),
            ],
            event(Some("application/json"), &[]),
        ] {
            assert_eq!(prewritten(&headers.clone().into()), None, "{headers:?}");
        }
    }

    #[test]
    fn other_headers_stay_headers() {
        let headers = event(
            Some("application/json"),
            &[("x-evt-dlq-reason", "handler"), ("ce_", "not an attribute")],
        );
        let written = written(&headers, b"1").unwrap();
        assert_eq!(
            written.2,
            [
                header("x-evt-dlq-reason", "handler"),
                header("ce_", "not an attribute"),
            ]
        );
    }

    #[test]
    fn what_structured_mode_cannot_carry_exactly_stays_in_binary_mode() {
        let mut not_utf8 = event(Some("application/json"), &[]);
        not_utf8[2].1 = vec![0xff];
        let mut twice = event(Some("application/json"), &[]);
        twice.push(header("ce_id", "another"));
        let cases: Vec<List> = vec![
            // No specversion, or another one: not a binary-mode event (the conformance kit's
            // records of bare headers, a dead letter's copy).
            vec![
                header("ce_id", "id-1"),
                header("content-type", "application/json"),
            ],
            event(Some("application/json"), &[("ce_specversion", "0.3")]),
            {
                let mut headers = event(None, &[]);
                headers[0].1 = b"0.3".to_vec();
                headers
            },
            not_utf8,
            twice,
            event(Some("application/json"), &[("CE_tenant", "acme")]),
            event(Some("application/json"), &[("ce_Tenant", "acme")]),
            event(Some("application/json"), &[("ce_ten-ant", "acme")]),
            event(Some("application/json"), &[("ce_data", "x")]),
            event(
                Some("application/json"),
                &[("ce_datacontenttype", "text/plain")],
            ),
            event(Some("application/cloudevents+json"), &[]),
            event(Some("Application/CloudEvents+Protobuf"), &[]),
            {
                let mut headers = event(Some("application/json"), &[]);
                headers.push(header("Content-Type", "application/json"));
                headers
            },
        ];
        for headers in cases {
            assert!(written(&headers, b"{}").is_none(), "{headers:?}");
        }
        // Too large once in the JSON format: a payload near the limit, base64 or not.
        let limit = Limits::default().max_message_bytes;
        let headers = event(Some("application/octet-stream"), &[]);
        assert!(written(&headers, &vec![1; limit * 3 / 4]).is_none());
        let headers = event(Some("application/json"), &[]);
        let big = format!("\"{}\"", "a".repeat(limit - 2));
        assert!(written(&headers, big.as_bytes()).is_none());
        // Just under: written.
        let headers = event(Some("application/octet-stream"), &[]);
        assert!(written(&headers, &vec![1; limit / 2]).is_some());
    }
}
