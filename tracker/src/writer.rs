//! One shard's database writer: a batch of fixes goes into PostgreSQL in one transaction.
//!
//! The batch is COPYed into a temporary staging table (created once per connection, emptied at
//! every commit), then one statement inserts it into `positions` (duplicates of (device, ts) are
//! skipped), moves `devices_latest` to each device's newest fix of the batch when it is newer
//! than the stored one (a duplicate never moves it, a late fix neither), and registers devices
//! seen for the first time.

use std::fmt::Write as _;

use chrono::SecondsFormat;
use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres};

use crate::fix::Fix;
use crate::ownership::Fence;

const CREATE_STAGING: &str = "
CREATE TEMP TABLE IF NOT EXISTS ingest_staging (
    ord int, device text, ts timestamptz, lon float8, lat float8, speed_mps float8,
    heading_deg float8, accuracy_m float8, altitude_m float8, battery float8, attrs jsonb,
    received_at timestamptz
) ON COMMIT DELETE ROWS";

const COPY_STAGING: &str = "COPY ingest_staging (ord, device, ts, lon, lat, speed_mps, heading_deg, \
    accuracy_m, altitude_m, battery, attrs, received_at) FROM STDIN";

/// $1: the shard. Returns how many fixes were new to history and the largest `seq` drawn.
///
/// `devices_latest` is upserted from the staging rows, not from the inserted ones: it always
/// holds the newest history row of its device, so a duplicate of any stored (device, ts) is
/// never newer than it and the `WHERE` leaves it alone, and within a batch the first of two
/// equal (device, ts) wins in both tables (`ord`). That saves carrying every inserted row
/// (geometry, attrs) through `RETURNING`. Only a device whose live row was just created can be
/// new, so only those are registered in `devices`.
const MERGE_STAGING: &str = "
WITH inserted AS (
    INSERT INTO positions (device, ts, geom, speed_mps, heading_deg, accuracy_m, altitude_m,
                           battery, attrs, received_at, shard)
    SELECT device, ts, ST_SetSRID(ST_MakePoint(lon, lat), 4326), speed_mps, heading_deg,
           accuracy_m, altitude_m, battery, attrs, received_at, $1
    FROM ingest_staging
    ORDER BY ord
    ON CONFLICT (device, ts) DO NOTHING
    RETURNING seq
), latest AS (
    INSERT INTO devices_latest (device, ts, geom, speed_mps, heading_deg, accuracy_m, altitude_m,
                                battery, attrs, received_at)
    SELECT DISTINCT ON (device) device, ts, ST_SetSRID(ST_MakePoint(lon, lat), 4326), speed_mps,
           heading_deg, accuracy_m, altitude_m, battery, attrs, received_at
    FROM ingest_staging
    ORDER BY device, ts DESC, ord
    ON CONFLICT (device) DO UPDATE SET
        ts = EXCLUDED.ts, geom = EXCLUDED.geom, speed_mps = EXCLUDED.speed_mps,
        heading_deg = EXCLUDED.heading_deg, accuracy_m = EXCLUDED.accuracy_m,
        altitude_m = EXCLUDED.altitude_m, battery = EXCLUDED.battery, attrs = EXCLUDED.attrs,
        received_at = EXCLUDED.received_at
    WHERE devices_latest.ts < EXCLUDED.ts
    RETURNING device, xmax = 0 AS created
), new_devices AS (
    INSERT INTO devices (id) SELECT device FROM latest WHERE created ON CONFLICT (id) DO NOTHING
)
SELECT count(*), max(seq) FROM inserted";

/// Writes batches for one shard over a connection it keeps between batches.
#[derive(Debug)]
pub(crate) struct ShardWriter {
    shard: i16,
    pool: PgPool,
    conn: Option<PoolConnection<Postgres>>,
    copy_buf: Vec<u8>,
}

impl ShardWriter {
    pub(crate) fn new(shard: usize, pool: PgPool) -> Self {
        Self {
            shard: i16::try_from(shard).unwrap_or(i16::MAX),
            pool,
            conn: None,
            copy_buf: Vec::new(),
        }
    }

    /// Writes `fixes` in one transaction and returns how many were new to history and the
    /// largest `seq` they were given (`None` when all were duplicates). With a `fence` (cluster
    /// mode) the transaction first checks that its epoch still owns the shard.
    /// On error nothing of the batch is stored.
    pub(crate) async fn write(
        &mut self,
        fixes: &[&Fix],
        fence: Option<Fence>,
    ) -> Result<Stored, sqlx::Error> {
        encode_copy_rows(fixes, &mut self.copy_buf);
        let conn = match &mut self.conn {
            Some(conn) => conn,
            empty => {
                let mut conn = self.pool.acquire().await?;
                sqlx::query(CREATE_STAGING).execute(&mut *conn).await?;
                empty.insert(conn)
            }
        };
        let result = write_batch(conn, self.shard, fence, &self.copy_buf).await;
        if result.as_ref().is_err_and(|e| !is_data_error(e)) {
            // The connection may be broken: never reuse it.
            if let Some(conn) = self.conn.take() {
                conn.detach();
            }
        }
        result
    }
}

/// What one committed batch stored.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stored {
    /// Fixes new to history.
    pub(crate) new: u64,
    /// The largest `seq` given to them.
    pub(crate) max_seq: Option<i64>,
}

async fn write_batch(
    conn: &mut PoolConnection<Postgres>,
    shard: i16,
    fence: Option<Fence>,
    rows: &[u8],
) -> Result<Stored, sqlx::Error> {
    let mut tx = sqlx::Connection::begin(&mut **conn).await?;
    if let Some(fence) = fence {
        // First, so the row lock orders this transaction after any of a previous owner.
        sqlx::query("SELECT fence_partition($1, $2, $3)")
            .bind(shard)
            .bind(fence.epoch)
            .bind(fence.stored_seq)
            .execute(&mut *tx)
            .await?;
    }
    let mut copy = tx.copy_in_raw(COPY_STAGING).await?;
    copy.send(rows).await?;
    copy.finish().await?;
    let (new, max_seq): (i64, Option<i64>) = sqlx::query_as(MERGE_STAGING)
        .bind(shard)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Stored {
        new: u64::try_from(new).unwrap_or(0),
        max_seq,
    })
}

/// Errors caused by the data of a batch (class 22 data exception, 23 integrity violation,
/// P0 raised by a trigger): splitting the batch isolates the fix responsible. Anything else
/// (connection lost, timeout) says nothing about the data.
pub(crate) fn is_data_error(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("22") || code.starts_with("23") || code.starts_with("P0")),
        _ => false,
    }
}

/// COPY text format: tab-separated columns, `\N` for NULL, backslash escapes.
fn encode_copy_rows(fixes: &[&Fix], out: &mut Vec<u8>) {
    out.clear();
    let mut line = String::with_capacity(256);
    for (ord, fix) in fixes.iter().enumerate() {
        line.clear();
        let _ = write!(line, "{ord}\t");
        push_text(&mut line, &fix.device);
        let _ = write!(
            line,
            "\t{}\t{}\t{}",
            fix.ts.to_rfc3339_opts(SecondsFormat::Micros, true),
            fix.lon,
            fix.lat
        );
        for value in [
            fix.speed_mps,
            fix.heading_deg,
            fix.accuracy_m,
            fix.altitude_m,
            fix.battery,
        ] {
            match value {
                Some(v) => {
                    let _ = write!(line, "\t{v}");
                }
                None => line.push_str("\t\\N"),
            }
        }
        line.push('\t');
        match &fix.attrs {
            Some(attrs) => push_text(
                &mut line,
                &serde_json::to_string(attrs).expect("a JSON object always serializes"),
            ),
            None => line.push_str("\\N"),
        }
        let _ = writeln!(
            line,
            "\t{}",
            fix.received_at.to_rfc3339_opts(SecondsFormat::Micros, true)
        );
        out.extend_from_slice(line.as_bytes());
    }
}

fn push_text(line: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '\\' => line.push_str("\\\\"),
            '\t' => line.push_str("\\t"),
            '\n' => line.push_str("\\n"),
            '\r' => line.push_str("\\r"),
            c => line.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};

    #[test]
    fn copy_rows_escape_text_and_write_nulls() {
        let ts: DateTime<Utc> = "2024-01-02T03:04:05.123456Z".parse().expect("ts");
        let attrs = serde_json::json!({"note": "a\tb\\c\nd"});
        let fix = Fix {
            device: "dev\\1".into(),
            ts,
            lon: 1.5,
            lat: -2.25,
            speed_mps: Some(3.0),
            heading_deg: None,
            accuracy_m: None,
            altitude_m: None,
            battery: Some(50.5),
            attrs: attrs.as_object().cloned(),
            received_at: ts,
        };
        let mut out = Vec::new();
        encode_copy_rows(&[&fix], &mut out);
        let line = String::from_utf8(out).expect("utf8");
        assert_eq!(
            line,
            "0\tdev\\\\1\t2024-01-02T03:04:05.123456Z\t1.5\t-2.25\t3\t\\N\t\\N\t\\N\t50.5\t\
             {\"note\":\"a\\\\tb\\\\\\\\c\\\\nd\"}\t2024-01-02T03:04:05.123456Z\n"
        );
    }
}
