//! Device read routes: the live fleet (paged, bbox-filtered), one device, its track export,
//! and erasing a device. Every route checks the token's scope and device limit.

use std::sync::Arc;

use alerts::Alerting;
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{Duration, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::PgPool;
use tracker::export::TrackFormat;
use tracker::latest::ListQuery;

use crate::auth::{Authorized, scope};
use crate::error::ApiError;
use crate::extract::{Params, PathId, checked_id};
use crate::ws::Sessions;

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
    State(db): State<PgPool>,
    principal: Authorized<scope::Read>,
    Params(params): Params<ListParams>,
) -> Result<Json<Value>, ApiError> {
    let limit = params.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_limit",
            format!("limit must be between 1 and {MAX_PAGE}"),
        ));
    }
    let bbox = params.bbox.as_deref().map(crate::extract::bbox).transpose()?;
    if let Some(after) = &params.after {
        checked_id("`after`", after)?;
    }
    let query = ListQuery {
        after: params.after.clone(),
        limit: limit + 1,
        bbox,
        devices: principal.device_filter().cloned(),
    };
    let mut positions = tracker::latest::list(&db, &query).await?;
    let more = positions.len() as i64 > limit;
    positions.truncate(usize::try_from(limit).unwrap_or(0));
    let mut collection = json!({
        "type": "FeatureCollection",
        "features": positions.iter().map(tracker::latest::to_feature).collect::<Vec<_>>(),
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

/// `GET /api/v1/devices/{id}`: the latest position as a GeoJSON Feature.
#[utoipa::path(get, path = "/api/v1/devices/{id}", tag = "read", security(("bearer" = [])), params(("id" = String, Path, description = "Device id")),
    responses((status = 200, description = "The live position as a GeoJSON Feature"), (status = 404, description = "Never reported")))]
pub async fn get_one(
    State(db): State<PgPool>,
    principal: Authorized<scope::Read>,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    principal.require_device(&id)?;
    let latest = tracker::latest::get(&db, &id).await?;
    latest
        .map(|position| Json(tracker::latest::to_feature(&position)))
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
    State(db): State<PgPool>,
    State(sessions): State<Sessions>,
    principal: Authorized<scope::Read>,
    PathId(id): PathId,
    Params(params): Params<TrackParams>,
) -> Result<Response, ApiError> {
    principal.require_device(&id)?;
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
        .map(|t| crate::extract::time("to", t))
        .transpose()?
        .unwrap_or_else(Utc::now);
    let from = params
        .from
        .as_deref()
        .map(|t| crate::extract::time("from", t))
        .transpose()?
        .unwrap_or(to - Duration::hours(24));
    if from >= to {
        return Err(ApiError::bad_request(
            "invalid_range",
            "`from` must be before `to`",
        ));
    }
    if tracker::latest::get(&db, &id).await?.is_none() {
        return Err(unknown_device(&id));
    }
    let body = Body::from_stream(tracker::export::stream(
        db,
        &sessions.tasks,
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

/// `DELETE /api/v1/devices/{id}` (admin): erases the device's history, live position, alerts
/// and fence states.
#[utoipa::path(delete, path = "/api/v1/devices/{id}", tag = "admin", security(("bearer" = [])), params(("id" = String, Path, description = "Device id")),
    responses((status = 200, description = "History and live position erased"), (status = 404, description = "Unknown device")))]
pub async fn erase(
    State(db): State<PgPool>,
    State(alerting): State<Arc<Alerting>>,
    admin: Authorized<scope::Admin>,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    // An admin token limited to some devices erases only those.
    admin.require_device(&id)?;
    let mut tx = db.begin().await?;
    let erased = tracker::latest::erase(&mut tx, &id).await?;
    if !erased.device_known {
        return Err(unknown_device(&id));
    }
    alerts::store::erase_device(&mut tx, &id).await?;
    tx.commit().await?;
    alerting.evaluators.forget(&id).await;
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
