//! CORS when tokens are on: every origin may call the API and read its answers.
//!
//! - A preflight (any `OPTIONS` request) is answered here, without reaching a route: any
//!   origin and method; the request headers the API reads, named (the Fetch standard does not
//!   let `Access-Control-Allow-Headers: *` cover `Authorization`, so a wildcard would make
//!   browsers refuse every cross-origin request with a bearer token); cached for a day.
//! - Every other response says any origin may read it and which of its headers a script may
//!   see.
//!
//! Every origin gets the same answer, so caches need no `Vary: Origin`. Credentials are explicit
//! tokens, never cookies, so allowing every origin hands out nothing ambient.
//!
//! The headers are constants, so a request costs two header inserts. tower-http's `CorsLayer`
//! (same answers) built a header map per request and merged it into the response, and the
//! middleware stack's per-connection copy cloned its lists: about 2,000 instructions of a
//! `/health` request (`scripts/callgrind-requests.sh`).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
};
use axum::http::{HeaderValue, Method, Request};
use axum::response::Response;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

const ANY: HeaderValue = HeaderValue::from_static("*");
/// The request headers the API reads.
const ALLOW_HEADERS: HeaderValue =
    HeaderValue::from_static("authorization,content-type,accept,if-none-match,if-match,prefer,x-request-id");
/// The response headers clients read.
const EXPOSE_HEADERS: HeaderValue =
    HeaderValue::from_static("etag,location,retry-after,content-disposition,x-request-id");
/// A day, in seconds.
const MAX_AGE: HeaderValue = HeaderValue::from_static("86400");

/// Open CORS (see the module).
#[derive(Debug, Clone, Copy, Default)]
pub struct CorsLayer;

impl<S> Layer<S> for CorsLayer {
    type Service = Cors<S>;

    fn layer(&self, inner: S) -> Cors<S> {
        Cors { inner }
    }
}

/// The service of [`CorsLayer`].
#[derive(Debug, Clone)]
pub struct Cors<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for Cors<S>
where
    S: Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = CorsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if request.method() == Method::OPTIONS {
            CorsFuture::Preflight
        } else {
            CorsFuture::Call {
                inner: self.inner.call(request),
            }
        }
    }
}

pin_project! {
    /// A preflight's answer, or the route's answer with the CORS headers.
    #[project = CorsProjection]
    pub enum CorsFuture<F> {
        Preflight,
        Call { #[pin] inner: F },
    }
}

impl<F, E> Future for CorsFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            CorsProjection::Preflight => {
                let mut response = Response::default();
                let headers = response.headers_mut();
                headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, ANY);
                headers.insert(ACCESS_CONTROL_ALLOW_METHODS, ANY);
                headers.insert(ACCESS_CONTROL_ALLOW_HEADERS, ALLOW_HEADERS);
                headers.insert(ACCESS_CONTROL_MAX_AGE, MAX_AGE);
                Poll::Ready(Ok(response))
            }
            CorsProjection::Call { inner } => {
                let mut response = ready!(inner.poll(cx))?;
                let headers = response.headers_mut();
                headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, ANY);
                headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSE_HEADERS);
                Poll::Ready(Ok(response))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use axum::body::Body;
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;
    use tower::ServiceExt;

    use super::*;

    /// The answer of a route (a 201 that sets its own `access-control-allow-origin`) behind CORS.
    async fn answer(method: Method) -> (StatusCode, HeaderMap) {
        let route = tower::service_fn(|_: Request<Body>| async {
            let own = [(ACCESS_CONTROL_ALLOW_ORIGIN, "https://one.example")];
            Ok::<_, Infallible>((StatusCode::CREATED, own, "made").into_response())
        });
        let request = Request::builder()
            .method(method)
            .header("origin", "https://map.example")
            .body(Body::empty())
            .expect("request");
        let response = CorsLayer.layer(route).oneshot(request).await.expect("infallible");
        (response.status(), response.headers().clone())
    }

    #[tokio::test]
    async fn a_preflight_is_answered_without_the_route() {
        let (status, headers) = answer(Method::OPTIONS).await;
        assert_eq!(status, StatusCode::OK, "not the route's 201");
        assert_eq!(headers[ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert_eq!(headers[ACCESS_CONTROL_ALLOW_METHODS], "*");
        let allowed: Vec<&str> = headers[ACCESS_CONTROL_ALLOW_HEADERS]
            .to_str()
            .expect("ascii")
            .split(',')
            .collect();
        assert!(
            allowed.contains(&"authorization") && allowed.contains(&"if-match"),
            "{allowed:?}"
        );
        assert_eq!(headers[ACCESS_CONTROL_MAX_AGE], "86400");
        assert!(!headers.contains_key(ACCESS_CONTROL_EXPOSE_HEADERS));
    }

    #[tokio::test]
    async fn any_origin_may_read_an_answer_and_its_headers() {
        let (status, headers) = answer(Method::POST).await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(
            headers
                .get_all(ACCESS_CONTROL_ALLOW_ORIGIN)
                .iter()
                .collect::<Vec<_>>(),
            ["*"],
            "one value, the same for every origin"
        );
        assert_eq!(
            headers[ACCESS_CONTROL_EXPOSE_HEADERS],
            "etag,location,retry-after,content-disposition,x-request-id"
        );
        assert!(!headers.contains_key(ACCESS_CONTROL_MAX_AGE));
        assert!(!headers.contains_key("vary"));
    }
}
