//! Prometheus metrics of the ingest path, registered into the registry the binary serves at
//! `/metrics`. One value per application (no global recorder), so tests running several
//! servers in one process do not see each other's counts.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProtocolLabel {
    pub protocol: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    pub protocol: &'static str,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShardLabel {
    pub shard: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorKindLabel {
    pub kind: &'static str,
}

/// The kinds of failed batch write: `data` (a fix the database refused; the batch is split to
/// isolate it) and `transient` (the database went away).
pub const WRITE_ERROR_KINDS: [&str; 2] = ["data", "transient"];

/// Counters, gauges and histograms of ingestion.
#[derive(Clone, Debug)]
pub struct IngestMetrics {
    /// Fixes acknowledged to the sender (stored now or already stored), by protocol.
    pub accepted: Family<ProtocolLabel, Counter>,
    /// Fixes refused, by protocol and reason code.
    pub rejected: Family<RejectLabels, Counter>,
    /// Device messages understood but not positions (heartbeats, OwnTracks cards...), by reason.
    pub ignored: Family<RejectLabels, Counter>,
    /// Fixes newly written to history.
    pub stored: Counter,
    /// Fixes that were already in history (same device and time).
    pub duplicates: Counter,
    /// Batches written a second time, by the statement that skips duplicates, because their
    /// `COPY` met a fix already stored (see `writer`).
    pub rewritten_batches: Counter,
    /// Fixes waiting in each shard's queue or being written.
    pub queue_depth: Family<ShardLabel, Gauge>,
    /// Requests turned away because a shard queue stayed full.
    pub queue_full: Counter,
    /// Failed batch writes: `data` (split to isolate a bad fix) or `transient` (database gone).
    pub write_errors: Family<ErrorKindLabel, Counter>,
    /// Fixes per committed batch.
    pub batch_fixes: Histogram,
    /// Seconds from the start of a batch write to its commit.
    pub commit_seconds: Histogram,
}

impl IngestMetrics {
    /// Creates the metrics and registers them under the `geotrack_ingest_` prefix.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            accepted: Family::default(),
            rejected: Family::default(),
            ignored: Family::default(),
            stored: Counter::default(),
            duplicates: Counter::default(),
            rewritten_batches: Counter::default(),
            queue_depth: Family::default(),
            queue_full: Counter::default(),
            write_errors: Family::default(),
            batch_fixes: Histogram::new(exponential_buckets(1.0, 4.0, 9)),
            commit_seconds: Histogram::new(exponential_buckets(0.000_25, 2.0, 16)),
        };
        // Known label sets start at 0, so that a rate over them exists before the first error.
        for kind in WRITE_ERROR_KINDS {
            let _ = metrics.write_errors.get_or_create(&ErrorKindLabel { kind });
        }
        let registry = registry.sub_registry_with_prefix("geotrack_ingest");
        registry.register(
            "fixes_accepted",
            "Fixes acknowledged to the sender",
            metrics.accepted.clone(),
        );
        registry.register(
            "fixes_rejected",
            "Fixes refused, by reason",
            metrics.rejected.clone(),
        );
        registry.register(
            "messages_ignored",
            "Device messages that are not positions, by reason",
            metrics.ignored.clone(),
        );
        registry.register(
            "fixes_stored",
            "Fixes newly written to history",
            metrics.stored.clone(),
        );
        registry.register(
            "fixes_duplicate",
            "Fixes already in history",
            metrics.duplicates.clone(),
        );
        registry.register(
            "batches_rewritten",
            "Batches written again, skipping duplicates, after their COPY met a fix already stored",
            metrics.rewritten_batches.clone(),
        );
        registry.register(
            "queue_depth",
            "Fixes queued or being written, per shard",
            metrics.queue_depth.clone(),
        );
        registry.register(
            "queue_full",
            "Requests refused because a queue stayed full",
            metrics.queue_full.clone(),
        );
        registry.register(
            "write_errors",
            "Failed batch writes by kind",
            metrics.write_errors.clone(),
        );
        registry.register(
            "batch_fixes",
            "Fixes per committed batch",
            metrics.batch_fixes.clone(),
        );
        registry.register(
            "commit_seconds",
            "Batch write time up to commit",
            metrics.commit_seconds.clone(),
        );
        metrics
    }
}
