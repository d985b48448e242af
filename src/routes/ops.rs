//! Operations endpoints: liveness, readiness and Prometheus metrics.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::state::AppState;

/// `GET /health`: 200 while the process serves requests.
#[utoipa::path(get, path = "/health", tag = "operations", responses((status = 200, description = "The process is up")))]
pub async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /ready`: 200 only when the database answers and every migration is applied.
#[utoipa::path(get, path = "/ready", tag = "operations",
    responses((status = 200, description = "Database reachable, migrated, fence index loaded"), (status = 503, description = "Not ready, with the reason")))]
pub async fn ready(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    crate::db::readiness(&state.pool)
        .await
        .and_then(|()| {
            if state.fences_loaded.load(std::sync::atomic::Ordering::Acquire) {
                Ok(Json(json!({"status": "ready"})))
            } else {
                Err("the fence index is still loading".to_owned())
            }
        })
        .map_err(|reason| ApiError::unavailable("not_ready", reason, 5))
}

/// `GET /metrics`: Prometheus / OpenMetrics text.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus / OpenMetrics text", content_type = "application/openmetrics-text")))]
pub async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let mut text = String::with_capacity(8 * 1024);
    prometheus_client::encoding::text::encode(&mut text, &state.registry)
        .map_err(|e| ApiError::internal(&e))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    ))
}
