//! Keeping the live index current: load every device's live position from the database, then
//! apply the live feed's frames (the newest position of each device that moved, once per
//! interval: in cluster mode the frames of every node). The index is reloaded whole when it
//! may have missed frames (the feed lagged, or NATS reconnected in cluster mode) and every
//! `resync` anyway, which also drops devices erased on other nodes.
//!
//! The subscription to the feed is taken before the table is read, so a frame made while the
//! table is read is applied after the load; positions never go back in time, so replaying a
//! frame older than the load is harmless.

use std::future::pending;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracker::live::LiveFeed;

use crate::index::LiveIndex;
use crate::shared::SharedLiveIndex;

/// Wait before retrying a load that failed (the database is down).
const RETRY: Duration = Duration::from_secs(2);

/// What keeps the index current.
#[derive(Debug)]
pub struct Sync {
    pub index: SharedLiveIndex,
    /// The feed of moved devices (every node's, in cluster mode).
    pub feed: LiveFeed,
    pub pool: PgPool,
    /// Time between full reloads.
    pub resync: Duration,
    /// Cluster mode: bumped at every NATS reconnection (frames sent meanwhile are lost).
    pub reconnections: Option<watch::Receiver<u64>>,
}

impl Sync {
    /// Loads and follows until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        loop {
            let mut frames = self.feed.subscribe();
            if !self.load(&shutdown).await {
                return;
            }
            let reload_at = tokio::time::Instant::now() + self.resync;
            loop {
                tokio::select! {
                    frame = frames.recv() => match frame {
                        Ok(frame) => self.index.apply(&frame),
                        Err(RecvError::Lagged(missed)) => {
                            tracing::warn!(missed, "the live index fell behind the live feed; reloading it");
                            break;
                        }
                        Err(RecvError::Closed) => return,
                    },
                    () = tokio::time::sleep_until(reload_at) => break,
                    () = reconnected(&mut self.reconnections) => {
                        tracing::info!("NATS reconnected: reloading the live index, frames may have been lost");
                        break;
                    }
                    () = shutdown.cancelled() => return,
                }
            }
        }
    }

    /// Reads every live position into a new index, retrying until it works; false at shutdown.
    async fn load(&self, shutdown: &CancellationToken) -> bool {
        loop {
            self.index.begin_load();
            let started = std::time::Instant::now();
            match tracker::latest::all_live(&self.pool).await {
                Ok(positions) => {
                    // Bulk-loading 100,000 positions takes tens of milliseconds: off the workers.
                    let Ok(loaded) =
                        tokio::task::spawn_blocking(|| LiveIndex::from_positions(positions)).await
                    else {
                        return false;
                    };
                    let devices = loaded.len();
                    self.index.replace(loaded);
                    tracing::debug!(
                        devices,
                        elapsed_ms = started.elapsed().as_millis(),
                        "live index loaded"
                    );
                    return true;
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot load live positions for the live index; retrying");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(RETRY) => {}
                () = shutdown.cancelled() => return false,
            }
        }
    }
}

async fn reconnected(reconnections: &mut Option<watch::Receiver<u64>>) {
    let Some(receiver) = reconnections else {
        return pending().await;
    };
    if receiver.changed().await.is_err() {
        // The sender is gone with the NATS client: no reconnection can come.
        pending::<()>().await;
    }
}
