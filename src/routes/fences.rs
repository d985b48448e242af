//! The fence API: thin handlers over the [`FenceRegistry`], which answers reads from the
//! in-memory index and owns every write.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::auth::{Authorized, Principal, Scope, scope};
use crate::error::ApiError;
use crate::extract::{Params, PathId, RawBody};
use crate::fence_registry::FenceRegistry;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    bbox: Option<String>,
}

/// `GET /api/v1/fences?bbox=`: every fence (or those whose area meets the bbox), by id.
#[utoipa::path(get, path = "/api/v1/fences", tag = "fences", security(("bearer" = [])),
    params(("bbox" = Option<String>, Query, description = "minLon,minLat,maxLon,maxLat")),
    responses((status = 200, description = "FeatureCollection of fences")))]
pub async fn list(
    State(fences): State<Arc<FenceRegistry>>,
    reader: Authorized<scope::Read>,
    Params(params): Params<ListParams>,
) -> Result<Json<Value>, ApiError> {
    let bbox = params.bbox.as_deref().map(crate::extract::bbox).transpose()?;
    let features: Vec<Value> = fences
        .features(bbox)
        .await?
        .into_iter()
        .map(|f| for_reader(f, &reader))
        .collect();
    Ok(Json(json!({"type": "FeatureCollection", "features": features})))
}

/// A fence as `reader` may see it: webhook URLs (which may hold secrets of their receivers)
/// are shown to admin tokens only.
fn for_reader(mut feature: Value, reader: &Principal) -> Value {
    if !reader.has(Scope::Admin)
        && let Some(properties) = feature.get_mut("properties").and_then(Value::as_object_mut)
    {
        properties.remove("webhooks");
    }
    feature
}

/// `GET /api/v1/fences/{id}`.
#[utoipa::path(get, path = "/api/v1/fences/{id}", tag = "fences", security(("bearer" = [])), params(("id" = String, Path, description = "Fence id")),
    responses((status = 200, description = "The fence as a Feature"), (status = 404, description = "Unknown fence")))]
pub async fn get_one(
    State(fences): State<Arc<FenceRegistry>>,
    reader: Authorized<scope::Read>,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(for_reader(fences.feature(&id)?, &reader)))
}

/// `POST /api/v1/fences`: creates a fence from a Feature (409 if its id exists).
#[utoipa::path(post, path = "/api/v1/fences", tag = "fences", security(("bearer" = [])),
    request_body(content = serde_json::Value, description = "A GeoJSON Feature", content_type = "application/json"),
    responses((status = 201, description = "Created"), (status = 400, description = "Invalid fence"), (status = 409, description = "The id exists")))]
pub async fn create(
    State(fences): State<Arc<FenceRegistry>>,
    _admin: Authorized<scope::Admin>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let feature = fences.create(&json_body(&body)?).await?;
    Ok((StatusCode::CREATED, Json(feature)).into_response())
}

/// `PUT /api/v1/fences/{id}`: creates or replaces the fence with that id.
#[utoipa::path(put, path = "/api/v1/fences/{id}", tag = "fences", security(("bearer" = [])), params(("id" = String, Path, description = "Fence id")),
    request_body(content = serde_json::Value, description = "A GeoJSON Feature", content_type = "application/json"),
    responses((status = 200, description = "Replaced"), (status = 201, description = "Created"), (status = 400, description = "Invalid fence")))]
pub async fn put(
    State(fences): State<Arc<FenceRegistry>>,
    _admin: Authorized<scope::Admin>,
    PathId(id): PathId,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let (feature, existed) = fences.put(&id, json_body(&body)?).await?;
    let status = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(feature)).into_response())
}

/// `DELETE /api/v1/fences/{id}`.
#[utoipa::path(delete, path = "/api/v1/fences/{id}", tag = "fences", security(("bearer" = [])), params(("id" = String, Path, description = "Fence id")),
    responses((status = 200, description = "Deleted"), (status = 404, description = "Unknown fence")))]
pub async fn delete(
    State(fences): State<Arc<FenceRegistry>>,
    _admin: Authorized<scope::Admin>,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    fences.delete(&id).await?;
    tracing::info!(fence = %id, "fence deleted");
    Ok(Json(json!({"deleted": id})))
}

/// `POST /api/v1/fences/import`: a FeatureCollection, all or nothing. Invalid features are
/// reported by index with the reason, and then nothing is stored.
#[utoipa::path(post, path = "/api/v1/fences/import", tag = "fences", security(("bearer" = [])),
    request_body(content = serde_json::Value, description = "A GeoJSON FeatureCollection", content_type = "application/json"),
    responses((status = 200, description = "All imported: {imported}"), (status = 400, description = "Nothing imported: {error, invalid: [{index, id, reason}]}")))]
pub async fn import(
    State(fences): State<Arc<FenceRegistry>>,
    _admin: Authorized<scope::Admin>,
    RawBody(body): RawBody,
) -> Result<Json<Value>, ApiError> {
    let count = fences.import(json_body(&body)?).await?;
    Ok(Json(json!({"imported": count})))
}

/// `GET /api/v1/fences/{id}/devices`: live positions of the devices inside the fence now.
#[utoipa::path(get, path = "/api/v1/fences/{id}/devices", tag = "fences", security(("bearer" = [])), params(("id" = String, Path, description = "Fence id")),
    responses((status = 200, description = "FeatureCollection of the live positions inside"), (status = 404, description = "Unknown fence")))]
pub async fn devices_inside(
    State(fences): State<Arc<FenceRegistry>>,
    State(db): State<PgPool>,
    principal: Authorized<scope::Read>,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    let fence = fences.prepared(&id)?;
    let mut inside = Vec::new();
    for bbox in fence.extents() {
        let query = tracker::latest::ListQuery {
            limit: i64::MAX,
            bbox: Some(bbox),
            devices: principal.device_filter().cloned(),
            ..tracker::latest::ListQuery::default()
        };
        for position in tracker::latest::list(&db, &query).await? {
            if fence.fence().applies_to.matches(&position.device)
                && fence.contains(position.lon, position.lat)
            {
                inside.push(position);
            }
        }
    }
    inside.sort_by(|a, b| a.device.cmp(&b.device));
    inside.dedup_by(|a, b| a.device == b.device);
    let features: Vec<Value> = inside.iter().map(tracker::latest::to_feature).collect();
    Ok(Json(
        json!({"type": "FeatureCollection", "fence": id, "features": features}),
    ))
}

fn json_body(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("malformed_body", format!("the body is not valid JSON: {e}")))
}
