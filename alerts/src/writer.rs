//! The node's one alert writer. Every shard's evaluator sends its [`Changes`] here; the writer
//! commits whatever has queued up in one transaction and only then publishes the alerts on
//! the hub, sorted by id. Being the only task that inserts alerts, its ids grow from one commit
//! to the next, so subscribers see ids in increasing order and a cursor never skips an alert
//! that commits later (concurrent writers could commit 1042 before 1041).
//!
//! A failed commit is retried with backoff, keeping everything queued behind it. At shutdown,
//! once the evaluators are done, it commits what is left; if the database is gone by then, the
//! changes are dropped, which is safe: their watermark did not commit either, so the next start
//! evaluates the same fixes again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::hub::{AlertHub, Published};
use crate::metrics::{AlertMetrics, KindLabel};
use crate::model::{Alert, Changes};
use crate::store::{self, Merged};

/// Most alerts committed in one transaction (more wait for the next one).
const MAX_ALERTS_PER_COMMIT: usize = 20_000;

/// The task that commits and publishes.
#[derive(Debug)]
pub struct AlertWriter {
    pub pool: PgPool,
    pub changes: mpsc::Receiver<Changes>,
    pub hub: Arc<dyn AlertHub>,
    /// URLs every alert is delivered to.
    pub webhooks: Vec<String>,
    /// Woken after a commit that queued webhook deliveries.
    pub deliveries: Arc<Notify>,
    pub metrics: AlertMetrics,
    /// Cancelled at shutdown: stop retrying a commit that keeps failing.
    pub shutdown: CancellationToken,
}

impl AlertWriter {
    /// Runs until every sender is gone and everything received is committed.
    pub async fn run(mut self) {
        while let Some(first) = self.changes.recv().await {
            let mut merged = Merged::default();
            merged.add(first);
            while merged.alerts.len() < MAX_ALERTS_PER_COMMIT {
                match self.changes.try_recv() {
                    Ok(more) => merged.add(more),
                    Err(_) => break,
                }
            }
            if let Some(alerts) = self.commit(&merged).await {
                self.publish(alerts);
            }
        }
        tracing::debug!("alert writer stopped");
    }

    /// Commits, retrying with backoff; `None` if it gave up (only at shutdown).
    async fn commit(&self, merged: &Merged) -> Option<Vec<Alert>> {
        let mut backoff = Duration::from_millis(50);
        loop {
            let started = Instant::now();
            match self.try_commit(merged).await {
                Ok(alerts) => {
                    self.metrics
                        .commit_seconds
                        .observe(started.elapsed().as_secs_f64());
                    return Some(alerts);
                }
                Err(error) => {
                    self.metrics.commit_errors.inc();
                    if self.shutdown.is_cancelled() {
                        tracing::error!(%error, alerts = merged.alerts.len(),
                            "cannot store alerts at shutdown; they will be evaluated again at the next start");
                        return None;
                    }
                    tracing::error!(%error, retry_in = ?backoff, "cannot store alerts; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = self.shutdown.cancelled() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn try_commit(&self, merged: &Merged) -> Result<Vec<Alert>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let alerts = store::write(&mut tx, merged, &self.webhooks).await?;
        tx.commit().await?;
        Ok(alerts)
    }

    fn publish(&self, alerts: Vec<Alert>) {
        if alerts.is_empty() {
            return;
        }
        let now = chrono::Utc::now();
        let published = alerts
            .into_iter()
            .map(|alert| {
                self.metrics
                    .committed
                    .get_or_create(&KindLabel {
                        kind: alert.event.kind.as_str(),
                    })
                    .inc();
                if let Some(received) = alert.event.received_at {
                    let seconds = (now - received).num_microseconds().unwrap_or(0) as f64 / 1e6;
                    self.metrics.latency_seconds.observe(seconds.max(0.0));
                }
                Published::new(alert)
            })
            .collect();
        self.hub.publish(published);
        // Deliveries were queued in the same transaction, if any URL applies.
        self.deliveries.notify_one();
    }
}
