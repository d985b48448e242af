//! One shard's database writer: a batch of fixes goes into PostgreSQL in one transaction.
//!
//! A small batch (up to `statement_max_fixes`, outside cluster mode) is one statement: its
//! fixes bound as arrays, inserted into history skipping any already stored, and the live rows
//! moved, in the implicit transaction of a single round trip ([`WRITE_SMALL`]). At the alert
//! rate a shard's batches are tens of fixes, and round trips, each waking PostgreSQL and this
//! task on a shared machine, cost more than the rows.
//!
//! A larger batch is written by a binary `COPY` straight into `positions`, PostgreSQL's
//! cheapest way in per row (no staging table, no text to parse, rows inserted a page at a
//! time). A `COPY` cannot skip duplicates, so when a fix of the batch is already stored (a
//! device re-sending a fix whose answer it lost) or is in it twice, the unique key refuses the
//! `COPY`, nothing of it stays, and the batch is written again by an `INSERT … ON CONFLICT DO
//! NOTHING` that skips them (the first of two equal (device, ts) in a batch wins). Duplicates
//! are rare, so the batch pays the second statement only then. Cluster mode takes this path
//! for every batch: its ownership check must run first, in the same transaction.
//!
//! Either way `devices_latest` moves to each device's newest fix of the batch (the first of
//! equal times) when that fix is newer than the stored one: a duplicate never moves it, a late
//! fix neither. Devices seen for the first time get their live row created and are registered
//! in `devices`.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sqlx::pool::PoolConnection;
use sqlx::postgres::PgArguments;
use sqlx::types::Json;
use sqlx::{Arguments as _, PgConnection, PgPool, Postgres};

use crate::fix::Fix;
use crate::ownership::Fence;

/// The columns of every fix row, in the order of [`encode_copy`] and of [`Columns::bind`].
macro_rules! fix_columns {
    () => {
        "device, ts, geom, speed_mps, heading_deg, accuracy_m, altitude_m, battery, attrs, \
         received_at, shard"
    };
}

/// The fixes bound as arrays ($1 to $11, see [`Columns`]), one row per fix, with their place.
macro_rules! unnest_fixes {
    () => {
        "unnest($1::text[], $2::timestamptz[], $3::float8[], $4::float8[], $5::float8[], \
         $6::float8[], $7::float8[], $8::float8[], $9::float8[], $10::jsonb[], $11::timestamptz[]) \
         WITH ORDINALITY AS f(device, ts, lon, lat, speed_mps, heading_deg, accuracy_m, \
         altitude_m, battery, attrs, received_at, ord)"
    };
}

const COPY_POSITIONS: &str = concat!("COPY positions (", fix_columns!(), ") FROM STDIN (FORMAT binary)");

/// Inserts the rows of `$from` (with `ord`, see [`unnest_fixes`]) not stored yet into
/// history, in batch order, returning their `seq`. $12: the shard.
macro_rules! insert_new_positions {
    ($($from:tt)+) => {
        concat!(
            "INSERT INTO positions (",
            fix_columns!(),
            ")
            SELECT device, ts, ST_SetSRID(ST_MakePoint(lon, lat), 4326), speed_mps, heading_deg,
                   accuracy_m, altitude_m, battery, attrs, received_at, $12
            FROM ",
            $($from)+,
            "
            ORDER BY ord
            ON CONFLICT (device, ts) DO NOTHING
            RETURNING seq"
        )
    };
}

/// CTEs `created` and `registered`: each live row of `$from` (rows of a `newest` CTE, one per
/// device, geometry built) is inserted, or moves the stored one when newer, and a device whose
/// live row was just created is registered.
macro_rules! upsert_latest {
    ($($from:tt)+) => {
        concat!(
            "created AS (
            INSERT INTO devices_latest (device, ts, geom, speed_mps, heading_deg, accuracy_m,
                                        altitude_m, battery, attrs, received_at)
            SELECT * FROM ",
            $($from)+,
            "
            ON CONFLICT (device) DO UPDATE SET
                ts = EXCLUDED.ts, geom = EXCLUDED.geom, speed_mps = EXCLUDED.speed_mps,
                heading_deg = EXCLUDED.heading_deg, accuracy_m = EXCLUDED.accuracy_m,
                altitude_m = EXCLUDED.altitude_m, battery = EXCLUDED.battery,
                attrs = EXCLUDED.attrs, received_at = EXCLUDED.received_at
            WHERE devices_latest.ts < EXCLUDED.ts
            RETURNING device, xmax = 0 AS created
        ), registered AS (
            INSERT INTO devices (id) SELECT device FROM created WHERE created
            ON CONFLICT (id) DO NOTHING
        )"
        )
    };
}

/// The columns of `newest`, from rows of [`unnest_fixes`].
macro_rules! newest_columns {
    () => {
        "device, ts, ST_SetSRID(ST_MakePoint(lon, lat), 4326) AS geom, speed_mps, heading_deg,
         accuracy_m, altitude_m, battery, attrs, received_at"
    };
}

/// A small batch in one statement: history without the fixes already stored, and the live rows
/// moved to each device's newest fix, picked here by `DISTINCT ON` (latest time, then the first
/// in the batch). The live rows are upserted, each found through the key: for a few devices
/// that is cheaper than the hash join over every live row that PostgreSQL plans for the
/// `UPDATE` of [`MOVE_LATEST`] (1.2 ms less per batch of 62 among 10,000 devices). Returns how
/// many fixes were new to history and the largest `seq` drawn.
const WRITE_SMALL: &str = concat!(
    "WITH f AS (SELECT * FROM ",
    unnest_fixes!(),
    "), inserted AS (",
    insert_new_positions!("f"),
    "), newest AS (
        SELECT DISTINCT ON (device) ",
    newest_columns!(),
    " FROM f ORDER BY device, ts DESC, ord
    ), ",
    upsert_latest!("newest"),
    "
    SELECT count(*), max(seq) FROM inserted"
);

/// The path for a `COPY` that met a duplicate. Returns how many fixes were new to history and
/// the largest `seq` drawn for them.
const INSERT_NEW_POSITIONS: &str = concat!(
    "WITH inserted AS (",
    insert_new_positions!(unnest_fixes!()),
    ") SELECT count(*), max(seq) FROM inserted"
);

/// Binds the newest fix of each device of a batch written by `COPY`: many devices, so the live
/// rows are first updated in place, joined by hash; only the devices left (new ones, or a race
/// with another writer) go through the upsert. Returns the last `seq` this session drew: after
/// the `COPY`, the largest of the batch.
const MOVE_LATEST: &str = concat!(
    "WITH newest AS (SELECT ",
    newest_columns!(),
    " FROM ",
    unnest_fixes!(),
    "), moved AS (
        UPDATE devices_latest l SET
            ts = n.ts, geom = n.geom, speed_mps = n.speed_mps, heading_deg = n.heading_deg,
            accuracy_m = n.accuracy_m, altitude_m = n.altitude_m, battery = n.battery,
            attrs = n.attrs, received_at = n.received_at
        FROM newest n
        WHERE l.device = n.device AND l.ts < n.ts
        RETURNING l.device
    ), ",
    upsert_latest!("newest n WHERE NOT EXISTS (SELECT FROM moved m WHERE m.device = n.device)"),
    "
    SELECT currval('positions_seq')"
);

/// Writes batches for one shard over a connection it keeps between batches.
#[derive(Debug)]
pub(crate) struct ShardWriter {
    shard: i16,
    pool: PgPool,
    conn: Option<PoolConnection<Postgres>>,
    copy_buf: Vec<u8>,
    /// Batches up to this many fixes are written as one statement (outside cluster mode).
    statement_max_fixes: usize,
}

impl ShardWriter {
    pub(crate) fn new(shard: usize, pool: PgPool, statement_max_fixes: usize) -> Self {
        Self {
            shard: i16::try_from(shard).unwrap_or(i16::MAX),
            pool,
            conn: None,
            copy_buf: Vec::new(),
            statement_max_fixes,
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
        let conn = connection(&mut self.conn, &self.pool).await?;
        let result = if fence.is_none() && fixes.len() <= self.statement_max_fixes {
            write_small(conn, fixes, self.shard).await
        } else {
            encode_copy(fixes, self.shard, &mut self.copy_buf);
            let fence = fence.map(|fence| (self.shard, fence));
            let copy = History::Copy(&self.copy_buf);
            let mut result = write_batch(conn, fixes, fence, copy).await;
            if result.as_ref().is_err_and(is_unique_violation) {
                let insert = History::InsertNew { shard: self.shard };
                result = write_batch(conn, fixes, fence, insert).await;
            }
            result
        };
        self.after(result)
    }

    /// Opens this writer's connection and runs its one-statement write with no fixes, which
    /// stores nothing. Done at start, so that the first fixes find the connection open, the
    /// statement prepared and the backend's caches of the tables it writes filled, instead of
    /// paying for all of that themselves: measured with `EXPLAIN ANALYZE` on the bench machine,
    /// a backend's first write of 64 fixes took 17.5 ms, the next ones about 2 ms. After a
    /// restart every device reconnects at once, and each shard's first batch would otherwise pay
    /// it with everything queued behind it.
    pub(crate) async fn warm(&mut self) -> Result<(), sqlx::Error> {
        let conn = connection(&mut self.conn, &self.pool).await?;
        let result = write_small(conn, &[], self.shard).await;
        self.after(result).map(drop)
    }

    /// Passes `result` on, first closing the connection when the error may have broken it.
    fn after<T>(&mut self, result: Result<T, sqlx::Error>) -> Result<T, sqlx::Error> {
        if result.as_ref().is_err_and(|e| !is_data_error(e)) {
            // The connection may be broken: never reuse it.
            if let Some(conn) = self.conn.take() {
                conn.detach();
            }
        }
        result
    }
}

/// The connection a writer keeps (`kept`), taken from `pool` if it has none.
async fn connection<'c>(
    kept: &'c mut Option<PoolConnection<Postgres>>,
    pool: &PgPool,
) -> Result<&'c mut PoolConnection<Postgres>, sqlx::Error> {
    Ok(match kept {
        Some(conn) => conn,
        empty => empty.insert(pool.acquire().await?),
    })
}

/// What one committed batch stored.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stored {
    /// Fixes new to history.
    pub(crate) new: u64,
    /// The largest `seq` given to them.
    pub(crate) max_seq: Option<i64>,
    /// Whether the batch was written twice: its `COPY` met a duplicate.
    pub(crate) rewritten: bool,
}

/// How a batch goes into `positions`.
#[derive(Clone, Copy)]
enum History<'a> {
    /// These `COPY` rows ([`encode_copy`]): every fix is new, or the statement fails.
    Copy(&'a [u8]),
    /// Only the fixes not stored yet.
    InsertNew { shard: i16 },
}

/// Writes a small batch in one statement, committed on its own ([`WRITE_SMALL`]).
async fn write_small(conn: &mut PgConnection, fixes: &[&Fix], shard: i16) -> Result<Stored, sqlx::Error> {
    let (new, max_seq) = insert_new(conn, WRITE_SMALL, fixes, shard).await?;
    Ok(Stored {
        new: u64::try_from(new).unwrap_or(0),
        max_seq,
        rewritten: false,
    })
}

/// Writes a batch by `COPY` or by the `INSERT` that skips duplicates, in a transaction.
async fn write_batch(
    conn: &mut PgConnection,
    fixes: &[&Fix],
    fence: Option<(i16, Fence)>,
    history: History<'_>,
) -> Result<Stored, sqlx::Error> {
    let mut tx = sqlx::Connection::begin(conn).await?;
    if let Some((shard, fence)) = fence {
        // First, so the row lock orders this transaction after any of a previous owner.
        sqlx::query("SELECT fence_partition($1, $2, $3)")
            .bind(shard)
            .bind(fence.epoch)
            .bind(fence.stored_seq)
            .execute(&mut *tx)
            .await?;
    }
    let (new, max_seq): (i64, Option<i64>) = match history {
        History::Copy(rows) => {
            let mut copy = tx.copy_in_raw(COPY_POSITIONS).await?;
            copy.send(rows).await?;
            let new = copy.finish().await?;
            (i64::try_from(new).unwrap_or(i64::MAX), None)
        }
        History::InsertNew { shard } => insert_new(&mut tx, INSERT_NEW_POSITIONS, fixes, shard).await?,
    };
    let args = Columns::of(newest_per_device(fixes)).arguments()?;
    let last_seq: i64 = sqlx::query_scalar_with(MOVE_LATEST, args)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Stored {
        new: u64::try_from(new).unwrap_or(0),
        max_seq: match history {
            History::Copy(_) => Some(last_seq),
            History::InsertNew { .. } => max_seq,
        },
        rewritten: matches!(history, History::InsertNew { .. }),
    })
}

/// Runs `statement`, one built on [`insert_new_positions`] (the fixes as $1 to $11, the shard
/// as $12); returns how many fixes were new to history and the largest `seq` drawn for them.
async fn insert_new(
    conn: &mut PgConnection,
    statement: &'static str,
    fixes: &[&Fix],
    shard: i16,
) -> Result<(i64, Option<i64>), sqlx::Error> {
    let mut args = Columns::of(fixes.iter().copied()).arguments()?;
    args.add(shard).map_err(sqlx::Error::Encode)?;
    sqlx::query_as_with(statement, args).fetch_one(conn).await
}

/// A unique violation: some fix of the batch is stored already or is in it twice.
fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.code().as_deref() == Some("23505"))
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

/// Each device's newest fix of `fixes` (the first of equal times), in batch order.
fn newest_per_device<'a>(fixes: &[&'a Fix]) -> impl Iterator<Item = &'a Fix> {
    let mut newest: HashMap<&str, usize> = HashMap::with_capacity(fixes.len());
    for (i, fix) in fixes.iter().enumerate() {
        match newest.entry(&fix.device) {
            Entry::Occupied(mut kept) if fixes[*kept.get()].ts < fix.ts => {
                kept.insert(i);
            }
            Entry::Occupied(_) => {}
            Entry::Vacant(slot) => {
                slot.insert(i);
            }
        }
    }
    let mut picked: Vec<usize> = newest.into_values().collect();
    picked.sort_unstable();
    picked.into_iter().map(|i| fixes[i])
}

/// Fixes as one array per column, bound as $1 to $11 of [`unnest_fixes`].
#[derive(Default)]
struct Columns<'a> {
    device: Vec<&'a str>,
    ts: Vec<DateTime<Utc>>,
    lon: Vec<f64>,
    lat: Vec<f64>,
    speed_mps: Vec<Option<f64>>,
    heading_deg: Vec<Option<f64>>,
    accuracy_m: Vec<Option<f64>>,
    altitude_m: Vec<Option<f64>>,
    battery: Vec<Option<f64>>,
    attrs: Vec<Option<Json<&'a Map<String, Value>>>>,
    received_at: Vec<DateTime<Utc>>,
}

impl<'a> Columns<'a> {
    fn of(fixes: impl Iterator<Item = &'a Fix>) -> Self {
        let mut columns = Self::default();
        for fix in fixes {
            columns.device.push(&fix.device);
            columns.ts.push(fix.ts);
            columns.lon.push(fix.lon);
            columns.lat.push(fix.lat);
            columns.speed_mps.push(fix.speed_mps);
            columns.heading_deg.push(fix.heading_deg);
            columns.accuracy_m.push(fix.accuracy_m);
            columns.altitude_m.push(fix.altitude_m);
            columns.battery.push(fix.battery);
            columns.attrs.push(fix.attrs.as_ref().map(Json));
            columns.received_at.push(fix.received_at);
        }
        columns
    }

    fn arguments(self) -> Result<PgArguments, sqlx::Error> {
        let mut args = PgArguments::default();
        args.add(self.device).map_err(sqlx::Error::Encode)?;
        args.add(self.ts).map_err(sqlx::Error::Encode)?;
        args.add(self.lon).map_err(sqlx::Error::Encode)?;
        args.add(self.lat).map_err(sqlx::Error::Encode)?;
        for column in [
            self.speed_mps,
            self.heading_deg,
            self.accuracy_m,
            self.altitude_m,
            self.battery,
        ] {
            args.add(column).map_err(sqlx::Error::Encode)?;
        }
        args.add(self.attrs).map_err(sqlx::Error::Encode)?;
        args.add(self.received_at).map_err(sqlx::Error::Encode)?;
        Ok(args)
    }
}

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 UTC).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// The `COPY … (FORMAT binary)` stream of `fixes`, columns as in [`fix_columns`]: a header,
/// per row the field count and each field as a big-endian length (-1 for NULL) and its
/// binary value, and a trailer.
fn encode_copy(fixes: &[&Fix], shard: i16, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    out.extend_from_slice(&[0; 8]); // no flags, no header extension
    for fix in fixes {
        out.extend_from_slice(&11_i16.to_be_bytes());
        field(out, fix.device.as_bytes());
        timestamp(out, fix.ts);
        point(out, fix.lon, fix.lat);
        for value in [
            fix.speed_mps,
            fix.heading_deg,
            fix.accuracy_m,
            fix.altitude_m,
            fix.battery,
        ] {
            match value {
                Some(v) => field(out, &v.to_be_bytes()),
                None => null(out),
            }
        }
        match &fix.attrs {
            Some(attrs) => jsonb(out, attrs),
            None => null(out),
        }
        timestamp(out, fix.received_at);
        field(out, &shard.to_be_bytes());
    }
    out.extend_from_slice(&(-1_i16).to_be_bytes());
}

/// A NULL field: length -1, no value.
fn null(out: &mut Vec<u8>) {
    out.extend_from_slice(&(-1_i32).to_be_bytes());
}

fn field(out: &mut Vec<u8>, value: &[u8]) {
    let len = i32::try_from(value.len()).expect("a fix field is far below 2 GiB");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(value);
}

fn timestamp(out: &mut Vec<u8>, ts: DateTime<Utc>) {
    field(out, &(ts.timestamp_micros() - PG_EPOCH_MICROS).to_be_bytes());
}

/// A point as EWKB: little-endian, point type with the SRID flag, SRID 4326, x, y.
fn point(out: &mut Vec<u8>, lon: f64, lat: f64) {
    out.extend_from_slice(&25_i32.to_be_bytes());
    out.push(1);
    out.extend_from_slice(&0x2000_0001_u32.to_le_bytes());
    out.extend_from_slice(&4326_u32.to_le_bytes());
    out.extend_from_slice(&lon.to_le_bytes());
    out.extend_from_slice(&lat.to_le_bytes());
}

/// jsonb's binary form: a version byte (1), then the JSON text.
fn jsonb(out: &mut Vec<u8>, value: &Map<String, Value>) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    out.push(1);
    serde_json::to_writer(&mut *out, value).expect("a JSON object always serializes");
    let len = i32::try_from(out.len() - start - 4).expect("a fix's attributes are far below 2 GiB");
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fix(device: &str, second: i64, lon: f64) -> Fix {
        let ts = DateTime::from_timestamp(1_700_000_000 + second, 0).expect("ts");
        Fix {
            device: device.into(),
            ts,
            lon,
            lat: 0.0,
            speed_mps: None,
            heading_deg: None,
            accuracy_m: None,
            altitude_m: None,
            battery: None,
            attrs: None,
            received_at: ts,
        }
    }

    #[test]
    fn each_device_keeps_its_newest_fix_and_the_first_of_equal_times() {
        let batch = [
            fix("a", 5, 1.0),
            fix("b", 1, 2.0),
            fix("a", 9, 3.0),
            fix("b", 1, 4.0),
            fix("a", 7, 5.0),
            fix("c", 0, 6.0),
        ];
        let refs: Vec<&Fix> = batch.iter().collect();
        let picked: Vec<(&str, f64)> = newest_per_device(&refs)
            .map(|fix| (fix.device.as_str(), fix.lon))
            .collect();
        assert_eq!(picked, [("b", 2.0), ("a", 3.0), ("c", 6.0)]);
    }
}
