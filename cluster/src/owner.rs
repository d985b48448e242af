//! What a node does with the partitions it owns: for each lease it holds, a worker claims the
//! partition in PostgreSQL with the lease's epoch (which waits for the previous owner's last
//! transaction and fences every later one of it), reads the partition's fix log from where the
//! previous owner stored up to, and hands the fixes to the node's ingest pipeline, whose shard
//! writer stores them together with the new log position in one fenced transaction. The shard's
//! evaluator is told the epoch, so it evaluates (and commits alerts) only while the partition
//! is owned.
//!
//! Lease events drive the workers: `Acquired` starts one; `Lost` stops evaluation at once and
//! the worker after the batch in flight (its transaction is fenced: it commits only if no newer
//! owner has claimed the partition); `HandOver` stops the worker after the batch in flight,
//! then releases the lease so the next owner starts at once. A failed write (PostgreSQL away)
//! re-reads the log from the stored position after a pause: nothing is acknowledged to the log
//! but what PostgreSQL holds, and the fix log keeps the rest.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracker::ownership::{self, Fence};
use tracker::{Pipeline, SubmitError};

use crate::fixlog::{FixLog, PartitionReader};
use crate::leases::{Lease, LeaseEvent, Leases};
use crate::nats::Nats;

/// How long a worker waits for fixes before checking whether it must stop.
const READ_WAIT: Duration = Duration::from_millis(250);
/// Pause after a failed claim, read or write.
const RETRY: Duration = Duration::from_secs(1);
/// How often stored messages are purged from the log.
const PURGE_EVERY: Duration = Duration::from_secs(5);

/// What partition workers share.
#[derive(Debug, Clone)]
pub struct Owner {
    pub nats: Nats,
    pub pool: PgPool,
    pub log: FixLog,
    /// The node's pipeline, with one shard per partition.
    pub pipeline: Pipeline,
    /// Per partition: the epoch while this node owns it (read by the evaluators).
    pub ownership: std::sync::Arc<Vec<watch::Sender<Option<i64>>>>,
}

impl Owner {
    /// Follows lease events until the channel closes (the lease task stopped) or `shutdown`.
    pub async fn run(
        self,
        leases: Leases,
        mut events: mpsc::Receiver<LeaseEvent>,
        tasks: TaskTracker,
        shutdown: CancellationToken,
    ) {
        // Per partition: how to stop its worker, and what resolves once it has stopped.
        let mut workers: HashMap<u16, (CancellationToken, oneshot::Receiver<()>)> = HashMap::new();
        loop {
            let event = tokio::select! {
                event = events.recv() => event,
                () = shutdown.cancelled() => None,
            };
            let Some(event) = event else { break };
            match event {
                LeaseEvent::Acquired(lease) => {
                    let stop = shutdown.child_token();
                    let (done, stopped) = oneshot::channel();
                    if let Some((old, _)) = workers.insert(lease.partition, (stop.clone(), stopped)) {
                        old.cancel();
                    }
                    tasks.spawn(self.clone().work(lease, stop, done));
                }
                LeaseEvent::Lost(lease) => {
                    tracing::warn!(
                        partition = lease.partition,
                        epoch = lease.epoch,
                        "partition lease lost; stopping its work"
                    );
                    self.clear_owned(lease);
                    if let Some((stop, _)) = workers.remove(&lease.partition) {
                        stop.cancel();
                    }
                }
                LeaseEvent::HandOver(lease) => {
                    let stop = workers.remove(&lease.partition);
                    let (owner, leases) = (self.clone(), leases.clone());
                    tasks.spawn(async move {
                        if let Some((stop, stopped)) = stop {
                            stop.cancel();
                            // Resolves when the worker ends (it drops its end).
                            let _ = stopped.await;
                        }
                        owner.clear_owned(lease);
                        leases.release(lease).await;
                        tracing::info!(partition = lease.partition, "partition handed over");
                    });
                }
            }
        }
        for (stop, _) in workers.values() {
            stop.cancel();
        }
    }

    /// Tells the partition's evaluator it is owned with `epoch`.
    fn set_owned(&self, partition: u16, epoch: i64) {
        if let Some(sender) = self.ownership.get(usize::from(partition)) {
            sender.send_replace(Some(epoch));
        }
    }

    /// Tells the partition's evaluator that the ownership of `lease` ended; leaves a newer
    /// ownership (a worker of a lease acquired since) alone.
    fn clear_owned(&self, lease: Lease) {
        let ended = i64::try_from(lease.epoch).ok();
        if let Some(sender) = self.ownership.get(usize::from(lease.partition)) {
            sender.send_if_modified(|owned| {
                let mine = owned.is_some() && *owned == ended;
                if mine {
                    *owned = None;
                }
                mine
            });
        }
    }

    /// Works on one partition until `stop`; always leaves it marked not owned by this lease.
    /// `done` is dropped when it returns.
    async fn work(self, lease: Lease, stop: CancellationToken, done: oneshot::Sender<()>) {
        let _done = done;
        let partition = lease.partition;
        if let Some((epoch, stored)) = self.claim(lease, &stop).await {
            self.set_owned(partition, epoch);
            tracing::info!(
                partition,
                epoch,
                stored,
                "partition claimed; storing and evaluating its fixes"
            );
            self.store_log(partition, epoch, stored, &stop).await;
        }
        self.clear_owned(lease);
    }

    /// Claims the partition in PostgreSQL, retrying until it succeeds or `stop`; `None` when
    /// stopped or when a newer epoch owns it.
    async fn claim(&self, lease: Lease, stop: &CancellationToken) -> Option<(i64, u64)> {
        let epoch = i64::try_from(lease.epoch).ok()?;
        loop {
            let claimant = ownership::Claimant {
                epoch: lease.epoch,
                node: &self.nats.node,
                log_id: &self.nats.log_id,
            };
            match ownership::claim(&self.pool, lease.partition, claimant).await {
                Ok(Some(stored)) => return Some((epoch, stored)),
                Ok(None) => {
                    tracing::error!(
                        partition = lease.partition,
                        epoch,
                        "the database records a newer owner of this partition than this lease; \
                         leaving it (was the NATS cluster recreated with a database kept?)"
                    );
                    return None;
                }
                Err(error) => {
                    tracing::warn!(partition = lease.partition, %error, "cannot claim the partition; retrying");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(RETRY) => {}
                () = stop.cancelled() => return None,
            }
        }
    }

    /// Reads the partition's log from `stored` and stores it, until `stop` or deposed.
    async fn store_log(&self, partition: u16, epoch: i64, mut stored: u64, stop: &CancellationToken) {
        let mut purged = stored;
        let mut last_purge = Instant::now();
        'reopen: while !stop.is_cancelled() {
            let mut reader = match PartitionReader::open(&self.nats, partition, stored).await {
                Ok(reader) => reader,
                Err(error) => {
                    tracing::warn!(partition, %error, "cannot read the fix log; retrying");
                    pause(stop).await;
                    continue;
                }
            };
            while !stop.is_cancelled() {
                let batch = match reader.next_batch(READ_WAIT).await {
                    Ok(batch) => batch,
                    Err(error) => {
                        tracing::warn!(partition, %error, "fix log read failed; reopening");
                        pause(stop).await;
                        continue 'reopen;
                    }
                };
                if let Some(last) = batch.last_seq {
                    let fence = Fence {
                        epoch,
                        stored_seq: i64::try_from(last).ok(),
                    };
                    match self.pipeline.submit_fenced(batch.fixes, Some(fence)).await {
                        Ok(_) => stored = last,
                        Err(SubmitError::Unavailable(error)) if ownership::is_deposed(&error) => {
                            tracing::warn!(partition, epoch, "partition claimed by a newer owner; stopping");
                            return;
                        }
                        Err(SubmitError::ShuttingDown) => return,
                        Err(error) => {
                            tracing::warn!(partition, %error, "cannot store fixes from the log; reading them again");
                            pause(stop).await;
                            continue 'reopen;
                        }
                    }
                }
                if stored > purged && last_purge.elapsed() >= PURGE_EVERY {
                    last_purge = Instant::now();
                    match self.log.purge_stored(partition, stored).await {
                        Ok(()) => purged = stored,
                        Err(error) => {
                            tracing::warn!(partition, %error, "cannot purge stored fixes from the log");
                        }
                    }
                }
            }
        }
    }
}

async fn pause(stop: &CancellationToken) {
    tokio::select! {
        () = tokio::time::sleep(RETRY) => {}
        () = stop.cancelled() => {}
    }
}
