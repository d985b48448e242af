//! Webhook delivery, at least once.
//!
//! The alert writer queues one `webhook_deliveries` row per (alert, URL) in the transaction
//! that stores the alert, so no committed alert can lose its deliveries. This task claims due
//! rows (`FOR UPDATE SKIP LOCKED`, with a lease: a claim whose process dies is retried when the
//! lease runs out), POSTs the alert and records the outcome: delivered, or retried with
//! exponential backoff until `max_attempts`, then given up. Receivers de-duplicate by the
//! `X-Geotrack-Alert-Id` header.
//!
//! Each request is signed ([`signature`]): `X-Geotrack-Signature: v1=<hex
//! HMAC-SHA256(secret, "<t>.<body>")>` with `t` the Unix time in `X-Geotrack-Timestamp`. A
//! receiver recomputes it, compares in constant time and refuses timestamps older than a few
//! minutes, so a captured request cannot be replayed later. Where a webhook may go is the
//! [`Policy`]'s: public addresses only unless the operator allows a network, checked when the
//! URL is written and again on the addresses it resolves to at delivery; redirects are not
//! followed.

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
pub use sign::signature;

use crate::config::WebhooksConfig;
use crate::hub::Published;
use crate::store;

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
        let secret: Arc<[u8]> = Arc::from(secret.as_bytes());
        // The connection goes to an address the policy checked: no redirect is followed (a 302
        // could point anywhere), no proxy from the environment resolves names for us.
        let client = match reqwest::Client::builder()
            .timeout(Duration::from_secs(self.config.timeout_s.max(1)))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(self.policy.resolver())
            .build()
        {
            Ok(client) => client,
            Err(error) => {
                tracing::error!(%error, "cannot build the webhook client; no webhook is delivered");
                return;
            }
        };
        loop {
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
            let outcomes = self.deliver(&client, &secret, claimed).await;
            for (due, outcome) in outcomes {
                if let Err(error) = self.record(&due, outcome).await {
                    tracing::warn!(%error, delivery = due.id, "cannot record a webhook outcome; it will be retried");
                }
            }
        }
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
        client: &reqwest::Client,
        secret: &Arc<[u8]>,
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
            let (client, secret) = (client.clone(), secret.clone());
            let policy = self.policy.clone();
            requests.spawn(async move {
                // Checked again: a URL stored before the policy changed may be refused now.
                let outcome = match (policy.check_url(&due.url), body) {
                    (Err(refused), _) => Err(Failed::Refused(refused.to_string())),
                    (Ok(_), Some(body)) => post(&client, &secret, &due, body).await,
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
                let backoff_ms = self
                    .config
                    .retry_base_ms
                    .saturating_mul(1 << attempts.clamp(1, 20).saturating_sub(1))
                    .min(3_600_000);
                let give_up = matches!(error, Failed::Refused(_))
                    || attempts >= i32::try_from(self.config.max_attempts).unwrap_or(i32::MAX);
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
    Status(reqwest::StatusCode),
    /// The delivery policy refuses the URL: retrying cannot help.
    #[error("{0}")]
    Refused(String),
}

async fn post(client: &reqwest::Client, secret: &[u8], due: &Due, body: bytes::Bytes) -> Result<(), Failed> {
    let timestamp = chrono::Utc::now().timestamp();
    let signature = signature(secret, timestamp, &body);
    let reply = client
        .post(&due.url)
        .header("content-type", "application/json")
        .header("x-geotrack-alert-id", due.alert_id.to_string())
        .header("x-geotrack-timestamp", timestamp.to_string())
        .header("x-geotrack-signature", signature)
        .body(body)
        .send()
        .await
        .map_err(|e| Failed::Request(with_causes(&e)))?;
    if reply.status().is_success() {
        Ok(())
    } else {
        Err(Failed::Status(reply.status()))
    }
}

/// An error with its causes (reqwest's own message only names the URL; a refused address or a
/// policy refusal is in the causes).
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        let more = next.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = next.source();
    }
    text
}
