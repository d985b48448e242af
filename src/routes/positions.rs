//! `POST /api/v1/positions`: the generic JSON ingest API for programs (device apps have their
//! own endpoints, which answer as the apps need). Replies 202 with the accepted count and a
//! per-fix rejection report, only once every accepted fix is committed.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use serde_json::{Value, json};
use tracker::decode::{self, BodyFormat, DecodeError};

use crate::auth::{Authorized, scope};
use crate::error::ApiError;
use crate::extract::RawBody;
use crate::ingest::Ingest;

const PROTOCOL: &str = "json";

#[utoipa::path(post, path = "/api/v1/positions", tag = "ingest", security(("bearer" = [])),
    request_body(content = serde_json::Value, description = "A fix, an array of fixes, a GeoJSON Feature or FeatureCollection (application/json, application/geo+json), or NDJSON (application/x-ndjson)",
        content_type = "application/json"),
    responses((status = 202, description = "Committed: {accepted, rejected: [{index, code, reason}]}"),
        (status = 400, description = "Malformed body"), (status = 401, description = "No or unknown token"),
        (status = 403, description = "Token lacks ingest or the device"), (status = 413, description = "Body or batch too large"),
        (status = 415, description = "Unsupported content type"), (status = 429, description = "Rate limited"),
        (status = 503, description = "Not durable now; retry after Retry-After")))]
pub async fn post(
    State(ingest): State<Arc<Ingest>>,
    principal: Authorized<scope::Ingest>,
    headers: HeaderMap,
    body: Result<RawBody, ApiError>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    // The content type is checked first: a body of the wrong type is refused unread.
    let format = body_format(&headers)?;
    let RawBody(body) = body?;
    let records = decode::positions(&body, format, ingest.config.max_request_fixes).map_err(|e| match e {
        DecodeError::TooManyFixes { .. } => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_many_fixes", e.to_string())
        }
        DecodeError::Malformed(_) => ApiError::bad_request("malformed_body", e.to_string()),
        DecodeError::Unsupported(_) => ApiError::bad_request("unsupported_body", e.to_string()),
    })?;

    let outcome = ingest.store(&principal, PROTOCOL, records).await?;
    let rejected: Vec<Value> = outcome
        .rejected
        .into_iter()
        .map(|(index, r)| json!({"index": index, "code": r.code, "reason": r.message}))
        .collect();
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"accepted": outcome.accepted, "rejected": rejected})),
    ))
}

fn body_format(headers: &HeaderMap) -> Result<BodyFormat, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/json" | "application/geo+json" => Ok(BodyFormat::Json),
        "application/x-ndjson" | "application/ndjson" | "application/jsonl" => Ok(BodyFormat::Ndjson),
        _ => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_content_type",
            format!(
                "Content-Type {content_type:?} is not accepted; send application/json, \
                 application/geo+json or application/x-ndjson"
            ),
        )),
    }
}
