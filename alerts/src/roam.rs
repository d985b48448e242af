//! The roam evaluator: the task that keeps the near pairs of the proximity rules
//! ([`dispatch::roam`]) as devices move, and sends the `near` and `apart` alerts, with the pair
//! states they leave, to the alert writer (committed together, like fence alerts and visits).
//! One per node; in cluster mode it works only on the node owning partition 0, with that
//! ownership's epoch, so the cluster has one at a time and a deposed one commits nothing.
//!
//! It follows the live index's changes: the devices of each frame are examined incrementally;
//! a reload of the index, a change of the rules or of the groups, or falling behind the changes
//! makes it check every pair again. It starts from the stored near pairs, so a restart neither
//! repeats a `near` nor misses an `apart`. Positions come from the live index, which the live
//! feed updates once per interval (`ws.positions_interval_ms`, 1 s by default): a proximity
//! alert follows the fix that caused it by up to that interval. Steps run on the blocking pool.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use dispatch::roam::{self, PairKey, RoamState, RuleSet, Rules, Transition};
use dispatch::{IndexChange, SharedLiveIndex};
use fences::Groups;
use sqlx::PgPool;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracker::live::Frame;

use crate::evaluator::{Ownership, next_ownership};
use crate::metrics::AlertMetrics;
use crate::model::{AlertKind, Changes, Event, NewAlert, Proximity};

/// The partition whose owner evaluates proximity in cluster mode.
const PARTITION: i16 = 0;
/// Transitions sent to the writer per step at most (a reassessment may find many).
const PER_STEP: usize = 5_000;
/// Wait before retrying to read the stored pairs.
const RETRY: Duration = Duration::from_secs(2);

/// What the roam evaluator works with.
#[derive(Debug)]
pub struct Roam {
    pub pool: PgPool,
    pub index: SharedLiveIndex,
    pub rules: Rules,
    pub groups: Groups,
    /// The alert writer.
    pub sink: mpsc::Sender<Changes>,
    pub metrics: AlertMetrics,
    /// Cluster mode: whether this node owns partition 0.
    pub ownership: Option<Ownership>,
    pub shutdown: CancellationToken,
}

/// A step of work.
enum Work {
    Moved(Frame),
    Reassess,
}

impl Roam {
    /// Runs until shutdown.
    pub async fn run(mut self) {
        let Some(mut ownership) = self.ownership.take() else {
            self.serve(None, std::future::pending()).await;
            return;
        };
        loop {
            let Some((epoch, ended)) = next_ownership(&mut ownership, &self.shutdown).await else {
                return;
            };
            if !self.serve(epoch, ended).await {
                return;
            }
            tracing::info!(?epoch, "roam evaluator stopped: partition 0 has another owner");
        }
    }

    /// Evaluates until `ended` resolves (true) or shutdown (false).
    async fn serve(&self, epoch: Option<i64>, ended: impl Future<Output = ()>) -> bool {
        tokio::pin!(ended);
        loop {
            // Subscribed before anything is read: no change falls between the two.
            let mut moves = self.index.changes();
            let mut generations = self.rules.generations();
            let mut state = tokio::select! {
                state = self.load() => state,
                () = &mut ended => return true,
                () = self.shutdown.cancelled() => return false,
            };
            let mut recheck_all = true;
            loop {
                // Before the rules are loaded, every stored pair would look like one of a
                // deleted rule; before the index is, like one of erased devices.
                if recheck_all && self.index.loaded() && self.rules.loaded() {
                    recheck_all = false;
                    match self.step(state, Work::Reassess, epoch).await {
                        Some(kept) => state = kept,
                        None => break,
                    }
                }
                tokio::select! {
                    change = moves.recv() => match change {
                        Ok(IndexChange::Moved(frame)) if !recheck_all => {
                            match self.step(state, Work::Moved(frame), epoch).await {
                                Some(kept) => state = kept,
                                None => break,
                            }
                        }
                        Ok(IndexChange::Moved(_)) => {}
                        Ok(IndexChange::Erased(device)) => state.forget(&device),
                        Ok(IndexChange::Reloaded) => recheck_all = true,
                        Err(RecvError::Lagged(missed)) => {
                            tracing::warn!(missed, "the roam evaluator fell behind the live index; checking every pair");
                            recheck_all = true;
                        }
                        Err(RecvError::Closed) => return false,
                    },
                    rules_changed = generations.changed() => {
                        if rules_changed.is_err() {
                            return false;
                        }
                        recheck_all = true;
                    }
                    () = &mut ended => return true,
                    () = self.shutdown.cancelled() => return false,
                }
            }
        }
    }

    /// The stored near pairs, retrying until the database answers.
    async fn load(&self) -> RoamState {
        loop {
            match roam::store::near_pairs(&self.pool).await {
                Ok(pairs) => {
                    tracing::info!(near = pairs.len(), "roam evaluator started");
                    return RoamState::load(pairs);
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot read the near pairs; retrying in 2 s");
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    }

    /// Runs `work` on the blocking pool and sends what it changed; the state, or `None` if the
    /// step failed (it is then read again from the database).
    async fn step(&self, mut state: RoamState, work: Work, epoch: Option<i64>) -> Option<RoamState> {
        let rules: Arc<RuleSet> = self.rules.snapshot();
        let (groups, index) = (self.groups.clone(), self.index.clone());
        let seconds = self.metrics.proximity_step_seconds.clone();
        let stepped = tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let mut out = Vec::new();
            match work {
                Work::Reassess => roam::state::reassess(&mut state, (&rules, &groups), &index, &mut out),
                Work::Moved(frame) => {
                    let moved: Vec<&str> = frame.iter().map(|p| p.device.as_str()).collect();
                    roam::state::on_moved(&mut state, (&rules, &groups), &index, &moved, &mut out);
                }
            }
            seconds.observe(started.elapsed().as_secs_f64());
            (state, out)
        })
        .await;
        let (state, out) = match stepped {
            Ok(done) => done,
            Err(error) => {
                tracing::error!(%error, "a roam step failed; reading the near pairs again");
                return None;
            }
        };
        self.metrics
            .proximity_pairs
            .set(i64::try_from(state.len()).unwrap_or(i64::MAX));
        for chunk in out.chunks(PER_STEP) {
            let changes = changes_of(chunk, epoch);
            if self.sink.send(changes).await.is_err() {
                tracing::error!("the alert writer is gone; proximity alerts are lost until restart");
            }
        }
        Some(state)
    }
}

/// The alerts and pair states of some transitions, as one step for the writer.
fn changes_of(transitions: &[Transition], epoch: Option<i64>) -> Changes {
    let mut changes = Changes::new(PARTITION, epoch);
    for transition in transitions {
        let (meeting, kind) = match transition {
            Transition::Dropped(key) => {
                changes.pairs.push((key.clone(), None));
                continue;
            }
            Transition::Near(m) => (m, AlertKind::Near),
            Transition::Apart(m) => (m, AlertKind::Apart),
        };
        let PairKey { rule, device, other } = meeting.key.clone();
        let since = (kind == AlertKind::Near).then_some(meeting.ts);
        changes.pairs.push((meeting.key.clone(), since));
        changes.alerts.push(NewAlert {
            event: Event {
                device,
                fence: None,
                fence_name: None,
                kind,
                ts: meeting.ts,
                position: Some(meeting.position),
                speed_mps: None,
                interpolated: false,
                received_at: None,
                proximity: Some(Proximity {
                    rule,
                    other,
                    distance_m: meeting.distance_m,
                }),
            },
            webhooks: Vec::new(),
        });
    }
    changes
}
