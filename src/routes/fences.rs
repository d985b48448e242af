//! The fence API. Reads are answered from the in-memory index; writes (admin) go to the
//! database in one transaction and then to the index, one write at a time (fence writes are
//! rare, and serialising them keeps database and index in the same order).

use std::collections::HashSet;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use fences::{Fence, FenceError, PreparedFence};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{ApiAuth, Scope};
use crate::error::ApiError;
use crate::fence_feature::{CollectionError, fence_from_feature, prepare_collection, to_feature};
use crate::fence_store;
use crate::routes::devices::parse_bbox;
use crate::routes::path_id;
use crate::state::AppState;
use crate::tile_cache::Change;
use crate::tile_layers::LayerId;

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
    State(state): State<AppState>,
    ApiAuth(principal): ApiAuth,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Read)?;
    let Query(params) = params.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let wanted: Option<HashSet<String>> = match params.bbox.as_deref() {
        Some(bbox) => Some(
            fence_store::ids_in_bbox(&state.pool, parse_bbox(bbox)?)
                .await?
                .into_iter()
                .collect(),
        ),
        None => None,
    };
    let index = state.fences.read();
    let mut features: Vec<(&str, Value)> = index
        .fences()
        .filter(|f| wanted.as_ref().is_none_or(|ids| ids.contains(f.id())))
        .map(|f| (f.id(), to_feature(f.fence())))
        .collect();
    features.sort_by(|a, b| a.0.cmp(b.0));
    let features: Vec<Value> = features.into_iter().map(|(_, f)| f).collect();
    Ok(Json(json!({"type": "FeatureCollection", "features": features})))
}

/// `GET /api/v1/fences/{id}`.
#[utoipa::path(get, path = "/api/v1/fences/{id}", tag = "fences", security(("bearer" = [])), params(("id" = String, Path, description = "Fence id")),
    responses((status = 200, description = "The fence as a Feature"), (status = 404, description = "Unknown fence")))]
pub async fn get_one(
    State(state): State<AppState>,
    ApiAuth(principal): ApiAuth,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Read)?;
    let id = path_id(id)?;
    let index = state.fences.read();
    index
        .get(&id)
        .map(|f| Json(to_feature(f.fence())))
        .ok_or_else(|| unknown_fence(&id))
}

/// `POST /api/v1/fences`: creates a fence from a Feature (409 if its id exists).
#[utoipa::path(post, path = "/api/v1/fences", tag = "fences", security(("bearer" = [])),
    request_body(content = serde_json::Value, description = "A GeoJSON Feature", content_type = "application/json"),
    responses((status = 201, description = "Created"), (status = 400, description = "Invalid fence"), (status = 409, description = "The id exists")))]
pub async fn create(
    State(state): State<AppState>,
    ApiAuth(principal): ApiAuth,
    body: Bytes,
) -> Result<Response, ApiError> {
    principal.require(Scope::Admin)?;
    let feature = json_body(&body)?;
    let _writing = state.fence_writes.lock().await;
    let generated = fence_store::next_id(&state.pool).await?;
    let fence = prepare(&state, fence_from_feature(&feature, || generated))?;
    if state.fences.read().get(fence.id()).is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "fence_exists",
            format!(
                "fence {:?} exists; PUT /api/v1/fences/{{id}} replaces it",
                fence.id()
            ),
        ));
    }
    let feature = write(&state, vec![fence]).await?.remove(0);
    Ok((StatusCode::CREATED, Json(feature)).into_response())
}

/// `PUT /api/v1/fences/{id}`: creates or replaces the fence with that id.
#[utoipa::path(put, path = "/api/v1/fences/{id}", tag = "fences", security(("bearer" = [])), params(("id" = String, Path, description = "Fence id")),
    request_body(content = serde_json::Value, description = "A GeoJSON Feature", content_type = "application/json"),
    responses((status = 200, description = "Replaced"), (status = 201, description = "Created"), (status = 400, description = "Invalid fence")))]
pub async fn put(
    State(state): State<AppState>,
    ApiAuth(principal): ApiAuth,
    id: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Result<Response, ApiError> {
    principal.require(Scope::Admin)?;
    let id = path_id(id)?;
    let mut feature = json_body(&body)?;
    match feature.get("id") {
        None | Some(Value::Null) => {}
        Some(given) if given.as_str() == Some(id.as_str()) || *given == json!(id) => {}
        Some(given) => {
            return Err(ApiError::bad_request(
                "id_mismatch",
                format!("the Feature's id {given} differs from the path's {id:?}"),
            ));
        }
    }
    if let Some(object) = feature.as_object_mut() {
        object.insert("id".into(), json!(id));
    }
    let _writing = state.fence_writes.lock().await;
    let fence = prepare(&state, fence_from_feature(&feature, || id.clone()))?;
    let existed = state.fences.read().get(&id).is_some();
    let feature = write(&state, vec![fence]).await?.remove(0);
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
    State(state): State<AppState>,
    ApiAuth(principal): ApiAuth,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Admin)?;
    let id = path_id(id)?;
    let _writing = state.fence_writes.lock().await;
    if !fence_store::delete(&state.pool, &id).await? {
        return Err(unknown_fence(&id));
    }
    if let Some(old) = state.fences.update(|index| index.remove(&id)) {
        state
            .tiles
            .invalidate(LayerId::FENCES, Change::within(extents(&old)));
    }
    tracing::info!(fence = %id, "fence deleted");
    Ok(Json(json!({"deleted": id})))
}

/// `POST /api/v1/fences/import`: a FeatureCollection, all or nothing. Invalid features are
/// reported by index with the reason, and then nothing is stored.
#[utoipa::path(post, path = "/api/v1/fences/import", tag = "fences", security(("bearer" = [])),
    request_body(content = serde_json::Value, description = "A GeoJSON FeatureCollection", content_type = "application/json"),
    responses((status = 200, description = "All imported: {imported}"), (status = 400, description = "Nothing imported: {error, invalid: [{index, id, reason}]}")))]
pub async fn import(
    State(state): State<AppState>,
    ApiAuth(principal): ApiAuth,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Admin)?;
    let collection = json_body(&body)?;
    let _writing = state.fence_writes.lock().await;
    let prepared = prepare_collection(&collection, &state.fence_limits, || {}).map_err(|e| match e {
        CollectionError::NotACollection => ApiError::bad_request(
            "not_a_feature_collection",
            "the body must be a GeoJSON FeatureCollection",
        ),
        CollectionError::Invalid { report, total } => {
            let message = format!(
                "{} of {total} features are invalid; nothing was imported",
                report.len()
            );
            ApiError::bad_request("invalid_features", message).with_detail("invalid", Value::Array(report))
        }
    })?;
    let count = prepared.len();
    write(&state, prepared).await?;
    Ok(Json(json!({"imported": count})))
}

/// `GET /api/v1/fences/{id}/devices`: live positions of the devices inside the fence now.
#[utoipa::path(get, path = "/api/v1/fences/{id}/devices", tag = "fences", security(("bearer" = [])), params(("id" = String, Path, description = "Fence id")),
    responses((status = 200, description = "FeatureCollection of the live positions inside"), (status = 404, description = "Unknown fence")))]
pub async fn devices_inside(
    State(state): State<AppState>,
    ApiAuth(principal): ApiAuth,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Read)?;
    let id = path_id(id)?;
    let (fence, boxes) = {
        let index = state.fences.read();
        let fence = index.get(&id).ok_or_else(|| unknown_fence(&id))?.clone();
        let boxes: Vec<[f64; 4]> = fence
            .bboxes()
            .iter()
            .map(|r| [r.min().x, r.min().y, r.max().x, r.max().y])
            .collect();
        (fence, boxes)
    };
    let mut inside = Vec::new();
    for bbox in boxes {
        let query = tracker::latest::ListQuery {
            limit: i64::MAX,
            bbox: Some(bbox),
            devices: principal.device_filter(),
            ..tracker::latest::ListQuery::default()
        };
        for position in tracker::latest::list(&state.pool, &query).await? {
            if fence.fence().applies_to.matches(&position.device)
                && fence.contains(position.lon, position.lat)
            {
                inside.push(position);
            }
        }
    }
    inside.sort_by(|a, b| a.device.cmp(&b.device));
    inside.dedup_by(|a, b| a.device == b.device);
    let features: Vec<Value> = inside
        .iter()
        .map(tracker::latest::LatestPosition::to_feature)
        .collect();
    Ok(Json(
        json!({"type": "FeatureCollection", "fence": id, "features": features}),
    ))
}

/// Stores `fences` in one transaction, then puts them in the index. Returns their Features.
async fn write(state: &AppState, fences: Vec<PreparedFence>) -> Result<Vec<Value>, ApiError> {
    if !state.fences_loaded.load(std::sync::atomic::Ordering::Acquire) {
        return Err(ApiError::unavailable(
            "fences_loading",
            "the fence index is not loaded yet",
            2,
        ));
    }
    if !state.webhooks_signed
        && let Some(fence) = fences.iter().find(|f| !f.fence().webhooks.is_empty())
    {
        return Err(ApiError::bad_request(
            "webhooks_unsigned",
            format!(
                "fence {:?} names webhooks, but the server has no webhooks.secret to sign them with",
                fence.id()
            ),
        ));
    }
    let mut tx = state.pool.begin().await?;
    for fence in &fences {
        fence_store::upsert(&mut tx, fence).await?;
    }
    tx.commit().await?;
    let features = fences.iter().map(|f| to_feature(f.fence())).collect();
    let touched = state.fences.update(|index| {
        let mut touched = Vec::new();
        for fence in fences {
            let id = fence.id().to_owned();
            touched.extend(extents(&fence));
            match index.replace(fence) {
                Ok(old) => touched.extend(old.iter().flat_map(extents)),
                // Preparation succeeded, so this is a bug in the index: the database has the fence.
                Err(error) => tracing::error!(fence = %id, %error, "fence stored but not indexed"),
            }
        }
        touched
    });
    // Before the reply: the next tile request must see this write.
    state.tiles.invalidate(LayerId::FENCES, Change::within(touched));
    Ok(features)
}

/// A fence's bounding boxes as `[min_lon, min_lat, max_lon, max_lat]`.
fn extents(fence: &PreparedFence) -> Vec<[f64; 4]> {
    fence
        .bboxes()
        .iter()
        .map(|r| [r.min().x, r.min().y, r.max().x, r.max().y])
        .collect()
}

fn prepare(state: &AppState, fence: Result<Fence, String>) -> Result<PreparedFence, ApiError> {
    let fence = fence.map_err(|reason| ApiError::bad_request("invalid_fence", reason))?;
    PreparedFence::new(fence, &state.fence_limits)
        .map_err(|e: FenceError| ApiError::bad_request("invalid_fence", e.to_string()))
}

fn json_body(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("malformed_body", format!("the body is not valid JSON: {e}")))
}

fn unknown_fence(id: &str) -> ApiError {
    ApiError::not_found("fence_not_found", format!("there is no fence {id:?}"))
}
