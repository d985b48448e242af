//! Start-up and shutdown as functions a test can call: [`Application::build`] connects,
//! migrates (if configured), starts the ingest pipeline and binds the listener (port 0 gives a
//! free port); [`Application::run_until`] serves until the given future resolves, then stops
//! accepting, lets in-flight requests finish, flushes every queued batch and returns.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::CorsLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::alerts::hub::{AlertHub, LocalHub};
use crate::alerts::writer::{AlertMetrics, AlertWriter};
use crate::auth::Tokens;
use crate::config::Config;
use crate::error::ApiError;
use crate::evaluator::{self, Evaluators};
use crate::http_metrics::{self, HttpMetrics};
use crate::live::LiveFeed;
use crate::state::AppState;
use crate::tile_layers::LayerId;

/// Committed batches each shard may hand to its evaluator before it has to catch up from the
/// database instead.
const OUTBOX_BATCHES: usize = 64;
/// Evaluation steps waiting for the alert writer; evaluators wait when it is full.
const CHANGES_QUEUE: usize = 256;
/// Live-position frames a WebSocket subscriber may fall behind by before it gets a snapshot.
const LIVE_BACKLOG: usize = 16;

/// Why the service could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("server: {0}")]
    Serve(std::io::Error),
}

/// A built service, bound to its address, not yet serving.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    state: AppState,
    router: Router,
    shutdown_timeout: Duration,
}

impl Application {
    pub async fn build(config: Config) -> Result<Self, StartError> {
        if config.db_max_connections as usize <= config.ingest.shards + 1 {
            return Err(StartError::Config(format!(
                "db_max_connections ({}) must exceed ingest.shards ({}) + 1: each shard writer and the fence listener keep a connection",
                config.db_max_connections, config.ingest.shards
            )));
        }
        let tokens = check_access(&config)?;
        check_webhooks(&config)?;
        let osmand_speed_unit = config
            .ingest
            .osmand_speed_unit
            .parse()
            .map_err(|e| StartError::Config(format!("ingest.osmand_speed_unit: {e}")))?;
        if config.migrate_on_start {
            crate::db::migrate(&config.database_url).await?;
        }
        // Bind before starting any task, so a taken port leaves nothing running behind.
        let listener = TcpListener::bind(config.bind)
            .await
            .map_err(|source| StartError::Bind {
                addr: config.bind,
                source,
            })?;
        let pool = crate::db::pool(&config.database_url, config.db_max_connections)?;
        let mut registry = Registry::default();
        let ingest_metrics = tracker::metrics::IngestMetrics::register(&mut registry);
        let http_metrics = HttpMetrics::register(&mut registry);
        let alert_metrics = AlertMetrics::register(&mut registry);
        let tasks = TaskTracker::new();
        let shutdown = CancellationToken::new();
        let pipeline_config = config.ingest.pipeline();
        let (outboxes, committed): (Vec<_>, Vec<_>) = (0..pipeline_config.shards)
            .map(|_| tracker::outbox::outbox(OUTBOX_BATCHES))
            .unzip();
        let catalog = crate::tile_layers::Catalog::new(&config.tiles).map_err(StartError::Config)?;
        let tiles = crate::tile_cache::TileCache::new(
            config.tiles.cache_mb.saturating_mul(1 << 20),
            Arc::new(catalog),
        );
        let pipeline = tracker::Pipeline::start(
            &pool,
            pipeline_config.clone(),
            ingest_metrics,
            outboxes,
            Some(&tiles.commit_hook()),
            &tasks,
        );
        let empty_index = fences::FenceIndex::new(fences::IndexConfig::default())
            .map_err(|e| StartError::Config(e.to_string()))?;
        let fence_index = crate::fence_store::SharedIndex::new(empty_index);
        let (hub, live, evaluators) = start_evaluation(
            &config,
            &pool,
            fence_index.clone(),
            committed,
            alert_metrics,
            &shutdown,
            &tasks,
        );
        let state = AppState::new(crate::state::Shared {
            pool,
            pipeline,
            limits: config.ingest.limits(),
            ingest: Arc::new(config.ingest.clone()),
            registry: Arc::new(registry),
            tokens: Arc::new(tokens),
            limiters: crate::limits::Limiters::new(&config.limits),
            fences: fence_index,
            fences_loaded: Arc::new(AtomicBool::new(false)),
            fence_limits: config.fences.limits(),
            fence_writes: Arc::new(tokio::sync::Mutex::new(())),
            shutdown,
            osmand_speed_unit,
            tasks,
            hub,
            live,
            evaluators,
            ws: Arc::new(config.ws.clone()),
            webhooks_signed: config.webhooks.secret.is_some(),
            tiles,
            tile_windows: crate::state::TileWindows {
                default: Duration::from_secs(config.tiles.tracks_window_s.max(1)),
                max: Duration::from_secs(config.tiles.tracks_max_window_s.max(1)),
            },
        });
        state.tasks.spawn(keep_fences_loaded(state.clone()));
        let router = router(
            state.clone(),
            http_metrics,
            Duration::from_secs(config.request_timeout_s),
        );
        Ok(Self {
            listener,
            state,
            router,
            shutdown_timeout: Duration::from_secs(config.shutdown_timeout_s),
        })
    }

    /// The address actually bound (the real port when configured with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then drains: no new connections, in-flight requests
    /// finish (up to the shutdown timeout), queued fixes are committed, tasks are awaited.
    pub async fn run_until<F>(self, shutdown: F) -> Result<(), StartError>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let Self {
            listener,
            state,
            router,
            shutdown_timeout,
        } = self;
        let stop = state.shutdown.clone();
        let pipeline = state.pipeline.clone();
        tokio::spawn(async move {
            shutdown.await;
            // Requests still in flight must not wait out a batch linger: commit at once.
            pipeline.flush_now();
            stop.cancel();
        });
        let stop = state.shutdown.clone();
        let serve = axum::serve(listener, router).with_graceful_shutdown(stop.clone().cancelled_owned());
        tokio::select! {
            result = serve.into_future() => result.map_err(StartError::Serve)?,
            () = async { stop.cancelled().await; tokio::time::sleep(shutdown_timeout).await } => {
                tracing::warn!(?shutdown_timeout, "connections still open after the shutdown timeout; closing them");
            }
        }
        tracing::info!(
            queued = state.pipeline.queued(),
            "stopped accepting requests; flushing queued fixes"
        );
        state.pipeline.close();
        state.tasks.close();
        state.tasks.wait().await;
        state.pool.close().await;
        tracing::info!("shutdown complete");
        Ok(())
    }
}

/// Starts the alert writer, one evaluator per shard (fed by `committed`) and the live-position
/// feed; returns the handles the routes use.
fn start_evaluation(
    config: &Config,
    pool: &sqlx::PgPool,
    index: crate::fence_store::SharedIndex,
    committed: Vec<tracker::outbox::OutboxReceiver>,
    metrics: AlertMetrics,
    shutdown: &CancellationToken,
    tasks: &TaskTracker,
) -> (Arc<dyn AlertHub>, LiveFeed, Evaluators) {
    let hub: Arc<dyn AlertHub> = Arc::new(LocalHub::new(config.alerts.hub_capacity));
    let live = LiveFeed::new(LIVE_BACKLOG);
    // Evaluators hold the only senders: the writer stops once they have all stopped.
    let (sink, changes) = tokio::sync::mpsc::channel(CHANGES_QUEUE);
    let deliveries = Arc::new(tokio::sync::Notify::new());
    let lag = metrics.evaluation_lag_seconds.clone();
    tasks.spawn(
        AlertWriter {
            pool: pool.clone(),
            changes,
            hub: hub.clone(),
            webhooks: config.webhooks.urls.clone(),
            deliveries: deliveries.clone(),
            metrics,
            shutdown: shutdown.clone(),
        }
        .run(),
    );
    tasks.spawn(
        crate::webhooks::Deliverer {
            pool: pool.clone(),
            config: config.webhooks.clone(),
            wake: deliveries,
            shutdown: shutdown.clone(),
        }
        .run(),
    );
    let evaluation = evaluator::Shared {
        pool: pool.clone(),
        shards: committed.len(),
        index,
        sink,
        live: live.clone(),
        config: config.alerts.evaluation(),
        lag,
        shutdown: shutdown.clone(),
    };
    let evaluators = Evaluators::start(&evaluation, committed, tasks);
    tasks.spawn(live.clone().run(
        Duration::from_millis(config.ws.positions_interval_ms.max(10)),
        shutdown.clone(),
    ));
    (hub, live, evaluators)
}

/// Keeps the fence index equal to the `fences` table: listens for `NOTIFY geotrack_fences`
/// (sent by `geotrack import fences` and any other writer outside this process), loads the
/// index, and reloads it on every notification. Listening starts before the load, so no change
/// falls between the two. While the database is down or not migrated it retries every 2 s;
/// `/ready` stays false until the first load. The same connection hears
/// `NOTIFY geotrack_tiles, '<layer>'` (from `geotrack import basemap`, or an operator's trigger)
/// and drops that layer's cached tiles.
async fn keep_fences_loaded(state: AppState) {
    loop {
        let error = match follow_fences(&state).await {
            Ok(()) => return,
            Err(error) => error,
        };
        tracing::warn!(%error, "fence index not in sync with the database; retrying in 2 s");
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
            () = state.shutdown.cancelled() => return,
        }
    }
}

async fn follow_fences(state: &AppState) -> Result<(), String> {
    let mut listener = sqlx::postgres::PgListener::connect_with(&state.pool)
        .await
        .map_err(|e| format!("cannot listen for fence changes: {e}"))?;
    listener
        .listen_all([crate::fence_store::CHANGED_CHANNEL, TILES_CHANNEL])
        .await
        .map_err(|e| format!("cannot listen for fence changes: {e}"))?;
    reload_fences(state).await?;
    loop {
        tokio::select! {
            notification = listener.recv() => {
                let notification = notification.map_err(|e| format!("fence change listener: {e}"))?;
                if notification.channel() == TILES_CHANNEL {
                    invalidate_named_layer(state, notification.payload());
                } else {
                    reload_fences(state).await?;
                }
            }
            () = state.shutdown.cancelled() => return Ok(()),
        }
    }
}

/// `NOTIFY geotrack_tiles, '<layer>'`: that layer's tiles changed (anywhere).
pub const TILES_CHANNEL: &str = "geotrack_tiles";

/// Tells every running server that `layer`'s tiles changed (delivered when `db`'s transaction,
/// if any, commits), for writes made outside a server: imports, operator scripts.
pub async fn notify_tiles_changed<'e>(db: impl sqlx::PgExecutor<'e>, layer: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(TILES_CHANNEL)
        .bind(layer)
        .execute(db)
        .await
        .map(drop)
}

fn invalidate_named_layer(state: &AppState, name: &str) {
    if let Some(layer) = state.tiles.catalog().find(name.trim()) {
        state.tiles.invalidate_layer(layer);
        tracing::info!(
            layer = name,
            "tile layer changed in the database; cached tiles dropped"
        );
    } else {
        tracing::warn!(layer = name, "NOTIFY geotrack_tiles names no layer; ignored");
    }
}

async fn reload_fences(state: &AppState) -> Result<(), String> {
    // Between API writes, so the index never goes back to an older table state.
    let _writing = state.fence_writes.lock().await;
    let index = crate::fence_store::load(&state.pool, &state.fence_limits).await?;
    let count = index.len();
    state.fences.update(|current| *current = index);
    state.tiles.invalidate_layer(LayerId::FENCES);
    state.fences_loaded.store(true, Ordering::Release);
    tracing::info!(fences = count, "fence index loaded");
    Ok(())
}

/// Every configured webhook URL must be deliverable, and signed: a secret is required.
fn check_webhooks(config: &Config) -> Result<(), StartError> {
    for url in &config.webhooks.urls {
        crate::webhooks::check_url(url).map_err(|e| StartError::Config(format!("webhooks.urls: {e}")))?;
    }
    if !config.webhooks.urls.is_empty() && config.webhooks.secret.is_none() {
        return Err(StartError::Config(
            "webhooks.urls is set but webhooks.secret is not: deliveries must be signed".into(),
        ));
    }
    Ok(())
}

/// Loads the tokens and refuses an open server on a non-loopback address unless `insecure`.
fn check_access(config: &Config) -> Result<Tokens, StartError> {
    let entries = config.tokens.entries().map_err(StartError::Config)?;
    let tokens = Tokens::from_config(&entries).map_err(StartError::Config)?;
    if tokens.is_open() {
        if !config.bind.ip().is_loopback() && !config.insecure {
            return Err(StartError::Config(format!(
                "no tokens are configured, so {} would be open to anyone; configure tokens \
                 (GEOTRACK_TOKENS) or pass --insecure",
                config.bind
            )));
        }
        tracing::warn!(
            "NO TOKENS CONFIGURED: anyone who can reach {} can read and write everything",
            config.bind
        );
    } else {
        tracing::info!(tokens = entries.len(), "token authentication on");
    }
    Ok(tokens)
}

/// The routes with the middleware every request goes through.
fn router(state: AppState, metrics: HttpMetrics, request_timeout: Duration) -> Router {
    crate::routes::router(state)
        .route_layer(middleware::from_fn_with_state(metrics, http_metrics::track))
        // Maps and dashboards on other origins read tiles and the API. Safe to allow any origin:
        // credentials are explicit tokens, never cookies, so there is nothing ambient to abuse.
        .layer(CorsLayer::permissive())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            request_timeout,
        ))
        .layer(CatchPanicLayer::custom(|_| panic_response()))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

/// The log span of a request: method and path only, never the query (it may carry a token).
fn request_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), id)
}

fn panic_response() -> Response {
    ApiError::internal(&"a request handler panicked").into_response()
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(%e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(e) => {
                tracing::error!(%e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => tracing::info!("SIGINT received, shutting down"),
        () = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
}
