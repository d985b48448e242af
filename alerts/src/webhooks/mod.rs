//! Webhook delivery, at least once.
//!
//! The alert writer queues one `webhook_deliveries` row per (alert, URL) in the transaction
//! that stores the alert, so no committed alert can lose its deliveries. This task claims due
//! rows (`FOR UPDATE SKIP LOCKED`, with a lease: a claim whose process dies is retried when the
//! lease runs out), POSTs the alert and records the outcome: delivered, or retried with
//! exponential backoff until `max_attempts`, then given up. Receivers de-duplicate by the
//! `X-Geotrack-Alert-Id` header.
//!
//! Each request is signed: `X-Geotrack-Signature: v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`
//! with `t` the Unix time in `X-Geotrack-Timestamp`. A receiver recomputes it, compares in
//! constant time and refuses timestamps older than a few minutes, so a captured request cannot
//! be replayed later.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::config::WebhooksConfig;
use crate::hub::Published;
use crate::store;

/// Checks that a webhook URL can be delivered to: `http://host[:port]/path`. The service has
/// no TLS client yet, so `https://` receivers need a local forwarding proxy.
pub fn check_url(url: &str) -> Result<(), Error> {
    let refused = |reason: String| Error::WebhookUrl {
        url: url.to_owned(),
        reason,
    };
    let parsed = reqwest::Url::parse(url).map_err(|e| refused(format!("is not a URL: {e}")))?;
    match parsed.scheme() {
        "http" if parsed.host().is_some() => Ok(()),
        "https" => Err(refused(
            "uses https, which is not supported yet (no TLS client is built in); \
             point it at an http:// forwarder"
                .into(),
        )),
        _ => Err(refused("must be http://host/path".into())),
    }
}

/// The signature header value for a body sent at Unix time `timestamp`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut header = String::with_capacity(3 + 2 * digest.len());
    header.push_str("v1=");
    for byte in digest {
        let _ = write!(header, "{byte:02x}");
    }
    header
}

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
    /// Woken when alerts were committed.
    pub wake: Arc<Notify>,
    pub shutdown: CancellationToken,
}

impl Deliverer {
    pub async fn run(self) {
        let Some(secret) = self.config.secret.clone() else {
            return; // No webhook can be configured without a secret (checked at start and on fences).
        };
        let secret: Arc<[u8]> = Arc::from(secret.into_bytes());
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(self.config.timeout_s.max(1)))
            .build()
            .unwrap_or_default();
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
            requests.spawn(async move {
                let outcome = match body {
                    Some(body) => post(&client, &secret, &due, body).await,
                    None => Err(Failed::Erased),
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
                let give_up = attempts >= i32::try_from(self.config.max_attempts).unwrap_or(i32::MAX);
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
        .map_err(|e| Failed::Request(e.to_string()))?;
    if reply.status().is_success() {
        Ok(())
    } else {
        Err(Failed::Status(reply.status()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_covers_timestamp_and_body() {
        // Reference value: printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac secret
        assert_eq!(
            signature(b"secret", 1_700_000_000, br#"{"a":1}"#),
            "v1=49f24e537407743fa4a0242bb63b94b9a47ee99cbbe071ccd8a22550ae411686"
        );
        assert_ne!(
            signature(b"secret", 1_700_000_001, br#"{"a":1}"#),
            signature(b"secret", 1_700_000_000, br#"{"a":1}"#)
        );
    }

    #[test]
    fn only_plain_http_urls_are_accepted() {
        assert!(check_url("http://127.0.0.1:9000/hook").is_ok());
        assert!(
            check_url("https://example.org/hook")
                .expect_err("refused")
                .to_string()
                .contains("https")
        );
        assert!(check_url("ftp://example.org").is_err());
        assert!(check_url("not a url").is_err());
    }
}
