//! `ApiError`: every error a client sees, rendered as
//! `{"error": {"code": "...", "message": "..."}}` ([`ErrorBody`]) with the right status. Internal
//! causes are logged, never echoed (a client gets "internal error" and the request id to quote).
//! Also the OpenAPI description of those answers: the [`ErrorBody`] schema and the refusals
//! every authenticated route may give ([`TokenRefusals`], [`DeviceAppRefusals`]) and the
//! fence routes' 503 ([`FencesUnavailable`]).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;
use utoipa::{IntoResponses, ToSchema};

/// The body of every error response. A few carry one more field beside `error` (a failed fence
/// import lists its invalid features in `invalid`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable and machine-readable, e.g. `unauthorized`, `invalid_bbox`, `rate_limited`.
    #[schema(example = "invalid_bbox")]
    pub code: String,
    /// For people; may change.
    pub message: String,
}

/// The refusals of a route that needs a token (`Authorization: Bearer`, or `?token=` where
/// the route says so), besides its own answers.
#[derive(Debug, IntoResponses)]
pub enum TokenRefusals {
    /// No token, or an unknown one
    #[response(status = 401, headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"geotrack\"`")))]
    Unauthorized(ErrorBody),
    /// The token lacks the route's scope, or may not access that device
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// The token is over its rate limit, or this address sent too many unknown tokens
    #[response(status = 429, headers(("Retry-After" = u64, description = "Seconds to wait")))]
    TooManyRequests(ErrorBody),
}

/// The refusals of a route for device apps and maps (token as Bearer, HTTP Basic or
/// `?token=`). Over its rate limit such a token is told 503 with `Retry-After` instead of 429
/// (apps retry a 5xx but may drop data on a 4xx): see the route's 503.
#[derive(Debug, IntoResponses)]
pub enum DeviceAppRefusals {
    /// No token, or an unknown one
    #[response(status = 401, headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"geotrack\"`")))]
    Unauthorized(ErrorBody),
    /// The token lacks the route's scope, or may not access that device
    #[response(status = 403)]
    Forbidden(ErrorBody),
}

/// The 503 every fence route may give.
#[derive(Debug, IntoResponses)]
pub enum FencesUnavailable {
    /// The fence index is still loading, or the database is unavailable: retry after Retry-After
    #[response(status = 503, headers(("Retry-After" = u64, description = "Seconds to wait")))]
    Unavailable(ErrorBody),
}

#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after_s: Option<u64>,
    /// An extra top-level field beside `error`, e.g. the per-item report of a failed import.
    detail: Option<(&'static str, serde_json::Value)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after_s: None,
            detail: None,
        }
    }

    /// Adds `key: value` beside `error` in the body.
    #[must_use]
    pub fn with_detail(self, key: &'static str, value: serde_json::Value) -> Self {
        Self {
            detail: Some((key, value)),
            ..self
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    /// Adds a `Retry-After` header (at least 1 s).
    #[must_use]
    pub fn retry_after(self, seconds: u64) -> Self {
        Self {
            retry_after_s: Some(seconds.max(1)),
            ..self
        }
    }

    /// 503 with a `Retry-After` header: nothing was done, the same request may succeed later.
    pub fn unavailable(code: &'static str, message: impl Into<String>, retry_after_s: u64) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message).retry_after(retry_after_s)
    }

    /// 429 with a `Retry-After` header.
    pub fn too_many_requests(message: impl Into<String>, retry_after_s: u64) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message).retry_after(retry_after_s)
    }

    /// The JSON body: `{"error": {code, message}}` and the detail beside it.
    /// The stable code (`queue_full`, `forbidden`...), for logs of callers that are not HTTP.
    pub fn code(&self) -> &'static str {
        self.code
    }

    pub fn body(&self) -> serde_json::Value {
        let mut body = json!(ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message.clone(),
            },
        });
        if let Some((key, value)) = &self.detail {
            body[*key] = value.clone();
        }
        body
    }

    /// A failure that is our fault: logged with its cause, reported without it.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(%cause, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the server log",
        )
    }

    /// Device apps drop a message on some 4xx answers (OwnTracks for iOS) and retry 5xx, so a
    /// rate-limited device is told 503 with the same `Retry-After`.
    #[must_use]
    pub fn for_device_app(self) -> Self {
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            Self {
                status: StatusCode::SERVICE_UNAVAILABLE,
                ..self
            }
        } else {
            self
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        Self::from(&error)
    }
}

/// Also for errors shared between requests (a coalesced tile build).
impl From<&sqlx::Error> for ApiError {
    fn from(error: &sqlx::Error) -> Self {
        match error {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                tracing::warn!(%error, "database unavailable");
                Self::unavailable(
                    "database_unavailable",
                    "the database is not reachable right now",
                    5,
                )
            }
            other => Self::internal(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        if let Some(seconds) = self.retry_after_s {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// Tile errors: a tile or window that does not exist is the client's (400), an unknown layer
/// 404, a layer whose table cannot be read 503 with the reason, a failed build as the
/// database error it was.
impl From<tiles::Error> for ApiError {
    fn from(error: tiles::Error) -> Self {
        match error {
            tiles::Error::Window(reason) => Self::bad_request("invalid_window", reason),
            e if e.is_bad_request() => Self::bad_request("invalid_tile", e.to_string()),
            e @ tiles::Error::UnknownLayer { .. } => Self::not_found("unknown_layer", e.to_string()),
            e @ (tiles::Error::Misconfigured { .. } | tiles::Error::Describe { .. }) => {
                tracing::warn!(error = %e, "tile layer unavailable");
                Self::unavailable("layer_unavailable", e.to_string(), 5)
            }
            tiles::Error::Build(cause) => Self::from(&*cause),
            other => Self::internal(&other),
        }
    }
}

impl From<crate::fence_registry::RegistryError> for ApiError {
    fn from(error: crate::fence_registry::RegistryError) -> Self {
        use crate::fence_registry::RegistryError as E;
        use fences::collection::CollectionError;
        let message = error.to_string();
        match error {
            E::Loading => Self::unavailable("fences_loading", message, 2),
            E::Invalid(_) | E::Webhook(_) => Self::bad_request("invalid_fence", message),
            E::Unsigned(_) => Self::bad_request("webhooks_unsigned", message),
            E::Exists(_) => Self::new(StatusCode::CONFLICT, "fence_exists", message),
            E::NotFound(_) => Self::not_found("fence_not_found", message),
            E::Precondition { current, .. } => {
                let error = Self::new(StatusCode::PRECONDITION_FAILED, "precondition_failed", message);
                match current {
                    Some(version) => {
                        error.with_detail("etag", json!(crate::fence_registry::entity_tag(&version)))
                    }
                    None => error,
                }
            }
            E::IdMismatch { .. } => Self::bad_request("id_mismatch", message),
            E::Collection(CollectionError::NotACollection) => {
                Self::bad_request("not_a_feature_collection", message)
            }
            E::Collection(CollectionError::Invalid { report, .. }) => {
                Self::bad_request("invalid_features", message)
                    .with_detail("invalid", serde_json::Value::Array(report))
            }
            E::Collection(e @ CollectionError::GeneratedIds { .. }) => Self::internal(&e),
            E::Database(cause) => Self::from(cause),
        }
    }
}
