//! The `proximity_rules` table (each write announced with `NOTIFY geotrack_proximity` in its
//! transaction, so every server reloads its [`Rules`](super::Rules)), and reading the stored
//! near pairs (`proximity_pairs`, written by the alert writer with the alerts that change them).

use chrono::{DateTime, Utc};
use fences::AppliesTo;
use serde_json::Value;
use sqlx::PgPool;

use super::rule::ProximityRule;
use super::state::PairKey;

/// The channel rule writes are announced on (the payload names the writer, `Rules::origin`;
/// listeners reload every rule, a small table, unless they wrote it).
pub const CHANNEL: &str = "geotrack_proximity";

/// A `proximity_rules` row as read.
#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    name: String,
    devices: Value,
    near: Value,
    radius_m: f64,
    hysteresis_m: f64,
}

/// Every rule. A row whose sides cannot be read (written by hand) is skipped with a warning.
pub async fn load(pool: &PgPool) -> Result<Vec<ProximityRule>, sqlx::Error> {
    let rows: Vec<Row> =
        sqlx::query_as("SELECT id, name, devices, near, radius_m, hysteresis_m FROM proximity_rules")
            .fetch_all(pool)
            .await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| {
            let sides = AppliesTo::from_entries(&row.devices)
                .and_then(|devices| AppliesTo::from_entries(&row.near).map(|near| (devices, near)));
            match sides {
                Ok((devices, near)) => Some(ProximityRule {
                    id: row.id,
                    name: row.name,
                    devices,
                    near,
                    radius_m: row.radius_m,
                    hysteresis_m: row.hysteresis_m,
                }),
                Err(error) => {
                    tracing::warn!(rule = %row.id, error, "proximity rule with unreadable sides skipped");
                    None
                }
            }
        })
        .collect())
}

/// Creates or replaces `rule`, announced as written by `origin`; whether it was created.
pub async fn put(pool: &PgPool, rule: &ProximityRule, origin: &str) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let created: bool = sqlx::query_scalar(
        "INSERT INTO proximity_rules (id, name, devices, near, radius_m, hysteresis_m)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, devices = EXCLUDED.devices,
             near = EXCLUDED.near, radius_m = EXCLUDED.radius_m,
             hysteresis_m = EXCLUDED.hysteresis_m, updated_at = now()
         RETURNING xmax = 0",
    )
    .bind(&rule.id)
    .bind(&rule.name)
    .bind(rule.devices.to_entries())
    .bind(rule.near.to_entries())
    .bind(rule.radius_m)
    .bind(rule.hysteresis_m)
    .fetch_one(&mut *tx)
    .await?;
    crate::announce::announce(&mut tx, CHANNEL, origin).await?;
    tx.commit().await?;
    Ok(created)
}

/// Deletes the rule `id`, announced as written by `origin`; whether it existed. Its near pairs
/// are dropped by the evaluator.
pub async fn delete(pool: &PgPool, id: &str, origin: &str) -> Result<bool, sqlx::Error> {
    crate::announce::delete(pool, "proximity_rules", id, (CHANNEL, origin)).await
}

/// Every stored near pair, with since when it is near.
pub async fn near_pairs(pool: &PgPool) -> Result<Vec<(PairKey, DateTime<Utc>)>, sqlx::Error> {
    let rows: Vec<(String, String, String, DateTime<Utc>)> =
        sqlx::query_as("SELECT rule, device, other, since FROM proximity_pairs")
            .fetch_all(pool)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(rule, device, other, since)| (PairKey { rule, device, other }, since))
        .collect())
}
