//! Reading live positions (`devices_latest`): the newest fix of each device.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::PgPool;

/// The newest stored fix of one device.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct LatestPosition {
    pub device: String,
    pub ts: DateTime<Utc>,
    pub lon: f64,
    pub lat: f64,
    pub speed_mps: Option<f64>,
    pub heading_deg: Option<f64>,
    pub accuracy_m: Option<f64>,
    pub altitude_m: Option<f64>,
    pub battery: Option<f64>,
    pub attrs: Option<Value>,
    pub received_at: DateTime<Utc>,
}

impl LatestPosition {
    /// The position as a GeoJSON Feature (id = device, Point geometry, fields as properties).
    pub fn to_feature(&self) -> Value {
        json!({
            "type": "Feature",
            "id": self.device,
            "geometry": {"type": "Point", "coordinates": [self.lon, self.lat]},
            "properties": {
                "device": self.device,
                "ts": self.ts,
                "speed_mps": self.speed_mps,
                "heading_deg": self.heading_deg,
                "accuracy_m": self.accuracy_m,
                "altitude_m": self.altitude_m,
                "battery": self.battery,
                "attrs": self.attrs,
                "received_at": self.received_at,
            }
        })
    }
}

/// The live position of `device`, if it ever reported.
pub async fn get(pool: &PgPool, device: &str) -> Result<Option<LatestPosition>, sqlx::Error> {
    sqlx::query_as(
        "SELECT device, ts, ST_X(geom) AS lon, ST_Y(geom) AS lat, speed_mps, heading_deg,
                accuracy_m, altitude_m, battery, attrs, received_at
         FROM devices_latest WHERE device = $1",
    )
    .bind(device)
    .fetch_optional(pool)
    .await
}

/// A page of the device list.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Only devices whose id sorts after this one (the previous page's last id).
    pub after: Option<String>,
    /// Page size.
    pub limit: i64,
    /// `[min_lon, min_lat, max_lon, max_lat]`; `min_lon > max_lon` crosses the antimeridian.
    pub bbox: Option<[f64; 4]>,
    /// Exact ids and `LIKE` patterns a token is limited to; `None` for all devices.
    pub devices: Option<(Vec<String>, Vec<String>)>,
}

/// Live positions in device-id order (keyset paging: stable while devices report).
pub async fn list(pool: &PgPool, query: &ListQuery) -> Result<Vec<LatestPosition>, sqlx::Error> {
    let [min_lon, min_lat, max_lon, max_lat] = query.bbox.map_or([None; 4], |b| b.map(Some));
    let (exact, patterns) = query.devices.clone().unzip();
    sqlx::query_as(
        "SELECT device, ts, ST_X(geom) AS lon, ST_Y(geom) AS lat, speed_mps, heading_deg,
                accuracy_m, altitude_m, battery, attrs, received_at
         FROM devices_latest
         WHERE ($1::text IS NULL OR device > $1)
           AND ($2::float8 IS NULL OR CASE
                WHEN $2 <= $4 THEN geom && ST_MakeEnvelope($2, $3, $4, $5, 4326)
                ELSE geom && ST_MakeEnvelope($2, $3, 180, $5, 4326)
                  OR geom && ST_MakeEnvelope(-180, $3, $4, $5, 4326) END)
           AND ($6::text[] IS NULL OR device = ANY($6) OR device LIKE ANY($7))
         ORDER BY device
         LIMIT $8",
    )
    .bind(query.after.as_deref())
    .bind(min_lon)
    .bind(min_lat)
    .bind(max_lon)
    .bind(max_lat)
    .bind(exact)
    .bind(patterns)
    .bind(query.limit)
    .fetch_all(pool)
    .await
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
