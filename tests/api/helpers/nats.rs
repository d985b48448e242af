//! Cluster mode in tests: the local NATS with JetStream, a prefix of the test's own, and the
//! clean-up that deletes the stream and buckets a test created.

use cluster::ClusterConfig;

/// The NATS every machine of this project runs.
pub const NATS_URL: &str = "nats://127.0.0.1:4222";

/// A prefix no other test (or run) uses.
pub fn cluster_prefix(test: &str) -> String {
    format!("t-{test}-{}", std::process::id())
}

/// The `[cluster]` section of a test node.
pub fn cluster_config(prefix: &str, node: &str, partitions: u16, lease_s: u64) -> ClusterConfig {
    ClusterConfig {
        nats_url: Some(NATS_URL.into()),
        node: Some(node.into()),
        prefix: prefix.into(),
        partitions,
        lease_s,
        ..ClusterConfig::default()
    }
}

/// Deletes the stream and buckets of the cluster `prefix` (as `geotrack cluster destroy`).
pub async fn destroy_cluster(prefix: &str, partitions: u16) {
    let config = cluster_config(prefix, "cleanup", partitions, 1);
    cluster::nats::destroy(&config)
        .await
        .expect("NATS objects deleted");
}
