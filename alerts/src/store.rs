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

/// Cluster mode: which of these (partition, epoch) pairs still own their partition, as of now
/// (the commit checks again, under lock).
pub async fn owning(pool: &PgPool, claims: &[(i16, i64)]) -> Result<Vec<(i16, i64)>, sqlx::Error> {
    let (shards, epochs): (Vec<i16>, Vec<i64>) = claims.iter().copied().unzip();
    sqlx::query_as(
        "SELECT partition, epoch FROM partition_owners
         WHERE (partition, epoch) IN (SELECT * FROM unnest($1::int2[], $2::int8[]))",
    )
    .bind(&shards)
    .bind(&epochs)
    .fetch_all(pool)
    .await
}

/// Which commit of which writer a transaction is (see `alert_commit_marks`).
#[derive(Debug, Clone, Copy)]
pub struct Mark<'a> {
    pub writer: &'a str,
    pub commit_id: i64,
}

/// Whether the commit `mark` happened (its answer may have been lost); if so, its alerts.
/// They are contiguous: alert commits are serialised ([`commit`]).
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

/// The alert commit: one call of `commit_alert_changes` (see its migration) outside any
/// transaction block, so the call is its own transaction and the whole commit one round trip.
const COMMIT: &str = "SELECT stored_id, stored_at FROM commit_alert_changes(
    $1, $2, $3, $4::int2[], $5::int8[], $6::text[], $7::text[], $8::text[], $9::text[],
    $10::int2[], $11::timestamptz[], $12::bool[], $13::bool[], $14::text[], $15::text[],
    $16::timestamptz[], $17::text[], $18::text[], $19::text[], $20::text[], $21::text[],
    $22::text[], $23::timestamptz[], $24::text[], $25::text[], $26::text[], $27::text[],
    $28::timestamptz[], $29::float8[], $30::float8[], $31::float8[], $32::bool[],
    $33::timestamptz[], $34::text[], $35::text[], $36::float8[], $37::int4[], $38::text[],
    $39::int2[], $40::int8[])";

/// Commits `merged` as commit `mark` of its writer, in one round trip, and returns the stored
/// alerts in id order. `claims` (cluster mode) are the (partition, epoch) pairs the steps were
/// evaluated with: if any no longer owns its partition, nothing is stored and the error is
/// SQLSTATE GT001 ([`tracker::ownership::is_deposed`]). `webhooks` are the URLs every alert is
/// delivered to, besides its fence's own.
pub async fn commit(
    pool: &PgPool,
    merged: &Merged,
    claims: &[(i16, i64)],
    webhooks: &[String],
    mark: Mark<'_>,
) -> Result<Vec<Alert>, sqlx::Error> {
    let (claim_partitions, claim_epochs): (Vec<i16>, Vec<i64>) = claims.iter().copied().unzip();
    let visits = VisitColumns::of(merged);
    let offline = OfflineColumns::of(merged);
    let pairs = PairColumns::of(merged);
    let alerts = AlertColumns::of(&merged.alerts);
    let hooks = HookColumns::of(&merged.alerts, webhooks);
    let (watermark_shards, watermark_seqs): (Vec<i16>, Vec<i64>) =
        merged.watermarks.iter().map(|(s, q)| (*s, *q)).unzip();
    let rows: Vec<(i64, DateTime<Utc>)> = sqlx::query_as(COMMIT)
        .bind(mark.writer)
        .bind(mark.commit_id)
        .bind(ALERTS_CHANNEL)
        .bind(&claim_partitions)
        .bind(&claim_epochs)
        .bind(&visits.gone_devices)
        .bind(&visits.gone_fences)
        .bind(&visits.devices)
        .bind(&visits.fences)
        .bind(&visits.shards)
        .bind(&visits.entered_at)
        .bind(&visits.dwell_fired)
        .bind(&visits.overspeed_fired)
        .bind(&offline.back)
        .bind(&offline.gone)
        .bind(&offline.since)
        .bind(&pairs.apart[0])
        .bind(&pairs.apart[1])
        .bind(&pairs.apart[2])
        .bind(&pairs.near[0])
        .bind(&pairs.near[1])
        .bind(&pairs.near[2])
        .bind(&pairs.since)
        .bind(&alerts.devices)
        .bind(&alerts.fences)
        .bind(&alerts.fence_names)
        .bind(&alerts.kinds)
        .bind(&alerts.ts)
        .bind(&alerts.lons)
        .bind(&alerts.lats)
        .bind(&alerts.speeds)
        .bind(&alerts.interpolated)
        .bind(&alerts.received_at)
        .bind(&alerts.rules)
        .bind(&alerts.others)
        .bind(&alerts.distances)
        .bind(&hooks.alerts)
        .bind(&hooks.urls)
        .bind(&watermark_shards)
        .bind(&watermark_seqs)
        .fetch_all(pool)
        .await?;
    // Ids were drawn in the alerts' order.
    Ok(merged
        .alerts
        .iter()
        .zip(rows)
        .map(|(a, (id, created_at))| Alert {
            id,
            event: a.event.clone(),
            created_at,
        })
        .collect())
}

/// Alerts as columns, in their order.
struct AlertColumns<'a> {
    devices: Vec<&'a str>,
    fences: Vec<Option<&'a str>>,
    fence_names: Vec<Option<&'a str>>,
    kinds: Vec<&'static str>,
    ts: Vec<DateTime<Utc>>,
    lons: Vec<Option<f64>>,
    lats: Vec<Option<f64>>,
    speeds: Vec<Option<f64>>,
    interpolated: Vec<bool>,
    received_at: Vec<Option<DateTime<Utc>>>,
    rules: Vec<Option<&'a str>>,
    others: Vec<Option<&'a str>>,
    distances: Vec<Option<f64>>,
}

impl<'a> AlertColumns<'a> {
    fn of(alerts: &'a [NewAlert]) -> Self {
        let events = || alerts.iter().map(|a| &a.event);
        let proximity = || events().map(|e| e.proximity.as_ref());
        Self {
            devices: events().map(|e| e.device.as_str()).collect(),
            fences: events().map(|e| e.fence.as_deref()).collect(),
            fence_names: events().map(|e| e.fence_name.as_deref()).collect(),
            kinds: events().map(|e| e.kind.as_str()).collect(),
            ts: events().map(|e| e.ts).collect(),
            lons: events().map(|e| e.position.map(|p| p[0])).collect(),
            lats: events().map(|e| e.position.map(|p| p[1])).collect(),
            speeds: events().map(|e| e.speed_mps).collect(),
            interpolated: events().map(|e| e.interpolated).collect(),
            received_at: events().map(|e| e.received_at).collect(),
            rules: proximity().map(|p| p.map(|p| p.rule.as_str())).collect(),
            others: proximity().map(|p| p.map(|p| p.other.as_str())).collect(),
            distances: proximity().map(|p| p.map(|p| p.distance_m)).collect(),
        }
    }
}

/// Webhook deliveries to queue: the alert's 1-based position and the URL, as columns.
struct HookColumns<'a> {
    alerts: Vec<i32>,
    urls: Vec<&'a str>,
}

impl<'a> HookColumns<'a> {
    /// Every alert goes to `webhooks` and to its fence's own.
    fn of(alerts: &'a [NewAlert], webhooks: &'a [String]) -> Self {
        let (mut positions, mut urls) = (Vec::new(), Vec::new());
        for (position, alert) in (1_i32..).zip(alerts) {
            for url in webhooks.iter().chain(&alert.webhooks) {
                positions.push(position);
                urls.push(url.as_str());
            }
        }
        Self {
            alerts: positions,
            urls,
        }
    }
}

/// Fence states to delete (`gone_*`) and to store, as columns.
#[derive(Default)]
struct VisitColumns<'a> {
    gone_devices: Vec<&'a str>,
    gone_fences: Vec<&'a str>,
    devices: Vec<&'a str>,
    fences: Vec<&'a str>,
    shards: Vec<i16>,
    entered_at: Vec<DateTime<Utc>>,
    dwell_fired: Vec<bool>,
    overspeed_fired: Vec<bool>,
}

impl<'a> VisitColumns<'a> {
    fn of(merged: &'a Merged) -> Self {
        let mut columns = Self::default();
        for ((device, fence), (shard, visit)) in &merged.visits {
            match visit {
                None => {
                    columns.gone_devices.push(device);
                    columns.gone_fences.push(fence);
                }
                Some(v) => {
                    columns.devices.push(device);
                    columns.fences.push(fence);
                    columns.shards.push(*shard);
                    columns.entered_at.push(time_of_ms(v.entered_at_ms));
                    columns.dwell_fired.push(v.dwell_fired);
                    columns.overspeed_fired.push(v.overspeed_fired);
                }
            }
        }
        columns
    }
}

/// Devices that reported again (`back`) and devices gone offline since when, as columns.
#[derive(Default)]
struct OfflineColumns<'a> {
    back: Vec<&'a str>,
    gone: Vec<&'a str>,
    since: Vec<DateTime<Utc>>,
}

impl<'a> OfflineColumns<'a> {
    fn of(merged: &'a Merged) -> Self {
        let mut columns = Self::default();
        for (device, offline) in &merged.offline {
            match offline {
                None => columns.back.push(device),
                Some(t) => {
                    columns.gone.push(device);
                    columns.since.push(*t);
                }
            }
        }
        columns
    }
}

/// Proximity pairs no longer near and pairs near since when, as (rule, device, other) columns.
#[derive(Default)]
struct PairColumns<'a> {
    apart: [Vec<&'a str>; 3],
    near: [Vec<&'a str>; 3],
    since: Vec<DateTime<Utc>>,
}

impl<'a> PairColumns<'a> {
    fn of(merged: &'a Merged) -> Self {
        let mut columns = Self::default();
        for (key, since) in &merged.pairs {
            let side = match since {
                None => &mut columns.apart,
                Some(t) => {
                    columns.since.push(*t);
                    &mut columns.near
                }
            };
            side[0].push(&key.rule);
            side[1].push(&key.device);
            side[2].push(&key.other);
        }
        columns
    }
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
