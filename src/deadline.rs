//! The request deadline (`http.request_timeout_s`): a request its handler has not answered in
//! time gets a 408 with a JSON reason, and the handler's future is dropped.
//!
//! tower-http's `TimeoutLayer` armed a timer for every request: a `Sleep` put into tokio's
//! timer wheel and taken out again, under a lock the worker threads share, about 1,000
//! instructions even for the requests answered at once (`/health`, a cached tile). This layer
//! arms the timer only when the handler does not answer on its first poll; the deadline then
//! counts from that poll, which comes right after the call.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower::{Layer, Service};

use crate::error::ApiError;

/// Answers 408 for requests not answered within `timeout`.
#[derive(Debug, Clone, Copy)]
pub struct DeadlineLayer {
    timeout: Duration,
}

impl DeadlineLayer {
    pub fn new(timeout: Duration) -> Self {
        Self { timeout }
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Deadline<S> {
        Deadline {
            inner,
            timeout: self.timeout,
        }
    }
}

/// The service of [`DeadlineLayer`].
#[derive(Debug, Clone)]
pub struct Deadline<S> {
    inner: S,
    timeout: Duration,
}

impl<S, B> Service<Request<B>> for Deadline<S>
where
    S: Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = DeadlineFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        DeadlineFuture {
            inner: self.inner.call(request),
            timeout: self.timeout,
            timer: None,
        }
    }
}

pin_project! {
    /// The handler's future, and its timer once it had to wait.
    pub struct DeadlineFuture<F> {
        #[pin]
        inner: F,
        timeout: Duration,
        #[pin]
        timer: Option<Sleep>,
    }
}

impl<F, E> Future for DeadlineFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Poll::Ready(answer) = this.inner.poll(cx) {
            return Poll::Ready(answer);
        }
        if this.timer.is_none() {
            this.timer.set(Some(tokio::time::sleep(*this.timeout)));
        }
        if let Some(timer) = this.timer.as_pin_mut() {
            ready!(timer.poll(cx));
        }
        let seconds = this.timeout.as_secs_f64();
        Poll::Ready(Ok(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!("the request was not answered within {seconds} s; retry later"),
        )
        .into_response()))
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use axum::body::Body;
    use tower::ServiceExt;

    use super::*;

    /// A handler that answers after `delay` (at once when zero).
    fn handler(
        delay: Duration,
    ) -> impl Service<Request<Body>, Response = Response, Error = Infallible, Future: Send> + Clone {
        tower::service_fn(move |_: Request<Body>| async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            Ok::<_, Infallible>(StatusCode::OK.into_response())
        })
    }

    async fn status(delay: Duration) -> (StatusCode, serde_json::Value) {
        let service = DeadlineLayer::new(Duration::from_secs(30)).layer(handler(delay));
        let response = service
            .oneshot(Request::new(Body::empty()))
            .await
            .expect("infallible");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .expect("body");
        (status, serde_json::from_slice(&bytes).unwrap_or_default())
    }

    #[tokio::test(start_paused = true)]
    async fn a_handler_answering_in_time_is_answered_and_a_late_one_gets_408() {
        assert_eq!(status(Duration::ZERO).await.0, StatusCode::OK);
        assert_eq!(status(Duration::from_secs(29)).await.0, StatusCode::OK);
        let (late, body) = status(Duration::from_secs(31)).await;
        assert_eq!(late, StatusCode::REQUEST_TIMEOUT);
        assert_eq!(body["error"]["code"], "request_timeout");
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_handler_is_cut_at_the_deadline_exactly() {
        let started = tokio::time::Instant::now();
        let (late, _) = status(Duration::from_secs(3_600)).await;
        assert_eq!(late, StatusCode::REQUEST_TIMEOUT);
        assert_eq!(started.elapsed(), Duration::from_secs(30));
    }
}
