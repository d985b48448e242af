//! `AppState`: what every handler shares. Cheap to clone (handles and `Arc`s only).

use std::sync::Arc;

use prometheus_client::registry::Registry;
use sqlx::PgPool;
use tokio_util::task::TaskTracker;

use crate::config::IngestConfig;

#[derive(Debug, Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub pipeline: tracker::Pipeline,
    pub limits: tracker::Limits,
    pub ingest: Arc<IngestConfig>,
    pub registry: Arc<Registry>,
    /// Long-lived tasks (shard writers, later WebSocket sessions); awaited at shutdown,
    /// because axum's graceful shutdown only waits for HTTP requests.
    pub tasks: TaskTracker,
}
