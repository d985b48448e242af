//! Device read routes: the live fleet (paged, bbox-filtered), one device, its track export,
//! and erasing a device. Every route checks the token's scope and device limit.

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use tracker::export::TrackFormat;
use tracker::latest::ListQuery;

use crate::auth::{ApiAuth, Scope};
use crate::error::ApiError;
use crate::routes::path_id;
use crate::state::AppState;

const DEFAULT_PAGE: i64 = 1_000;
const MAX_PAGE: i64 = 10_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    bbox: Option<String>,
    limit: Option<i64>,
    after: Option<String>,
}

/// `GET /api/v1/devices?bbox=&limit=&after=`: live positions as a FeatureCollection with a
/// `next` link while more devices follow.
#[utoipa::path(get, path = "/api/v1/devices", tag = "read", security(("bearer" = [])),
    params(("bbox" = Option<String>, Query, description = "minLon,minLat,maxLon,maxLat"),
        ("limit" = Option<i64>, Query, description = "Page size, 1 to 10000 (default 1000)"),
        ("after" = Option<String>, Query, description = "Last device id of the previous page")),
    responses((status = 200, description = "FeatureCollection of live positions, with `next` while more follow"),
        (status = 400, description = "Bad bbox or limit")))]
pub async fn list(
    State(state): State<AppState>,
    ApiAuth(principal): ApiAuth,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Read)?;
    let Query(params) = params.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let limit = params.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_limit",
            format!("limit must be between 1 and {MAX_PAGE}"),
        ));
    }
    let bbox = params.bbox.as_deref().map(parse_bbox).transpose()?;
    let query = ListQuery {
        after: params.after.clone(),
        limit: limit + 1,
        bbox,
        devices: principal.device_filter(),
    };
    let mut positions = tracker::latest::list(&state.pool, &query).await?;
    let more = positions.len() as i64 > limit;
    positions.truncate(usize::try_from(limit).unwrap_or(0));
    let mut collection = json!({
        "type": "FeatureCollection",
        "features": positions.iter().map(tracker::latest::LatestPosition::to_feature).collect::<Vec<_>>(),
    });
    if let (true, Some(last)) = (more, positions.last()) {
        let mut next = form_urlencoded::Serializer::new(String::new());
        next.append_pair("after", &last.device)
            .append_pair("limit", &limit.to_string());
        if let Some(bbox) = &params.bbox {
            next.append_pair("bbox", bbox);
        }
        collection["next"] = json!(format!("/api/v1/devices?{}", next.finish()));
    }
    Ok(Json(collection))
}

pub fn parse_bbox(text: &str) -> Result<[f64; 4], ApiError> {
    let invalid = || {
        ApiError::bad_request(
            "invalid_bbox",
            format!("bbox {text:?} must be minLon,minLat,maxLon,maxLat in degrees"),
        )
    };
    let values: Vec<f64> = text
        .split(',')
        .map(|v| v.trim().parse::<f64>().map_err(|_| invalid()))
        .collect::<Result<_, _>>()?;
    let [min_lon, min_lat, max_lon, max_lat] = <[f64; 4]>::try_from(values).map_err(|_| invalid())?;
    let bbox = [min_lon, min_lat, max_lon, max_lat];
    if valid_bbox(bbox) {
        Ok(bbox)
    } else {
        Err(invalid())
    }
}

/// Longitudes within ±180, latitudes within ±90, south below north (west may exceed east: the
/// box then crosses the antimeridian).
pub fn valid_bbox([min_lon, min_lat, max_lon, max_lat]: [f64; 4]) -> bool {
    let lon_ok = |v: f64| (-180.0..=180.0).contains(&v);
    let lat_ok = |v: f64| (-90.0..=90.0).contains(&v);
    lon_ok(min_lon) && lon_ok(max_lon) && lat_ok(min_lat) && lat_ok(max_lat) && min_lat <= max_lat
}

/// `GET /api/v1/devices/{id}`: the latest position as a GeoJSON Feature.
#[utoipa::path(get, path = "/api/v1/devices/{id}", tag = "read", security(("bearer" = [])), params(("id" = String, Path, description = "Device id")),
    responses((status = 200, description = "The live position as a GeoJSON Feature"), (status = 404, description = "Never reported")))]
pub async fn get_one(
    State(state): State<AppState>,
    ApiAuth(principal): ApiAuth,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Read)?;
    let id = path_id(id)?;
    principal.require_device(&id)?;
    let latest = tracker::latest::get(&state.pool, &id).await?;
    latest
        .map(|position| Json(position.to_feature()))
        .ok_or_else(|| unknown_device(&id))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackParams {
    from: Option<String>,
    to: Option<String>,
    format: Option<String>,
}

/// `GET /api/v1/devices/{id}/track?from=&to=&format=geojson|gpx|csv`: the history in
/// `[from, to)` (default: the last 24 hours), streamed.
#[utoipa::path(get, path = "/api/v1/devices/{id}/track", tag = "read", security(("bearer" = [])),
    params(("id" = String, Path, description = "Device id"), ("from" = Option<String>, Query, description = "RFC 3339 or epoch (default: 24 h before `to`)"),
        ("to" = Option<String>, Query, description = "RFC 3339 or epoch, exclusive (default: now)"),
        ("format" = Option<String>, Query, description = "geojson (default), gpx or csv")),
    responses((status = 200, description = "The history, streamed"), (status = 400, description = "Bad time range or format"),
        (status = 404, description = "Never reported")))]
pub async fn track(
    State(state): State<AppState>,
    ApiAuth(principal): ApiAuth,
    id: Result<Path<String>, PathRejection>,
    params: Result<Query<TrackParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    principal.require(Scope::Read)?;
    let id = path_id(id)?;
    principal.require_device(&id)?;
    let Query(params) = params.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let format = match params.format.as_deref() {
        None => TrackFormat::GeoJson,
        Some(text) => TrackFormat::parse(text).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_format",
                format!("format {text:?} is not one of geojson, gpx, csv"),
            )
        })?,
    };
    let to = params
        .to
        .as_deref()
        .map(|t| parse_time("to", t))
        .transpose()?
        .unwrap_or_else(Utc::now);
    let from = params
        .from
        .as_deref()
        .map(|t| parse_time("from", t))
        .transpose()?
        .unwrap_or(to - Duration::hours(24));
    if from >= to {
        return Err(ApiError::bad_request(
            "invalid_range",
            "`from` must be before `to`",
        ));
    }
    if tracker::latest::get(&state.pool, &id).await?.is_none() {
        return Err(unknown_device(&id));
    }
    let body = Body::from_stream(tracker::export::stream(
        state.pool.clone(),
        &state.tasks,
        id.clone(),
        from,
        to,
        format,
    ));
    let file_name: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    Ok((
        [
            (header::CONTENT_TYPE, format.content_type().to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("inline; filename=\"{file_name}.{}\"", format.extension()),
            ),
        ],
        body,
    )
        .into_response())
}

pub(super) fn parse_time(name: &str, text: &str) -> Result<DateTime<Utc>, ApiError> {
    let parsed = match text.parse::<serde_json::Number>() {
        Ok(number) => tracker::decode::time::from_epoch_number(&number),
        Err(_) => tracker::decode::time::from_rfc3339(text),
    };
    parsed.map_err(|_| {
        ApiError::bad_request(
            "invalid_time",
            format!("`{name}` {text:?} must be RFC 3339 or epoch seconds/milliseconds"),
        )
    })
}

/// `DELETE /api/v1/devices/{id}` (admin): erases the device's history, live position, alerts
/// and fence states.
#[utoipa::path(delete, path = "/api/v1/devices/{id}", tag = "admin", security(("bearer" = [])), params(("id" = String, Path, description = "Device id")),
    responses((status = 200, description = "History and live position erased"), (status = 404, description = "Unknown device")))]
pub async fn erase(
    State(state): State<AppState>,
    ApiAuth(principal): ApiAuth,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    principal.require(Scope::Admin)?;
    let id = path_id(id)?;
    let mut tx = state.pool.begin().await?;
    let erased = tracker::latest::erase(&mut tx, &id).await?;
    if !erased.device_known {
        return Err(unknown_device(&id));
    }
    crate::alerts::store::erase_device(&mut tx, &id).await?;
    tx.commit().await?;
    state.evaluators.forget(&id).await;
    tracing::info!(device = %id, positions = erased.positions, "device erased");
    Ok((
        StatusCode::OK,
        Json(json!({"device": id, "erased_positions": erased.positions})),
    )
        .into_response())
}

fn unknown_device(id: &str) -> ApiError {
    ApiError::not_found(
        "device_not_found",
        format!("no position was ever stored for device {id:?}"),
    )
}
