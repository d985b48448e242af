//! Fence evaluation, off the request path: one evaluator task per ingest shard, so each
//! device's fixes are evaluated in the order they were stored.
//!
//! Batches arrive from the shard writer once committed ([`tracker::outbox`]). The evaluator runs
//! them through the fence index and the state machines ([`shard_state`]) and sends the alerts,
//! the states they leave and the new watermark to the alert writer, which commits them in one
//! transaction. At start it loads the stored states, then re-reads from `positions` every fix of
//! its shard past the stored watermark (fixes acknowledged but not yet evaluated when the last
//! process died), so a crash anywhere neither loses nor doubles an alert. It also catches up
//! from the database whenever the hand-off missed batches, and when idle (fixes written by
//! another process, such as `geotrack import`).
//!
//! In cluster mode an evaluator works only while its node owns the shard (a partition): it
//! waits for an epoch, starts as above from what the previous owner committed, tags every
//! step with the epoch (the alert writer refuses steps of a deposed epoch), and drops its state
//! when the ownership ends.

mod load;
pub mod shard_state;

use std::time::Duration;

use chrono::Utc;
use sqlx::PgPool;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracker::live::LiveFeed;
use tracker::outbox::{Committed, Delivery, OutboxReceiver};

use crate::SharedIndex;
use crate::config::EvalConfig;
use crate::model::Changes;
use shard_state::ShardState;

/// Fixes read from the database per catch-up query.
const CATCH_UP_PAGE: i64 = 5_000;

/// What an evaluator needs besides its own state.
#[derive(Debug, Clone)]
pub struct Shared {
    pub pool: PgPool,
    pub shards: usize,
    pub index: SharedIndex,
    /// Device groups, as fences' `applies_to` name them.
    pub groups: fences::Groups,
    /// Where evaluation steps go to be committed (the alert writer).
    pub sink: mpsc::Sender<Changes>,
    pub live: LiveFeed,
    pub config: EvalConfig,
    /// Time from a fix's arrival to its evaluation.
    pub lag: prometheus_client::metrics::histogram::Histogram,
    pub shutdown: CancellationToken,
}

/// Cluster mode: the epoch with which this node owns a shard, `None` while it does not.
pub type Ownership = watch::Receiver<Option<i64>>;

/// Handle to the running evaluators.
#[derive(Debug, Clone)]
pub struct Evaluators {
    forget: Vec<mpsc::Sender<String>>,
}

impl Evaluators {
    /// Starts one evaluator per outbox receiver (one per shard, in shard order) on `tasks`.
    /// With `ownership` (cluster mode, one per shard) each works only while its shard is owned.
    pub fn start(
        shared: &Shared,
        outboxes: Vec<OutboxReceiver>,
        ownership: Option<Vec<Ownership>>,
        tasks: &TaskTracker,
    ) -> Self {
        let mut ownership = ownership.map(Vec::into_iter);
        let forget = outboxes
            .into_iter()
            .enumerate()
            .map(|(shard, outbox)| {
                let (tx, rx) = mpsc::channel(64);
                let evaluator = Evaluator {
                    shard: i16::try_from(shard).unwrap_or(i16::MAX),
                    shared: shared.clone(),
                    outbox,
                    forget: rx,
                    state: fresh_state(shared),
                    watermark: 0,
                    behind: true,
                    ownership: ownership.as_mut().and_then(Iterator::next),
                    epoch: None,
                };
                tasks.spawn(evaluator.run());
                tx
            })
            .collect();
        Self { forget }
    }

    /// Makes the evaluator of `device` drop what it knows about it (the device was erased).
    pub async fn forget(&self, device: &str) {
        let shard = tracker::shard::shard_of(device, self.forget.len().max(1));
        if let Some(tx) = self.forget.get(shard) {
            let _ = tx.send(device.to_owned()).await;
        }
    }
}

/// Waits until this node owns the partition; its epoch, and a future that resolves when that
/// ownership ends. `None` at shutdown or when ownership can no longer change.
pub(crate) async fn next_ownership(
    ownership: &mut Ownership,
    shutdown: &CancellationToken,
) -> Option<(Option<i64>, impl std::future::Future<Output = ()> + use<>)> {
    let epoch = tokio::select! {
        owned = ownership.wait_for(Option::is_some) => *owned.ok()?,
        () = shutdown.cancelled() => return None,
    };
    let mut watch = ownership.clone();
    let ended = async move {
        let _ = watch.wait_for(|now| *now != epoch).await;
    };
    Some((epoch, ended))
}

/// A shard's state before anything is loaded.
fn fresh_state(shared: &Shared) -> ShardState {
    ShardState::new(
        shared.config.state.clone(),
        offline_ms(&shared.config),
        shared.groups.clone(),
    )
}

fn offline_ms(config: &EvalConfig) -> Option<i64> {
    config
        .offline_after
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

struct Evaluator {
    shard: i16,
    shared: Shared,
    outbox: OutboxReceiver,
    forget: mpsc::Receiver<String>,
    state: ShardState,
    /// Every fix of the shard up to here is evaluated (in memory; committed in order).
    watermark: i64,
    /// Fixes past the watermark may be in the database only: catch up before using a batch.
    behind: bool,
    /// Cluster mode: whether and with which epoch this node owns the shard.
    ownership: Option<Ownership>,
    /// The epoch of the current ownership (always `None` on a single node).
    epoch: Option<i64>,
}

impl Evaluator {
    async fn run(mut self) {
        let mut generations = self.shared.index.generations();
        // Evaluating against an index that is not loaded yet would miss every fence.
        tokio::select! {
            loaded = generations.wait_for(|g| *g > 0) => if loaded.is_err() { return },
            () = self.shared.shutdown.cancelled() => return,
        }
        generations.mark_unchanged();
        let Some(mut ownership) = self.ownership.take() else {
            self.serve(&mut generations, std::future::pending()).await;
            return;
        };
        loop {
            let Some((epoch, ended)) = next_ownership(&mut ownership, &self.shared.shutdown).await else {
                return;
            };
            self.epoch = epoch;
            if !self.serve(&mut generations, ended).await {
                return;
            }
            tracing::info!(
                shard = self.shard,
                ?epoch,
                "evaluator stopped: the shard has another owner"
            );
            self.state = fresh_state(&self.shared);
        }
    }

    /// Evaluates until `ended` resolves (true) or the evaluator must stop for good (false).
    async fn serve(
        &mut self,
        generations: &mut watch::Receiver<u64>,
        ended: impl std::future::Future<Output = ()>,
    ) -> bool {
        tokio::pin!(ended);
        loop {
            tokio::select! {
                started = self.start() => match started {
                    Ok(()) => break,
                    Err(error) => tracing::warn!(shard = self.shard, %error,
                        "evaluator cannot load its state; retrying in 2 s"),
                },
                () = &mut ended => return true,
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(2)) => {}
                () = &mut ended => return true,
                () = self.shared.shutdown.cancelled() => return false,
            }
        }
        let mut tick = tokio::time::interval(self.shared.config.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let idle = tokio::time::sleep(self.shared.config.idle_poll);
        tokio::pin!(idle);
        loop {
            tokio::select! {
                delivery = self.outbox.recv() => {
                    match delivery {
                        None => break,
                        Some(Delivery::Batch(batch)) => self.on_batch(batch).await,
                        Some(Delivery::CatchUp) => {
                            self.behind = true;
                            self.catch_up().await;
                        }
                    }
                    idle.as_mut().reset(tokio::time::Instant::now() + self.shared.config.idle_poll);
                }
                () = &mut ended => return true,
                changed = generations.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    generations.mark_unchanged();
                    self.reassess().await;
                }
                Some(device) = self.forget.recv() => self.state.forget(&device),
                _ = tick.tick() => self.tick().await,
                () = &mut idle => {
                    self.catch_up().await;
                    idle.as_mut().reset(tokio::time::Instant::now() + self.shared.config.idle_poll);
                }
            }
        }
        tracing::debug!(
            shard = self.shard,
            watermark = self.watermark,
            "evaluator stopped"
        );
        false
    }

    /// Loads the stored state, evaluates what was stored but not evaluated, and re-checks every
    /// device against the current fences (they may have changed while no server ran).
    async fn start(&mut self) -> Result<(), sqlx::Error> {
        let pool = &self.shared.pool;
        let (watermark, devices) = load::shard(pool, self.shard, self.shared.shards).await?;
        self.state = fresh_state(&self.shared);
        self.state.devices = devices;
        self.state.arm_timers(&self.shared.index.read());
        self.watermark = watermark;
        let loaded = self.state.devices.len();
        self.catch_up_from(true).await?;
        self.behind = false;
        self.reassess().await;
        tracing::info!(
            shard = self.shard,
            devices = loaded,
            watermark = self.watermark,
            "evaluator started"
        );
        Ok(())
    }

    async fn on_batch(&mut self, batch: Committed) {
        if batch.max_seq <= self.watermark {
            return;
        }
        if self.behind {
            // The database has this batch too, after whatever was missed before it.
            self.catch_up().await;
            return;
        }
        if let Some(oldest) = batch.fixes.iter().map(|f| f.received_at).min() {
            let lag = (Utc::now() - oldest).num_microseconds().unwrap_or(0) as f64 / 1e6;
            self.shared.lag.observe(lag.max(0.0));
        }
        let mut changes = Changes::new(self.shard, self.epoch);
        self.evaluate(&batch.fixes, &mut changes);
        changes.watermark = Some(batch.max_seq);
        self.watermark = batch.max_seq;
        self.send(changes).await;
    }

    /// Evaluates every fix of the shard past the watermark from the database. On failure the
    /// evaluator stays behind and tries again later; no batch is used meanwhile.
    async fn catch_up(&mut self) {
        match self.catch_up_from(false).await {
            Ok(()) => self.behind = false,
            Err(error) => {
                self.behind = true;
                tracing::warn!(shard = self.shard, %error, "cannot read fixes to evaluate; will retry");
            }
        }
    }

    /// `restarted`: device positions were loaded from the live table, which may be ahead of the
    /// watermark; each device met here gets its last *evaluated* fix from history instead.
    async fn catch_up_from(&mut self, restarted: bool) -> Result<(), sqlx::Error> {
        let mut corrected = std::collections::HashSet::new();
        loop {
            let (fixes, seqs) =
                load::outbox_page(&self.shared.pool, self.shard, self.watermark, CATCH_UP_PAGE).await?;
            let Some(&last_seq) = seqs.last() else {
                return Ok(());
            };
            if restarted {
                let unseen: Vec<&str> = fixes
                    .iter()
                    .map(|f| f.device.as_str())
                    .filter(|d| corrected.insert((*d).to_owned()))
                    .collect();
                let evaluated = load::last_evaluated(&self.shared.pool, &unseen, self.watermark).await?;
                for device in unseen {
                    let last = evaluated.get(device).copied();
                    if let Some(d) = self.state.devices.get_mut(device) {
                        d.last = last;
                    }
                }
            }
            let mut changes = Changes::new(self.shard, self.epoch);
            self.evaluate(&fixes, &mut changes);
            changes.watermark = Some(last_seq);
            self.watermark = last_seq;
            tracing::debug!(
                shard = self.shard,
                fixes = fixes.len(),
                watermark = last_seq,
                "caught up from the database"
            );
            self.send(changes).await;
            if (fixes.len() as i64) < CATCH_UP_PAGE {
                return Ok(());
            }
        }
    }

    fn evaluate(&mut self, fixes: &[tracker::Fix], changes: &mut Changes) {
        let index = self.shared.index.read();
        for fix in fixes {
            if self.state.evaluate(&index, fix, changes) {
                self.shared.live.record(fix);
            }
        }
    }

    /// Dwell and offline alerts that time alone made due.
    async fn tick(&mut self) {
        self.at_now(ShardState::tick).await;
    }

    /// Every device checked against the fences as they are now (after a fence edit).
    async fn reassess(&mut self) {
        self.at_now(ShardState::reassess).await;
    }

    /// Runs a step of the shard state that depends on the clock, and sends what it changed.
    async fn at_now(&mut self, step: fn(&mut ShardState, &fences::FenceIndex, i64, &mut Changes)) {
        let mut changes = Changes::new(self.shard, self.epoch);
        step(
            &mut self.state,
            &self.shared.index.read(),
            Utc::now().timestamp_millis(),
            &mut changes,
        );
        self.send(changes).await;
    }

    async fn send(&self, changes: Changes) {
        if !changes.is_empty() && self.shared.sink.send(changes).await.is_err() {
            tracing::error!(
                shard = self.shard,
                "the alert writer is gone; evaluation results are lost until restart"
            );
        }
    }
}
