//! The HTTP surface: one module per group of routes, assembled by [`router`].

mod device_apps;
mod devices;
mod fences;
mod ingest;
mod ops;
mod positions;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{any, get, post};

use crate::error::ApiError;
use crate::state::AppState;

/// Every route of the service, without middleware (see `app::router`).
pub fn router(state: AppState) -> Router {
    let max_body = state.ingest.max_body_bytes;
    Router::new()
        .route(
            "/api/v1/positions",
            post(positions::post).layer(DefaultBodyLimit::max(max_body)),
        )
        .route("/api/v1/devices", get(devices::list))
        .route(
            "/api/v1/devices/{id}",
            get(devices::get_one).delete(devices::erase),
        )
        .route("/api/v1/devices/{id}/track", get(devices::track))
        .route(
            "/osmand",
            any(device_apps::osmand).layer(DefaultBodyLimit::max(max_body)),
        )
        .route("/", any(device_apps::root))
        .route(
            "/owntracks",
            post(device_apps::owntracks).layer(DefaultBodyLimit::max(max_body)),
        )
        .route(
            "/overland",
            post(device_apps::overland).layer(DefaultBodyLimit::max(max_body)),
        )
        .route("/api/v1/fences", get(fences::list).post(fences::create))
        .route(
            "/api/v1/fences/import",
            post(fences::import).layer(DefaultBodyLimit::max(max_body)),
        )
        .route(
            "/api/v1/fences/{id}",
            get(fences::get_one).put(fences::put).delete(fences::delete),
        )
        .route("/api/v1/fences/{id}/devices", get(fences::devices_inside))
        .route("/health", get(ops::health))
        .route("/ready", get(ops::ready))
        .route("/metrics", get(ops::metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no_route", "no such endpoint; see the README for the API")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not accept that method",
    )
}
