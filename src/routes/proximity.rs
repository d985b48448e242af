//! Proximity rules (`/api/v1/proximity-rules`): watch devices against other devices and get
//! `near` and `apart` alerts (`dispatch::roam`, evaluated by `alerts::roam`) on the alert
//! WebSocket, the alert history and the webhooks. Reading takes a `read` token (a token limited
//! to some devices sees the rules without the ids of devices it may not see), writing an
//! `admin` one; a write reaches the other nodes through `NOTIFY geotrack_proximity`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::Response;
use dispatch::Dispatch;
use dispatch::roam::ProximityRule;
use fences::AppliesTo;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::ToSchema;

use crate::auth::{Authorized, Principal, scope};
use crate::error::{ApiError, ErrorBody, TokenRefusals};
use crate::extract::{PathId, RawBody};

/// A side of a rule: `"all"`, or device ids, `prefix*` and `group:ID` entries.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Side {
    /// `"all"`: every device.
    All(String),
    /// Device ids; `prefix*` for every id starting with `prefix`, `group:ID` for a device group.
    Entries(Vec<String>),
}

impl Side {
    fn read(&self, field: &str) -> Result<AppliesTo, ApiError> {
        let value = match self {
            Self::All(text) => serde_json::Value::String(text.clone()),
            Self::Entries(entries) => serde_json::json!(entries),
        };
        AppliesTo::from_entries(&value)
            .map_err(|reason| ApiError::bad_request("invalid_rule", format!("`{field}` {reason}")))
    }

    /// The side as a reader may see it: ids of devices it may not see left out.
    fn shown(applies: &AppliesTo, reader: &Principal) -> Self {
        match applies.to_entries() {
            serde_json::Value::Array(entries) => Self::Entries(
                entries
                    .into_iter()
                    .filter_map(|e| e.as_str().map(str::to_owned))
                    .filter(|e| e.ends_with('*') || e.starts_with("group:") || reader.allows_device(e))
                    .collect(),
            ),
            _ => Self::All("all".into()),
        }
    }
}

/// A rule as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct RuleBody {
    id: String,
    name: String,
    /// The watched devices (an alert's `device`).
    devices: Side,
    /// The devices they are watched against (an alert's `other`).
    near: Side,
    /// `near` fires when two devices come within this many metres.
    radius_m: f64,
    /// `apart` fires when a near pair gets farther than `radius_m + hysteresis_m`.
    hysteresis_m: f64,
}

impl RuleBody {
    fn new(rule: &ProximityRule, reader: &Principal) -> Self {
        Self {
            id: rule.id.clone(),
            name: rule.name.clone(),
            devices: Side::shown(&rule.devices, reader),
            near: Side::shown(&rule.near, reader),
            radius_m: rule.radius_m,
            hysteresis_m: rule.hysteresis_m,
        }
    }
}

/// What `PUT /api/v1/proximity-rules/{id}` takes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleWrite {
    /// Must equal the path's id when given.
    id: Option<String>,
    #[serde(default)]
    name: String,
    devices: Side,
    near: Side,
    radius_m: f64,
    /// Default: a tenth of `radius_m`.
    hysteresis_m: Option<f64>,
}

/// Every rule.
#[derive(Debug, Serialize, ToSchema)]
pub struct RuleList {
    rules: Vec<RuleBody>,
}

/// `GET /api/v1/proximity-rules`: every rule, in id order.
#[utoipa::path(get, path = "/api/v1/proximity-rules", operation_id = "list_proximity_rules", tag = "dispatch", security(("bearer" = [])),
    responses((status = 200, description = "Every rule", body = RuleList), TokenRefusals))]
pub async fn list(State(dispatch): State<Arc<Dispatch>>, reader: Authorized<scope::Read>) -> Json<RuleList> {
    let rules = dispatch
        .rules
        .snapshot()
        .iter()
        .map(|rule| RuleBody::new(rule, &reader))
        .collect();
    Json(RuleList { rules })
}

/// `GET /api/v1/proximity-rules/{id}`.
#[utoipa::path(get, path = "/api/v1/proximity-rules/{id}", operation_id = "get_proximity_rule", tag = "dispatch", security(("bearer" = [])),
    params(("id" = String, Path, description = "Rule id")),
    responses((status = 200, description = "The rule", body = RuleBody),
        (status = 400, description = "Not a rule id", body = ErrorBody),
        (status = 404, description = "Unknown rule", body = ErrorBody),
        TokenRefusals))]
pub async fn get_one(
    State(dispatch): State<Arc<Dispatch>>,
    reader: Authorized<scope::Read>,
    PathId(id): PathId,
) -> Result<Json<RuleBody>, ApiError> {
    let rules = dispatch.rules.snapshot();
    let rule = rules.get(&id).ok_or_else(|| unknown_rule(&id))?;
    Ok(Json(RuleBody::new(rule, &reader)))
}

/// `PUT /api/v1/proximity-rules/{id}`: creates or replaces a rule. Pairs already near stay near
/// if they still are under the new rule; the others get `apart` (or are forgotten when a device
/// left a side).
#[utoipa::path(put, path = "/api/v1/proximity-rules/{id}", operation_id = "put_proximity_rule", tag = "dispatch", security(("bearer" = [])),
    params(("id" = String, Path, description = "Rule id")),
    request_body(content = RuleWrite, description = "Who is watched against whom, and how close is near",
        example = json!({"name": "Vans at the depot", "devices": ["van-*"], "near": ["depot-1"], "radius_m": 200, "hysteresis_m": 20})),
    responses((status = 200, description = "Replaced: the rule as stored", body = RuleBody),
        (status = 201, description = "Created: the rule as stored", body = RuleBody),
        (status = 400, description = "Not JSON, an invalid id, name, side, radius or hysteresis, or a body `id` other \
            than the path's", body = ErrorBody),
        (status = 503, description = "The database is unavailable: retry after Retry-After", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
        TokenRefusals))]
pub async fn put(
    State(dispatch): State<Arc<Dispatch>>,
    State(db): State<PgPool>,
    admin: Authorized<scope::Admin>,
    PathId(id): PathId,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let write: RuleWrite = crate::extract::object_body(
        &body,
        "invalid_rule",
        "{\"devices\", \"near\", \"radius_m\", \"hysteresis_m\", \"name\"}",
    )?;
    if write.id.as_ref().is_some_and(|given| *given != id) {
        return Err(ApiError::bad_request(
            "id_mismatch",
            "the body's `id` differs from the path's",
        ));
    }
    let rule = ProximityRule {
        id,
        name: write.name,
        devices: write.devices.read("devices")?,
        near: write.near.read("near")?,
        radius_m: write.radius_m,
        hysteresis_m: write.hysteresis_m.unwrap_or(write.radius_m / 10.0),
    };
    rule.validate()
        .map_err(|e| ApiError::bad_request("invalid_rule", e.to_string()))?;
    let created = dispatch::roam::store::put(&db, &rule, dispatch.rules.origin()).await?;
    tracing::info!(rule = %rule.id, radius_m = rule.radius_m, created, "proximity rule written");
    let reply = RuleBody::new(&rule, &admin);
    dispatch.rules.put(rule);
    Ok(super::put_reply(created, reply))
}

/// The id of the rule deleted.
#[derive(Debug, Serialize, ToSchema)]
pub struct RuleDeleted {
    deleted: String,
}

/// `DELETE /api/v1/proximity-rules/{id}`: its near pairs are forgotten, without alerts.
#[utoipa::path(delete, path = "/api/v1/proximity-rules/{id}", operation_id = "delete_proximity_rule", tag = "dispatch", security(("bearer" = [])),
    params(("id" = String, Path, description = "Rule id")),
    responses((status = 200, description = "Deleted", body = RuleDeleted),
        (status = 400, description = "Not a rule id", body = ErrorBody),
        (status = 404, description = "Unknown rule", body = ErrorBody),
        (status = 503, description = "The database is unavailable: retry after Retry-After", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
        TokenRefusals))]
pub async fn delete(
    State(dispatch): State<Arc<Dispatch>>,
    State(db): State<PgPool>,
    _admin: Authorized<scope::Admin>,
    PathId(id): PathId,
) -> Result<Json<RuleDeleted>, ApiError> {
    if !dispatch::roam::store::delete(&db, &id, dispatch.rules.origin()).await? {
        return Err(unknown_rule(&id));
    }
    dispatch.rules.remove(&id);
    tracing::info!(rule = %id, "proximity rule deleted");
    Ok(Json(RuleDeleted { deleted: id }))
}

/// 404 `rule_not_found`.
fn unknown_rule(id: &str) -> ApiError {
    ApiError::not_found("rule_not_found", format!("there is no proximity rule {id:?}"))
}
