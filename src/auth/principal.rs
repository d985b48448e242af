//! [`Principal`]: who is calling, as far as the token presented says: its scopes and the
//! devices it may see or write (every device when it names none, or when access is open).

use fences::{DeviceFilter, Groups};
use serde::{Deserialize, Serialize};

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
    /// `None`: every device (unless `groups` names some).
    devices: Option<DeviceFilter>,
    /// Device groups the token is limited to, besides `devices`: resolved into `devices` against
    /// the groups as they are at each request ([`Principal::resolved`]).
    groups: Vec<String>,
}

impl Principal {
    pub(super) fn new(
        key: String,
        scopes: Vec<Scope>,
        devices: Option<DeviceFilter>,
        groups: Vec<String>,
    ) -> Self {
        Self {
            key: Some(key),
            scopes,
            devices,
            groups,
        }
    }

    /// This principal with its groups' current members added to its device limit (the same
    /// principal when it names no group). A group that does not exist adds no device.
    pub(super) fn resolved(self, groups: &Groups) -> Self {
        if self.groups.is_empty() {
            return self;
        }
        let (mut exact, mut prefixes) = self
            .devices
            .as_ref()
            .map(|d| (d.exact().to_vec(), d.prefixes().to_vec()))
            .unwrap_or_default();
        for group in self.groups.iter().filter_map(|id| groups.get(id)) {
            exact.extend(group.devices.iter().cloned());
            prefixes.extend(group.prefixes.iter().cloned());
        }
        Self {
            devices: Some(DeviceFilter::from_parts(exact, prefixes)),
            groups: Vec::new(),
            ..self
        }
    }

    /// Everything allowed: no token is configured.
    pub(super) fn open() -> Self {
        Self {
            key: None,
            scopes: vec![Scope::Admin],
            devices: None,
            groups: Vec::new(),
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
        self.devices.as_ref().is_none_or(|filter| filter.allows(device))
    }

    /// The devices it is limited to; `None` when it may see every device.
    pub fn device_filter(&self) -> Option<&DeviceFilter> {
        self.devices.as_ref()
    }
}
