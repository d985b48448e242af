//! A handler that panics is answered 500 (`internal`, logged) instead of the connection being
//! dropped mid-request; the other requests go on.
//!
//! tower-http's `CatchPanicLayer` did the same, but answered with a body type of its own, so every
//! response body was boxed once more (and converted back to axum's): this layer keeps axum's
//! `Body`, and a request that does not panic costs two `catch_unwind` frames.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::http::Request;
use axum::response::{IntoResponse, Response};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::error::ApiError;

/// Answers 500 for a handler that panics.
#[derive(Debug, Clone, Copy, Default)]
pub struct CatchPanicLayer;

impl<S> Layer<S> for CatchPanicLayer {
    type Service = CatchPanic<S>;

    fn layer(&self, inner: S) -> CatchPanic<S> {
        CatchPanic { inner }
    }
}

/// The service of [`CatchPanicLayer`].
#[derive(Debug, Clone)]
pub struct CatchPanic<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for CatchPanic<S>
where
    S: Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = CatchPanicFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        match catch_unwind(AssertUnwindSafe(|| self.inner.call(request))) {
            Ok(inner) => CatchPanicFuture::Running { inner },
            Err(_) => CatchPanicFuture::Panicked,
        }
    }
}

pin_project! {
    /// The handler's future, or the 500 of one that panicked when called.
    #[project = CatchPanicProjection]
    pub enum CatchPanicFuture<F> {
        Running { #[pin] inner: F },
        Panicked,
    }
}

impl<F, E> Future for CatchPanicFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            CatchPanicProjection::Running { inner } => {
                match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
                    Ok(answer) => answer,
                    Err(_) => Poll::Ready(Ok(panicked())),
                }
            }
            CatchPanicProjection::Panicked => Poll::Ready(Ok(panicked())),
        }
    }
}

fn panicked() -> Response {
    ApiError::internal(&"a request handler panicked").into_response()
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use axum::body::Body;
    use axum::http::StatusCode;
    use tower::ServiceExt;

    use super::*;

    /// A service that panics when called (`in_call`) or when its answer is polled.
    #[derive(Clone)]
    struct Panics {
        in_call: bool,
    }

    impl Service<Request<Body>> for Panics {
        type Response = Response;
        type Error = Infallible;
        type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: Request<Body>) -> Self::Future {
            assert!(!self.in_call, "panic in call");
            Box::pin(async move {
                assert!(request.uri() != "/boom", "panic in the handler");
                Ok(StatusCode::NO_CONTENT.into_response())
            })
        }
    }

    async fn status(in_call: bool, path: &str) -> (StatusCode, serde_json::Value) {
        let request = Request::builder().uri(path).body(Body::empty()).expect("request");
        let response = CatchPanicLayer
            .layer(Panics { in_call })
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .expect("body");
        (status, serde_json::from_slice(&bytes).unwrap_or_default())
    }

    #[tokio::test]
    async fn a_panic_in_the_call_or_in_the_handler_is_a_json_500() {
        assert_eq!(status(false, "/fine").await.0, StatusCode::NO_CONTENT);
        for (in_call, path) in [(true, "/fine"), (false, "/boom")] {
            let (status, body) = status(in_call, path).await;
            assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
            assert_eq!(body["error"]["code"], "internal");
        }
    }
}
