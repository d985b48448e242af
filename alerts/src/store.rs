//! The `alerts` table and the evaluation state stored with it (`fence_states`,
//! `offline_devices`, `proximity_pairs`, `eval_watermarks`, `webhook_deliveries`): writing one
//! group of [`Changes`] in a transaction, and reading alerts back in cursor order.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use dispatch::roam::PairKey;
use fences::DeviceFilter;
use sqlx::{PgPool, Postgres, Transaction};

use crate::model::{Alert, AlertKind, Changes, Event, NewAlert, Proximity, Visit, time_of_ms};

/// Which alerts to read: those after the cursor `since`, optionally only some devices, fences,
/// proximity rules or kinds, and only devices a token may see.
#[derive(Debug, Clone, Default)]
pub struct AlertQuery {
    pub since: i64,
    pub limit: i64,
    /// Alerts naming any of these devices (a proximity alert names two).
    pub devices: Vec<String>,
    pub fences: Vec<String>,
    pub rules: Vec<String>,
    pub kinds: Vec<AlertKind>,
    /// The devices a token is limited to; `None` for all devices. A proximity alert is shown
    /// only when both its devices are allowed.
    pub allowed: Option<DeviceFilter>,
}

impl AlertQuery {
    /// Whether a live alert passes the same filters as the SQL in [`page`].
    pub fn matches(&self, alert: &Alert, allows_device: impl Fn(&str) -> bool) -> bool {
        let event = &alert.event;
        let other = event.proximity.as_ref().map(|p| &p.other);
        let named = |list: &Vec<String>, id: Option<&String>| id.is_some_and(|id| list.contains(id));
        alert.id > self.since
            && (self.devices.is_empty()
                || self.devices.contains(&event.device)
                || named(&self.devices, other))
            && (self.fences.is_empty() || named(&self.fences, event.fence.as_ref()))
            && (self.rules.is_empty() || named(&self.rules, event.proximity.as_ref().map(|p| &p.rule)))
            && (self.kinds.is_empty() || self.kinds.contains(&event.kind))
            && allows_device(&event.device)
            && other.is_none_or(|other| allows_device(other))
    }
}

/// An `alerts` row as [`ALERT_COLUMNS`] reads it.
#[derive(sqlx::FromRow)]
struct AlertRow {
    id: i64,
    device: String,
    fence: Option<String>,
    fence_name: Option<String>,
    kind: String,
    ts: DateTime<Utc>,
    lon: Option<f64>,
    lat: Option<f64>,
    speed_mps: Option<f64>,
    interpolated: bool,
    received_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    rule: Option<String>,
    other_device: Option<String>,
    distance_m: Option<f64>,
}

/// The columns of an [`AlertRow`].
const ALERT_COLUMNS: &str = "id, device, fence, fence_name, kind, ts, ST_X(geom) AS lon, ST_Y(geom) AS lat,
    speed_mps, interpolated, received_at, created_at, rule, other_device, distance_m";

/// Alerts matching `query`, in id order.
pub async fn page(pool: &PgPool, query: &AlertQuery) -> Result<Vec<Alert>, sqlx::Error> {
    let kinds: Vec<&str> = query.kinds.iter().map(|k| k.as_str()).collect();
    let (exact, patterns) = query
        .allowed
        .as_ref()
        .map(|d| (d.exact(), d.like_patterns()))
        .unzip();
    let sql = format!(
        "SELECT {ALERT_COLUMNS}
         FROM alerts
         WHERE id > $1
           AND (cardinality($2::text[]) = 0 OR device = ANY($2) OR other_device = ANY($2))
           AND (cardinality($3::text[]) = 0 OR fence = ANY($3))
           AND (cardinality($4::text[]) = 0 OR kind = ANY($4))
           AND ($5::text[] IS NULL OR ((device = ANY($5) OR device LIKE ANY($6))
                AND (other_device IS NULL OR other_device = ANY($5) OR other_device LIKE ANY($6))))
           AND (cardinality($7::text[]) = 0 OR rule = ANY($7))
         ORDER BY id
         LIMIT $8"
    );
    let rows: Vec<AlertRow> = sqlx::query_as(&sql)
        .bind(query.since)
        .bind(&query.devices)
        .bind(&query.fences)
        .bind(&kinds)
        .bind(exact)
        .bind(patterns)
        .bind(&query.rules)
        .bind(query.limit)
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().map(alert_of_row).collect())
}

fn alert_of_row(row: AlertRow) -> Alert {
    let proximity = row.rule.zip(row.other_device).map(|(rule, other)| Proximity {
        rule,
        other,
        distance_m: row.distance_m.unwrap_or(0.0),
    });
    Alert {
        id: row.id,
        event: Event {
            device: row.device,
            fence: row.fence,
            fence_name: row.fence_name,
            // The table's CHECK constraint allows only known kinds.
            kind: AlertKind::parse(&row.kind).unwrap_or(AlertKind::Enter),
            ts: row.ts,
            position: row.lon.zip(row.lat).map(|(x, y)| [x, y]),
            speed_mps: row.speed_mps,
            interpolated: row.interpolated,
            received_at: row.received_at,
            proximity,
        },
        created_at: row.created_at,
    }
}

/// The alerts with these ids (those that still exist), in id order.
pub async fn by_ids(pool: &PgPool, ids: &[i64]) -> Result<Vec<Alert>, sqlx::Error> {
    let sql = format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = ANY($1) ORDER BY id");
    let rows: Vec<AlertRow> = sqlx::query_as(&sql).bind(ids).fetch_all(pool).await?;
    Ok(rows.into_iter().map(alert_of_row).collect())
}

/// The id of the newest alert (0 when there is none).
pub async fn newest_id(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM alerts")
        .fetch_one(pool)
        .await
}

/// Changes of several evaluation steps merged into one write: later steps win for the same
/// (device, fence), device or pair, watermarks keep the highest per shard, alerts keep their
/// order.
#[derive(Debug, Default)]
pub struct Merged {
    visits: HashMap<(String, String), (i16, Option<Visit>)>,
    offline: HashMap<String, Option<DateTime<Utc>>>,
    pairs: HashMap<PairKey, Option<DateTime<Utc>>>,
    watermarks: HashMap<i16, i64>,
    pub alerts: Vec<NewAlert>,
}

impl Merged {
    pub fn add(&mut self, changes: &Changes) {
        for (key, visit) in &changes.visits {
            self.visits.insert(key.clone(), (changes.shard, *visit));
        }
        self.offline.extend(changes.offline.iter().cloned());
        self.pairs.extend(changes.pairs.iter().cloned());
        if let Some(seq) = changes.watermark {
            let mark = self.watermarks.entry(changes.shard).or_insert(seq);
            *mark = (*mark).max(seq);
        }
        self.alerts.extend(changes.alerts.iter().cloned());
    }

    pub fn is_empty(&self) -> bool {
        self.visits.is_empty()
            && self.offline.is_empty()
            && self.pairs.is_empty()
            && self.watermarks.is_empty()
            && self.alerts.is_empty()
    }
}

/// Channel notified (with the newest alert id) by every commit that stores alerts.
pub const ALERTS_CHANNEL: &str = "geotrack_alerts";

/// Serialises alert commits across every process of a database: ids are drawn and committed in
/// the same order, so a reader that has seen alert N has seen every alert before it, and a
/// cursor never skips an alert that commits later. Taken first in the transaction.
pub async fn lock_alert_order(tx: &mut Transaction<'_, Postgres>) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('geotrack.alerts'))")
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Cluster mode: which of these (shard, epoch) pairs still own their shard, locking their
/// `partition_owners` rows until the transaction ends so no newer owner can claim them before
/// it commits.
pub async fn owning(
    tx: &mut Transaction<'_, Postgres>,
    claims: &[(i16, i64)],
) -> Result<Vec<(i16, i64)>, sqlx::Error> {
    let (shards, epochs): (Vec<i16>, Vec<i64>) = claims.iter().copied().unzip();
    sqlx::query_as(
        "SELECT partition, epoch FROM partition_owners
         WHERE (partition, epoch) IN (SELECT * FROM unnest($1::int2[], $2::int8[]))
         FOR SHARE",
    )
    .bind(&shards)
    .bind(&epochs)
    .fetch_all(&mut **tx)
    .await
}

/// Which commit of which writer a transaction is (see `alert_commit_marks`).
#[derive(Debug, Clone, Copy)]
pub struct Mark<'a> {
    pub writer: &'a str,
    pub commit_id: i64,
}

/// Records `mark` in `tx`, with the ids of the alerts it stores.
pub async fn record_mark(
    tx: &mut Transaction<'_, Postgres>,
    mark: Mark<'_>,
    alerts: &[Alert],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO alert_commit_marks (writer, commit_id, first_id, last_id) VALUES ($1, $2, $3, $4)
         ON CONFLICT (writer) DO UPDATE SET commit_id = EXCLUDED.commit_id,
             first_id = EXCLUDED.first_id, last_id = EXCLUDED.last_id, at = now()",
    )
    .bind(mark.writer)
    .bind(mark.commit_id)
    .bind(alerts.first().map(|a| a.id))
    .bind(alerts.last().map(|a| a.id))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Whether the commit `mark` happened (its answer may have been lost); if so, its alerts.
/// They are contiguous: alert commits are serialised ([`lock_alert_order`]).
pub async fn committed(pool: &PgPool, mark: Mark<'_>) -> Result<Option<Vec<Alert>>, sqlx::Error> {
    let row: Option<(Option<i64>, Option<i64>)> = sqlx::query_as(
        "SELECT first_id, last_id FROM alert_commit_marks WHERE writer = $1 AND commit_id = $2",
    )
    .bind(mark.writer)
    .bind(mark.commit_id)
    .fetch_optional(pool)
    .await?;
    match row {
        None => Ok(None),
        Some((Some(first), Some(last))) => {
            let ids: Vec<i64> = (first..=last).collect();
            by_ids(pool, &ids).await.map(Some)
        }
        Some(_) => Ok(Some(Vec::new())),
    }
}

/// Drops the marks of writers silent for a week (processes long gone); returns how many.
pub async fn prune_marks(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("DELETE FROM alert_commit_marks WHERE at < now() - interval '7 days'")
        .execute(pool)
        .await?;
    Ok(done.rows_affected())
}

/// Writes merged changes in `tx`; returns the stored alerts in id order.
/// `webhooks` are the URLs every alert is delivered to, besides its fence's own.
pub async fn write(
    tx: &mut Transaction<'_, Postgres>,
    merged: &Merged,
    webhooks: &[String],
) -> Result<Vec<Alert>, sqlx::Error> {
    write_visits(tx, merged).await?;
    write_offline(tx, merged).await?;
    write_pairs(tx, merged).await?;
    let alerts = insert_alerts(tx, &merged.alerts).await?;
    queue_webhooks(tx, &merged.alerts, &alerts, webhooks).await?;
    if let Some(newest) = alerts.last() {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(ALERTS_CHANNEL)
            .bind(newest.id.to_string())
            .execute(&mut **tx)
            .await?;
    }
    let (shards, seqs): (Vec<i16>, Vec<i64>) = merged.watermarks.iter().map(|(s, q)| (*s, *q)).unzip();
    if !shards.is_empty() {
        sqlx::query(
            "INSERT INTO eval_watermarks (shard, seq) SELECT * FROM unnest($1::int2[], $2::int8[])
             ON CONFLICT (shard) DO UPDATE SET seq = GREATEST(eval_watermarks.seq, EXCLUDED.seq)",
        )
        .bind(&shards)
        .bind(&seqs)
        .execute(&mut **tx)
        .await?;
    }
    Ok(alerts)
}

/// Visits to store, as columns for `unnest`.
#[derive(Default)]
struct KeptVisits<'a> {
    devices: Vec<&'a str>,
    fences: Vec<&'a str>,
    shards: Vec<i16>,
    entered_at: Vec<DateTime<Utc>>,
    dwell_fired: Vec<bool>,
    overspeed_fired: Vec<bool>,
}

async fn write_visits(tx: &mut Transaction<'_, Postgres>, merged: &Merged) -> Result<(), sqlx::Error> {
    let (mut gone_devices, mut gone_fences) = (Vec::new(), Vec::new());
    let mut kept = KeptVisits::default();
    for ((device, fence), (shard, visit)) in &merged.visits {
        match visit {
            None => {
                gone_devices.push(device.as_str());
                gone_fences.push(fence.as_str());
            }
            Some(v) => {
                kept.devices.push(device);
                kept.fences.push(fence);
                kept.shards.push(*shard);
                kept.entered_at.push(time_of_ms(v.entered_at_ms));
                kept.dwell_fired.push(v.dwell_fired);
                kept.overspeed_fired.push(v.overspeed_fired);
            }
        }
    }
    if !gone_devices.is_empty() {
        sqlx::query(
            "DELETE FROM fence_states s USING unnest($1::text[], $2::text[]) AS g(device, fence)
             WHERE s.device = g.device AND s.fence = g.fence",
        )
        .bind(&gone_devices)
        .bind(&gone_fences)
        .execute(&mut **tx)
        .await?;
    }
    if !kept.devices.is_empty() {
        sqlx::query(
            "INSERT INTO fence_states (device, fence, shard, entered_at, dwell_fired, overspeed_fired)
             SELECT * FROM unnest($1::text[], $2::text[], $3::int2[], $4::timestamptz[], $5::bool[], $6::bool[])
             ON CONFLICT (device, fence) DO UPDATE SET shard = EXCLUDED.shard,
                 entered_at = EXCLUDED.entered_at, dwell_fired = EXCLUDED.dwell_fired,
                 overspeed_fired = EXCLUDED.overspeed_fired",
        )
        .bind(&kept.devices)
        .bind(&kept.fences)
        .bind(&kept.shards)
        .bind(&kept.entered_at)
        .bind(&kept.dwell_fired)
        .bind(&kept.overspeed_fired)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

async fn write_offline(tx: &mut Transaction<'_, Postgres>, merged: &Merged) -> Result<(), sqlx::Error> {
    let mut back = Vec::new();
    let (mut gone, mut since) = (Vec::new(), Vec::new());
    for (device, offline) in &merged.offline {
        match offline {
            None => back.push(device.as_str()),
            Some(t) => {
                gone.push(device.as_str());
                since.push(*t);
            }
        }
    }
    if !back.is_empty() {
        sqlx::query("DELETE FROM offline_devices WHERE device = ANY($1)")
            .bind(&back)
            .execute(&mut **tx)
            .await?;
    }
    if !gone.is_empty() {
        sqlx::query(
            "INSERT INTO offline_devices (device, since) SELECT * FROM unnest($1::text[], $2::timestamptz[])
             ON CONFLICT (device) DO UPDATE SET since = EXCLUDED.since",
        )
        .bind(&gone)
        .bind(&since)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

async fn write_pairs(tx: &mut Transaction<'_, Postgres>, merged: &Merged) -> Result<(), sqlx::Error> {
    let (mut gone, mut near): (Vec<&PairKey>, Vec<(&PairKey, DateTime<Utc>)>) = (Vec::new(), Vec::new());
    for (key, since) in &merged.pairs {
        match since {
            None => gone.push(key),
            Some(since) => near.push((key, *since)),
        }
    }
    let columns = |keys: &mut dyn Iterator<Item = &PairKey>| {
        let mut cols: [Vec<String>; 3] = Default::default();
        for key in keys {
            cols[0].push(key.rule.clone());
            cols[1].push(key.device.clone());
            cols[2].push(key.other.clone());
        }
        cols
    };
    if !gone.is_empty() {
        let [rules, devices, others] = columns(&mut gone.into_iter());
        sqlx::query(
            "DELETE FROM proximity_pairs p USING unnest($1::text[], $2::text[], $3::text[]) AS g(rule, device, other)
             WHERE p.rule = g.rule AND p.device = g.device AND p.other = g.other",
        )
        .bind(&rules)
        .bind(&devices)
        .bind(&others)
        .execute(&mut **tx)
        .await?;
    }
    if !near.is_empty() {
        let [rules, devices, others] = columns(&mut near.iter().map(|(k, _)| *k));
        let since: Vec<DateTime<Utc>> = near.iter().map(|(_, s)| *s).collect();
        sqlx::query(
            "INSERT INTO proximity_pairs (rule, device, other, since)
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[])
             ON CONFLICT (rule, device, other) DO UPDATE SET since = EXCLUDED.since",
        )
        .bind(&rules)
        .bind(&devices)
        .bind(&others)
        .bind(&since)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Inserts alerts in their order: ids are drawn row by row in that order, so they grow with it.
async fn insert_alerts(
    tx: &mut Transaction<'_, Postgres>,
    alerts: &[NewAlert],
) -> Result<Vec<Alert>, sqlx::Error> {
    if alerts.is_empty() {
        return Ok(Vec::new());
    }
    let column = |f: fn(&NewAlert) -> Option<f64>| alerts.iter().map(f).collect::<Vec<_>>();
    let proximity = |f: fn(&Proximity) -> &str| {
        alerts
            .iter()
            .map(|a| a.event.proximity.as_ref().map(f))
            .collect::<Vec<_>>()
    };
    let rows: Vec<(i64, DateTime<Utc>)> = sqlx::query_as(
        "INSERT INTO alerts (device, fence, fence_name, kind, ts, geom, speed_mps, interpolated, received_at,
                             rule, other_device, distance_m)
         SELECT device, fence, fence_name, kind, ts,
                CASE WHEN lon IS NULL THEN NULL ELSE ST_SetSRID(ST_MakePoint(lon, lat), 4326) END,
                speed, interpolated, received_at, rule, other_device, distance_m
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::float8[],
                     $7::float8[], $8::float8[], $9::bool[], $10::timestamptz[], $11::text[], $12::text[],
                     $13::float8[])
              WITH ORDINALITY AS a(device, fence, fence_name, kind, ts, lon, lat, speed, interpolated,
                                   received_at, rule, other_device, distance_m, ord)
         ORDER BY ord
         RETURNING id, created_at",
    )
    .bind(alerts.iter().map(|a| a.event.device.as_str()).collect::<Vec<_>>())
    .bind(
        alerts
            .iter()
            .map(|a| a.event.fence.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(
        alerts
            .iter()
            .map(|a| a.event.fence_name.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(alerts.iter().map(|a| a.event.kind.as_str()).collect::<Vec<_>>())
    .bind(alerts.iter().map(|a| a.event.ts).collect::<Vec<_>>())
    .bind(column(|a| a.event.position.map(|p| p[0])))
    .bind(column(|a| a.event.position.map(|p| p[1])))
    .bind(column(|a| a.event.speed_mps))
    .bind(alerts.iter().map(|a| a.event.interpolated).collect::<Vec<_>>())
    .bind(alerts.iter().map(|a| a.event.received_at).collect::<Vec<_>>())
    .bind(proximity(|p| p.rule.as_str()))
    .bind(proximity(|p| p.other.as_str()))
    .bind(column(|a| a.event.proximity.as_ref().map(|p| p.distance_m)))
    .fetch_all(&mut **tx)
    .await?;
    let mut ids: Vec<(i64, DateTime<Utc>)> = rows;
    ids.sort_unstable_by_key(|(id, _)| *id);
    Ok(alerts
        .iter()
        .zip(ids)
        .map(|(a, (id, created_at))| Alert {
            id,
            event: a.event.clone(),
            created_at,
        })
        .collect())
}

async fn queue_webhooks(
    tx: &mut Transaction<'_, Postgres>,
    new: &[NewAlert],
    stored: &[Alert],
    webhooks: &[String],
) -> Result<(), sqlx::Error> {
    let (mut ids, mut urls) = (Vec::new(), Vec::new());
    for (alert, row) in new.iter().zip(stored) {
        for url in webhooks.iter().chain(&alert.webhooks) {
            ids.push(row.id);
            urls.push(url.as_str());
        }
    }
    if !ids.is_empty() {
        sqlx::query(
            "INSERT INTO webhook_deliveries (alert_id, url) SELECT * FROM unnest($1::int8[], $2::text[])",
        )
        .bind(&ids)
        .bind(&urls)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Erases what evaluation stored about a device: its alerts (proximity alerts naming it on
/// either side too), fence states, near pairs and offline mark.
pub async fn erase_device(tx: &mut Transaction<'_, Postgres>, device: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM proximity_pairs WHERE device = $1 OR other = $1")
        .bind(device)
        .execute(&mut **tx)
        .await?;
    sqlx::query("DELETE FROM fence_states WHERE device = $1")
        .bind(device)
        .execute(&mut **tx)
        .await?;
    sqlx::query("DELETE FROM offline_devices WHERE device = $1")
        .bind(device)
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "WITH gone AS (DELETE FROM alerts WHERE device = $1 OR other_device = $1 RETURNING id)
         DELETE FROM webhook_deliveries WHERE alert_id IN (SELECT id FROM gone)",
    )
    .bind(device)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
