//! What travels on NATS: by default CloudEvents in the NATS binding's structured content mode
//! (the JSON event format as the body, `content-type: application/cloudevents+json`,
//! `Nats-Msg-Id` = the event id, the key in `x-evt-key`) that a foreign client reads with the
//! official CloudEvents SDK; and the reverse: messages in binary mode (`ce-` headers), as earlier
//! releases wrote them and as a foreign producer may, are still handled.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::consumer;
use cloudevents::{AttributesReader, Data, Event};
use event_nats::{ContentMode, NatsConfig, NatsTransport};
use event_runtime::cloudevents::binary::{Binding, decode, to_binary};
use event_runtime::cloudevents::{Limits, structured};
use event_runtime::{App, Context, DomainEvent, Envelope};
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};

use event_conformance::fixture::tempdir;
use event_conformance::servers::NatsServer;

/// An order was placed.
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(context = "orders")]
struct OrderPlaced {
    #[event(key)]
    order_id: String,
    total_cents: u64,
}

fn order(id: &str, total_cents: u64) -> Envelope<OrderPlaced> {
    Envelope::event(OrderPlaced {
        order_id: id.into(),
        total_cents,
    })
}

/// An app on `transport` that records what its group handles.
async fn recording_app(
    transport: NatsTransport,
) -> (App<NatsTransport>, Arc<Mutex<Vec<Envelope<OrderPlaced>>>>) {
    let handled: Arc<Mutex<Vec<Envelope<OrderPlaced>>>> = Arc::default();
    let sink = handled.clone();
    let mut app = App::with_transport(transport).await.unwrap();
    app.partitions(1).subscribe::<OrderPlaced, _>(
        "billing",
        move |event: Envelope<OrderPlaced>, _: Context| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push(event);
                Ok(())
            }
        },
    );
    (app, handled)
}

fn header(message: &async_nats::Message, name: &str) -> Option<String> {
    message
        .headers
        .as_ref()?
        .get(name)
        .map(|v| v.as_str().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_client_reads_our_events_with_the_official_sdk() {
    let Some(binary) = NatsServer::binary() else {
        return;
    };
    let dir = tempdir("wire-structured");
    let server = NatsServer::start(&binary, &dir, &[]);
    let transport = NatsTransport::connect(NatsConfig::new(server.url()).prefix("wire"))
        .await
        .unwrap();
    let (app, handled) = recording_app(transport.clone()).await;
    let running = app.start().await.unwrap();

    // A foreign client: a plain NATS subscription on the partition's subject.
    let client = async_nats::connect(server.url()).await.unwrap();
    let mut subscription = client
        .subscribe(transport.subject("orders", 0))
        .await
        .unwrap();
    client.flush().await.unwrap();

    let mut ours = order("o-1", 1250).with_subject("order/o-1");
    ours.extensions.insert(
        "tenant".into(),
        event_runtime::envelope::ExtensionValue::String("acme".into()),
    );
    running.publisher().publish(ours.clone()).await.unwrap();
    let message = tokio::time::timeout(Duration::from_secs(10), subscription.next())
        .await
        .expect("delivered to the plain subscription")
        .unwrap();

    // Three headers: the content type of the JSON event format, JetStream's dedupe id, the key.
    assert_eq!(
        header(&message, "content-type").as_deref(),
        Some("application/cloudevents+json")
    );
    assert_eq!(header(&message, "Nats-Msg-Id"), Some(ours.id.to_string()));
    assert_eq!(header(&message, "x-evt-key").as_deref(), Some("o-1"));
    let names: Vec<String> = message
        .headers
        .iter()
        .flat_map(|h| h.iter().map(|(name, _)| name.to_string()))
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");

    // The body is the event, as the official Rust SDK reads it.
    let event: Event = serde_json::from_slice(&message.payload).expect("the SDK parses the body");
    assert_eq!(event.specversion().as_str(), "1.0");
    assert_eq!(event.id(), ours.id.to_string());
    assert_eq!(event.ty(), "orders.order_placed");
    assert_eq!(event.source().to_string(), "/orders");
    assert_eq!(event.subject(), Some("order/o-1"));
    assert_eq!(event.datacontenttype(), Some("application/json"));
    assert_eq!(
        event.time().map(|t| t.timestamp_nanos_opt().unwrap()),
        Some(ours.time.unix_timestamp_nanos() as i64)
    );
    for (name, value) in [
        ("partitionkey", "o-1"),
        ("eventversion", "1"),
        ("tenant", "acme"),
    ] {
        assert_eq!(
            event.extension(name).map(ToString::to_string).as_deref(),
            Some(value),
            "{name}"
        );
    }
    match event.data() {
        Some(Data::Json(json)) => assert_eq!(
            json,
            &serde_json::json!({"order_id": "o-1", "total_cents": 1250})
        ),
        other => panic!("expected JSON data, got {other:?}"),
    }
    // And our own reader of the format gets the event back whole.
    let read = structured::decode(&message.payload, &Limits::default()).unwrap();
    assert_eq!(read.decode::<OrderPlaced>().unwrap(), ours);

    // The stored copy is the same message, at offset 0 of the partition's stream.
    let stored = transport
        .jetstream()
        .create_consumer_on_stream(
            consumer::pull::Config {
                ack_policy: consumer::AckPolicy::None,
                ..Default::default()
            },
            &transport.stream_name("orders", 0),
        )
        .await
        .unwrap()
        .fetch()
        .max_messages(1)
        .messages()
        .await
        .unwrap()
        .next()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.subject.as_str(), "wire.orders.0");
    assert_eq!(stored.payload, message.payload);

    // Publishing the same event again within the duplicate window stores it once.
    let again = running.publisher().publish(ours.clone()).await.unwrap();
    assert_eq!(again.offset, 0);
    assert!(running.wait_idle(Duration::from_secs(10)).await);
    assert_eq!(handled.lock().unwrap().clone(), [ours]);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_mode_messages_are_still_handled() {
    let Some(binary) = NatsServer::binary() else {
        return;
    };
    let dir = tempdir("wire-binary");
    let server = NatsServer::start(&binary, &dir, &[]);
    let config = NatsConfig::new(server.url()).prefix("wire");
    let transport = NatsTransport::connect(config.clone()).await.unwrap();
    let js = transport.jetstream().clone();
    let (app, handled) = recording_app(transport.clone()).await;
    let running = app.start().await.unwrap();

    // A producer on binary mode (an earlier release's wire, or `ContentMode::Binary`).
    let old = NatsTransport::connect(config.content_mode(ContentMode::Binary))
        .await
        .unwrap();
    let mut old_app = App::with_transport(old).await.unwrap();
    old_app.partitions(1);
    let binary_event = order("o-1", 1250);
    old_app
        .publisher()
        .publish(binary_event.clone())
        .await
        .unwrap();

    // What it wrote: every attribute in a `ce-` header, the payload as the body.
    let stream = transport.stream_name("orders", 0);
    let raw_consumer = js
        .create_consumer_on_stream(
            consumer::pull::Config {
                ack_policy: consumer::AckPolicy::None,
                ..Default::default()
            },
            &stream,
        )
        .await
        .unwrap();
    let message = raw_consumer
        .fetch()
        .max_messages(1)
        .messages()
        .await
        .unwrap()
        .next()
        .await
        .unwrap()
        .unwrap();
    let headers = message.headers.clone().unwrap();
    let get = |name: &str| headers.get(name).map(|v| v.as_str().to_owned());
    assert_eq!(get("ce-id"), Some(binary_event.id.to_string()));
    assert_eq!(get("ce-type").as_deref(), Some("orders.order_placed"));
    assert_eq!(get("ce-specversion").as_deref(), Some("1.0"));
    assert_eq!(get("content-type").as_deref(), Some("application/json"));
    assert_eq!(get("Nats-Msg-Id"), Some(binary_event.id.to_string()));
    assert_eq!(get("x-evt-key").as_deref(), Some("o-1"));
    assert_eq!(get("ce_id"), None, "no Kafka-binding names on NATS");
    let pairs: Vec<(String, Vec<u8>)> = headers
        .iter()
        .flat_map(|(name, values)| {
            values
                .iter()
                .map(move |v| (name.to_string(), v.as_str().as_bytes().to_vec()))
        })
        .collect();
    let read = decode(
        pairs.iter().map(|(n, v)| (n.as_str(), v.as_slice())),
        &message.payload,
        Binding::Nats,
        &Default::default(),
    )
    .unwrap();
    assert_eq!(read.decode::<OrderPlaced>().unwrap(), binary_event);

    // A foreign producer writes the NATS binding's binary mode by hand (no key header: its
    // `ce-partitionkey` puts it in the key's lane). One key throughout, so the order is the log's.
    let foreign = order("o-1", 99);
    let wire = to_binary(&foreign, Binding::Nats).unwrap();
    let mut nats_headers = async_nats::HeaderMap::new();
    for (name, value) in &wire.headers {
        nats_headers.insert(name, std::str::from_utf8(value).unwrap());
    }
    js.publish_with_headers(transport.subject("orders", 0), nats_headers, wire.payload)
        .await
        .unwrap()
        .await
        .unwrap();

    // And one in structured mode after them, from this release.
    let structured_event = order("o-1", 7);
    running
        .publisher()
        .publish(structured_event.clone())
        .await
        .unwrap();
    assert!(running.wait_idle(Duration::from_secs(10)).await);
    assert_eq!(
        handled.lock().unwrap().clone(),
        [binary_event, foreign, structured_event]
    );
    running.stop().await;
}
