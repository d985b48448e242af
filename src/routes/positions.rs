//! `POST /api/v1/positions`: the generic JSON ingest API for programs (device apps have their
//! own endpoints, which answer as the apps need). Replies 202 with the accepted count and a
//! per-fix rejection report, only once every accepted fix is committed.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use serde::Serialize;
use tracker::decode::{self, BodyFormat, DecodeError};
use utoipa::ToSchema;

use crate::auth::{Authorized, scope};
use crate::error::{ApiError, ErrorBody, TokenRefusals};
use crate::extract::RawBody;
use crate::ingest::Ingest;

const PROTOCOL: &str = "json";

/// The answer to an ingest request: every fix of it is committed or rejected.
#[derive(Debug, Serialize, ToSchema)]
pub struct IngestReport {
    /// Fixes committed (a fix sent again counts, and is stored once).
    accepted: usize,
    /// The fixes refused, by their index in the request.
    rejected: Vec<RejectedFix>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RejectedFix {
    index: usize,
    /// Stable, e.g. `invalid_lat`, `ts_in_future`, `rate_limited`.
    code: &'static str,
    reason: String,
}

#[utoipa::path(post, path = "/api/v1/positions", operation_id = "post_positions", tag = "ingest", security(("bearer" = [])),
    request_body(description = "A fix, an array of fixes, a GeoJSON Feature or FeatureCollection, or NDJSON (one fix per line)",
        content((serde_json::Value = "application/json", example = json!([
                {"device": "truck-1", "ts": "2026-06-01T12:00:00Z", "lon": 13.40, "lat": 52.52, "speed_mps": 8.3}])),
            (serde_json::Value = "application/geo+json"), (String = "application/x-ndjson"))),
    responses((status = 202, description = "Committed, with a report of the fixes refused", body = IngestReport),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 413, description = "Body over `ingest.max_body_bytes`, or more than `ingest.max_request_fixes` fixes", body = ErrorBody),
        (status = 415, description = "Unsupported content type", body = ErrorBody),
        (status = 503, description = "Nothing stored (ingest queue full or database unavailable): retry after Retry-After",
            body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
        TokenRefusals))]
pub async fn post(
    State(ingest): State<Arc<Ingest>>,
    principal: Authorized<scope::Ingest>,
    headers: HeaderMap,
    body: Result<RawBody, ApiError>,
) -> Result<(StatusCode, Json<IngestReport>), ApiError> {
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
    let rejected = outcome
        .rejected
        .into_iter()
        .map(|(index, r)| RejectedFix {
            index,
            code: r.code,
            reason: r.message,
        })
        .collect();
    let report = IngestReport {
        accepted: outcome.accepted,
        rejected,
    };
    Ok((StatusCode::ACCEPTED, Json(report)))
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
