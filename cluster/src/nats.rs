//! The connection to NATS and the JetStream objects of a cluster: the fix log stream and the
//! lease, node and meta buckets, created on first use. The partition count is recorded in the
//! meta bucket by the first node; a node configured with another count refuses to start,
//! since the partition of a device decides which owner evaluates it.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use tokio::sync::watch;

use crate::config::ClusterConfig;
use crate::error::ClusterError;
use crate::names::Names;

/// How long a node waits for NATS at start before giving up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long JetStream keeps a `Nats-Msg-Id` to drop a second copy of the same message.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
const PARTITIONS_KEY: &str = "partitions";

/// A node's handle on its cluster's NATS objects; cheap to clone.
#[derive(Debug, Clone)]
pub struct Nats {
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    pub names: Names,
    /// This node's name.
    pub node: String,
    pub partitions: u16,
    /// Which incarnation of the cluster this is (the creation times of the fix log and of the
    /// lease bucket): a stored log position means nothing in a log created again, whose
    /// sequences start over, and lease epochs start over in a lease bucket created again.
    pub log_id: String,
    pub lease: Duration,
    pub leases: kv::Store,
    pub nodes: kv::Store,
    /// Counts re-established connections (see [`Nats::reconnections`]).
    reconnected: Arc<watch::Sender<u64>>,
}

impl Nats {
    /// Connects (the client then reconnects by itself, forever) and makes sure the stream and
    /// buckets exist with this configuration.
    pub async fn connect(config: &ClusterConfig) -> Result<Self, ClusterError> {
        if config.partitions == 0 || config.partitions > 1024 {
            return Err(ClusterError::Config(format!(
                "cluster.partitions must be 1 to 1024, not {}",
                config.partitions
            )));
        }
        let node = config.node_name();
        // The name is a key of the node bucket, and the lease of a partition holds it.
        let valid_node = (1..=64).contains(&node.len())
            && !node.starts_with('.')
            && !node.ends_with('.')
            && node
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !valid_node {
            return Err(ClusterError::Config(format!(
                "cluster.node {node:?} must be 1 to 64 letters, digits, '-', '_' or '.' (not first or last)"
            )));
        }
        let reconnected = Arc::new(watch::Sender::new(0_u64));
        let events = reconnected.clone();
        let options = async_nats::ConnectOptions::new()
            .name(format!("geotrack {node}"))
            .max_reconnects(None)
            .event_callback(move |event| {
                let events = events.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            tracing::info!("connected to NATS");
                            events.send_modify(|n| *n += 1);
                        }
                        async_nats::Event::Disconnected => {
                            tracing::warn!("disconnected from NATS; reconnecting");
                        }
                        other => tracing::debug!(event = %other, "NATS event"),
                    }
                }
            });
        let (client, names) = open(config, options).await?;
        let js = jetstream::new(client.clone());
        check_partitions(&js, &names, config).await?;
        let log_id = ensure_fix_stream(&js, &names, config).await?;
        let lease = config.lease();
        let leases = ensure_bucket(&js, names.lease_bucket(), lease, config.replicas).await?;
        let leases_created = leases
            .status()
            .await
            .map_err(|e| ClusterError::nats("read the lease bucket", e))?
            .info
            .created
            .unix_timestamp_nanos();
        let log_id = format!("{log_id}-{leases_created}");
        let nodes = ensure_bucket(&js, names.node_bucket(), lease, config.replicas).await?;
        Ok(Self {
            client,
            js,
            names,
            node,
            partitions: config.partitions,
            log_id,
            lease,
            leases,
            nodes,
            reconnected,
        })
    }

    /// Changes each time the connection is re-established after a loss (not at the first
    /// connection): whatever core NATS carried meanwhile was lost.
    pub fn reconnections(&self) -> watch::Receiver<u64> {
        let mut receiver = self.reconnected.subscribe();
        receiver.mark_unchanged();
        receiver
    }

    /// Whether the connection to NATS is up now.
    pub fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Deletes the cluster's stream and buckets (tests, and `geotrack cluster destroy`).
    pub async fn destroy(&self) -> Result<(), ClusterError> {
        delete_all(&self.js, &self.names).await
    }
}

/// Deletes the stream and buckets of the cluster named by `config` (its prefix), whatever
/// partition count it was created with (`geotrack cluster destroy`).
pub async fn destroy(config: &ClusterConfig) -> Result<(), ClusterError> {
    let (client, names) = open(config, async_nats::ConnectOptions::new()).await?;
    delete_all(&jetstream::new(client), &names).await
}

/// Connects to `config.nats_url` with `options` (giving up after [`CONNECT_TIMEOUT`]); returns
/// the client and the names of the cluster `config.prefix`.
async fn open(
    config: &ClusterConfig,
    options: async_nats::ConnectOptions,
) -> Result<(async_nats::Client, Names), ClusterError> {
    let url = config
        .nats_url
        .as_deref()
        .ok_or_else(|| ClusterError::Config("cluster.nats_url is not set".into()))?;
    let names = Names::new(&config.prefix)?;
    let client = options
        .connection_timeout(CONNECT_TIMEOUT)
        .connect(url)
        .await
        .map_err(|e| ClusterError::nats("connect", format!("{url}: {e}")))?;
    Ok((client, names))
}

async fn delete_all(js: &jetstream::Context, names: &Names) -> Result<(), ClusterError> {
    js.delete_stream(names.fix_stream())
        .await
        .map_err(|e| ClusterError::nats("delete the fix log", e))?;
    for bucket in [names.lease_bucket(), names.node_bucket(), names.meta_bucket()] {
        js.delete_key_value(&bucket)
            .await
            .map_err(|e| ClusterError::nats("delete a bucket", e))?;
    }
    Ok(())
}

/// Records the partition count on first use; refuses a node whose count differs.
async fn check_partitions(
    js: &jetstream::Context,
    names: &Names,
    config: &ClusterConfig,
) -> Result<(), ClusterError> {
    let meta = ensure_bucket(js, names.meta_bucket(), Duration::ZERO, config.replicas).await?;
    let mine = config.partitions.to_string();
    if meta.create(PARTITIONS_KEY, mine.clone().into()).await.is_ok() {
        return Ok(());
    }
    let stored = meta
        .get(PARTITIONS_KEY)
        .await
        .map_err(|e| ClusterError::nats("read the partition count", e))?
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .unwrap_or_default();
    if stored == mine {
        Ok(())
    } else {
        Err(ClusterError::Mismatch(format!(
            "cluster {:?} was created with {stored} partitions, this node has cluster.partitions = {mine}",
            names.prefix()
        )))
    }
}

/// Returns the log's id (its creation time, in nanoseconds since the epoch).
async fn ensure_fix_stream(
    js: &jetstream::Context,
    names: &Names,
    config: &ClusterConfig,
) -> Result<String, ClusterError> {
    let stream = js
        .get_or_create_stream(stream::Config {
            name: names.fix_stream(),
            subjects: vec![names.fix_subjects()],
            storage: stream::StorageType::File,
            num_replicas: config.replicas.max(1),
            duplicate_window: DUPLICATE_WINDOW,
            max_age: Duration::from_secs(config.log_max_age_h.max(1) * 3600),
            retention: stream::RetentionPolicy::Limits,
            ..Default::default()
        })
        .await
        .map_err(|e| ClusterError::nats("create the fix log stream", e))?;
    Ok(stream.cached_info().created.unix_timestamp_nanos().to_string())
}

/// A bucket keeping the last value of each key, entries expiring after `max_age` (zero:
/// never).
async fn ensure_bucket(
    js: &jetstream::Context,
    bucket: String,
    max_age: Duration,
    replicas: usize,
) -> Result<kv::Store, ClusterError> {
    if let Ok(store) = js.get_key_value(&bucket).await {
        return Ok(store);
    }
    let created = js
        .create_key_value(kv::Config {
            bucket: bucket.clone(),
            history: 1,
            max_age,
            storage: stream::StorageType::File,
            num_replicas: replicas.max(1),
            ..Default::default()
        })
        .await;
    match created {
        Ok(store) => Ok(store),
        // Another node may have created it meanwhile.
        Err(error) => js
            .get_key_value(&bucket)
            .await
            .map_err(|_| ClusterError::nats("create a bucket", error)),
    }
}
