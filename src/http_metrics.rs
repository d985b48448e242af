//! Request counts and latencies per route, method and status, for `/metrics`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::response::Response;
use foldhash::fast::FixedState;
use pin_project_lite::pin_project;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tower::{Layer, Service};

/// A request's labels, made without copying text: the method is a static name, the route the
/// router's own template (shared, not copied) or a static one.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    method: &'static str,
    route: Route,
    status: u16,
}

/// The route template a request matched, as the metrics and the access log name it (left on
/// the response for the access log).
#[derive(Clone, Debug)]
pub enum Route {
    /// Matched by the router.
    Router(MatchedPath),
    /// Matched by hand in front of the router (`routes::tile_front`).
    Fixed(&'static str),
    /// No route matched.
    Unmatched,
}

impl Route {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Router(matched) => matched.as_str(),
            Self::Fixed(template) => template,
            Self::Unmatched => "unmatched",
        }
    }
}

impl PartialEq for Route {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Route {}

impl std::hash::Hash for Route {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl EncodeLabelValue for Route {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

/// The method's name, for the methods routes serve; `OTHER` for any other, so that clients
/// cannot add label sets (and memory) by inventing methods.
fn method_name(method: &Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        "PATCH" => "PATCH",
        _ => "OTHER",
    }
}

#[derive(Clone, Debug)]
pub struct HttpMetrics {
    /// Tells this instance's entries apart in the per-thread cache ([`HANDLES`]): tests run
    /// many servers in one process.
    instance: u64,
    requests: Family<RequestLabels, Counter>,
    seconds: Family<RequestLabels, Histogram, fn() -> Histogram>,
}

/// A label set's metrics, as its families hold them.
struct Handles {
    requests: Counter,
    seconds: Histogram,
}

/// Instances made so far.
static INSTANCES: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Per thread, the metrics of every label set it has counted. `Family::get_or_create`
    /// hashes the labels with SipHash under a lock shared by every thread, twice a request:
    /// about 1,500 instructions of a `/health` request (callgrind). Label sets are bounded by
    /// the routes, methods and statuses, as in the families; none of it is chosen by clients
    /// (an unknown method is `OTHER`, an unknown path `unmatched`), so a fixed hasher is safe.
    static HANDLES: RefCell<HashMap<(u64, RequestLabels), Handles, FixedState>> =
        RefCell::new(HashMap::with_hasher(FixedState::default()));
}

impl HttpMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            instance: INSTANCES.fetch_add(1, Ordering::Relaxed),
            requests: Family::default(),
            seconds: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.000_5, 2.0, 16))),
        };
        let registry = registry.sub_registry_with_prefix("geotrack_http");
        registry.register(
            "requests",
            "HTTP requests by route and status",
            metrics.requests.clone(),
        );
        registry.register(
            "request_seconds",
            "HTTP request latency by route and status",
            metrics.seconds.clone(),
        );
        metrics
    }

    /// Counts a response and its latency.
    fn record(&self, labels: RequestLabels, seconds: f64) {
        HANDLES.with_borrow_mut(|cache| {
            let handles = cache
                .entry((self.instance, labels))
                .or_insert_with_key(|(_, labels)| Handles {
                    requests: self.requests.get_or_create(labels).clone(),
                    seconds: self.seconds.get_or_create(labels).clone(),
                });
            handles.seconds.observe(seconds);
            handles.requests.inc();
        });
    }
}

/// The layer that counts every routed request (installed with `route_layer`, so the matched
/// route template is known). The template is also left on the response for the access log,
/// when that is on. A service of its own rather than `middleware::from_fn`, which cloned the
/// route's boxed service and boxed a future for every request.
#[derive(Clone, Debug)]
pub struct TrackLayer(Arc<HttpMetrics>);

impl TrackLayer {
    pub fn new(metrics: HttpMetrics) -> Self {
        Self(Arc::new(metrics))
    }
}

impl<S> Layer<S> for TrackLayer {
    type Service = Track<S>;

    fn layer(&self, inner: S) -> Track<S> {
        Track {
            inner,
            metrics: self.0.clone(),
        }
    }
}

/// See [`TrackLayer`].
#[derive(Clone, Debug)]
pub struct Track<S> {
    inner: S,
    metrics: Arc<HttpMetrics>,
}

impl<S> Service<Request> for Track<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = TrackFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let route = request
            .extensions()
            .get::<MatchedPath>()
            .map_or(Route::Unmatched, |matched| Route::Router(matched.clone()));
        let method = method_name(request.method());
        track(&self.metrics, method, route, self.inner.call(request))
    }
}

impl TrackLayer {
    /// Counts the answer `inner` gives to a request with `method` that matched `route`
    /// outside the router.
    pub fn track<F>(&self, method: &Method, route: &'static str, inner: F) -> TrackFuture<F> {
        track(&self.0, method_name(method), Route::Fixed(route), inner)
    }
}

fn track<F>(metrics: &Arc<HttpMetrics>, method: &'static str, route: Route, inner: F) -> TrackFuture<F> {
    TrackFuture {
        started: Instant::now(),
        inner,
        metrics: metrics.clone(),
        route,
        method,
    }
}

pin_project! {
    /// A request being answered, counted when its response is ready.
    pub struct TrackFuture<F> {
        #[pin]
        inner: F,
        metrics: Arc<HttpMetrics>,
        route: Route,
        method: &'static str,
        started: Instant,
    }
}

impl<F, E> Future for TrackFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.inner.poll(cx))?;
        let route = std::mem::replace(this.route, Route::Unmatched);
        // Only for the access log, and only when it is on: a response's first extension
        // allocates.
        if !matches!(route, Route::Unmatched)
            && tracing::enabled!(target: "geotrack::access", tracing::Level::INFO)
        {
            response.extensions_mut().insert(route.clone());
        }
        let labels = RequestLabels {
            method: this.method,
            route,
            status: response.status().as_u16(),
        };
        this.metrics.record(labels, this.started.elapsed().as_secs_f64());
        Poll::Ready(Ok(response))
    }
}
