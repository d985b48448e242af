//! [`Principal`]: who is calling, as far as the token presented says: its scopes and the
//! devices it may see or write (every device when it names none, or when access is open).

use serde::{Deserialize, Serialize};
use tracker::latest::DeviceFilter;

/// What a token may do. `admin` includes the other two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Ingest,
    Read,
    Admin,
}

/// The scopes and devices of a presented token (or everything, when access is open).
#[derive(Debug, Clone)]
pub struct Principal {
    /// Names the token in rate limits (a digest prefix, never the token); `None` when open.
    key: Option<String>,
    scopes: Vec<Scope>,
    devices: DeviceLimit,
}

/// Device ids a token is limited to: exact ids and id prefixes (`fleet-*`); none means all.
#[derive(Debug, Clone, Default)]
pub(super) struct DeviceLimit {
    exact: Vec<String>,
    prefixes: Vec<String>,
}

impl DeviceLimit {
    /// From configured entries, where a trailing `*` makes a prefix.
    pub(super) fn new(entries: &[String]) -> Self {
        let (prefixes, exact): (Vec<String>, Vec<String>) =
            entries.iter().cloned().partition(|d| d.ends_with('*'));
        Self {
            exact,
            prefixes: prefixes
                .iter()
                .map(|p| p.trim_end_matches('*').to_owned())
                .collect(),
        }
    }

    fn is_unlimited(&self) -> bool {
        self.exact.is_empty() && self.prefixes.is_empty()
    }
}

impl Principal {
    pub(super) fn new(key: String, scopes: Vec<Scope>, devices: DeviceLimit) -> Self {
        Self {
            key: Some(key),
            scopes,
            devices,
        }
    }

    /// Everything allowed: no token is configured.
    pub(super) fn open() -> Self {
        Self {
            key: None,
            scopes: vec![Scope::Admin],
            devices: DeviceLimit::default(),
        }
    }

    /// The name of its token in rate limits (`None` when access is open).
    pub(super) fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&Scope::Admin) || self.scopes.contains(&scope)
    }

    pub fn allows_device(&self, device: &str) -> bool {
        let limit = &self.devices;
        limit.is_unlimited()
            || limit.exact.iter().any(|d| d == device)
            || limit.prefixes.iter().any(|p| device.starts_with(p.as_str()))
    }

    /// The device limit as SQL parameters (`LIKE` patterns for prefixes); `None` when unlimited.
    pub fn device_filter(&self) -> Option<DeviceFilter> {
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
        Some(DeviceFilter {
            exact: self.devices.exact.clone(),
            patterns,
        })
    }
}
