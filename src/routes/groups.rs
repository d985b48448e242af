//! Device groups (`/api/v1/groups`): named sets of devices by listed ids and id prefixes, used
//! as the `group=` filter of the dispatch queries. Reading takes a `read` token (a token limited
//! to some devices sees a group without the listed devices it may not see), writing an `admin`
//! one; a write reaches the other nodes through `NOTIFY geotrack_groups`.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::Response;
use dispatch::{Dispatch, Group, Groups};
use fences::DeviceFilter;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::ToSchema;

use crate::auth::{Authorized, Principal, scope};
use crate::error::{ApiError, ErrorBody, TokenRefusals};
use crate::extract::{PathId, RawBody};

/// A group as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct GroupBody {
    id: String,
    name: String,
    /// Devices listed by id.
    devices: Vec<String>,
    /// Every device whose id starts with one of these is a member.
    prefixes: Vec<String>,
}

impl GroupBody {
    /// The group as `reader` may see it: the listed devices it may not see are left out.
    fn new(group: &Group, reader: &Principal) -> Self {
        Self {
            id: group.id.clone(),
            name: group.name.clone(),
            devices: group
                .devices
                .iter()
                .filter(|d| reader.allows_device(d))
                .cloned()
                .collect(),
            prefixes: group.prefixes.iter().cloned().collect(),
        }
    }
}

/// What `PUT /api/v1/groups/{id}` takes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupWrite {
    /// Must equal the path's id when given.
    id: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    devices: BTreeSet<String>,
    #[serde(default)]
    prefixes: BTreeSet<String>,
}

/// Every group.
#[derive(Debug, Serialize, ToSchema)]
pub struct GroupList {
    groups: Vec<GroupBody>,
}

/// `GET /api/v1/groups`: every group, in id order.
#[utoipa::path(get, path = "/api/v1/groups", operation_id = "list_groups", tag = "dispatch", security(("bearer" = [])),
    responses((status = 200, description = "Every group", body = GroupList), TokenRefusals))]
pub async fn list(State(dispatch): State<Arc<Dispatch>>, reader: Authorized<scope::Read>) -> Json<GroupList> {
    let groups = dispatch
        .groups
        .list()
        .iter()
        .map(|g| GroupBody::new(g, &reader))
        .collect();
    Json(GroupList { groups })
}

/// `GET /api/v1/groups/{id}`.
#[utoipa::path(get, path = "/api/v1/groups/{id}", operation_id = "get_group", tag = "dispatch", security(("bearer" = [])),
    params(("id" = String, Path, description = "Group id")),
    responses((status = 200, description = "The group", body = GroupBody),
        (status = 400, description = "Not a group id", body = ErrorBody),
        (status = 404, description = "Unknown group", body = ErrorBody),
        TokenRefusals))]
pub async fn get_one(
    State(dispatch): State<Arc<Dispatch>>,
    reader: Authorized<scope::Read>,
    PathId(id): PathId,
) -> Result<Json<GroupBody>, ApiError> {
    let group = find(&dispatch.groups, &id)?;
    Ok(Json(GroupBody::new(&group, &reader)))
}

/// `PUT /api/v1/groups/{id}`: creates or replaces a group.
#[utoipa::path(put, path = "/api/v1/groups/{id}", operation_id = "put_group", tag = "dispatch", security(("bearer" = [])),
    params(("id" = String, Path, description = "Group id")),
    request_body(content = GroupWrite, description = "The members: listed ids and id prefixes",
        example = json!({"name": "Taxis", "prefixes": ["taxi-"], "devices": ["spare-3"]})),
    responses((status = 200, description = "Replaced: the group as stored", body = GroupBody),
        (status = 201, description = "Created: the group as stored", body = GroupBody),
        (status = 400, description = "Not JSON, an invalid id, name, member or prefix, too many members, or a body `id` \
            other than the path's", body = ErrorBody),
        (status = 503, description = "The database is unavailable: retry after Retry-After", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
        TokenRefusals))]
pub async fn put(
    State(dispatch): State<Arc<Dispatch>>,
    State(db): State<PgPool>,
    admin: Authorized<scope::Admin>,
    PathId(id): PathId,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let invalid = |message: String| ApiError::bad_request("invalid_group", message);
    let write: GroupWrite =
        crate::extract::object_body(&body, "invalid_group", "{\"name\", \"devices\", \"prefixes\"}")?;
    if write.id.as_ref().is_some_and(|given| *given != id) {
        return Err(ApiError::bad_request(
            "id_mismatch",
            "the body's `id` differs from the path's",
        ));
    }
    let group = Group {
        id,
        name: write.name,
        devices: write.devices,
        prefixes: write.prefixes,
    };
    group.validate().map_err(|e| invalid(e.to_string()))?;
    let created = dispatch::group_store::put(&db, &group).await?;
    tracing::info!(group = %group.id, devices = group.devices.len(), prefixes = group.prefixes.len(), created, "device group written");
    let reply = GroupBody::new(&group, &admin);
    dispatch.groups.put(group);
    Ok(super::put_reply(created, reply))
}

/// The id of the group deleted.
#[derive(Debug, Serialize, ToSchema)]
pub struct GroupDeleted {
    deleted: String,
}

/// `DELETE /api/v1/groups/{id}`.
#[utoipa::path(delete, path = "/api/v1/groups/{id}", operation_id = "delete_group", tag = "dispatch", security(("bearer" = [])),
    params(("id" = String, Path, description = "Group id")),
    responses((status = 200, description = "Deleted", body = GroupDeleted),
        (status = 400, description = "Not a group id", body = ErrorBody),
        (status = 404, description = "Unknown group", body = ErrorBody),
        (status = 503, description = "The database is unavailable: retry after Retry-After", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
        TokenRefusals))]
pub async fn delete(
    State(dispatch): State<Arc<Dispatch>>,
    State(db): State<PgPool>,
    _admin: Authorized<scope::Admin>,
    PathId(id): PathId,
) -> Result<Json<GroupDeleted>, ApiError> {
    if !dispatch::group_store::delete(&db, &id).await? {
        return Err(unknown_group(&id));
    }
    dispatch.groups.remove(&id);
    tracing::info!(group = %id, "device group deleted");
    Ok(Json(GroupDeleted { deleted: id }))
}

/// The devices a reader limited to `limit` may see, narrowed to the members of `group` when
/// one is named (404 `group_not_found` for an unknown group).
pub fn narrowed(
    limit: Option<&DeviceFilter>,
    groups: &Groups,
    group: Option<&str>,
) -> Result<Option<DeviceFilter>, ApiError> {
    let Some(id) = group else {
        return Ok(limit.cloned());
    };
    let group = find(groups, id)?;
    Ok(Some(DeviceFilter::intersect(limit, &group.device_filter())))
}

/// The group `id`, or 404 `group_not_found`.
pub fn find(groups: &Groups, id: &str) -> Result<Arc<Group>, ApiError> {
    groups.get(id).ok_or_else(|| unknown_group(id))
}

/// 404 `group_not_found`.
fn unknown_group(id: &str) -> ApiError {
    ApiError::not_found("group_not_found", format!("there is no device group {id:?}"))
}
