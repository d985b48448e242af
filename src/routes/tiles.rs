//! `GET /tiles/{layer}/{z}/{x}/{y}` (also `.mvt` / `.pbf`): one Mapbox Vector Tile built by
//! PostGIS. 204 for an empty tile, 400 for a tile that does not exist, 404 for an unknown layer.
//! Tiles show where devices are, so they need the `read` scope; map clients may pass the token
//! as `?token=`.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use tiles::{Layer, TileCoord};

use crate::auth::{DeviceAuth, Scope};
use crate::error::ApiError;
use crate::state::AppState;

#[utoipa::path(get, path = "/tiles/{layer}/{z}/{x}/{y}", tag = "tiles", security(("bearer" = []), ("token" = [])),
    params(("layer" = String, Path, description = "fences or positions"), ("z" = u8, Path, description = "Zoom, 0 to 22"),
        ("x" = u32, Path, description = "Column"), ("y" = String, Path, description = "Row, optionally with .mvt or .pbf")),
    responses((status = 200, description = "The tile", content_type = "application/vnd.mapbox-vector-tile"),
        (status = 204, description = "No feature in this tile"), (status = 400, description = "No such tile"),
        (status = 404, description = "Unknown layer")))]
pub async fn tile(
    State(state): State<AppState>,
    DeviceAuth(principal): DeviceAuth,
    path: Result<Path<(String, String, String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    principal.require(Scope::Read)?;
    let Path((layer, z, x, y)) = path.map_err(|e| ApiError::bad_request("invalid_path", e.body_text()))?;
    let layer = Layer::from_name(&layer).ok_or_else(|| {
        let known: Vec<&str> = Layer::ALL.iter().map(|l| l.name()).collect();
        ApiError::not_found(
            "unknown_layer",
            format!("no layer {layer:?}; layers: {}", known.join(", ")),
        )
    })?;
    let tile =
        TileCoord::parse(&z, &x, &y).map_err(|e| ApiError::bad_request("invalid_tile", e.to_string()))?;
    let bytes: Vec<u8> = sqlx::query_scalar(layer.sql())
        .bind(i32::from(tile.z))
        // ST_TileEnvelope takes integers; x and y stay below 2^22.
        .bind(i32::try_from(tile.x).unwrap_or(i32::MAX))
        .bind(i32::try_from(tile.y).unwrap_or(i32::MAX))
        .fetch_one(&state.pool)
        .await?;
    if bytes.is_empty() {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    Ok(([(header::CONTENT_TYPE, tiles::CONTENT_TYPE)], bytes).into_response())
}
