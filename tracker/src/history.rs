//! Upkeep of the position history's weekly partitions (see the migration that made
//! `positions` partitioned). Partitions exist for the weeks that hold fixes: this week and a
//! few ahead are made in advance; a past week gets one when fixes for it land in
//! `positions_default` (a late upload, an import, a server that did not run for weeks), and
//! they are moved there. Weeks wholly older than the retention are dropped a partition at a
//! time, not row by row, and older rows of the default partition deleted.
//!
//! One process at a time does the upkeep (an advisory lock), so several servers on one
//! database never race to create the same partition.

use chrono::{DateTime, Datelike, Duration, TimeZone, Utc};
use sqlx::PgPool;

/// Weeks of partitions kept ready ahead of now.
const WEEKS_AHEAD: i64 = 4;
/// The advisory lock that serialises upkeep across processes.
const LOCK: i64 = 0x6765_6f74_7261_636b; // "geotrack"

/// What the upkeep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Upkeep {
    /// Partitions created (named by the Monday they start on).
    pub created: Vec<String>,
    /// Partitions dropped for the retention.
    pub dropped: Vec<String>,
    /// Fixes deleted from the default partition for the retention.
    pub deleted: u64,
    /// False when another process held the lock (nothing was done).
    pub ran: bool,
}

/// Makes the partitions of this week and a few weeks ahead, and of every week since
/// `keep_from` that has fixes waiting in the default partition (moving them in); with
/// `retention`, drops the partitions that end before `now - retention` and deletes older rows
/// of the default partition.
pub async fn maintain(
    pool: &PgPool,
    now: DateTime<Utc>,
    keep_from: DateTime<Utc>,
    retention: Option<Duration>,
) -> Result<Upkeep, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(LOCK)
        .fetch_one(&mut *tx)
        .await?;
    if !locked {
        return Ok(Upkeep::default());
    }
    let horizon = retention.map(|r| now - r);
    let keep_from = horizon.map_or(keep_from, |h| h.max(keep_from));
    let mut upkeep = Upkeep {
        ran: true,
        ..Upkeep::default()
    };
    let existing = partitions(&mut tx).await?;
    let stranded: Vec<DateTime<Utc>> = sqlx::query_scalar(
        "SELECT DISTINCT date_trunc('week', ts AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
         FROM positions_default WHERE ts >= $1 ORDER BY 1",
    )
    .bind(keep_from)
    .fetch_all(&mut *tx)
    .await?;
    let ahead = (0..=WEEKS_AHEAD).map(|w| monday(now) + Duration::weeks(w));
    for week in stranded.into_iter().chain(ahead) {
        let name = partition_name(week);
        if !existing.iter().any(|(n, _)| *n == name) && !upkeep.created.contains(&name) {
            create(&mut tx, &name, week).await?;
            upkeep.created.push(name);
        }
    }
    if let Some(horizon) = horizon {
        for (name, start) in existing {
            if start + Duration::weeks(1) <= horizon {
                sqlx::query(&format!("DROP TABLE {}", quoted(&name)))
                    .execute(&mut *tx)
                    .await?;
                upkeep.dropped.push(name);
            }
        }
        upkeep.deleted = sqlx::query("DELETE FROM positions_default WHERE ts < $1")
            .bind(horizon)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    }
    tx.commit().await?;
    Ok(upkeep)
}

/// The weekly partitions that exist, with the start of their week.
async fn partitions(tx: &mut sqlx::PgConnection) -> Result<Vec<(String, DateTime<Utc>)>, sqlx::Error> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'positions'::regclass AND c.relname LIKE 'positions\\_p%'",
    )
    .fetch_all(tx)
    .await?;
    Ok(names
        .into_iter()
        .filter_map(|name| {
            let date = chrono::NaiveDate::parse_from_str(name.strip_prefix("positions_p")?, "%Y%m%d").ok()?;
            Some((name, Utc.from_utc_datetime(&date.and_hms_opt(0, 0, 0)?)))
        })
        .collect())
}

/// Makes the partition of the week starting `week`. Rows of that week already in the default
/// partition (it existed before the partition did) are moved into it first: PostgreSQL refuses
/// a partition whose rows sit in the default one.
async fn create(tx: &mut sqlx::PgConnection, name: &str, week: DateTime<Utc>) -> Result<(), sqlx::Error> {
    let end = week + Duration::weeks(1);
    let stranded: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM positions_default WHERE ts >= $1 AND ts < $2)")
            .bind(week)
            .bind(end)
            .fetch_one(&mut *tx)
            .await?;
    let bounds = format!("FROM ('{}') TO ('{}')", week.to_rfc3339(), end.to_rfc3339());
    if !stranded {
        sqlx::query(&format!(
            "CREATE TABLE {} PARTITION OF positions FOR VALUES {bounds}",
            quoted(name)
        ))
        .execute(&mut *tx)
        .await?;
        return Ok(());
    }
    let table = quoted(name);
    sqlx::query(&format!(
        "CREATE TABLE {table} (LIKE positions INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
    ))
    .execute(&mut *tx)
    .await?;
    sqlx::query(&format!(
        "WITH moved AS (DELETE FROM positions_default WHERE ts >= $1 AND ts < $2 RETURNING *)
         INSERT INTO {table} SELECT * FROM moved"
    ))
    .bind(week)
    .bind(end)
    .execute(&mut *tx)
    .await?;
    sqlx::query(&format!(
        "ALTER TABLE positions ATTACH PARTITION {table} FOR VALUES {bounds}"
    ))
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The Monday 00:00 UTC on or before `at`.
fn monday(at: DateTime<Utc>) -> DateTime<Utc> {
    let date = at.date_naive() - Duration::days(i64::from(at.weekday().num_days_from_monday()));
    Utc.from_utc_datetime(&date.and_hms_opt(0, 0, 0).unwrap_or_default())
}

fn partition_name(week: DateTime<Utc>) -> String {
    format!("positions_p{}", week.format("%Y%m%d"))
}

fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weeks_start_on_monday_utc() {
        let thursday = Utc
            .with_ymd_and_hms(2026, 12, 10, 15, 30, 0)
            .single()
            .expect("time");
        assert_eq!(
            monday(thursday),
            Utc.with_ymd_and_hms(2026, 12, 7, 0, 0, 0).single().expect("time")
        );
        assert_eq!(monday(monday(thursday)), monday(thursday));
        assert_eq!(partition_name(monday(thursday)), "positions_p20261207");
    }
}
