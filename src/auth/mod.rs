//! Bearer tokens with scopes (`ingest`, `read`, `admin`), optionally limited to device ids or
//! id prefixes. Tokens come from config (`[[tokens]]`) or `GEOTRACK_TOKENS`
//! (`TOKEN=SCOPE[+SCOPE][@DEVICE[|DEVICE]]` entries separated by `;`, a trailing `*` making a
//! device entry a prefix and a leading `group:` a device group). Only SHA-256 digests are kept, compared in constant time against every
//! configured token, and tokens are never logged. With no token configured, access is open.
//!
//! Handlers take an [`Authorized`] extractor naming the scope they need; the API takes
//! `Authorization: Bearer`, WebSockets also `?token=`, device apps and maps also HTTP Basic (the
//! password, or the user when the password is empty), because apps and browsers cannot always
//! set headers.

mod extract;
mod principal;
mod tokens;

use std::net::IpAddr;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

pub use extract::{
    Authorized, Bearer, BearerOrBasic, BearerOrQuery, Credentials, DeviceApp, basic_credentials, scope,
};
pub use principal::{Principal, Scope};
pub use tokens::{TokenConfig, TokenError, Tokens, TokensSetting};

use crate::error::ApiError;
use crate::limits::RateLimiter;

/// The tokens and the limits on using them: everything authentication needs.
#[derive(Debug)]
pub struct Auth {
    pub tokens: Tokens,
    /// Requests per token.
    pub limiter: RateLimiter,
    /// Failed authentications per client address: guessing tokens is slowed to a trickle.
    pub failures: RateLimiter<IpAddr>,
    /// Device groups, for tokens limited to groups.
    pub groups: fences::Groups,
}

impl Auth {
    /// The principal of the token `presented` (asked for only when tokens are on) from
    /// `client`, charged one request against its rate limit. An address that presented too
    /// many unknown tokens is refused first.
    pub fn resolve(
        &self,
        presented: impl FnOnce() -> Option<String>,
        client: Option<IpAddr>,
    ) -> Result<Principal, AuthError> {
        if self.tokens.is_open() {
            return Ok(Principal::open());
        }
        let presented = presented().ok_or(AuthError::Missing)?;
        if let Some(client) = &client {
            self.failures
                .check(client, 1.0)
                .map_err(|wait| AuthError::TooManyFailures(wait.as_secs().max(1)))?;
        }
        let Some(principal) = self.tokens.lookup(&presented) else {
            if let Some(client) = &client {
                let _ = self.failures.try_take(client, 1.0);
            }
            return Err(AuthError::Invalid);
        };
        if let Some(key) = principal.key() {
            self.limiter
                .try_take(key, 1.0)
                .map_err(|wait| AuthError::RateLimited(wait.as_secs().max(1)))?;
        }
        Ok(principal.resolved(&self.groups))
    }

    /// The principal a TCP listener of hardware trackers acts as (`tcp.token`): everything when
    /// access is open, else that token if it is configured with the `ingest` scope, its device
    /// groups resolved as they are now. `None`: no device may connect. Not rate-limited per
    /// call: devices are limited by their fixes, like every other device.
    pub fn device_listener(&self, token: Option<&str>) -> Option<Principal> {
        if self.tokens.is_open() {
            return Some(Principal::open());
        }
        let principal = self.tokens.lookup(token?)?;
        principal
            .has(Scope::Ingest)
            .then(|| principal.resolved(&self.groups))
    }
}

/// Why a request was refused.
#[derive(Debug)]
pub enum AuthError {
    Missing,
    Invalid,
    Forbidden(String),
    /// The token made too many requests; retry after the given seconds.
    RateLimited(u64),
    /// The client's address presented too many unknown tokens; retry after the given seconds.
    TooManyFailures(u64),
}

impl Principal {
    /// 403 unless the token may act on `device`.
    pub fn require_device(&self, device: &str) -> Result<(), AuthError> {
        if self.allows_device(device) {
            Ok(())
        } else {
            Err(AuthError::Forbidden(format!(
                "this token is not allowed to access device {device:?}"
            )))
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Missing => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a token is required: send Authorization: Bearer <token>",
            ),
            AuthError::Invalid => {
                ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "the token is not valid")
            }
            AuthError::Forbidden(message) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", message),
            AuthError::RateLimited(retry_after_s) => ApiError::too_many_requests(
                "this token is making requests faster than its rate limit",
                retry_after_s,
            ),
            AuthError::TooManyFailures(retry_after_s) => ApiError::too_many_requests(
                "too many unknown tokens from this address; retry later",
                retry_after_s,
            ),
        }
    }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let unauthorized = matches!(self, AuthError::Missing | AuthError::Invalid);
        let mut response = ApiError::from(self).into_response();
        if unauthorized {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"geotrack\""),
            );
        }
        response
    }
}
