//! The `[cluster]` section. Without `nats_url` geotrack runs as one process and needs no NATS.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Cluster settings. Every node of a cluster must use the same `prefix`, `partitions` and
/// `lease_s`; the partition count is fixed when the cluster is first created.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// NATS server with JetStream, e.g. `nats://127.0.0.1:4222`. Unset: single node.
    pub nats_url: Option<String>,
    /// This node's name, unique in the cluster. Default: host name and process id.
    pub node: Option<String>,
    /// Prefix of every stream, bucket and subject, so several clusters share one NATS.
    pub prefix: String,
    /// Partitions of the device space (fixed at cluster creation).
    pub partitions: u16,
    /// JetStream replicas of the fix log and the buckets (1 on a single NATS server).
    pub replicas: usize,
    /// Lease time: a node silent this long loses its partitions to the others.
    pub lease_s: u64,
    /// Fixes stay in the log at most this long once written, stored or not (a bound on disk
    /// use should PostgreSQL stay away); owners drop what they stored much sooner.
    pub log_max_age_h: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            nats_url: None,
            node: None,
            prefix: "geotrack".into(),
            partitions: 16,
            replicas: 1,
            lease_s: 6,
            log_max_age_h: 72,
        }
    }
}

impl ClusterConfig {
    /// Whether cluster mode is on.
    pub fn enabled(&self) -> bool {
        self.nats_url.is_some()
    }

    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_s.max(1))
    }

    /// The configured node name, or `<host>-<pid>`.
    pub fn node_name(&self) -> String {
        self.node.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "node".into());
            format!("{host}-{}", std::process::id())
        })
    }
}
