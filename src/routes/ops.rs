//! Operations endpoints: liveness, readiness and Prometheus metrics.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::registry::Registry;
use serde_json::{Value, json};

use crate::error::{ApiError, ErrorBody};
use crate::prometheus_text;
use crate::state::AppState;

/// `GET /health`: 200 while the process serves requests. A constant body: a liveness probe
/// (and the benchmarks' ceiling) costs no JSON building.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, description = "The process is up", body = serde_json::Value, example = json!({"status": "ok"}))))]
pub async fn health() -> Response {
    // Built directly: the tuple form merged a header array into the response (600 instructions).
    let mut response = Response::new(Body::from(r#"{"status":"ok"}"#));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// `GET /ready`: 200 only when the database answers and every migration is applied.
#[utoipa::path(get, path = "/ready", tag = "operations",
    responses((status = 200, description = "Database reachable, migrated, fence index loaded", body = serde_json::Value,
            example = json!({"status": "ready"})),
        (status = 503, description = "Not ready, with the reason", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait")))))]
pub async fn ready(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let not_ready = |reason: String| ApiError::unavailable("not_ready", reason, 5);
    crate::db::readiness(&state.db)
        .await
        .map_err(|e| not_ready(e.to_string()))?;
    if let Some(reason) = state.cluster.as_ref().and_then(|node| node.unready()) {
        return Err(not_ready(reason));
    }
    let fences = &state.fences;
    if fences.is_loaded() {
        Ok(Json(json!({"status": "ready"})))
    } else {
        Err(not_ready("the fence index is still loading".to_owned()))
    }
}

/// `GET /metrics`: the Prometheus text format (0.0.4), or OpenMetrics when the `Accept` header
/// asks for it (as Prometheus does).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text (0.0.4), or OpenMetrics text when `Accept` asks for it",
        content((String = "text/plain"), (String = "application/openmetrics-text")))))]
pub async fn metrics(
    State(registry): State<Arc<Registry>>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let mut text = String::with_capacity(8 * 1024);
    prometheus_client::encoding::text::encode(&mut text, &registry).map_err(|e| ApiError::internal(&e))?;
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    Ok(if prometheus_text::wants_openmetrics(accept) {
        (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
    } else {
        (
            [(header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)],
            prometheus_text::from_openmetrics(&text),
        )
    })
}
