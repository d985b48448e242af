//! Fence evaluation and alerts for geotrack, between ingest (`tracker`) and the fence engine
//! (`fences`), knowing nothing of HTTP:
//!
//! - [`evaluator`]: one task per ingest shard runs committed fixes through the fence index and
//!   the state machines (the shard state itself does no I/O), resuming from a stored watermark;
//! - [`writer`]: the node's one alert writer commits alerts with the state they leave, then
//!   publishes them on the [`hub`] in id order (messages as bytes, serialised once);
//! - [`store`]: the alert tables; [`fence_store`]: the fence table; [`SharedIndex`]: the fence
//!   index shared by evaluators and readers;
//! - [`webhooks`]: signed, retried, at-least-once delivery of every alert (claimed row by row,
//!   so several nodes deliver each alert once between them);
//! - [`follower`]: in cluster mode, every node's hub is fed from the database in commit order;
//! - [`roam`]: the proximity rules' evaluator, on the live index (`dispatch::roam`).
//!
//! [`start`] wires them together for a node.

pub mod config;
mod error;
pub mod evaluator;
pub mod fence_store;
pub mod follower;
pub mod hub;
pub mod metrics;
pub mod model;
pub mod roam;
mod shared_index;
pub mod store;
pub mod webhooks;
pub mod writer;

use std::sync::Arc;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracker::live::LiveFeed;
use tracker::outbox::OutboxReceiver;

pub use config::{AlertsConfig, EvalConfig, WebhooksConfig};
pub use error::Error;
pub use evaluator::Evaluators;
pub use hub::{AlertHub, LocalHub, Published, Subscription};
pub use metrics::AlertMetrics;
pub use model::{Alert, AlertKind, Changes, Event};
pub use shared_index::SharedIndex;
pub use tracker::instance_tag;

/// Evaluation steps waiting for the alert writer; evaluators wait when it is full.
const CHANGES_QUEUE: usize = 256;

/// What a node's alerting is started with.
#[derive(Debug)]
pub struct Inputs {
    pub pool: PgPool,
    pub alerts: AlertsConfig,
    pub webhooks: WebhooksConfig,
    /// Where webhooks may be delivered.
    pub webhook_policy: Arc<webhooks::Policy>,
    pub index: SharedIndex,
    /// Device groups, for fences that apply to groups.
    pub groups: fences::Groups,
    /// Where evaluators record the fixes that move a device.
    pub live: LiveFeed,
    /// The live index and the proximity rules evaluated on it.
    pub proximity: (dispatch::SharedLiveIndex, dispatch::roam::Rules),
    /// Committed batches of each ingest shard, in shard order.
    pub committed: Vec<OutboxReceiver>,
    /// Cluster mode: whether this node owns each shard (evaluators work only while it does),
    /// and the hub is fed from the database instead of by this node's writer.
    pub ownership: Option<Vec<evaluator::Ownership>>,
    pub metrics: AlertMetrics,
}

/// The running alerting of a node.
#[derive(Debug, Clone)]
pub struct Alerting {
    /// Committed alerts, in id order, for this node's subscribers.
    pub hub: Arc<dyn AlertHub>,
    pub evaluators: Evaluators,
}

/// Starts the alert writer, the webhook deliverer and one evaluator per shard on `tasks`; they
/// stop when `shutdown` is cancelled (the writer once every evaluator has stopped and what they
/// sent is committed).
pub fn start(inputs: Inputs, shutdown: &CancellationToken, tasks: &TaskTracker) -> Alerting {
    let hub: Arc<dyn AlertHub> = Arc::new(LocalHub::new(inputs.alerts.hub_capacity));
    // Evaluators hold the only senders: the writer stops once they have all stopped.
    let (sink, changes) = tokio::sync::mpsc::channel(CHANGES_QUEUE);
    let deliveries = Arc::new(tokio::sync::Notify::new());
    let lag = inputs.metrics.evaluation_lag_seconds.clone();
    let cluster = inputs.ownership.is_some();
    if cluster {
        tasks.spawn(follower::follow(
            inputs.pool.clone(),
            hub.clone(),
            shutdown.clone(),
        ));
    }
    tasks.spawn(
        writer::AlertWriter {
            pool: inputs.pool.clone(),
            changes,
            hub: hub.clone(),
            webhooks: inputs.webhooks.urls.clone(),
            deliveries: deliveries.clone(),
            metrics: inputs.metrics.clone(),
            shutdown: shutdown.clone(),
            publish: !cluster,
        }
        .run(),
    );
    tasks.spawn(
        webhooks::Deliverer {
            pool: inputs.pool.clone(),
            metrics: inputs.metrics.clone(),
            config: inputs.webhooks,
            policy: inputs.webhook_policy,
            wake: deliveries,
            shutdown: shutdown.clone(),
        }
        .run(),
    );
    let (live_index, rules) = inputs.proximity;
    tasks.spawn(
        roam::Roam {
            pool: inputs.pool.clone(),
            index: live_index,
            rules,
            groups: inputs.groups.clone(),
            sink: sink.clone(),
            metrics: inputs.metrics,
            ownership: inputs.ownership.as_ref().and_then(|o| o.first().cloned()),
            shutdown: shutdown.clone(),
        }
        .run(),
    );
    let evaluation = evaluator::Shared {
        pool: inputs.pool,
        shards: inputs.committed.len(),
        index: inputs.index,
        groups: inputs.groups,
        sink,
        live: inputs.live,
        config: inputs.alerts.evaluation(),
        lag,
        shutdown: shutdown.clone(),
    };
    let evaluators = Evaluators::start(&evaluation, inputs.committed, inputs.ownership, tasks);
    Alerting { hub, evaluators }
}
