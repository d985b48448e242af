//! Keeps this server in step with writes made by other processes, through PostgreSQL
//! notifications: `NOTIFY geotrack_fences` (sent with every fence write: by the other nodes of
//! a cluster, `geotrack import fences`, or an operator) updates the fences it names in the
//! index (all of them when it names none), `NOTIFY geotrack_tiles, '<layer>'` (from `geotrack
//! import basemap` or gpx, or an operator's trigger) drops that layer's cached tiles, `NOTIFY
//! geotrack_groups` (with every device group write) reloads the device groups, and `NOTIFY
//! geotrack_proximity` (with every proximity rule write) reloads the proximity rules.
//! Listening starts before the first load, so no change falls between the two. While the
//! database is down or not migrated it retries every 2 s; `/ready` stays false until the
//! first load. Each time listening starts again the fences are reloaded and every cached tile
//! is dropped, since notifications sent while nobody listened are lost.

use std::sync::Arc;
use std::time::Duration;

use alerts::fence_store::Announcement;
use dispatch::Groups;
use dispatch::roam::Rules;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tiles::TileStore;
use tokio_util::sync::CancellationToken;

use crate::fence_registry::FenceRegistry;

/// Follows the four channels until `shutdown`; loads the groups, the rules and the fence index
/// first.
pub async fn follow(
    pool: PgPool,
    fences: Arc<FenceRegistry>,
    (groups, rules): (Groups, Rules),
    tiles: Arc<TileStore>,
    shutdown: CancellationToken,
) {
    let names = (&groups, &rules);
    loop {
        let error = match follow_once(&pool, &fences, names, &tiles, &shutdown).await {
            Ok(()) => return,
            Err(error) => error,
        };
        tracing::warn!(%error, "fence index not in sync with the database; retrying in 2 s");
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// Why following stopped.
#[derive(Debug, thiserror::Error)]
enum Lost {
    #[error("cannot listen for changes: {0}")]
    Listen(#[from] sqlx::Error),
    #[error("cannot load fences: {0}")]
    Load(#[from] alerts::Error),
}

async fn follow_once(
    pool: &PgPool,
    fences: &FenceRegistry,
    (groups, rules): (&Groups, &Rules),
    tiles: &TileStore,
    shutdown: &CancellationToken,
) -> Result<(), Lost> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener
        .listen_all([
            alerts::fence_store::CHANGED_CHANNEL,
            tiles::notify::CHANNEL,
            dispatch::group_store::CHANNEL,
            dispatch::roam::store::CHANNEL,
        ])
        .await?;
    reload_groups(pool, groups).await?;
    reload_rules(pool, rules).await?;
    reload(fences).await?;
    // A notification sent while this server was not listening (the database went away, or
    // before the first connection) is lost: every layer may have changed meanwhile.
    for layer in tiles.catalog().ids() {
        tiles.cache().invalidate_layer(layer);
    }
    loop {
        tokio::select! {
            notification = listener.recv() => {
                let notification = notification?;
                if notification.channel() == tiles::notify::CHANNEL {
                    invalidate_named_layer(tiles, notification.payload());
                } else if notification.channel() == dispatch::group_store::CHANNEL {
                    reload_groups(pool, groups).await?;
                    // Fences and rules that name groups may now apply to other devices:
                    // evaluators re-check every device, as after a fence or rule change.
                    fences.index().update(|_| ());
                    rules.touch();
                } else if notification.channel() == dispatch::roam::store::CHANNEL {
                    // This server's own writes are in its registry already; a reload racing
                    // with a later write here could bring back the earlier version for a while.
                    if notification.payload() != rules.origin() {
                        reload_rules(pool, rules).await?;
                    }
                } else {
                    follow_fences(fences, notification.payload()).await?;
                }
            }
            () = shutdown.cancelled() => return Ok(()),
        }
    }
}

/// Applies a fence change another process announced: the fences it names, or all of them.
async fn follow_fences(fences: &FenceRegistry, payload: &str) -> Result<(), alerts::Error> {
    let announcement = Announcement::parse(payload);
    if announcement.origin == fences.origin() {
        return Ok(());
    }
    match announcement.ids {
        Some(ids) => {
            let stored = fences.refresh(&ids).await?;
            tracing::info!(changed = ids.len(), stored, origin = %announcement.origin, "fences changed elsewhere; index updated");
            Ok(())
        }
        None => reload(fences).await,
    }
}

/// Reads every group again (a small table; a group write names only the group it changed).
async fn reload_groups(pool: &PgPool, groups: &Groups) -> Result<(), sqlx::Error> {
    let loaded = dispatch::group_store::load(pool).await?;
    tracing::debug!(groups = loaded.len(), "device groups loaded");
    groups.replace_all(loaded);
    Ok(())
}

/// Reads every proximity rule again (a small table, like the groups).
async fn reload_rules(pool: &PgPool, rules: &Rules) -> Result<(), sqlx::Error> {
    let loaded = dispatch::roam::store::load(pool).await?;
    tracing::debug!(rules = loaded.len(), "proximity rules loaded");
    rules.replace_all(loaded);
    Ok(())
}

async fn reload(fences: &FenceRegistry) -> Result<(), alerts::Error> {
    let count = fences.reload().await?;
    tracing::info!(fences = count, "fence index loaded");
    Ok(())
}

fn invalidate_named_layer(tiles: &TileStore, name: &str) {
    if let Some(layer) = tiles.catalog().find(name.trim()) {
        tiles.cache().invalidate_layer(layer);
        tracing::info!(
            layer = name,
            "tile layer changed in the database; cached tiles dropped"
        );
    } else {
        tracing::warn!(layer = name, "NOTIFY geotrack_tiles names no layer; ignored");
    }
}
