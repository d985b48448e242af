//! [`Ingest`], the sub-state every position endpoint shares, and its one step: validate each
//! decoded record, check the token may write each device, charge each device's rate limit,
//! hand the good fixes to the pipeline, wait until they are committed, and count accepted and
//! rejected fixes per protocol.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cluster::ClusterError;
use tracker::decode::Records;
use tracker::metrics::{ProtocolLabel, RejectLabels};
use tracker::protocols::osmand::SpeedUnit;
use tracker::{Fix, Pipeline, Rejection, SubmitError, Submitted};

use crate::auth::Principal;
use crate::config::IngestConfig;
use crate::error::ApiError;
use crate::limits::RateLimiter;

/// What ingest routes share.
#[derive(Debug)]
pub struct Ingest {
    pub pipeline: Pipeline,
    /// Cluster mode: requests are acknowledged once their fixes are in the fix log, which the
    /// partitions' owners store through their pipelines.
    pub log: Option<cluster::fixlog::FixLog>,
    /// The time window a fix must fall in.
    pub limits: tracker::Limits,
    pub config: IngestConfig,
    /// Fixes per device.
    pub devices: RateLimiter,
    /// Unit of `speed` on `/osmand` when the request does not say (`?speed_unit=`).
    pub osmand_speed_unit: SpeedUnit,
}

/// Middleware of the ingest routes: while the pipeline is saturated, a request carrying fixes
/// is refused before its body is read and decoded, which under overload would cost the CPU
/// that the writers and PostgreSQL need to drain the queue. A GET without a query carries none
/// (`GET /` is the web map) and always passes.
pub async fn shed(State(ingest): State<Arc<Ingest>>, request: Request, next: Next) -> Response {
    let carries_fixes =
        request.uri().query().is_some() || !matches!(*request.method(), Method::GET | Method::HEAD);
    if carries_fixes && ingest.pipeline.saturated() {
        ingest.pipeline.metrics().queue_full.inc();
        return queue_full(1).into_response();
    }
    next.run(request).await
}

fn queue_full(retry_after_s: u64) -> ApiError {
    ApiError::unavailable(
        "queue_full",
        "the ingest queue is full; nothing was stored, retry later",
        retry_after_s,
    )
}

/// Charges each device for its fixes in this request; the fixes of a device over its limit are
/// rejected (`rate_limited`). When that leaves nothing to store, the request is refused with
/// 429 and the time after which the first device has room again.
fn apply_device_limits(
    devices: &RateLimiter,
    fixes: Vec<Fix>,
    positions: Vec<usize>,
    rejected: &mut Vec<(usize, Rejection)>,
) -> Result<(Vec<Fix>, Vec<usize>), ApiError> {
    let mut per_device: HashMap<&str, usize> = HashMap::new();
    for fix in &fixes {
        *per_device.entry(fix.device.as_str()).or_default() += 1;
    }
    let mut limited: HashMap<String, Duration> = HashMap::new();
    for (device, count) in per_device {
        if let Err(wait) = devices.try_take(device, count as f64) {
            limited.insert(device.to_owned(), wait);
        }
    }
    if limited.is_empty() {
        return Ok((fixes, positions));
    }
    let had_fixes = !fixes.is_empty();
    let mut kept = (Vec::with_capacity(fixes.len()), Vec::with_capacity(fixes.len()));
    for (fix, index) in fixes.into_iter().zip(positions) {
        if let Some(wait) = limited.get(&fix.device) {
            let message = format!(
                "device {:?} is over its rate limit; retry in {} s",
                fix.device,
                wait.as_secs().max(1)
            );
            rejected.push((index, Rejection::new("rate_limited", message)));
        } else {
            kept.0.push(fix);
            kept.1.push(index);
        }
    }
    if had_fixes && kept.0.is_empty() {
        let wait = limited.values().min().copied().unwrap_or_default();
        return Err(ApiError::too_many_requests(
            "every device of this request is over its rate limit; nothing was stored",
            wait.as_secs().max(1),
        ));
    }
    Ok(kept)
}

/// What happened to the records of one request, once the accepted ones are durable.
#[derive(Debug)]
pub struct Outcome {
    pub accepted: usize,
    /// Refused records by their index in the request, in index order.
    pub rejected: Vec<(usize, Rejection)>,
}

impl Ingest {
    /// Validates and stores `records`. Errors are whole-request failures: 403 when the token may
    /// not write one of the devices (nothing stored), 503 when the fixes cannot be made durable now.
    pub async fn store(
        &self,
        principal: &Principal,
        protocol: &'static str,
        records: Records,
    ) -> Result<Outcome, ApiError> {
        let received_at = chrono::Utc::now();
        let mut fixes = Vec::with_capacity(records.len());
        let mut positions = Vec::with_capacity(records.len());
        let mut rejected: Vec<(usize, Rejection)> = Vec::new();
        for (index, record) in records.into_iter().enumerate() {
            match record.and_then(|raw| raw.validate(received_at, &self.limits)) {
                Ok(fix) => {
                    positions.push(index);
                    fixes.push(fix);
                }
                Err(rejection) => rejected.push((index, rejection)),
            }
        }
        if let Some(fix) = fixes.iter().find(|fix| !principal.allows_device(&fix.device)) {
            principal.require_device(&fix.device)?;
        }
        let (fixes, positions) = apply_device_limits(&self.devices, fixes, positions, &mut rejected)?;

        let submitted = self.submit(fixes).await?;
        rejected.extend(submitted.rejected.into_iter().map(|(i, r)| (positions[i], r)));
        rejected.sort_by_key(|(index, _)| *index);
        self.count(protocol, submitted.accepted, &rejected);
        Ok(Outcome {
            accepted: submitted.accepted,
            rejected,
        })
    }

    /// Makes `fixes` durable: in the fix log in cluster mode, else through the pipeline.
    async fn submit(&self, fixes: Vec<Fix>) -> Result<Submitted, ApiError> {
        if let Some(log) = &self.log {
            return match log.append(&fixes).await {
                Ok(()) => Ok(Submitted {
                    accepted: fixes.len(),
                    rejected: Vec::new(),
                }),
                Err(ClusterError::LogFull) => {
                    self.pipeline.metrics().queue_full.inc();
                    Err(queue_full(1))
                }
                Err(error) => {
                    tracing::warn!(%error, fixes = fixes.len(), "fixes refused: the fix log cannot take them");
                    Err(ApiError::unavailable(
                        "log_unavailable",
                        "the cluster's fix log cannot store fixes right now; nothing was acknowledged, retry later",
                        5,
                    ))
                }
            };
        }
        self.pipeline.submit(fixes).await.map_err(|e| match e {
            SubmitError::QueueFull { retry_after } => queue_full(retry_after.as_secs()),
            SubmitError::Unavailable(_) => ApiError::unavailable(
                "database_unavailable",
                "the database cannot store fixes right now; nothing was acknowledged, retry later",
                5,
            ),
            SubmitError::ShuttingDown => {
                ApiError::unavailable("shutting_down", "the server is shutting down", 5)
            }
        })
    }

    /// Counts a request's accepted and rejected fixes.
    fn count(&self, protocol: &'static str, accepted: usize, rejected: &[(usize, Rejection)]) {
        let metrics = self.pipeline.metrics();
        metrics
            .accepted
            .get_or_create(&ProtocolLabel { protocol })
            .inc_by(accepted as u64);
        for (_, rejection) in rejected {
            metrics
                .rejected
                .get_or_create(&RejectLabels {
                    protocol,
                    reason: rejection.code,
                })
                .inc();
        }
    }
}
