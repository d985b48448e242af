//! The lease task: every lease/3 a round renews the held leases, heartbeats, lists the live
//! nodes, asks for the hand-over of partitions that belong to another node now and claims the
//! free ones that belong to this node. Beside the round, in the same task, a timer reports
//! leases lost at their local deadline, so a round stuck on an unreachable NATS cannot delay
//! it; and the task alone sends the queued events, in order.

use std::sync::Arc;

use async_nats::jetstream::kv::{CreateErrorKind, UpdateErrorKind};
use futures_util::TryStreamExt;
use futures_util::future::join_all;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior, timeout};
use tokio_util::sync::CancellationToken;

use super::{Held, Lease, LeaseEvent, Shared, lease_key, owners};
use crate::error::ClusterError;

pub(super) async fn run(shared: Arc<Shared>, events: mpsc::Sender<LeaseEvent>, shutdown: CancellationToken) {
    let rounds = rounds(&shared);
    tokio::pin!(rounds);
    loop {
        send_queued(&shared, &events).await;
        let deadline = shared.state().next_deadline();
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            () = shared.stop.cancelled() => break,
            () = shared.wake.notified() => {}
            () = sleep_until(deadline) => {
                if shared.state().expire(Some(Instant::now())) {
                    tracing::warn!("leases lost: not renewed in time");
                    shared.released.notify_waiters();
                }
            }
            () = &mut rounds => {}
        }
    }
    // Stopped: nothing is renewed any more, so nothing is held. Without waiting on the
    // receiver, which the service may have stopped draining.
    let queued = {
        let mut state = shared.state();
        state.running = false;
        state.expire(None);
        std::mem::take(&mut state.events)
    };
    shared.released.notify_waiters();
    for event in queued {
        let _ = events.try_send(event);
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

async fn send_queued(shared: &Shared, events: &mpsc::Sender<LeaseEvent>) {
    loop {
        let Some(event) = shared.state().events.pop_front() else {
            return;
        };
        // An error means the receiver is gone (the service is stopping): nothing to do.
        let _ = events.send(event).await;
    }
}

/// Rounds, one per tick, forever.
async fn rounds(shared: &Shared) {
    let mut ticks = tokio::time::interval(shared.tick);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        round(shared).await;
    }
}

async fn round(shared: &Shared) {
    let held: Vec<u16> = shared.state().held.keys().copied().collect();
    let renewals = join_all(held.into_iter().map(|partition| renew(shared, partition)));
    let (_, (), live) = tokio::join!(renewals, heartbeat(shared), live_nodes(shared));
    let Some(live) = live else {
        return;
    };
    let claims = rebalance(shared, &live);
    join_all(claims.into_iter().map(|partition| claim(shared, partition))).await;
}

async fn heartbeat(shared: &Shared) {
    let _node = shared.node_key.lock().await;
    if shared.state().draining {
        return;
    }
    let put = shared.nats.nodes.put(&shared.nats.node, "up".into());
    match timeout(shared.tick, put).await {
        Ok(Ok(_)) => shared.contact(),
        Ok(Err(error)) => tracing::warn!(%error, "cannot heartbeat"),
        Err(_) => tracing::warn!("heartbeat timed out"),
    }
}

/// The live nodes, this one included (unless draining: `None` then, as when NATS fails).
async fn live_nodes(shared: &Shared) -> Option<Vec<String>> {
    if shared.state().draining {
        return None;
    }
    // `keys` skips deleted keys (a drained node) and expired entries are gone (a dead one).
    let list = async {
        let keys = shared
            .nats
            .nodes
            .keys()
            .await
            .map_err(|e| ClusterError::nats("list the live nodes", e))?;
        keys.try_collect::<Vec<String>>()
            .await
            .map_err(|e| ClusterError::nats("list the live nodes", e))
    };
    let mut live = match timeout(shared.tick, list).await {
        Ok(Ok(live)) => live,
        Ok(Err(error)) => {
            tracing::warn!(%error, "cannot list the nodes");
            return None;
        }
        Err(_) => {
            tracing::warn!("listing the nodes timed out");
            return None;
        }
    };
    shared.contact();
    // Alive for sure, even if its own heartbeat failed.
    live.push(shared.nats.node.clone());
    // The listing reads the last entry of each key, then whatever is written meanwhile: a
    // heartbeat landing during it lists its node twice.
    live.sort_unstable();
    live.dedup();
    Some(live)
}

/// Queues a `HandOver` for each held lease that now belongs to another node; returns the free
/// partitions (as far as this node knows) that belong to this one.
fn rebalance(shared: &Shared, live: &[String]) -> Vec<u16> {
    let me = Some(shared.nats.node.as_str());
    let mut claims = Vec::new();
    let mut handed_over = Vec::new();
    let mut state = shared.state();
    let state = &mut *state;
    if state.draining {
        return claims;
    }
    let owners = owners(shared.nats.partitions, live);
    for partition in 0..shared.nats.partitions {
        let mine = owners[usize::from(partition)] == me;
        match state.held.get_mut(&partition) {
            Some(held) if !mine && !held.handing_over => {
                held.handing_over = true;
                state.events.push_back(LeaseEvent::HandOver(Lease {
                    partition,
                    epoch: held.epoch,
                }));
                handed_over.push(partition);
            }
            None if mine => claims.push(partition),
            _ => {}
        }
    }
    if !handed_over.is_empty() {
        tracing::info!(partitions = ?handed_over, ?live, "handing partitions over to the live nodes that own them now");
        shared.wake.notify_one();
    }
    claims
}

/// Renews a held lease, unless its deadline passed (it is lost then: the timer reports it).
async fn renew(shared: &Shared, partition: u16) {
    let _key = shared.keys[usize::from(partition)].lock().await;
    let Some(held) = shared.state().held.get(&partition).copied() else {
        return;
    };
    let sent = Instant::now();
    if sent >= held.deadline {
        return;
    }
    let lease = Lease {
        partition,
        epoch: held.epoch,
    };
    let update = shared.kv().update(
        lease_key(partition),
        shared.nats.node.clone().into(),
        held.revision,
    );
    // No point waiting past the deadline: the lease is lost then anyway.
    let result = tokio::time::timeout_at(held.deadline.min(sent + shared.tick), update).await;
    match result {
        Ok(Ok(revision)) => {
            shared.contact();
            if !renewed(shared, lease, revision, sent) {
                // Lost locally while the renewal was in flight: free it for the next owner.
                let delete = shared
                    .kv()
                    .delete_expect_revision(lease_key(partition), Some(revision));
                let _ = timeout(shared.tick, delete).await;
            }
        }
        Ok(Err(error)) if error.kind() == UpdateErrorKind::WrongLastRevision => {
            // Another node owns it now, or the entry expired or was replaced: certain loss.
            shared.contact();
            tracing::warn!(partition, %error, "lease lost");
            shared.forget(lease, Some(LeaseEvent::Lost(lease)));
        }
        // Perhaps only a blip: the lease stays valid until its deadline, and the next round
        // retries before then.
        Ok(Err(error)) => tracing::warn!(partition, %error, "cannot renew a lease"),
        Err(_) => tracing::warn!(partition, "renewing a lease timed out"),
    }
}

/// Records a successful renewal; false if the lease was no longer held.
fn renewed(shared: &Shared, lease: Lease, revision: u64, sent: Instant) -> bool {
    let mut state = shared.state();
    match state.held.get_mut(&lease.partition) {
        Some(held) if held.epoch == lease.epoch => {
            held.revision = revision;
            held.deadline = sent + shared.trusted;
            true
        }
        _ => false,
    }
}

/// Tries to take a partition; fails quietly while another node holds it.
async fn claim(shared: &Shared, partition: u16) {
    let _key = shared.keys[usize::from(partition)].lock().await;
    let sent = Instant::now();
    let create = shared
        .kv()
        .create(lease_key(partition), shared.nats.node.clone().into());
    let epoch = match timeout(shared.tick, create).await {
        Ok(Ok(epoch)) => epoch,
        // Held by another node, or its lease has not expired yet.
        Ok(Err(error)) if error.kind() == CreateErrorKind::AlreadyExists => return,
        Ok(Err(error)) => {
            tracing::warn!(partition, %error, "cannot claim a partition");
            return;
        }
        Err(_) => {
            tracing::warn!(partition, "claiming a partition timed out");
            return;
        }
    };
    shared.contact();
    let lease = Lease { partition, epoch };
    {
        let mut state = shared.state();
        // A drain that began meanwhile hands it over at once.
        let handing_over = state.draining;
        state.held.insert(
            partition,
            Held {
                epoch,
                revision: epoch,
                deadline: sent + shared.trusted,
                handing_over,
            },
        );
        state.events.push_back(LeaseEvent::Acquired(lease));
        if handing_over {
            state.events.push_back(LeaseEvent::HandOver(lease));
        }
    }
    tracing::info!(partition, epoch, "lease acquired");
    shared.wake.notify_one();
}
