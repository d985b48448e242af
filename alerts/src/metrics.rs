//! Metrics of evaluation and alerting (prefix `geotrack_alerts_`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

/// The metrics, registered once and shared by the writer and the evaluators.
#[derive(Clone, Debug)]
pub struct AlertMetrics {
    /// Alerts committed, by kind.
    pub committed: Family<KindLabel, Counter>,
    /// Seconds from a fix reaching the server to its alert being published.
    pub latency_seconds: Histogram,
    /// Seconds to commit one group of changes.
    pub commit_seconds: Histogram,
    /// Failed commits (retried).
    pub commit_errors: Counter,
    /// Cluster mode: evaluation steps left out because their partition had a newer owner.
    pub deposed_steps: Counter,
    /// Seconds from a fix reaching the server to its evaluation (per batch, its oldest fix).
    pub evaluation_lag_seconds: Histogram,
    /// Proximity pairs near now (on the node evaluating proximity; 0 elsewhere).
    pub proximity_pairs: Gauge,
    /// Seconds of one proximity step (a frame of moves, or checking every pair).
    pub proximity_step_seconds: Histogram,
    /// Webhook deliveries: delivered, failed attempts (retried) and given up.
    pub webhooks: Family<OutcomeLabel, Counter>,
    /// Webhook deliveries waiting (due or backing off), counted every few seconds.
    pub webhooks_queued: Gauge,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

/// The outcomes of a webhook delivery attempt.
pub const WEBHOOK_OUTCOMES: [&str; 3] = ["delivered", "failed", "given_up"];

impl AlertMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            committed: Family::default(),
            latency_seconds: Histogram::new(exponential_buckets(0.000_5, 2.0, 16)),
            commit_seconds: Histogram::new(exponential_buckets(0.000_25, 2.0, 16)),
            commit_errors: Counter::default(),
            deposed_steps: Counter::default(),
            evaluation_lag_seconds: Histogram::new(exponential_buckets(0.000_5, 2.0, 16)),
            proximity_pairs: Gauge::default(),
            proximity_step_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 18)),
            webhooks: Family::default(),
            webhooks_queued: Gauge::default(),
        };
        for outcome in WEBHOOK_OUTCOMES {
            let _ = metrics.webhooks.get_or_create(&OutcomeLabel { outcome });
        }
        // Every kind from 0, so that a rate exists before its first alert.
        for kind in crate::model::AlertKind::ALL {
            let _ = metrics
                .committed
                .get_or_create(&KindLabel { kind: kind.as_str() });
        }
        let registry = registry.sub_registry_with_prefix("geotrack_alerts");
        registry.register(
            "committed",
            "Alerts committed, by kind",
            metrics.committed.clone(),
        );
        registry.register(
            "latency_seconds",
            "Time from receiving a fix to publishing its alert",
            metrics.latency_seconds.clone(),
        );
        registry.register(
            "commit_seconds",
            "Time to commit a group of evaluation changes",
            metrics.commit_seconds.clone(),
        );
        registry.register(
            "commit_errors",
            "Failed commits (retried)",
            metrics.commit_errors.clone(),
        );
        registry.register(
            "deposed_steps",
            "Evaluation steps left out because their partition had a newer owner (cluster mode)",
            metrics.deposed_steps.clone(),
        );
        registry.register(
            "evaluation_lag_seconds",
            "Time from receiving a fix to evaluating it",
            metrics.evaluation_lag_seconds.clone(),
        );
        registry.register(
            "proximity_pairs",
            "Proximity pairs near now (on the node evaluating proximity)",
            metrics.proximity_pairs.clone(),
        );
        registry.register(
            "webhook_deliveries",
            "Webhook delivery attempts by outcome (delivered, failed and retried, given up)",
            metrics.webhooks.clone(),
        );
        registry.register(
            "webhooks_queued",
            "Webhook deliveries waiting (due or backing off)",
            metrics.webhooks_queued.clone(),
        );
        registry.register(
            "proximity_step_seconds",
            "Time of one proximity step (a frame of moves, or every pair checked)",
            metrics.proximity_step_seconds.clone(),
        );
        metrics
    }
}
