//! The request span and the access log.
//!
//! Every request runs in a span with its method, path and request id (never the query: it may
//! carry a token), so whatever a handler logs says which request it served. Every response gets
//! one access line; a 5xx is also logged as an error (except 503, which is backpressure), and a
//! streamed body that fails after its head was sent is logged when it does.
//!
//! tower-http's `TraceLayer` did the same, but wrapped every response body (and the stack then
//! boxed it again): this layer wraps only bodies still to be streamed, so a complete answer
//! (`/health`, a tile, a JSON document) passes through untouched.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode};
use axum::response::Response;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower::{Layer, Service};
use tracing::Span;

use crate::http_metrics::Route;
use crate::request_id::X_REQUEST_ID;

/// Logs every request (see the module).
#[derive(Debug, Clone, Copy, Default)]
pub struct AccessLogLayer;

impl<S> Layer<S> for AccessLogLayer {
    type Service = AccessLog<S>;

    fn layer(&self, inner: S) -> AccessLog<S> {
        AccessLog { inner }
    }
}

/// The service of [`AccessLogLayer`].
#[derive(Debug, Clone)]
pub struct AccessLog<S> {
    inner: S,
}

impl<S> Service<Request<Body>> for AccessLog<S>
where
    S: Service<Request<Body>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = AccessLogFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let span = request_span(&request);
        let inner = span.in_scope(|| self.inner.call(request));
        AccessLogFuture {
            inner,
            span,
            started: Instant::now(),
        }
    }
}

/// The request's span: method and path only, never the query (it may carry a token).
fn request_span(request: &Request<Body>) -> Span {
    let span = tracing::info_span!(
        target: "geotrack::routes",
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        id = tracing::field::Empty
    );
    // The header is looked up only when the span is recorded (logging at info or finer).
    if !span.is_disabled() {
        let id = request.headers().get(X_REQUEST_ID).and_then(|v| v.to_str().ok());
        span.record("id", id.unwrap_or("-"));
    }
    span
}

pin_project! {
    /// The handler's answer, run in the request's span.
    pub struct AccessLogFuture<F> {
        #[pin]
        inner: F,
        span: Span,
        started: Instant,
    }
}

impl<F, E> Future for AccessLogFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        let response = ready!(this.inner.poll(cx))?;
        let latency = this.started.elapsed();
        log_response(&response, latency);
        if response.status().is_server_error() {
            log_failure(response.status(), latency);
        }
        if response.body().size_hint().exact().is_some() {
            return Poll::Ready(Ok(response));
        }
        let (span, started) = (this.span.clone(), *this.started);
        Poll::Ready(Ok(
            response.map(|body| Body::new(Streamed { body, span, started }))
        ))
    }
}

/// The access line: at info under the target `geotrack::access`, with the route template
/// (`/api/v1/devices/{id}`, or `unmatched`), the status and the time taken; method, path and
/// request id are the span's.
fn log_response(response: &Response, latency: Duration) {
    let route = response
        .extensions()
        .get::<Route>()
        .map_or("unmatched", Route::as_str);
    tracing::info!(
        target: "geotrack::access",
        route,
        status = response.status().as_u16(),
        duration_ms = (latency.as_secs_f64() * 1e6).round() / 1e3,
        "response"
    );
}

/// A 5xx is logged as an error, except 503: that is backpressure (a full ingest queue, the
/// database away), counted in the metrics; an overloaded server would otherwise write an
/// error line per refused request just when it has the least time for it.
fn log_failure(status: StatusCode, latency: Duration) {
    if status == StatusCode::SERVICE_UNAVAILABLE {
        tracing::debug!(?latency, "503: refused for now, the client retries");
    } else {
        tracing::error!(status = status.as_u16(), ?latency, "response failed");
    }
}

pin_project! {
    /// A body still to be streamed (an export, a page of history): its failure is logged.
    struct Streamed {
        #[pin]
        body: Body,
        span: Span,
        started: Instant,
    }
}

impl HttpBody for Streamed {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.project();
        let frame = ready!(this.body.poll_frame(cx));
        if let Some(Err(error)) = &frame {
            let _entered = this.span.enter();
            let latency = this.started.elapsed();
            tracing::error!(%error, ?latency, "response body failed after its head was sent");
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use axum::response::IntoResponse;
    use futures_util::stream;
    use tower::ServiceExt;

    use super::*;

    /// A route answering `body`, behind the access log.
    async fn through_the_log(body: Body) -> Response {
        let mut body = Some(body);
        let route = tower::service_fn(move |_: Request<Body>| {
            let body = body.take().expect("one call");
            async move { Ok::<_, Infallible>((StatusCode::OK, body).into_response()) }
        });
        AccessLogLayer
            .layer(route)
            .oneshot(Request::new(Body::empty()))
            .await
            .expect("infallible")
    }

    #[tokio::test]
    async fn a_complete_body_passes_untouched_and_a_streamed_one_still_streams_its_failure() {
        let complete = through_the_log(Body::from("done")).await;
        assert_eq!(complete.body().size_hint().exact(), Some(4));
        assert_eq!(
            axum::body::to_bytes(complete.into_body(), 64)
                .await
                .expect("body"),
            "done"
        );

        let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
            Ok(Bytes::from("part")),
            Err(std::io::Error::other("the database went away")),
        ];
        let streamed = through_the_log(Body::from_stream(stream::iter(chunks))).await;
        assert_eq!(streamed.body().size_hint().exact(), None);
        let error = axum::body::to_bytes(streamed.into_body(), 64)
            .await
            .expect_err("the failure reaches the client's end of the stream");
        assert!(error.to_string().contains("went away"), "{error}");
    }
}
