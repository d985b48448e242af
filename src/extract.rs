//! Extractors and parsers that answer bad input themselves with the JSON 400 every route uses:
//! query strings ([`Params`]), `{id}` path segments ([`PathId`]), bounding boxes ([`bbox`]) and
//! times ([`time`]).

use axum::extract::{FromRequestParts, Path, Query};
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

/// A route's one `{id}` segment, or 400 `invalid_path` (e.g. invalid percent-encoding).
#[derive(Debug)]
pub struct PathId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(id)| Self(id))
            .map_err(|e| ApiError::bad_request("invalid_path", e.body_text()))
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

/// A time parameter: RFC 3339, or epoch seconds or milliseconds.
pub fn time(name: &str, text: &str) -> Result<DateTime<Utc>, ApiError> {
    let parsed = match text.parse::<serde_json::Number>() {
        Ok(number) => tracker::decode::time::from_epoch_number(&number),
        Err(_) => tracker::decode::time::from_rfc3339(text),
    };
    parsed.map_err(|_| {
        ApiError::bad_request(
            "invalid_time",
            format!("`{name}` {text:?} must be RFC 3339 or epoch seconds/milliseconds"),
        )
    })
}
