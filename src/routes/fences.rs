//! The fence API: thin handlers over the [`FenceRegistry`], which answers reads from the
//! in-memory index and owns every write.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::PgPool;
use utoipa::ToSchema;

use crate::auth::{Authorized, Principal, Scope, scope};
use crate::error::{ApiError, ErrorBody, FencesUnavailable, TokenRefusals};
use crate::extract::{Params, PathId, RawBody};
use crate::fence_imports::{ImportJobs, Outcome, Reply, Status as ImportStatus};
use crate::fence_registry::FenceRegistry;
use crate::routes::conditional;
use crate::routes::geojson::{Feature, FeatureCollection};
use crate::routes::paging::Paging;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    bbox: Option<String>,
    limit: Option<i64>,
    after: Option<String>,
}

/// `GET /api/v1/fences?bbox=&limit=&after=`: the fences (those whose area meets the bbox) in
/// byte order of their ids, a page at a time, with a `next` link while more follow.
#[utoipa::path(get, path = "/api/v1/fences", operation_id = "list_fences", tag = "fences", security(("bearer" = [])),
    params(("bbox" = Option<String>, Query, description = "minLon,minLat,maxLon,maxLat"),
        ("limit" = Option<i64>, Query, description = "Page size, 1 to 10000 (default 1000)"),
        ("after" = Option<String>, Query, description = "Last fence id of the previous page")),
    responses((status = 200, description = "FeatureCollection of fences, with `next` while more follow", body = FeatureCollection),
        (status = 400, description = "Bad bbox, limit, `after` or an unknown parameter", body = ErrorBody),
        FencesUnavailable,
        TokenRefusals))]
pub async fn list(
    State(fences): State<Arc<FenceRegistry>>,
    reader: Authorized<scope::Read>,
    Params(params): Params<ListParams>,
) -> Result<Json<FeatureCollection>, ApiError> {
    let paging = Paging::new(params.limit, params.after)?;
    let bbox = params.bbox.as_deref().map(crate::extract::bbox).transpose()?;
    let page = fences.page(bbox, paging.after.as_deref(), paging.limit).await?;
    let features = page
        .features
        .into_iter()
        .map(|f| Feature(for_reader(f, &reader)))
        .collect();
    let mut collection = FeatureCollection::new(features);
    if let Some(last) = &page.next_after {
        let filters = [("bbox", params.bbox.as_deref())];
        collection = collection.with_next(paging.next("/api/v1/fences", last, &filters));
    }
    Ok(Json(collection))
}

/// A fence as `reader` may see it: webhook URLs (which may hold secrets of their receivers)
/// are shown to admin tokens only.
pub(super) fn for_reader(mut feature: Value, reader: &Principal) -> Value {
    if !reader.has(Scope::Admin)
        && let Some(properties) = feature.get_mut("properties").and_then(Value::as_object_mut)
    {
        properties.remove("webhooks");
    }
    feature
}

/// `GET /api/v1/fences/{id}`: the fence as stored, with its version as `ETag` (send it back in
/// `If-Match` to write only that version).
#[utoipa::path(get, path = "/api/v1/fences/{id}", operation_id = "get_fence", tag = "fences", security(("bearer" = [])), params(("id" = String, Path, description = "Fence id")),
    responses((status = 200, description = "The fence as a Feature", body = Feature,
            headers(("ETag" = String, description = "The stored version"))),
        (status = 304, description = "The client's copy (If-None-Match) is current", headers(("ETag" = String))),
        (status = 400, description = "Not a fence id", body = ErrorBody),
        (status = 404, description = "Unknown fence", body = ErrorBody),
        FencesUnavailable,
        TokenRefusals))]
pub async fn get_one(
    State(fences): State<Arc<FenceRegistry>>,
    reader: Authorized<scope::Read>,
    PathId(id): PathId,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (feature, version) = fences.versioned(&id).await?;
    let etag = conditional::etag(&version);
    if conditional::client_has(&headers, |tag| tag == etag.1.as_bytes()) {
        return Ok((StatusCode::NOT_MODIFIED, [etag]).into_response());
    }
    Ok(([etag], Json(Feature(for_reader(feature, &reader)))).into_response())
}

/// `POST /api/v1/fences`: creates a fence from a Feature (409 if its id exists).
#[utoipa::path(post, path = "/api/v1/fences", operation_id = "create_fence", tag = "fences", security(("bearer" = [])),
    request_body(content = serde_json::Value, description = "A GeoJSON Feature", content_type = "application/json",
        example = json!({"type": "Feature", "id": "depot", "geometry": {"type": "Point", "coordinates": [2.35, 48.85]},
            "properties": {"name": "Depot", "radius_m": 150, "dwell_s": 300}})),
    responses((status = 201, description = "Created: the fence as stored", body = Feature,
            headers(("ETag" = String, description = "The stored version"))),
        (status = 400, description = "Not JSON, or an invalid fence (the reason and where)", body = ErrorBody),
        (status = 409, description = "The id exists", body = ErrorBody),
        (status = 413, description = "Body over 2 MiB", body = ErrorBody),
        FencesUnavailable,
        TokenRefusals))]
pub async fn create(
    State(fences): State<Arc<FenceRegistry>>,
    _admin: Authorized<scope::Admin>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let (feature, version) = fences.create(&crate::extract::json_body(&body)?).await?;
    Ok((
        StatusCode::CREATED,
        [conditional::etag(&version)],
        Json(Feature(feature)),
    )
        .into_response())
}

/// `PUT /api/v1/fences/{id}`: creates or replaces the fence with that id; with `If-Match`, only
/// the version named (412 otherwise), with `If-None-Match: *` only when there is none.
#[utoipa::path(put, path = "/api/v1/fences/{id}", operation_id = "put_fence", tag = "fences", security(("bearer" = [])),
    params(("id" = String, Path, description = "Fence id"),
        ("If-Match" = Option<String>, Header, description = "The ETag of the version this replaces (or `*`: any)"),
        ("If-None-Match" = Option<String>, Header, description = "`*`: create only, never replace")),
    request_body(content = serde_json::Value, description = "A GeoJSON Feature", content_type = "application/json",
        example = json!({"type": "Feature", "geometry": {"type": "Polygon",
            "coordinates": [[[2.30, 48.83], [2.40, 48.83], [2.40, 48.88], [2.30, 48.88], [2.30, 48.83]]]},
            "properties": {"name": "City", "speed_limit_mps": 8}})),
    responses((status = 200, description = "Replaced: the fence as stored", body = Feature,
            headers(("ETag" = String, description = "The new version"))),
        (status = 201, description = "Created: the fence as stored", body = Feature,
            headers(("ETag" = String, description = "The new version"))),
        (status = 400, description = "Not a fence id, not JSON, an invalid fence, or a Feature `id` other than the path's", body = ErrorBody),
        (status = 412, description = "If-Match or If-None-Match not met: the fence changed (or exists, or does not); \
            nothing written. `etag` beside `error` is the stored version", body = ErrorBody),
        (status = 413, description = "Body over 2 MiB", body = ErrorBody),
        FencesUnavailable,
        TokenRefusals))]
pub async fn put(
    State(fences): State<Arc<FenceRegistry>>,
    _admin: Authorized<scope::Admin>,
    PathId(id): PathId,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let expected = conditional::expected(&headers);
    let (feature, version, existed) = fences
        .put(&id, crate::extract::json_body(&body)?, &expected)
        .await?;
    let mut reply = super::put_reply(!existed, Feature(feature));
    let (name, value) = conditional::etag(&version);
    reply.headers_mut().insert(name, value);
    Ok(reply)
}

/// `DELETE /api/v1/fences/{id}`: with `If-Match`, only the version named.
#[utoipa::path(delete, path = "/api/v1/fences/{id}", operation_id = "delete_fence", tag = "fences", security(("bearer" = [])),
    params(("id" = String, Path, description = "Fence id"),
        ("If-Match" = Option<String>, Header, description = "The ETag of the version this deletes")),
    responses((status = 200, description = "Deleted", body = Deleted),
        (status = 400, description = "Not a fence id", body = ErrorBody),
        (status = 404, description = "Unknown fence", body = ErrorBody),
        (status = 412, description = "If-Match not met: the fence changed since; nothing deleted. `etag` beside `error` \
            is the stored version", body = ErrorBody),
        FencesUnavailable,
        TokenRefusals))]
pub async fn delete(
    State(fences): State<Arc<FenceRegistry>>,
    _admin: Authorized<scope::Admin>,
    PathId(id): PathId,
    headers: HeaderMap,
) -> Result<Json<Deleted>, ApiError> {
    fences.delete(&id, &conditional::expected(&headers)).await?;
    tracing::info!(fence = %id, "fence deleted");
    Ok(Json(Deleted { deleted: id }))
}

/// The id of the fence deleted.
#[derive(Debug, Serialize, ToSchema)]
pub struct Deleted {
    deleted: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportParams {
    id_property: Option<String>,
}

/// `POST /api/v1/fences/import?id_property=`: a FeatureCollection, all or nothing. Invalid
/// features are reported by index with the reason, and then nothing is stored. Runs as a job:
/// answered when done within the wait, else (or at once with `Prefer: respond-async`) 202 with
/// the job's status URL in `Location`.
#[utoipa::path(post, path = "/api/v1/fences/import", operation_id = "import_fences", tag = "fences", security(("bearer" = [])),
    params(("id_property" = Option<String>, Query, description = "Take every fence's id from this property \
        (re-importing the file then replaces its fences); otherwise from the Feature `id`, generated when absent"),
        ("Prefer" = Option<String>, Header, description = "`respond-async`: answer 202 at once")),
    request_body(content = serde_json::Value, description = "A GeoJSON FeatureCollection", content_type = "application/json",
        example = json!({"type": "FeatureCollection", "features": [{"type": "Feature", "id": "depot",
            "geometry": {"type": "Point", "coordinates": [2.35, 48.85]}, "properties": {"radius_m": 150}}]})),
    responses((status = 200, description = "All imported: their ids in feature order", body = Imported),
        (status = 202, description = "Importing: follow `Location` (the job's status)", body = ImportStatus,
            headers(("Location" = String, description = "The job's status URL"))),
        (status = 400, description = "Nothing imported: not JSON, not a FeatureCollection, a bad `id_property`, or invalid \
            features, listed beside `error` as `invalid: [{index, id, reason}]`", body = ErrorBody),
        (status = 413, description = "Body over `ingest.max_body_bytes`", body = ErrorBody),
        (status = 429, description = "Two imports are running: retry after Retry-After", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        FencesUnavailable,
        TokenRefusals))]
pub async fn import(
    State(jobs): State<Arc<ImportJobs>>,
    _admin: Authorized<scope::Admin>,
    Params(params): Params<ImportParams>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    if let Some(property) = &params.id_property {
        checked_property(property)?;
    }
    let respond_async = headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|preference| preference.trim().eq_ignore_ascii_case("respond-async"));
    match jobs
        .start(
            crate::extract::json_body(&body)?,
            params.id_property,
            respond_async,
        )
        .await?
    {
        Reply::Done(Outcome::Imported(ids)) => Ok(Json(Imported {
            imported: ids.len(),
            ids,
        })
        .into_response()),
        Reply::Done(Outcome::Failed(error)) => Err(error),
        Reply::Running(job) => Ok((
            StatusCode::ACCEPTED,
            [(header::LOCATION, job.status_url())],
            Json(job.status()),
        )
            .into_response()),
    }
}

/// 400 unless `property` can name a property: 1 to 256 bytes.
fn checked_property(property: &str) -> Result<(), ApiError> {
    if (1..=256).contains(&property.len()) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_id_property",
            "id_property must name a property (1 to 256 bytes)",
        ))
    }
}

/// What an import stored: how many fences, and their ids in feature order.
#[derive(Debug, Serialize, ToSchema)]
pub struct Imported {
    imported: usize,
    ids: Vec<String>,
}

/// `GET /api/v1/fence-imports/{job}`: an import job's progress, then its outcome.
#[utoipa::path(get, path = "/api/v1/fence-imports/{job}", operation_id = "get_fence_import", tag = "fences", security(("bearer" = [])),
    params(("job" = u64, Path, description = "Job number, from the 202's `Location`")),
    responses((status = 200, description = "The job: `running` (with `prepared` of `total`), `done` (with `ids`) or \
            `failed` (with `error`, as a synchronous import answers it)", body = ImportStatus),
        (status = 404, description = "No such job (jobs are kept on the node that took them, the last 32 finished)", body = ErrorBody),
        TokenRefusals))]
pub async fn import_status(
    State(jobs): State<Arc<ImportJobs>>,
    _admin: Authorized<scope::Admin>,
    Path(job): Path<String>,
) -> Result<Json<ImportStatus>, ApiError> {
    job.parse()
        .ok()
        .and_then(|job| jobs.status(job))
        .map(Json)
        .ok_or_else(|| {
            ApiError::not_found(
                "import_not_found",
                format!("there is no fence import job {job:?}"),
            )
        })
}

/// `GET /api/v1/fences/{id}/devices`: live positions of the devices inside the fence now.
#[utoipa::path(get, path = "/api/v1/fences/{id}/devices", operation_id = "list_devices_in_fence", tag = "fences", security(("bearer" = [])), params(("id" = String, Path, description = "Fence id")),
    responses((status = 200, description = "FeatureCollection of the live positions inside, with the fence id", body = FeatureCollection),
        (status = 400, description = "Not a fence id", body = ErrorBody),
        (status = 404, description = "Unknown fence", body = ErrorBody),
        FencesUnavailable,
        TokenRefusals))]
pub async fn devices_inside(
    State(fences): State<Arc<FenceRegistry>>,
    State(db): State<PgPool>,
    State(dispatch): State<Arc<dispatch::Dispatch>>,
    principal: Authorized<scope::Read>,
    PathId(id): PathId,
) -> Result<Json<FeatureCollection>, ApiError> {
    let fence = fences.prepared(&id)?;
    let groups = &dispatch.groups;
    let mut inside = Vec::new();
    for bbox in fence.extents() {
        let query = tracker::latest::ListQuery {
            limit: i64::MAX,
            bbox: Some(bbox),
            devices: principal.device_filter().cloned(),
            ..tracker::latest::ListQuery::default()
        };
        for position in tracker::latest::list(&db, &query).await? {
            if fence.fence().applies_to.matches(&position.device, groups)
                && fence.contains(position.lon, position.lat)
            {
                inside.push(position);
            }
        }
    }
    inside.sort_by(|a, b| a.device.cmp(&b.device));
    inside.dedup_by(|a, b| a.device == b.device);
    let features = inside
        .iter()
        .map(|p| Feature(tracker::latest::to_feature(p)))
        .collect();
    Ok(Json(FeatureCollection::new(features).inside(id)))
}
