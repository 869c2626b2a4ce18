//! The fixture crate compiled by the real derive, next to what the build step says about the
//! same sources: the descriptors agree, real payloads validate against the emitted JSON Schemas,
//! every emitted `.proto` compiles, and a prost event's bytes decode with its `.proto`.

#[path = "fixtures/shop/src/lib.rs"]
mod shop;

use std::collections::BTreeMap;
use std::path::PathBuf;

use event_build::model::{MessageKind, Model};
use event_runtime::Message as _;
use event_runtime::registry::Registry;
use serde_json::{Value, json};

use shop::common::{Address, Currency, Money};
use shop::inventory::{StockLevel, StockReserved};
use shop::orders::{
    Audit, Channel, GiftWrap, Line, OrderPlaced, OrderPlacedV1, OrderPlacedV2, Priority,
};
use shop::payments::{
    CardBrand, ChargeCard, FailureReason, PaymentCaptured, PaymentFailed, PaymentMethod,
    RetryPolicy,
};
use shop::shipping::{Carrier, DeliveryProof, Parcel, ShipmentEvent};
use shop::telemetry::ReadingTaken;

fn generated() -> event_build::Generated {
    event_build::Config::new()
        .crate_dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/shop"))
        .generate()
        .expect("the fixture scans")
}

#[test]
fn the_build_and_the_derive_describe_the_same_messages() {
    let model = generated().model;
    let registry = Registry::global().expect("the fixture registers cleanly");
    let mut derived: Vec<String> = registry
        .iter()
        // This test build compiles the fixture's `#[cfg(test)]` event too; the scan skips it.
        .filter(|d| d.context != "testing")
        .map(|d| {
            format!(
                "{:?} {} v{} context={} key={:?} dedupe={:?} oldest={} content={} description={:?} deprecated={:?} sla={:?}/{:?} type=..{}",
                d.kind,
                d.name,
                d.version,
                d.context,
                d.key_fields,
                d.dedupe_fields,
                d.oldest_readable_version,
                d.content_type,
                d.description,
                d.deprecated.map(|d| (d.since, d.sunset, d.note)),
                d.sla.max_latency_ms,
                d.sla.retention_secs,
                d.rust_type.rsplit("::shop::").next().unwrap_or_default(),
            )
        })
        .collect();
    let mut built: Vec<String> = model
        .messages
        .iter()
        .map(|m| {
            format!(
                "{} {} v{} context={} key={:?} dedupe={:?} oldest={} content={} description={:?} deprecated={:?} sla={:?}/{:?} type=..{}",
                match m.kind {
                    MessageKind::Event => "Event",
                    MessageKind::Command => "Command",
                },
                m.name,
                m.version,
                m.context,
                m.key_fields,
                m.dedupe_fields,
                m.oldest_readable_version,
                m.content_type,
                m.description,
                m.deprecated
                    .as_ref()
                    .map(|d| (d.since.as_deref(), d.sunset.as_deref(), d.note.as_deref())),
                m.sla.max_latency_ms,
                m.sla.retention_secs,
                m.rust_path,
            )
        })
        .collect();
    derived.sort();
    built.sort();
    assert_eq!(built, derived);
}

#[test]
fn the_build_finds_every_declared_handler() {
    let model = generated().model;
    let mut declared: Vec<(String, String, Vec<String>)> = event_runtime::handler::declared()
        .map(|h| {
            (
                h.group.to_owned(),
                h.name
                    .rsplit("::shop::")
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
                h.events
                    .iter()
                    .map(|d| format!("{} v{}", d.name, d.version))
                    .collect(),
            )
        })
        .collect();
    // A saga's messages are its group's (checked against the derive below).
    let mut built: Vec<(String, String, Vec<String>)> = model
        .handlers
        .iter()
        .filter(|h| !h.group.starts_with("saga."))
        .map(|h| {
            (
                h.group.clone(),
                h.function.clone(),
                h.messages
                    .iter()
                    .map(|m| format!("{} v{}", m.name, m.version))
                    .collect(),
            )
        })
        .collect();
    declared.sort();
    built.sort();
    assert_eq!(built, declared);
}

/// The build's reading of the `#[saga]` block is the derive's: the same name, steps, kinds,
/// timeouts and compensations, and the saga's group reads the messages the runtime wires.
#[test]
fn the_build_reads_the_saga_as_the_derive_does() {
    use event_runtime::saga::{Orchestrated, StepKind, Steps};
    let model = generated().model;
    let [saga] = model.sagas.as_slice() else {
        panic!("one saga in the fixture: {:?}", model.sagas);
    };
    assert_eq!(saga.name, <shop::checkout::Checkout as Steps>::NAME);
    let derived: Vec<(String, String, u64, Option<String>)> =
        <shop::checkout::Checkout as Steps>::STEPS
            .iter()
            .map(|s| {
                let kind = match s.kind {
                    StepKind::Compensatable => "compensatable",
                    StepKind::Pivot => "pivot",
                    StepKind::Retriable => "retriable",
                };
                (
                    s.name.to_owned(),
                    kind.to_owned(),
                    u64::try_from(s.timeout.as_millis()).unwrap(),
                    s.compensation.map(str::to_owned),
                )
            })
            .collect();
    let built: Vec<(String, String, u64, Option<String>)> = saga
        .steps
        .iter()
        .map(|s| {
            (
                s.name.clone(),
                serde_json::to_value(s.kind)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_owned(),
                s.timeout_ms,
                s.compensation.as_ref().map(|c| c.function.clone()),
            )
        })
        .collect();
    assert_eq!(built, derived);
    let mut wired = event_runtime::saga::message_types::<Orchestrated<shop::checkout::Checkout>>();
    wired.sort_unstable();
    let mut read: Vec<&str> = model
        .handlers
        .iter()
        .filter(|h| h.group == saga.group)
        .flat_map(|h| h.messages.iter().map(|m| m.name.as_str()))
        .collect();
    read.sort_unstable();
    read.dedup();
    assert_eq!(read, wired);
}

/// A JSON Schema validator for the subset event-build writes (`$ref` to `$defs`, `type`,
/// `enum`, `const`, `anyOf`, `oneOf`, `properties`, `required`, `additionalProperties`,
/// `items`, `prefixItems`, `minItems`, `maxItems`, `uniqueItems`, `minimum`, `format`).
fn validate(root: &Value, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    let schema = match schema {
        Value::Bool(true) => return,
        Value::Bool(false) => return errors.push(format!("{at}: no value allowed")),
        Value::Object(map) => map,
        _ => return errors.push(format!("{at}: schema is not an object")),
    };
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let name = reference.strip_prefix("#/$defs/").expect("local reference");
        validate(root, &root["$defs"][name], value, at, errors);
    }
    if let Some(ty) = schema.get("type").and_then(Value::as_str) {
        let ok = match ty {
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            "array" => value.is_array(),
            "object" => value.is_object(),
            "null" => value.is_null(),
            other => panic!("unexpected type {other}"),
        };
        if !ok {
            return errors.push(format!("{at}: {value} is not {ty}"));
        }
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array)
        && !options.contains(value)
    {
        errors.push(format!("{at}: {value} not in {options:?}"));
    }
    if let Some(constant) = schema.get("const")
        && constant != value
    {
        errors.push(format!("{at}: {value} is not {constant}"));
    }
    for (key, exactly_one) in [("anyOf", false), ("oneOf", true)] {
        if let Some(branches) = schema.get(key).and_then(Value::as_array) {
            let matching = branches
                .iter()
                .filter(|b| {
                    let mut branch_errors = Vec::new();
                    validate(root, b, value, at, &mut branch_errors);
                    branch_errors.is_empty()
                })
                .count();
            if matching == 0 || (exactly_one && matching > 1) {
                errors.push(format!("{at}: {matching} branches of {key} match {value}"));
            }
        }
    }
    if let Some(minimum) = schema.get("minimum").and_then(Value::as_i64)
        && value.as_i64().is_some_and(|v| v < minimum)
    {
        errors.push(format!("{at}: {value} < {minimum}"));
    }
    let text = value.as_str().unwrap_or_default();
    let well_formed = match schema.get("format").and_then(Value::as_str) {
        Some("uuid") => uuid::Uuid::parse_str(text).is_ok(),
        Some("date-time") => {
            time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                .is_ok()
        }
        _ => true,
    };
    if !well_formed {
        errors.push(format!(
            "{at}: {value} does not have the format {}",
            schema["format"]
        ));
    }
    if let Some(object) = value.as_object() {
        let properties = schema.get("properties").and_then(Value::as_object);
        for required in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let required = required.as_str().expect("property name");
            if !object.contains_key(required) {
                errors.push(format!("{at}: missing required `{required}`"));
            }
        }
        for (key, item) in object {
            let property = properties
                .and_then(|p| p.get(key))
                .or_else(|| schema.get("additionalProperties"));
            if let Some(property) = property {
                validate(root, property, item, &format!("{at}.{key}"), errors);
            }
        }
    }
    if let Some(items) = value.as_array() {
        let prefix = schema.get("prefixItems").and_then(Value::as_array);
        for (i, item) in items.iter().enumerate() {
            let item_schema = prefix
                .and_then(|p| p.get(i))
                .or_else(|| schema.get("items"));
            if let Some(item_schema) = item_schema {
                validate(root, item_schema, item, &format!("{at}[{i}]"), errors);
            }
        }
        let len = items.len() as u64;
        if schema
            .get("minItems")
            .and_then(Value::as_u64)
            .is_some_and(|m| len < m)
            || schema
                .get("maxItems")
                .and_then(Value::as_u64)
                .is_some_and(|m| len > m)
        {
            errors.push(format!("{at}: {len} items"));
        }
        if schema.get("uniqueItems") == Some(&Value::Bool(true)) {
            for (i, a) in items.iter().enumerate() {
                if items[i + 1..].contains(a) {
                    errors.push(format!("{at}: duplicate {a}"));
                }
            }
        }
    }
}

fn schemas(generated: &event_build::Generated) -> BTreeMap<(String, u32), Value> {
    generated
        .model
        .messages
        .iter()
        .map(|m| {
            let text = &generated.files[&m.schema_file];
            (
                (m.name.clone(), m.version),
                serde_json::from_str(text).expect("a schema is JSON"),
            )
        })
        .collect()
}

fn check<M: event_runtime::Message>(
    schemas: &BTreeMap<(String, u32), Value>,
    message: &M,
) -> Vec<String> {
    let descriptor = message.descriptor();
    let mut bytes = Vec::new();
    message.encode_payload(&mut bytes).expect("encodes");
    let payload: Value = serde_json::from_slice(&bytes).expect("a JSON payload");
    let schema = &schemas[&(descriptor.name.to_owned(), descriptor.version)];
    let mut errors = Vec::new();
    validate(schema, schema, &payload, descriptor.name, &mut errors);
    errors
}

fn money(amount_cents: i64) -> Money {
    Money {
        amount_cents,
        currency: Currency::Gbp,
    }
}

fn order() -> OrderPlaced {
    OrderPlaced {
        order_id: "o-1".into(),
        customer_id: uuid::Uuid::from_u128(0x0193_8f5e_8c2a_7d4e_9b1a_3c5d_7e9f_1a2b),
        lines: vec![
            Line {
                sku: "sku-1".into(),
                quantity: 2,
                unit_price: money(1250),
                gift: Some(Box::new(GiftWrap {
                    message: "Happy birthday".into(),
                })),
            },
            Line {
                sku: "sku-2".into(),
                quantity: 1,
                unit_price: money(-100),
                gift: None,
            },
        ],
        total: money(2400),
        shipping_address: Address {
            street_line: "1 Main St".into(),
            street_line2: None,
            postal_code: "N1".into(),
            country_code: "GB".into(),
        },
        placed_at: time::OffsetDateTime::from_unix_timestamp(1_790_000_000).unwrap(),
        priority: Priority::Express,
        coupon: Some("WELCOME".into()),
        customer_note: None,
        tags: ["gift".to_owned(), "vip".to_owned()].into(),
        metadata: [("ab".to_owned(), "b".to_owned())].into(),
        audit: Audit {
            channel: Channel::MobileApp,
            campaign: None,
        },
        line_count: 2,
    }
}

#[test]
fn real_payloads_validate_against_the_emitted_schemas() {
    let generated = generated();
    let schemas = schemas(&generated);
    let captured = |method| PaymentCaptured {
        order_id: "o-1".into(),
        amount: money(2400),
        method,
        captured_at: time::OffsetDateTime::UNIX_EPOCH,
        reference: "ref-9".into(),
        fee_cents: 35,
    };
    let failed = |reason, retry| PaymentFailed {
        order_id: "o-1".into(),
        reason,
        retry,
    };
    let mut errors = Vec::new();
    errors.extend(check(
        &schemas,
        &OrderPlacedV1 {
            order_id: "o-1".into(),
            total: 24,
        },
    ));
    errors.extend(check(
        &schemas,
        &OrderPlacedV2 {
            order_id: "o-1".into(),
            total: money(2400),
        },
    ));
    errors.extend(check(&schemas, &order()));
    errors.extend(check(
        &schemas,
        &OrderPlaced {
            metadata: BTreeMap::new(),
            coupon: None,
            customer_note: Some("leave at the door".into()),
            audit: Audit {
                channel: Channel::Web,
                campaign: Some("spring".into()),
            },
            ..order()
        },
    ));
    errors.extend(check(
        &schemas,
        &ChargeCard {
            order_id: "o-1".into(),
            amount: money(2400),
            idempotency_key: uuid::Uuid::nil(),
        },
    ));
    for method in [
        PaymentMethod::Card {
            last4: "4242".into(),
            brand: CardBrand::Visa,
        },
        PaymentMethod::BankTransfer {
            iban: "GB00".into(),
        },
        PaymentMethod::Voucher("V-1".into()),
        PaymentMethod::Cash,
    ] {
        errors.extend(check(&schemas, &captured(method)));
    }
    for (reason, retry) in [
        (
            FailureReason::Declined { code: "05".into() },
            Some(RetryPolicy::After(std::time::Duration::from_millis(1500))),
        ),
        (
            FailureReason::InsufficientFunds,
            Some(RetryPolicy::Immediately),
        ),
        (
            FailureReason::Fraud { score: 0.9 },
            Some(RetryPolicy::Never),
        ),
        (FailureReason::InsufficientFunds, None),
    ] {
        errors.extend(check(&schemas, &failed(reason, retry)));
    }
    for event in [
        ShipmentEvent::Packed {
            shipment_id: "s-1".into(),
            order_id: "o-1".into(),
            parcels: vec![Parcel {
                weight_grams: 1200,
                dimensions_mm: [300, 200, 100],
            }],
        },
        ShipmentEvent::Dispatched {
            shipment_id: "s-1".into(),
            carrier: Carrier::LaPoste,
            tracking: None,
        },
        ShipmentEvent::Delivered(DeliveryProof {
            shipment_id: "s-1".into(),
            signed_by: Some("A. Person".into()),
            took: std::time::Duration::from_secs(42),
            device: json!({"model": "x", "battery": 0.5}),
        }),
        ShipmentEvent::Lost,
    ] {
        errors.extend(check(&schemas, &event));
    }
    errors.extend(check(
        &schemas,
        &StockReserved {
            warehouse_id: 7,
            sku: "sku-1".into(),
            quantity_delta: -3,
            bin: ("A".into(), 12),
            weights_kg: vec![0.5, 1.25],
            levels: [
                ("front".to_owned(), StockLevel::Exact(4)),
                ("back".to_owned(), StockLevel::Range { min: 1, max: 9 }),
                ("cellar".to_owned(), StockLevel::Unknown),
            ]
            .into(),
            history: [1, 2, 3].into(),
            batches: vec![vec!["sku-1".into()], vec![]],
            extras: json!(null),
        },
    ));
    assert!(errors.is_empty(), "{errors:#?}");

    // The schemas are closed and say what is required: the validator does reject.
    let schema = &schemas[&("orders.order_placed".to_owned(), 3)];
    let mut payload = serde_json::to_value(order()).unwrap();
    payload["gift_wrap"] = json!(true);
    payload.as_object_mut().unwrap().remove("total");
    payload["lines"][0]["quantity"] = json!(-1);
    let mut rejected = Vec::new();
    validate(schema, schema, &payload, "order", &mut rejected);
    assert_eq!(rejected.len(), 3, "{rejected:#?}");
}

#[test]
fn every_emitted_proto_compiles_and_a_prost_event_decodes_with_its_proto() {
    let generated = generated();
    let dir = std::env::temp_dir().join(format!("event-build-protox-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut protos = Vec::new();
    for (relative, content) in &generated.files {
        if relative.ends_with(".proto") {
            let path = dir.join(relative);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, content).unwrap();
            protos.push(relative.clone());
        }
    }
    assert_eq!(protos.len(), generated.model.messages.len());
    // All at once: the message names of one package must not collide either.
    let pool = protox::Compiler::new([&dir])
        .and_then(|mut c| {
            c.include_imports(true)
                .open_files(&protos)
                .map(|c| c.descriptor_pool())
        })
        .unwrap_or_else(|e| panic!("{e:?}"));
    for message in &generated.model.messages {
        let name = format!("{}.{}", message.proto_package, message.proto_message);
        assert!(pool.get_message_by_name(&name).is_some(), "{name}");
    }

    // The bytes our protobuf codec writes read back through the emitted .proto, and the reverse.
    let reading = ReadingTaken {
        sensor: "t-1".into(),
        milli_celsius: -4_250,
        humidity: Some(0.5),
        labels: vec!["roof".into(), "north".into()],
        sequence: 7,
    };
    let mut bytes = Vec::new();
    reading.encode_payload(&mut bytes).unwrap();
    let descriptor = pool
        .get_message_by_name("events.telemetry.ReadingTakenV1")
        .unwrap();
    let dynamic =
        protox::prost_reflect::DynamicMessage::decode(descriptor, bytes.as_slice()).unwrap();
    use protox::prost_reflect::Value as V;
    let field = |name: &str| dynamic.get_field_by_name(name).unwrap().into_owned();
    assert_eq!(field("sensor"), V::String("t-1".into()));
    assert_eq!(field("milli_celsius"), V::I64(-4_250));
    assert_eq!(field("humidity"), V::F64(0.5));
    assert_eq!(
        field("labels"),
        V::List(vec![V::String("roof".into()), V::String("north".into())])
    );
    assert_eq!(field("sequence"), V::U32(7));
    assert!(dynamic.unknown_fields().next().is_none());
    let back = prost::Message::encode_to_vec(&dynamic);
    assert_eq!(
        ReadingTaken::decode_payload("telemetry.reading_taken", 1, &back).unwrap(),
        reading
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_model_round_trips_through_model_json() {
    let generated = generated();
    let model: Model = serde_json::from_str(&generated.files["model.json"]).unwrap();
    assert_eq!(model, generated.model);
}
