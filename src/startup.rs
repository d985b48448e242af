//! Start-up and shutdown as functions a test can call: [`Application::build`] connects,
//! migrates (if configured), starts the ingest pipeline, evaluation and the fence listener, and
//! binds the listener (port 0 gives a free port); [`Application::run_until`] serves until the
//! given future resolves, then stops accepting, lets in-flight requests finish, flushes every
//! queued batch and returns.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use alerts::{AlertMetrics, SharedIndex};
use dispatch::{Dispatch, SharedLiveIndex};
use prometheus_client::registry::Registry;
use sqlx::PgPool;
use tiles::{Change, LayerId, TileStore};
use tokio::net::TcpListener;
use tracker::live::LiveFeed;

use crate::auth::{Auth, Tokens};
use crate::checks::ConfigError;
use crate::cluster::TracksOut;
use crate::config::Config;
use crate::fence_imports::ImportJobs;
use crate::fence_registry::{FenceRegistry, Webhooks};
use crate::guard::LocalOnly;
use crate::http_metrics::HttpMetrics;
use crate::ingest::Ingest;
use crate::server::HttpConfig;
use crate::state::{AppState, Shared};
use crate::ws::Sessions;

/// Committed batches each shard may hand to its evaluator before it has to catch up from the
/// database instead.
const OUTBOX_BATCHES: usize = 64;
/// Live-position frames a WebSocket subscriber may fall behind by before it gets a snapshot.
const LIVE_BACKLOG: usize = 16;

/// Why the service could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid configuration: {0}")]
    Config(#[from] crate::checks::ConfigError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("cluster: {0}")]
    Cluster(#[from] cluster::ClusterError),
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
    router: crate::connection::HttpService,
    http: HttpConfig,
    max_connections: usize,
    shutdown_timeout: Duration,
    /// The hardware trackers' listeners, and what their connections share.
    trackers: (crate::tcp::Listeners, crate::tcp::Context),
}

impl Application {
    pub async fn build(config: Config) -> Result<Self, StartError> {
        let tokens = crate::checks::configuration(&config)?;
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
        let trackers = crate::tcp::Listeners::bind(&config.tcp)
            .await
            .map_err(|(addr, source)| StartError::Bind { addr, source })?;
        let pool = crate::db::pool(&config.database_url, pool_size(&config))?;
        let nats = if config.cluster.enabled() {
            Some(Box::pin(cluster::nats::Nats::connect(&config.cluster)).await?)
        } else {
            None
        };
        let mut registry = Registry::default();
        let http_metrics = HttpMetrics::register(&mut registry);
        let tcp_metrics = tracker::tcp::metrics::TcpMetrics::register(&mut registry);
        // Boxed: connecting to NATS and starting the cluster make a large future.
        let state = Box::pin(start(&config, pool, tokens, registry, nats)).await?;
        state.sessions.tasks.spawn(crate::upkeep::run(
            state.db.clone(),
            config.history.clone(),
            config.ingest.limits().max_age,
            state.sessions.shutdown.clone(),
        ));
        state.sessions.tasks.spawn(crate::listen::follow(
            state.db.clone(),
            state.fences.clone(),
            (state.dispatch.groups.clone(), state.dispatch.rules.clone()),
            state.tiles.clone(),
            state.sessions.shutdown.clone(),
        ));
        // Without tokens, only local names and same-site requests (see `guard`).
        let local_only = state
            .auth
            .tokens
            .is_open()
            .then(|| LocalOnly::new(config.bind.ip(), &config.http.allowed_hosts));
        let router = crate::routes::router(
            state.clone(),
            http_metrics,
            Duration::from_secs(config.request_timeout_s),
            local_only,
        );
        let trackers = (trackers, tcp_context(&config, state.clone(), tcp_metrics));
        Ok(Self {
            trackers,
            listener,
            state,
            router,
            max_connections: crate::server::connection_cap(&config.http),
            http: config.http,
            shutdown_timeout: Duration::from_secs(config.shutdown_timeout_s),
        })
    }

    /// The address actually bound (the real port when configured with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// The address a hardware-tracker listener is bound to (`"teltonika"`), if configured.
    pub fn tcp_addr(&self, protocol: &str) -> Option<SocketAddr> {
        self.trackers.0.addr(protocol)
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
            http,
            max_connections,
            shutdown_timeout,
            trackers: (trackers, tcp_context),
        } = self;
        let stop = state.sessions.shutdown.clone();
        let ingest = state.ingest.clone();
        let node = state.cluster.clone();
        let drained = tokio::spawn(async move {
            shutdown.await;
            // Requests still in flight must not wait out a batch linger: commit at once.
            ingest.pipeline.flush_now();
            stop.cancel();
            // Partitions go to the other nodes at once, while this one's connections close
            // (its requests only append to the fix log, which needs no partition).
            if let Some(node) = node {
                node.drain(shutdown_timeout).await;
            }
        });
        let stop = state.sessions.shutdown.clone();
        let trackers = trackers.spawn(tcp_context, &stop);
        let serve = crate::server::serve(listener, router, &http, max_connections, stop.clone());
        tokio::select! {
            () = serve => {}
            () = async { stop.cancelled().await; tokio::time::sleep(shutdown_timeout).await } => {
                tracing::warn!(?shutdown_timeout, "connections still open after the shutdown timeout; closing them");
            }
        }
        // Tracker connections storing a packet finish it before the pipeline closes.
        trackers.close();
        if tokio::time::timeout(shutdown_timeout, trackers.wait())
            .await
            .is_err()
        {
            tracing::warn!("tracker connections still storing after the shutdown timeout");
        }
        let _ = drained.await;
        tracing::info!(
            queued = state.ingest.pipeline.queued(),
            "stopped accepting requests; flushing queued fixes"
        );
        state.ingest.pipeline.close();
        state.sessions.tasks.close();
        state.sessions.tasks.wait().await;
        state.db.close().await;
        tracing::info!("shutdown complete");
        Ok(())
    }
}

/// What the hardware trackers' connections share.
fn tcp_context(
    config: &Config,
    state: AppState,
    metrics: tracker::tcp::metrics::TcpMetrics,
) -> crate::tcp::Context {
    crate::tcp::Context {
        state,
        metrics,
        token: config.tcp.token.clone(),
        idle_timeout: Duration::from_secs(config.tcp.idle_timeout_s.max(1)),
        store_timeout: Duration::from_secs(config.request_timeout_s.max(1)),
    }
}

/// Starts the pipeline, evaluation, the live feed and (with `nats`) this node's part of the
/// cluster, and assembles the state the routes share.
async fn start(
    config: &Config,
    pool: PgPool,
    tokens: Tokens,
    mut registry: Registry,
    nats: Option<cluster::nats::Nats>,
) -> Result<AppState, StartError> {
    let sessions = Sessions::new(&config.ws, &mut registry);
    let tiles = Arc::new(TileStore::new(&config.tiles, pool.clone()).map_err(ConfigError::from)?);
    let (ingest_metrics, alert_metrics) = register_metrics(&mut registry, &pool, &tiles);
    let tracks_out = nats.as_ref().map(|_| Arc::new(TracksOut::default()));
    let shards = nats.as_ref().map(|n| usize::from(n.partitions));
    let (pipeline, committed) = start_pipeline(
        config,
        &pool,
        ingest_metrics,
        &tiles,
        tracks_out.clone(),
        shards,
        &sessions,
    );
    let (live, live_interval) = start_live_feed(config, &sessions);
    let live_index = SharedLiveIndex::default();
    let cluster = match (nats, tracks_out) {
        (Some(nats), Some(tracks_out)) => {
            let inputs = crate::cluster::Inputs {
                nats,
                pool: pool.clone(),
                pipeline: pipeline.clone(),
                tiles: tiles.clone(),
                tracks_out,
                live: live.clone(),
                live_index: live_index.clone(),
                live_interval,
                max_waiting_fixes: config.ingest.max_waiting_fixes,
            };
            Some(crate::cluster::start(inputs, &sessions.tasks, &sessions.shutdown).await?)
        }
        _ => None,
    };
    let groups = fences::Groups::default();
    let rules = dispatch::roam::Rules::default();
    let (alerting, fences) = start_alerting(
        config,
        &pool,
        (&tiles, &groups, (&live_index, &rules)),
        &live,
        committed,
        cluster.as_ref(),
        alert_metrics,
        &sessions,
    )?;
    let ingest = ingest(config, pipeline, cluster.as_ref().map(|c| c.log.clone()))?;
    let (fences, imports) = import_jobs(config, fences, &sessions);
    Ok(AppState::new(Shared {
        dispatch: start_dispatch(
            config,
            (live_index, groups.clone(), rules),
            &pool,
            &live,
            cluster.as_ref(),
            &sessions,
        ),
        db: pool,
        auth: auth(config, tokens, groups),
        ingest: Arc::new(ingest),
        fences,
        imports,
        alerts: Arc::new(alerting),
        tiles,
        live,
        sessions,
        registry: Arc::new(registry),
        cluster: cluster.map(|c| c.node),
    }))
}

/// The metrics of ingest and alerting, and those read at each scrape (process, pool, tiles).
fn register_metrics(
    registry: &mut Registry,
    pool: &PgPool,
    tiles: &TileStore,
) -> (tracker::metrics::IngestMetrics, AlertMetrics) {
    registry.register_collector(Box::new(crate::process_metrics::ProcessMetrics {
        pool: pool.clone(),
        tiles: tiles.cache().clone(),
    }));
    (
        tracker::metrics::IngestMetrics::register(registry),
        AlertMetrics::register(registry),
    )
}

/// Authentication: the tokens, their rate limits, and the groups some are limited to.
fn auth(config: &Config, tokens: Tokens, groups: fences::Groups) -> Auth {
    Auth {
        tokens,
        limiter: config.limits.tokens(),
        failures: config.limits.failed_auths(),
        groups,
    }
}

/// Positions in: where they go (the pipeline, or the fix log in cluster mode) and the checks
/// on the way.
fn ingest(
    config: &Config,
    pipeline: tracker::Pipeline,
    log: Option<cluster::fixlog::FixLog>,
) -> Result<Ingest, StartError> {
    Ok(Ingest {
        pipeline,
        log,
        limits: config.ingest.limits(),
        config: config.ingest.clone(),
        devices: config.limits.devices(),
        osmand_speed_unit: crate::checks::osmand_speed_unit(config)?,
    })
}

/// Fence imports as jobs. A request waits for its import `fences.import_wait_ms`, at most two
/// thirds of the request timeout, then gets 202.
fn import_jobs(
    config: &Config,
    fences: FenceRegistry,
    sessions: &Sessions,
) -> (Arc<FenceRegistry>, Arc<ImportJobs>) {
    let fences = Arc::new(fences);
    let wait = Duration::from_millis(config.fences.import_wait_ms)
        .min(Duration::from_secs(config.request_timeout_s) * 2 / 3);
    let jobs = ImportJobs::new(Arc::clone(&fences), wait, sessions.tasks.clone());
    (fences, Arc::new(jobs))
}

/// The live index of the dispatch routes, loaded from the database and kept current from the
/// live feed (every node's frames in cluster mode).
fn start_dispatch(
    config: &Config,
    (index, groups, rules): (SharedLiveIndex, fences::Groups, dispatch::roam::Rules),
    pool: &PgPool,
    live: &LiveFeed,
    cluster: Option<&crate::cluster::Parts>,
    sessions: &Sessions,
) -> Arc<Dispatch> {
    let sync = dispatch::sync::Sync {
        index: index.clone(),
        feed: live.clone(),
        pool: pool.clone(),
        resync: Duration::from_secs(config.dispatch.resync_s.max(1)),
        reconnections: cluster.map(|c| c.reconnections.clone()),
    };
    sessions.tasks.spawn(sync.run(sessions.shutdown.clone()));
    Arc::new(Dispatch {
        index,
        groups,
        rules,
        config: config.dispatch.clone(),
    })
}

/// The live feed `/ws/positions` reads, publishing every `ws.positions_interval_ms`.
fn start_live_feed(config: &Config, sessions: &Sessions) -> (LiveFeed, Duration) {
    let live = LiveFeed::new(LIVE_BACKLOG);
    let interval = Duration::from_millis(config.ws.positions_interval_ms.max(10));
    sessions
        .tasks
        .spawn(live.clone().run(interval, sessions.shutdown.clone()));
    (live, interval)
}

/// Starts evaluation and alerting (in cluster mode on the partitions this node owns, recording
/// moving devices into the outbound live feed; proximity rules on the live index) and the fence
/// registry they read.
#[allow(clippy::too_many_arguments)] // start-up wiring: each argument is a distinct part
fn start_alerting(
    config: &Config,
    pool: &PgPool,
    (tiles, groups, (live_index, rules)): (
        &Arc<TileStore>,
        &fences::Groups,
        (&SharedLiveIndex, &dispatch::roam::Rules),
    ),
    live: &LiveFeed,
    committed: Vec<tracker::outbox::OutboxReceiver>,
    cluster: Option<&crate::cluster::Parts>,
    metrics: AlertMetrics,
    sessions: &Sessions,
) -> Result<(alerts::Alerting, FenceRegistry), StartError> {
    let index =
        SharedIndex::new(fences::FenceIndex::new(fences::IndexConfig::default()).map_err(ConfigError::from)?);
    let webhook_policy = Arc::new(crate::checks::webhook_policy(config)?);
    let alerting = alerts::start(
        alerts::Inputs {
            pool: pool.clone(),
            alerts: config.alerts.clone(),
            webhooks: config.webhooks.clone(),
            webhook_policy: webhook_policy.clone(),
            index: index.clone(),
            groups: groups.clone(),
            live: cluster.map_or_else(|| live.clone(), |c| c.outbound.clone()),
            proximity: (live_index.clone(), rules.clone()),
            committed,
            ownership: cluster.map(|c| c.ownership.clone()),
            metrics,
        },
        &sessions.shutdown,
        &sessions.tasks,
    );
    let fences = FenceRegistry::new(
        pool.clone(),
        index,
        config.fences.limits(),
        tiles.clone(),
        Webhooks {
            signed: config.webhooks.secret().is_some(),
            policy: webhook_policy,
        },
    );
    Ok((alerting, fences))
}

/// Connections in the pool: as configured, but in cluster mode at least one per partition
/// (each shard writer keeps one, and a node may come to own every partition) and a few more
/// for reads, evaluation and listening.
fn pool_size(config: &Config) -> u32 {
    if config.cluster.enabled() {
        config
            .db_max_connections
            .max(u32::from(config.cluster.partitions) + 8)
    } else {
        config.db_max_connections
    }
}

/// Starts the ingest pipeline; returns it and, for each shard, where its committed batches
/// go (the evaluators read them).
fn start_pipeline(
    config: &Config,
    pool: &PgPool,
    metrics: tracker::metrics::IngestMetrics,
    tiles: &Arc<TileStore>,
    tracks_out: Option<Arc<TracksOut>>,
    shards: Option<usize>,
    sessions: &Sessions,
) -> (tracker::Pipeline, Vec<tracker::outbox::OutboxReceiver>) {
    let mut pipeline_config = config.ingest.pipeline();
    // In cluster mode each partition is a shard, written by its owner only.
    if let Some(shards) = shards {
        pipeline_config.shards = shards;
    }
    let (outboxes, committed): (Vec<_>, Vec<_>) = (0..pipeline_config.shards)
        .map(|_| tracker::outbox::outbox(OUTBOX_BATCHES))
        .unzip();
    let pipeline = tracker::Pipeline::start(
        pool,
        pipeline_config,
        metrics,
        outboxes,
        Some(&tracks_changed(tiles.clone(), tracks_out)),
        &sessions.tasks,
    );
    (pipeline, committed)
}

/// What the ingest pipeline calls with every committed batch, before it is acknowledged: the
/// `tracks` tiles whose window holds the fixes' times are stale.
/// In cluster mode the window also goes to the other nodes (`tracks_out`).
fn tracks_changed(tiles: Arc<TileStore>, tracks_out: Option<Arc<TracksOut>>) -> tracker::CommitHook {
    Arc::new(move |batch| {
        let fix_times = batch.iter().map(|f| f.ts.timestamp_millis());
        if let (Some(first), Some(last)) = (fix_times.clone().min(), fix_times.max()) {
            tiles
                .cache()
                .invalidate(LayerId::TRACKS, Change::during(first, last));
            if let Some(out) = &tracks_out {
                out.record(first, last);
            }
        }
    })
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
