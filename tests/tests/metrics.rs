//! The metrics endpoint after a scripted run: a poison message dead-lettered, a consumer stuck
//! behind a handler that never returns (lagging, then stalled), what was sent; scraped over
//! HTTP as Prometheus would, in the OpenMetrics text format.

use std::time::Duration;

use event_runtime::{App, Context, DomainEvent, Envelope, HandlerError};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone)]
#[event(context = "orders")]
struct OrderPlaced {
    #[event(key)]
    customer: String,
    order: u32,
}

/// `GET /metrics` on `addr`: the status line's code, the content type and the body.
async fn scrape(addr: std::net::SocketAddr) -> (u16, String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("a full response");
    let code = head.split(' ').nth(1).unwrap().parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|l| l.strip_prefix("content-type: "))
        .unwrap_or_default()
        .to_owned();
    (code, content_type, body.to_owned())
}

/// The value of the one sample of `name` whose labels include every `labels` pair.
fn value(body: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<f64> = body
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one sample of {name} {labels:?} in:\n{body}"
    );
    found[0]
}

/// Sums every sample of `name` with the labels.
fn sum(body: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    body.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_shows_dead_letters_lag_stalls_and_what_was_sent() {
    let mut app = App::in_memory().await.unwrap();
    // `billing` dead-letters order 2 and handles the others.
    app.subscribe::<OrderPlaced, _>(
        "billing",
        |event: Envelope<OrderPlaced>, _ctx: Context| async move {
            if event.data.order == 2 {
                return Err(HandlerError::permanent("card declined for good"));
            }
            Ok(())
        },
    );
    // `audit` never finishes its first record: its partition stalls behind it.
    app.subscribe::<OrderPlaced, _>(
        "audit",
        |_event: Envelope<OrderPlaced>, _ctx: Context| async move {
            std::future::pending::<()>().await;
            Ok::<(), HandlerError>(())
        },
    );
    let mut running = app.start().await.unwrap();
    let addr = running.serve_metrics("127.0.0.1:0").await.unwrap();
    let orders: Vec<_> = (1..=3)
        .map(|order| {
            Envelope::event(OrderPlaced {
                customer: "c-1".into(),
                order,
            })
        })
        .collect();
    running.publisher().publish_all(orders).await.unwrap();

    // Billing settles all three.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while running.stats("billing").unwrap().handled
        + running.stats("billing").unwrap().dead_lettered
        < 3
    {
        assert!(std::time::Instant::now() < deadline, "billing is done");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;

    let (code, content_type, body) = scrape(addr).await;
    assert_eq!(code, 200);
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(body.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
    let billing = ("messaging_consumer_group_name", "billing");
    let audit = ("messaging_consumer_group_name", "audit");
    let system = ("messaging_system", "evt_memory");
    assert_eq!(value(&body, "evt_consumer_handled_total", &[billing]), 2.0);
    assert_eq!(
        value(
            &body,
            "evt_dead_letters_total",
            &[billing, ("reason", "permanent")]
        ),
        1.0
    );
    assert_eq!(value(&body, "evt_dlq_depth", &[billing]), 1.0);
    assert_eq!(
        value(
            &body,
            "messaging_client_consumed_messages_total",
            &[system, billing]
        ),
        3.0
    );
    assert_eq!(
        value(
            &body,
            "messaging_process_duration_seconds_count",
            &[system, billing]
        ),
        3.0
    );
    assert_eq!(
        value(
            &body,
            "messaging_process_duration_seconds_bucket",
            &[system, billing, ("le", "+Inf")]
        ),
        3.0
    );
    assert_eq!(
        value(
            &body,
            "messaging_client_sent_messages_total",
            &[system, ("messaging_destination_name", "orders")]
        ),
        3.0
    );
    assert_eq!(sum(&body, "evt_consumer_lag_records", &[billing]), 0.0);
    assert_eq!(sum(&body, "evt_consumer_lag_records", &[audit]), 3.0);
    assert!(sum(&body, "evt_consumer_lag_seconds", &[audit]) > 0.0);
    assert_eq!(value(&body, "evt_consumer_in_flight", &[audit]), 1.0);
    // One refresh: no window yet, every partition `ok`.
    assert_eq!(
        sum(
            &body,
            "evt_consumer_status",
            &[audit, ("status", "stalled")]
        ),
        0.0
    );

    // A second scrape: the audit position did not move while behind, so it is stalled.
    let (_, _, body) = scrape(addr).await;
    assert_eq!(
        sum(
            &body,
            "evt_consumer_status",
            &[audit, ("status", "stalled")]
        ),
        1.0
    );
    assert_eq!(
        sum(&body, "evt_consumer_status", &[billing, ("status", "ok")]),
        8.0,
        "every billing partition is ok"
    );

    // The Grafana dashboard in docs/ asks only for metrics the endpoint exposes.
    let dashboard = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/grafana-dashboard.json"
    ))
    .unwrap();
    let mut asked = std::collections::BTreeSet::new();
    for word in dashboard.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if (word.starts_with("evt_")
            || word.starts_with("messaging_client_")
            || word.starts_with("messaging_process_"))
            && !word.ends_with("_name")
        {
            asked.insert(word);
        }
    }
    assert!(asked.len() >= 10, "{asked:?}");
    for name in asked {
        let family = ["_total", "_bucket", "_count", "_sum"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(name);
        assert!(
            body.contains(&format!("# TYPE {family} ")),
            "the dashboard asks for {name}, which the endpoint does not expose"
        );
    }
    drop(running);
}
