//! Endpoints for device apps, answering exactly as each app needs (`tracker/PROTOCOLS.md`): success
//! for every message processed (stored, duplicate, not a position, or unusable), because apps
//! retry anything else forever and block their queue behind it. Unusable messages are counted
//! (`geotrack_ingest_fixes_rejected_total{protocol,reason}`) and logged; messages that are not
//! positions are counted as ignored. Only authentication (401/403) and "cannot be made durable
//! now" (503 + Retry-After, so the app retries) are failures.
//!
//! - `/osmand` (any method) and `/` (POST, or GET with `id`/`deviceid`): OsmAnd protocol from the
//!   query string or a form body, Traccar Client 9.x JSON; `?speed_unit=` overrides the
//!   configured unit of `speed`. Reply: 200, empty body.
//! - `/owntracks`: OwnTracks HTTP mode. Reply: 200 `[]`.
//! - `/overland`: Overland batches; `?device=` names the device when the app's Device ID is
//!   empty. Reply: 200 `{"result":"ok"}`, or `{"error": ...}` when the batch can never be stored.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;
use tracker::decode::Records;
use tracker::metrics::RejectLabels;
use tracker::protocols::{Message, form, osmand, overland, owntracks};
use utoipa::ToSchema;

use crate::auth::{Authorized, DeviceApp, Principal, scope};
use crate::error::{ApiError, DeviceAppRefusals, ErrorBody};
use crate::extract::RawBody;
use crate::ingest::Ingest;

/// A token with the ingest scope, from wherever a device app can send one.
type DeviceToken = Authorized<scope::Ingest, DeviceApp>;

/// Query parameters that configure geotrack itself, not part of any protocol.
const OWN_PARAMS: [&str; 2] = ["token", "speed_unit"];

/// `/osmand`: the OsmAnd protocol and Traccar Client, any method.
#[utoipa::path(method(get, post, put), path = "/osmand", tag = "device apps", security(("bearer" = []), ("token" = [])),
    params(("speed_unit" = Option<String>, Query, description = "Unit of `speed`: knots (default), mps, kmh, mph")),
    responses((status = 200, description = "Processed (stored, duplicate, ignored or unusable); empty body"),
        (status = 413, description = "Body over `ingest.max_body_bytes`", body = ErrorBody),
        (status = 503, description = "Not durable now, or the token is over its rate limit: retry after Retry-After",
            body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
        DeviceAppRefusals))]
pub async fn osmand(
    State(state): State<Arc<Ingest>>,
    principal: DeviceToken,
    uri: Uri,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let message = match query_pairs(uri.query()) {
        Err(unusable) => unusable,
        Ok(query) => match osmand_speed_unit(&state, &query) {
            Err(detail) => Message::Unusable {
                reason: "invalid_speed_unit",
                detail: detail.to_string(),
            },
            Ok(unit) => decode_osmand(&query, &headers, &body, unit),
        },
    };
    handle(&state, &principal, "osmand", message).await?;
    Ok(StatusCode::OK.into_response())
}

/// `GET /`: the web map for a browser, or, with `id`/`deviceid`, an OsmAnd-protocol request
/// sent to the bare server URL (Traccar Client appends `/`). The page needs no token.
#[utoipa::path(get, path = "/", operation_id = "root_get", tag = "device apps",
    security((), ("bearer" = []), ("token" = [])),
    description = "Without `id`/`deviceid`: the web map, for anyone. With one: the OsmAnd protocol (token with ingest)",
    params(("id" = Option<String>, Query, description = "Device id (OsmAnd), with the protocol's other parameters (lat, lon, timestamp...)"),
        ("deviceid" = Option<String>, Query, description = "Device id (OsmAnd), as `id`")),
    responses((status = 200, description = "Without `id`/`deviceid`: the web map (text/html). Otherwise processed \
            (stored, duplicate, ignored or unusable), with an empty body"),
        (status = 413, description = "Body over `ingest.max_body_bytes`", body = ErrorBody),
        (status = 503, description = "Not durable now, or the token is over its rate limit: retry after Retry-After",
            body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
        DeviceAppRefusals))]
pub async fn root_get(
    state: State<Arc<Ingest>>,
    auth: Result<DeviceToken, Response>,
    uri: Uri,
    method: axum::http::Method,
    headers: HeaderMap,
    body: RawBody,
) -> Result<Response, ApiError> {
    let names_a_device =
        query_pairs(uri.query()).is_ok_and(|query| query.iter().any(|(k, _)| k == "id" || k == "deviceid"));
    // axum routes HEAD here too: it answers as GET would, without the body.
    if !names_a_device && (method == axum::http::Method::GET || method == axum::http::Method::HEAD) {
        return Ok(crate::web::index());
    }
    root_post(state, auth, uri, headers, body).await
}

/// `POST /`: an OsmAnd-protocol request sent to the bare server URL.
// The token is checked here rather than by the extractor, as in `root_get` (which must let a
// browser through), so both answer alike: a body over the limit is a 413 before a missing token.
#[utoipa::path(post, path = "/", operation_id = "root_post", tag = "device apps", security(("bearer" = []), ("token" = [])),
    description = "OsmAnd protocol at the bare server URL",
    responses((status = 200, description = "Processed (stored, duplicate, ignored or unusable); empty body"),
        (status = 413, description = "Body over `ingest.max_body_bytes`", body = ErrorBody),
        (status = 503, description = "Not durable now, or the token is over its rate limit: retry after Retry-After",
            body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
        DeviceAppRefusals))]
pub async fn root_post(
    state: State<Arc<Ingest>>,
    auth: Result<DeviceToken, Response>,
    uri: Uri,
    headers: HeaderMap,
    body: RawBody,
) -> Result<Response, ApiError> {
    match auth {
        Ok(auth) => osmand(state, auth, uri, headers, body).await,
        Err(refused) => Ok(refused),
    }
}

fn osmand_speed_unit(
    state: &Ingest,
    query: &[(String, String)],
) -> Result<osmand::SpeedUnit, osmand::OsmandError> {
    match last_param(query, "speed_unit") {
        Some(unit) => unit.parse(),
        None => Ok(state.osmand_speed_unit),
    }
}

/// Traccar's rule: protocol parameters in the query string win; otherwise the body is the
/// Traccar Client 9.x JSON (by content type) or a form.
fn decode_osmand(
    query: &[(String, String)],
    headers: &HeaderMap,
    body: &[u8],
    unit: osmand::SpeedUnit,
) -> Message {
    let now = chrono::Utc::now();
    let protocol_params: Vec<(String, String)> = query
        .iter()
        .filter(|(k, _)| !OWN_PARAMS.contains(&k.as_str()))
        .cloned()
        .collect();
    if !protocol_params.is_empty() {
        return osmand::decode_params(&protocol_params, unit, now);
    }
    if content_type(headers).starts_with("application/json") {
        return match serde_json::from_slice(body) {
            Ok(json) => osmand::decode_json(&json, now),
            Err(e) => Message::Unusable {
                reason: "malformed_body",
                detail: format!("the JSON body does not parse: {e}"),
            },
        };
    }
    let form = match form::pairs(body) {
        Ok(form) => form,
        Err(e) => return unusable_encoding(&e),
    };
    if form.is_empty() {
        return Message::Ignored { reason: "empty_body" };
    }
    osmand::decode_params(&form, unit, now)
}

/// `/owntracks`: OwnTracks HTTP mode.
#[utoipa::path(post, path = "/owntracks", tag = "device apps", security(("basic" = []), ("token" = [])),
    request_body(content = serde_json::Value, content_type = "application/json", description = "An OwnTracks message",
        example = json!({"_type": "location", "tid": "p1", "tst": 1_780_315_200, "lat": 48.85, "lon": 2.35, "acc": 12})),
    responses((status = 200, description = "Processed (stored, duplicate, ignored or unusable): `[]`", body = Vec<serde_json::Value>,
            example = json!([])),
        (status = 413, description = "Body over `ingest.max_body_bytes`", body = ErrorBody),
        (status = 503, description = "Not durable now, or the token is over its rate limit: retry after Retry-After",
            body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
        DeviceAppRefusals))]
pub async fn owntracks(
    State(state): State<Arc<Ingest>>,
    principal: DeviceToken,
    uri: Uri,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let message = match query_pairs(uri.query()) {
        Err(unusable) => unusable,
        Ok(query) => {
            let param = |name: &str| last_param(&query, name).map(str::to_owned);
            let header_value =
                |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
            let identity = owntracks::Identity {
                user: header_value("x-limit-u").or_else(|| param("u")),
                device: header_value("x-limit-d").or_else(|| param("d")),
                basic_user: basic_user(&headers),
            };
            owntracks::decode(&body, &identity)
        }
    };
    handle(&state, &principal, "owntracks", message).await?;
    Ok(Json(json!([])).into_response())
}

/// The user name of HTTP Basic credentials (OwnTracks' user).
fn basic_user(headers: &HeaderMap) -> Option<String> {
    crate::auth::basic_credentials(headers)
        .map(|(user, _)| user)
        .filter(|u| !u.is_empty())
}

/// `/overland`: Overland batches.
#[utoipa::path(post, path = "/overland", tag = "device apps", security(("bearer" = []), ("token" = [])),
    params(("device" = Option<String>, Query, description = "Device id when the app's Device ID is empty")),
    request_body(content = serde_json::Value, content_type = "application/json", description = "An Overland batch",
        example = json!({"locations": [{"type": "Feature", "geometry": {"type": "Point", "coordinates": [2.35, 48.85]},
            "properties": {"timestamp": "2026-06-01T12:00:00Z", "device_id": "phone-1", "speed": 4}}]})),
    responses((status = 200, description = "Processed: `{\"result\":\"ok\"}`, or `{\"error\": ...}` when the batch can never be stored \
            (Overland keeps it and shows the message)", body = OverlandReply),
        (status = 413, description = "Body over `ingest.max_body_bytes`", body = ErrorBody),
        (status = 503, description = "Not durable now, or the token is over its rate limit: retry after Retry-After",
            body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
        DeviceAppRefusals))]
pub async fn overland(
    State(state): State<Arc<Ingest>>,
    principal: DeviceToken,
    uri: Uri,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let query = match form::pairs(uri.query().unwrap_or("").as_bytes()) {
        Ok(query) => query,
        Err(e) => {
            count_unusable(&state, "overland", "invalid_encoding", &e.to_string());
            return Ok(overland_error(&format!("geotrack cannot read the URL: {e}")));
        }
    };
    let fallback = last_param(&query, "device");
    let batch = match overland::decode(&body, fallback) {
        Ok(batch) => batch,
        Err(detail) => {
            count_unusable(&state, "overland", "malformed_body", &detail.to_string());
            return Ok(overland_error(&format!(
                "geotrack cannot read this batch: {detail}"
            )));
        }
    };
    let max = state.config.max_request_fixes;
    if batch.fixes.len() > max {
        // Overland keeps the points and shows the message: the user lowers the batch size.
        let message = format!(
            "a batch of {} locations is more than this server takes at once ({max}); lower the batch size in Overland's settings",
            batch.fixes.len()
        );
        count_unusable(&state, "overland", "too_many_fixes", &message);
        return Ok(overland_error(&message));
    }
    if batch.skipped > 0 {
        count_ignored(&state, "overland", "not_a_fix", batch.skipped as u64);
    }
    let without_device = batch
        .fixes
        .iter()
        .filter(|f| f.as_ref().is_err_and(|r| r.code == "missing_device"))
        .count();
    if without_device > 0 && without_device == batch.fixes.len() {
        // device_id is baked into each record: only the URL can fix it, so keep the points queued.
        count_unusable(
            &state,
            "overland",
            "missing_device",
            "Overland batch without a device id",
        );
        return Ok(overland_error(
            "no device id: set Device ID in Overland's settings or add ?device=NAME to the receiver URL",
        ));
    }
    store(&state, &principal, "overland", batch.fixes).await?;
    Ok(Json(OverlandReply::Done { result: "ok" }).into_response())
}

/// Overland's answer: it deletes the points it sent on `{"result":"ok"}` and keeps them, showing
/// the message, on `{"error": ...}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum OverlandReply {
    Done { result: &'static str },
    Refused { error: String },
}

fn overland_error(message: &str) -> Response {
    Json(OverlandReply::Refused {
        error: message.to_owned(),
    })
    .into_response()
}

/// Stores, ignores or counts a decoded message.
async fn handle(
    state: &Ingest,
    principal: &Principal,
    protocol: &'static str,
    message: Message,
) -> Result<(), ApiError> {
    match message {
        Message::Fixes(fixes) => store(state, principal, protocol, fixes.into_iter().map(Ok).collect()).await,
        Message::Ignored { reason } => {
            count_ignored(state, protocol, reason, 1);
            Ok(())
        }
        Message::Unusable { reason, detail } => {
            count_unusable(state, protocol, reason, &detail);
            Ok(())
        }
    }
}

async fn store(
    state: &Ingest,
    principal: &Principal,
    protocol: &'static str,
    records: Records,
) -> Result<(), ApiError> {
    let outcome = state
        .store(principal, protocol, records)
        .await
        .map_err(ApiError::for_device_app)?;
    for (index, rejection) in outcome.rejected {
        tracing::warn!(protocol, index, code = rejection.code, reason = %rejection.message, "unusable fix from a device app");
    }
    Ok(())
}

fn count_ignored(state: &Ingest, protocol: &'static str, reason: &'static str, n: u64) {
    let labels = RejectLabels { protocol, reason };
    state.pipeline.metrics().ignored.get_or_create(&labels).inc_by(n);
}

fn count_unusable(state: &Ingest, protocol: &'static str, reason: &'static str, detail: &str) {
    tracing::warn!(protocol, reason, detail, "unusable message from a device app");
    let labels = RejectLabels { protocol, reason };
    state.pipeline.metrics().rejected.get_or_create(&labels).inc();
}

/// The query string's pairs, decoded strictly (an id that is not UTF-8 must not become
/// another id with U+FFFD in it); a query that is not is an unusable message.
fn query_pairs(query: Option<&str>) -> Result<Vec<(String, String)>, Message> {
    form::pairs(query.unwrap_or("").as_bytes()).map_err(|e| unusable_encoding(&e))
}

fn unusable_encoding(error: &form::FormError) -> Message {
    Message::Unusable {
        reason: "invalid_encoding",
        detail: error.to_string(),
    }
}

/// The value of the last `name` parameter (a repeated parameter's last value wins).
fn last_param<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase()
}
