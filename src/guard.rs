//! What a server without tokens refuses, because anyone who can make the user's browser send a
//! request could otherwise read and change it:
//!
//! - requests naming another `Host` than the loopback names the server answers to: a page on
//!   `evil.example` whose name is made to resolve to 127.0.0.1 (DNS rebinding) would otherwise
//!   be same-origin with the server;
//! - requests a browser marks as cross-site (`Sec-Fetch-Site`) or sends with another `Origin`:
//!   a page the user opens may not post positions, write fences or erase devices; following a
//!   link to the web map stays possible.
//!
//! Without tokens no CORS headers are sent either, so other sites cannot read responses. With
//! tokens none of this applies: a request carries its token explicitly (never a cookie), so a
//! page cannot act with credentials it does not have, and CORS stays open for maps elsewhere.
//!
//! A layer of its own rather than `middleware::from_fn_with_state`, which cloned the host list
//! and the rest of the stack and boxed a future for every request; host names are compared
//! ignoring case rather than through a lower-cased copy of each: about 3,000 of the 24,000
//! instructions of a `/health` request (`OPEN=1 scripts/callgrind-requests.sh`).

use std::future::{Ready, ready};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::future::Either;
use tower::{Layer, Service};

use crate::error::ApiError;

const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");
const SEC_FETCH_MODE: HeaderName = HeaderName::from_static("sec-fetch-mode");

/// Host names a tokenless server answers to (without port, compared ignoring case); the layer
/// refusing every other request a tokenless server must not serve (see the module), with 403.
#[derive(Debug, Clone)]
pub struct LocalOnly {
    hosts: Arc<[String]>,
}

impl LocalOnly {
    /// The loopback names, the bound address, and `extra` names the operator allows.
    pub fn new(bound: std::net::IpAddr, extra: &[String]) -> Self {
        let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "[::1]"].map(str::to_owned).into();
        hosts.push(match bound {
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            std::net::IpAddr::V4(ip) => ip.to_string(),
        });
        hosts.extend(extra.iter().cloned());
        Self { hosts: hosts.into() }
    }

    fn refusal<B>(&self, request: &Request<B>) -> Option<&'static str> {
        let headers = request.headers();
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let name = host_name(host);
        if !self.hosts.iter().any(|h| h.eq_ignore_ascii_case(name)) {
            return Some(
                "this server has no tokens and answers only to its local names (Host); configure tokens to serve other names",
            );
        }
        if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok())
            && origin != "null"
            && origin.split_once("://").map(|(_, rest)| rest) != Some(host)
        {
            return Some("this server has no tokens and refuses requests from other origins");
        }
        if cross_site(headers) && !harmless_navigation(request) {
            return Some("this server has no tokens and refuses cross-site requests");
        }
        None
    }
}

/// The host part of a `Host` header (`[::1]:8080` gives `[::1]`).
fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        host.split_inclusive(']').next().unwrap_or(host)
    } else {
        host.split(':').next().unwrap_or(host)
    }
}

/// A browser says the request comes from another site.
fn cross_site(headers: &HeaderMap) -> bool {
    headers
        .get(SEC_FETCH_SITE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|site| site != "same-origin" && site != "none")
}

/// Following a link to a page: a GET navigation that does not post a position (the device
/// endpoints take GET requests too).
fn harmless_navigation<B>(request: &Request<B>) -> bool {
    let navigates = request
        .headers()
        .get(SEC_FETCH_MODE)
        .is_some_and(|mode| mode == "navigate");
    let path = request.uri().path();
    let ingests = path == "/osmand" || (path == "/" && request.uri().query().is_some());
    navigates && matches!(*request.method(), Method::GET | Method::HEAD) && !ingests
}

impl<S> Layer<S> for LocalOnly {
    type Service = Guarded<S>;

    fn layer(&self, inner: S) -> Guarded<S> {
        Guarded {
            inner,
            guard: self.clone(),
        }
    }
}

/// The service of [`LocalOnly`].
#[derive(Debug, Clone)]
pub struct Guarded<S> {
    inner: S,
    guard: LocalOnly,
}

impl<S, B> Service<Request<B>> for Guarded<S>
where
    S: Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    /// The refusal, or the route's answer.
    type Future = Either<Ready<Result<Response, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        match self.guard.refusal(&request) {
            None => Either::Right(self.inner.call(request)),
            Some(reason) => {
                let refusal = ApiError::new(StatusCode::FORBIDDEN, "not_local", reason);
                Either::Left(ready(Ok(refusal.into_response())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: Method, uri: &str, headers: &[(&str, &str)]) -> Request {
        let mut builder = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(axum::body::Body::empty()).expect("request")
    }

    #[test]
    fn other_hosts_and_cross_site_writes_are_refused() {
        let guard = LocalOnly::new([127, 0, 0, 1].into(), &["tracker.lan".into()]);
        let ok = |r: &Request| guard.refusal(r).is_none();
        assert!(ok(&request(
            Method::GET,
            "/api/v1/devices",
            &[("host", "127.0.0.1:8080")]
        )));
        assert!(ok(&request(Method::GET, "/", &[("host", "localhost:8080")])));
        assert!(ok(&request(Method::GET, "/", &[("host", "[::1]:8080")])));
        assert!(ok(&request(Method::GET, "/", &[("host", "Tracker.LAN")])));
        assert!(!ok(&request(
            Method::GET,
            "/api/v1/devices",
            &[("host", "evil.example:8080")]
        )));
        assert!(!ok(&request(Method::GET, "/", &[])), "no Host");
        let cross = [("host", "127.0.0.1:8080"), ("sec-fetch-site", "cross-site")];
        assert!(!ok(&request(Method::DELETE, "/api/v1/devices/a", &cross)));
        assert!(!ok(&request(Method::GET, "/osmand?id=a&lat=1&lon=1", &cross)));
        let link = [
            ("host", "127.0.0.1:8080"),
            ("sec-fetch-site", "cross-site"),
            ("sec-fetch-mode", "navigate"),
        ];
        assert!(
            ok(&request(Method::GET, "/", &link)),
            "following a link to the map"
        );
        assert!(!ok(&request(Method::GET, "/osmand?id=a&lat=1&lon=1", &link)));
        assert!(!ok(&request(Method::GET, "/?id=a&lat=1&lon=1", &link)));
        let same = [
            ("host", "127.0.0.1:8080"),
            ("sec-fetch-site", "same-origin"),
            ("origin", "http://127.0.0.1:8080"),
        ];
        assert!(ok(&request(Method::POST, "/api/v1/fences", &same)));
        let other = [("host", "127.0.0.1:8080"), ("origin", "http://evil.example")];
        assert!(!ok(&request(Method::POST, "/api/v1/fences", &other)));
    }
}
