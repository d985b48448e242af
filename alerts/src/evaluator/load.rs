//! What an evaluator reads from the database: its stored state at start-up, pages of the
//! positions outbox past its watermark, and a device's last evaluated fix.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::shard_state::{Device, LastFix};
use crate::model::Visit;

/// The shard's watermark and its devices: last fix (from the live table; see
/// [`last_evaluated`] for those with fixes past the watermark), offline mark and visits.
pub async fn shard(
    pool: &PgPool,
    shard: i16,
    shards: usize,
) -> Result<(i64, HashMap<String, Device>), sqlx::Error> {
    let watermark: Option<i64> = sqlx::query_scalar("SELECT seq FROM eval_watermarks WHERE shard = $1")
        .bind(shard)
        .fetch_optional(pool)
        .await?;
    let mine = |device: &str| tracker::shard::shard_of(device, shards) == usize::try_from(shard).unwrap_or(0);
    let rows: Vec<LastRow> = sqlx::query_as(
        "SELECT device, ts, ST_X(geom) AS lon, ST_Y(geom) AS lat, accuracy_m, received_at FROM devices_latest",
    )
    .fetch_all(pool)
    .await?;
    let mut devices: HashMap<String, Device> = rows
        .into_iter()
        .filter(|row| mine(&row.device))
        .map(|row| {
            let d = Device {
                last: Some(row.last_fix()),
                received_ms: row.received_at.timestamp_millis(),
                ..Device::default()
            };
            (row.device, d)
        })
        .collect();
    let offline: Vec<String> = sqlx::query_scalar("SELECT device FROM offline_devices")
        .fetch_all(pool)
        .await?;
    for device in offline {
        if let Some(d) = devices.get_mut(&device) {
            d.offline = true;
        }
    }
    let visits: Vec<(String, String, DateTime<Utc>, bool, bool)> = sqlx::query_as(
        "SELECT device, fence, entered_at, dwell_fired, overspeed_fired FROM fence_states WHERE shard = $1",
    )
    .bind(shard)
    .fetch_all(pool)
    .await?;
    for (device, fence, entered_at, dwell_fired, overspeed_fired) in visits {
        let visit = Visit {
            entered_at_ms: entered_at.timestamp_millis(),
            dwell_fired,
            overspeed_fired,
        };
        devices.entry(device).or_default().visits.push((fence, visit));
    }
    Ok((watermark.unwrap_or(0), devices))
}

type OutboxRow = (
    String,
    DateTime<Utc>,
    f64,
    f64,
    Option<f64>,
    Option<f64>,
    Option<f64>,
    DateTime<Utc>,
    i64,
);

/// Up to `limit` fixes of `shard` with `seq > after`, in `seq` order, and their `seq`.
pub async fn outbox_page(
    pool: &PgPool,
    shard: i16,
    after: i64,
    limit: i64,
) -> Result<(Vec<tracker::Fix>, Vec<i64>), sqlx::Error> {
    let rows: Vec<OutboxRow> = sqlx::query_as(
        "SELECT device, ts, ST_X(geom), ST_Y(geom), speed_mps, heading_deg, accuracy_m, received_at, seq
         FROM positions WHERE shard = $1 AND seq > $2 ORDER BY seq LIMIT $3",
    )
    .bind(shard)
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(device, ts, lon, lat, speed_mps, heading_deg, accuracy_m, received_at, seq)| {
                let fix = tracker::Fix {
                    device,
                    ts,
                    lon,
                    lat,
                    speed_mps,
                    heading_deg,
                    accuracy_m,
                    altitude_m: None,
                    battery: None,
                    attrs: None,
                    received_at,
                };
                (fix, seq)
            },
        )
        .unzip())
}

/// The last evaluated fix of each device: its newest fix with `seq <= watermark` (evaluation
/// skips fixes older than the device's last, so the newest evaluated is the last one).
pub async fn last_evaluated(
    pool: &PgPool,
    devices: &[&str],
    watermark: i64,
) -> Result<HashMap<String, LastFix>, sqlx::Error> {
    if devices.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<LastRow> = sqlx::query_as(
        "SELECT DISTINCT ON (device) device, ts, ST_X(geom) AS lon, ST_Y(geom) AS lat, accuracy_m, received_at
         FROM positions WHERE device = ANY($1) AND seq <= $2
         ORDER BY device, ts DESC",
    )
    .bind(devices)
    .bind(watermark)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| (row.device.clone(), row.last_fix()))
        .collect())
}

/// A device's position as read back from `devices_latest` or `positions`.
#[derive(sqlx::FromRow)]
struct LastRow {
    device: String,
    ts: DateTime<Utc>,
    lon: f64,
    lat: f64,
    accuracy_m: Option<f64>,
    received_at: DateTime<Utc>,
}

impl LastRow {
    fn last_fix(&self) -> LastFix {
        LastFix {
            ts_ms: self.ts.timestamp_millis(),
            pos: [self.lon, self.lat],
            accuracy_m: self.accuracy_m.unwrap_or(0.0),
        }
    }
}
