//! Extractors and parsers that answer bad input themselves with the JSON error every route
//! uses: query strings ([`Params`]), `{id}` path segments ([`PathId`]), bodies ([`RawBody`]: 413
//! when too large), bounding boxes ([`bbox`]) and times ([`time`]).

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use fences::Bbox;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// The query string as `T`, or 400 `invalid_query` saying what is wrong with it.
#[derive(Debug)]
pub struct Params<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(params)| Self(params))
            .map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))
    }
}

/// A route's one `{id}` segment, or 400: `invalid_path` when it cannot be read (e.g. invalid
/// percent-encoding), `invalid_id` when it is no id ([`fences::check_id`]).
#[derive(Debug)]
pub struct PathId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request("invalid_path", e.body_text()))?;
        checked_id("the id in the path", &id)?;
        Ok(Self(id))
    }
}

/// 400 `invalid_id` unless `id` is an id ([`fences::check_id`]); `what` names it in the message.
pub fn checked_id<'a>(what: &str, id: &'a str) -> Result<&'a str, ApiError> {
    fences::check_id(id)
        .map(|()| id)
        .map_err(|e| ApiError::bad_request("invalid_id", format!("{what} {id:?} {e}")))
}

/// The request body, or 413 `body_too_large` past the route's body limit, or 400
/// `unreadable_body`, in the JSON error shape (axum's own rejections are plain text).
#[derive(Debug)]
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        Bytes::from_request(request, state)
            .await
            .map(Self)
            .map_err(|rejection| {
                let status = rejection.status();
                let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
                    "body_too_large"
                } else {
                    "unreadable_body"
                };
                ApiError::new(status, code, rejection.body_text())
            })
    }
}

/// A body as JSON, or 400 `malformed_body`.
pub fn json_body(body: &[u8]) -> Result<serde_json::Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("malformed_body", format!("the body is not valid JSON: {e}")))
}

/// A body that must be one JSON object, read as `T`, or 400 `code` saying why not (`shape`
/// shows the fields expected). Objects only: serde would also read a JSON array as the fields
/// in order.
pub fn object_body<T: DeserializeOwned>(body: &[u8], code: &'static str, shape: &str) -> Result<T, ApiError> {
    let invalid = |message: String| ApiError::bad_request(code, message);
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(value) if value.is_object() => {
            serde_json::from_value(value).map_err(|e| invalid(format!("the body is not {shape}: {e}")))
        }
        Ok(_) => Err(invalid(format!("the body must be a JSON object: {shape}"))),
        Err(e) => Err(invalid(format!("the body is not JSON: {e}"))),
    }
}

/// A `bbox=minLon,minLat,maxLon,maxLat` parameter (minLon > maxLon crosses the antimeridian).
pub fn bbox(text: &str) -> Result<Bbox, ApiError> {
    Bbox::parse(text).map_err(|_| {
        ApiError::bad_request(
            "invalid_bbox",
            format!("bbox {text:?} must be minLon,minLat,maxLon,maxLat in degrees"),
        )
    })
}

/// The earliest time PostgreSQL's `timestamptz` holds (4714-11-24 BC, in Unix seconds).
const EARLIEST_STORED_S: i64 = -210_866_803_200;

/// The earliest time PostgreSQL's `timestamptz` holds: the floor of a time derived from a
/// parameter (`to` minus a default length).
pub fn earliest_stored() -> DateTime<Utc> {
    DateTime::from_timestamp(EARLIEST_STORED_S, 0).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// A history range from `from` and `to` parameters: `to` defaults to now, `from` to 24 hours
/// before `to`; 400 `invalid_range` unless `from` is before `to`.
pub fn history_range(
    from: Option<&str>,
    to: Option<&str>,
) -> Result<(DateTime<Utc>, DateTime<Utc>), ApiError> {
    let to = to.map(|t| time("to", t)).transpose()?.unwrap_or_else(Utc::now);
    let from = from
        .map(|t| time("from", t))
        .transpose()?
        .unwrap_or((to - chrono::Duration::hours(24)).max(earliest_stored()));
    if from >= to {
        return Err(ApiError::bad_request(
            "invalid_range",
            "`from` must be before `to`",
        ));
    }
    Ok((from, to))
}

/// A time parameter: RFC 3339, or epoch seconds or milliseconds. Times are compared with stored
/// ones, so one before [`earliest_stored`] is 400 `invalid_time` too (the database would refuse
/// it with an error: a 500 for a tile, a 200 cut short for a track export). Later times are all
/// storable: chrono ends in 262143 AD, PostgreSQL in 294276 AD.
pub fn time(name: &str, text: &str) -> Result<DateTime<Utc>, ApiError> {
    let parsed = match text.parse::<serde_json::Number>() {
        Ok(number) => tracker::decode::time::from_epoch_number(&number),
        Err(_) => tracker::decode::time::from_rfc3339(text),
    };
    let time = parsed.map_err(|_| {
        ApiError::bad_request(
            "invalid_time",
            format!("`{name}` {text:?} must be RFC 3339 or epoch seconds/milliseconds"),
        )
    })?;
    if time.timestamp() < EARLIEST_STORED_S {
        return Err(ApiError::bad_request(
            "invalid_time",
            format!("`{name}` {text:?} is before 4714 BC, the earliest time the database holds"),
        ));
    }
    Ok(time)
}

#[cfg(test)]
mod tests {
    use axum::response::IntoResponse;

    use super::*;

    #[test]
    fn times_before_what_the_database_holds_are_refused() {
        let earliest = EARLIEST_STORED_S.to_string();
        assert_eq!(
            time("to", &earliest).map(|t| t.timestamp()).ok(),
            Some(EARLIEST_STORED_S)
        );
        assert_eq!(earliest_stored().timestamp(), EARLIEST_STORED_S);
        let before = (EARLIEST_STORED_S - 1).to_string();
        let refused = time("from", &before).expect_err("before 4714 BC");
        assert_eq!(refused.into_response().status(), StatusCode::BAD_REQUEST);
        assert!(time("from", "2026-06-01T12:00:00Z").is_ok());
    }
}
