//! The node's one alert writer. Every shard's evaluator sends its [`Changes`] here; the writer
//! commits whatever has queued up in one transaction, a single round trip to the database
//! ([`store::commit`]), and only then publishes the alerts on the hub, sorted by id. Commits of
//! alerts are serialised across every process of the database, so ids grow from one commit to
//! the next and a cursor never skips an alert that commits later (concurrent writers could
//! commit 1042 before 1041).
//!
//! In cluster mode each step carries its evaluator's epoch; the commit locks the partitions'
//! ownership rows and refuses to store anything if one of those epochs no longer owns its
//! partition. The writer then leaves out the steps of such epochs (a newer owner evaluates those
//! fixes again from the committed watermark) and commits the rest. There
//! the writer does not publish: every node's hub is fed from the database in commit order
//! ([`crate::follower`]), this node's included.
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
use crate::store::{self, Mark, Merged};

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
    /// Publish committed alerts on the hub (a single node); in cluster mode the follower does.
    pub publish: bool,
}

impl AlertWriter {
    /// Runs until every sender is gone and everything received is committed.
    pub async fn run(mut self) {
        // Names this writer's commits (`alert_commit_marks`).
        let writer = crate::instance_tag();
        let mut commit_id = 0;
        while let Some(first) = self.changes.recv().await {
            commit_id += 1;
            let mut alerts = first.alerts.len();
            let mut steps = vec![first];
            while alerts < MAX_ALERTS_PER_COMMIT {
                match self.changes.try_recv() {
                    Ok(more) => {
                        alerts += more.alerts.len();
                        steps.push(more);
                    }
                    Err(_) => break,
                }
            }
            let mark = Mark {
                writer: &writer,
                commit_id,
            };
            if let Some(alerts) = self.commit(&steps, mark).await {
                self.publish(alerts);
            }
        }
        tracing::debug!("alert writer stopped");
    }

    /// Commits, retrying with backoff; `None` if it gave up (only at shutdown).
    /// A retry first checks whether the failed attempt committed after all (its answer lost
    /// with the connection): then its alerts are read back, never stored twice.
    async fn commit(&self, steps: &[Changes], mark: Mark<'_>) -> Option<Vec<Alert>> {
        let mut backoff = Duration::from_millis(50);
        let mut retry = false;
        loop {
            let started = Instant::now();
            let attempt = if retry {
                match store::committed(&self.pool, mark).await {
                    Ok(Some(alerts)) => {
                        tracing::info!(
                            alerts = alerts.len(),
                            "an alert commit whose answer was lost had committed"
                        );
                        Ok(alerts)
                    }
                    Ok(None) => self.try_commit(steps, mark).await,
                    Err(error) => Err(error),
                }
            } else {
                self.try_commit(steps, mark).await
            };
            retry = true;
            match attempt {
                Ok(alerts) => {
                    self.metrics
                        .commit_seconds
                        .observe(started.elapsed().as_secs_f64());
                    return Some(alerts);
                }
                Err(error) => {
                    self.metrics.commit_errors.inc();
                    if self.shutdown.is_cancelled() {
                        tracing::error!(%error, alerts = steps.iter().map(|s| s.alerts.len()).sum::<usize>(),
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

    /// One commit of `steps`. When an epoch of them was deposed, its steps are left out and the
    /// rest committed.
    async fn try_commit(&self, steps: &[Changes], mark: Mark<'_>) -> Result<Vec<Alert>, sqlx::Error> {
        let mut claims: Vec<(i16, i64)> = steps
            .iter()
            .filter_map(|step| step.epoch.map(|epoch| (step.shard, epoch)))
            .collect();
        claims.sort_unstable();
        claims.dedup();
        let mut merged = Merged::default();
        for step in steps {
            merged.add(step);
        }
        match store::commit(&self.pool, &merged, &claims, &self.webhooks, mark).await {
            Err(error) if tracker::ownership::is_deposed(&error) => {}
            result => return result,
        }
        let owning = store::owning(&self.pool, &claims).await?;
        let mut merged = Merged::default();
        for step in steps {
            match step.epoch {
                Some(epoch) if !owning.contains(&(step.shard, epoch)) => {
                    self.metrics.deposed_steps.inc();
                    tracing::warn!(
                        shard = step.shard,
                        epoch,
                        alerts = step.alerts.len(),
                        "evaluation step dropped: the partition has a newer owner"
                    );
                }
                _ => merged.add(step),
            }
        }
        // Ownership may have changed again meanwhile: then this fails too and is retried.
        store::commit(&self.pool, &merged, &owning, &self.webhooks, mark).await
    }

    /// Counts committed alerts and, on a single node, publishes them on the hub.
    fn publish(&self, alerts: Vec<Alert>) {
        if alerts.is_empty() {
            return;
        }
        let now = chrono::Utc::now();
        for alert in &alerts {
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
        }
        if self.publish {
            self.hub.publish(alerts.into_iter().map(Published::new).collect());
        }
        // Deliveries were queued in the same transaction, if any URL applies.
        self.deliveries.notify_one();
    }
}
