//! `[dispatch]`: how the live index is kept and how much a query may return.

use serde::{Deserialize, Serialize};

/// The `[dispatch]` section of the service's configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DispatchConfig {
    /// Seconds between full reloads of the live index from the database (it follows the live
    /// feed in between; a reload also drops devices erased on other nodes of a cluster).
    pub resync_s: u64,
    /// Largest `limit` of a nearby query.
    pub max_nearby: usize,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        Self {
            resync_s: 600,
            max_nearby: 1_000,
        }
    }
}
