//! Webhook delivery, at least once.
//!
//! The alert writer queues one `webhook_deliveries` row per (alert, URL) in the transaction
//! that stores the alert, so no committed alert can lose its deliveries. This task claims due
//! rows (`FOR UPDATE SKIP LOCKED`, with a lease: a claim whose process dies is retried when the
//! lease runs out), POSTs the alert and records the outcome: delivered, or retried with
//! exponential backoff until `max_attempts`, then given up. Receivers de-duplicate by the
//! `X-Geotrack-Alert-Id` header.
//!
//! Each request is signed twice ([`sign`]): `X-Geotrack-Signature: v1=<hex
//! HMAC-SHA256(secret, "<t>.<body>")>` with `t` the Unix time in `X-Geotrack-Timestamp`, and
//! the Standard Webhooks headers (`webhook-id`, `webhook-timestamp`, `webhook-signature`) that
//! stock libraries verify. A receiver recomputes one, compares in constant time and refuses
//! timestamps older than a few minutes, so a captured request cannot be replayed later. Where a
//! webhook may go is the [`Policy`]'s: public addresses only unless the operator allows a
//! network, checked when the URL is written and again on the addresses it resolves to at
//! delivery; redirects are not followed; `https://` receivers are verified ([`client`]).
//! Retries back off exponentially with jitter, so receivers that failed together are not
//! retried together.

pub mod client;
mod policy;
mod sign;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use policy::Policy;
pub use sign::{signature, standard_key, standard_signature};

use crate::config::WebhooksConfig;
use crate::hub::Published;
use crate::metrics::{AlertMetrics, OutcomeLabel};
use crate::store;

/// How often the queued deliveries are counted for the metric.
const QUEUE_COUNT_EVERY: Duration = Duration::from_secs(5);

/// A claimed delivery.
#[derive(Debug, sqlx::FromRow)]
struct Due {
    id: i64,
    alert_id: i64,
    url: String,
    attempts: i32,
}

/// The delivery task.
#[derive(Debug)]
pub struct Deliverer {
    pub pool: PgPool,
    pub metrics: AlertMetrics,
    pub config: WebhooksConfig,
    /// Where deliveries may go.
    pub policy: Arc<Policy>,
    /// Woken when alerts were committed.
    pub wake: Arc<Notify>,
    pub shutdown: CancellationToken,
}

impl Deliverer {
    pub async fn run(self) {
        let Some(secret) = self.config.secret() else {
            return; // No webhook can be configured without a secret (checked at start and on fences).
        };
        let keys = Keys {
            geotrack: Arc::from(secret.as_bytes()),
            standard: Arc::from(standard_key(secret)),
        };
        let client = match client::Client::new(&self.config, self.policy.clone()) {
            Ok(client) => client,
            Err(error) => {
                tracing::error!(%error, "no webhook is delivered");
                return;
            }
        };
        let mut counted_at: Option<std::time::Instant> = None;
        loop {
            if counted_at.is_none_or(|at| at.elapsed() >= QUEUE_COUNT_EVERY) {
                self.count_queued().await;
                counted_at = Some(std::time::Instant::now());
            }
            let claimed = match self.claim().await {
                Ok(claimed) => claimed,
                Err(error) => {
                    tracing::warn!(%error, "cannot read webhook deliveries; retrying in 2 s");
                    if self.pause(Duration::from_secs(2)).await {
                        return;
                    }
                    continue;
                }
            };
            if claimed.is_empty() {
                // Woken by new alerts, or in a second for retries falling due.
                if self.pause(Duration::from_secs(1)).await {
                    return;
                }
                continue;
            }
            let outcomes = self.deliver(&client, &keys, claimed).await;
            for (due, outcome) in outcomes {
                if let Err(error) = self.record(&due, outcome).await {
                    tracing::warn!(%error, delivery = due.id, "cannot record a webhook outcome; it will be retried");
                }
            }
        }
    }

    /// Sets the queued gauge (a count over the partial index of deliveries not done).
    async fn count_queued(&self) {
        let queued: Result<i64, sqlx::Error> = sqlx::query_scalar(
            "SELECT count(*) FROM webhook_deliveries WHERE delivered_at IS NULL AND failed_at IS NULL",
        )
        .fetch_one(&self.pool)
        .await;
        match queued {
            Ok(queued) => {
                self.metrics.webhooks_queued.set(queued);
            }
            Err(error) => tracing::debug!(%error, "cannot count queued webhook deliveries"),
        }
    }

    fn count(&self, outcome: &'static str) {
        self.metrics
            .webhooks
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    /// Waits for a wake-up or `timeout`; true at shutdown.
    async fn pause(&self, timeout: Duration) -> bool {
        tokio::select! {
            () = self.wake.notified() => false,
            () = tokio::time::sleep(timeout) => false,
            () = self.shutdown.cancelled() => true,
        }
    }

    async fn claim(&self) -> Result<Vec<Due>, sqlx::Error> {
        let lease_s = (self.config.timeout_s * 2 + 5) as f64;
        sqlx::query_as(
            "UPDATE webhook_deliveries d SET next_attempt_at = now() + make_interval(secs => $2)
             FROM (SELECT id FROM webhook_deliveries
                   WHERE delivered_at IS NULL AND failed_at IS NULL AND next_attempt_at <= now()
                   ORDER BY next_attempt_at, id LIMIT $1 FOR UPDATE SKIP LOCKED) due
             WHERE d.id = due.id
             RETURNING d.id, d.alert_id, d.url, d.attempts",
        )
        .bind(i64::try_from(self.config.concurrency.max(1)).unwrap_or(8))
        .bind(lease_s)
        .fetch_all(&self.pool)
        .await
    }

    /// POSTs every claimed delivery concurrently; returns each with its outcome.
    async fn deliver(
        &self,
        client: &client::Client,
        keys: &Keys,
        claimed: Vec<Due>,
    ) -> Vec<(Due, Result<(), Failed>)> {
        let ids: Vec<i64> = claimed.iter().map(|d| d.alert_id).collect();
        let bodies: HashMap<i64, bytes::Bytes> = match store::by_ids(&self.pool, &ids).await {
            Ok(alerts) => alerts
                .into_iter()
                .map(|a| (a.id, Published::new(a).message.clone()))
                .collect(),
            Err(error) => {
                let reason = Failed::Unreadable(error.to_string());
                return claimed.into_iter().map(|d| (d, Err(reason.clone()))).collect();
            }
        };
        let mut requests = JoinSet::new();
        for due in claimed {
            let body = bodies.get(&due.alert_id).cloned();
            let (client, keys) = (client.clone(), keys.clone());
            let policy = self.policy.clone();
            requests.spawn(async move {
                // Checked again: a URL stored before the policy changed may be refused now.
                let outcome = match (policy.check_url(&due.url), body) {
                    (Err(refused), _) => Err(Failed::Refused(refused.to_string())),
                    (Ok(url), Some(body)) => post(&client, &keys, (&due, &url), body).await,
                    (Ok(_), None) => Err(Failed::Erased),
                };
                (due, outcome)
            });
        }
        let mut outcomes = Vec::new();
        while let Some(done) = requests.join_next().await {
            if let Ok(outcome) = done {
                outcomes.push(outcome);
            }
        }
        outcomes
    }

    async fn record(&self, due: &Due, outcome: Result<(), Failed>) -> Result<(), sqlx::Error> {
        match outcome {
            Ok(()) => {
                self.count("delivered");
                sqlx::query(
                    "UPDATE webhook_deliveries SET delivered_at = now(), attempts = attempts + 1, last_error = NULL
                     WHERE id = $1",
                )
                .bind(due.id)
                .execute(&self.pool)
                .await?;
            }
            Err(error) => {
                let attempts = due.attempts + 1;
                let backoff_ms = jittered(
                    self.config
                        .retry_base_ms
                        .saturating_mul(1 << attempts.clamp(1, 20).saturating_sub(1))
                        .min(3_600_000),
                    (due.id, attempts),
                );
                let give_up = matches!(error, Failed::Refused(_))
                    || attempts >= i32::try_from(self.config.max_attempts).unwrap_or(i32::MAX);
                self.count(if give_up { "given_up" } else { "failed" });
                if give_up {
                    tracing::warn!(delivery = due.id, url = %due.url, %error, attempts, "webhook delivery given up");
                } else {
                    tracing::info!(delivery = due.id, url = %due.url, %error, attempts, "webhook delivery failed; will retry");
                }
                sqlx::query(
                    "UPDATE webhook_deliveries SET attempts = $2, last_error = $3,
                         next_attempt_at = now() + make_interval(secs => $4),
                         failed_at = CASE WHEN $5 THEN now() END
                     WHERE id = $1",
                )
                .bind(due.id)
                .bind(attempts)
                .bind(error.to_string())
                .bind(backoff_ms as f64 / 1_000.0)
                .bind(give_up)
                .execute(&self.pool)
                .await?;
            }
        }
        Ok(())
    }
}

/// Why one delivery attempt failed (kept in `webhook_deliveries.last_error`).
#[derive(Debug, Clone, thiserror::Error)]
enum Failed {
    #[error("cannot read the alert: {0}")]
    Unreadable(String),
    #[error("the alert was erased")]
    Erased,
    #[error("request failed: {0}")]
    Request(String),
    #[error("the receiver answered {0}")]
    Status(hyper::StatusCode),
    /// The delivery policy refuses the URL: retrying cannot help.
    #[error("{0}")]
    Refused(String),
}

/// The signing keys: the secret's bytes, and its Standard Webhooks key.
#[derive(Debug, Clone)]
struct Keys {
    geotrack: Arc<[u8]>,
    standard: Arc<[u8]>,
}

/// Half of `backoff_ms` plus a random share of the other half (the same for the same `seed` in
/// this process only).
fn jittered(backoff_ms: u64, seed: impl std::hash::Hash) -> u64 {
    use std::hash::BuildHasher as _;
    static RANDOM: std::sync::LazyLock<std::collections::hash_map::RandomState> =
        std::sync::LazyLock::new(std::collections::hash_map::RandomState::new);
    let half = backoff_ms / 2;
    half + RANDOM.hash_one(seed) % (backoff_ms - half + 1)
}

async fn post(
    client: &client::Client,
    keys: &Keys,
    (due, url): (&Due, &url::Url),
    body: bytes::Bytes,
) -> Result<(), Failed> {
    let timestamp = chrono::Utc::now().timestamp();
    let id = due.alert_id.to_string();
    let headers = [
        ("x-geotrack-alert-id", id.clone()),
        ("x-geotrack-timestamp", timestamp.to_string()),
        (
            "x-geotrack-signature",
            signature(&keys.geotrack, timestamp, &body),
        ),
        ("webhook-id", id.clone()),
        ("webhook-timestamp", timestamp.to_string()),
        (
            "webhook-signature",
            standard_signature(&keys.standard, &id, timestamp, &body),
        ),
    ];
    let status = client.post(url, &headers, body).await.map_err(Failed::Request)?;
    if status.is_success() {
        Ok(())
    } else {
        Err(Failed::Status(status))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn jitter_keeps_at_least_half_the_backoff_and_spreads_the_rest() {
        let waits: Vec<u64> = (0..200).map(|id| super::jittered(10_000, (id, 3))).collect();
        assert!(waits.iter().all(|w| (5_000..=10_000).contains(w)), "{waits:?}");
        let distinct: std::collections::HashSet<_> = waits.iter().collect();
        assert!(distinct.len() > 150, "spread: {} distinct waits", distinct.len());
        assert_eq!(super::jittered(0, 1), 0);
    }
}
