//! Fences in PostgreSQL (`fences` table): the SQL of every fence write and read. Writers
//! change the database first and the in-memory index ([`crate::SharedIndex`]) only after the
//! commit, so the index never holds a fence the database does not; at start-up the index is
//! rebuilt from the table.

use fences::feature::kind_name;
use fences::{Bbox, Fence, FenceIndex, FenceKind, FenceLimits, IndexConfig, IndexedFence, PreparedFence};
use rayon::prelude::*;
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

/// Stores `fences` in one transaction and announces the change as `origin` (a server's fence
/// registry, the import CLI).
pub async fn store_and_announce(
    pool: &PgPool,
    origin: &str,
    fences: &[&PreparedFence],
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    upsert(&mut tx, fences).await?;
    let ids: Vec<&str> = fences.iter().map(|f| f.id()).collect();
    announce(&mut tx, origin, &ids).await?;
    tx.commit().await
}

/// The version of a stored fence: the MD5 of its definition as PostgreSQL writes it (`jsonb`
/// text, keys sorted), so every node computes the same one from the row, whoever wrote it.
const VERSION: &str = "md5(definition::text)";

/// What a conditional write found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conditional {
    /// Written (or deleted). `previous`: the version the condition was checked against (`None`:
    /// the fence was not stored, so this write created it); `version`: the new one (`None`
    /// after a delete). Both are the database's, read under the lock, whatever this node's
    /// index holds yet.
    Done {
        previous: Option<String>,
        version: Option<String>,
    },
    /// The stored version (`None`: no such fence) did not satisfy the condition: nothing written.
    Refused(Option<String>),
}

/// Stores and announces one fence if `accept` accepts its stored version (`None` when there is
/// none), in one transaction that holds the fence's row (and, for a fence not yet stored, an
/// advisory lock on its id) from the check to the commit, so two nodes cannot both pass the
/// same check.
pub async fn store_if(
    pool: &PgPool,
    origin: &str,
    fence: &PreparedFence,
    accept: impl FnOnce(Option<&str>) -> bool,
) -> Result<Conditional, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let current = lock_version(&mut tx, fence.id()).await?;
    if !accept(current.as_deref()) {
        return Ok(Conditional::Refused(current));
    }
    upsert(&mut tx, &[fence]).await?;
    announce(&mut tx, origin, &[fence.id()]).await?;
    let version = sqlx::query_scalar(&format!("SELECT {VERSION} FROM fences WHERE id = $1"))
        .bind(fence.id())
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Conditional::Done {
        previous: current,
        version: Some(version),
    })
}

/// Deletes and announces the fence `id` if `accept` accepts its stored version; `Refused(None)`
/// when there is no such fence (and `accept` took that).
pub async fn delete_if(
    pool: &PgPool,
    origin: &str,
    id: &str,
    accept: impl FnOnce(Option<&str>) -> bool,
) -> Result<Conditional, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let current = lock_version(&mut tx, id).await?;
    if current.is_none() || !accept(current.as_deref()) {
        return Ok(Conditional::Refused(current));
    }
    delete(&mut tx, id).await?;
    announce(&mut tx, origin, &[id]).await?;
    tx.commit().await?;
    Ok(Conditional::Done {
        previous: current,
        version: None,
    })
}

/// The version of the fence `id` within `tx`, its row locked (and its id, in case it has no row
/// yet) until `tx` ends.
async fn lock_version(tx: &mut Transaction<'_, Postgres>, id: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('geotrack.fence:' || $1, 0))")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    sqlx::query_scalar(&format!("SELECT {VERSION} FROM fences WHERE id = $1 FOR UPDATE"))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
}

/// The stored fence `id` (its definition) and its version.
pub async fn stored_with_version(
    pool: &PgPool,
    id: &str,
) -> Result<Option<(serde_json::Value, String)>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT definition, {VERSION} FROM fences WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await
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
/// limits lowered since do not make a stored fence unreadable. CPU-bound, on every core: call
/// it off the async workers.
pub fn index(stored: Vec<(String, serde_json::Value)>) -> Result<FenceIndex, Error> {
    let mut index = FenceIndex::new(IndexConfig::default()).map_err(Error::Index)?;
    for fence in index_stored(stored, index.config())? {
        index.put(fence);
    }
    Ok(index)
}

/// Stored fences prepared and built for an index with `config`, on every core (see [`index`]).
pub fn index_stored(
    stored: Vec<(String, serde_json::Value)>,
    config: &IndexConfig,
) -> Result<Vec<IndexedFence>, Error> {
    stored
        .into_par_iter()
        .map(|(id, definition)| {
            let prepared = prepare_stored(&id, definition)?;
            IndexedFence::new(prepared, config).map_err(|e| Error::StoredFence {
                id,
                reason: e.to_string(),
            })
        })
        .collect()
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

/// Fences written per statement: one round trip for many small fences, and no statement
/// holding more than a few hundred large ones.
const UPSERT_CHUNK: usize = 500;

/// Inserts or replaces `fences` (already validated and prepared) within `tx`, a few hundred per
/// statement (an import of 100,000 circles is 200 round trips, not 100,000). A circle's area is
/// one convex ring drawn here, stored as it is; a corridor's is one capsule per segment, which
/// overlap at every joint, so PostGIS unites them (`ST_MakeValid` read the overlaps as holes:
/// a bent corridor was stored as 69 pieces, its joints cut out, and took 5 ms against 0.4);
/// polygons, already checked, go through `ST_MakeValid` as a last guard.
pub async fn upsert(
    tx: &mut Transaction<'_, Postgres>,
    fences: &[&PreparedFence],
) -> Result<(), sqlx::Error> {
    for chunk in fences.chunks(UPSERT_CHUNK) {
        let mut rows = Rows::default();
        for fence in chunk {
            rows.push(fence)?;
        }
        sqlx::query(
            "INSERT INTO fences (id, name, kind, definition, geom, radius_m, buffer_m, hysteresis_m,
                                 dwell_s, speed_limit_mps, properties, updated_at)
             SELECT id, name, kind, definition::jsonb,
                    CASE kind WHEN 'circle' THEN ST_GeomFromWKB(wkb, 4326)
                              WHEN 'corridor' THEN ST_Multi(ST_UnaryUnion(ST_GeomFromWKB(wkb, 4326)))
                              ELSE ST_Multi(ST_CollectionExtract(ST_MakeValid(ST_GeomFromWKB(wkb, 4326)), 3)) END,
                    radius_m, buffer_m, hysteresis_m, dwell_s, speed_limit_mps, properties::jsonb, now()
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bytea[], $6::float8[],
                         $7::float8[], $8::float8[], $9::int4[], $10::float8[], $11::text[])
                  AS r(id, name, kind, definition, wkb, radius_m, buffer_m, hysteresis_m, dwell_s,
                       speed_limit_mps, properties)
             ON CONFLICT (id) DO UPDATE SET
                 name = EXCLUDED.name, kind = EXCLUDED.kind, definition = EXCLUDED.definition,
                 geom = EXCLUDED.geom, radius_m = EXCLUDED.radius_m, buffer_m = EXCLUDED.buffer_m,
                 hysteresis_m = EXCLUDED.hysteresis_m, dwell_s = EXCLUDED.dwell_s,
                 speed_limit_mps = EXCLUDED.speed_limit_mps, properties = EXCLUDED.properties,
                 updated_at = now()",
        )
        .bind(rows.id)
        .bind(rows.name)
        .bind(rows.kind)
        .bind(rows.definition)
        .bind(rows.wkb)
        .bind(rows.radius_m)
        .bind(rows.buffer_m)
        .bind(rows.hysteresis_m)
        .bind(rows.dwell_s)
        .bind(rows.speed_limit_mps)
        .bind(rows.properties)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// The columns of an [`upsert`] statement, one array each.
#[derive(Default)]
struct Rows {
    id: Vec<String>,
    name: Vec<String>,
    kind: Vec<&'static str>,
    definition: Vec<String>,
    wkb: Vec<Vec<u8>>,
    radius_m: Vec<Option<f64>>,
    buffer_m: Vec<Option<f64>>,
    hysteresis_m: Vec<f64>,
    dwell_s: Vec<Option<i32>>,
    speed_limit_mps: Vec<Option<f64>>,
    properties: Vec<String>,
}

impl Rows {
    fn push(&mut self, fence: &PreparedFence) -> Result<(), sqlx::Error> {
        let f = fence.fence();
        let (radius_m, buffer_m) = match &f.kind {
            FenceKind::Circle { radius_m, .. } => (Some(*radius_m), None),
            FenceKind::Corridor { buffer_m, .. } => (None, Some(*buffer_m)),
            _ => (None, None),
        };
        self.id.push(f.id.clone());
        self.name.push(f.name.clone());
        self.kind.push(kind_name(&f.kind));
        self.definition.push(json_text(f)?);
        self.wkb.push(area_wkb(fence.area_polygon()));
        self.radius_m.push(radius_m);
        self.buffer_m.push(buffer_m);
        self.hysteresis_m.push(f.hysteresis_m);
        self.dwell_s
            .push(f.dwell_s.map(|d| i32::try_from(d).unwrap_or(i32::MAX)));
        self.speed_limit_mps.push(f.speed_limit_mps);
        self.properties.push(json_text(&f.properties)?);
        Ok(())
    }
}

fn json_text(value: &impl Serialize) -> Result<String, sqlx::Error> {
    serde_json::to_string(value).map_err(|e| sqlx::Error::Encode(Box::new(e)))
}

/// Deletes a fence within `tx`; returns whether it existed.
pub async fn delete(tx: &mut Transaction<'_, Postgres>, id: &str) -> Result<bool, sqlx::Error> {
    let result = sqlx::query("DELETE FROM fences WHERE id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(result.rows_affected() > 0)
}

/// A new fence id (`f1`, `f2`, ...), for a fence created without one.
pub async fn next_id(pool: &PgPool) -> Result<String, sqlx::Error> {
    Ok(next_ids(pool, 1).await?.remove(0))
}

/// `count` new fence ids, for the fences of an import that have none.
pub async fn next_ids(pool: &PgPool, count: usize) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT 'f' || nextval('fence_id_seq') FROM generate_series(1, $1)")
        .bind(i64::try_from(count).unwrap_or(i64::MAX))
        .fetch_all(pool)
        .await
}

/// Ids of the fences whose area meets `bbox`, after `after` in byte order (the order of the
/// index's pages), at most `limit`.
pub async fn ids_in_bbox(
    pool: &PgPool,
    bbox: Bbox,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<String>, sqlx::Error> {
    let [west, south, east, north] = bbox.to_array();
    sqlx::query_scalar(
        "SELECT id FROM fences WHERE geotrack_bbox_meets(geom, $1, $2, $3, $4)
           AND ($5::text IS NULL OR id COLLATE \"C\" > $5)
         ORDER BY id COLLATE \"C\" LIMIT $6",
    )
    .bind(west)
    .bind(south)
    .bind(east)
    .bind(north)
    .bind(after)
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(pool)
    .await
}

/// The area polygon as little-endian WKB for PostGIS (`ST_GeomFromWKB(wkb, 4326)`): PostGIS
/// reads it about 20 times faster than WKT (9 ms against 164 ms for the 1:10m countries).
fn area_wkb(area: &geo::MultiPolygon) -> Vec<u8> {
    const LITTLE_ENDIAN: u8 = 1;
    const POLYGON: u32 = 3;
    const MULTIPOLYGON: u32 = 6;
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
    let mut wkb = Vec::with_capacity(
        9 + area
            .0
            .iter()
            .map(|p| 9 + 16 * p.exterior().0.len())
            .sum::<usize>(),
    );
    wkb.push(LITTLE_ENDIAN);
    wkb.extend(MULTIPOLYGON.to_le_bytes());
    wkb.extend(count(area.0.len()));
    for polygon in &area.0 {
        wkb.push(LITTLE_ENDIAN);
        wkb.extend(POLYGON.to_le_bytes());
        wkb.extend(count(1 + polygon.interiors().len()));
        for ring in std::iter::once(polygon.exterior()).chain(polygon.interiors()) {
            wkb.extend(count(ring.0.len()));
            for c in ring.coords() {
                wkb.extend(c.x.to_le_bytes());
                wkb.extend(c.y.to_le_bytes());
            }
        }
    }
    wkb
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn area_wkb_writes_every_ring() {
        let ring = geo::LineString::from(vec![(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 0.0)]);
        let square = geo::Polygon::new(ring, vec![]);
        let wkb = area_wkb(&geo::MultiPolygon(vec![square]));
        // Header (1 + 4), 1 polygon (4); polygon header (1 + 4), 1 ring (4); 4 points (4 + 64).
        assert_eq!(wkb.len(), 9 + 9 + 4 + 64);
        assert_eq!(&wkb[..9], &[1, 6, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(&wkb[9..22], &[1, 3, 0, 0, 0, 1, 0, 0, 0, 4, 0, 0, 0]);
        assert_eq!(
            &wkb[22 + 16..22 + 32],
            [1.0f64.to_le_bytes(), 0.0f64.to_le_bytes()].concat().as_slice()
        );
    }
}
