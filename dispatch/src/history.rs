//! Reports from the position history: a device's fixes in a time range, streamed oldest first
//! from `positions` into a [`Segmenter`], so memory stays flat however long the range.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio_stream::StreamExt;

use crate::trips::{Report, Segmenter, TrackPoint, TripRules};

/// A fix as the segmentation reads it.
#[derive(sqlx::FromRow)]
struct Row {
    ts: DateTime<Utc>,
    lon: f64,
    lat: f64,
    speed_mps: Option<f64>,
}

/// The trips, stops and summary of `device` over `from <= ts < to`.
pub async fn report(
    pool: &PgPool,
    device: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    rules: TripRules,
) -> Result<Report, sqlx::Error> {
    let mut rows = sqlx::query_as::<_, Row>(
        "SELECT ts, ST_X(geom) AS lon, ST_Y(geom) AS lat, speed_mps
         FROM positions WHERE device = $1 AND ts >= $2 AND ts < $3 ORDER BY ts",
    )
    .bind(device)
    .bind(from)
    .bind(to)
    .fetch(pool);
    let mut segmenter = Segmenter::new(rules);
    while let Some(row) = rows.next().await {
        let row = row?;
        segmenter.push(TrackPoint {
            ts: row.ts,
            lon: row.lon,
            lat: row.lat,
            speed_mps: row.speed_mps,
        });
    }
    Ok(segmenter.finish())
}
