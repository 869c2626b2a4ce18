//! [`CorrelationLayer`]: the request context from HTTP headers, for tower services.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderMap, HeaderValue, Request, Response};

use super::{CORRELATION_HEADER, RequestContext, scope, valid_traceparent};
use crate::envelope::{EventId, TraceContext};

impl RequestContext {
    /// The context of a request with `headers`: `X-Correlation-Id` (a new UUID v7 when there
    /// is none, or it is empty or over 256 bytes), and `traceparent` and `tracestate` when the
    /// `traceparent` is well formed (a malformed one is ignored, as W3C Trace Context asks).
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let text = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
        };
        let correlation_id = text(CORRELATION_HEADER)
            .filter(|id| !id.is_empty() && id.len() <= 256)
            .map_or_else(|| EventId::now_v7().to_string(), str::to_owned);
        let trace = text("traceparent")
            .filter(|tp| valid_traceparent(tp))
            .map(|traceparent| TraceContext {
                traceparent: traceparent.to_owned(),
                tracestate: text("tracestate")
                    .filter(|ts| !ts.is_empty())
                    .map(str::to_owned),
            });
        RequestContext {
            correlation_id,
            trace,
        }
    }
}

/// A tower layer that serves every request inside its [`RequestContext`] (from its headers,
/// see [`RequestContext::from_headers`]) and returns the correlation id in the response's
/// `X-Correlation-Id`. With axum: `Router::new().route(...).layer(CorrelationLayer)`.
#[derive(Clone, Copy, Debug, Default)]
pub struct CorrelationLayer;

impl<S> tower_layer::Layer<S> for CorrelationLayer {
    type Service = CorrelationService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CorrelationService { inner }
    }
}

/// The service of [`CorrelationLayer`].
#[derive(Clone, Debug)]
pub struct CorrelationService<S> {
    inner: S,
}

impl<S, B, R> tower_service::Service<Request<B>> for CorrelationService<S>
where
    S: tower_service::Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<R>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let ctx = RequestContext::from_headers(request.headers());
        let id = HeaderValue::from_str(&ctx.correlation_id).ok();
        let future = self.inner.call(request);
        Box::pin(async move {
            let mut response = scope(ctx, future).await?;
            if let Some(id) = id {
                response.headers_mut().insert(CORRELATION_HEADER, id);
            }
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tower_layer::Layer as _;
    use tower_service::Service as _;

    use super::*;

    const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn the_context_comes_from_the_headers_or_is_started() {
        let ctx = RequestContext::from_headers(&headers(&[
            ("x-correlation-id", "req-7"),
            ("traceparent", TRACEPARENT),
            ("tracestate", "vendor=1"),
        ]));
        assert_eq!(ctx.correlation_id, "req-7");
        let trace = ctx.trace.unwrap();
        assert_eq!(trace.traceparent, TRACEPARENT);
        assert_eq!(trace.tracestate.as_deref(), Some("vendor=1"));

        // No correlation id: a new one; a malformed traceparent (zero trace id): none, and its
        // tracestate goes with it.
        let ctx = RequestContext::from_headers(&headers(&[
            (
                "traceparent",
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            ),
            ("tracestate", "vendor=1"),
        ]));
        assert_eq!(ctx.correlation_id.len(), 36, "{}", ctx.correlation_id);
        assert_eq!(ctx.trace, None);
        let long = "x".repeat(300);
        let ctx = RequestContext::from_headers(&headers(&[("x-correlation-id", &long)]));
        assert_ne!(ctx.correlation_id, long);
        for bad in [
            "01-ab",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "",
        ] {
            assert!(!valid_traceparent(bad), "{bad}");
        }
    }

    #[tokio::test]
    async fn the_layer_serves_the_request_in_its_context_and_answers_the_id() {
        let mut service = CorrelationLayer.layer(tower_service_fn());
        let request = Request::builder()
            .header("x-correlation-id", "req-9")
            .header("traceparent", TRACEPARENT)
            .body(())
            .unwrap();
        let response = service.call(request).await.unwrap();
        assert_eq!(response.headers()[CORRELATION_HEADER], "req-9");
        assert_eq!(response.body(), &format!("req-9 {TRACEPARENT}"));

        let response = service.call(Request::new(())).await.unwrap();
        let id = response.headers()[CORRELATION_HEADER]
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(response.body(), &format!("{id} -"));
    }

    /// A service whose future reads the request context when polled.
    fn tower_service_fn() -> FromContext {
        FromContext
    }

    #[derive(Clone)]
    struct FromContext;

    impl tower_service::Service<Request<()>> for FromContext {
        type Response = Response<String>;
        type Error = Infallible;
        type Future = Pin<Box<dyn Future<Output = Result<Response<String>, Infallible>> + Send>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Request<()>) -> Self::Future {
            Box::pin(async {
                let ctx = super::super::current().expect("served in a request context");
                let trace = ctx.trace.map_or_else(|| "-".to_owned(), |t| t.traceparent);
                Ok(Response::new(format!("{} {trace}", ctx.correlation_id)))
            })
        }
    }
}
