//! Fences in PostgreSQL (`fences` table) and in memory (the `FenceIndex` every lookup uses).
//! Writes go to the database first; the index is changed only after the commit, so it never
//! holds a fence the database does not. At start-up the index is rebuilt from the table.

use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use fences::{Fence, FenceIndex, FenceKind, FenceLimits, IndexConfig, PreparedFence};
use sqlx::{PgPool, Postgres, Transaction};
use tokio::sync::watch;

use crate::fence_feature::{area_wkt, kind_name};

/// The shared in-memory index. Locked only for short, synchronous work (never across `.await`).
/// Every change bumps a generation that evaluators watch, to re-check devices against the
/// fences as they are now.
#[derive(Debug, Clone)]
pub struct SharedIndex {
    index: Arc<RwLock<FenceIndex>>,
    generation: Arc<watch::Sender<u64>>,
}

impl SharedIndex {
    /// An index at generation 0 (nothing loaded yet).
    pub fn new(index: FenceIndex) -> Self {
        Self {
            index: Arc::new(RwLock::new(index)),
            generation: Arc::new(watch::Sender::new(0)),
        }
    }

    /// A poisoned lock only says a panic happened while it was held; every index operation
    /// leaves the index whole, so it is used as it is.
    pub fn read(&self) -> RwLockReadGuard<'_, FenceIndex> {
        self.index.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes the index and announces a new generation.
    pub fn update<T>(&self, change: impl FnOnce(&mut FenceIndex) -> T) -> T {
        let result = {
            let mut index: RwLockWriteGuard<'_, FenceIndex> =
                self.index.write().unwrap_or_else(PoisonError::into_inner);
            change(&mut index)
        };
        self.generation.send_modify(|g| *g += 1);
        result
    }

    /// Follows the generation: it changes after every update (0 until the first load).
    pub fn generations(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }
}

/// Channel on which writers outside the server (the import CLI) announce fence changes; a
/// running server reloads its index when it hears one.
pub const CHANGED_CHANNEL: &str = "geotrack_fences";

/// Stores `fences` in one transaction and announces the change on [`CHANGED_CHANNEL`]
/// (delivered at commit, so listeners read the new rows).
pub async fn store_and_announce(pool: &PgPool, fences: &[PreparedFence]) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    for fence in fences {
        upsert(&mut tx, fence).await?;
    }
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANGED_CHANNEL)
        .bind(fences.len().to_string())
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

/// Loads every stored fence into a new index.
pub async fn load(pool: &PgPool, limits: &FenceLimits) -> Result<FenceIndex, String> {
    let rows: Vec<(String, serde_json::Value)> =
        sqlx::query_as("SELECT id, definition FROM fences ORDER BY id")
            .fetch_all(pool)
            .await
            .map_err(|e| format!("cannot read fences: {e}"))?;
    let mut index = FenceIndex::new(IndexConfig::default()).map_err(|e| e.to_string())?;
    for (id, definition) in rows {
        let fence: Fence = serde_json::from_value(definition)
            .map_err(|e| format!("stored fence {id} is unreadable: {e}"))?;
        let prepared = PreparedFence::new(fence, limits).map_err(|e| format!("stored fence {id}: {e}"))?;
        index
            .insert(prepared)
            .map_err(|e| format!("stored fence {id}: {e}"))?;
    }
    Ok(index)
}

/// Inserts or replaces `fence` (already validated and prepared) within `tx`.
/// Returns whether a fence with that id existed.
pub async fn upsert(tx: &mut Transaction<'_, Postgres>, fence: &PreparedFence) -> Result<bool, sqlx::Error> {
    let f = fence.fence();
    let (radius_m, buffer_m) = match &f.kind {
        FenceKind::Circle { radius_m, .. } => (Some(*radius_m), None),
        FenceKind::Corridor { buffer_m, .. } => (None, Some(*buffer_m)),
        _ => (None, None),
    };
    let existed: bool = sqlx::query_scalar(
        "WITH old AS (SELECT 1 FROM fences WHERE id = $1)
         INSERT INTO fences (id, name, kind, definition, geom, radius_m, buffer_m, hysteresis_m,
                             dwell_s, speed_limit_mps, properties, updated_at)
         VALUES ($1, $2, $3, $4, ST_Multi(ST_CollectionExtract(ST_MakeValid(ST_GeomFromText($5, 4326)), 3)),
                 $6, $7, $8, $9, $10, $11, now())
         ON CONFLICT (id) DO UPDATE SET
             name = EXCLUDED.name, kind = EXCLUDED.kind, definition = EXCLUDED.definition,
             geom = EXCLUDED.geom, radius_m = EXCLUDED.radius_m, buffer_m = EXCLUDED.buffer_m,
             hysteresis_m = EXCLUDED.hysteresis_m, dwell_s = EXCLUDED.dwell_s,
             speed_limit_mps = EXCLUDED.speed_limit_mps, properties = EXCLUDED.properties,
             updated_at = now()
         RETURNING EXISTS (SELECT 1 FROM old)",
    )
    .bind(&f.id)
    .bind(&f.name)
    .bind(kind_name(&f.kind))
    .bind(serde_json::to_value(f).map_err(|e| sqlx::Error::Encode(Box::new(e)))?)
    .bind(area_wkt(fence.area_polygon()))
    .bind(radius_m)
    .bind(buffer_m)
    .bind(f.hysteresis_m)
    .bind(f.dwell_s.map(|d| i32::try_from(d).unwrap_or(i32::MAX)))
    .bind(f.speed_limit_mps)
    .bind(serde_json::Value::Object(f.properties.clone()))
    .fetch_one(&mut **tx)
    .await?;
    Ok(existed)
}

/// Deletes a fence; returns whether it existed.
pub async fn delete(pool: &PgPool, id: &str) -> Result<bool, sqlx::Error> {
    let result = sqlx::query("DELETE FROM fences WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(result.rows_affected() > 0)
}

/// A new fence id (`f1`, `f2`, ...), for fences created without one.
pub async fn next_id(pool: &PgPool) -> Result<String, sqlx::Error> {
    let n: i64 = sqlx::query_scalar("SELECT nextval('fence_id_seq')")
        .fetch_one(pool)
        .await?;
    Ok(format!("f{n}"))
}

/// Ids of the fences whose area intersects the bbox (antimeridian-crossing when min > max).
pub async fn ids_in_bbox(
    pool: &PgPool,
    [min_lon, min_lat, max_lon, max_lat]: [f64; 4],
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT id FROM fences
         WHERE CASE WHEN $1 <= $3 THEN geom && ST_MakeEnvelope($1, $2, $3, $4, 4326)
                    ELSE geom && ST_MakeEnvelope($1, $2, 180, $4, 4326)
                      OR geom && ST_MakeEnvelope(-180, $2, $3, $4, 4326) END
         ORDER BY id",
    )
    .bind(min_lon)
    .bind(min_lat)
    .bind(max_lon)
    .bind(max_lat)
    .fetch_all(pool)
    .await
}
