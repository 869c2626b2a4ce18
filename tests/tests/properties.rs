//! Property tests of the wire formats:
//!
//! - every encoding (structured JSON, protobuf, binary mode for Kafka and NATS) round-trips
//!   arbitrary payloads and arbitrary attribute values, typed and raw;
//! - every upcast chain gives what applying its functions by hand gives;
//! - no input makes a decoder panic, every failure is a typed [`DecodeError`] of the kind the
//!   decoder can produce, and whatever a decoder accepts can be written again, in its own format
//!   and in the others, and reads back the same;
//! - garbage `data` in a valid envelope is a [`DecodeErrorKind::Payload`] error.
//!
//! About `time`: all three formats keep nanoseconds. Structured JSON and binary mode write RFC
//! 3339 text and keep the UTC offset; the protobuf format writes a `Timestamp` (seconds and nanos
//! since the epoch), so it keeps the instant and reads it back in UTC. `Envelope`'s equality
//! compares instants, so the tests also check the offset on its own.
//!
//! The tests crate does not depend on `time`, so times are made by letting the library parse
//! RFC 3339 text that the strategy builds.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt::{Debug, Display};

use event_runtime::cloudevents::binary::{self, Binding};
use event_runtime::cloudevents::{self, Limits, protobuf, structured};
use event_runtime::envelope::{ExtensionValue, RawData, RawEnvelope, TraceContext};
use event_runtime::error::{DecodeError, DecodeErrorKind, EncodeError, UpcastError};
use event_runtime::{Command, DomainEvent, Envelope, Message};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

// ---------------------------------------------------------------------------------------------
// Events under test
// ---------------------------------------------------------------------------------------------

/// A struct event with every kind of field serde_json writes.
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(context = "props")]
struct ProfileUpdated {
    #[event(key, dedupe)]
    user: String,
    display_name: String,
    age: u8,
    balance: i64,
    visits: u64,
    nickname: Option<String>,
    tags: Vec<String>,
    scores: Vec<i32>,
    settings: BTreeMap<String, String>,
    address: Option<Address>,
    verified: bool,
}

/// A nested value.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Address {
    street: String,
    zip: Option<u32>,
}

/// An enum event with struct, tuple, newtype and unit variants; `Polygon` is at version 3 and
/// reads versions 1 and 2 through JSON-level upcasters.
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(context = "props")]
enum Drawing {
    /// A circle.
    Circle {
        #[event(key)]
        canvas: String,
        radius: u32,
        label: Option<String>,
    },
    /// v1 had parallel `xs`/`ys` arrays, v2 a list of points, v3 added `closed`.
    #[event(
        version = 3,
        upcast_json(from = 1, with = polygon_v1_to_v2),
        upcast_json(from = 2, with = polygon_v2_to_v3)
    )]
    Polygon {
        #[event(key)]
        canvas: String,
        points: Vec<(i32, i32)>,
        closed: bool,
    },
    /// A tuple variant.
    Pair(#[event(key)] String, u8),
    /// A newtype variant.
    Note(String),
    /// A unit variant.
    Cleared,
}

fn polygon_v1_to_v2(mut v1: Value) -> Result<Value, UpcastError> {
    let object = v1
        .as_object_mut()
        .ok_or_else(|| UpcastError::new("polygon v1 payload is not an object"))?;
    let xs: Vec<i32> = serde_json::from_value(
        object
            .remove("xs")
            .ok_or_else(|| UpcastError::new("field `xs` is missing"))?,
    )?;
    let ys: Vec<i32> = serde_json::from_value(
        object
            .remove("ys")
            .ok_or_else(|| UpcastError::new("field `ys` is missing"))?,
    )?;
    let points: Vec<(i32, i32)> = xs.into_iter().zip(ys).collect();
    object.insert("points".into(), serde_json::to_value(points)?);
    Ok(v1)
}

fn polygon_v2_to_v3(mut v2: Value) -> Result<Value, UpcastError> {
    let object = v2
        .as_object_mut()
        .ok_or_else(|| UpcastError::new("polygon v2 payload is not an object"))?;
    let corners = object
        .get("points")
        .and_then(Value::as_array)
        .ok_or_else(|| UpcastError::new("field `points` is not an array"))?
        .len();
    object.insert("closed".into(), Value::Bool(corners >= 3));
    Ok(v2)
}

/// A struct chain through Rust types: v1 -> v2 by `From`, v2 -> v3 by `upcast_with`.
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(context = "props", version = 1)]
struct AccountOpenedV1 {
    #[event(key)]
    account: String,
    owner: String,
    limit: u32,
}

/// v2: the limit is in cents.
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(context = "props", version = 2, upcast_from = AccountOpenedV1)]
struct AccountOpenedV2 {
    #[event(key)]
    account: String,
    owner: String,
    limit_cents: u64,
}

impl From<AccountOpenedV1> for AccountOpenedV2 {
    fn from(v1: AccountOpenedV1) -> Self {
        AccountOpenedV2 {
            account: v1.account,
            owner: v1.owner,
            limit_cents: u64::from(v1.limit) * 100,
        }
    }
}

/// v3: joint accounts and a currency.
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(
    context = "props",
    version = 3,
    upcast_from = AccountOpenedV2,
    upcast_with = account_v2_to_v3
)]
struct AccountOpened {
    #[event(key, dedupe)]
    account: String,
    owners: Vec<String>,
    limit_cents: u64,
    #[serde(default)]
    currency: Option<String>,
}

fn account_v2_to_v3(v2: AccountOpenedV2) -> AccountOpened {
    AccountOpened {
        account: v2.account,
        owners: vec![v2.owner],
        limit_cents: v2.limit_cents,
        currency: None,
    }
}

/// A mixed chain: version 1 has no Rust type any more and is lifted at the JSON level into v2,
/// which `From` lifts into v3.
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(
    context = "props",
    version = 2,
    upcast_json(from = 1, with = temperature_v1_to_v2)
)]
struct TemperatureSetV2 {
    #[event(key)]
    room: String,
    tenths_celsius: i32,
}

fn temperature_v1_to_v2(mut v1: Value) -> Result<Value, UpcastError> {
    let object = v1
        .as_object_mut()
        .ok_or_else(|| UpcastError::new("payload is not an object"))?;
    let celsius = object
        .remove("celsius")
        .and_then(|c| c.as_i64())
        .ok_or_else(|| UpcastError::new("field `celsius` is missing or not an integer"))?;
    object.insert("tenths_celsius".into(), json!(celsius * 10));
    Ok(v1)
}

/// v3: millidegrees and who set it.
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(context = "props", version = 3, upcast_from = TemperatureSetV2)]
struct TemperatureSet {
    #[event(key)]
    room: String,
    millicelsius: i64,
    #[serde(default)]
    set_by: Option<String>,
}

impl From<TemperatureSetV2> for TemperatureSet {
    fn from(v2: TemperatureSetV2) -> Self {
        TemperatureSet {
            room: v2.room,
            millicelsius: i64::from(v2.tenths_celsius) * 100,
            set_by: None,
        }
    }
}

/// A protobuf-coded event.
#[derive(DomainEvent, Clone, PartialEq, prost::Message)]
#[event(context = "props", codec = protobuf)]
struct ReadingTaken {
    #[prost(string, tag = "1")]
    #[event(key)]
    sensor: String,
    #[prost(sint64, tag = "2")]
    value: i64,
    #[prost(bytes = "vec", tag = "3")]
    raw: Vec<u8>,
    #[prost(string, repeated, tag = "4")]
    labels: Vec<String>,
    #[prost(uint32, optional, tag = "5")]
    quality: Option<u32>,
}

/// A command.
#[derive(Command, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[command(context = "props")]
struct ArchiveCanvas {
    #[command(key)]
    canvas: String,
    reason: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn fail(err: impl Display) -> TestCaseError {
    TestCaseError::fail(err.to_string())
}

/// Every attribute name this library reads itself, and `data`: none of them is an extension.
const KNOWN: &[&str] = &[
    "specversion",
    "id",
    "source",
    "type",
    "subject",
    "time",
    "datacontenttype",
    "dataschema",
    "eventversion",
    "partitionkey",
    "correlationid",
    "causationid",
    "traceparent",
    "tracestate",
    "dedupekey",
    "sequence",
    "data",
];

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// An envelope around no payload, parsed by the library: the way to get its time type.
fn envelope_at(time: &str) -> RawEnvelope {
    let doc = json!({
        "specversion": "1.0",
        "id": "01938f5e-8c2a-7d4e-9b1a-3c5d7e9f1a2b",
        "source": "/props",
        "type": "props.none",
        "time": time,
        "datacontenttype": "application/octet-stream",
    });
    structured::decode(&serde_json::to_vec(&doc).unwrap(), &Limits::default())
        .unwrap_or_else(|err| panic!("`{time}` should parse: {err}"))
}

/// How structured JSON carries an extension value: binary as base64 text.
fn json_extension(value: &ExtensionValue) -> ExtensionValue {
    match value {
        ExtensionValue::Binary(bytes) => ExtensionValue::String(base64(bytes)),
        other => other.clone(),
    }
}

/// How binary mode carries an extension value: every value as header text.
fn header_extension(value: &ExtensionValue) -> ExtensionValue {
    ExtensionValue::String(match value {
        ExtensionValue::String(s) => s.clone(),
        ExtensionValue::Integer(i) => i.to_string(),
        ExtensionValue::Boolean(b) => b.to_string(),
        ExtensionValue::Binary(bytes) => base64(bytes),
    })
}

fn same_extension(value: &ExtensionValue) -> ExtensionValue {
    value.clone()
}

/// `envelope` as a format that maps extension values with `map` reads it back.
fn as_read<M: Clone>(
    envelope: &Envelope<M>,
    map: fn(&ExtensionValue) -> ExtensionValue,
) -> Envelope<M> {
    let mut out = envelope.with_data(envelope.data.clone());
    out.extensions = envelope
        .extensions
        .iter()
        .map(|(name, value)| (name.clone(), map(value)))
        .collect();
    out
}

fn binary_headers(message: &binary::BinaryMessage) -> impl Iterator<Item = (&str, &[u8])> {
    message.headers.iter()
}

/// Checks what every successful typed round trip must give.
fn check_typed_round_trips<M>(sent: &Envelope<M>) -> Result<(), TestCaseError>
where
    M: Message + Clone + PartialEq + Debug,
{
    let limits = Limits::default();

    let json = cloudevents::to_json(sent).map_err(fail)?;
    let doc: Value = serde_json::from_slice(&json).map_err(fail)?;
    prop_assert_eq!(
        doc.get("data").is_some(),
        cloudevents::is_json(&sent.content_type),
        "JSON payloads are embedded, others are base64: {}",
        doc
    );
    let got = cloudevents::from_json::<M>(&json, &limits).map_err(fail)?;
    prop_assert_eq!(&got, &as_read(sent, json_extension));
    prop_assert_eq!(got.time.offset(), sent.time.offset());

    let proto = cloudevents::to_protobuf(sent).map_err(fail)?;
    let got = cloudevents::from_protobuf::<M>(&proto, &limits).map_err(fail)?;
    prop_assert_eq!(&got, &as_read(sent, same_extension));
    prop_assert!(got.time.offset().is_utc());
    prop_assert_eq!(
        got.time.unix_timestamp_nanos(),
        sent.time.unix_timestamp_nanos()
    );

    for binding in [Binding::Kafka, Binding::Nats] {
        let message = binary::to_binary(sent, binding).map_err(fail)?;
        prop_assert_eq!(
            message.key.as_deref(),
            sent.partition_key.as_deref().map(str::as_bytes)
        );
        for (name, _) in &message.headers {
            prop_assert!(
                name.starts_with(binding.prefix()) || name == binary::CONTENT_TYPE_HEADER,
                "{}",
                name
            );
        }
        let raw = binary::decode(binary_headers(&message), &message.payload, binding, &limits)
            .map_err(fail)?;
        let got = raw.decode::<M>().map_err(fail)?;
        prop_assert_eq!(&got, &as_read(sent, header_extension));
        prop_assert_eq!(got.time.offset(), sent.time.offset());
    }
    Ok(())
}

/// Encodes a raw envelope in every format and decodes each.
fn decode_everywhere(raw: &RawEnvelope) -> Result<Vec<(&'static str, RawEnvelope)>, TestCaseError> {
    let limits = Limits::default();
    let mut out = Vec::new();
    let mut json = Vec::new();
    structured::encode(raw, &mut json).map_err(fail)?;
    out.push(("json", structured::decode(&json, &limits).map_err(fail)?));
    let proto = protobuf::encode(raw).map_err(fail)?;
    out.push(("protobuf", protobuf::decode(&proto, &limits).map_err(fail)?));
    for (name, binding) in [("kafka", Binding::Kafka), ("nats", Binding::Nats)] {
        let message = binary::encode(raw, binding).map_err(fail)?;
        out.push((
            name,
            binary::decode(binary_headers(&message), &message.payload, binding, &limits)
                .map_err(fail)?,
        ));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

/// Text heavy in what JSON and headers must escape or carry: quotes, backslashes, control
/// characters, line separators, non-ASCII and astral characters.
fn text() -> impl Strategy<Value = String> {
    vec(
        prop_oneof![
            3 => any::<char>(),
            2 => prop::char::range('a', 'z'),
            2 => prop::sample::select(vec![
                '"', '\\', '\n', '\r', '\t', '\u{0}', '\u{1f}', '\u{7f}', '\u{2028}', '\u{feff}',
                '\u{fffd}', 'é', 'ß', '中', '😀', '/', '{', '}', ':', ',', ' ',
            ]),
        ],
        0..16,
    )
    .prop_map(String::from_iter)
}

fn nonempty_text() -> impl Strategy<Value = String> {
    text().prop_filter("non-empty", |s| !s.is_empty())
}

/// An RFC 3339 timestamp with 0 to 9 fraction digits and `Z` or a whole-minute offset. Years stay
/// within 1..=9998 so that the instant is inside the representable range at any offset.
#[derive(Clone, Debug)]
struct TimeSpec {
    text: String,
    nanosecond: u32,
    offset_seconds: i32,
}

fn time_spec() -> impl Strategy<Value = TimeSpec> {
    (
        (1u32..=9998, 1u32..=12, 1u32..=28),
        (0u32..24, 0u32..60, 0u32..60),
        (0usize..=9, any::<u32>()),
        prop::option::of(-(23 * 60 + 59)..=(23 * 60 + 59i32)),
    )
        .prop_map(
            |((year, month, day), (hour, minute, second), (digits, fraction), offset)| {
                let scale = 10u32.pow(digits as u32);
                let fraction = if digits == 0 { 0 } else { fraction % scale };
                let mut text =
                    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}");
                if digits > 0 {
                    text.push_str(&format!(".{fraction:0digits$}"));
                }
                match offset {
                    None => text.push('Z'),
                    Some(minutes) => {
                        let sign = if minutes < 0 { '-' } else { '+' };
                        let abs = minutes.unsigned_abs();
                        text.push_str(&format!("{sign}{:02}:{:02}", abs / 60, abs % 60));
                    }
                }
                TimeSpec {
                    text,
                    nanosecond: fraction * (1_000_000_000 / scale),
                    offset_seconds: offset.unwrap_or(0) * 60,
                }
            },
        )
}

fn extension_name() -> impl Strategy<Value = String> {
    "[a-z0-9]{1,12}".prop_filter("not an attribute this library reads", |name| {
        !KNOWN.contains(&name.as_str())
    })
}

fn extension_value() -> impl Strategy<Value = ExtensionValue> {
    prop_oneof![
        text().prop_map(ExtensionValue::String),
        any::<i32>().prop_map(ExtensionValue::Integer),
        any::<bool>().prop_map(ExtensionValue::Boolean),
        vec(any::<u8>(), 0..12).prop_map(ExtensionValue::Binary),
    ]
}

/// Every context attribute but `type`, `eventversion`, `datacontenttype` and `data`, which the
/// message decides.
#[derive(Clone, Debug)]
struct Attrs {
    id: u128,
    source: String,
    time: TimeSpec,
    subject: Option<String>,
    dataschema: Option<String>,
    partition_key: Option<String>,
    correlation_id: Option<String>,
    causation_id: Option<String>,
    trace: Option<TraceContext>,
    dedupe_key: Option<String>,
    sequence: Option<u64>,
    extensions: BTreeMap<String, ExtensionValue>,
}

impl Attrs {
    fn apply<M>(&self, mut envelope: Envelope<M>) -> Envelope<M> {
        envelope.id = Uuid::from_u128(self.id).into();
        envelope.source = Cow::Owned(self.source.clone());
        envelope.time = envelope_at(&self.time.text).time;
        envelope.subject = self.subject.clone();
        envelope.dataschema = self.dataschema.clone();
        envelope.partition_key = self.partition_key.clone();
        envelope.correlation_id = self.correlation_id.clone();
        envelope.causation_id = self.causation_id.clone();
        envelope.trace = self.trace.clone();
        envelope.dedupe_key = self.dedupe_key.clone();
        envelope.sequence = self.sequence;
        envelope.extensions = self.extensions.clone();
        envelope
    }
}

fn attrs() -> impl Strategy<Value = Attrs> {
    let opt = || prop::option::of(text());
    (
        (any::<u128>(), nonempty_text(), time_spec()),
        (opt(), opt(), opt(), opt(), opt(), opt()),
        (
            prop::option::of((text(), prop::option::of(text()))),
            prop::option::of(any::<u64>()),
            btree_map(extension_name(), extension_value(), 0..5),
        ),
    )
        .prop_map(
            |(
                (id, source, time),
                (subject, dataschema, partition_key, correlation_id, causation_id, dedupe_key),
                (trace, sequence, extensions),
            )| Attrs {
                id,
                source,
                time,
                subject,
                dataschema,
                partition_key,
                correlation_id,
                causation_id,
                trace: trace.map(|(traceparent, tracestate)| TraceContext {
                    traceparent,
                    tracestate,
                }),
                dedupe_key,
                sequence,
                extensions,
            },
        )
}

fn profile() -> impl Strategy<Value = ProfileUpdated> {
    (
        (text(), text(), any::<u8>(), any::<i64>(), any::<u64>()),
        (
            prop::option::of(text()),
            vec(text(), 0..4),
            vec(any::<i32>(), 0..6),
            btree_map(text(), text(), 0..4),
            prop::option::of((text(), prop::option::of(any::<u32>()))),
            any::<bool>(),
        ),
    )
        .prop_map(
            |(
                (user, display_name, age, balance, visits),
                (nickname, tags, scores, settings, address, verified),
            )| ProfileUpdated {
                user,
                display_name,
                age,
                balance,
                visits,
                nickname,
                tags,
                scores,
                settings,
                address: address.map(|(street, zip)| Address { street, zip }),
                verified,
            },
        )
}

fn drawing() -> impl Strategy<Value = Drawing> {
    prop_oneof![
        (text(), any::<u32>(), prop::option::of(text())).prop_map(|(canvas, radius, label)| {
            Drawing::Circle {
                canvas,
                radius,
                label,
            }
        }),
        (text(), vec(any::<(i32, i32)>(), 0..6), any::<bool>()).prop_map(
            |(canvas, points, closed)| Drawing::Polygon {
                canvas,
                points,
                closed
            }
        ),
        (text(), any::<u8>()).prop_map(|(a, b)| Drawing::Pair(a, b)),
        text().prop_map(Drawing::Note),
        Just(Drawing::Cleared),
    ]
}

fn reading() -> impl Strategy<Value = ReadingTaken> {
    (
        text(),
        any::<i64>(),
        vec(any::<u8>(), 0..16),
        vec(text(), 0..3),
        prop::option::of(any::<u32>()),
    )
        .prop_map(|(sensor, value, raw, labels, quality)| ReadingTaken {
            sensor,
            value,
            raw,
            labels,
            quality,
        })
}

/// JSON values with integers, floats, strings, arrays and objects.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        text().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            btree_map(text(), inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A content type and data it can carry in every format: JSON text (or no data) for JSON types,
/// any bytes otherwise.
fn content_and_data() -> impl Strategy<Value = (String, Vec<u8>)> {
    let json_type = prop::sample::select(vec![
        "application/json",
        "application/json; charset=utf-8",
        "text/json",
        "application/vnd.props+json",
        "Application/JSON",
    ]);
    let other_type = prop_oneof![
        prop::sample::select(vec![
            "application/octet-stream",
            "application/protobuf",
            "text/plain",
            "text/plain; charset=utf-8",
            "image/png",
        ])
        .prop_map(str::to_owned),
        text().prop_filter("not JSON", |t| !cloudevents::is_json(t)),
    ];
    prop_oneof![
        (json_type.clone(), json_value(), any::<bool>()).prop_map(|(ty, value, pretty)| {
            let data = if pretty {
                serde_json::to_vec_pretty(&value)
            } else {
                serde_json::to_vec(&value)
            };
            (ty.to_owned(), data.unwrap())
        }),
        // No data at all.
        (json_type.clone(), Just(Vec::new())).prop_map(|(ty, data)| (ty.to_owned(), data)),
        (other_type.clone(), vec(any::<u8>(), 0..48)),
        (other_type, text()).prop_map(|(ty, text)| (ty, text.into_bytes())),
    ]
}

// ---------------------------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    #[test]
    fn time_keeps_nanoseconds_and_offset(spec in time_spec(), attrs in attrs()) {
        let mut attrs = attrs;
        attrs.time = spec.clone();
        let sent = attrs.apply(Envelope::event(Drawing::Cleared));
        // The strategy really makes sub-second times and offsets.
        prop_assert_eq!(sent.time.nanosecond(), spec.nanosecond);
        prop_assert_eq!(sent.time.offset().whole_seconds(), spec.offset_seconds);
        let raw = sent.to_raw().map_err(fail)?;
        for (format, got) in decode_everywhere(&raw)? {
            prop_assert_eq!(got.time.unix_timestamp_nanos(), sent.time.unix_timestamp_nanos(), "{}", format);
            let offset = if format == "protobuf" { 0 } else { spec.offset_seconds };
            prop_assert_eq!(got.time.offset().whole_seconds(), offset, "{}", format);
        }
    }

    #[test]
    fn struct_events_round_trip(event in profile(), attrs in attrs()) {
        check_typed_round_trips(&attrs.apply(Envelope::event(event)))?;
    }

    #[test]
    fn enum_events_round_trip(event in drawing(), attrs in attrs()) {
        let sent = attrs.apply(Envelope::event(event));
        prop_assert_eq!(sent.ty.as_ref(), sent.data.descriptor().name);
        check_typed_round_trips(&sent)?;
    }

    #[test]
    fn protobuf_payload_events_round_trip(event in reading(), attrs in attrs()) {
        let sent = attrs.apply(Envelope::event(event));
        prop_assert_eq!(sent.content_type.as_ref(), "application/protobuf");
        check_typed_round_trips(&sent)?;
    }

    #[test]
    fn commands_round_trip(canvas in text(), reason in prop::option::of(text()), attrs in attrs()) {
        check_typed_round_trips(&attrs.apply(Envelope::command(ArchiveCanvas { canvas, reason })))?;
    }

    #[test]
    fn current_chain_heads_round_trip(
        account in (text(), vec(text(), 0..3), any::<u64>(), prop::option::of(text())),
        room in (text(), any::<i64>(), prop::option::of(text())),
        attrs in attrs(),
    ) {
        let (account, owners, limit_cents, currency) = account;
        check_typed_round_trips(&attrs.apply(Envelope::event(AccountOpened {
            account,
            owners,
            limit_cents,
            currency,
        })))?;
        let (room, millicelsius, set_by) = room;
        check_typed_round_trips(&attrs.apply(Envelope::event(TemperatureSet {
            room,
            millicelsius,
            set_by,
        })))?;
    }

    /// Raw envelopes with any type, version, content type and data round-trip in every format.
    #[test]
    fn raw_envelopes_round_trip(
        attrs in attrs(),
        ty in nonempty_text(),
        version in 1..=i32::MAX as u32,
        (content_type, data) in content_and_data(),
    ) {
        let mut sent = attrs.apply(Envelope::event(Drawing::Cleared).with_data(RawData(data)));
        sent.ty = Cow::Owned(ty);
        sent.version = version;
        sent.content_type = Cow::Owned(content_type);
        for (format, got) in decode_everywhere(&sent)? {
            prop_assert_eq!(got, as_read(&sent, read_map(format)), "{}", format);
        }
    }

    /// The protobuf format's integer is 32 bits: bigger versions are refused when encoding, and
    /// the other formats carry them.
    #[test]
    fn versions_beyond_i32_are_refused_by_protobuf_only(version in (i32::MAX as u32 + 1)..=u32::MAX) {
        let mut sent = Envelope::event(Drawing::Cleared).to_raw().map_err(fail)?;
        sent.version = version;
        match protobuf::encode(&sent) {
            Err(EncodeError::InvalidAttribute { attribute, .. }) => prop_assert_eq!(attribute, "eventversion"),
            other => prop_assert!(false, "expected InvalidAttribute, got {:?}", other),
        }
        let mut json = Vec::new();
        structured::encode(&sent, &mut json).map_err(fail)?;
        prop_assert_eq!(structured::decode(&json, &Limits::default()).map_err(fail)?.version, version);
        let message = binary::encode(&sent, Binding::Kafka).map_err(fail)?;
        let got = binary::decode(binary_headers(&message), &message.payload, Binding::Kafka, &Limits::default())
            .map_err(fail)?;
        prop_assert_eq!(got.version, version);
    }
}

// ---------------------------------------------------------------------------------------------
// Upcast chains
// ---------------------------------------------------------------------------------------------

/// `raw` with `ty`, `version` and JSON `data`.
fn raw_with(attrs: &Attrs, ty: &str, version: u32, data: &Value) -> RawEnvelope {
    let mut raw = attrs.apply(
        Envelope::event(Drawing::Cleared).with_data(RawData(serde_json::to_vec(data).unwrap())),
    );
    raw.ty = Cow::Owned(ty.to_owned());
    raw.version = version;
    raw.content_type = Cow::Borrowed("application/json");
    raw
}

/// How `format` reads extension values back.
fn read_map(format: &str) -> fn(&ExtensionValue) -> ExtensionValue {
    match format {
        "json" => json_extension,
        "protobuf" => same_extension,
        _ => header_extension,
    }
}

/// Decodes `raw` as `M` after a trip through every format; checks that the envelope now says
/// `target` and that nothing but `data` and `version` changed.
fn lifted_everywhere<M>(raw: &RawEnvelope, target: u32) -> Result<Vec<M>, TestCaseError>
where
    M: Message + Debug,
{
    let mut out = Vec::new();
    for (format, got) in decode_everywhere(raw)? {
        let typed = got
            .decode::<M>()
            .map_err(|err| fail(format!("{format}: {err}")))?;
        prop_assert_eq!(typed.version, target, "{}", format);
        let mut attributes = typed.with_data(());
        attributes.version = raw.version;
        prop_assert_eq!(
            attributes,
            as_read(&raw.with_data(()), read_map(format)),
            "{}",
            format
        );
        out.push(typed.data);
    }
    Ok(out)
}

fn account_v1() -> impl Strategy<Value = AccountOpenedV1> {
    (text(), text(), any::<u32>()).prop_map(|(account, owner, limit)| AccountOpenedV1 {
        account,
        owner,
        limit,
    })
}

proptest! {
    #![proptest_config(config())]

    /// v1 -> v2 (`From`) -> v3 (`upcast_with`), from typed v1 envelopes in every format.
    #[test]
    fn struct_chain_lifts_v1(v1 in account_v1(), attrs in attrs()) {
        let sent = attrs.apply(Envelope::event(v1.clone()));
        prop_assert_eq!(sent.version, 1);
        let by_hand = account_v2_to_v3(AccountOpenedV2::from(v1.clone()));
        // And without the chain's functions: what the versions mean.
        prop_assert_eq!(&by_hand, &AccountOpened {
            account: v1.account.clone(),
            owners: vec![v1.owner.clone()],
            limit_cents: u64::from(v1.limit) * 100,
            currency: None,
        });
        let raw = sent.to_raw().map_err(fail)?;
        for current in lifted_everywhere::<AccountOpened>(&raw, 3)? {
            prop_assert_eq!(&current, &by_hand);
        }
        for middle in lifted_everywhere::<AccountOpenedV2>(&raw, 2)? {
            prop_assert_eq!(&middle, &AccountOpenedV2::from(v1.clone()));
        }
        let typed = cloudevents::from_json::<AccountOpened>(&cloudevents::to_json(&sent).map_err(fail)?, &Limits::default())
            .map_err(fail)?;
        prop_assert_eq!(typed.version, 3);
    }

    /// v2 -> v3 only.
    #[test]
    fn struct_chain_lifts_v2(v1 in account_v1(), attrs in attrs()) {
        let v2 = AccountOpenedV2::from(v1);
        let raw = attrs.apply(Envelope::event(v2.clone())).to_raw().map_err(fail)?;
        prop_assert_eq!(raw.version, 2);
        for current in lifted_everywhere::<AccountOpened>(&raw, 3)? {
            prop_assert_eq!(&current, &account_v2_to_v3(v2.clone()));
        }
        // A v3 payload is from the future for a v2 consumer.
        let v3 = attrs.apply(Envelope::event(account_v2_to_v3(v2))).to_raw().map_err(fail)?;
        let err = v3.decode::<AccountOpenedV2>().unwrap_err();
        prop_assert_eq!(err.kind(), DecodeErrorKind::FutureVersion);
    }

    /// JSON-level v1 -> v2, then `From` v2 -> v3.
    #[test]
    fn mixed_chain_lifts_v1(room in text(), celsius in any::<i16>(), attrs in attrs()) {
        let v1 = json!({ "room": room, "celsius": celsius });
        let name = TemperatureSet::DESCRIPTORS[0].name;
        let raw = raw_with(&attrs, name, 1, &v1);
        let v2: TemperatureSetV2 = serde_json::from_value(temperature_v1_to_v2(v1).map_err(fail)?).map_err(fail)?;
        prop_assert_eq!(&v2, &TemperatureSetV2 { room: room.clone(), tenths_celsius: i32::from(celsius) * 10 });
        let by_hand = TemperatureSet::from(v2.clone());
        prop_assert_eq!(by_hand.millicelsius, i64::from(celsius) * 1000);
        for current in lifted_everywhere::<TemperatureSet>(&raw, 3)? {
            prop_assert_eq!(&current, &by_hand);
        }
        for middle in lifted_everywhere::<TemperatureSetV2>(&raw, 2)? {
            prop_assert_eq!(&middle, &v2);
        }
    }

    /// The enum variant's JSON-level chain: v1 and v2 payloads lift to v3.
    #[test]
    fn enum_variant_chain_lifts_v1_and_v2(
        canvas in text(),
        xs in vec(any::<i32>(), 0..6),
        ys in vec(any::<i32>(), 0..6),
        extra in prop::option::of(json_value()),
        attrs in attrs(),
    ) {
        let name = Drawing::DESCRIPTORS[1].name;
        prop_assert_eq!(Drawing::DESCRIPTORS[1].version, 3);
        let mut v1 = json!({ "canvas": canvas, "xs": xs, "ys": ys });
        if let Some(extra) = extra {
            // Unknown fields pass through the upcasters and are ignored at the end.
            v1["unknown"] = extra;
        }
        let v2 = polygon_v1_to_v2(v1.clone()).map_err(fail)?;
        let v3 = polygon_v2_to_v3(v2.clone()).map_err(fail)?;
        let by_hand: Drawing = serde_json::from_value(json!({ "Polygon": v3 })).map_err(fail)?;
        // What the versions mean, without the upcasters.
        let points: Vec<(i32, i32)> = xs.iter().copied().zip(ys.iter().copied()).collect();
        let closed = points.len() >= 3;
        prop_assert_eq!(&by_hand, &Drawing::Polygon { canvas: canvas.clone(), points, closed });

        for current in lifted_everywhere::<Drawing>(&raw_with(&attrs, name, 1, &v1), 3)? {
            prop_assert_eq!(&current, &by_hand);
        }
        let from_v2: Drawing = serde_json::from_value(json!({ "Polygon": polygon_v2_to_v3(v2.clone()).map_err(fail)? }))
            .map_err(fail)?;
        for current in lifted_everywhere::<Drawing>(&raw_with(&attrs, name, 2, &v2), 3)? {
            prop_assert_eq!(&current, &from_v2);
        }
    }

    /// A failing JSON upcaster is an `Upcast` error naming the field and the step.
    #[test]
    fn enum_variant_chain_reports_upcaster_failures(canvas in text(), xs in vec(any::<i32>(), 0..4), attrs in attrs()) {
        let name = Drawing::DESCRIPTORS[1].name;
        let raw = raw_with(&attrs, name, 1, &json!({ "canvas": canvas, "xs": xs }));
        match raw.decode::<Drawing>() {
            Err(DecodeError::Upcast { from: 1, source, .. }) => prop_assert!(source.to_string().contains("`ys`")),
            other => prop_assert!(false, "expected an upcast error, got {:?}", other),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Garbage data in a valid envelope
// ---------------------------------------------------------------------------------------------

fn garbage() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..64),
        json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        text().prop_map(String::into_bytes),
    ]
}

/// Decodes `data` as `M` at `version`: either the codec accepts the bytes or it is a `Payload`
/// error (or, for JSON the upcasters see, an `Upcast` error).
fn check_garbage<M>(
    attrs: &Attrs,
    ty: &str,
    version: u32,
    content_type: &'static str,
    data: &[u8],
    codec_accepts: impl Fn(&[u8]) -> Option<M>,
    upcasts: bool,
) -> Result<(), TestCaseError>
where
    M: Message + PartialEq + Debug,
{
    let mut raw = attrs.apply(Envelope::event(Drawing::Cleared).with_data(RawData(data.to_vec())));
    raw.ty = Cow::Owned(ty.to_owned());
    raw.version = version;
    raw.content_type = Cow::Borrowed(content_type);
    match (raw.decode::<M>(), codec_accepts(data)) {
        (Ok(got), Some(expected)) => prop_assert_eq!(got.data, expected),
        (Ok(got), None) => prop_assert!(false, "accepted garbage as {:?}", got.data),
        (Err(err), _) => {
            let json = serde_json::from_slice::<Value>(data).is_ok();
            let kind = err.kind();
            prop_assert!(
                kind == DecodeErrorKind::Payload
                    || (upcasts && json && kind == DecodeErrorKind::Upcast),
                "{:?}: {}",
                kind,
                err
            );
            if let DecodeError::Payload {
                event, version: v, ..
            } = &err
            {
                prop_assert_eq!(event.as_str(), ty);
                prop_assert!(*v == version || *v == M::DESCRIPTORS[0].version);
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn garbage_data_is_a_payload_error(data in garbage(), attrs in attrs()) {
        let profile = ProfileUpdated::DESCRIPTORS[0].name;
        check_garbage::<ProfileUpdated>(&attrs, profile, 1, "application/json", &data,
            |d| serde_json::from_slice(d).ok(), false)?;
        // Older versions of a chain fail in the decoder of their own version.
        let account = AccountOpened::DESCRIPTORS[0].name;
        for version in 1..=3 {
            check_garbage::<AccountOpened>(&attrs, account, version, "application/json", &data,
                |d| match version {
                    1 => serde_json::from_slice::<AccountOpenedV1>(d).ok().map(|v1| account_v2_to_v3(v1.into())),
                    2 => serde_json::from_slice::<AccountOpenedV2>(d).ok().map(account_v2_to_v3),
                    _ => serde_json::from_slice(d).ok(),
                }, false)?;
        }
        for (i, descriptor) in Drawing::DESCRIPTORS.iter().enumerate() {
            let variant = ["Circle", "Polygon", "Pair", "Note", "Cleared"][i];
            check_garbage::<Drawing>(&attrs, descriptor.name, descriptor.version, "application/json", &data,
                |d| {
                    let inner: Value = serde_json::from_slice(d).ok()?;
                    serde_json::from_value(json!({ variant: inner })).ok()
                }, false)?;
        }
        let polygon = Drawing::DESCRIPTORS[1].name;
        check_garbage::<Drawing>(&attrs, polygon, 1, "application/json", &data,
            |d| {
                let v1: Value = serde_json::from_slice(d).ok()?;
                let v3 = polygon_v2_to_v3(polygon_v1_to_v2(v1).ok()?).ok()?;
                serde_json::from_value(json!({ "Polygon": v3 })).ok()
            }, true)?;
        let reading = ReadingTaken::DESCRIPTORS[0].name;
        check_garbage::<ReadingTaken>(&attrs, reading, 1, "application/protobuf", &data,
            |d| <ReadingTaken as prost::Message>::decode(d).ok(), false)?;
    }

    /// The same through structured JSON: a document whose `data` is valid JSON of the wrong shape.
    #[test]
    fn wrong_shape_json_data_is_a_payload_error(data in json_value(), attrs in attrs()) {
        let raw = raw_with(&attrs, ProfileUpdated::DESCRIPTORS[0].name, 1, &data);
        let mut json = Vec::new();
        structured::encode(&raw, &mut json).map_err(fail)?;
        let result = cloudevents::from_json::<ProfileUpdated>(&json, &Limits::default());
        match serde_json::from_value::<ProfileUpdated>(data) {
            Ok(expected) => prop_assert_eq!(result.map_err(fail)?.data, expected),
            Err(_) => prop_assert_eq!(result.unwrap_err().kind(), DecodeErrorKind::Payload),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Arbitrary input: no panic, typed errors, and what is accepted is stable
// ---------------------------------------------------------------------------------------------

/// The kinds a decoder of envelopes (not payloads) can return.
fn envelope_kind(err: &DecodeError) -> bool {
    matches!(
        err.kind(),
        DecodeErrorKind::Malformed | DecodeErrorKind::Attribute | DecodeErrorKind::TooLarge
    ) && !err.to_string().is_empty()
}

/// An encode failure that is the format's own limit, not a bug: data that is not JSON under a
/// JSON content type (JSON format), a time outside RFC 3339's years 0..=9999 (JSON and binary), an
/// `eventversion` beyond protobuf's 32 bits.
fn acceptable_encode_error(raw: &RawEnvelope, err: &EncodeError) -> bool {
    let EncodeError::InvalidAttribute { attribute, .. } = err else {
        return false;
    };
    match attribute.as_str() {
        "data" => {
            cloudevents::is_json(&raw.content_type)
                && !raw.data.0.is_empty()
                && serde_json::from_slice::<serde::de::IgnoredAny>(&raw.data.0).is_err()
        }
        "time" => !(0..=9999).contains(&raw.time.year()),
        "eventversion" => raw.version > i32::MAX as u32,
        _ => false,
    }
}

/// Whatever a decoder accepted must encode in every format (or fail for a format limit) and
/// read back the same.
fn check_reencodes(raw: &RawEnvelope, origin: &str) -> Result<(), TestCaseError> {
    let limits = Limits::default();
    let mut json = Vec::new();
    match structured::encode(raw, &mut json) {
        Ok(()) => {
            let got = structured::decode(&json, &limits).map_err(|err| {
                fail(format!(
                    "{origin} -> json: {err}\n{}",
                    String::from_utf8_lossy(&json)
                ))
            })?;
            prop_assert_eq!(got, as_read(raw, json_extension), "{} -> json", origin);
        }
        Err(err) => prop_assert!(
            acceptable_encode_error(raw, &err),
            "{} -> json: {}",
            origin,
            err
        ),
    }
    match protobuf::encode(raw) {
        Ok(bytes) => {
            let got = protobuf::decode(&bytes, &limits)
                .map_err(|err| fail(format!("{origin} -> protobuf: {err}")))?;
            prop_assert_eq!(got, as_read(raw, same_extension), "{} -> protobuf", origin);
        }
        Err(err) => prop_assert!(
            acceptable_encode_error(raw, &err),
            "{} -> protobuf: {}",
            origin,
            err
        ),
    }
    for binding in [Binding::Kafka, Binding::Nats] {
        match binary::encode(raw, binding) {
            Ok(message) => {
                let got =
                    binary::decode(binary_headers(&message), &message.payload, binding, &limits)
                        .map_err(|err| fail(format!("{origin} -> {binding:?}: {err}")))?;
                prop_assert_eq!(
                    got,
                    as_read(raw, header_extension),
                    "{} -> {:?}",
                    origin,
                    binding
                );
            }
            Err(err) => prop_assert!(
                acceptable_encode_error(raw, &err),
                "{} -> {:?}: {}",
                origin,
                binding,
                err
            ),
        }
    }
    Ok(())
}

/// Plausible attribute values: what a decoder accepts and what it almost accepts.
fn plausible_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => prop::sample::select(vec![
            json!("1.0"), json!("0.3"), json!(""), json!("01938f5e-8c2a-7d4e-9b1a-3c5d7e9f1a2b"),
            json!("urn:uuid:01938f5e-8c2a-7d4e-9b1a-3c5d7e9f1a2b"), json!("not-a-uuid"),
            json!("2026-11-26T10:00:00Z"), json!("2026-11-26T10:00:00.123456789+05:30"),
            json!("0000-01-01T00:00:00Z"), json!("2026-02-30T10:00:00Z"), json!("yesterday"),
            json!("application/json"), json!("text/plain"), json!("application/octet-stream"),
            json!("00000000000000000042"), json!("-1"), json!("18446744073709551616"),
            json!("2"), json!(2), json!(0), json!(-1), json!(4294967295u32), json!(4294967296u64),
            json!(2147483648u32), json!(1.5), json!("eyJhIjoxfQ=="), json!("not base64!"),
            json!({"a": [1, 2, {"b": null}]}), json!([1, "two"]), json!(null), json!(true),
        ]),
        1 => json_value(),
    ]
}

fn attribute_key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(KNOWN.to_vec()).prop_map(str::to_owned),
        1 => prop::sample::select(vec!["data_base64", "Subject", "ext-1", "", "x", "comexampleext"]).prop_map(str::to_owned),
        1 => extension_name(),
        1 => text(),
    ]
}

/// A valid structured document, then attributes removed, replaced and added.
fn json_document() -> impl Strategy<Value = Vec<u8>> {
    (
        vec(prop::sample::select(KNOWN.to_vec()), 0..3),
        vec((attribute_key(), plausible_value()), 0..4),
    )
        .prop_map(|(removed, edits)| {
            let mut doc = serde_json::Map::new();
            for (key, value) in [
                ("specversion", json!("1.0")),
                ("id", json!("01938f5e-8c2a-7d4e-9b1a-3c5d7e9f1a2b")),
                ("source", json!("/props")),
                ("type", json!("props.thing")),
                ("time", json!("2026-11-26T10:00:00.5+01:00")),
                ("data", json!({"a": 1})),
            ] {
                doc.insert(key.to_owned(), value);
            }
            for key in removed {
                doc.remove(key);
            }
            for (key, value) in edits {
                doc.insert(key, value);
            }
            serde_json::to_vec(&Value::Object(doc)).unwrap()
        })
}

/// Raw bytes, structured or not.
fn json_input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..64),
        json_document(),
        // Valid documents cut short or with a byte changed.
        (
            json_document(),
            any::<prop::sample::Index>(),
            any::<u8>(),
            any::<bool>()
        )
            .prop_map(|(mut doc, at, byte, cut)| {
                let at = at.index(doc.len());
                if cut {
                    doc.truncate(at);
                } else {
                    doc[at] = byte;
                }
                doc
            }),
    ]
}

/// Mirror of the official protobuf `CloudEvent`, to write any message the format allows.
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
        #[prost(oneof = "Data", tags = "6, 7, 8")]
        pub(crate) data: Option<Data>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct AttributeValue {
        #[prost(oneof = "Attr", tags = "1, 2, 3, 4, 5, 6, 7")]
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
        #[prost(string, tag = "5")]
        Uri(String),
        #[prost(string, tag = "6")]
        UriRef(String),
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
        #[prost(message, tag = "8")]
        Proto(Any),
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct Any {
        #[prost(string, tag = "1")]
        pub(crate) type_url: String,
        #[prost(bytes = "vec", tag = "2")]
        pub(crate) value: Vec<u8>,
    }
}

fn proto_attr() -> impl Strategy<Value = Option<wire::Attr>> {
    prop::option::weighted(
        0.95,
        prop_oneof![
            any::<bool>().prop_map(wire::Attr::Boolean),
            any::<i32>().prop_map(wire::Attr::Integer),
            plausible_value().prop_map(|v| wire::Attr::String(
                v.as_str().map_or_else(|| v.to_string(), str::to_owned)
            )),
            vec(any::<u8>(), 0..8).prop_map(wire::Attr::Bytes),
            text().prop_map(wire::Attr::Uri),
            text().prop_map(wire::Attr::UriRef),
            (
                prop_oneof![-62_135_596_800i64..=253_402_300_799, any::<i64>()],
                prop_oneof![0..1_000_000_000i32, any::<i32>()],
            )
                .prop_map(|(seconds, nanos)| wire::Attr::Timestamp(wire::Timestamp {
                    seconds,
                    nanos
                })),
        ],
    )
}

/// Any protobuf `CloudEvent`: plausible or arbitrary required fields, arbitrary attribute names
/// and values, any data.
fn proto_event() -> impl Strategy<Value = wire::CloudEvent> {
    let field = |good: &'static str| prop_oneof![4 => Just(good.to_owned()), 1 => text()];
    (
        field("01938f5e-8c2a-7d4e-9b1a-3c5d7e9f1a2b"),
        field("/props"),
        field("1.0"),
        field("props.thing"),
        vec((attribute_key(), proto_attr()), 0..6),
        prop::option::of(prop_oneof![
            vec(any::<u8>(), 0..16).prop_map(wire::Data::Binary),
            text().prop_map(wire::Data::Text),
            (text(), vec(any::<u8>(), 0..8))
                .prop_map(|(type_url, value)| wire::Data::Proto(wire::Any { type_url, value })),
        ]),
        any::<bool>(),
    )
        .prop_map(
            |(id, source, spec_version, r#type, attributes, data, with_time)| {
                let mut map: HashMap<String, wire::AttributeValue> = HashMap::new();
                if with_time {
                    map.insert(
                        "time".into(),
                        wire::AttributeValue {
                            attr: Some(wire::Attr::Timestamp(wire::Timestamp {
                                seconds: 1_700_000_000,
                                nanos: 5,
                            })),
                        },
                    );
                }
                for (name, attr) in attributes {
                    map.insert(name, wire::AttributeValue { attr });
                }
                wire::CloudEvent {
                    id,
                    source,
                    spec_version,
                    r#type,
                    attributes: map,
                    data,
                }
            },
        )
}

fn proto_input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..64),
        proto_event().prop_map(|event| prost::Message::encode_to_vec(&event)),
        (
            proto_event(),
            any::<prop::sample::Index>(),
            any::<u8>(),
            any::<bool>()
        )
            .prop_map(|(event, at, byte, cut)| {
                let mut bytes = prost::Message::encode_to_vec(&event);
                if bytes.is_empty() {
                    return bytes;
                }
                let at = at.index(bytes.len());
                if cut {
                    bytes.truncate(at);
                } else {
                    bytes[at] = byte;
                }
                bytes
            }),
    ]
}

/// Header names: the binding's own, other cases and prefixes, invalid names, and arbitrary text
/// (non-ASCII near the prefix included).
fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => (
            prop::sample::select(vec!["ce_", "ce-", "CE_", "Ce-", "ce", "c"]),
            prop_oneof![
                3 => prop::sample::select(KNOWN.to_vec()).prop_map(str::to_owned),
                1 => extension_name(),
                1 => text(),
            ],
        )
            .prop_map(|(prefix, name)| format!("{prefix}{name}")),
        1 => prop::sample::select(vec!["content-type", "Content-Type", "key", "ce_", "ce-"]).prop_map(str::to_owned),
        1 => text(),
    ]
}

fn header_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => plausible_value().prop_map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned).into_bytes()),
        1 => text().prop_map(String::into_bytes),
        1 => vec(any::<u8>(), 0..12),
    ]
}

/// Headers, payload and the binding to read them with.
type BinaryInput = (Vec<(String, Vec<u8>)>, Vec<u8>, Binding);

/// Binary-mode input: a valid header set for either binding, some headers removed, some added.
fn binary_input() -> impl Strategy<Value = BinaryInput> {
    (
        prop::sample::select(vec![Binding::Kafka, Binding::Nats]),
        any::<bool>(),
        vec(any::<prop::sample::Index>(), 0..3),
        vec(
            (any::<prop::sample::Index>(), header_name(), header_value()),
            0..5,
        ),
        vec(any::<u8>(), 0..32),
    )
        .prop_map(|(binding, encode_with_other, removed, added, payload)| {
            let sent = envelope_at("2026-11-26T10:00:00.000000001-03:00");
            let written = if encode_with_other {
                match binding {
                    Binding::Kafka => Binding::Nats,
                    Binding::Nats => Binding::Kafka,
                }
            } else {
                binding
            };
            let mut headers: Vec<(String, Vec<u8>)> = binary::encode(&sent, written)
                .unwrap()
                .headers
                .iter()
                .map(|(name, value)| (name.to_owned(), value.to_vec()))
                .collect();
            for index in removed {
                if !headers.is_empty() {
                    headers.remove(index.index(headers.len()));
                }
            }
            for (index, name, value) in added {
                let at = index.index(headers.len() + 1);
                headers.insert(at, (name, value));
            }
            (headers, payload, binding)
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn structured_decode_never_panics(bytes in json_input(), tiny in any::<bool>()) {
        let limits = if tiny {
            Limits { max_message_bytes: 96, max_data_bytes: 4, ..Limits::default() }
        } else {
            Limits::default()
        };
        match structured::decode(&bytes, &limits) {
            Ok(raw) => check_reencodes(&raw, "json")?,
            Err(err) => {
                prop_assert!(envelope_kind(&err), "{:?}", err);
                if bytes.len() > limits.max_message_bytes {
                    prop_assert_eq!(err.kind(), DecodeErrorKind::TooLarge);
                }
            }
        }
    }

    #[test]
    fn protobuf_decode_never_panics(bytes in proto_input(), tiny in any::<bool>()) {
        let limits = if tiny {
            Limits { max_message_bytes: 64, max_data_bytes: 4, ..Limits::default() }
        } else {
            Limits::default()
        };
        match protobuf::decode(&bytes, &limits) {
            Ok(raw) => check_reencodes(&raw, "protobuf")?,
            Err(err) => {
                prop_assert!(envelope_kind(&err), "{:?}", err);
                if bytes.len() > limits.max_message_bytes {
                    prop_assert_eq!(err.kind(), DecodeErrorKind::TooLarge);
                }
            }
        }
    }

    #[test]
    fn binary_decode_never_panics((headers, payload, binding) in binary_input(), tiny in any::<bool>()) {
        let limits = if tiny {
            Limits { max_headers: 8, max_header_bytes: 200, max_data_bytes: 4, ..Limits::default() }
        } else {
            Limits::default()
        };
        let result = binary::decode(
            headers.iter().map(|(name, value)| (name.as_str(), value.as_slice())),
            &payload,
            binding,
            &limits,
        );
        match result {
            Ok(raw) => {
                prop_assert!(raw.data.0 == payload);
                check_reencodes(&raw, "binary")?;
            }
            Err(err) => {
                prop_assert!(envelope_kind(&err), "{:?}", err);
                // The payload is measured before any header is read. (Header limits are checked
                // as headers are read, so an earlier invalid header can win: see bad_input.rs.)
                if payload.len() > limits.max_data_bytes {
                    prop_assert_eq!(err.kind(), DecodeErrorKind::TooLarge);
                }
            }
        }
    }

    /// Arbitrary headers, arbitrary bytes: nothing panics.
    #[test]
    fn binary_decode_of_arbitrary_headers_never_panics(
        headers in vec((text(), vec(any::<u8>(), 0..16)), 0..12),
        payload in vec(any::<u8>(), 0..32),
        kafka in any::<bool>(),
    ) {
        let binding = if kafka { Binding::Kafka } else { Binding::Nats };
        let result = binary::decode(
            headers.iter().map(|(name, value)| (name.as_str(), value.as_slice())),
            &payload,
            binding,
            &Limits::default(),
        );
        if let Err(err) = result {
            prop_assert!(envelope_kind(&err), "{:?}", err);
        }
    }

    /// Mutated encodings of typed envelopes: no panic, and if the envelope still decodes, it
    /// re-encodes stably.
    #[test]
    fn mutated_encodings_never_panic(
        event in drawing(),
        attrs in attrs(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        cut in any::<bool>(),
    ) {
        let sent = attrs.apply(Envelope::event(event));
        let mutate = |mut bytes: Vec<u8>| {
            if !bytes.is_empty() {
                let at = at.index(bytes.len());
                if cut { bytes.truncate(at) } else { bytes[at] = byte }
            }
            bytes
        };
        let limits = Limits::default();
        let json = mutate(cloudevents::to_json(&sent).map_err(fail)?);
        match structured::decode(&json, &limits) {
            Ok(raw) => {
                check_reencodes(&raw, "json")?;
                if let Err(err) = raw.decode::<Drawing>() {
                    prop_assert!(!envelope_kind(&err), "{:?}", err);
                }
            }
            Err(err) => prop_assert!(envelope_kind(&err), "{:?}", err),
        }
        let proto = mutate(cloudevents::to_protobuf(&sent).map_err(fail)?);
        match protobuf::decode(&proto, &limits) {
            Ok(raw) => {
                check_reencodes(&raw, "protobuf")?;
                if let Err(err) = raw.decode::<Drawing>() {
                    prop_assert!(!envelope_kind(&err), "{:?}", err);
                }
            }
            Err(err) => prop_assert!(envelope_kind(&err), "{:?}", err),
        }
    }
}
