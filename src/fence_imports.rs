//! Fence imports as jobs, so that no import is ever cut by the request timeout: every import
//! runs as a task of its own (a client that goes away does not stop it). The request waits for
//! it for a while (less than the request timeout) and answers with the result when it is done
//! by then; otherwise, or at once when the client sent `Prefer: respond-async` (RFC 7240), it
//! answers 202 with the URL of the job's status, which counts the features prepared. Two
//! imports run at once at most (each holds its whole document in memory); the last
//! [`KEPT_JOBS`] finished jobs are kept for their status.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{Semaphore, watch};
use tokio_util::task::TaskTracker;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::fence_registry::FenceRegistry;

/// Imports preparing or writing at once.
const RUNNING: usize = 2;
/// Finished jobs whose status is kept.
const KEPT_JOBS: usize = 32;

/// The import jobs of this process.
#[derive(Debug)]
pub struct ImportJobs {
    registry: Arc<FenceRegistry>,
    running: Arc<Semaphore>,
    jobs: Mutex<VecDeque<Arc<Job>>>,
    next_id: AtomicU64,
    /// How long a request waits for its import before answering 202.
    wait: Duration,
    tasks: TaskTracker,
}

/// One import: its progress, then its outcome.
#[derive(Debug)]
pub struct Job {
    id: u64,
    total: usize,
    prepared: Arc<AtomicUsize>,
    started: Instant,
    finished_after: OnceLock<Duration>,
    outcome: watch::Sender<Option<Outcome>>,
}

/// How an import ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The ids of the fences, in feature order.
    Imported(Vec<String>),
    /// Nothing was imported (the error a synchronous import would have answered).
    Failed(ApiError),
}

/// What the request gets: the outcome, or the job still running.
#[derive(Debug)]
pub enum Reply {
    Done(Outcome),
    Running(Arc<Job>),
}

/// A job's status, as `GET /api/v1/fences/imports/{job}` shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Status {
    job: u64,
    /// `running`, `done` or `failed`.
    state: &'static str,
    /// Features in the document.
    total: usize,
    /// Features validated and prepared so far.
    prepared: usize,
    elapsed_s: f64,
    /// Done: the fences' ids in feature order.
    #[serde(skip_serializing_if = "Option::is_none")]
    ids: Option<Vec<String>>,
    /// Failed: the error, as a synchronous import answers it (`invalid` lists bad features).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    error: Option<Value>,
}

impl ImportJobs {
    /// Jobs that write through `registry`; a request waits up to `wait` for its import.
    pub fn new(registry: Arc<FenceRegistry>, wait: Duration, tasks: TaskTracker) -> Self {
        Self {
            registry,
            running: Arc::new(Semaphore::new(RUNNING)),
            jobs: Mutex::new(VecDeque::new()),
            next_id: AtomicU64::new(1),
            wait,
            tasks,
        }
    }

    /// Starts importing `collection`, then waits for it up to the configured time (not at all
    /// when `respond_async`). A 429 when two imports are running already.
    pub async fn start(
        &self,
        collection: Value,
        id_property: Option<String>,
        respond_async: bool,
    ) -> Result<Reply, ApiError> {
        let permit = Arc::clone(&self.running).try_acquire_owned().map_err(|_| {
            let busy = format!("{RUNNING} fence imports are running; retry later");
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "imports_busy", busy).retry_after(5)
        })?;
        let job = Arc::new(Job {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            total: collection["features"].as_array().map_or(0, Vec::len),
            prepared: Arc::new(AtomicUsize::new(0)),
            started: Instant::now(),
            finished_after: OnceLock::new(),
            outcome: watch::Sender::new(None),
        });
        self.keep(&job);
        let (registry, running) = (Arc::clone(&self.registry), Arc::clone(&job));
        self.tasks.spawn(async move {
            let result = registry
                .import(collection, id_property, Arc::clone(&running.prepared))
                .await;
            let outcome = match result {
                Ok(ids) => {
                    tracing::info!(
                        job = running.id,
                        fences = ids.len(),
                        elapsed_ms = running.started.elapsed().as_millis(),
                        "fences imported"
                    );
                    Outcome::Imported(ids)
                }
                Err(error) => {
                    tracing::info!(job = running.id, %error, "fence import refused");
                    Outcome::Failed(ApiError::from(error))
                }
            };
            running.finished_after.get_or_init(|| running.started.elapsed());
            running.outcome.send_replace(Some(outcome));
            drop(permit);
        });
        if respond_async {
            return Ok(Reply::Running(job));
        }
        let mut outcome = job.outcome.subscribe();
        let finished = tokio::time::timeout(self.wait, outcome.wait_for(Option::is_some)).await;
        if let Ok(Ok(done)) = finished
            && let Some(outcome) = &*done
        {
            return Ok(Reply::Done(outcome.clone()));
        }
        Ok(Reply::Running(job))
    }

    /// The status of job `id`, while it is kept.
    pub fn status(&self, id: u64) -> Option<Status> {
        let jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        jobs.iter().find(|j| j.id == id).map(|j| j.status())
    }

    /// Keeps `job`, forgetting the oldest finished ones beyond [`KEPT_JOBS`].
    fn keep(&self, job: &Arc<Job>) {
        let mut jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        jobs.push_back(Arc::clone(job));
        while jobs.len() > KEPT_JOBS + RUNNING {
            match jobs.iter().position(|j| j.outcome.borrow().is_some()) {
                Some(oldest_finished) => jobs.remove(oldest_finished),
                None => break,
            };
        }
    }
}

impl Job {
    /// Where its status is read.
    pub fn status_url(&self) -> String {
        format!("/api/v1/fence-imports/{}", self.id)
    }

    pub fn status(&self) -> Status {
        let outcome = self.outcome.borrow();
        let (state, ids, error) = match &*outcome {
            None => ("running", None, None),
            Some(Outcome::Imported(ids)) => ("done", Some(ids.clone()), None),
            Some(Outcome::Failed(error)) => ("failed", None, Some(error.body())),
        };
        Status {
            job: self.id,
            state,
            total: self.total,
            prepared: self.prepared.load(Ordering::Relaxed),
            elapsed_s: self
                .finished_after
                .get()
                .copied()
                .unwrap_or_else(|| self.started.elapsed())
                .as_secs_f64(),
            ids,
            error,
        }
    }
}
