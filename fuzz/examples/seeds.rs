//! Writes the seed corpus, `fuzz/corpus/<target>/<name>`: a handful of small valid inputs per
//! target, produced by the library's own encoders from fixed envelopes (fixed ids and times, so
//! the files only change when an encoding does). Each seed is checked to decode before it is
//! written.
//!
//! ```sh
//! cd fuzz && cargo run --example seeds
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use event_fuzz::events::{ParcelBooked, ParcelBookedV2, ParcelEvent};
use event_fuzz::framing;
use event_runtime::cloudevents::binary::{self, Binding};
use event_runtime::cloudevents::{self, Limits, protobuf, structured};
use event_runtime::envelope::{ExtensionValue, RawData, RawEnvelope, TraceContext};
use event_runtime::transport::{Bytes, Headers, Record};
use event_runtime::{Envelope, Message};

type Seeds = BTreeMap<&'static str, Vec<(String, Vec<u8>)>>;

/// Fixed id and time: the attributes of this document.
const TEMPLATE: &str = r#"{"specversion":"1.0","id":"0193a1c4-2b6e-7f00-8a11-22b3c4d5e6fb","source":"/fuzz","type":"fuzz.parcel_booked","time":"2025-11-26T12:00:00.25Z"}"#;

fn template() -> RawEnvelope {
    structured::decode(TEMPLATE.as_bytes(), &Limits::default()).expect("the template decodes")
}

fn fixed<M: Message>(mut envelope: Envelope<M>) -> RawEnvelope {
    let template = template();
    envelope.id = template.id.clone();
    envelope.time = template.time;
    envelope.correlation_id = Some(template.id.to_string());
    envelope.to_raw().expect("encodes")
}

fn booked_v3() -> RawEnvelope {
    let mut raw = fixed(Envelope::event(ParcelBooked {
        parcel: "p-1".into(),
        grams: 1250,
        tags: vec!["fragile".into()],
        note: Some("leave at the door".into()),
        dimensions: Some([300, 200, 100]),
    }))
    .with_subject("p-1");
    raw.sequence = Some(7);
    raw
}

fn booked_v2() -> RawEnvelope {
    fixed(Envelope::event(ParcelBookedV2 {
        parcel: "p-2".into(),
        grams: 500,
        tags: vec![],
    }))
}

fn old(ty: &'static str, version: u32, payload: &str) -> RawEnvelope {
    let mut raw = template();
    raw.ty = ty.into();
    raw.version = version;
    raw.partition_key = Some("p-3".into());
    raw.data = RawData(payload.as_bytes().to_vec());
    raw
}

const BOOKED_V1: &str = r#"{"parcel":"p-3","kilos":2,"tag":"bulky"}"#;
const DISPATCHED_V1: &str = r#"{"parcel":"p-3","carrier_code":"DHL"}"#;

fn dispatched_v2() -> RawEnvelope {
    fixed(Envelope::event(ParcelEvent::Dispatched {
        parcel: "p-4".into(),
        carrier: "UPS".into(),
    }))
}

/// Every optional attribute and every kind of extension.
fn lost_with_everything() -> RawEnvelope {
    let mut raw = fixed(Envelope::event(ParcelEvent::Lost("p-5".into())))
        .with_subject("p-5")
        .with_trace(TraceContext {
            traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
            tracestate: Some("vendor=1".into()),
        });
    raw.dataschema = Some("https://example.com/schemas/parcel_lost/1".into());
    raw.causation_id = Some("0193a1c4-2b6e-7f00-8a11-22b3c4d5e6fa".into());
    raw.dedupe_key = Some("fuzz.parcel_lost:p-5".into());
    raw.sequence = Some(42);
    raw.extensions = [
        ("tenant".to_owned(), ExtensionValue::String("acme".into())),
        ("priority".to_owned(), ExtensionValue::Integer(-3)),
        ("audited".to_owned(), ExtensionValue::Boolean(true)),
    ]
    .into();
    raw
}

/// A payload that is not JSON: `data_base64` in JSON, `binary_data` in protobuf.
fn binary_payload() -> RawEnvelope {
    let mut raw = old("fuzz.parcel_lost", 1, "");
    raw.content_type = "application/octet-stream".into();
    raw.data = RawData(vec![0, 159, 146, 150, 255]);
    raw
}

fn envelopes() -> Vec<(&'static str, RawEnvelope)> {
    vec![
        ("booked_v3", booked_v3()),
        ("booked_v2", booked_v2()),
        ("booked_v1", old("fuzz.parcel_booked", 1, BOOKED_V1)),
        (
            "dispatched_v1",
            old("fuzz.parcel_dispatched", 1, DISPATCHED_V1),
        ),
        ("dispatched_v2", dispatched_v2()),
        ("lost_every_attribute", lost_with_everything()),
        ("binary_payload", binary_payload()),
    ]
}

fn json(raw: &RawEnvelope) -> Vec<u8> {
    let mut out = Vec::new();
    structured::encode(raw, &mut out).expect("encodes as JSON");
    out
}

fn record(headers: Headers, payload: impl Into<Bytes>, timestamp_ms: i64) -> Record {
    Record {
        topic: "fuzz".into(),
        partition: 0,
        offset: 0,
        timestamp_ms,
        key: Some(Bytes::from_static(b"p-1")),
        headers,
        payload: payload.into(),
    }
}

/// A header block as the framing writes it.
fn listed(headers: &Headers) -> Vec<(String, Vec<u8>)> {
    headers
        .iter()
        .map(|(name, value)| (name.to_owned(), value.to_vec()))
        .collect()
}

fn seeds() -> Seeds {
    let mut seeds = Seeds::new();
    let mut add = |target: &'static str, name: String, bytes: Vec<u8>| {
        seeds.entry(target).or_default().push((name, bytes));
    };
    for (name, raw) in envelopes() {
        add("structured_json", format!("{name}.json"), json(&raw));
        add(
            "protobuf",
            format!("{name}.pb"),
            protobuf::encode(&raw).expect("encodes as protobuf"),
        );
        for (binding, suffix) in [(Binding::Kafka, "kafka"), (Binding::Nats, "nats")] {
            let message = binary::encode(&raw, binding).expect("encodes in binary mode");
            add(
                "binary_headers",
                format!("{name}.{suffix}.txt"),
                framing::write(&listed(&message.headers), &message.payload),
            );
        }
        if name == "binary_payload" {
            // Not a payload either event type reads: the record target is for decodable ones.
            continue;
        }
        let message = binary::encode(&raw, Binding::Kafka).expect("encodes in binary mode");
        add(
            "record",
            format!("{name}.binary.txt"),
            framing::write_record(&Record {
                key: message.key,
                ..record(message.headers, message.payload, 1_764_158_400_250)
            }),
        );
    }
    // Structured content mode in a record, with and without `time` (then the append time).
    let content_type = |value: &str| -> Headers { [("content-type", value)].into_iter().collect() };
    let v3 = booked_v3();
    add(
        "record",
        "booked_v3.structured_json.txt".into(),
        framing::write_record(&record(
            content_type(cloudevents::STRUCTURED_JSON),
            json(&v3),
            1_764_158_400_250,
        )),
    );
    add(
        "record",
        "booked_v3.structured_protobuf.txt".into(),
        framing::write_record(&record(
            content_type("application/cloudevents+protobuf; charset=binary"),
            protobuf::encode(&v3).expect("encodes as protobuf"),
            1_764_158_400_250,
        )),
    );
    let untimed = br#"{"specversion":"1.0","id":"0193a1c4-2b6e-7f00-8a11-22b3c4d5e6fb","source":"/fuzz","type":"fuzz.parcel_booked","eventversion":1,"data":{"parcel":"p-3","kilos":2}}"#;
    add(
        "record",
        "booked_v1.untimed_structured_json.txt".into(),
        framing::write_record(&record(
            content_type(cloudevents::STRUCTURED_JSON),
            untimed.to_vec(),
            1_764_158_400_250,
        )),
    );
    // Payloads at each version, for the upcasters.
    let mut upcast = |name: &str, version: u32, payload: &[u8]| {
        let mut bytes = version.to_le_bytes().to_vec();
        bytes.extend_from_slice(payload);
        add("upcast", format!("{name}.bin"), bytes);
    };
    upcast("booked_v1", 1, BOOKED_V1.as_bytes());
    upcast("booked_v2", 2, &booked_v2().data.0);
    upcast("booked_v3", 3, &booked_v3().data.0);
    upcast("dispatched_v1", 1, DISPATCHED_V1.as_bytes());
    upcast("dispatched_v2", 2, &dispatched_v2().data.0);
    upcast("lost_v1", 1, &lost_with_everything().data.0);
    seeds
}

fn main() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (target, seeds) in seeds() {
        let check: fn(&[u8]) -> bool = match target {
            "binary_headers" => event_fuzz::binary_headers,
            "structured_json" => event_fuzz::structured_json,
            "protobuf" => event_fuzz::protobuf,
            "record" => event_fuzz::record,
            "upcast" => event_fuzz::upcast,
            other => unreachable!("no target {other}"),
        };
        let dir = corpus.join(target);
        std::fs::create_dir_all(&dir).expect("creates the corpus directory");
        for (name, bytes) in seeds {
            assert!(check(&bytes), "seed {target}/{name} does not decode");
            std::fs::write(dir.join(&name), &bytes).expect("writes the seed");
            println!("{target}/{name} ({} bytes)", bytes.len());
        }
    }
}
