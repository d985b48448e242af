//! Reading live positions (`devices_latest`): the newest fix of each device, as a [`Fix`].

use chrono::{DateTime, Utc};
use fences::{Bbox, DeviceFilter};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::Fix;
use crate::live::LivePosition;

/// The columns of a live position, in [`LatestRow`]'s order.
const COLUMNS: &str = "device, ts, ST_X(geom) AS lon, ST_Y(geom) AS lat, speed_mps, heading_deg,
                accuracy_m, altitude_m, battery, attrs, received_at";

/// A `devices_latest` row as read.
#[derive(sqlx::FromRow)]
struct LatestRow {
    device: String,
    ts: DateTime<Utc>,
    lon: f64,
    lat: f64,
    speed_mps: Option<f64>,
    heading_deg: Option<f64>,
    accuracy_m: Option<f64>,
    altitude_m: Option<f64>,
    battery: Option<f64>,
    attrs: Option<Value>,
    received_at: DateTime<Utc>,
}

impl From<LatestRow> for Fix {
    fn from(row: LatestRow) -> Self {
        Self {
            device: row.device,
            ts: row.ts,
            lon: row.lon,
            lat: row.lat,
            speed_mps: row.speed_mps,
            heading_deg: row.heading_deg,
            accuracy_m: row.accuracy_m,
            altitude_m: row.altitude_m,
            battery: row.battery,
            attrs: match row.attrs {
                Some(Value::Object(map)) => Some(map),
                _ => None,
            },
            received_at: row.received_at,
        }
    }
}

/// A live position as a GeoJSON Feature (id = device, Point geometry, fields as properties).
pub fn to_feature(fix: &Fix) -> Value {
    json!({
        "type": "Feature",
        "id": fix.device,
        "geometry": {"type": "Point", "coordinates": [fix.lon, fix.lat]},
        "properties": {
            "device": fix.device,
            "ts": fix.ts,
            "speed_mps": fix.speed_mps,
            "heading_deg": fix.heading_deg,
            "accuracy_m": fix.accuracy_m,
            "altitude_m": fix.altitude_m,
            "battery": fix.battery,
            "attrs": fix.attrs,
            "received_at": fix.received_at,
        }
    })
}

/// The live position of `device`, if it ever reported.
pub async fn get(pool: &PgPool, device: &str) -> Result<Option<Fix>, sqlx::Error> {
    let row: Option<LatestRow> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM devices_latest WHERE device = $1"))
            .bind(device)
            .fetch_optional(pool)
            .await?;
    Ok(row.map(Fix::from))
}

/// A `devices_latest` row reduced to a [`LivePosition`].
#[derive(sqlx::FromRow)]
struct LiveRow {
    device: String,
    ts: DateTime<Utc>,
    lon: f64,
    lat: f64,
    speed_mps: Option<f64>,
    heading_deg: Option<f64>,
}

/// The live position of every device, for in-memory indexes (`dispatch`) to load.
pub async fn all_live(pool: &PgPool) -> Result<Vec<LivePosition>, sqlx::Error> {
    let rows: Vec<LiveRow> = sqlx::query_as(
        "SELECT device, ts, ST_X(geom) AS lon, ST_Y(geom) AS lat, speed_mps, heading_deg FROM devices_latest",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| LivePosition {
            device: row.device,
            ts: row.ts,
            position: [row.lon, row.lat],
            speed_mps: row.speed_mps,
            heading_deg: row.heading_deg,
        })
        .collect())
}

/// A page of the device list.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Only devices whose id sorts after this one (the previous page's last id).
    pub after: Option<String>,
    /// Page size.
    pub limit: i64,
    pub bbox: Option<Bbox>,
    /// The devices a token is limited to; `None` for all devices.
    pub devices: Option<DeviceFilter>,
}

/// Live positions in device-id order (keyset paging: stable while devices report).
pub async fn list(pool: &PgPool, query: &ListQuery) -> Result<Vec<Fix>, sqlx::Error> {
    let [west, south, east, north] = query.bbox.map_or([None; 4], |b| b.to_array().map(Some));
    let (exact, patterns) = query
        .devices
        .as_ref()
        .map(|d| (d.exact(), d.like_patterns()))
        .unzip();
    let rows: Vec<LatestRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS}
         FROM devices_latest
         WHERE ($1::text IS NULL OR device > $1)
           AND ($2::float8 IS NULL OR geotrack_bbox_meets(geom, $2, $3, $4, $5))
           AND ($6::text[] IS NULL OR device = ANY($6) OR device LIKE ANY($7))
         ORDER BY device
         LIMIT $8"
    ))
    .bind(query.after.as_deref())
    .bind(west)
    .bind(south)
    .bind(east)
    .bind(north)
    .bind(exact)
    .bind(patterns)
    .bind(query.limit)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(Fix::from).collect())
}

/// What erasing a device removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Erased {
    pub positions: u64,
    pub device_known: bool,
}

/// Removes what ingest stored about `device` (history, live position, registration) within the
/// caller's transaction, so the caller can erase what other parts of the service keep about the
/// device in the same commit: the right to be forgotten.
pub async fn erase(conn: &mut sqlx::PgConnection, device: &str) -> Result<Erased, sqlx::Error> {
    let positions = sqlx::query("DELETE FROM positions WHERE device = $1")
        .bind(device)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    let latest = sqlx::query("DELETE FROM devices_latest WHERE device = $1")
        .bind(device)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    let registered = sqlx::query("DELETE FROM devices WHERE id = $1")
        .bind(device)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    Ok(Erased {
        positions,
        device_known: positions + latest + registered > 0,
    })
}
