//! What travels on NATS: CloudEvents in the NATS binding (`ce-` headers) that any NATS client
//! reads, `Nats-Msg-Id` = the event id, the key in `x-evt-key`; and the reverse, a foreign NATS
//! producer's CloudEvent handled by an app.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::consumer;
use event_nats::{NatsConfig, NatsTransport};
use event_runtime::cloudevents::binary::{Binding, decode, to_binary};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_travel_in_the_nats_binding_both_ways() {
    let Some(binary) = NatsServer::binary() else {
        return;
    };
    let dir = tempdir("wire");
    let server = NatsServer::start(&binary, &dir, &[]);
    let config = NatsConfig::new(server.url()).prefix("wire");
    let transport = NatsTransport::connect(config.clone()).await.unwrap();
    let js = transport.jetstream().clone();

    let handled: Arc<Mutex<Vec<Envelope<OrderPlaced>>>> = Arc::default();
    let sink = handled.clone();
    let mut app = App::with_transport(transport.clone()).await.unwrap();
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
    let running = app.start().await.unwrap();

    // Ours, read by a plain JetStream consumer.
    let ours = Envelope::event(OrderPlaced {
        order_id: "o-1".into(),
        total_cents: 1250,
    });
    running.publisher().publish(ours.clone()).await.unwrap();
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
    let mut batch = raw_consumer
        .fetch()
        .max_messages(1)
        .messages()
        .await
        .unwrap();
    let message = batch.next().await.unwrap().unwrap();
    assert_eq!(message.subject.as_str(), "wire.orders.0");
    let headers = message.headers.clone().unwrap();
    let header = |name: &str| headers.get(name).map(|v| v.as_str().to_owned());
    assert_eq!(header("ce-id"), Some(ours.id.to_string()));
    assert_eq!(header("ce-type").as_deref(), Some("orders.order_placed"));
    assert_eq!(header("ce-specversion").as_deref(), Some("1.0"));
    assert_eq!(header("Nats-Msg-Id"), Some(ours.id.to_string()));
    assert_eq!(header("x-evt-key").as_deref(), Some("o-1"));
    assert_eq!(header("ce_id"), None, "no Kafka-binding names on NATS");
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
    assert_eq!(read.decode::<OrderPlaced>().unwrap(), ours);

    // Theirs: a NATS producer writes the NATS binding by hand; the app handles it.
    let theirs = Envelope::event(OrderPlaced {
        order_id: "o-2".into(),
        total_cents: 99,
    });
    let wire = to_binary(&theirs, Binding::Nats).unwrap();
    let mut nats_headers = async_nats::HeaderMap::new();
    for (name, value) in &wire.headers {
        nats_headers.insert(name.as_str(), std::str::from_utf8(value).unwrap());
    }
    js.publish_with_headers(
        transport.subject("orders", 0),
        nats_headers,
        wire.payload.into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    assert!(running.wait_idle(Duration::from_secs(10)).await);
    let handled = handled.lock().unwrap().clone();
    assert_eq!(handled, [ours, theirs]);
    running.stop().await;
}
