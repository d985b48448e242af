//! Partition ownership: which node evaluates and stores each partition, by leases in a
//! JetStream KV bucket, so that at most one node commits a partition's work at a time.
//!
//! Each node writes its name into the node bucket every lease/3; the live nodes are the keys
//! present (entries expire after a lease). The desired owner of a partition is chosen among
//! them by rendezvous hashing with bounded loads ([`owners`]), so every node gets its fair share
//! and a joining or leaving node moves little more than that share. The lease of partition `p` is key `p<p>` of the lease bucket,
//! whose entries also expire after a lease: a node takes it with `create` (the revision that
//! returns is the lease's epoch, which only grows, and fences the owner's writes in
//! PostgreSQL), renews it with `update` on the last revision, and releases it with a delete on
//! that revision so the next owner can take it at once.
//!
//! A held lease is trusted locally only until the last successful renewal was *sent* plus the
//! lease minus a margin: the server cannot have expired it before then. Past that deadline
//! the lease is reported [`LeaseEvent::Lost`] by a timer, whatever the NATS round is doing,
//! and it is never renewed again (a new `create`, with a new epoch, is needed). The loop
//! itself is in `task`.

mod rendezvous;
mod task;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_nats::jetstream::kv;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::nats::Nats;

pub use rendezvous::owners;

/// A partition this node owns, and the epoch that fences its writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub partition: u16,
    pub epoch: u64,
}

/// What the service must do about a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseEvent {
    /// Start working on this partition.
    Acquired(Lease),
    /// Stop at once: the lease expired or another node owns it. Commit nothing more.
    Lost(Lease),
    /// Hand this partition over (rebalancing or drain): finish in-flight work, stop, then call
    /// [`Leases::release`]. The lease is renewed until then (unless it is lost).
    HandOver(Lease),
}

/// This node's leases; a cheap handle on the lease task.
#[derive(Debug, Clone)]
pub struct Leases {
    shared: Arc<Shared>,
}

impl Leases {
    /// Starts the lease task on `tasks`; events arrive on the returned receiver, which the
    /// service must keep draining. The task stops at `shutdown` without releasing anything
    /// (the leases then expire on the server; the ones held are reported lost), or after
    /// [`drain`](Self::drain).
    pub fn start(
        nats: &Nats,
        shutdown: CancellationToken,
        tasks: &TaskTracker,
    ) -> (Self, mpsc::Receiver<LeaseEvent>) {
        // Room for an Acquired, a HandOver and a Lost of every partition at once.
        let (events, receiver) = mpsc::channel(usize::from(nats.partitions) * 3 + 16);
        let shared = Arc::new(Shared {
            nats: nats.clone(),
            tick: nats.lease / 3,
            // A sixth of the lease is kept as margin.
            trusted: nats.lease.saturating_sub(nats.lease / 6),
            state: Mutex::new(State {
                running: true,
                ..State::default()
            }),
            keys: (0..nats.partitions)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            node_key: tokio::sync::Mutex::new(()),
            wake: Notify::new(),
            released: Notify::new(),
            stop: CancellationToken::new(),
        });
        tasks.spawn(task::run(Arc::clone(&shared), events, shutdown));
        (Self { shared }, receiver)
    }

    /// The partitions held now, with their epochs, by partition (those being handed over
    /// included: they are held until released).
    pub fn held(&self) -> Vec<Lease> {
        let state = self.shared.state();
        state
            .held
            .iter()
            .map(|(&partition, held)| Lease {
                partition,
                epoch: held.epoch,
            })
            .collect()
    }

    /// Whether the lease task is running and has reached NATS within the last lease period.
    pub fn healthy(&self) -> bool {
        let state = self.shared.state();
        state.running
            && state
                .last_contact
                .is_some_and(|at| at.elapsed() < self.shared.nats.lease)
    }

    /// The worker of `lease` has stopped (after a `HandOver`): deletes the lease so the next
    /// owner takes it at once, and stops renewing it. Nothing happens if the lease was lost
    /// meanwhile. Should the delete fail, the lease expires by itself.
    pub async fn release(&self, lease: Lease) {
        let shared = &self.shared;
        let Some(key_lock) = shared.keys.get(usize::from(lease.partition)) else {
            return;
        };
        // No renewal of this key can be in flight meanwhile, so the revision read is the last.
        let _key = key_lock.lock().await;
        let Some(held) = shared.held(lease) else {
            return;
        };
        let delete = shared
            .nats
            .leases
            .delete_expect_revision(lease_key(lease.partition), Some(held.revision));
        match tokio::time::timeout(shared.tick, delete).await {
            Ok(Ok(())) => shared.contact(),
            Ok(Err(error)) => {
                tracing::warn!(partition = lease.partition, %error, "cannot release a lease; it will expire");
            }
            Err(_) => {
                tracing::warn!(
                    partition = lease.partition,
                    "releasing a lease timed out; it will expire"
                );
            }
        }
        shared.forget(lease, None);
    }

    /// Graceful shutdown: stops heartbeating (deletes this node's key, so the others stop
    /// counting on it at once), stops claiming, sends `HandOver` for every held lease, and
    /// returns once every one was released, or at `timeout` (the rest are then reported lost
    /// and expire on the server). The lease task stops.
    pub async fn drain(&self, timeout: Duration) {
        let shared = &self.shared;
        let until = Instant::now() + timeout;
        shared.state().start_draining();
        shared.wake.notify_one();
        {
            // A heartbeat in flight would bring the key back after this delete; it holds this.
            let _node = shared.node_key.lock().await;
            let delete = shared.nats.nodes.delete(&shared.nats.node);
            match tokio::time::timeout_at(until, delete).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::warn!(%error, "cannot delete this node's key"),
                Err(_) => tracing::warn!("deleting this node's key timed out"),
            }
        }
        loop {
            let released = shared.released.notified();
            tokio::pin!(released);
            // Registered before the check, so a release in between is not missed.
            released.as_mut().enable();
            if shared.state().held.is_empty() {
                break;
            }
            if tokio::time::timeout_at(until, released).await.is_err() {
                tracing::warn!("drain timed out; the leases not released will expire");
                break;
            }
        }
        // The task reports what is left as lost, and ends.
        shared.stop.cancel();
    }
}

/// The key of a partition's lease.
fn lease_key(partition: u16) -> String {
    format!("p{partition}")
}

/// What the handles and the lease task share.
#[derive(Debug)]
struct Shared {
    nats: Nats,
    /// Time between rounds (lease/3), and the longest wait for one NATS request.
    tick: Duration,
    /// How long a lease is trusted after its last renewal was sent: the lease minus a margin
    /// for clock rates and the time a renewal takes to be stored.
    trusted: Duration,
    state: Mutex<State>,
    /// One lock per partition, held by every NATS request on its lease key, so a renewal and
    /// a release never race on the revision.
    keys: Vec<tokio::sync::Mutex<()>>,
    /// Held while writing or deleting this node's key.
    node_key: tokio::sync::Mutex<()>,
    /// Wakes the task: events are queued or deadlines changed.
    wake: Notify,
    /// Wakes [`Leases::drain`]: a lease was released or lost.
    released: Notify,
    /// Stops the task after a drain (the service's shutdown token stops it too).
    stop: CancellationToken,
}

#[derive(Debug, Default)]
struct State {
    held: BTreeMap<u16, Held>,
    /// Events in the order of the changes they report, sent by the task alone.
    events: VecDeque<LeaseEvent>,
    draining: bool,
    running: bool,
    last_contact: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
struct Held {
    epoch: u64,
    /// The last revision written, which the next renewal or the release expects.
    revision: u64,
    /// Until when the lease is trusted: the last successful renewal's send time, plus the lease
    /// minus the margin.
    deadline: Instant,
    handing_over: bool,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves consistent data: every change is
        // made in one step.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn kv(&self) -> &kv::Store {
        &self.nats.leases
    }

    /// The held lease `lease` (same epoch), if it is still held.
    fn held(&self, lease: Lease) -> Option<Held> {
        let state = self.state();
        state
            .held
            .get(&lease.partition)
            .copied()
            .filter(|held| held.epoch == lease.epoch)
    }

    fn contact(&self) {
        self.state().last_contact = Some(Instant::now());
    }

    /// Drops `lease` if still held, reporting `event` (none after a release).
    fn forget(&self, lease: Lease, event: Option<LeaseEvent>) {
        {
            let mut state = self.state();
            let held = state.held.get(&lease.partition);
            if held.is_none_or(|held| held.epoch != lease.epoch) {
                return;
            }
            state.held.remove(&lease.partition);
            state.events.extend(event);
        }
        self.wake.notify_one();
        self.released.notify_waiters();
    }
}

impl State {
    fn start_draining(&mut self) {
        self.draining = true;
        for (&partition, held) in &mut self.held {
            if !held.handing_over {
                held.handing_over = true;
                self.events.push_back(LeaseEvent::HandOver(Lease {
                    partition,
                    epoch: held.epoch,
                }));
            }
        }
    }

    /// Reports as lost every lease whose deadline is at or before `now` (all with `None`).
    fn expire(&mut self, now: Option<Instant>) -> bool {
        let before = self.held.len();
        let events = &mut self.events;
        self.held.retain(|&partition, held| {
            let keep = now.is_some_and(|now| held.deadline > now);
            if !keep {
                events.push_back(LeaseEvent::Lost(Lease {
                    partition,
                    epoch: held.epoch,
                }));
            }
            keep
        });
        self.held.len() != before
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.held.values().map(|held| held.deadline).min()
    }
}
