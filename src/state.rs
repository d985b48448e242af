//! `AppState`: what every handler shares. Cheap to clone (handles and `Arc`s only).

use std::sync::Arc;

use prometheus_client::registry::Registry;
use sqlx::PgPool;
use tokio_util::task::TaskTracker;

use crate::auth::Tokens;
use crate::config::IngestConfig;
use crate::limits::Limiters;

#[derive(Debug, Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub pipeline: tracker::Pipeline,
    pub limits: tracker::Limits,
    pub ingest: Arc<IngestConfig>,
    pub registry: Arc<Registry>,
    pub tokens: Arc<Tokens>,
    pub limiters: Limiters,
    /// Unit of `speed` on `/osmand` when the request does not say (`?speed_unit=`).
    pub osmand_speed_unit: tracker::protocols::osmand::SpeedUnit,
    /// Long-lived tasks (shard writers, later WebSocket sessions); awaited at shutdown,
    /// because axum's graceful shutdown only waits for HTTP requests.
    pub tasks: TaskTracker,
}
