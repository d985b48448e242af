//! What alerting is configured with: `[alerts]` (evaluation and the hub) and `[webhooks]`
//! sections of the service's configuration, and the evaluators' tuning derived from them.

use std::time::Duration;

use fences::StateConfig;
use serde::{Deserialize, Serialize};

/// Webhooks: every alert is posted to `urls` (and to its fence's own `webhooks`), signed with
/// HMAC-SHA256 under `secret` twice: geotrack's headers and Standard Webhooks' (`sign`).
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhooksConfig {
    pub urls: Vec<String>,
    /// Signing key; required as soon as any webhook is configured (here or on a fence).
    pub secret: Option<String>,
    /// Attempts before a delivery is given up.
    pub max_attempts: u32,
    /// Wait before the first retry; doubled at each further one, up to an hour.
    pub retry_base_ms: u64,
    /// Longest wait for a receiver's answer.
    pub timeout_s: u64,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// Networks webhooks may reach beyond public addresses (`10.1.0.0/16`, `127.0.0.1`): by
    /// default loopback, private and link-local addresses are refused (see
    /// `webhooks::policy`).
    pub allowed_networks: Vec<String>,
    /// PEM file of certificate authorities trusted for `https://` receivers besides the
    /// system's (an internal CA).
    pub ca_file: Option<std::path::PathBuf>,
}

impl WebhooksConfig {
    /// The signing secret, when one is configured (an empty one is none).
    pub fn secret(&self) -> Option<&str> {
        self.secret.as_deref().filter(|s| !s.is_empty())
    }
}

impl std::fmt::Debug for WebhooksConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhooksConfig")
            .field("urls", &self.urls)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("max_attempts", &self.max_attempts)
            .field("allowed_networks", &self.allowed_networks)
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            urls: Vec::new(),
            secret: None,
            max_attempts: 12,
            retry_base_ms: 1_000,
            timeout_s: 10,
            concurrency: 8,
            allowed_networks: Vec::new(),
            ca_file: None,
        }
    }
}

/// Fence evaluation and alerts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertsConfig {
    /// Send `offline` for a device that sent nothing for this long; 0 turns it off.
    pub offline_after_s: u64,
    /// Longest gap between two fixes for which a pass through a fence is interpolated.
    pub max_gap_s: u32,
    /// Fastest plausible speed between two fixes for an interpolated pass.
    pub max_speed_mps: f64,
    /// How often due dwell and offline alerts are looked for.
    pub tick_ms: u64,
    /// After this long without new fixes, evaluators look in the database for fixes written
    /// by another process (such as `geotrack import gpx`).
    pub idle_poll_ms: u64,
    /// Alerts the hub keeps for subscribers that fall behind; one further behind is told it
    /// lagged and is disconnected (it resumes with `since=`).
    pub hub_capacity: usize,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        let state = fences::StateConfig::default();
        Self {
            offline_after_s: 600,
            max_gap_s: state.max_gap_s,
            max_speed_mps: state.max_speed_mps,
            tick_ms: 1_000,
            idle_poll_ms: 5_000,
            hub_capacity: 4_096,
        }
    }
}

impl AlertsConfig {
    pub fn evaluation(&self) -> EvalConfig {
        EvalConfig {
            state: fences::StateConfig {
                max_gap_s: self.max_gap_s,
                max_speed_mps: self.max_speed_mps,
                ..fences::StateConfig::default()
            },
            offline_after: (self.offline_after_s > 0).then(|| Duration::from_secs(self.offline_after_s)),
            tick: Duration::from_millis(self.tick_ms.max(10)),
            idle_poll: Duration::from_millis(self.idle_poll_ms.max(10)),
        }
    }
}

/// Tuning of the evaluators.
#[derive(Debug, Clone)]
pub struct EvalConfig {
    pub state: StateConfig,
    /// Send `offline` for a device silent this long; `None`: never.
    pub offline_after: Option<Duration>,
    /// How often due dwell and offline alerts are looked for.
    pub tick: Duration,
    /// After this long without a batch, look in the database for fixes nobody handed over.
    pub idle_poll: Duration,
}
