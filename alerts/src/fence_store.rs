//! Fences in PostgreSQL (`fences` table): the SQL of every fence write and read. Writers
//! change the database first and the in-memory index ([`crate::SharedIndex`]) only after the
//! commit, so the index never holds a fence the database does not; at start-up the index is
//! rebuilt from the table.

use fences::feature::kind_name;
use fences::{Bbox, Fence, FenceIndex, FenceKind, FenceLimits, IndexConfig, PreparedFence};
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, Postgres, Transaction};

use crate::Error;

/// Channel on which every fence writer (the servers of a cluster, the import CLI) announces
/// its changes; every running server updates its index when it hears one.
pub const CHANGED_CHANNEL: &str = "geotrack_fences";
/// Longest list of ids an announcement carries (a NOTIFY payload must stay under 8000 bytes);
/// a longer change is announced as "anything may have changed".
const MAX_ANNOUNCED_BYTES: usize = 6_000;

/// A fence change as announced on [`CHANGED_CHANNEL`]: who made it (a server skips its own) and
/// which fences changed; `None` (or a payload that is not such JSON, as an operator's bare
/// `NOTIFY`) means any fence may have changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Announcement {
    pub origin: String,
    pub ids: Option<Vec<String>>,
}

impl Announcement {
    pub fn parse(payload: &str) -> Self {
        serde_json::from_str(payload).unwrap_or(Self {
            origin: String::new(),
            ids: None,
        })
    }
}

/// Announces in `tx` that the fences `ids` changed (delivered at commit, so listeners read the
/// new rows).
pub async fn announce(
    tx: &mut Transaction<'_, Postgres>,
    origin: &str,
    ids: &[&str],
) -> Result<(), sqlx::Error> {
    let listed = ids.iter().map(|id| id.len() + 3).sum::<usize>() <= MAX_ANNOUNCED_BYTES;
    let announcement = Announcement {
        origin: origin.to_owned(),
        ids: listed.then(|| ids.iter().map(|&id| id.to_owned()).collect()),
    };
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANGED_CHANNEL)
        .bind(serde_json::to_string(&announcement).map_err(|e| sqlx::Error::Encode(Box::new(e)))?)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Stores `fences` in one transaction and announces the change (the import CLI).
pub async fn store_and_announce(pool: &PgPool, fences: &[PreparedFence]) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    for fence in fences {
        upsert(&mut tx, fence).await?;
    }
    let ids: Vec<&str> = fences.iter().map(PreparedFence::id).collect();
    announce(&mut tx, "import", &ids).await?;
    tx.commit().await
}

/// The stored fences among `ids` (id, definition); the others no longer exist.
pub async fn stored_by_ids(pool: &PgPool, ids: &[String]) -> Result<Vec<(String, serde_json::Value)>, Error> {
    Ok(
        sqlx::query_as("SELECT id, definition FROM fences WHERE id = ANY($1) ORDER BY id")
            .bind(ids)
            .fetch_all(pool)
            .await?,
    )
}

/// The stored fences (id, definition), by id.
pub async fn stored(pool: &PgPool) -> Result<Vec<(String, serde_json::Value)>, Error> {
    Ok(sqlx::query_as("SELECT id, definition FROM fences ORDER BY id")
        .fetch_all(pool)
        .await?)
}

/// An index of stored fences. They were validated when written, so they are trusted: their
/// geometry is not checked again (a large fence's check is the slow part of a load), and
/// limits lowered since do not make a stored fence unreadable. CPU-bound: call it off the
/// async workers.
pub fn index(stored: Vec<(String, serde_json::Value)>) -> Result<FenceIndex, Error> {
    let mut index = FenceIndex::new(IndexConfig::default()).map_err(Error::Index)?;
    for (id, definition) in stored {
        let prepared = prepare_stored(&id, definition)?;
        index.insert(prepared).map_err(|e| Error::StoredFence {
            id,
            reason: e.to_string(),
        })?;
    }
    Ok(index)
}

/// Prepares a stored fence, trusted (see [`index`]). CPU-bound.
pub fn prepare_stored(id: &str, definition: serde_json::Value) -> Result<PreparedFence, Error> {
    let trusted = FenceLimits {
        max_vertices: usize::MAX,
        max_radius_m: f64::INFINITY,
        check_validity: false,
    };
    let stored = |reason: String| Error::StoredFence {
        id: id.to_owned(),
        reason,
    };
    let fence: Fence = serde_json::from_value(definition).map_err(|e| stored(e.to_string()))?;
    PreparedFence::new(fence, &trusted).map_err(|e| stored(e.to_string()))
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

/// Deletes a fence within `tx`; returns whether it existed.
pub async fn delete(tx: &mut Transaction<'_, Postgres>, id: &str) -> Result<bool, sqlx::Error> {
    let result = sqlx::query("DELETE FROM fences WHERE id = $1")
        .bind(id)
        .execute(&mut **tx)
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

/// Ids of the fences whose area meets `bbox`, in id order.
pub async fn ids_in_bbox(pool: &PgPool, bbox: Bbox) -> Result<Vec<String>, sqlx::Error> {
    let [west, south, east, north] = bbox.to_array();
    sqlx::query_scalar("SELECT id FROM fences WHERE geotrack_bbox_meets(geom, $1, $2, $3, $4) ORDER BY id")
        .bind(west)
        .bind(south)
        .bind(east)
        .bind(north)
        .fetch_all(pool)
        .await
}

/// The area polygon as WKT for PostGIS (`ST_GeomFromText(wkt, 4326)`).
fn area_wkt(area: &geo::MultiPolygon) -> String {
    use std::fmt::Write as _;
    let mut wkt = String::from("MULTIPOLYGON(");
    for (p, polygon) in area.0.iter().enumerate() {
        wkt.push_str(if p == 0 { "(" } else { ",(" });
        for (r, ring) in std::iter::once(polygon.exterior())
            .chain(polygon.interiors())
            .enumerate()
        {
            wkt.push_str(if r == 0 { "(" } else { ",(" });
            for (i, c) in ring.coords().enumerate() {
                let _ = write!(wkt, "{}{} {}", if i == 0 { "" } else { "," }, c.x, c.y);
            }
            wkt.push(')');
        }
        wkt.push(')');
    }
    wkt.push(')');
    wkt
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn area_wkt_writes_every_ring() {
        let ring = geo::LineString::from(vec![(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 0.0)]);
        let square = geo::Polygon::new(ring, vec![]);
        let wkt = area_wkt(&geo::MultiPolygon(vec![square]));
        assert_eq!(wkt, "MULTIPOLYGON(((0 0,1 0,1 1,0 0)))");
    }
}
