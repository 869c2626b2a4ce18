//! Bad input, one case at a time: every malformed or hostile message gives the right
//! [`DecodeError`] variant and kind, and a message that names the problem.

use std::borrow::Cow;

use event_runtime::cloudevents::binary::{self, Binding};
use event_runtime::cloudevents::{self, Limits, protobuf, structured};
use event_runtime::envelope::{ExtensionValue, RawData, RawEnvelope};
use event_runtime::error::{
    DecodeError, DecodeErrorKind, EncodeError, Format, PayloadError, UpcastError,
};
use event_runtime::{DomainEvent, Message};
use prost::Message as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

// ---------------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------------

/// A parcel was weighed; version 2 reads version 1 through a JSON upcaster.
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(context = "bad", version = 2, upcast_json(from = 1, with = grams_from_kilos))]
struct ParcelWeighed {
    #[event(key)]
    parcel: String,
    grams: u64,
    fragile: bool,
}

fn grams_from_kilos(mut v1: Value) -> Result<Value, UpcastError> {
    let object = v1
        .as_object_mut()
        .ok_or_else(|| UpcastError::new("payload is not an object"))?;
    let kilos = object
        .remove("kilos")
        .and_then(|k| k.as_u64())
        .ok_or_else(|| UpcastError::new("field `kilos` is missing or not an integer"))?;
    object.insert("grams".into(), json!(kilos * 1000));
    Ok(v1)
}

/// Version 2 with no way to read version 1.
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(context = "bad", version = 2)]
struct LabelPrinted {
    label: String,
}

/// An enum of events.
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(context = "bad")]
enum DoorEvent {
    /// Opened.
    Opened { door: String, by: String },
    /// Closed.
    Closed,
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

const ID: &str = "01938f5e-8c2a-7d4e-9b1a-3c5d7e9f1a2b";
const PARCEL: &str = "bad.parcel_weighed";

fn limits() -> Limits {
    Limits::default()
}

/// A valid structured document for a `ParcelWeighed` v2.
fn doc() -> Map<String, Value> {
    let Value::Object(map) = json!({
        "specversion": "1.0",
        "id": ID,
        "source": "/bad",
        "type": PARCEL,
        "time": "2026-11-26T10:00:00Z",
        "datacontenttype": "application/json",
        "eventversion": 2,
        "data": {"parcel": "p-1", "grams": 1200, "fragile": false},
    }) else {
        unreachable!()
    };
    map
}

fn bytes(doc: &Map<String, Value>) -> Vec<u8> {
    serde_json::to_vec(doc).unwrap()
}

fn decode_json(bytes: &[u8]) -> Result<RawEnvelope, DecodeError> {
    structured::decode(bytes, &limits())
}

fn with(key: &str, value: Value) -> Vec<u8> {
    let mut doc = doc();
    doc.insert(key.to_owned(), value);
    bytes(&doc)
}

/// A raw `ParcelWeighed` v2 envelope.
fn raw_parcel() -> RawEnvelope {
    decode_json(&bytes(&doc())).expect("the fixture is valid")
}

/// The fixture's headers as a list to edit.
fn fixture_headers(binding: Binding) -> Vec<(String, Vec<u8>)> {
    binary::encode(&raw_parcel(), binding)
        .unwrap()
        .headers
        .iter()
        .map(|(name, value)| (name.to_owned(), value.to_vec()))
        .collect()
}

fn decode_headers(
    headers: &[(String, Vec<u8>)],
    payload: &[u8],
    binding: Binding,
    limits: &Limits,
) -> Result<RawEnvelope, DecodeError> {
    binary::decode(
        headers.iter().map(|(n, v)| (n.as_str(), v.as_slice())),
        payload,
        binding,
        limits,
    )
}

fn set_header(headers: &mut Vec<(String, Vec<u8>)>, name: &str, value: &[u8]) {
    match headers.iter_mut().find(|(n, _)| n == name) {
        Some((_, v)) => *v = value.to_vec(),
        None => headers.push((name.to_owned(), value.to_vec())),
    }
}

fn without_header(binding: Binding, attribute: &str) -> Vec<(String, Vec<u8>)> {
    let name = format!("{}{attribute}", binding.prefix());
    let mut headers = fixture_headers(binding);
    let before = headers.len();
    headers.retain(|(n, _)| *n != name);
    assert_eq!(headers.len(), before - 1, "{name} was written");
    headers
}

fn assert_missing(result: Result<RawEnvelope, DecodeError>, format: Format, attribute: &str) {
    match result {
        Err(err @ DecodeError::MissingAttribute { .. }) => {
            let DecodeError::MissingAttribute {
                format: f,
                attribute: a,
            } = &err
            else {
                unreachable!()
            };
            assert_eq!((*f, *a), (format, attribute));
            assert_eq!(err.kind(), DecodeErrorKind::Attribute);
            assert!(err.to_string().contains(&format!("`{attribute}`")), "{err}");
        }
        other => panic!("expected MissingAttribute `{attribute}`, got {other:?}"),
    }
}

/// An `InvalidAttribute` naming `attribute`, whose message contains every one of `words`.
fn assert_invalid(result: Result<RawEnvelope, DecodeError>, attribute: &str, words: &[&str]) {
    match result {
        Err(err @ DecodeError::InvalidAttribute { .. }) => {
            let DecodeError::InvalidAttribute { attribute: a, .. } = &err else {
                unreachable!()
            };
            assert_eq!(a, attribute, "{err}");
            assert_eq!(err.kind(), DecodeErrorKind::Attribute);
            let text = err.to_string();
            assert!(text.contains(&format!("`{attribute}`")), "{text}");
            for word in words {
                assert!(text.contains(word), "`{word}` not in: {text}");
            }
        }
        other => panic!("expected InvalidAttribute `{attribute}`, got {other:?}"),
    }
}

/// A `Malformed` error of `format` whose message contains every one of `words`.
fn assert_malformed(result: Result<RawEnvelope, DecodeError>, format: Format, words: &[&str]) {
    match result {
        Err(err @ DecodeError::Malformed { .. }) => {
            let DecodeError::Malformed { format: f, .. } = &err else {
                unreachable!()
            };
            assert_eq!(*f, format, "{err}");
            assert_eq!(err.kind(), DecodeErrorKind::Malformed);
            let text = err.to_string();
            for word in words {
                assert!(text.contains(word), "`{word}` not in: {text}");
            }
        }
        other => panic!("expected Malformed, got {other:?}"),
    }
}

fn assert_too_large(
    result: Result<RawEnvelope, DecodeError>,
    what: &str,
    limit: usize,
    actual: usize,
) {
    match result {
        Err(err @ DecodeError::TooLarge { .. }) => {
            let DecodeError::TooLarge {
                what: w,
                limit: l,
                actual: a,
            } = &err
            else {
                unreachable!()
            };
            assert_eq!((*w, *l, *a), (what, limit, actual), "{err}");
            assert_eq!(err.kind(), DecodeErrorKind::TooLarge);
            assert!(
                err.to_string().contains(&format!(
                    "{what} is {actual} bytes, over the limit of {limit}"
                )),
                "{err}"
            );
        }
        other => panic!("expected TooLarge {what}, got {other:?}"),
    }
}

/// Mirror of the official protobuf `CloudEvent`, to write messages the library would not.
mod wire {
    use std::collections::HashMap;

    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct CloudEvent {
        #[prost(string, tag = "1")]
        pub(crate) id: String,
        #[prost(string, tag = "2")]
        pub(crate) source: String,
        #[prost(string, tag = "3")]
        pub(crate) spec_version: String,
        #[prost(string, tag = "4")]
        pub(crate) r#type: String,
        #[prost(map = "string, message", tag = "5")]
        pub(crate) attributes: HashMap<String, AttributeValue>,
        #[prost(oneof = "Data", tags = "6, 7")]
        pub(crate) data: Option<Data>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct AttributeValue {
        #[prost(oneof = "Attr", tags = "1, 2, 3, 4, 7")]
        pub(crate) attr: Option<Attr>,
    }

    #[derive(Clone, PartialEq, prost::Oneof)]
    pub(crate) enum Attr {
        #[prost(bool, tag = "1")]
        Boolean(bool),
        #[prost(int32, tag = "2")]
        Integer(i32),
        #[prost(string, tag = "3")]
        String(String),
        #[prost(bytes = "vec", tag = "4")]
        Bytes(Vec<u8>),
        #[prost(message, tag = "7")]
        Timestamp(Timestamp),
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct Timestamp {
        #[prost(int64, tag = "1")]
        pub(crate) seconds: i64,
        #[prost(int32, tag = "2")]
        pub(crate) nanos: i32,
    }

    #[derive(Clone, PartialEq, prost::Oneof)]
    pub(crate) enum Data {
        #[prost(bytes = "vec", tag = "6")]
        Binary(Vec<u8>),
        #[prost(string, tag = "7")]
        Text(String),
    }
}

/// The protobuf encoding of the fixture, as the mirror types see it.
fn proto() -> wire::CloudEvent {
    let bytes = protobuf::encode(&raw_parcel()).unwrap();
    wire::CloudEvent::decode(bytes.as_slice()).unwrap()
}

fn decode_proto(event: &wire::CloudEvent) -> Result<RawEnvelope, DecodeError> {
    protobuf::decode(&event.encode_to_vec(), &limits())
}

fn attr(attr: wire::Attr) -> wire::AttributeValue {
    wire::AttributeValue { attr: Some(attr) }
}

#[test]
fn fixtures_are_valid() {
    let raw = raw_parcel();
    assert_eq!(raw.decode::<ParcelWeighed>().unwrap().data.grams, 1200);
    for binding in [Binding::Kafka, Binding::Nats] {
        assert_eq!(
            decode_headers(&fixture_headers(binding), &raw.data.0, binding, &limits()).unwrap(),
            raw
        );
    }
    assert_eq!(decode_proto(&proto()).unwrap(), raw);
}

// ---------------------------------------------------------------------------------------------
// Structure
// ---------------------------------------------------------------------------------------------

#[test]
fn truncated_json_names_line_and_column() {
    let full = bytes(&doc());
    for cut in [0, 1, 17, full.len() / 2, full.len() - 1] {
        let result = decode_json(&full[..cut]);
        assert_malformed(
            result,
            Format::StructuredJson,
            &[
                "malformed structured JSON CloudEvents message",
                "EOF",
                &format!("line 1 column {cut}"),
            ],
        );
    }
    // Over several lines, the line is the right one.
    let pretty = serde_json::to_vec_pretty(&doc()).unwrap();
    let cut = pretty.len() - 30;
    let line = 1 + pretty[..cut].iter().filter(|b| **b == b'\n').count();
    assert!(line > 5);
    assert_malformed(
        decode_json(&pretty[..cut]),
        Format::StructuredJson,
        &[&format!("line {line} column")],
    );
}

#[test]
fn json_that_is_not_one_object_is_malformed() {
    for (input, words) in [
        (
            &b"[]"[..],
            &["invalid type: sequence", "CloudEvents JSON object"][..],
        ),
        (
            b"\"event\"",
            &["invalid type: string", "CloudEvents JSON object"],
        ),
        (b"null", &["invalid type: null"]),
        (b"", &["EOF", "line 1 column 0"]),
        (b"\xff\xfe{}", &["line 1 column 1"]),
    ] {
        assert_malformed(decode_json(input), Format::StructuredJson, words);
    }
    let mut trailing = bytes(&doc());
    trailing.extend_from_slice(b" {}");
    assert_malformed(
        decode_json(&trailing),
        Format::StructuredJson,
        &["trailing characters"],
    );
}

#[test]
fn protobuf_garbage_is_malformed() {
    let valid = proto().encode_to_vec();
    for garbage in [
        &[0xff, 0xff, 0xff, 0xff][..],
        &valid[..valid.len() - 3],
        // A string field whose length runs past the end.
        &[0x0a, 0x7f, b'a'],
        // Invalid UTF-8 in a string field.
        &[0x0a, 0x02, 0xc3, 0x28],
        // JSON is not protobuf.
        &bytes(&doc()),
    ] {
        assert_malformed(
            protobuf::decode(garbage, &limits()),
            Format::Protobuf,
            &["malformed protobuf CloudEvents message"],
        );
    }
    // Nothing at all is a message with no attributes.
    assert_missing(
        protobuf::decode(&[], &limits()),
        Format::Protobuf,
        "specversion",
    );
}

// ---------------------------------------------------------------------------------------------
// Required attributes
// ---------------------------------------------------------------------------------------------

#[test]
fn each_missing_required_attribute_is_named() {
    for attribute in ["specversion", "id", "source", "type", "time"] {
        let mut doc = doc();
        doc.remove(attribute);
        assert_missing(decode_json(&bytes(&doc)), Format::StructuredJson, attribute);

        for binding in [Binding::Kafka, Binding::Nats] {
            assert_missing(
                decode_headers(
                    &without_header(binding, attribute),
                    b"{}",
                    binding,
                    &limits(),
                ),
                Format::Binary,
                attribute,
            );
        }

        let mut event = proto();
        match attribute {
            "specversion" => event.spec_version.clear(),
            "id" => event.id.clear(),
            "source" => event.source.clear(),
            "type" => event.r#type.clear(),
            _ => assert!(event.attributes.remove(attribute).is_some()),
        }
        assert_missing(decode_proto(&event), Format::Protobuf, attribute);
    }
}

#[test]
fn empty_source_and_type_are_invalid() {
    for attribute in ["source", "type"] {
        assert_invalid(
            decode_json(&with(attribute, json!(""))),
            attribute,
            &["empty"],
        );
        for binding in [Binding::Kafka, Binding::Nats] {
            let mut headers = fixture_headers(binding);
            set_header(
                &mut headers,
                &format!("{}{attribute}", binding.prefix()),
                b"",
            );
            assert_invalid(
                decode_headers(&headers, b"{}", binding, &limits()),
                attribute,
                &["empty"],
            );
        }
    }
}

#[test]
fn specversion_0_3_is_unsupported() {
    let check = |result: Result<RawEnvelope, DecodeError>| match result {
        Err(err @ DecodeError::UnsupportedSpecVersion(_)) => {
            assert_eq!(err.kind(), DecodeErrorKind::Attribute);
            assert!(err.to_string().contains("`0.3`"), "{err}");
            assert!(err.to_string().contains("1.0"), "{err}");
        }
        other => panic!("expected UnsupportedSpecVersion, got {other:?}"),
    };
    check(decode_json(&with("specversion", json!("0.3"))));
    for binding in [Binding::Kafka, Binding::Nats] {
        let mut headers = fixture_headers(binding);
        set_header(
            &mut headers,
            &format!("{}specversion", binding.prefix()),
            b"0.3",
        );
        check(decode_headers(&headers, b"{}", binding, &limits()));
    }
    let mut event = proto();
    event.spec_version = "0.3".into();
    check(decode_proto(&event));

    // A number is not the string "1.0".
    assert_malformed(
        decode_json(&with("specversion", json!(1.0))),
        Format::StructuredJson,
        &["attribute `specversion`", "invalid type"],
    );
}

/// CloudEvents allows any non-empty string as `id` (its own example is `A234-1234-1234`): a
/// foreign producer's id is read in every format and kept exactly as written; only an empty one
/// is refused. (Before, anything but a UUID was an error, and such events were dead-lettered.)
#[test]
fn id_is_any_non_empty_string_kept_as_written() {
    for foreign in [
        "A234-1234-1234",
        "order-42",
        "01938f5e-8c2a-7d4e-9b1a-3c5d7e9f1a2",
        "01938F5E-8C2A-7D4E-9B1A-3C5D7E9F1A2B",
        "with \"quotes\" and é",
    ] {
        let raw = decode_json(&with("id", json!(foreign))).expect(foreign);
        assert_eq!(raw.id.to_string(), foreign);
        assert_eq!(raw.id.as_uuid(), None, "{foreign}");
        // Written back as it was read, in every format.
        let mut written = Vec::new();
        structured::encode(&raw, &mut written).unwrap();
        let again = decode_json(&written).expect("round trip");
        assert_eq!(again.id.to_string(), foreign);
        for binding in [Binding::Kafka, Binding::Nats] {
            let mut headers = fixture_headers(binding);
            set_header(
                &mut headers,
                &format!("{}id", binding.prefix()),
                foreign.as_bytes(),
            );
            let raw = decode_headers(&headers, b"{}", binding, &limits()).expect(foreign);
            assert_eq!(raw.id.to_string(), foreign);
        }
        let mut event = proto();
        event.id = foreign.into();
        assert_eq!(decode_proto(&event).expect(foreign).id.to_string(), foreign);
    }
    let words = ["must not be empty"];
    assert_invalid(decode_json(&with("id", json!(""))), "id", &words);
    for binding in [Binding::Kafka, Binding::Nats] {
        let mut headers = fixture_headers(binding);
        set_header(&mut headers, &format!("{}id", binding.prefix()), b"");
        assert_invalid(
            decode_headers(&headers, b"{}", binding, &limits()),
            "id",
            &words,
        );
    }
}

#[test]
fn time_must_be_rfc_3339() {
    for bad in [
        "yesterday",
        "2026-11-26",
        "2026-11-26T10:00:00",
        "2026-13-01T10:00:00Z",
        "2026-02-30T10:00:00Z",
        "2026-11-26T25:00:00Z",
        "2026-11-26T10:00:00+24:00",
        "1764151200",
    ] {
        let words = [&format!("`{bad}` is not an RFC 3339 timestamp")[..]];
        assert_invalid(decode_json(&with("time", json!(bad))), "time", &words);
        for binding in [Binding::Kafka, Binding::Nats] {
            let mut headers = fixture_headers(binding);
            set_header(
                &mut headers,
                &format!("{}time", binding.prefix()),
                bad.as_bytes(),
            );
            assert_invalid(
                decode_headers(&headers, b"{}", binding, &limits()),
                "time",
                &words,
            );
        }
        let mut event = proto();
        event
            .attributes
            .insert("time".into(), attr(wire::Attr::String(bad.into())));
        assert_invalid(decode_proto(&event), "time", &words);
    }
    // JSON: a number is not a time.
    assert_malformed(
        decode_json(&with("time", json!(1_764_151_200))),
        Format::StructuredJson,
        &["attribute `time`", "invalid type: integer"],
    );
    // Protobuf: the wrong attribute type, and a timestamp out of range.
    let mut event = proto();
    event
        .attributes
        .insert("time".into(), attr(wire::Attr::Boolean(true)));
    assert_invalid(decode_proto(&event), "time", &["expected a timestamp"]);
    event.attributes.insert(
        "time".into(),
        attr(wire::Attr::Timestamp(wire::Timestamp {
            seconds: i64::MAX,
            nanos: 0,
        })),
    );
    assert_invalid(decode_proto(&event), "time", &["range"]);
}

// ---------------------------------------------------------------------------------------------
// eventversion
// ---------------------------------------------------------------------------------------------

/// In structured JSON a bad `eventversion` fails while the document is read, so it is `Malformed`;
/// the other formats read it as an attribute, so it is `InvalidAttribute`.
#[test]
fn eventversion_must_be_a_positive_integer() {
    for (value, words) in [
        (json!(0), &["eventversion 0 is not in 1..=4294967295"][..]),
        (json!(-1), &["eventversion -1 is not in 1..=4294967295"]),
        (
            json!(4_294_967_296u64),
            &["eventversion 4294967296 is not in"],
        ),
        (json!("0"), &["eventversion 0 is not in"]),
        (json!("abc"), &["eventversion `abc` is not an integer"]),
        (json!("-1"), &["eventversion `-1` is not an integer"]),
        (json!(""), &["eventversion `` is not an integer"]),
    ] {
        assert_malformed(
            decode_json(&with("eventversion", value)),
            Format::StructuredJson,
            words,
        );
    }
    // A number in a string is what binary-mode peers write, and is accepted.
    assert_eq!(
        decode_json(&with("eventversion", json!("7")))
            .unwrap()
            .version,
        7
    );

    for bad in ["0", "-1", "abc", "", "1.5", "4294967296"] {
        for binding in [Binding::Kafka, Binding::Nats] {
            let mut headers = fixture_headers(binding);
            set_header(
                &mut headers,
                &format!("{}eventversion", binding.prefix()),
                bad.as_bytes(),
            );
            assert_invalid(
                decode_headers(&headers, b"{}", binding, &limits()),
                "eventversion",
                &[&format!("`{bad}` is not an integer >= 1")],
            );
        }
    }

    for (value, words) in [
        (wire::Attr::Integer(0), "found the integer 0"),
        (wire::Attr::Integer(-1), "found the integer -1"),
        (
            wire::Attr::String("abc".into()),
            "`abc` is not an integer >= 1",
        ),
        (wire::Attr::String("0".into()), "`0` is not an integer >= 1"),
        (wire::Attr::Boolean(true), "found the boolean true"),
    ] {
        let mut event = proto();
        event.attributes.insert("eventversion".into(), attr(value));
        assert_invalid(decode_proto(&event), "eventversion", &[words]);
    }
}

// ---------------------------------------------------------------------------------------------
// Duplicates, data, extensions
// ---------------------------------------------------------------------------------------------

#[test]
fn duplicate_json_attributes_are_malformed() {
    let original = String::from_utf8(bytes(&doc())).unwrap();
    for (key, value) in [
        ("specversion", "\"1.0\""),
        ("id", &format!("\"{ID}\"")[..]),
        ("source", "\"/other\""),
        ("type", "\"bad.other\""),
        ("time", "\"2026-11-26T10:00:00Z\""),
        ("eventversion", "2"),
        ("data", "{}"),
        ("subject", "\"s\""),
    ] {
        // Inserted at the front: the second occurrence is the one in the original document.
        let mut text = original.clone();
        text.insert_str(1, &format!("\"{key}\":{value},"));
        if key == "subject" {
            text.insert_str(1, "\"subject\":\"first\",");
        }
        assert_malformed(
            decode_json(text.as_bytes()),
            Format::StructuredJson,
            &[&format!("duplicate attribute `{key}`")],
        );
    }
    let mut text = original;
    text.insert_str(1, "\"ext\":1,\"ext\":2,");
    assert_malformed(
        decode_json(text.as_bytes()),
        Format::StructuredJson,
        &["duplicate attribute `ext`"],
    );
}

#[test]
fn both_data_and_data_base64_are_malformed() {
    assert_malformed(
        decode_json(&with("data_base64", json!("e30="))),
        Format::StructuredJson,
        &["both `data` and `data_base64` are present"],
    );
    let mut doc = doc();
    doc.remove("data");
    doc.insert("data_base64".into(), json!("not base64!"));
    assert_invalid(decode_json(&bytes(&doc)), "data_base64", &["Invalid"]);
}

#[test]
fn an_event_without_data_reencodes() {
    let mut doc = doc();
    doc.remove("data");
    let raw = decode_json(&bytes(&doc)).unwrap();
    assert!(raw.data.0.is_empty());
    let mut json = Vec::new();
    structured::encode(&raw, &mut json).unwrap();
    let written: Value = serde_json::from_slice(&json).unwrap();
    assert!(written.get("data").is_none(), "{written}");
    assert_eq!(decode_json(&json).unwrap(), raw);
    // Reading it as a type is a payload error, not a success with made-up data.
    let err = raw.decode::<ParcelWeighed>().unwrap_err();
    assert_eq!(err.kind(), DecodeErrorKind::Payload, "{err}");
}

#[test]
fn invalid_extension_names_are_refused() {
    for name in [
        "Ext",
        "ext_1",
        "ext-1",
        "ext.1",
        "éxt",
        "data_base64x",
        "ext 1",
    ] {
        assert_malformed(
            decode_json(&with(name, json!("v"))),
            Format::StructuredJson,
            &[
                &format!("`{name}` is not a valid CloudEvents attribute name")[..],
                "a-z and 0-9 only",
            ],
        );
    }
    for (binding, name) in [
        (Binding::Kafka, "ce_ext_1"),
        (Binding::Kafka, "ce_ext-1"),
        (Binding::Nats, "ce-ext-1"),
        (Binding::Nats, "ce-ext_1"),
        (Binding::Nats, "ce-ext.1"),
    ] {
        let mut headers = fixture_headers(binding);
        headers.push((name.into(), b"v".to_vec()));
        assert_invalid(
            decode_headers(&headers, b"{}", binding, &limits()),
            name,
            &["a-z and 0-9 only"],
        );
    }
    // Header names are case-insensitive: `ce_Ext` is the extension `ext`.
    let mut headers = fixture_headers(Binding::Kafka);
    headers.push(("CE_Ext".into(), b"v".to_vec()));
    let raw = decode_headers(&headers, b"{}", Binding::Kafka, &limits()).unwrap();
    assert_eq!(
        raw.extensions.get("ext"),
        Some(&ExtensionValue::String("v".into()))
    );

    for name in ["Ext", "ext-1", "", "x\":\"y"] {
        let mut event = proto();
        event
            .attributes
            .insert(name.into(), attr(wire::Attr::String("v".into())));
        assert_invalid(decode_proto(&event), name, &["a-z and 0-9 only"]);
    }
}

#[test]
fn extensions_cannot_take_the_name_of_an_attribute() {
    // `data` in binary mode, and the required attributes inside the protobuf attribute map, would
    // be written twice by the other formats.
    for binding in [Binding::Kafka, Binding::Nats] {
        let name = format!("{}data", binding.prefix());
        let mut headers = fixture_headers(binding);
        headers.push((name.clone(), b"{}".to_vec()));
        assert_invalid(
            decode_headers(&headers, b"{}", binding, &limits()),
            &name,
            &["names an attribute of its own"],
        );
    }
    for name in ["id", "source", "specversion", "type", "data"] {
        let mut event = proto();
        event
            .attributes
            .insert(name.into(), attr(wire::Attr::String("x".into())));
        assert_invalid(
            decode_proto(&event),
            name,
            &["names an attribute of its own"],
        );
    }
}

#[test]
fn extensions_with_bad_names_are_not_written() {
    // Nothing a producer puts in `extensions` can smuggle an attribute into a message.
    for name in [
        "subject\":\"spoofed\",\"x",
        "Ext",
        "",
        "time",
        "eventversion",
        "data",
    ] {
        let mut raw = raw_parcel();
        raw.extensions
            .insert(name.into(), ExtensionValue::String("v".into()));
        let check = |result: Result<(), EncodeError>, format: &str| match result {
            Err(EncodeError::InvalidAttribute { attribute, .. }) => {
                assert_eq!(attribute, name, "{format}")
            }
            other => panic!("{format}: expected InvalidAttribute `{name}`, got {other:?}"),
        };
        check(structured::encode(&raw, &mut Vec::new()), "json");
        check(protobuf::encode(&raw).map(drop), "protobuf");
        check(binary::encode(&raw, Binding::Kafka).map(drop), "kafka");
        let typed = raw.decode::<ParcelWeighed>().unwrap();
        check(cloudevents::to_json(&typed).map(drop), "typed json");
    }
}

#[test]
fn extension_values_json_cannot_carry_are_malformed() {
    for (value, words) in [
        (
            json!(1.5),
            &["extension `ext`", "invalid type: floating point"][..],
        ),
        (json!({"a": 1}), &["extension `ext`", "invalid type: map"]),
        (json!([1]), &["extension `ext`", "invalid type: sequence"]),
        (json!(null), &["extension `ext`", "invalid type: null"]),
        (
            json!(2_147_483_648u64),
            &["extension `ext`", "32-bit range"],
        ),
        (
            json!(-2_147_483_649i64),
            &["extension `ext`", "32-bit range"],
        ),
    ] {
        assert_malformed(
            decode_json(&with("ext", value)),
            Format::StructuredJson,
            words,
        );
    }
    for key in [
        "subject",
        "dataschema",
        "partitionkey",
        "sequence",
        "traceparent",
    ] {
        assert_malformed(
            decode_json(&with(key, json!(5))),
            Format::StructuredJson,
            &[&format!("attribute `{key}`")[..], "invalid type: integer"],
        );
    }
    for bad in ["-1", "x", "18446744073709551616", ""] {
        assert_invalid(
            decode_json(&with("sequence", json!(bad))),
            "sequence",
            &[&format!("`{bad}` is not an unsigned integer")],
        );
    }
}

#[test]
fn protobuf_timestamp_extensions_keep_nanoseconds() {
    let mut event = proto();
    event.attributes.insert(
        "seenat".into(),
        attr(wire::Attr::Timestamp(wire::Timestamp {
            seconds: 1_764_151_200,
            nanos: 123_456_789,
        })),
    );
    let raw = decode_proto(&event).unwrap();
    assert_eq!(
        raw.extensions.get("seenat"),
        Some(&ExtensionValue::String(
            "2025-11-26T10:00:00.123456789Z".into()
        ))
    );
    event.attributes.insert(
        "seenat".into(),
        attr(wire::Attr::Timestamp(wire::Timestamp {
            seconds: i64::MAX,
            nanos: 0,
        })),
    );
    assert_invalid(decode_proto(&event), "seenat", &["range"]);
}

#[test]
fn a_tracestate_without_traceparent_is_dropped_by_every_format() {
    let json = decode_json(&with("tracestate", json!("vendor=1"))).unwrap();
    let mut event = proto();
    event.attributes.insert(
        "tracestate".into(),
        attr(wire::Attr::String("vendor=1".into())),
    );
    let proto = decode_proto(&event).unwrap();
    let mut headers = fixture_headers(Binding::Kafka);
    headers.push(("ce_tracestate".into(), b"vendor=1".to_vec()));
    let binary = decode_headers(&headers, b"{}", Binding::Kafka, &limits()).unwrap();
    for raw in [json, proto, binary] {
        assert_eq!(raw.trace, None);
        assert!(raw.extensions.is_empty(), "{:?}", raw.extensions);
    }
}

// ---------------------------------------------------------------------------------------------
// Binary-mode headers
// ---------------------------------------------------------------------------------------------

#[test]
fn non_utf8_header_values_are_invalid() {
    for binding in [Binding::Kafka, Binding::Nats] {
        for attribute in ["subject", "id", "myext"] {
            let name = format!("{}{attribute}", binding.prefix());
            let mut headers = fixture_headers(binding);
            set_header(&mut headers, &name, b"\xff\xfeabc");
            assert_invalid(
                decode_headers(&headers, b"{}", binding, &limits()),
                &name,
                &["header value is not UTF-8"],
            );
        }
        let mut headers = fixture_headers(binding);
        set_header(&mut headers, "content-type", b"application/\xc3\x28");
        assert_invalid(
            decode_headers(&headers, b"{}", binding, &limits()),
            "content-type",
            &["header value is not UTF-8"],
        );
        // Headers of other protocols are not read at all.
        let mut headers = headers_for_other(binding);
        headers.push(("traceid".into(), b"\xff".to_vec()));
        decode_headers(&headers, b"{}", binding, &limits()).unwrap();
    }
}

fn headers_for_other(binding: Binding) -> Vec<(String, Vec<u8>)> {
    let mut all = fixture_headers(binding);
    // The other binding's prefix is not this binding's attribute.
    let other = match binding {
        Binding::Kafka => "ce-subject",
        Binding::Nats => "ce_subject",
    };
    all.push((other.into(), b"\xff".to_vec()));
    all
}

#[test]
fn duplicated_headers_are_invalid() {
    for binding in [Binding::Kafka, Binding::Nats] {
        let prefix = binding.prefix();
        for (first, second) in [
            (format!("{prefix}id"), format!("{prefix}id")),
            (
                format!("{prefix}type"),
                format!("{}TYPE", prefix.to_uppercase()),
            ),
            (format!("{prefix}myext"), format!("{prefix}MyExt")),
            ("content-type".to_owned(), "Content-Type".to_owned()),
        ] {
            let mut headers = fixture_headers(binding);
            headers.retain(|(n, _)| !n.eq_ignore_ascii_case(&first));
            headers.push((first.clone(), b"a".to_vec()));
            headers.push((second.clone(), b"b".to_vec()));
            assert_invalid(
                decode_headers(&headers, b"{}", binding, &limits()),
                &second,
                &["header appears twice"],
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------------------------

#[test]
fn oversize_structured_messages_are_refused_before_parsing() {
    let tight = Limits {
        max_message_bytes: 100,
        ..Limits::default()
    };
    // Not even JSON: the size is checked first.
    assert_too_large(
        structured::decode(&[b'x'; 101], &tight),
        "structured message",
        100,
        101,
    );
    // At the limit it is parsed (and is not JSON).
    assert_malformed(
        structured::decode(&[b'x'; 100], &tight),
        Format::StructuredJson,
        &["expected value"],
    );

    // Data over its own limit, in a message under the message limit.
    let data_limit = Limits {
        max_data_bytes: 16,
        ..Limits::default()
    };
    let big = json!({"parcel": "p-1", "grams": 1, "fragile": true});
    let size = serde_json::to_vec(&big).unwrap().len();
    assert_too_large(
        structured::decode(&with("data", big), &data_limit),
        "data",
        16,
        size,
    );
    // data_base64 is measured decoded.
    let mut doc = doc();
    doc.remove("data");
    doc.insert("data_base64".into(), json!("AAAAAAAAAAAAAAAAAAAAAAAA"));
    assert_too_large(
        structured::decode(&bytes(&doc), &data_limit),
        "data",
        16,
        18,
    );
}

#[test]
fn oversize_protobuf_messages_are_refused_before_parsing() {
    let tight = Limits {
        max_message_bytes: 64,
        ..Limits::default()
    };
    assert_too_large(
        protobuf::decode(&[0xff; 65], &tight),
        "protobuf message",
        64,
        65,
    );
    let mut event = proto();
    event.data = Some(wire::Data::Binary(vec![7; 40]));
    let data_limit = Limits {
        max_data_bytes: 32,
        ..Limits::default()
    };
    assert_too_large(
        protobuf::decode(&event.encode_to_vec(), &data_limit),
        "data",
        32,
        40,
    );
}

#[test]
fn oversize_binary_messages_are_refused_before_parsing() {
    let tight = Limits {
        max_data_bytes: 8,
        max_headers: 4,
        max_header_bytes: 64,
        ..Limits::default()
    };
    // The payload is measured before any header is read: these headers are garbage.
    let garbage = vec![("ce_id".to_owned(), b"\xff".to_vec())];
    assert_too_large(
        decode_headers(&garbage, &[0; 9], Binding::Kafka, &tight),
        "payload",
        8,
        9,
    );
    // Header count: the fifth header is refused before it is looked at, and no header after it
    // is even asked for.
    let mut count = 0;
    let headers = std::iter::from_fn(|| {
        count += 1;
        assert!(count <= 5, "read past the header limit");
        Some(("x-other", &b"v"[..]))
    });
    match binary::decode(headers, b"", Binding::Kafka, &tight) {
        Err(DecodeError::TooLarge {
            what: "header count",
            limit: 4,
            actual: 5,
        }) => {}
        other => panic!("expected TooLarge header count, got {other:?}"),
    }
    // Header bytes: names and values add up.
    let big = vec![("x-other".to_owned(), vec![b'v'; 60])];
    assert_too_large(
        decode_headers(&big, b"", Binding::Kafka, &tight),
        "headers",
        64,
        67,
    );
    // The defaults refuse a header set a real message never needs.
    let mut headers = fixture_headers(Binding::Nats);
    let n = headers.len();
    headers.extend((0..64).map(|i| (format!("x-{i}"), Vec::new())));
    match decode_headers(&headers, b"{}", Binding::Nats, &Limits::default()) {
        Err(err @ DecodeError::TooLarge { .. }) => {
            assert!(
                err.to_string().contains("header count is 65"),
                "{err} ({n})"
            )
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    let mut headers = fixture_headers(Binding::Nats);
    headers.push(("ce-big".into(), vec![b'a'; 16 << 10]));
    match decode_headers(&headers, b"{}", Binding::Nats, &Limits::default()) {
        Err(err) => assert_eq!(err.kind(), DecodeErrorKind::TooLarge, "{err}"),
        Ok(_) => panic!("16 KiB of headers were accepted"),
    }
}

// ---------------------------------------------------------------------------------------------
// Typed decoding
// ---------------------------------------------------------------------------------------------

fn typed(ty: &str, version: u32, data: Value) -> RawEnvelope {
    let mut raw = raw_parcel();
    raw.ty = Cow::Owned(ty.to_owned());
    raw.version = version;
    raw.data = RawData(serde_json::to_vec(&data).unwrap());
    raw
}

#[test]
fn a_future_version_is_never_partially_decoded() {
    let raw = typed(
        PARCEL,
        3,
        json!({"parcel": "p-1", "grams": 5, "fragile": true}),
    );
    // Its payload would decode as v2, but v3 may mean something else.
    assert!(serde_json::from_slice::<ParcelWeighed>(&raw.data.0).is_ok());
    for result in [
        raw.decode::<ParcelWeighed>(),
        cloudevents::from_json::<ParcelWeighed>(&json_of(&raw), &limits()),
        cloudevents::from_protobuf::<ParcelWeighed>(&protobuf::encode(&raw).unwrap(), &limits()),
    ] {
        match result {
            Err(
                err @ DecodeError::FutureVersion {
                    version: 3,
                    newest_known: 2,
                    ..
                },
            ) => {
                assert_eq!(err.kind(), DecodeErrorKind::FutureVersion);
                let text = err.to_string();
                assert!(text.contains(&format!("`{PARCEL}` version 3")), "{text}");
                assert!(
                    text.contains("newest version this consumer knows (2)"),
                    "{text}"
                );
            }
            other => panic!("expected FutureVersion, got {other:?}"),
        }
    }
    let raw = typed("bad.closed", 2, json!(null));
    assert_eq!(
        raw.decode::<DoorEvent>().unwrap_err().kind(),
        DecodeErrorKind::FutureVersion
    );
}

fn json_of(raw: &RawEnvelope) -> Vec<u8> {
    let mut out = Vec::new();
    structured::encode(raw, &mut out).unwrap();
    out
}

#[test]
fn unknown_types_are_named() {
    for ty in [
        "bad.parcel_lost",
        "",
        "bad.parcel_weighed ",
        "BAD.PARCEL_WEIGHED",
    ] {
        let raw = typed(ty, 2, json!({}));
        match raw.decode::<ParcelWeighed>() {
            Err(err @ DecodeError::UnknownType { .. }) => {
                assert_eq!(err.kind(), DecodeErrorKind::UnknownType);
                let text = err.to_string();
                assert!(text.contains(&format!("event type `{ty}`")), "{text}");
                assert!(text.contains("ParcelWeighed"), "{text}");
            }
            other => panic!("expected UnknownType, got {other:?}"),
        }
    }
    // An enum: a type none of its variants has.
    let raw = typed("bad.knocked", 1, json!({}));
    match raw.decode::<DoorEvent>() {
        Err(err @ DecodeError::UnknownType { .. }) => {
            assert!(err.to_string().contains("`bad.knocked`"), "{err}");
            assert!(err.to_string().contains("DoorEvent"), "{err}");
        }
        other => panic!("expected UnknownType, got {other:?}"),
    }
}

/// A `Payload` error: the event, the version and the codec's message, which contains `words`.
fn assert_payload(
    result: Result<impl std::fmt::Debug, DecodeError>,
    ty: &str,
    version: u32,
    words: &[&str],
) {
    match result {
        Err(err @ DecodeError::Payload { .. }) => {
            assert_eq!(err.kind(), DecodeErrorKind::Payload);
            let DecodeError::Payload {
                event,
                version: v,
                source,
            } = &err
            else {
                unreachable!()
            };
            assert_eq!((event.as_str(), *v), (ty, version));
            assert!(matches!(source, PayloadError::Json(_)), "{source:?}");
            let text = err.to_string();
            assert!(
                text.starts_with(&format!(
                    "payload of `{ty}` version {version} does not decode: "
                )),
                "{text}"
            );
            for word in words {
                assert!(text.contains(word), "`{word}` not in: {text}");
            }
        }
        other => panic!("expected Payload, got {other:?}"),
    }
}

/// serde_json names the field when it is missing or unknown, and otherwise gives the type it
/// found, the type it expected and the position just after the bad value.
#[test]
fn wrong_payload_field_types_are_payload_errors() {
    let data = json!({"parcel": "p-1", "grams": "heavy", "fragile": false});
    let column = serde_json::to_string(&data)
        .unwrap()
        .find("\"heavy\"")
        .unwrap()
        + 7;
    assert_payload(
        typed(PARCEL, 2, data).decode::<ParcelWeighed>(),
        PARCEL,
        2,
        &[
            "invalid type: string \"heavy\", expected u64",
            &format!("line 1 column {column}"),
        ],
    );
    assert_payload(
        typed(PARCEL, 2, json!({"parcel": "p-1", "fragile": false})).decode::<ParcelWeighed>(),
        PARCEL,
        2,
        &["missing field `grams`"],
    );
    assert_payload(
        typed(
            PARCEL,
            2,
            json!({"parcel": "p-1", "grams": -5, "fragile": false}),
        )
        .decode::<ParcelWeighed>(),
        PARCEL,
        2,
        &["invalid value: integer `-5`, expected u64"],
    );
    assert_payload(
        typed(PARCEL, 2, json!("p-1")).decode::<ParcelWeighed>(),
        PARCEL,
        2,
        &["invalid type: string \"p-1\", expected struct ParcelWeighed"],
    );
    // An enum variant's payload.
    assert_payload(
        typed("bad.opened", 1, json!({"door": 1, "by": "x"})).decode::<DoorEvent>(),
        "bad.opened",
        1,
        &["invalid type: integer `1`, expected a string"],
    );
    assert_payload(
        typed("bad.closed", 1, json!({"x": 1})).decode::<DoorEvent>(),
        "bad.closed",
        1,
        &["invalid type: map, expected unit"],
    );
    // Data that is not JSON at all, through a format.
    let mut raw = raw_parcel();
    raw.content_type = Cow::Borrowed("application/octet-stream");
    raw.data = RawData(b"\x00\x01not json".to_vec());
    let result = cloudevents::from_json::<ParcelWeighed>(&json_of(&raw), &limits());
    assert_payload(result, PARCEL, 2, &["line 1 column 1"]);
}

#[test]
fn old_payloads_fail_in_their_own_version() {
    // v1 through the JSON upcaster: unreadable JSON is a payload error at version 1...
    let mut raw = typed(PARCEL, 1, json!(null));
    raw.data = RawData(b"{\"parcel\":".to_vec());
    assert_payload(raw.decode::<ParcelWeighed>(), PARCEL, 1, &["EOF"]);
    // ...a v1 payload without the v1 field is the upcaster's error, naming the field...
    let err = typed(PARCEL, 1, json!({"parcel": "p-1", "fragile": true}))
        .decode::<ParcelWeighed>()
        .unwrap_err();
    assert_eq!(err.kind(), DecodeErrorKind::Upcast);
    assert!(matches!(err, DecodeError::Upcast { from: 1, .. }));
    assert!(
        err.to_string().contains("field `kilos` is missing"),
        "{err}"
    );
    // ...and what the upcaster produced that the current type rejects is a payload error at the
    // current version.
    assert_payload(
        typed(
            PARCEL,
            1,
            json!({"parcel": "p-1", "kilos": 2, "fragile": "yes"}),
        )
        .decode::<ParcelWeighed>(),
        PARCEL,
        2,
        &["invalid type: string \"yes\", expected a boolean"],
    );
    assert_eq!(
        typed(
            PARCEL,
            1,
            json!({"parcel": "p-1", "kilos": 2, "fragile": true})
        )
        .decode::<ParcelWeighed>()
        .unwrap()
        .data
        .grams,
        2000
    );
    // A version older than the chain.
    let name = LabelPrinted::DESCRIPTORS[0].name;
    match typed(name, 1, json!({"label": "x"})).decode::<LabelPrinted>() {
        Err(err @ DecodeError::NoUpcaster { .. }) => {
            assert_eq!(err.kind(), DecodeErrorKind::Upcast);
            assert!(
                err.to_string()
                    .contains("version 1 cannot be read: the upcaster chain starts at version 2"),
                "{err}"
            );
        }
        other => panic!("expected NoUpcaster, got {other:?}"),
    }
}
