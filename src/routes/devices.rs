//! Device read routes: the live fleet (paged, bbox-filtered), one device, its track export,
//! and erasing a device. Every route checks the token's scope and device limit.

use std::sync::Arc;

use alerts::Alerting;
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dispatch::Dispatch;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tracker::export::TrackFormat;
use tracker::latest::ListQuery;
use utoipa::ToSchema;

use crate::auth::{Authorized, scope};
use crate::error::{ApiError, ErrorBody, TokenRefusals};
use crate::extract::{Params, PathId, RawBody};
use crate::routes::geojson::{Feature, FeatureCollection};
use crate::routes::paging::Paging;
use crate::ws::Sessions;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    bbox: Option<String>,
    limit: Option<i64>,
    after: Option<String>,
    group: Option<String>,
}

/// `GET /api/v1/devices?bbox=&limit=&after=`: live positions as a FeatureCollection with a
/// `next` link while more devices follow.
#[utoipa::path(get, path = "/api/v1/devices", operation_id = "list_devices", tag = "read", security(("bearer" = [])),
    params(("bbox" = Option<String>, Query, description = "minLon,minLat,maxLon,maxLat"),
        ("limit" = Option<i64>, Query, description = "Page size, 1 to 10000 (default 1000)"),
        ("after" = Option<String>, Query, description = "Last device id of the previous page"),
        ("group" = Option<String>, Query, description = "Only the members of this device group")),
    responses((status = 200, description = "FeatureCollection of live positions, with `next` while more follow",
            body = FeatureCollection),
        (status = 400, description = "Bad bbox, limit, `after` or an unknown parameter", body = ErrorBody),
        (status = 404, description = "Unknown group", body = ErrorBody),
        (status = 503, description = "The database is unavailable: retry after Retry-After", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
        TokenRefusals))]
pub async fn list(
    State(db): State<PgPool>,
    State(dispatch): State<Arc<Dispatch>>,
    principal: Authorized<scope::Read>,
    Params(params): Params<ListParams>,
) -> Result<Json<FeatureCollection>, ApiError> {
    let paging = Paging::new(params.limit, params.after)?;
    let bbox = params.bbox.as_deref().map(crate::extract::bbox).transpose()?;
    let devices = super::groups::narrowed(
        principal.device_filter(),
        &dispatch.groups,
        params.group.as_deref(),
    )?;
    let (positions, next_after) = live_page(&db, &paging, bbox, devices).await?;
    let features = positions
        .iter()
        .map(|p| Feature(tracker::latest::to_feature(p)))
        .collect();
    let mut collection = FeatureCollection::new(features);
    if let Some(last) = next_after {
        let filters = [
            ("bbox", params.bbox.as_deref()),
            ("group", params.group.as_deref()),
        ];
        collection = collection.with_next(paging.next("/api/v1/devices", &last, &filters));
    }
    Ok(Json(collection))
}

/// A page of live positions in device-id order (those in `bbox`, of `devices`), and the id to
/// ask for the next page after while more follow.
pub(super) async fn live_page(
    db: &PgPool,
    paging: &Paging,
    bbox: Option<fences::Bbox>,
    devices: Option<fences::DeviceFilter>,
) -> Result<(Vec<tracker::Fix>, Option<String>), ApiError> {
    let query = ListQuery {
        after: paging.after.clone(),
        limit: paging.limit as i64 + 1,
        bbox,
        devices,
    };
    let mut positions = tracker::latest::list(db, &query).await?;
    let more = positions.len() > paging.limit;
    positions.truncate(paging.limit);
    let next_after = more.then(|| positions.last().map(|p| p.device.clone())).flatten();
    Ok((positions, next_after))
}

/// `GET /api/v1/devices/{id}`: the latest position as a GeoJSON Feature.
#[utoipa::path(get, path = "/api/v1/devices/{id}", operation_id = "get_device", tag = "read", security(("bearer" = [])), params(("id" = String, Path, description = "Device id")),
    responses((status = 200, description = "The live position as a GeoJSON Feature", body = Feature),
        (status = 400, description = "Not a device id", body = ErrorBody),
        (status = 404, description = "Never reported", body = ErrorBody),
        (status = 503, description = "The database is unavailable: retry after Retry-After", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
        TokenRefusals))]
pub async fn get_one(
    State(db): State<PgPool>,
    principal: Authorized<scope::Read>,
    PathId(id): PathId,
) -> Result<Json<Feature>, ApiError> {
    principal.require_device(&id)?;
    let latest = tracker::latest::get(&db, &id)
        .await?
        .ok_or_else(|| unknown_device(&id))?;
    let mut feature = tracker::latest::to_feature(&latest);
    if let Some(registration) = tracker::registry::get(&db, &id).await? {
        feature["properties"]["name"] = serde_json::json!(registration.name);
        feature["properties"]["attributes"] = serde_json::Value::Object(registration.attributes.0);
    }
    Ok(Json(Feature(feature)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackParams {
    from: Option<String>,
    to: Option<String>,
    format: Option<String>,
}

/// `GET /api/v1/devices/{id}/track?from=&to=&format=geojson|gpx|csv`: the history in
/// `[from, to)` (default: the last 24 hours), streamed; without `format`, `Accept` chooses.
#[utoipa::path(get, path = "/api/v1/devices/{id}/track", operation_id = "get_device_track", tag = "read", security(("bearer" = [])),
    params(("id" = String, Path, description = "Device id"), ("from" = Option<String>, Query, description = "RFC 3339 or epoch (default: 24 h before `to`)"),
        ("to" = Option<String>, Query, description = "RFC 3339 or epoch, exclusive (default: now)"),
        ("format" = Option<String>, Query, description = "geojson, gpx or csv; without it, the first of them `Accept` names \
            (`application/geo+json`, `application/gpx+xml`, `text/csv`), else geojson")),
    responses((status = 200, description = "The history, streamed, as a file named after the device (`Content-Disposition`)",
            content((FeatureCollection = "application/geo+json"), (String = "application/gpx+xml"), (String = "text/csv")),
            headers(("Content-Disposition" = String, description = "`inline; filename=\"DEVICE.geojson\"` (`.gpx`, `.csv`)"))),
        (status = 400, description = "Not a device id, bad time range, format or an unknown parameter", body = ErrorBody),
        (status = 404, description = "Never reported", body = ErrorBody),
        (status = 503, description = "The database is unavailable: retry after Retry-After", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
        TokenRefusals))]
pub async fn track(
    State(db): State<PgPool>,
    State(sessions): State<Sessions>,
    principal: Authorized<scope::Read>,
    PathId(id): PathId,
    Params(params): Params<TrackParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    principal.require_device(&id)?;
    let accepted = headers
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .and_then(TrackFormat::from_accept);
    let format = match params.format.as_deref() {
        None => accepted.unwrap_or(TrackFormat::GeoJson),
        Some(text) => TrackFormat::parse(text).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_format",
                format!("format {text:?} is not one of geojson, gpx, csv"),
            )
        })?,
    };
    let (from, to) = crate::extract::history_range(params.from.as_deref(), params.to.as_deref())?;
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
#[utoipa::path(delete, path = "/api/v1/devices/{id}", operation_id = "erase_device", tag = "admin", security(("bearer" = [])), params(("id" = String, Path, description = "Device id")),
    responses((status = 200, description = "History and live position erased", body = Erased),
        (status = 400, description = "Not a device id", body = ErrorBody),
        (status = 404, description = "Unknown device", body = ErrorBody),
        (status = 503, description = "The database is unavailable: retry after Retry-After", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
        TokenRefusals))]
pub async fn erase(
    State(db): State<PgPool>,
    State(alerting): State<Arc<Alerting>>,
    State(dispatch): State<Arc<Dispatch>>,
    State(cluster): State<Option<Arc<crate::cluster::Node>>>,
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
    dispatch.index.remove(&id);
    if let Some(node) = &cluster {
        node.announce_erased(&id).await;
    }
    tracing::info!(device = %id, positions = erased.positions, "device erased");
    Ok((
        StatusCode::OK,
        Json(Erased {
            device: id,
            erased_positions: erased.positions,
        }),
    )
        .into_response())
}

/// What `DELETE /api/v1/devices/{id}` erased.
#[derive(Debug, Serialize, ToSchema)]
pub struct Erased {
    device: String,
    /// Positions removed from the history.
    erased_positions: u64,
}

pub(super) fn unknown_device(id: &str) -> ApiError {
    ApiError::not_found(
        "device_not_found",
        format!("no position was ever stored for device {id:?}"),
    )
}

/// What `PUT /api/v1/devices/{id}` takes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceWrite {
    /// A name to show (at most 200 characters).
    name: Option<String>,
    /// Free attributes (plate, driver, capacity...), a JSON object of at most 16 KiB.
    #[serde(default)]
    #[schema(value_type = Object)]
    attributes: serde_json::Map<String, serde_json::Value>,
}

/// A device's registration.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceRegistration {
    id: String,
    name: Option<String>,
    #[schema(value_type = Object)]
    attributes: serde_json::Map<String, serde_json::Value>,
    #[schema(value_type = String, format = DateTime)]
    created_at: chrono::DateTime<chrono::Utc>,
    #[schema(value_type = String, format = DateTime)]
    updated_at: chrono::DateTime<chrono::Utc>,
}

impl From<tracker::registry::Registration> for DeviceRegistration {
    fn from(r: tracker::registry::Registration) -> Self {
        Self {
            id: r.id,
            name: r.name,
            attributes: r.attributes.0,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// `PUT /api/v1/devices/{id}` (admin): a device's name and attributes, before or after it
/// first reports; `GET /api/v1/devices/{id}` shows them beside its position.
#[utoipa::path(put, path = "/api/v1/devices/{id}", operation_id = "put_device", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path, description = "Device id")),
    request_body(content = DeviceWrite, example = json!({"name": "Van 7", "attributes": {"plate": "AB-123-CD", "capacity_kg": 800}})),
    responses((status = 200, description = "Replaced: the registration as stored", body = DeviceRegistration),
        (status = 201, description = "Registered: the registration as stored", body = DeviceRegistration),
        (status = 400, description = "Not a device id, not a JSON object, a bad name or attributes too large", body = ErrorBody),
        (status = 503, description = "The database is unavailable: retry after Retry-After", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
        TokenRefusals))]
pub async fn put(
    State(db): State<PgPool>,
    admin: Authorized<scope::Admin>,
    PathId(id): PathId,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    admin.require_device(&id)?;
    let invalid = |message: String| ApiError::bad_request("invalid_device", message);
    let write: DeviceWrite =
        crate::extract::object_body(&body, "invalid_device", "{\"name\", \"attributes\"}")?;
    if let Some(name) = &write.name {
        fences::id::check_text(name).map_err(|e| invalid(format!("the name {e}")))?;
        if name.chars().count() > tracker::registry::MAX_NAME_CHARS {
            return Err(invalid(format!(
                "the name is longer than {} characters",
                tracker::registry::MAX_NAME_CHARS
            )));
        }
    }
    if fences::fence::map_holds_nul(&write.attributes) {
        return Err(invalid(
            "the attributes contain a NUL character (\\u0000), which cannot be stored".into(),
        ));
    }
    let size = serde_json::to_vec(&write.attributes).map_or(usize::MAX, |b| b.len());
    if size > tracker::registry::MAX_ATTRIBUTES_BYTES {
        return Err(invalid(format!(
            "the attributes take {size} bytes; the limit is {}",
            tracker::registry::MAX_ATTRIBUTES_BYTES
        )));
    }
    let (registration, created) =
        tracker::registry::put(&db, &id, write.name.as_deref(), &write.attributes).await?;
    tracing::info!(device = %id, created, "device registration written");
    Ok(super::put_reply(created, DeviceRegistration::from(registration)))
}
