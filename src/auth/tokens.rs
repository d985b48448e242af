//! The configured tokens: how they are written (`[[tokens]]` tables or the compact
//! `GEOTRACK_TOKENS` string) and how a presented token is found, by SHA-256 digest compared in
//! constant time against every configured one (the tokens themselves are not kept).

use std::collections::HashMap;
use std::fmt::{self, Write as _};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use fences::DeviceFilter;

use super::principal::{Principal, Scope};

/// Shortest token accepted: tokens are the only credential, and a short one can be guessed.
pub const MIN_TOKEN_LEN: usize = 16;

/// Why the token configuration cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("unknown scope {0:?} (use ingest, read or admin)")]
    UnknownScope(String),
    #[error("a GEOTRACK_TOKENS entry must look like TOKEN=SCOPE[+SCOPE][@DEVICE[|DEVICE]]")]
    Malformed,
    #[error("token #{0} is shorter than {MIN_TOKEN_LEN} characters (32 or more is better)")]
    TooShort(usize),
    #[error("token #{0} has no scope")]
    NoScope(usize),
    #[error("token #{0} is configured twice")]
    Duplicate(usize),
    #[error("token #{0} names a device group without a valid id after `group:`")]
    BadGroup(usize),
}

/// How a token's device entry names a device group: `group:taxis`.
const GROUP_PREFIX: &str = "group:";

fn parse_scope(text: &str) -> Result<Scope, TokenError> {
    match text.trim() {
        "ingest" => Ok(Scope::Ingest),
        "read" => Ok(Scope::Read),
        "admin" => Ok(Scope::Admin),
        other => Err(TokenError::UnknownScope(other.to_owned())),
    }
}

/// One configured token.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    pub token: String,
    pub scopes: Vec<Scope>,
    /// Device ids this token is limited to; an entry ending in `*` is a prefix, one starting with
    /// `group:` a device group (its members as they are at each request). Empty: all.
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
    pub fn entries(&self) -> Result<Vec<TokenConfig>, TokenError> {
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

fn parse_compact(entry: &str) -> Result<TokenConfig, TokenError> {
    let (token, rest) = entry.trim().split_once('=').ok_or(TokenError::Malformed)?;
    let (scopes, devices) = rest.split_once('@').unwrap_or((rest, ""));
    Ok(TokenConfig {
        token: token.to_owned(),
        scopes: scopes.split('+').map(parse_scope).collect::<Result<_, _>>()?,
        devices: devices
            .split('|')
            .filter(|d| !d.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

/// The configured tokens, by SHA-256 digest.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    entries: Vec<([u8; 32], Principal)>,
}

impl Tokens {
    pub fn from_config(configs: &[TokenConfig]) -> Result<Self, TokenError> {
        let mut seen = HashMap::new();
        let mut entries = Vec::with_capacity(configs.len());
        for (i, config) in configs.iter().enumerate() {
            if config.token.chars().count() < MIN_TOKEN_LEN {
                return Err(TokenError::TooShort(i + 1));
            }
            if config.scopes.is_empty() {
                return Err(TokenError::NoScope(i + 1));
            }
            let digest = digest(&config.token);
            if seen.insert(digest, i).is_some() {
                return Err(TokenError::Duplicate(i + 1));
            }
            let key = digest.iter().take(8).fold(String::new(), |mut hex, b| {
                let _ = write!(hex, "{b:02x}");
                hex
            });
            let (groups, devices): (Vec<&String>, Vec<&String>) =
                config.devices.iter().partition(|d| d.starts_with(GROUP_PREFIX));
            let groups: Vec<String> = groups
                .into_iter()
                .map(|g| g[GROUP_PREFIX.len()..].to_owned())
                .collect();
            if groups.iter().any(|g| fences::check_id(g).is_err()) {
                return Err(TokenError::BadGroup(i + 1));
            }
            let devices: Vec<String> = devices.into_iter().cloned().collect();
            let limit = match (DeviceFilter::new(&devices), groups.is_empty()) {
                // Limited to groups alone: no device until the groups have members.
                (None, false) => Some(DeviceFilter::from_parts(Vec::new(), Vec::new())),
                (limit, _) => limit,
            };
            let principal = Principal::new(key, config.scopes.clone(), limit, groups);
            entries.push((digest, principal));
        }
        Ok(Self { entries })
    }

    /// No token configured: everything is open.
    pub fn is_open(&self) -> bool {
        self.entries.is_empty()
    }

    /// The principal of `presented`, comparing with every token in constant time.
    pub fn lookup(&self, presented: &str) -> Option<Principal> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(spec: &str) -> Tokens {
        let entries = TokensSetting::Compact(spec.into()).entries().expect("spec");
        Tokens::from_config(&entries).expect("tokens")
    }

    #[test]
    fn the_compact_form_gives_scopes_and_device_limits() {
        let t = tokens(
            "admin-secret-00001=admin; phone-token-000001=ingest@phone-1|fleet-*;viewer-token-00001=read+ingest",
        );
        let admin = t.lookup("admin-secret-00001").expect("admin");
        assert!(admin.has(Scope::Read) && admin.has(Scope::Ingest) && admin.allows_device("any"));
        let phone = t.lookup("phone-token-000001").expect("phone");
        assert!(phone.has(Scope::Ingest) && !phone.has(Scope::Read));
        assert!(phone.allows_device("phone-1") && phone.allows_device("fleet-9"));
        assert!(!phone.allows_device("phone-2") && !phone.allows_device("xfleet-1"));
        let filter = phone.device_filter().expect("limited");
        assert_eq!(
            (filter.exact(), filter.like_patterns()),
            (&["phone-1".to_owned()][..], vec!["fleet-%".to_owned()])
        );
        assert!(t.lookup("viewer-token-00001").expect("viewer").has(Scope::Read));
        assert!(t.lookup("admin-secret-0000T").is_none());
    }

    #[test]
    fn bad_specs_are_refused_with_a_reason() {
        for (spec, needle) in [
            ("short=admin", "shorter"),
            ("long-enough-00001=root", "unknown scope"),
            ("no-equals-sign", "must look like"),
            ("dup-token-0000001=read;dup-token-0000001=admin", "twice"),
            ("group-token-00001=read@group:", "device group"),
        ] {
            let err = TokensSetting::Compact(spec.into())
                .entries()
                .and_then(|e| Tokens::from_config(&e))
                .expect_err(spec)
                .to_string();
            assert!(err.contains(needle), "{spec}: {err}");
        }
    }

    #[test]
    fn prefix_patterns_escape_like_wildcards() {
        let t = tokens("some-token-000001=read@a_b%*");
        let principal = t.lookup("some-token-000001").expect("token");
        let filter = principal.device_filter().expect("limited");
        assert!(filter.exact().is_empty());
        assert_eq!(filter.like_patterns(), vec!["a\\_b\\%%".to_owned()]);
    }
}
