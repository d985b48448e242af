//! Device read routes. For now only the live position of one device, so ingestion can be
//! observed; the full read API (lists, tracks, exports) builds on this module.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use serde_json::Value;

use crate::error::ApiError;
use crate::state::AppState;

/// `GET /api/v1/devices/{id}`: the latest position as a GeoJSON Feature.
pub async fn get_one(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(id) = id.map_err(|e| ApiError::bad_request("invalid_path", e.body_text()))?;
    let latest = tracker::latest::get(&state.pool, &id).await?;
    latest.map(|position| Json(position.to_feature())).ok_or_else(|| {
        ApiError::not_found(
            "device_not_found",
            format!("no position was ever stored for device {id:?}"),
        )
    })
}
