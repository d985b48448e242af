//! [`Authorized`]: the extractor every handler names its scope with, so no handler checks a
//! scope by hand. `Authorized<scope::Read>` takes the token from `Authorization: Bearer`;
//! the second parameter names where else a token may come from ([`BearerOrQuery`] for
//! WebSockets, [`DeviceApp`] for device apps and maps).

use std::marker::PhantomData;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;

use super::{AuthError, Principal, Scope};
use crate::error::ApiError;
use crate::state::AppState;

/// The scope a route needs, as a type.
pub trait Required {
    const SCOPE: Scope;
}

/// Scope markers for [`Authorized`].
pub mod scope {
    use super::{Required, Scope};

    /// The `read` scope (or `admin`).
    #[derive(Debug)]
    pub struct Read;
    /// The `ingest` scope (or `admin`).
    #[derive(Debug)]
    pub struct Ingest;
    /// The `admin` scope.
    #[derive(Debug)]
    pub struct Admin;

    impl Required for Read {
        const SCOPE: Scope = Scope::Read;
    }
    impl Required for Ingest {
        const SCOPE: Scope = Scope::Ingest;
    }
    impl Required for Admin {
        const SCOPE: Scope = Scope::Admin;
    }
}

/// Where a route looks for the token, and how it answers a refusal.
pub trait Credentials {
    fn presented(parts: &Parts) -> Option<String>;

    fn refuse(error: AuthError) -> Response {
        error.into_response()
    }
}

/// `Authorization: Bearer` only (the API).
#[derive(Debug)]
pub struct Bearer;

/// `Authorization: Bearer`, or `?token=` (browsers cannot set headers on a WebSocket).
#[derive(Debug)]
pub struct BearerOrQuery;

/// Bearer or HTTP Basic with the token as password (GIS clients: what QGIS' and GDAL's
/// authentication settings offer); a refusal challenges for both.
#[derive(Debug)]
pub struct BearerOrBasic;

/// Bearer, HTTP Basic or `?token=` (device apps and maps). A rate-limited token is asked to
/// come back with 503 rather than 429: apps retry 5xx but may drop data on a 4xx.
#[derive(Debug)]
pub struct DeviceApp;

impl Credentials for Bearer {
    fn presented(parts: &Parts) -> Option<String> {
        bearer(parts)
    }
}

impl Credentials for BearerOrQuery {
    fn presented(parts: &Parts) -> Option<String> {
        bearer(parts).or_else(|| query_token(parts))
    }
}

impl Credentials for BearerOrBasic {
    fn presented(parts: &Parts) -> Option<String> {
        bearer(parts).or_else(|| basic(parts))
    }

    fn refuse(error: AuthError) -> Response {
        let mut response = error.into_response();
        if response.status() == axum::http::StatusCode::UNAUTHORIZED {
            response.headers_mut().append(
                header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Basic realm=\"geotrack\""),
            );
        }
        response
    }
}

impl Credentials for DeviceApp {
    fn presented(parts: &Parts) -> Option<String> {
        bearer(parts)
            .or_else(|| basic(parts))
            .or_else(|| query_token(parts))
    }

    fn refuse(error: AuthError) -> Response {
        match error {
            AuthError::RateLimited(_) | AuthError::TooManyFailures(_) => {
                ApiError::from(error).for_device_app().into_response()
            }
            other => other.into_response(),
        }
    }
}

/// The caller's [`Principal`], known to hold scope `S`; the token came from where `C` looks.
/// 401 without a valid token, 403 without the scope.
#[derive(Debug)]
pub struct Authorized<S, C = Bearer> {
    pub principal: Principal,
    marker: PhantomData<fn() -> (S, C)>,
}

impl<S, C> std::ops::Deref for Authorized<S, C> {
    type Target = Principal;

    fn deref(&self) -> &Principal {
        &self.principal
    }
}

impl<S: Required, C: Credentials> FromRequestParts<AppState> for Authorized<S, C> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let client = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(address)| address.ip());
        let principal = state
            .auth
            .resolve(|| C::presented(parts), client)
            .map_err(C::refuse)?;
        if !principal.has(S::SCOPE) {
            let message = format!("this token lacks the {:?} scope", S::SCOPE).to_lowercase();
            return Err(C::refuse(AuthError::Forbidden(message)));
        }
        Ok(Self {
            principal,
            marker: PhantomData,
        })
    }
}

fn bearer(parts: &Parts) -> Option<String> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (kind, token) = value.split_once(' ')?;
    kind.eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

/// HTTP Basic: the password is the token; with an empty password, the user name is.
fn basic(parts: &Parts) -> Option<String> {
    let (user, password) = basic_credentials(&parts.headers)?;
    Some(if password.is_empty() { user } else { password })
}

/// The user name and password of an `Authorization: Basic` header.
pub fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (kind, encoded) = value.split_once(' ')?;
    if !kind.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':').unwrap_or((&text, ""));
    Some((user.to_owned(), password.to_owned()))
}

fn query_token(parts: &Parts) -> Option<String> {
    let query = parts.uri.query()?;
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
}
