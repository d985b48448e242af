//! Dispatch routes: which devices are nearest to a point, which are inside a box or an area,
//! right now. Answered from the live index (`dispatch`), never a table scan; every answer
//! applies the token's device limit, and the optional `max_age_s`, `prefix` and `group` filters.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use chrono::{Duration, Utc};
use dispatch::{Dispatch, Filter, Within};
use fences::PreparedFence;
use serde::Deserialize;
use serde_json::{Value, json};
use tracker::live::LivePosition;

use crate::auth::{Authorized, scope};
use crate::error::{ApiError, ErrorBody, TokenRefusals};
use crate::extract::{Params, RawBody};
use crate::fence_registry::FenceRegistry;
use crate::routes::geojson::{Feature, FeatureCollection};
use crate::routes::paging::Paging;

const DEFAULT_NEARBY: usize = 10;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NearbyParams {
    lon: f64,
    lat: f64,
    radius_m: Option<f64>,
    limit: Option<usize>,
    max_age_s: Option<u64>,
    prefix: Option<String>,
    group: Option<String>,
}

/// `GET /api/v1/devices/nearby?lon=&lat=`: the nearest devices, nearest first, each with its
/// great-circle `distance_m`.
#[utoipa::path(get, path = "/api/v1/devices/nearby", operation_id = "nearby_devices", tag = "dispatch", security(("bearer" = [])),
    params(("lon" = f64, Query, description = "Longitude of the point, -180 to 180"),
        ("lat" = f64, Query, description = "Latitude of the point, -90 to 90"),
        ("radius_m" = Option<f64>, Query, description = "Only devices within this great-circle distance, in metres"),
        ("limit" = Option<usize>, Query, description = "How many devices at most (k), 1 to `dispatch.max_nearby` (default 10)"),
        ("max_age_s" = Option<u64>, Query, description = "Only positions taken in the last `max_age_s` seconds"),
        ("prefix" = Option<String>, Query, description = "Only devices whose id starts with this"),
        ("group" = Option<String>, Query, description = "Only the members of this device group")),
    responses((status = 200, description = "FeatureCollection of live positions, nearest first, with `properties.distance_m`",
            body = FeatureCollection),
        (status = 400, description = "Missing or bad point, radius, limit, or an unknown parameter", body = ErrorBody),
        (status = 404, description = "Unknown group", body = ErrorBody),
        (status = 503, description = "The live index is still loading: retry after Retry-After", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
        TokenRefusals))]
pub async fn nearby(
    State(dispatch): State<Arc<Dispatch>>,
    reader: Authorized<scope::Read>,
    Params(params): Params<NearbyParams>,
) -> Result<Json<FeatureCollection>, ApiError> {
    if !(-180.0..=180.0).contains(&params.lon) || !(-90.0..=90.0).contains(&params.lat) {
        return Err(ApiError::bad_request(
            "invalid_point",
            "lon must be within ±180 and lat within ±90",
        ));
    }
    if params.radius_m.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        return Err(ApiError::bad_request(
            "invalid_radius",
            "radius_m must be a positive number of metres",
        ));
    }
    let max = dispatch.config.max_nearby;
    let limit = params.limit.unwrap_or(DEFAULT_NEARBY);
    if !(1..=max).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_limit",
            format!("limit must be between 1 and {max}"),
        ));
    }
    let filter = filter(
        &reader,
        &dispatch,
        params.max_age_s,
        params.prefix,
        params.group.as_deref(),
    )?;
    loaded(&dispatch)?;
    let found = dispatch
        .index
        .read()
        .nearest((params.lon, params.lat), params.radius_m, limit, &filter);
    let features = found
        .iter()
        .map(|n| feature(&n.position, Some(n.distance_m)))
        .collect();
    Ok(Json(FeatureCollection::new(features)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WithinParams {
    bbox: String,
    limit: Option<i64>,
    after: Option<String>,
    max_age_s: Option<u64>,
    prefix: Option<String>,
    group: Option<String>,
}

/// `GET /api/v1/devices/within?bbox=`: the devices inside a box, in id order, paged.
#[utoipa::path(get, path = "/api/v1/devices/within", operation_id = "devices_within_bbox", tag = "dispatch", security(("bearer" = [])),
    params(("bbox" = String, Query, description = "minLon,minLat,maxLon,maxLat (minLon > maxLon crosses the antimeridian)"),
        ("limit" = Option<i64>, Query, description = "Page size, 1 to 10000 (default 1000)"),
        ("after" = Option<String>, Query, description = "Last device id of the previous page"),
        ("max_age_s" = Option<u64>, Query, description = "Only positions taken in the last `max_age_s` seconds"),
        ("prefix" = Option<String>, Query, description = "Only devices whose id starts with this"),
        ("group" = Option<String>, Query, description = "Only the members of this device group")),
    responses((status = 200, description = "FeatureCollection of live positions in id order, with `next` while more follow",
            body = FeatureCollection),
        (status = 400, description = "Missing or bad bbox, limit, `after`, or an unknown parameter", body = ErrorBody),
        (status = 404, description = "Unknown group", body = ErrorBody),
        (status = 503, description = "The live index is still loading: retry after Retry-After", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
        TokenRefusals))]
pub async fn within(
    State(dispatch): State<Arc<Dispatch>>,
    reader: Authorized<scope::Read>,
    Params(params): Params<WithinParams>,
) -> Result<Json<FeatureCollection>, ApiError> {
    let bbox = crate::extract::bbox(&params.bbox)?;
    let paging = Paging::new(params.limit, params.after)?;
    let max_age = params.max_age_s.map(|s| s.to_string());
    let filter = filter(
        &reader,
        &dispatch,
        params.max_age_s,
        params.prefix.clone(),
        params.group.as_deref(),
    )?;
    loaded(&dispatch)?;
    let page = dispatch
        .index
        .read()
        .within_bbox(&bbox, &filter, paging.after.as_deref(), paging.limit);
    let filters = [
        ("bbox", Some(params.bbox.as_str())),
        ("max_age_s", max_age.as_deref()),
        ("prefix", params.prefix.as_deref()),
        ("group", params.group.as_deref()),
    ];
    Ok(Json(collection(&page, &paging, &filters)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AreaParams {
    radius_m: Option<f64>,
    buffer_m: Option<f64>,
    limit: Option<i64>,
    after: Option<String>,
    max_age_s: Option<u64>,
    prefix: Option<String>,
    group: Option<String>,
}

/// `POST /api/v1/devices/within`: the devices inside an area (the body), in id order, paged.
#[utoipa::path(post, path = "/api/v1/devices/within", operation_id = "devices_within_area", tag = "dispatch", security(("bearer" = [])),
    params(("radius_m" = Option<f64>, Query, description = "For a Point: the circle's radius in metres"),
        ("buffer_m" = Option<f64>, Query, description = "For a LineString: the corridor's half-width in metres"),
        ("limit" = Option<i64>, Query, description = "Page size, 1 to 10000 (default 1000)"),
        ("after" = Option<String>, Query, description = "Last device id of the previous page"),
        ("max_age_s" = Option<u64>, Query, description = "Only positions taken in the last `max_age_s` seconds"),
        ("prefix" = Option<String>, Query, description = "Only devices whose id starts with this"),
        ("group" = Option<String>, Query, description = "Only the members of this device group")),
    request_body(content = serde_json::Value, description = "A GeoJSON geometry (Polygon, MultiPolygon; Point with \
        `radius_m`; LineString with `buffer_m`) or a Feature holding one (a fence as GET /api/v1/fences/{id} gives it)",
        content_type = "application/json",
        example = json!({"type": "Polygon", "coordinates": [[[2.30, 48.83], [2.40, 48.83], [2.40, 48.88], [2.30, 48.88], [2.30, 48.83]]]})),
    responses((status = 200, description = "FeatureCollection of live positions in id order, with `next` (POST the same body \
            to it) while more follow", body = FeatureCollection),
        (status = 400, description = "Not JSON, not an area, an invalid area, bad limit or `after`, or an unknown parameter", body = ErrorBody),
        (status = 404, description = "Unknown group", body = ErrorBody),
        (status = 413, description = "Body over the ingest body limit", body = ErrorBody),
        (status = 503, description = "The live index is still loading: retry after Retry-After", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
        TokenRefusals))]
pub async fn within_area(
    State(dispatch): State<Arc<Dispatch>>,
    State(fences): State<Arc<FenceRegistry>>,
    reader: Authorized<scope::Read>,
    Params(params): Params<AreaParams>,
    RawBody(body): RawBody,
) -> Result<Json<FeatureCollection>, ApiError> {
    let paging = Paging::new(params.limit, params.after.clone())?;
    let filter = filter(
        &reader,
        &dispatch,
        params.max_age_s,
        params.prefix.clone(),
        params.group.as_deref(),
    )?;
    let area = area(&body, &params, fences.limits().clone()).await?;
    loaded(&dispatch)?;
    let page = dispatch
        .index
        .read()
        .within_area(&area, &filter, paging.after.as_deref(), paging.limit);
    let [radius, buffer, max_age] = [
        params.radius_m.map(|v| v.to_string()),
        params.buffer_m.map(|v| v.to_string()),
        params.max_age_s.map(|v| v.to_string()),
    ];
    let filters = [
        ("radius_m", radius.as_deref()),
        ("buffer_m", buffer.as_deref()),
        ("max_age_s", max_age.as_deref()),
        ("prefix", params.prefix.as_deref()),
        ("group", params.group.as_deref()),
    ];
    Ok(Json(collection(&page, &paging, &filters)))
}

/// The area of a `POST /api/v1/devices/within` body, validated and prepared as a fence is
/// (off the async workers: a detailed polygon takes milliseconds).
async fn area(
    body: &[u8],
    params: &AreaParams,
    limits: fences::FenceLimits,
) -> Result<PreparedFence, ApiError> {
    let invalid = |message: String| ApiError::bad_request("invalid_area", message);
    let body = crate::extract::json_body(body)?;
    let mut feature = match body.get("type").and_then(Value::as_str) {
        Some("Feature") => body,
        Some(_) => json!({"type": "Feature", "geometry": body, "properties": {}}),
        None => {
            return Err(invalid(
                "the body must be a GeoJSON geometry or Feature (it has no `type`)".into(),
            ));
        }
    };
    if !feature["properties"].is_object() {
        feature["properties"] = json!({});
    }
    for (key, value) in [("radius_m", params.radius_m), ("buffer_m", params.buffer_m)] {
        if let Some(value) = value {
            feature["properties"][key] = json!(value);
        }
    }
    let fence =
        fences::feature::to_fence(&feature, || "area".to_owned()).map_err(|e| invalid(e.to_string()))?;
    tokio::task::spawn_blocking(move || PreparedFence::new(fence, &limits))
        .await
        .map_err(|e| ApiError::internal(&e))?
        .map_err(|e| invalid(e.to_string()))
}

/// The reader's filter: its device limit, and the query's age, prefix and group (404
/// `group_not_found` for an unknown group).
fn filter(
    reader: &Authorized<scope::Read>,
    dispatch: &Dispatch,
    max_age_s: Option<u64>,
    prefix: Option<String>,
    group: Option<&str>,
) -> Result<Filter, ApiError> {
    let since = max_age_s
        .map(|s| {
            i64::try_from(s)
                .ok()
                .and_then(Duration::try_seconds)
                .and_then(|age| Utc::now().checked_sub_signed(age))
                .ok_or_else(|| ApiError::bad_request("invalid_max_age", "max_age_s is too large"))
        })
        .transpose()?;
    if let Some(prefix) = &prefix {
        crate::extract::checked_id("`prefix`", prefix)?;
    }
    Ok(Filter {
        since,
        prefixes: prefix.into_iter().collect(),
        devices: super::groups::narrowed(reader.device_filter(), &dispatch.groups, group)?,
    })
}

/// 503 until the live index has been loaded once: an empty answer would look like an empty fleet.
fn loaded(dispatch: &Dispatch) -> Result<(), ApiError> {
    if dispatch.index.loaded() {
        Ok(())
    } else {
        Err(ApiError::unavailable(
            "live_index_loading",
            "the live positions are still being loaded; retry shortly",
            1,
        ))
    }
}

fn collection(page: &Within, paging: &Paging, filters: &[(&str, Option<&str>)]) -> FeatureCollection {
    let features = page.positions.iter().map(|p| feature(p, None)).collect();
    let collection = FeatureCollection::new(features);
    match (page.more, page.positions.last()) {
        (true, Some(last)) => {
            collection.with_next(paging.next("/api/v1/devices/within", &last.device, filters))
        }
        _ => collection,
    }
}

/// A live position as a GeoJSON Feature (id = device), with its distance when a point was given.
fn feature(position: &LivePosition, distance_m: Option<f64>) -> Feature {
    let mut properties = json!({
        "device": position.device,
        "ts": position.ts,
        "speed_mps": position.speed_mps,
        "heading_deg": position.heading_deg,
    });
    if let Some(distance_m) = distance_m {
        properties["distance_m"] = json!((distance_m * 100.0).round() / 100.0);
    }
    Feature(json!({
        "type": "Feature",
        "id": position.device,
        "geometry": {"type": "Point", "coordinates": position.position},
        "properties": properties,
    }))
}
