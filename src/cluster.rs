//! Cluster mode wiring (`[cluster] nats_url`): this node's part of the cluster crate's
//! machinery, connected to the pipeline, the evaluators, the live feed and the tile cache.
//!
//! - Ingest appends to the fix log (see `ingest`); the partitions this node owns are stored
//!   through its pipeline and evaluated by its evaluators ([`cluster::owner`]).
//! - Live positions: the evaluators record into an outbound feed whose frames go to every node
//!   over NATS; the feed that `/ws/positions` reads is filled from NATS (this node's frames
//!   included), so every node shows every device.
//! - Erasures: a device erased on one node is removed from every node's live index (dispatch
//!   queries) at once.
//! - `tracks` tiles: each commit's time window goes to every node (coalesced, so a slow NATS
//!   never holds up a writer or loses a window); a node back from a NATS outage drops its
//!   cached `tracks` tiles, since windows sent meanwhile are lost. Fence changes and alerts
//!   travel through PostgreSQL notifications instead (`listen`, `alerts::follower`), which
//!   keeps their commit order.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use cluster::fanout::Fanout;
use cluster::fixlog::FixLog;
use cluster::leases::Leases;
use cluster::nats::Nats;
use cluster::owner::Owner;
use dispatch::SharedLiveIndex;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tiles::{Change, LayerId, TileStore};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracker::live::{Frame, LiveFeed};

const LIVE: &str = "live";
const TRACKS: &str = "tracks";
const ERASED: &str = "erased";

/// This node's membership of the cluster.
#[derive(Debug)]
pub struct Node {
    nats: Nats,
    leases: Leases,
    fanout: Fanout,
    /// Stops the lease task and the partition workers (after drain, or at shutdown).
    stop: CancellationToken,
}

/// What the rest of start-up needs from the cluster.
#[derive(Debug)]
pub struct Parts {
    pub node: Arc<Node>,
    /// Per partition, whether this node owns it (for the evaluators).
    pub ownership: Vec<alerts::evaluator::Ownership>,
    /// Where ingest appends.
    pub log: FixLog,
    /// Where the evaluators record moving devices (fanned out to every node).
    pub outbound: LiveFeed,
    /// Bumped at every NATS reconnection: fan-out sent meanwhile was lost.
    pub reconnections: watch::Receiver<u64>,
}

/// The coalesced time window of `tracks` changes not yet sent to the other nodes.
#[derive(Debug, Default)]
pub struct TracksOut {
    window: Mutex<Option<[i64; 2]>>,
    wake: Notify,
}

impl TracksOut {
    /// Adds a committed batch's fix times (called on the writer task: never waits).
    pub fn record(&self, first_ms: i64, last_ms: i64) {
        let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        *window = Some(match *window {
            Some([a, b]) => [a.min(first_ms), b.max(last_ms)],
            None => [first_ms, last_ms],
        });
        drop(window);
        self.wake.notify_one();
    }

    fn take(&self) -> Option<[i64; 2]> {
        self.window.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

/// A `tracks` change as it travels between nodes.
#[derive(Debug, Serialize, Deserialize)]
struct TracksChange {
    first_ms: i64,
    last_ms: i64,
}

/// Everything [`start`] wires together.
#[derive(Debug)]
pub struct Inputs {
    pub nats: Nats,
    pub pool: PgPool,
    pub pipeline: tracker::Pipeline,
    pub tiles: Arc<TileStore>,
    pub tracks_out: Arc<TracksOut>,
    /// The feed `/ws/positions` reads.
    pub live: LiveFeed,
    /// The live index of the dispatch queries, told of devices erased on other nodes.
    pub live_index: SharedLiveIndex,
    pub live_interval: Duration,
    pub max_waiting_fixes: usize,
}

/// Starts the lease task, the partition workers and the fan-out tasks on `tasks`.
pub async fn start(
    inputs: Inputs,
    tasks: &TaskTracker,
    shutdown: &CancellationToken,
) -> Result<Parts, cluster::ClusterError> {
    let Inputs {
        nats,
        pool,
        pipeline,
        tiles,
        tracks_out,
        live,
        live_index,
        live_interval,
        max_waiting_fixes,
    } = inputs;
    let stop = CancellationToken::new();
    let (senders, ownership): (Vec<_>, Vec<_>) = (0..nats.partitions).map(|_| watch::channel(None)).unzip();
    let (leases, events) = Leases::start(&nats, stop.clone(), tasks);
    let log = FixLog::new(&nats, max_waiting_fixes);
    let owner = Owner {
        nats: nats.clone(),
        pool,
        log: log.clone(),
        pipeline,
        ownership: Arc::new(senders),
    };
    tasks.spawn(owner.run(leases.clone(), events, tasks.clone(), stop.clone()));

    let fanout = Fanout::new(&nats);
    let outbound = LiveFeed::new(4);
    tasks.spawn(outbound.clone().run(live_interval, shutdown.clone()));
    tasks.spawn(send_live(fanout.clone(), outbound.subscribe(), shutdown.clone()));
    let frames = fanout.subscribe::<Vec<tracker::live::LivePosition>>(LIVE).await?;
    tasks.spawn(receive_live(frames, live, shutdown.clone()));
    tasks.spawn(send_tracks(fanout.clone(), tracks_out, shutdown.clone()));
    let erased = fanout.subscribe::<String>(ERASED).await?;
    tasks.spawn(receive_erased(erased, live_index, shutdown.clone()));
    let changes = fanout.subscribe::<TracksChange>(TRACKS).await?;
    tasks.spawn(receive_tracks(
        changes,
        fanout.reconnections(),
        tiles,
        shutdown.clone(),
    ));
    Ok(Parts {
        node: Arc::new(Node {
            nats,
            leases,
            fanout: fanout.clone(),
            stop,
        }),
        ownership,
        log,
        outbound,
        reconnections: fanout.reconnections(),
    })
}

impl Node {
    /// Tells every node that `device` was erased, so their live indexes forget it now rather
    /// than at their next reload (at most once, like all fan-out: the reload is the backstop).
    pub async fn announce_erased(&self, device: &str) {
        self.fanout.publish(ERASED, device).await;
    }

    /// Why this node cannot take its share of the work now, if it cannot.
    pub fn unready(&self) -> Option<String> {
        if !self.nats.connected() {
            Some("NATS is unreachable: ingest is refused until it is back".to_owned())
        } else if !self.leases.healthy() {
            Some("cannot renew partition leases in NATS".to_owned())
        } else {
            None
        }
    }

    /// Hands every partition this node owns over to the others, waiting for each worker to
    /// finish its batch in flight, then stops the lease task and the workers.
    pub async fn drain(&self, timeout: Duration) {
        let held = self.leases.held().len();
        tracing::info!(partitions = held, "handing partitions over to the other nodes");
        self.leases.drain(timeout).await;
        self.stop.cancel();
    }
}

async fn send_live(
    fanout: Fanout,
    mut frames: tokio::sync::broadcast::Receiver<Frame>,
    shutdown: CancellationToken,
) {
    loop {
        let frame = tokio::select! {
            frame = frames.recv() => frame,
            () = shutdown.cancelled() => return,
        };
        match frame {
            Ok(frame) => fanout.publish(LIVE, frame.as_slice()).await,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

async fn receive_live(
    frames: impl futures_util::Stream<Item = Vec<tracker::live::LivePosition>>,
    live: LiveFeed,
    shutdown: CancellationToken,
) {
    tokio::pin!(frames);
    loop {
        tokio::select! {
            frame = frames.next() => match frame {
                Some(frame) => live.send_frame(Arc::new(frame)),
                None => return,
            },
            () = shutdown.cancelled() => return,
        }
    }
}

async fn send_tracks(fanout: Fanout, out: Arc<TracksOut>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = out.wake.notified() => {}
            () = shutdown.cancelled() => return,
        }
        if let Some([first_ms, last_ms]) = out.take() {
            fanout.publish(TRACKS, &TracksChange { first_ms, last_ms }).await;
        }
    }
}

async fn receive_erased(
    devices: impl futures_util::Stream<Item = String>,
    live_index: SharedLiveIndex,
    shutdown: CancellationToken,
) {
    tokio::pin!(devices);
    loop {
        tokio::select! {
            device = devices.next() => match device {
                Some(device) => live_index.remove(&device),
                None => return,
            },
            () = shutdown.cancelled() => return,
        }
    }
}

async fn receive_tracks(
    changes: impl futures_util::Stream<Item = TracksChange>,
    mut reconnections: watch::Receiver<u64>,
    tiles: Arc<TileStore>,
    shutdown: CancellationToken,
) {
    tokio::pin!(changes);
    loop {
        tokio::select! {
            change = changes.next() => match change {
                Some(c) => tiles.cache().invalidate(LayerId::TRACKS, Change::during(c.first_ms, c.last_ms)),
                None => return,
            },
            Ok(()) = reconnections.changed() => {
                tracing::info!("back on NATS: dropping cached tracks tiles, changes sent meanwhile are lost");
                tiles.cache().invalidate_layer(LayerId::TRACKS);
            }
            () = shutdown.cancelled() => return,
        }
    }
}
