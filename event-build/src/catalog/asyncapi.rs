//! The AsyncAPI 3.0 document of one service (one scanned crate), written as `asyncapi.json`
//! next to the catalog (see [`crate::catalog`]). Part of the catalog, at its top with the
//! renderers: it reads the [`Catalog`] and the model and writes nothing itself.
//!
//! - **Channels**: one per topic the service touches. Events go to the topic named after their
//!   owning context (`orders`), commands to `<context>.commands`. Each channel lists the
//!   messages on it and carries the Kafka channel binding (`topic`).
//! - **Messages** (`components.messages`, referenced from the channels): one per message
//!   version, id `<name>.v<N>`, with the JSON Schema as `payload`, the CloudEvents Kafka
//!   binary-mode headers (`ce_id`, `ce_type`, `ce_correlationid`, ...) as `headers`,
//!   `correlationId` at `$message.header#/ce_correlationid`, and the Kafka message binding
//!   whose `key` is the partition key (`x-key-fields` names its payload properties).
//! - **Operations**: `send` for every message the crate produces (from the producers the scan
//!   found), `receive` for every handler (with its consumer group as the Kafka `groupId`).
//!
//! A payload schema's `$defs` move to `components.schemas` as `<message id>.<Name>` and its
//! `$ref`s are rewritten to point there (inside an AsyncAPI document, `#/...` is resolved
//! against the document); its `$id` becomes `x-schema-id`.
//!
//! The registry's schemas are JSON Schema 2020-12, which AsyncAPI 3.0's schema formats do not
//! include (its default, the AsyncAPI schema, is a superset of draft-07). The document
//! therefore carries each payload as a Multi Format Schema Object declaring
//! `application/schema+json;version=draft-07` ([`PAYLOAD_SCHEMA_FORMAT`]), written in draft-07:
//! a tuple's `prefixItems` + `items: false` (2020-12) becomes `items: [..]` +
//! `additionalItems: false`, which is what a draft-07 reader needs to accept the tuple at all.
//! The emitter writes no other keyword whose meaning differs between the two drafts. The tests
//! validate every generated document with the official `@asyncapi/parser`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use crate::model::{MessageKind, Model};

use super::{Catalog, CatalogMessage, CatalogVersion, slug};

/// The AsyncAPI version written.
pub const ASYNCAPI_VERSION: &str = "3.0.0";
/// The version of the Kafka bindings used.
pub const KAFKA_BINDING_VERSION: &str = "0.5.0";
/// The schema format the document declares for every payload.
pub const PAYLOAD_SCHEMA_FORMAT: &str = "application/schema+json;version=draft-07";

/// Where the correlation id is.
pub const CORRELATION_ID_LOCATION: &str = "$message.header#/ce_correlationid";

/// The component id of a message version: `orders.order_placed.v3`.
pub fn message_id(name: &str, version: u32) -> String {
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{name}.v{version}")
}

/// A channel id for a topic (`orders.commands` stays as it is).
fn channel_id(topic: &str) -> String {
    slug(topic)
}

/// The CloudEvents 1.0 Kafka binary-mode headers the runtime writes.
fn headers() -> Value {
    let string = |description: &str| json!({"type": "string", "description": description});
    json!({
        "type": "object",
        "description": "CloudEvents 1.0 attributes in Kafka binary content mode (`ce_` headers).",
        "properties": {
            "ce_specversion": {"type": "string", "const": "1.0", "description": "CloudEvents spec version."},
            "ce_id": {"type": "string", "format": "uuid", "description": "A UUIDv7: ids sort by creation time."},
            "ce_source": string("A URI-reference naming the producer: `/<context>` unless set."),
            "ce_type": string("The message name (CloudEvents `type`)."),
            "ce_time": {"type": "string", "format": "date-time", "description": "When it happened."},
            "ce_subject": string("The subject, if any."),
            "ce_dataschema": {"type": "string", "format": "uri", "description": "The schema of `data`."},
            "ce_eventversion": string("The schema version of the payload."),
            "ce_partitionkey": string("The partition key (also the Kafka record key)."),
            "ce_correlationid": string("The id of the first envelope of the flow."),
            "ce_causationid": string("The id of the envelope that caused this one."),
            "ce_dedupekey": string("The dedupe key, if the message declares one."),
            "ce_sequence": string("Position in its partition, zero-padded."),
            "traceparent": string("W3C Trace Context."),
            "tracestate": string("W3C Trace Context."),
            "content-type": string("The payload's content type (CloudEvents `datacontenttype`).")
        },
        "required": ["ce_specversion", "ce_id", "ce_source", "ce_type"]
    })
}

/// Rewrites `#/$defs/X` references to `#/components/schemas/<prefix>.X`.
fn rewrite_refs(value: &mut Value, prefix: &str) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if key == "$ref" {
                    if let Some(name) = v.as_str().and_then(|r| r.strip_prefix("#/$defs/")) {
                        *v = Value::String(format!("#/components/schemas/{prefix}.{name}"));
                    }
                } else {
                    rewrite_refs(v, prefix);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rewrite_refs(v, prefix)),
        _ => {}
    }
}

/// The payload of `version`, and its definitions for `components.schemas`.
fn payload(id: &str, version: &CatalogVersion) -> (Value, Map<String, Value>) {
    let mut schema = version.schema.clone();
    let mut defs = Map::new();
    if let Value::Object(map) = &mut schema {
        if let Some(Value::Object(d)) = map.remove("$defs") {
            for (name, mut def) in d {
                rewrite_refs(&mut def, id);
                defs.insert(format!("{id}.{name}"), def);
            }
        }
        map.remove("$schema");
        if let Some(schema_id) = map.remove("$id") {
            map.insert("x-schema-id".into(), schema_id);
        }
    }
    rewrite_refs(&mut schema, id);
    to_draft_07(&mut schema);
    for def in defs.values_mut() {
        to_draft_07(def);
    }
    (
        json!({"schemaFormat": PAYLOAD_SCHEMA_FORMAT, "schema": schema}),
        defs,
    )
}

/// Rewrites the 2020-12 keywords the emitter writes into their draft-07 spelling, everywhere in
/// `schema`: `prefixItems` is draft-07's array-form `items`, and the 2020-12 `items` beside it
/// (the schema of the items after them) is draft-07's `additionalItems`.
fn to_draft_07(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            if let Some(prefix) = map.remove("prefixItems") {
                if let Some(rest) = map.remove("items") {
                    map.insert("additionalItems".into(), rest);
                }
                map.insert("items".into(), prefix);
            }
            map.values_mut().for_each(to_draft_07);
        }
        Value::Array(items) => items.iter_mut().for_each(to_draft_07),
        _ => {}
    }
}

fn message(m: &CatalogMessage, v: &CatalogVersion, payload: Value) -> Value {
    let mut message = json!({
        "name": m.name,
        "title": format!("{} v{}", m.name, v.version),
        "contentType": v.content_type.as_deref().unwrap_or("application/json"),
        "headers": headers(),
        "payload": payload,
        "correlationId": {"$ref": "#/components/correlationIds/ce_correlationid"},
        "bindings": {
            "kafka": {
                "key": {
                    "type": "string",
                    "description": if v.key_properties.is_empty() {
                        v.key_expr.as_ref().map_or_else(
                            || "No partition key declared: records are spread over partitions.".to_string(),
                            |e| format!("The partition key, computed by `{e}`."),
                        )
                    } else {
                        format!("The partition key: the payload's {}.", v.key_properties.join(", "))
                    },
                    "x-key-fields": v.key_properties,
                },
                "bindingVersion": KAFKA_BINDING_VERSION
            }
        },
        "x-event-kind": m.kind.as_str(),
        "x-event-version": v.version,
        "x-event-context": m.context,
        "x-dedupe-fields": v.dedupe_fields,
    });
    if let Some(d) = &v.description {
        message["summary"] = json!(d.lines().next().unwrap_or("").trim());
        message["description"] = json!(d.trim());
    }
    if let Some(d) = &v.deprecated {
        message["x-deprecated"] = serde_json::to_value(d).unwrap_or(Value::Null);
    }
    message
}

/// The AsyncAPI 3.0 document of `model`, with the versions (and the service name) of
/// `catalog` (built from the same model).
pub fn document(model: &Model, catalog: &Catalog) -> Value {
    let mut channels: BTreeMap<String, Value> = BTreeMap::new();
    let mut messages = Map::new();
    let mut schemas = Map::new();
    let mut operations = Map::new();
    for m in &catalog.messages {
        let channel = channel_id(&m.topic);
        let entry = channels.entry(channel.clone()).or_insert_with(|| {
            json!({
                "address": m.topic,
                "description": match m.kind {
                    MessageKind::Event => format!("Events owned by the `{}` context.", m.context),
                    MessageKind::Command => format!("Commands handled by the `{}` context.", m.context),
                },
                "messages": {},
                "bindings": {"kafka": {"topic": m.topic, "bindingVersion": KAFKA_BINDING_VERSION}}
            })
        });
        for v in &m.versions {
            let id = message_id(&m.name, v.version);
            let (payload, defs) = payload(&id, v);
            schemas.extend(defs);
            entry["messages"][&id] = json!({"$ref": format!("#/components/messages/{id}")});
            messages.insert(id.clone(), message(m, v, payload));
        }
    }
    let channel_message = |name: &str, version: u32| {
        let m = catalog.message(name)?;
        Some(json!({"$ref": format!(
            "#/channels/{}/messages/{}",
            channel_id(&m.topic),
            message_id(name, version)
        )}))
    };
    // send: one operation per produced message name, listing the versions produced.
    for m in &catalog.messages {
        let versions: BTreeSet<u32> = model
            .producers_of(&m.name)
            .map(|p| p.message.version)
            .collect();
        if versions.is_empty() {
            continue;
        }
        let functions: BTreeSet<&str> = m.producers.iter().map(|p| p.function.as_str()).collect();
        operations.insert(
            format!("send.{}", m.name),
            json!({
                "action": "send",
                "channel": {"$ref": format!("#/channels/{}", channel_id(&m.topic))},
                "messages": versions.iter().filter_map(|v| channel_message(&m.name, *v)).collect::<Vec<_>>(),
                "summary": format!("{} `{}`.", match m.kind {
                    MessageKind::Event => "Publishes",
                    MessageKind::Command => "Sends",
                }, m.name),
                "x-producers": functions,
            }),
        );
    }
    // receive: one operation per handler and topic.
    for h in &model.handlers {
        let mut by_channel: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for r in &h.messages {
            if let (Some(m), Some(reference)) = (
                catalog.message(&r.name),
                channel_message(&r.name, r.version),
            ) {
                by_channel
                    .entry(channel_id(&m.topic))
                    .or_default()
                    .push(reference);
            }
        }
        for (channel, refs) in by_channel {
            let mut operation = json!({
                "action": "receive",
                "channel": {"$ref": format!("#/channels/{channel}")},
                "messages": refs,
                "summary": format!("`{}` handles `{}` in group `{}`.", h.function, h.event_type, h.group),
                "bindings": {"kafka": {
                    "groupId": {"type": "string", "enum": [h.group]},
                    "bindingVersion": KAFKA_BINDING_VERSION
                }}
            });
            if let Some(doc) = &h.doc {
                operation["description"] = json!(doc.trim());
            }
            operations.insert(
                format!(
                    "receive.{}.{}",
                    slug(&h.function.replace("::", ".")),
                    channel
                ),
                operation,
            );
        }
    }
    json!({
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": catalog.service,
            "version": "1.0.0",
            "description": format!(
                "The messages `{}` publishes, sends and handles. Generated by event-build from the code.",
                catalog.service
            )
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": messages,
            "schemas": schemas,
            "correlationIds": {
                "ce_correlationid": {
                    "description": "The CloudEvents `correlationid` extension: the id of the first envelope of the flow.",
                    "location": CORRELATION_ID_LOCATION
                }
            }
        }
    })
}
