//! Traces through OpenTelemetry's in-memory exporter: the spans' names and attributes (frozen:
//! dashboards depend on them), and the parent/child/link structure from a request through two
//! hops of events, through the outbox, from a foreign producer, and for old records and replays.
//!
//! Each test runs in a process of its own (nextest), so each installs its own global subscriber.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use event_runtime::envelope::TraceContext;
use event_runtime::transport::Transport;
use event_runtime::{App, Context, DomainEvent, Envelope, HandlerError};
use opentelemetry::trace::{SpanId, SpanKind, TraceId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use serde::{Deserialize, Serialize};
use tracing_subscriber::layer::SubscriberExt;

mod common;

#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone)]
#[event(context = "orders")]
struct OrderPlaced {
    #[event(key)]
    order: String,
}

#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone)]
#[event(context = "shipping")]
struct OrderShipped {
    #[event(key)]
    order: String,
}

/// Installs the OpenTelemetry layer over an in-memory exporter as the global subscriber.
fn install() -> (SdkTracerProvider, InMemorySpanExporter) {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    tracing::subscriber::set_global_default(subscriber).expect("one subscriber per process");
    (provider, exporter)
}

/// The app of the tests: `shipping` ships every placed order, `mail` reads every shipment.
async fn shop<T: Transport>(app: &mut App<T>) {
    app.subscribe::<OrderPlaced, _>(
        "shipping",
        |event: Envelope<OrderPlaced>, ctx: Context| async move {
            ctx.publish(OrderShipped {
                order: event.data.order,
            })?;
            Ok::<(), HandlerError>(())
        },
    );
    app.subscribe::<OrderShipped, _>(
        "mail",
        |_event: Envelope<OrderShipped>, _ctx: Context| async move { Ok::<(), HandlerError>(()) },
    );
}

/// The finished spans, once `count` of them have ended.
async fn spans(exporter: &InMemorySpanExporter, count: usize) -> Vec<SpanData> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let spans = exporter.get_finished_spans().unwrap();
        if spans.len() >= count {
            return spans;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {count} spans: {:?}",
            spans.len(),
            spans.iter().map(|s| &s.name).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn named<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
    let found: Vec<&SpanData> = spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(found.len(), 1, "one `{name}` span: {spans:#?}");
    found[0]
}

/// The value of `key` on `span` as exported: its type is part of the contract too (a query for
/// `messaging.batch.message_count > 1` finds nothing if the count is a string).
fn value<'a>(span: &'a SpanData, key: &str) -> &'a opentelemetry::Value {
    &span
        .attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .unwrap_or_else(|| panic!("no `{key}` on `{}`", span.name))
        .value
}

/// The `error.type` of every span named `name` (`None`: it succeeded), sorted: spans are
/// exported as they end, and a test's own publish may end after a handler's first attempt has
/// failed, so tests compare the outcomes, not their order.
fn outcomes(spans: &[SpanData], name: &str) -> Vec<Option<String>> {
    let mut outcomes: Vec<_> = spans
        .iter()
        .filter(|s| s.name == name)
        .map(|s| attributes(s).get("error.type").cloned())
        .collect();
    outcomes.sort();
    outcomes
}

fn attributes(span: &SpanData) -> BTreeMap<String, String> {
    span.attributes
        .iter()
        .map(|kv| (kv.key.to_string(), kv.value.to_string()))
        .collect()
}

/// Writes `envelope` to `orders` as a foreign producer would: CloudEvents binary mode, straight
/// to the engine, with its context only in the envelope (no protocol `traceparent`).
async fn append_foreign<T: Transport>(transport: &T, envelope: &Envelope<OrderPlaced>) {
    let message = event_runtime::cloudevents::binary::to_binary(
        envelope,
        event_runtime::cloudevents::binary::Binding::Kafka,
    )
    .unwrap();
    assert!(message.headers.get("traceparent").is_none());
    transport
        .append(
            "orders",
            vec![event_runtime::transport::OutgoingRecord {
                partition: 0,
                key: message.key,
                headers: message.headers,
                payload: message.payload,
            }],
        )
        .await
        .unwrap();
}

const FOREIGN: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// One request publishes an order; `shipping` handles it and emits a shipment, which `mail`
/// handles: one trace, request -> send -> process -> send -> process, each span a child of the
/// one before, with the messaging attributes the conventions name.
async fn one_request_is_one_trace_across_two_hops<T: Transport>(
    exporter: &InMemorySpanExporter,
    mut app: App<T>,
    system: &str,
) {
    shop(&mut app).await;
    let running = app.start().await.unwrap();
    {
        let request = tracing::info_span!("POST /orders", otel.kind = "server");
        let publisher = running.publisher();
        let ctx = event_runtime::request::RequestContext::new("req-7", None);
        let publish = event_runtime::request::scope(ctx, async {
            publisher
                .publish(Envelope::event(OrderPlaced {
                    order: "o-1".into(),
                }))
                .await
                .unwrap();
        });
        tracing::Instrument::instrument(publish, request).await;
    }
    assert!(running.wait_idle(Duration::from_secs(10)).await);
    let spans = spans(exporter, 5).await;
    let request = named(&spans, "POST /orders");
    let send_orders = named(&spans, "send orders");
    let process_orders = named(&spans, "process orders");
    let send_shipping = named(&spans, "send shipping");
    let process_shipping = named(&spans, "process shipping");
    let trace = request.span_context.trace_id();
    for span in [send_orders, process_orders, send_shipping, process_shipping] {
        assert_eq!(span.span_context.trace_id(), trace, "{}", span.name);
    }
    let parent = |child: &SpanData, parent: &SpanData| {
        assert_eq!(
            child.parent_span_id,
            parent.span_context.span_id(),
            "{} is a child of {}",
            child.name,
            parent.name
        );
    };
    parent(send_orders, request);
    parent(process_orders, send_orders);
    parent(send_shipping, process_orders);
    parent(process_shipping, send_shipping);
    assert!(process_orders.parent_span_is_remote);
    assert_eq!(send_orders.span_kind, SpanKind::Producer);
    assert_eq!(process_orders.span_kind, SpanKind::Consumer);

    // Frozen names and values: a rename breaks dashboards.
    let process = attributes(process_orders);
    let keys: BTreeSet<&str> = process.keys().map(String::as_str).collect();
    let expected: BTreeSet<&str> = [
        "messaging.system",
        "messaging.operation.type",
        "messaging.operation.name",
        "messaging.destination.name",
        "messaging.destination.partition.id",
        "messaging.consumer.group.name",
        "messaging.message.id",
        "messaging.message.conversation_id",
        "evt.type",
        "evt.replay",
        "evt.delivery.attempt",
        "evt.outcome",
    ]
    .into_iter()
    .collect();
    assert!(
        expected.is_subset(&keys),
        "missing {:?}",
        expected.difference(&keys).collect::<Vec<_>>()
    );
    assert_eq!(process["messaging.system"], system);
    assert_eq!(process["messaging.operation.type"], "process");
    assert_eq!(process["messaging.destination.name"], "orders");
    assert_eq!(process["messaging.consumer.group.name"], "shipping");
    assert_eq!(process["messaging.message.conversation_id"], "req-7");
    assert_eq!(process["evt.type"], "orders.order_placed");
    assert_eq!(process["evt.replay"], "false");
    assert_eq!(process["evt.delivery.attempt"], "1");
    assert_eq!(process["evt.outcome"], "handled");
    let shipped = attributes(process_shipping);
    assert_eq!(shipped["messaging.message.conversation_id"], "req-7");
    assert_eq!(
        shipped["evt.causation_id"], process["messaging.message.id"],
        "the shipment was caused by the order"
    );
    let send = attributes(send_orders);
    assert_eq!(send["messaging.operation.type"], "send");
    assert_eq!(send["messaging.destination.name"], "orders");
    assert_eq!(send["messaging.batch.message_count"], "1");
    // Typed as the conventions type them: counts are integers, the partition id a string.
    use opentelemetry::Value;
    assert_eq!(
        value(process_orders, "evt.delivery.attempt"),
        &Value::I64(1)
    );
    assert_eq!(value(process_orders, "evt.replay"), &Value::Bool(false));
    assert!(matches!(
        value(process_orders, "messaging.destination.partition.id"),
        Value::String(_)
    ));
    assert_eq!(
        value(send_orders, "messaging.batch.message_count"),
        &Value::I64(1)
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_is_one_trace_across_two_hops_in_memory() {
    let (_provider, exporter) = install();
    let app = App::in_memory().await.unwrap();
    one_request_is_one_trace_across_two_hops(&exporter, app, "evt_memory").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_is_one_trace_across_two_hops_on_sqlite() {
    let (_provider, exporter) = install();
    let dir = common::tempdir("telemetry");
    let app = App::embedded(dir.join("log.db")).await.unwrap();
    one_request_is_one_trace_across_two_hops(&exporter, app, "evt_sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_is_one_trace_across_two_hops_on_nats() {
    let Some(url) = common::server_url("EVT_NATS_URL") else {
        return;
    };
    let (_provider, exporter) = install();
    let prefix = format!("tel{}", uuid::Uuid::now_v7().simple());
    let transport =
        event_nats::NatsTransport::connect(event_nats::NatsConfig::new(url).prefix(&prefix))
            .await
            .unwrap();
    let app = App::new(
        transport,
        event_runtime::app::Stores::in_memory().await.unwrap(),
    );
    one_request_is_one_trace_across_two_hops(&exporter, app, "nats").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_is_one_trace_across_two_hops_on_kafka() {
    let Some(bootstrap) = common::server_url("EVT_KAFKA_BOOTSTRAP") else {
        return;
    };
    let (_provider, exporter) = install();
    let prefix = format!("tel{}", uuid::Uuid::now_v7().simple());
    let transport = event_kafka::KafkaTransport::connect(
        event_kafka::KafkaConfig::new(bootstrap).prefix(&prefix),
    )
    .unwrap();
    let app = App::new(
        transport,
        event_runtime::app::Stores::in_memory().await.unwrap(),
    );
    one_request_is_one_trace_across_two_hops(&exporter, app, "kafka").await;
}

/// A foreign producer's record carries only its CloudEvents `traceparent` (no per-hop header):
/// the consumer joins that trace as its child. A malformed `tracestate` beside it is dropped,
/// not fatal. Our own publisher, outside any span, sends such an envelope as a child of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_traceparent_is_the_parent_and_a_bad_tracestate_is_dropped() {
    let (_provider, exporter) = install();
    let transport = event_runtime::transport::memory::MemoryTransport::new();
    let mut app = App::new(
        transport.clone(),
        event_runtime::app::Stores::in_memory().await.unwrap(),
    );
    shop(&mut app).await;
    let running = app.start().await.unwrap();
    let foreign_trace = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
    let foreign_span = SpanId::from_hex("00f067aa0ba902b7").unwrap();
    let envelope = |order: &str| {
        Envelope::event(OrderPlaced {
            order: order.into(),
        })
        .with_trace(TraceContext {
            traceparent: FOREIGN.to_owned(),
            tracestate: Some("not a=valid,,state!".to_owned()),
        })
    };
    // The foreign producer: CloudEvents binary mode, written straight to the engine.
    append_foreign(&transport, &envelope("o-2")).await;
    assert!(running.wait_idle(Duration::from_secs(10)).await);
    let spans = spans(&exporter, 3).await;
    let process = named(&spans, "process orders");
    assert_eq!(process.span_context.trace_id(), foreign_trace);
    assert_eq!(process.parent_span_id, foreign_span);
    assert!(process.parent_span_is_remote);
    assert_eq!(attributes(process)["evt.outcome"], "handled");

    // Our publisher, outside any span: its `send` continues the envelope's trace.
    exporter.reset();
    running.publisher().publish(envelope("o-3")).await.unwrap();
    assert!(running.wait_idle(Duration::from_secs(10)).await);
    let spans = self::spans(&exporter, 4).await;
    let send = named(&spans, "send orders");
    let process = named(&spans, "process orders");
    assert_eq!(send.span_context.trace_id(), foreign_trace);
    assert_eq!(send.parent_span_id, foreign_span);
    assert_eq!(process.parent_span_id, send.span_context.span_id());
    running.stop().await;
}

/// A record older than `PARENT_WITHIN`, and a replay, start a new trace linked to the producer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_record_starts_a_new_trace_linked_to_its_producer() {
    let (_provider, exporter) = install();
    let mut app = App::in_memory().await.unwrap();
    shop(&mut app).await;
    let running = app.start().await.unwrap();
    let mut envelope = Envelope::event(OrderPlaced {
        order: "o-3".into(),
    })
    .with_trace(TraceContext {
        traceparent: FOREIGN.to_owned(),
        tracestate: None,
    });
    envelope.time -= event_runtime::telemetry::PARENT_WITHIN * 2;
    running.publisher().publish(envelope).await.unwrap();
    assert!(running.wait_idle(Duration::from_secs(10)).await);
    let spans = spans(&exporter, 4).await;
    let process = named(&spans, "process orders");
    let foreign = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
    assert_ne!(process.span_context.trace_id(), foreign);
    assert_eq!(process.parent_span_id, SpanId::INVALID);
    let links: Vec<TraceId> = process
        .links
        .iter()
        .map(|l| l.span_context.trace_id())
        .collect();
    assert_eq!(links, vec![foreign], "linked to the producer");
    running.stop().await;
}

/// A handler failing for good: its `process` span ends with an error status and `error.type`,
/// and a `settle` span under it writes the dead letter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_is_settled_under_its_process_span() {
    let (_provider, exporter) = install();
    let mut app = App::in_memory().await.unwrap();
    app.subscribe::<OrderPlaced, _>(
        "shipping",
        |_event: Envelope<OrderPlaced>, _ctx: Context| async move {
            Err::<(), _>(HandlerError::permanent("no such warehouse"))
        },
    );
    let running = app.start().await.unwrap();
    place(&running, "o-4").await;
    let spans = spans(&exporter, 3).await;
    let process = named(&spans, "process orders");
    let settle = named(&spans, "settle orders");
    assert_eq!(settle.parent_span_id, process.span_context.span_id());
    let attrs = attributes(process);
    assert_eq!(attrs["evt.outcome"], "dead_lettered");
    assert_eq!(attrs["error.type"], "permanent");
    assert!(
        matches!(process.status, opentelemetry::trace::Status::Error { .. }),
        "{:?}",
        process.status
    );
    assert_eq!(attributes(settle)["error.type"], "permanent");
    running.stop().await;
}

/// A publish the encoder refuses (an extension name CloudEvents forbids) ends its `send` span
/// with an error status and `error.type` `encode`, and appends nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_send_ends_its_span_with_an_error() {
    let (_provider, exporter) = install();
    let app = App::in_memory().await.unwrap();
    let mut envelope = Envelope::event(OrderPlaced {
        order: "o-5".into(),
    });
    envelope.extensions.insert(
        "Not-Valid".into(),
        event_runtime::envelope::ExtensionValue::String("x".into()),
    );
    let err = app.publisher().publish(envelope).await.unwrap_err();
    assert!(
        matches!(err, event_runtime::publish::PublishError::Encode(_)),
        "{err}"
    );
    let spans = spans(&exporter, 1).await;
    let send = named(&spans, "send orders");
    assert_eq!(attributes(send)["error.type"], "encode");
    assert!(
        matches!(send.status, opentelemetry::trace::Status::Error { .. }),
        "{:?}",
        send.status
    );
}

/// Publishes order `order` through `running` and waits until its groups are idle.
async fn place<T: Transport>(running: &event_runtime::Running<T>, order: &str) {
    running
        .publisher()
        .publish(Envelope::event(OrderPlaced {
            order: order.into(),
        }))
        .await
        .unwrap();
    assert!(running.wait_idle(Duration::from_secs(10)).await);
}

/// What the two-topic tests' handler emits for order `o-1`: a gift order on `orders`, then its
/// shipment on `shipping` (appended in that order).
fn emit_to_two_topics(ctx: &Context) -> Result<(), HandlerError> {
    ctx.publish(OrderPlaced {
        order: "o-1-gift".into(),
    })?;
    ctx.publish(OrderShipped {
        order: "o-1".into(),
    })?;
    Ok(())
}

/// A handler's events to two topics are sent in one batch, each topic's `send` span made before
/// the first append. When the first topic's append fails, the second is never appended: its span
/// ends as a failed send (`aborted`), not as a success; the handler's retry then sends both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_never_made_after_a_failed_topic_ends_as_aborted() {
    let (_provider, exporter) = install();
    let flaky = common::Flaky::new(event_runtime::transport::memory::MemoryTransport::new(), 0);
    let (budget, refused) = (flaky.appends.clone(), flaky.refused.clone());
    let armed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let mut app = App::with_transport(flaky).await.unwrap();
    app.subscribe::<OrderPlaced, _>(
        "fulfil",
        move |event: Envelope<OrderPlaced>, ctx: Context| {
            let (budget, armed) = (budget.clone(), armed.clone());
            async move {
                if event.data.order != "o-1" {
                    return Ok(());
                }
                // The first attempt's first append (topic `orders`, before `shipping`) fails.
                if armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
                    budget.store(1, std::sync::atomic::Ordering::SeqCst);
                }
                emit_to_two_topics(&ctx)
            }
        },
    );
    let running = app.start().await.unwrap();
    place(&running, "o-1").await;
    running.stop().await;
    assert_eq!(refused.load(std::sync::atomic::Ordering::SeqCst), 1);

    let spans = exporter.get_finished_spans().unwrap();
    let sends = |name: &str| outcomes(&spans, name);
    // The test's publish and the retry's succeed; the failed attempt's is refused.
    assert_eq!(
        sends("send orders"),
        [None, None, Some("unavailable".into())],
        "{spans:#?}"
    );
    assert_eq!(
        sends("send shipping"),
        [None, Some("aborted".into())],
        "{spans:#?}"
    );
    let aborted = spans
        .iter()
        .find(|s| s.name == "send shipping" && attributes(s).contains_key("error.type"))
        .unwrap();
    assert!(
        matches!(aborted.status, opentelemetry::trace::Status::Error { .. }),
        "{:?}",
        aborted.status
    );
}

/// In the SQLite engine's inbox, a handler's events are appended topic by topic inside its
/// transaction. When a later topic's append fails, the rollback takes the earlier topics'
/// appends with it: their `send` spans end as `aborted`, not as successes. The engine's refusal
/// is a trigger on the log's table, as a full disk or a failing constraint would refuse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_the_sqlite_inbox_a_topic_rolled_back_by_a_later_one_ends_as_aborted() {
    let (_provider, exporter) = install();
    let dir = common::tempdir("telemetry-inbox");
    let mut app = App::embedded(dir.join("log.db")).await.unwrap();
    let pool = common::sqlite_pool(dir.join("log.db")).await;
    app.group_options(
        "fulfil",
        event_runtime::app::GroupOptions {
            inbox: true,
            retry: event_runtime::retry::RetryPolicy {
                immediate: 1,
                backoff: 0,
                ..event_runtime::retry::RetryPolicy::default()
            },
            ..event_runtime::app::GroupOptions::default()
        },
    )
    .subscribe::<OrderPlaced, _>("fulfil", |event: Envelope<OrderPlaced>, ctx: Context| {
        async move {
            if event.data.order != "o-1" {
                return Ok(());
            }
            // `orders` is appended first, then `shipping`, which the engine refuses.
            emit_to_two_topics(&ctx)
        }
    });
    let running = app.start().await.unwrap();
    sqlx::query(
        "CREATE TRIGGER refuse_shipping BEFORE INSERT ON evt_records \
         WHEN NEW.topic = 'shipping' BEGIN SELECT RAISE(ABORT, 'shipping refused'); END",
    )
    .execute(&pool)
    .await
    .unwrap();
    place(&running, "o-1").await;
    let stats = running.stats("fulfil").unwrap();
    running.stop().await;
    assert_eq!(stats.dead_lettered, 1, "{stats:?}");

    let spans = exporter.get_finished_spans().unwrap();
    let sends = |name: &str| outcomes(&spans, name);
    // The test's own publish succeeds; each of the two attempts appended `orders`, then saw
    // `shipping` refused, and rolled back.
    assert_eq!(
        sends("send orders"),
        [None, Some("aborted".into()), Some("aborted".into())],
        "{spans:#?}"
    );
    let shipping = sends("send shipping");
    assert_eq!(shipping.len(), 2, "{spans:#?}");
    assert!(
        shipping
            .iter()
            .all(|e| e.as_deref().is_some_and(|e| e != "aborted")),
        "the refused append ends with the engine's error kind: {shipping:?}"
    );
    for span in spans.iter().filter(|s| s.name.starts_with("send ")) {
        let failed = attributes(span).contains_key("error.type");
        assert_eq!(
            matches!(span.status, opentelemetry::trace::Status::Error { .. }),
            failed,
            "{span:#?}"
        );
    }
}

/// Through the transactional outbox (SQLite stores on the memory engine, inbox mode): the
/// shipment is processed as a child of the `process` span that created it, never of the relay,
/// whose `send` is a root linked to that creation context.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_the_outbox_the_creator_is_the_parent_not_the_relay() {
    let (_provider, exporter) = install();
    let dir = common::tempdir("telemetry");
    let file = event_runtime::transport::sqlite::SqliteTransport::open(dir.join("stores.db"))
        .await
        .unwrap();
    let mut app = App::new(
        event_runtime::transport::memory::MemoryTransport::new(),
        event_runtime::app::Stores::sqlite(&file),
    );
    app.group_options(
        "shipping",
        event_runtime::app::GroupOptions {
            inbox: true,
            ..Default::default()
        },
    );
    shop(&mut app).await;
    let running = app.start().await.unwrap();
    place(&running, "o-5").await;
    let spans = spans(&exporter, 4).await;
    let process_orders = named(&spans, "process orders");
    let relay = named(&spans, "send shipping");
    let process_shipping = named(&spans, "process shipping");
    assert_eq!(
        process_shipping.parent_span_id,
        process_orders.span_context.span_id(),
        "the creator is the parent"
    );
    assert_eq!(
        process_shipping.span_context.trace_id(),
        process_orders.span_context.trace_id()
    );
    assert_eq!(relay.parent_span_id, SpanId::INVALID, "the relay is a root");
    let links: Vec<SpanId> = relay
        .links
        .iter()
        .map(|l| l.span_context.span_id())
        .collect();
    assert_eq!(links, vec![process_orders.span_context.span_id()]);
    running.stop().await;
}

/// Follows an order until it ships.
#[derive(Serialize, Deserialize, Debug)]
struct Delivery {
    placed: bool,
}

impl event_runtime::saga::Saga for Delivery {
    const NAME: &'static str = "delivery";

    fn messages(on: &mut event_runtime::saga::Messages<Self>) {
        on.on::<OrderPlaced>().on::<OrderShipped>();
    }
}

impl event_runtime::saga::On<OrderPlaced> for Delivery {
    const UNKNOWN: event_runtime::saga::Unknown = event_runtime::saga::Unknown::Start;

    fn key(event: &OrderPlaced) -> String {
        event.order.clone()
    }

    fn start(
        _: &OrderPlaced,
        _: &mut event_runtime::saga::Step<'_>,
    ) -> Result<event_runtime::saga::Transition<Self>, HandlerError> {
        Ok(event_runtime::saga::Transition::next(Delivery {
            placed: true,
        }))
    }

    fn handle(
        self,
        _: &OrderPlaced,
        _: &mut event_runtime::saga::Step<'_>,
    ) -> Result<event_runtime::saga::Transition<Self>, HandlerError> {
        Ok(event_runtime::saga::Transition::next(self))
    }
}

impl event_runtime::saga::On<OrderShipped> for Delivery {
    const UNKNOWN: event_runtime::saga::Unknown = event_runtime::saga::Unknown::Discard;

    fn key(event: &OrderShipped) -> String {
        event.order.clone()
    }

    fn handle(
        self,
        _: &OrderShipped,
        _: &mut event_runtime::saga::Step<'_>,
    ) -> Result<event_runtime::saga::Transition<Self>, HandlerError> {
        Ok(event_runtime::saga::Transition::complete(self))
    }
}

/// Each saga transition is a `saga {name}` span under its message's `process` span, with the
/// instance, the version and status it moved to, and whether it applied or was discarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saga_transition_is_a_span_under_its_process_span() {
    let (_provider, exporter) = install();
    let dir = common::tempdir("telemetry-saga");
    let mut app = App::embedded(dir.join("log.db")).await.unwrap();
    app.saga::<Delivery>();
    let running = app.start().await.unwrap();
    let publisher = running.publisher();
    publisher
        .publish(Envelope::event(OrderPlaced {
            order: "o-7".into(),
        }))
        .await
        .unwrap();
    assert!(running.wait_idle(Duration::from_secs(10)).await);
    for order in ["o-7", "o-unknown"] {
        publisher
            .publish(Envelope::event(OrderShipped {
                order: order.into(),
            }))
            .await
            .unwrap();
    }
    assert!(running.wait_idle(Duration::from_secs(10)).await);
    running.stop().await;
    // Per message: send, process, saga.
    let spans = spans(&exporter, 9).await;
    let sagas: Vec<&SpanData> = spans.iter().filter(|s| s.name == "saga delivery").collect();
    assert_eq!(
        sagas.len(),
        3,
        "{:?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    let started = sagas
        .iter()
        .find(|s| attributes(s).get("evt.saga.version").map(String::as_str) == Some("1"))
        .expect("the start");
    let attrs = attributes(started);
    assert_eq!(attrs["evt.saga.name"], "delivery");
    assert_eq!(attrs["evt.saga.key"], "o-7");
    assert_eq!(attrs["evt.saga.status"], "running");
    assert_eq!(attrs["evt.saga.decision"], "applied");
    assert_eq!(started.span_kind, SpanKind::Internal);
    let process = named(&spans, "process orders");
    assert_eq!(started.parent_span_id, process.span_context.span_id());
    let completed = sagas
        .iter()
        .find(|s| attributes(s).get("evt.saga.version").map(String::as_str) == Some("2"))
        .expect("the completion");
    assert_eq!(attributes(completed)["evt.saga.status"], "completed");
    let discarded = sagas
        .iter()
        .find(|s| attributes(s)["evt.saga.key"] == "o-unknown")
        .expect("the discarded message");
    assert_eq!(attributes(discarded)["evt.saga.decision"], "discarded");
    assert!(!attributes(discarded).contains_key("evt.saga.version"));
}

/// A record whose producer's context is not sampled (W3C flag 0) gets no `process` span: its
/// handler runs in that context, so the spans it opens and the events it emits stay in the
/// producer's trace, not sampled downstream. `record_unsampled(true)` gives it its span again.
/// The sampler here samples everything, so each span that exists is seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsampled_record_gets_no_process_span_and_keeps_its_producers_trace() {
    const UNSAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_sampler(opentelemetry_sdk::trace::Sampler::AlwaysOn)
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    tracing::subscriber::set_global_default(subscriber).expect("one subscriber per process");
    let foreign_trace = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
    let foreign_span = SpanId::from_hex("00f067aa0ba902b7").unwrap();

    let transport = event_runtime::transport::memory::MemoryTransport::new();
    let mut app = App::new(
        transport.clone(),
        event_runtime::app::Stores::in_memory().await.unwrap(),
    );
    app.subscribe::<OrderPlaced, _>(
        "shipping",
        |event: Envelope<OrderPlaced>, ctx: Context| async move {
            // The handler's own span (sampled: the sampler samples everything).
            drop(tracing::info_span!("charge").entered());
            // Created outside it, in the producer's context.
            ctx.publish(OrderShipped {
                order: event.data.order,
            })?;
            Ok::<(), HandlerError>(())
        },
    );
    let running = app.start().await.unwrap();
    let placed = |order: &str| {
        Envelope::event(OrderPlaced {
            order: order.into(),
        })
        .with_trace(TraceContext {
            traceparent: UNSAMPLED.to_owned(),
            tracestate: None,
        })
    };
    // A foreign producer's record: the context rides only in the envelope.
    append_foreign(&transport, &placed("o-1")).await;
    assert!(running.wait_idle(Duration::from_secs(10)).await);
    // The handler's span and the emitted event's `send`, both in the producer's trace; no
    // `process` span.
    let spans = spans(&exporter, 2).await;
    let names: BTreeSet<&str> = spans.iter().map(|s| s.name.as_ref()).collect();
    assert_eq!(
        names,
        BTreeSet::from(["charge", "send shipping"]),
        "{spans:#?}"
    );
    for span in &spans {
        assert_eq!(span.span_context.trace_id(), foreign_trace, "{span:#?}");
        assert_eq!(span.parent_span_id, foreign_span, "{span:#?}");
        assert!(span.parent_span_is_remote, "{span:#?}");
    }
    // The emitted event carries the producer's trace, not sampled.
    let shipped = transport.fetch("shipping", 0, 0, 10).await.unwrap();
    let mut all = shipped;
    for partition in 1..transport.end_offsets("shipping").await.unwrap().len() as u32 {
        all.extend(transport.fetch("shipping", partition, 0, 10).await.unwrap());
    }
    assert_eq!(all.len(), 1);
    let envelope = event_runtime::transport::decode_record(&all[0], &Default::default()).unwrap();
    let created = envelope.trace.expect("a creation context").traceparent;
    assert!(
        created.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && created.ends_with("-00"),
        "{created}"
    );

    // With every record recorded, it has its span again: a child of the producer.
    exporter.reset();
    event_runtime::telemetry::record_unsampled(true);
    running.publisher().publish(placed("o-2")).await.unwrap();
    assert!(running.wait_idle(Duration::from_secs(10)).await);
    let spans = self::spans(&exporter, 4).await;
    let process = named(&spans, "process orders");
    assert_eq!(process.span_context.trace_id(), foreign_trace);
    running.stop().await;
}
