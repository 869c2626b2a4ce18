//! A foreign client must read what we write: the official CloudEvents Rust SDK reads our JSON
//! event format, and we read what it writes.

use cloudevents::{AttributesReader, Data, Event, EventBuilder, EventBuilderV10};
use event_runtime::cloudevents::{self as ce, Limits};
use event_runtime::{DomainEvent, Envelope};
use serde::{Deserialize, Serialize};

/// A parcel left the warehouse.
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(context = "shipping", version = 2)]
struct ParcelDispatched {
    #[event(key)]
    parcel_id: String,
    carrier: String,
}

#[test]
fn the_official_sdk_reads_our_structured_json() {
    let sent = Envelope::event(ParcelDispatched {
        parcel_id: "p-1".into(),
        carrier: "DHL".into(),
    })
    .with_subject("parcel/p-1");
    let bytes = ce::to_json(&sent).unwrap();

    let event: Event = serde_json::from_slice(&bytes).expect("the SDK parses our JSON");
    assert_eq!(event.id(), sent.id.to_string());
    assert_eq!(event.ty(), "shipping.parcel_dispatched");
    assert_eq!(event.source().to_string(), "/shipping");
    assert_eq!(event.subject(), Some("parcel/p-1"));
    assert_eq!(event.datacontenttype(), Some("application/json"));
    assert_eq!(
        event.time().map(|t| t.timestamp_nanos_opt().unwrap()),
        Some((sent.time.unix_timestamp_nanos()) as i64)
    );
    assert_eq!(
        event.extension("partitionkey").map(ToString::to_string),
        Some("p-1".to_owned())
    );
    assert_eq!(
        event.extension("eventversion").map(ToString::to_string),
        Some("2".to_owned())
    );
    assert_eq!(
        event.extension("correlationid").map(ToString::to_string),
        Some(sent.id.to_string())
    );
    match event.data() {
        Some(Data::Json(json)) => {
            assert_eq!(
                json,
                &serde_json::json!({"parcel_id": "p-1", "carrier": "DHL"})
            )
        }
        other => panic!("expected JSON data, got {other:?}"),
    }
}

#[test]
fn we_read_what_the_official_sdk_writes() {
    let event = EventBuilderV10::new()
        .id("0193a1c4-2b6e-7f00-8a11-22b3c4d5e6f7")
        .source("/warehouse/7")
        .ty("shipping.parcel_dispatched")
        .time("2026-11-26T12:00:00.5Z")
        .extension("eventversion", 2)
        .extension("tenant", "acme")
        .data(
            "application/json",
            serde_json::json!({"parcel_id": "p-9", "carrier": "UPS", "insured": true}),
        )
        .build()
        .unwrap();
    let bytes = serde_json::to_vec(&event).unwrap();

    let received = ce::from_json::<ParcelDispatched>(&bytes, &Limits::default()).unwrap();
    assert_eq!(received.source, "/warehouse/7");
    assert_eq!(received.version, 2);
    assert_eq!(received.data.carrier, "UPS");
    assert_eq!(
        received.extensions.get("tenant"),
        Some(&event_runtime::envelope::ExtensionValue::String(
            "acme".into()
        ))
    );
    assert_eq!(received.time.nanosecond(), 500_000_000);
}

/// The hand-written protobuf codec and the types prost-build generates from the official
/// `cloudevents.proto` agree in both directions.
#[test]
fn protobuf_codec_matches_the_generated_official_types() {
    use event_runtime::cloudevents::pb::{self, cloud_event::cloud_event_attribute_value::Attr};
    use prost::Message as _;

    let sent = Envelope::event(ParcelDispatched {
        parcel_id: "p-1".into(),
        carrier: "DHL".into(),
    })
    .with_subject("parcel/p-1");
    let bytes = ce::to_protobuf(&sent).unwrap();
    let official =
        pb::CloudEvent::decode(bytes.as_slice()).expect("generated types read our bytes");
    assert_eq!(official.id, sent.id.to_string());
    assert_eq!(official.spec_version, "1.0");
    assert_eq!(official.r#type, "shipping.parcel_dispatched");
    let attr = |name: &str| official.attributes.get(name).and_then(|v| v.attr.clone());
    assert_eq!(attr("eventversion"), Some(Attr::CeInteger(2)));
    assert_eq!(attr("subject"), Some(Attr::CeString("parcel/p-1".into())));
    match attr("time") {
        Some(Attr::CeTimestamp(ts)) => {
            assert_eq!(ts.seconds, sent.time.unix_timestamp());
            assert_eq!(ts.nanos as u32, sent.time.nanosecond());
        }
        other => panic!("time should be a timestamp, got {other:?}"),
    }
    match &official.data {
        Some(pb::cloud_event::Data::TextData(text)) => {
            assert_eq!(text, r#"{"parcel_id":"p-1","carrier":"DHL"}"#)
        }
        other => panic!("JSON data should be text_data, got {other:?}"),
    }
    // And what the generated types write, we read.
    let rewritten = official.encode_to_vec();
    let back = ce::from_protobuf::<ParcelDispatched>(&rewritten, &Limits::default()).unwrap();
    assert_eq!(back, sent);
}

/// A foreign producer on Kafka or NATS may use the bindings' structured content mode: the
/// SDK's JSON as the payload, `content-type: application/cloudevents+json`. A stored record in
/// that mode reads as the same event as one in binary mode; an unknown structured format is a
/// clear error naming the content type.
#[test]
fn a_structured_mode_record_from_the_official_sdk_is_read() {
    use event_runtime::transport::{Record, decode_record};
    let event = EventBuilderV10::new()
        .id("0193a1c4-2b6e-7f00-8a11-22b3c4d5e6f8")
        .source("/warehouse/7")
        .ty("shipping.parcel_dispatched")
        .extension("eventversion", 2)
        .extension("partitionkey", "p-9")
        .data(
            "application/json",
            serde_json::json!({"parcel_id": "p-9", "carrier": "UPS"}),
        )
        .build()
        .unwrap();
    // No `time` on the SDK's event (optional in CloudEvents): it takes the append time.
    let appended_ms = 1_764_158_400_123;
    let record = |content_type: &str, payload: Vec<u8>| Record {
        topic: "shipping".into(),
        partition: 0,
        offset: 0,
        timestamp_ms: appended_ms,
        key: Some(b"p-9".to_vec().into()),
        headers: vec![("content-type".into(), content_type.as_bytes().to_vec())].into(),
        payload: payload.into(),
    };
    let json = serde_json::to_vec(&event).unwrap();
    let raw = decode_record(
        &record("application/cloudevents+json; charset=UTF-8", json),
        &Limits::default(),
    )
    .expect("structured JSON is read");
    assert_eq!(raw.id.to_string(), "0193a1c4-2b6e-7f00-8a11-22b3c4d5e6f8");
    assert_eq!(raw.partition_key.as_deref(), Some("p-9"));
    assert_eq!(
        raw.time.unix_timestamp_nanos(),
        i128::from(appended_ms) * 1_000_000
    );
    let received: Envelope<ParcelDispatched> = raw.decode().unwrap();
    assert_eq!(received.data.carrier, "UPS");

    // The protobuf event format in structured mode, written by the generated official types.
    let ours = Envelope::event(ParcelDispatched {
        parcel_id: "p-10".into(),
        carrier: "DPD".into(),
    });
    let bytes = ce::protobuf::encode(&ours.to_raw().unwrap()).unwrap();
    let raw = decode_record(
        &record("application/cloudevents+protobuf", bytes),
        &Limits::default(),
    )
    .expect("structured protobuf is read");
    assert_eq!(raw.id, ours.id);

    let err = decode_record(
        &record("application/cloudevents+avro", b"\x00".to_vec()),
        &Limits::default(),
    )
    .expect_err("no avro");
    assert!(
        err.to_string().contains("application/cloudevents+avro"),
        "{err}"
    );
}

/// A binary-mode record from a foreign producer without `ce_time` (optional in CloudEvents)
/// reads with the record's append time; the decoder alone still names the missing attribute.
#[test]
fn an_event_without_time_takes_the_append_time() {
    use event_runtime::transport::{Record, decode_record};
    let headers: Vec<(String, Vec<u8>)> = [
        ("ce_specversion", "1.0"),
        ("ce_id", "0193a1c4-2b6e-7f00-8a11-22b3c4d5e6f9"),
        ("ce_source", "/warehouse/7"),
        ("ce_type", "shipping.parcel_dispatched"),
        ("ce_eventversion", "2"),
        ("content-type", "application/json"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.as_bytes().to_vec()))
    .collect();
    let record = Record {
        topic: "shipping".into(),
        partition: 0,
        offset: 7,
        timestamp_ms: 1_764_158_400_500,
        key: Some(b"p-3".to_vec().into()),
        headers: headers.clone().into(),
        payload: br#"{"parcel_id":"p-3","carrier":"GLS"}"#.to_vec().into(),
    };
    let raw = decode_record(&record, &Limits::default()).expect("read with the append time");
    assert_eq!(raw.time.unix_timestamp_nanos(), 1_764_158_400_500_000_000);
    let event: Envelope<ParcelDispatched> = raw.decode().unwrap();
    assert_eq!(event.data.carrier, "GLS");
    let err = ce::binary::decode(
        headers.iter().map(|(k, v)| (k.as_str(), v.as_slice())),
        &record.payload,
        ce::binary::Binding::Kafka,
        &Limits::default(),
    )
    .expect_err("the decoder alone requires time");
    assert!(err.to_string().contains("time"), "{err}");
}

/// The `time` a structured JSON event lacks is added without re-encoding it: the data keeps its
/// bytes (key order, integers beyond 64 bits).
#[test]
fn a_structured_event_without_time_keeps_its_data_bytes() {
    use event_runtime::transport::{Record, decode_record};
    let payload = br#" {"specversion":"1.0","id":"0193a1c4-2b6e-7f00-8a11-22b3c4d5e6fa","source":"/x","type":"shipping.parcel_dispatched","eventversion":2,"datacontenttype":"application/json","data":{"z":18446744073709551616,"a":1}}"#;
    let record = Record {
        topic: "shipping".into(),
        partition: 0,
        offset: 0,
        timestamp_ms: 1_764_158_400_000,
        key: None,
        headers: vec![(
            "content-type".into(),
            b"application/cloudevents+json".to_vec(),
        )]
        .into(),
        payload: payload.to_vec().into(),
    };
    let raw = decode_record(&record, &Limits::default()).expect("read with the append time");
    assert_eq!(raw.time.unix_timestamp(), 1_764_158_400);
    assert_eq!(raw.data.0, br#"{"z":18446744073709551616,"a":1}"#);
    // Without a record time there is nothing to fall back on: the missing attribute is named.
    let untimed = Record {
        timestamp_ms: 0,
        ..record
    };
    let err = decode_record(&untimed, &Limits::default()).expect_err("no time at all");
    assert!(err.to_string().contains("time"), "{err}");
}
