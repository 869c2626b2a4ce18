//! An HTTP endpoint that places orders into the shop: `POST /orders/{id}` publishes
//! `OrderPlaced`, and the payments context reacts. Behind `CorrelationLayer`, the request's
//! `X-Correlation-Id` (or a new one, returned in the response) and W3C `traceparent` travel on
//! the event to the handler: one request followed into the asynchronous world.
//!
//! ```sh
//! cargo run -p event-examples --bin http_orders
//! curl -i -X POST -H 'X-Correlation-Id: checkout-7' http://127.0.0.1:3000/orders/o-42
//! ```
//!
//! `EVT_HTTP_ADDR` sets the address (default `127.0.0.1:3000`; port 0 picks a free one).

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use event_runtime::request::CorrelationLayer;
use event_runtime::transport::memory::MemoryTransport;
use event_runtime::{App, Context, DomainEvent, Envelope, HandlerError, Publisher};
use serde::{Deserialize, Serialize};

/// A customer placed an order, over HTTP.
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone)]
#[event(context = "orders")]
struct OrderPlaced {
    #[event(key)]
    order_id: String,
}

/// `POST /orders/{id}`: 202 once the event is stored, 503 with the reason when it is not.
async fn place(
    State(publisher): State<Publisher<MemoryTransport>>,
    Path(order_id): Path<String>,
) -> Result<StatusCode, (StatusCode, String)> {
    publisher
        .publish(Envelope::event(OrderPlaced { order_id }))
        .await
        .map_err(|err| (StatusCode::SERVICE_UNAVAILABLE, err.to_string()))?;
    Ok(StatusCode::ACCEPTED)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut app = App::in_memory().await?;
    app.subscribe::<OrderPlaced, _>(
        "payments",
        |event: Envelope<OrderPlaced>, _ctx: Context| async move {
            println!(
                "payments   charging {} (correlation {}, traceparent {})",
                event.data.order_id,
                event.correlation_id.as_deref().unwrap_or("-"),
                event.trace.as_ref().map_or("-", |t| t.traceparent.as_str()),
            );
            Ok::<(), HandlerError>(())
        },
    );
    let running = app.start().await?;
    let router = Router::new()
        .route("/orders/{id}", post(place))
        .with_state(running.publisher())
        .layer(CorrelationLayer);
    let addr = std::env::var("EVT_HTTP_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, router).await?;
    running.stop().await;
    Ok(())
}
