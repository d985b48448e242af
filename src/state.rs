//! `AppState`: what the handlers share, behind one `Arc` (axum clones the state for every
//! request that extracts it), split into sub-states so a handler takes only what it uses:
//! `State<Arc<Ingest>>`, `State<Arc<FenceRegistry>>`, `State<Arc<Alerting>>`,
//! `State<Arc<TileStore>>`, `State<LiveFeed>`, `State<Arc<Dispatch>>`, `State<Sessions>`, `State<PgPool>` (each through
//! [`FromRef`], one reference count). Authentication reads [`Shared::auth`] in place.

use std::sync::Arc;

use alerts::Alerting;
use axum::extract::FromRef;
use dispatch::Dispatch;
use prometheus_client::registry::Registry;
use sqlx::PgPool;
use tiles::TileStore;
use tracker::live::LiveFeed;

use crate::auth::Auth;
use crate::fence_imports::ImportJobs;
use crate::fence_registry::FenceRegistry;
use crate::ingest::Ingest;
use crate::ws::Sessions;

/// Cheap to clone: one reference count, however many sub-states [`Shared`] has.
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

/// The sub-states.
#[derive(Debug)]
pub struct Shared {
    pub db: PgPool,
    pub auth: Auth,
    /// Positions in: validation, rate limits, the durable pipeline.
    pub ingest: Arc<Ingest>,
    /// Fences: the index and every write to it.
    pub fences: Arc<FenceRegistry>,
    /// Fence imports, run as jobs.
    pub imports: Arc<ImportJobs>,
    /// Alerts: the hub and the evaluators.
    pub alerts: Arc<Alerting>,
    pub tiles: Arc<TileStore>,
    /// Live positions for map views.
    pub live: LiveFeed,
    /// The live index and the dispatch queries' limits.
    pub dispatch: Arc<Dispatch>,
    /// WebSocket sessions and the tasks that outlive a request.
    pub sessions: Sessions,
    pub registry: Arc<Registry>,
    /// Cluster mode: this node's membership; `None` on a single node.
    pub cluster: Option<Arc<crate::cluster::Node>>,
}

macro_rules! sub_state {
    ($($field:ident: $type:ty),* $(,)?) => {$(
        impl FromRef<AppState> for $type {
            fn from_ref(state: &AppState) -> Self {
                state.$field.clone()
            }
        }
    )*};
}

sub_state! {
    db: PgPool,
    ingest: Arc<Ingest>,
    fences: Arc<FenceRegistry>,
    imports: Arc<ImportJobs>,
    alerts: Arc<Alerting>,
    tiles: Arc<TileStore>,
    live: LiveFeed,
    dispatch: Arc<Dispatch>,
    sessions: Sessions,
    registry: Arc<Registry>,
    cluster: Option<Arc<crate::cluster::Node>>,
}
