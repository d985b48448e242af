//! `AppState`: what every handler shares, behind one `Arc`.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use fences::FenceLimits;

use prometheus_client::registry::Registry;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::alerts::hub::AlertHub;
use crate::auth::Tokens;
use crate::config::{IngestConfig, WsConfig};
use crate::evaluator::Evaluators;
use crate::fence_store::SharedIndex;
use crate::limits::Limiters;
use crate::live::LiveFeed;

/// Cheap to clone: one reference count, however many fields [`Shared`] has (axum clones the
/// state for every request that extracts it).
#[derive(Debug, Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What every handler shares.
#[derive(Debug)]
pub struct Shared {
    pub pool: PgPool,
    pub pipeline: tracker::Pipeline,
    pub limits: tracker::Limits,
    pub ingest: Arc<IngestConfig>,
    pub registry: Arc<Registry>,
    pub tokens: Arc<Tokens>,
    pub limiters: Limiters,
    /// The fence index every lookup uses; see `fence_store`.
    pub fences: SharedIndex,
    /// False until the index has been loaded from the database (then `/ready` turns true).
    pub fences_loaded: Arc<AtomicBool>,
    pub fence_limits: FenceLimits,
    /// Serialises fence writes so the index changes in the database's commit order.
    pub fence_writes: Arc<tokio::sync::Mutex<()>>,
    /// Unit of `speed` on `/osmand` when the request does not say (`?speed_unit=`).
    pub osmand_speed_unit: tracker::protocols::osmand::SpeedUnit,
    /// Long-lived tasks (shard writers, later WebSocket sessions); awaited at shutdown,
    /// because axum's graceful shutdown only waits for HTTP requests.
    pub tasks: TaskTracker,
    /// Cancelled when shutdown begins: background loops stop.
    pub shutdown: CancellationToken,
    /// Committed alerts, in id order, for WebSocket subscribers.
    pub hub: Arc<dyn AlertHub>,
    /// Live positions for map views.
    pub live: LiveFeed,
    pub evaluators: Evaluators,
    pub ws: Arc<WsConfig>,
    /// A webhook secret is configured, so fences may name webhook URLs.
    pub webhooks_signed: bool,
    pub tiles: crate::tile_cache::TileCache,
    pub tile_windows: TileWindows,
}

/// Time windows of the `tracks` layer.
#[derive(Debug, Clone, Copy)]
pub struct TileWindows {
    /// When a request names no `from`: the last this long.
    pub default: std::time::Duration,
    /// The longest a request may ask for.
    pub max: std::time::Duration,
}
