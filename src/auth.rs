//! Bearer tokens with scopes (`ingest`, `read`, `admin`), optionally limited to device ids or
//! id prefixes. Tokens come from config (`[[tokens]]`) or `GEOTRACK_TOKENS`
//! (`TOKEN=SCOPE[+SCOPE][@DEVICE[|DEVICE]]` entries separated by `;`, a trailing `*` making a
//! device entry a prefix). Only SHA-256 digests are kept, compared in constant time against every
//! configured token, and tokens are never logged. With no token configured, access is open.
//!
//! The API takes `Authorization: Bearer`; device-app endpoints and WebSockets also take
//! `?token=` or HTTP Basic (the password, or the user when the password is empty), because apps
//! and browsers cannot always set headers.

use std::collections::HashMap;
use std::fmt::{self, Write as _};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::state::AppState;

/// What a token may do. `admin` includes the other two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Ingest,
    Read,
    Admin,
}

impl Scope {
    fn parse(text: &str) -> Result<Self, String> {
        match text.trim() {
            "ingest" => Ok(Self::Ingest),
            "read" => Ok(Self::Read),
            "admin" => Ok(Self::Admin),
            other => Err(format!("unknown scope {other:?} (use ingest, read or admin)")),
        }
    }
}

/// One configured token.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    pub token: String,
    pub scopes: Vec<Scope>,
    /// Device ids this token is limited to; an entry ending in `*` is a prefix. Empty: all.
    #[serde(default)]
    pub devices: Vec<String>,
}

impl fmt::Debug for TokenConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenConfig")
            .field("token", &"<redacted>")
            .field("scopes", &self.scopes)
            .field("devices", &self.devices)
            .finish()
    }
}

/// The `tokens` setting: a list of tables, or the compact `GEOTRACK_TOKENS` string.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TokensSetting {
    #[default]
    None,
    Compact(String),
    List(Vec<TokenConfig>),
}

impl TokensSetting {
    pub fn entries(&self) -> Result<Vec<TokenConfig>, String> {
        match self {
            Self::None => Ok(Vec::new()),
            Self::List(list) => Ok(list.clone()),
            Self::Compact(text) => text
                .split(';')
                .filter(|entry| !entry.trim().is_empty())
                .map(parse_compact)
                .collect(),
        }
    }
}

fn parse_compact(entry: &str) -> Result<TokenConfig, String> {
    let (token, rest) = entry.trim().split_once('=').ok_or_else(|| {
        "a GEOTRACK_TOKENS entry must look like TOKEN=SCOPE[+SCOPE][@DEVICE[|DEVICE]]".to_owned()
    })?;
    let (scopes, devices) = rest.split_once('@').unwrap_or((rest, ""));
    Ok(TokenConfig {
        token: token.to_owned(),
        scopes: scopes.split('+').map(Scope::parse).collect::<Result<_, _>>()?,
        devices: devices
            .split('|')
            .filter(|d| !d.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

/// Who is calling: the scopes and devices of the token presented (or everything, when open).
#[derive(Debug, Clone)]
pub struct Principal {
    /// Names the token in rate limits (a digest prefix, never the token); `None` when open.
    key: Option<String>,
    scopes: Vec<Scope>,
    devices: DeviceLimit,
}

#[derive(Debug, Clone, Default)]
struct DeviceLimit {
    exact: Vec<String>,
    prefixes: Vec<String>,
}

impl DeviceLimit {
    fn is_unlimited(&self) -> bool {
        self.exact.is_empty() && self.prefixes.is_empty()
    }
}

impl Principal {
    fn open() -> Self {
        Self {
            key: None,
            scopes: vec![Scope::Admin],
            devices: DeviceLimit::default(),
        }
    }

    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&Scope::Admin) || self.scopes.contains(&scope)
    }

    /// 403 unless the token has `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.has(scope) {
            Ok(())
        } else {
            Err(AuthError::Forbidden(format!("this token lacks the {scope:?} scope").to_lowercase()).into())
        }
    }

    pub fn allows_device(&self, device: &str) -> bool {
        let limit = &self.devices;
        limit.is_unlimited()
            || limit.exact.iter().any(|d| d == device)
            || limit.prefixes.iter().any(|p| device.starts_with(p.as_str()))
    }

    /// 403 unless the token may act on `device`.
    pub fn require_device(&self, device: &str) -> Result<(), ApiError> {
        if self.allows_device(device) {
            Ok(())
        } else {
            Err(AuthError::Forbidden(format!("this token is not allowed to access device {device:?}")).into())
        }
    }

    /// The device limit as SQL parameters: exact ids and `LIKE` patterns; `None` when unlimited.
    pub fn device_filter(&self) -> Option<(Vec<String>, Vec<String>)> {
        if self.devices.is_unlimited() {
            return None;
        }
        let patterns = self
            .devices
            .prefixes
            .iter()
            .map(|p| {
                format!(
                    "{}%",
                    p.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
                )
            })
            .collect();
        Some((self.devices.exact.clone(), patterns))
    }
}

/// The configured tokens, by SHA-256 digest.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    entries: Vec<([u8; 32], Principal)>,
}

impl Tokens {
    pub fn from_config(configs: &[TokenConfig]) -> Result<Self, String> {
        let mut seen = HashMap::new();
        let mut entries = Vec::with_capacity(configs.len());
        for (i, config) in configs.iter().enumerate() {
            if config.token.len() < 8 {
                return Err(format!("token #{} is shorter than 8 characters", i + 1));
            }
            if config.scopes.is_empty() {
                return Err(format!("token #{} has no scope", i + 1));
            }
            let digest = digest(&config.token);
            if seen.insert(digest, i).is_some() {
                return Err(format!("token #{} is configured twice", i + 1));
            }
            let (prefixes, exact): (Vec<String>, Vec<String>) =
                config.devices.iter().cloned().partition(|d| d.ends_with('*'));
            let devices = DeviceLimit {
                exact,
                prefixes: prefixes
                    .iter()
                    .map(|p| p.trim_end_matches('*').to_owned())
                    .collect(),
            };
            let key = digest.iter().take(8).fold(String::new(), |mut hex, b| {
                let _ = write!(hex, "{b:02x}");
                hex
            });
            let principal = Principal {
                key: Some(key),
                scopes: config.scopes.clone(),
                devices,
            };
            entries.push((digest, principal));
        }
        Ok(Self { entries })
    }

    /// No token configured: everything is open.
    pub fn is_open(&self) -> bool {
        self.entries.is_empty()
    }

    /// The principal of `presented`, comparing with every token in constant time.
    fn lookup(&self, presented: &str) -> Option<Principal> {
        let wanted = digest(presented);
        let mut found = None;
        for (digest, principal) in &self.entries {
            let diff = digest
                .iter()
                .zip(wanted.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if diff == 0 {
                found = Some(principal.clone());
            }
        }
        found
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Why a request was refused.
#[derive(Debug)]
pub enum AuthError {
    Missing,
    Invalid,
    Forbidden(String),
    /// The token made too many requests; retry after the given seconds.
    RateLimited(u64),
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

/// The principal of the presented token, charged one request against its rate limit.
fn resolve(state: &AppState, presented: Option<String>) -> Result<Principal, AuthError> {
    if state.tokens.is_open() {
        return Ok(Principal::open());
    }
    let presented = presented.ok_or(AuthError::Missing)?;
    let principal = state.tokens.lookup(&presented).ok_or(AuthError::Invalid)?;
    if let Some(key) = &principal.key {
        state
            .limiters
            .tokens
            .try_take(key, 1.0)
            .map_err(|wait| AuthError::RateLimited(wait.as_secs().max(1)))?;
    }
    Ok(principal)
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

/// Extractor for API routes: the token from `Authorization: Bearer`.
#[derive(Debug, Clone)]
pub struct ApiAuth(pub Principal);

impl FromRequestParts<AppState> for ApiAuth {
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        resolve(state, bearer(parts)).map(Self)
    }
}

/// Extractor for WebSocket routes: `Authorization: Bearer` or `?token=` (browsers cannot set
/// headers on a WebSocket).
#[derive(Debug, Clone)]
pub struct SocketAuth(pub Principal);

impl FromRequestParts<AppState> for SocketAuth {
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        resolve(state, bearer(parts).or_else(|| query_token(parts))).map(Self)
    }
}

/// Extractor for device-app routes: Bearer, Basic or `?token=`.
#[derive(Debug, Clone)]
pub struct DeviceAuth(pub Principal);

impl FromRequestParts<AppState> for DeviceAuth {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let presented = bearer(parts)
            .or_else(|| basic(parts))
            .or_else(|| query_token(parts));
        resolve(state, presented).map(Self).map_err(|error| match error {
            // Apps retry 5xx but may drop data on 4xx: an over-eager token is asked to wait.
            AuthError::RateLimited(_) => ApiError::from(error).for_device_app().into_response(),
            other => other.into_response(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(spec: &str) -> Tokens {
        let entries = TokensSetting::Compact(spec.into()).entries().expect("spec");
        Tokens::from_config(&entries).expect("tokens")
    }

    #[test]
    fn the_compact_form_gives_scopes_and_device_limits() {
        let t = tokens("admin-secret=admin; phone-token=ingest@phone-1|fleet-*;viewer-token=read+ingest");
        let admin = t.lookup("admin-secret").expect("admin");
        assert!(admin.has(Scope::Read) && admin.has(Scope::Ingest) && admin.allows_device("any"));
        let phone = t.lookup("phone-token").expect("phone");
        assert!(phone.has(Scope::Ingest) && !phone.has(Scope::Read));
        assert!(phone.allows_device("phone-1") && phone.allows_device("fleet-9"));
        assert!(!phone.allows_device("phone-2") && !phone.allows_device("xfleet-1"));
        assert_eq!(
            phone.device_filter(),
            Some((vec!["phone-1".into()], vec!["fleet-%".into()]))
        );
        assert!(t.lookup("viewer-token").expect("viewer").has(Scope::Read));
        assert!(t.lookup("admin-secreT").is_none());
    }

    #[test]
    fn bad_specs_are_refused_with_a_reason() {
        for (spec, needle) in [
            ("short=admin", "shorter"),
            ("long-enough=root", "unknown scope"),
            ("no-equals-sign", "must look like"),
            ("dup-token-1=read;dup-token-1=admin", "twice"),
        ] {
            let err = TokensSetting::Compact(spec.into())
                .entries()
                .and_then(|e| Tokens::from_config(&e))
                .expect_err(spec);
            assert!(err.contains(needle), "{spec}: {err}");
        }
    }

    #[test]
    fn prefix_patterns_escape_like_wildcards() {
        let t = tokens("some-token=read@a_b%*");
        let filter = t.lookup("some-token").expect("token").device_filter();
        assert_eq!(filter, Some((vec![], vec!["a\\_b\\%%".into()])));
    }
}
