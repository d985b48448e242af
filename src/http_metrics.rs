//! Request counts and latencies per route, method and status, for `/metrics`.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug)]
pub struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    seconds: Family<RequestLabels, Histogram, fn() -> Histogram>,
}

impl HttpMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
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
}

/// Middleware (installed with `route_layer`, so the matched route template is known). The
/// template is also left on the response, for the access log.
pub async fn track(State(metrics): State<HttpMetrics>, request: Request, next: Next) -> Response {
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let route = matched
        .as_ref()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().to_string();
    let started = Instant::now();
    let mut response = next.run(request).await;
    if let Some(matched) = matched {
        response.extensions_mut().insert(matched);
    }
    let labels = RequestLabels {
        method,
        route,
        status: response.status().as_u16(),
    };
    metrics
        .seconds
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    metrics.requests.get_or_create(&labels).inc();
    response
}
