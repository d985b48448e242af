//! Periodic upkeep of the position history (`tracker::history`): at start and then every
//! `history.upkeep_interval_s`, weekly partitions are made ahead and, with
//! `history.retention_days`, history older than that is dropped a week at a time. The alert
//! commit marks of processes gone for a week are dropped too.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// `[history]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HistoryConfig {
    /// Keep this many days of position history; 0 keeps it all. Whole weeks are dropped, so up
    /// to a week more is kept.
    pub retention_days: u64,
    /// How often partitions are checked.
    pub upkeep_interval_s: u64,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        Self {
            retention_days: 0,
            upkeep_interval_s: 3_600,
        }
    }
}

/// Runs the upkeep until `shutdown`; `max_age` is how old a fix ingest accepts (partitions
/// exist back to then).
pub async fn run(
    pool: PgPool,
    config: HistoryConfig,
    max_age: chrono::Duration,
    shutdown: CancellationToken,
) {
    let retention = (config.retention_days > 0).then(|| {
        chrono::Duration::days(i64::try_from(config.retention_days).unwrap_or(i64::MAX / 86_400_000))
    });
    let mut every = tokio::time::interval(Duration::from_secs(config.upkeep_interval_s.max(60)));
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let now = chrono::Utc::now();
        match tracker::history::maintain(&pool, now, now - max_age, retention).await {
            Ok(upkeep) if !upkeep.created.is_empty() || !upkeep.dropped.is_empty() || upkeep.deleted > 0 => {
                tracing::info!(created = ?upkeep.created, dropped = ?upkeep.dropped, deleted = upkeep.deleted,
                    "position history partitions kept up");
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "position history upkeep failed; will retry"),
        }
        if let Err(error) = alerts::store::prune_marks(&pool).await {
            tracing::warn!(%error, "cannot prune old alert commit marks; will retry");
        }
    }
}
