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
