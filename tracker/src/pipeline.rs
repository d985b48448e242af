//! The sharded ingest pipeline: "acknowledged" means "committed".
//!
//! Fixes are routed to a shard by device ([`crate::shard`]), so each device's fixes are written
//! (and later evaluated) in order by exactly one writer task. Each shard has a bounded queue,
//! counted in fixes by a semaphore: a request waits up to `enqueue_wait` for room, then is
//! refused ([`SubmitError::QueueFull`]). Waiting is bounded too: once `max_waiting_fixes` wait
//! for room, a request is refused at once instead of joining them, so the fixes held by the
//! pipeline (queued, in flight or waiting) stay bounded under any load and any number of
//! connections. A writer takes
//! whatever is queued (up to `batch_max_fixes`, lingering a few ms for more when requests have
//! been arriving faster than that, see [`crate::arrivals`]), writes it in one transaction and
//! only then answers the requests in it. A batch that fails because of its
//! data is split in halves until the fix responsible is isolated and rejected alone.
//! Shutdown has two steps: [`Pipeline::flush_now`] (at the signal) makes writers commit at once
//! instead of lingering, while requests already in flight can still queue; [`Pipeline::close`]
//! (once no request is left) stops intake, and the writers flush everything queued and exit.

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::arrivals::Arrivals;
use crate::fix::{Fix, Rejection};
use crate::metrics::{ErrorKindLabel, IngestMetrics, ShardLabel};
use crate::outbox::{Committed, OutboxSender};
use crate::ownership::Fence;
use crate::shard::shard_of;
use crate::writer::{ShardWriter, Stored, is_data_error};

/// Sizing of the pipeline. The shard count must stay fixed for a database: it is stored with
/// every fix and defines evaluation order.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    pub shards: usize,
    /// Fixes each shard may hold queued or in flight.
    pub queue_capacity: usize,
    /// How long a request waits for queue room before it is refused.
    pub enqueue_wait: Duration,
    /// Fixes of all requests waiting for queue room together; beyond it a request is refused
    /// at once.
    pub max_waiting_fixes: usize,
    /// A writer stops adding requests to a batch at this many fixes.
    pub batch_max_fixes: usize,
    /// Batches up to this many fixes are written as one statement, larger ones by `COPY`
    /// (see [`crate::writer`]).
    pub statement_max_fixes: usize,
    /// How long a writer waits for more requests before writing a batch that is not full, when
    /// requests have been arriving faster than that.
    pub batch_linger: Duration,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            shards: 4,
            queue_capacity: 50_000,
            enqueue_wait: Duration::from_secs(2),
            max_waiting_fixes: 50_000,
            batch_max_fixes: 5_000,
            statement_max_fixes: 256,
            batch_linger: Duration::from_millis(2),
        }
    }
}

/// Called by a shard writer with the fixes of every transaction that committed, or may have (a
/// write whose outcome is unknown), before any of them is acknowledged: whoever caches views of
/// history (tiles) learns of a write before its sender does. Runs on the writer task: keep it
/// quick.
pub type CommitHook = Arc<dyn Fn(&[&Fix]) + Send + Sync>;

/// What happened to a submitted set of fixes, once durable.
#[derive(Debug, Default, PartialEq)]
pub struct Submitted {
    /// Fixes now in history (stored by this request or already there).
    pub accepted: usize,
    /// Fixes the database refused, by their index in the submitted vector.
    pub rejected: Vec<(usize, Rejection)>,
}

/// Why fixes could not be made durable now. Nothing was acknowledged; the sender should retry.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("ingest queue is full; retry in {retry_after:?}")]
    QueueFull { retry_after: Duration },
    /// A write failed for a reason other than its data (connection lost, database down); the
    /// error is shared by every request whose fixes were in the failed transaction.
    #[error("the database cannot store fixes right now: {0}")]
    Unavailable(#[source] Arc<sqlx::Error>),
    #[error("the server is shutting down")]
    ShuttingDown,
}

/// Handle to the pipeline; cheap to clone.
#[derive(Debug, Clone)]
pub struct Pipeline {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    shards: Vec<ShardQueue>,
    /// Room for fixes waiting for queue room (`max_waiting_fixes`).
    waiting: Semaphore,
    config: PipelineConfig,
    metrics: IngestMetrics,
    closing: CancellationToken,
    /// Cancelled by `flush_now` or by `closing`: writers stop lingering.
    flushing: CancellationToken,
}

#[derive(Debug)]
struct ShardQueue {
    jobs: mpsc::Sender<Job>,
    room: Arc<Semaphore>,
    depth: prometheus_client::metrics::gauge::Gauge,
}

/// Fixes of one request for one shard, and where to send the outcome.
#[derive(Debug)]
struct Job {
    fixes: Vec<(usize, Fix)>,
    /// Cluster mode: the owner's epoch and the fix log sequence these fixes were read up to.
    fence: Option<Fence>,
    reply: oneshot::Sender<JobOutcome>,
    /// When it was queued: the writer's measure of the arrival rate.
    queued_at: tokio::time::Instant,
    _room: OwnedSemaphorePermit,
}

/// The fixes of a job the database refused, or the write failure that left some unwritten.
type JobOutcome = Result<Vec<(usize, Rejection)>, Arc<sqlx::Error>>;

impl Pipeline {
    /// Starts one writer task per shard on `tasks`. Each writer hands its committed batches to
    /// the outbox sender of its shard, when `outboxes` has one (see [`crate::outbox`]), and
    /// tells `on_commit` of them first.
    pub fn start(
        pool: &PgPool,
        config: PipelineConfig,
        metrics: IngestMetrics,
        outboxes: Vec<OutboxSender>,
        on_commit: Option<&CommitHook>,
        tasks: &TaskTracker,
    ) -> Self {
        let shard_count = config.shards.max(1);
        let mut outboxes = outboxes.into_iter();
        let capacity = config.queue_capacity.max(1);
        let closing = CancellationToken::new();
        let flushing = closing.child_token();
        let shards = (0..shard_count)
            .map(|shard| {
                // Every job holds at least one fix and one permit, so the channel never fills first.
                let (tx, rx) = mpsc::channel(capacity);
                let depth = metrics
                    .queue_depth
                    .get_or_create(&ShardLabel {
                        shard: shard.to_string(),
                    })
                    .clone();
                let writer = Writer {
                    db: ShardWriter::new(shard, pool.clone(), config.statement_max_fixes),
                    outbox: outboxes.next(),
                    on_commit: on_commit.cloned(),
                    jobs: rx,
                    arrivals: Arrivals::new(config.batch_linger),
                    config: config.clone(),
                    metrics: metrics.clone(),
                    depth: depth.clone(),
                    closing: closing.clone(),
                    flushing: flushing.clone(),
                };
                tasks.spawn(writer.run());
                ShardQueue {
                    jobs: tx,
                    room: Arc::new(Semaphore::new(capacity)),
                    depth,
                }
            })
            .collect();
        Self {
            inner: Arc::new(Inner {
                shards,
                waiting: Semaphore::new(config.max_waiting_fixes.max(1)),
                config,
                metrics,
                closing,
                flushing,
            }),
        }
    }

    /// The metrics this pipeline reports to.
    pub fn metrics(&self) -> &IngestMetrics {
        &self.inner.metrics
    }

    /// Fixes queued or being written, over all shards.
    pub fn queued(&self) -> usize {
        self.inner
            .shards
            .iter()
            .map(|s| usize::try_from(s.depth.get()).unwrap_or(0))
            .sum()
    }

    /// Fixes of requests waiting for queue room.
    pub fn waiting(&self) -> usize {
        self.inner.config.max_waiting_fixes.max(1) - self.inner.waiting.available_permits()
    }

    /// Whether the waiting room is nearly full (over 90%): a request arriving now would most
    /// likely be refused after it was read and decoded, so it may be refused before.
    pub fn saturated(&self) -> bool {
        self.inner.waiting.available_permits() < self.inner.config.max_waiting_fixes.max(1).div_ceil(10)
    }

    /// Writers stop waiting for fuller batches and commit what they have (first shutdown step).
    pub fn flush_now(&self) {
        self.inner.flushing.cancel();
    }

    /// Stops intake; writers flush what is queued and exit (await them on the task tracker).
    pub fn close(&self) {
        self.inner.closing.cancel();
    }

    /// Queues `fixes` and returns once every one of them is committed or refused.
    /// Either all fixes are queued or none is.
    pub async fn submit(&self, fixes: Vec<Fix>) -> Result<Submitted, SubmitError> {
        self.submit_fenced(fixes, None).await
    }

    /// Cluster mode: like [`Pipeline::submit`] for the owner of the shard the fixes belong to.
    /// Every transaction holding them checks that `fence.epoch` still owns the shard, and the
    /// last one also stores `fence.stored_seq`, so the fix log is read again from there after a
    /// crash. A deposed owner gets [`SubmitError::Unavailable`] with an error that
    /// [`crate::ownership::is_deposed`] recognises.
    pub async fn submit_fenced(
        &self,
        fixes: Vec<Fix>,
        fence: Option<Fence>,
    ) -> Result<Submitted, SubmitError> {
        if fixes.is_empty() {
            return Ok(Submitted::default());
        }
        if self.inner.closing.is_cancelled() {
            return Err(SubmitError::ShuttingDown);
        }
        let total = fixes.len();
        let shards = &self.inner.shards;
        let mut per_shard: Vec<Vec<(usize, Fix)>> = shards.iter().map(|_| Vec::new()).collect();
        for (index, fix) in fixes.into_iter().enumerate() {
            per_shard[shard_of(&fix.device, shards.len())].push((index, fix));
        }

        let permits = self.reserve_room(&per_shard).await?;
        let mut replies = Vec::new();
        for ((queue, fixes), room) in shards.iter().zip(per_shard).zip(permits) {
            let Some(room) = room else { continue };
            let (reply, outcome) = oneshot::channel();
            queue.depth.inc_by(fixes.len() as i64);
            queue
                .jobs
                .try_send(Job {
                    fixes,
                    fence,
                    reply,
                    queued_at: tokio::time::Instant::now(),
                    _room: room,
                })
                .map_err(|_| SubmitError::ShuttingDown)?;
            replies.push(outcome);
        }

        let mut rejected = Vec::new();
        for outcome in replies {
            match outcome.await {
                Ok(Ok(mut refused)) => rejected.append(&mut refused),
                Ok(Err(error)) => return Err(SubmitError::Unavailable(error)),
                Err(_) => return Err(SubmitError::ShuttingDown),
            }
        }
        rejected.sort_by_key(|(index, _)| *index);
        Ok(Submitted {
            accepted: total - rejected.len(),
            rejected,
        })
    }

    /// Takes queue room for every shard involved, within `enqueue_wait` overall, or none at all;
    /// refuses at once when too many fixes already wait.
    async fn reserve_room(
        &self,
        per_shard: &[Vec<(usize, Fix)>],
    ) -> Result<Vec<Option<OwnedSemaphorePermit>>, SubmitError> {
        let config = &self.inner.config;
        let total: usize = per_shard.iter().map(Vec::len).sum();
        let waiting = u32::try_from(total.min(config.max_waiting_fixes.max(1))).unwrap_or(u32::MAX);
        let Ok(_waiting) = self.inner.waiting.try_acquire_many(waiting) else {
            self.inner.metrics.queue_full.inc();
            return Err(SubmitError::QueueFull {
                retry_after: Duration::from_secs(1),
            });
        };
        let deadline = tokio::time::Instant::now() + config.enqueue_wait;
        let mut permits = Vec::with_capacity(per_shard.len());
        for (queue, fixes) in self.inner.shards.iter().zip(per_shard) {
            if fixes.is_empty() {
                permits.push(None);
                continue;
            }
            // A request larger than the whole queue takes all of it rather than waiting forever.
            let wanted = u32::try_from(fixes.len().min(config.queue_capacity.max(1))).unwrap_or(u32::MAX);
            match tokio::time::timeout_at(deadline, queue.room.clone().acquire_many_owned(wanted)).await {
                Ok(Ok(permit)) => permits.push(Some(permit)),
                Ok(Err(_)) => return Err(SubmitError::ShuttingDown),
                Err(_) => {
                    self.inner.metrics.queue_full.inc();
                    return Err(SubmitError::QueueFull {
                        retry_after: config.enqueue_wait.max(Duration::from_secs(1)),
                    });
                }
            }
        }
        Ok(permits)
    }
}

/// The task that owns one shard's queue and database writer.
struct Writer {
    db: ShardWriter,
    outbox: Option<OutboxSender>,
    on_commit: Option<CommitHook>,
    jobs: mpsc::Receiver<Job>,
    arrivals: Arrivals,
    config: PipelineConfig,
    metrics: IngestMetrics,
    depth: prometheus_client::metrics::gauge::Gauge,
    closing: CancellationToken,
    flushing: CancellationToken,
}

impl Writer {
    async fn run(mut self) {
        if let Err(error) = self.db.warm().await {
            tracing::warn!(%error, "ingest writer cannot open its connection yet; its first batch will");
        }
        loop {
            let first = tokio::select! {
                job = self.jobs.recv() => job,
                () = self.closing.cancelled() => {
                    // Refuse new jobs but keep the ones already queued: they get written below.
                    self.jobs.close();
                    self.jobs.recv().await
                }
            };
            let Some(first) = first else { break };
            let batch = self.gather(first).await;
            self.write(batch).await;
        }
        tracing::debug!("ingest writer flushed and stopped");
    }

    /// Adds queued jobs to `first` until the batch is full or the linger time is over (no
    /// lingering when requests arrive further apart than that).
    async fn gather(&mut self, first: Job) -> Vec<Job> {
        self.arrivals.record(first.queued_at);
        let mut size = first.fixes.len();
        let mut batch = vec![first];
        let linger = self.arrivals.linger();
        let linger_until = tokio::time::Instant::now() + linger;
        while size < self.config.batch_max_fixes {
            let next = match self.jobs.try_recv() {
                Ok(job) => Some(job),
                Err(_) if linger.is_zero() || self.flushing.is_cancelled() => None,
                Err(_) => tokio::select! {
                    job = tokio::time::timeout_at(linger_until, self.jobs.recv()) => job.ok().flatten(),
                    () = self.flushing.cancelled() => None,
                },
            };
            let Some(job) = next else { break };
            self.arrivals.record(job.queued_at);
            size += job.fixes.len();
            batch.push(job);
        }
        batch
    }

    /// Writes a batch, isolating fixes the database refuses, answers every job in it and hands
    /// what committed to the outbox.
    async fn write(&mut self, mut jobs: Vec<Job>) {
        let entries = entries_of(&jobs);
        let BatchOutcome {
            refused,
            failed,
            committed,
        } = self.write_entries(&jobs, &entries).await;
        // Counted before the outbox takes the fixes out of the jobs.
        let sizes: Vec<usize> = jobs.iter().map(|job| job.fixes.len()).collect();
        if let Some(outbox) = &self.outbox {
            offer_committed(outbox, &mut jobs, &entries, committed);
        }
        for (((job, refused), failed), size) in jobs.into_iter().zip(refused).zip(failed).zip(sizes) {
            self.depth.dec_by(size as i64);
            let outcome = failed.map_or(Ok(refused), Err);
            // The sender may have gone away; its fixes are stored all the same.
            let _ = job.reply.send(outcome);
        }
    }

    /// Writes the fixes of `entries` (see [`entries_of`]), one transaction per chunk: the whole
    /// batch first, then, when the database refuses a chunk for its data, each half of it, until
    /// the fix responsible is alone and refused. Chunks are written in queue order.
    async fn write_entries(&mut self, jobs: &[Job], entries: &[(usize, usize)]) -> BatchOutcome {
        let mut outcome = BatchOutcome::new(jobs.len());
        let mut pending: Vec<Range<usize>> = Vec::with_capacity(8);
        pending.push(0..entries.len());
        let fence = batch_fence(jobs);
        while let Some(range) = pending.pop() {
            let chunk = &entries[range.clone()];
            let fixes: Vec<&Fix> = chunk.iter().map(|&(j, i)| &jobs[j].fixes[i].1).collect();
            // The log position moves only with the batch's last chunk, and only when every
            // chunk before it committed or was refused for its data: a fix left unwritten must
            // be read from the log again.
            let last = pending.is_empty() && outcome.failed.iter().all(Option::is_none);
            let fence = fence.map(|f| Fence {
                stored_seq: f.stored_seq.filter(|_| last),
                ..f
            });
            let started = Instant::now();
            match self.write_with_retry(&fixes, fence).await {
                Ok(stored) => {
                    self.record_commit(&fixes, started, &stored);
                    if let Some(max_seq) = stored.max_seq {
                        outcome.committed.push((range, max_seq));
                    }
                }
                Err(error) if is_data_error(&error) => {
                    self.count_error("data");
                    if let [(j, i)] = chunk {
                        let (index, fix) = &jobs[*j].fixes[*i];
                        outcome.refused[*j].push((*index, refusal(fix, &error)));
                    } else {
                        let middle = range.start + range.len() / 2;
                        pending.push(middle..range.end);
                        pending.push(range.start..middle);
                    }
                }
                Err(error) => {
                    if crate::ownership::is_deposed(&error) {
                        // Certainly not committed: nothing to catch up on or invalidate.
                        tracing::warn!(%error, fixes = fixes.len(), "not written: the shard has a newer owner");
                    } else {
                        self.record_unknown_outcome(&fixes, &error);
                    }
                    let error = Arc::new(error);
                    for &(j, _) in chunk {
                        outcome.failed[j].get_or_insert_with(|| error.clone());
                    }
                }
            }
        }
        outcome
    }

    /// Writes `fixes` in one transaction, a second time on a fresh connection when the first
    /// attempt fails for a reason other than the data: the kept connection may have died with a
    /// database restart.
    async fn write_with_retry(
        &mut self,
        fixes: &[&Fix],
        fence: Option<Fence>,
    ) -> Result<Stored, sqlx::Error> {
        let result = self.db.write(fixes, fence).await;
        if result
            .as_ref()
            .is_err_and(|e| !is_data_error(e) && !crate::ownership::is_deposed(e))
        {
            return self.db.write(fixes, fence).await;
        }
        result
    }

    /// A transaction committed: tells the commit hook and counts it.
    fn record_commit(&self, fixes: &[&Fix], started: Instant, stored: &Stored) {
        if let Some(on_commit) = &self.on_commit {
            on_commit(fixes);
        }
        self.metrics
            .commit_seconds
            .observe(started.elapsed().as_secs_f64());
        self.metrics.batch_fixes.observe(fixes.len() as f64);
        self.metrics.stored.inc_by(stored.new);
        self.metrics.duplicates.inc_by(fixes.len() as u64 - stored.new);
        if stored.rewritten {
            self.metrics.rewritten_batches.inc();
        }
    }

    /// A transaction failed for a reason other than its data (its senders will retry). The first
    /// attempt may have committed before its connection died, so the outbox and the commit hook
    /// are told the fixes may be stored.
    fn record_unknown_outcome(&self, fixes: &[&Fix], error: &sqlx::Error) {
        self.count_error("transient");
        if let Some(outbox) = &self.outbox {
            outbox.missed();
        }
        if let Some(on_commit) = &self.on_commit {
            on_commit(fixes);
        }
        tracing::error!(%error, fixes = fixes.len(), "batch write failed; the senders will retry");
    }

    fn count_error(&self, kind: &'static str) {
        self.metrics
            .write_errors
            .get_or_create(&ErrorKindLabel { kind })
            .inc();
    }
}

/// What became of a batch's fixes, per job, once every chunk of it is written.
struct BatchOutcome {
    /// Fixes the database refused, by their index in the submitted vector.
    refused: Vec<Vec<(usize, Rejection)>>,
    /// The first error that left some of the job's fixes unwritten: the job is then not
    /// acknowledged at all, and its sender retries.
    failed: Vec<Option<Arc<sqlx::Error>>>,
    /// (entries range, max seq) of every committed transaction, in commit order.
    committed: Vec<(Range<usize>, i64)>,
}

impl BatchOutcome {
    fn new(jobs: usize) -> Self {
        Self {
            refused: (0..jobs).map(|_| Vec::new()).collect(),
            failed: vec![None; jobs],
            committed: Vec::new(),
        }
    }
}

/// The fence of a batch: the newest epoch of its jobs and the furthest log position (only an
/// owner submits fenced jobs to its shard, so they agree but for a claim renewed meanwhile).
fn batch_fence(jobs: &[Job]) -> Option<Fence> {
    jobs.iter().filter_map(|job| job.fence).reduce(|a, b| Fence {
        epoch: a.epoch.max(b.epoch),
        stored_seq: a.stored_seq.max(b.stored_seq),
    })
}

/// (job, position in job) of every fix of `jobs`, in queue order.
fn entries_of(jobs: &[Job]) -> Vec<(usize, usize)> {
    jobs.iter()
        .enumerate()
        .flat_map(|(j, job)| (0..job.fixes.len()).map(move |i| (j, i)))
        .collect()
}

/// Logs a fix the database refused on its own and returns its rejection.
fn refusal(fix: &Fix, error: &sqlx::Error) -> Rejection {
    tracing::warn!(device = %fix.device, ts = %fix.ts, %error, "database refused a fix");
    Rejection::new(
        "refused_by_database",
        format!("the database refused this fix: {error}"),
    )
}

/// Hands the fixes of every committed transaction to the outbox, in commit order, moving them
/// out of `jobs`.
fn offer_committed(
    outbox: &OutboxSender,
    jobs: &mut [Job],
    entries: &[(usize, usize)],
    committed: Vec<(Range<usize>, i64)>,
) {
    let mut taken: Vec<Vec<Option<Fix>>> = jobs
        .iter_mut()
        .map(|job| {
            std::mem::take(&mut job.fixes)
                .into_iter()
                .map(|(_, fix)| Some(fix))
                .collect()
        })
        .collect();
    for (range, max_seq) in committed {
        let fixes = entries[range]
            .iter()
            .filter_map(|&(j, i)| taken[j][i].take())
            .collect();
        outbox.offer(Committed { max_seq, fixes });
    }
}
