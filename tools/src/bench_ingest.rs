//! `geotrack bench-ingest`: end-to-end ingest throughput against a running server, with the
//! ceiling measured in the same run: a raw `COPY` (through `psql`) of the very same rows into a
//! table with `positions`' columns, its unique key on (device, ts) and a BRIN index on the time,
//! nothing else. Request bodies and the COPY file
//! are generated before any clock starts. Reports fixes/s, the ratio to COPY, CPU-seconds per
//! million fixes of the server and of PostgreSQL (from /proc), and the server's peak RSS.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use sqlx::{Connection, PgConnection};

use crate::Error;
use crate::process::{cpu_seconds, peak_rss};

#[derive(Debug, Args)]
pub struct BenchIngestArgs {
    /// Base URL of the running server.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    #[arg(long, default_value_t = 1_000_000)]
    pub fixes: usize,
    #[arg(long, default_value_t = 10_000)]
    pub devices: usize,
    #[arg(long, default_value_t = 1_000)]
    pub batch: usize,
    /// Concurrent HTTP connections.
    #[arg(long, default_value_t = 8)]
    pub connections: usize,
    /// PID of the server, for its CPU time and peak RSS (read from /proc).
    #[arg(long)]
    pub server_pid: Option<u32>,
}

/// Runs the benchmark and prints the report. `database_url` is the server's database.
pub async fn run(args: &BenchIngestArgs, database_url: &str) -> Result<(), Error> {
    let run_id = chrono::Utc::now().timestamp_millis() % 1_000_000_000;
    let base_ts = chrono::Utc::now() - chrono::Duration::hours(6);
    println!(
        "generating {} fixes for {} devices in batches of {} ...",
        args.fixes, args.devices, args.batch
    );
    let rows = generate(args, run_id, base_ts);
    let bodies: Vec<Bytes> = rows
        .chunks(args.batch)
        .map(|chunk| Bytes::from(json_body(chunk)))
        .collect();
    let copy_file = write_copy_file(&rows, run_id)?;
    drop(rows);

    // Each phase starts from a clean checkpoint, so neither pays for the other's dirty pages.
    checkpoint(database_url).await?;
    let cpu_before = cpu_seconds(args.server_pid);
    let http = post_all(args, bodies).await?;
    let cpu_after = cpu_seconds(args.server_pid);
    checkpoint(database_url).await?;
    let copy = copy_baseline(database_url, &copy_file, run_id).await?;
    let _ = std::fs::remove_file(&copy_file);

    let fixes = args.fixes as f64;
    let http_rate = fixes / http.elapsed.as_secs_f64();
    let copy_rate = fixes / copy.as_secs_f64();
    let mut report = String::new();
    let _ = writeln!(
        report,
        "end-to-end: {} accepted in {:.2} s = {http_rate:.0} fixes/s",
        http.accepted,
        http.elapsed.as_secs_f64()
    );
    let _ = writeln!(
        report,
        "psql COPY of the same rows: {:.2} s = {copy_rate:.0} rows/s",
        copy.as_secs_f64()
    );
    let _ = writeln!(
        report,
        "ratio end-to-end / COPY: {:.2}x (target >= 0.55x)",
        http_rate / copy_rate
    );
    let per_million = 1e6 / fixes;
    if let (Some(before), Some(after)) = (cpu_before, cpu_after) {
        let _ = writeln!(
            report,
            "CPU-seconds per million fixes: server {:.2}, PostgreSQL {:.2}; while posting, {} (of one core; 2 cores)",
            (after.server - before.server) * per_million,
            (after.postgres - before.postgres) * per_million,
            before.machine(&after, http.elapsed.as_secs_f64())
        );
    }
    if let Some(pid) = args.server_pid {
        let _ = writeln!(
            report,
            "server peak RSS: {}",
            peak_rss(pid).unwrap_or_else(|| "unknown".into())
        );
    }
    print!("{report}");
    if http.accepted != args.fixes {
        return Err(Error::Incomplete {
            accepted: http.accepted,
            sent: args.fixes,
        });
    }
    Ok(())
}

struct Row {
    device: String,
    ts: chrono::DateTime<chrono::Utc>,
    lon: f64,
    lat: f64,
    speed: f64,
}

/// Fix k of the run: request k / batch holds `batch` consecutive devices, each device's fixes
/// one second apart. Deterministic, so every run posts the same shape of load.
fn generate(args: &BenchIngestArgs, run_id: i64, base: chrono::DateTime<chrono::Utc>) -> Vec<Row> {
    let devices = args.devices.max(1);
    (0..args.fixes)
        .map(|k| {
            let device = k % devices;
            let round = k / devices;
            Row {
                device: format!("bench-{run_id}-{device}"),
                ts: base + chrono::Duration::seconds(round as i64),
                lon: -170.0 + (device as f64 * 0.0341) % 340.0 + round as f64 * 1e-4,
                lat: -60.0 + (device as f64 * 0.0173) % 120.0,
                speed: (k % 40) as f64,
            }
        })
        .collect()
}

fn json_body(rows: &[Row]) -> Vec<u8> {
    let mut body = String::with_capacity(rows.len() * 110);
    body.push('[');
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        let _ = write!(
            body,
            r#"{{"device":"{}","ts":"{}","lon":{},"lat":{},"speed_mps":{}}}"#,
            row.device,
            row.ts.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            row.lon,
            row.lat,
            row.speed
        );
    }
    body.push(']');
    body.into_bytes()
}

fn write_copy_file(rows: &[Row], run_id: i64) -> Result<PathBuf, Error> {
    let mut text = String::with_capacity(rows.len() * 120);
    let received = chrono::Utc::now().to_rfc3339();
    for row in rows {
        let _ = writeln!(
            text,
            "{}\t{}\tSRID=4326;POINT({} {})\t{}\t{received}\t0",
            row.device,
            row.ts.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            row.lon,
            row.lat,
            row.speed
        );
    }
    let path = std::env::temp_dir().join(format!("geotrack-bench-{run_id}.tsv"));
    match std::fs::write(&path, text) {
        Ok(()) => Ok(path),
        Err(source) => Err(Error::Write { path, source }),
    }
}

struct HttpResult {
    accepted: usize,
    elapsed: Duration,
}

async fn post_all(args: &BenchIngestArgs, bodies: Vec<Bytes>) -> Result<HttpResult, Error> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.connections)
        .build()
        .map_err(Error::Client)?;
    let url = format!("{}/api/v1/positions", args.url.trim_end_matches('/'));
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::new(AtomicUsize::new(0));
    println!("posting over {} connections ...", args.connections);
    let started = Instant::now();
    let workers: Vec<_> = (0..args.connections.max(1))
        .map(|_| {
            let (client, url, bodies, next, accepted) = (
                client.clone(),
                url.clone(),
                bodies.clone(),
                next.clone(),
                accepted.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = bodies.get(i) else {
                        return Ok::<(), Error>(());
                    };
                    let n = post_one(&client, &url, body.clone()).await?;
                    accepted.fetch_add(usize::try_from(n).unwrap_or(0), Ordering::Relaxed);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.map_err(|source| Error::Task {
            what: "posting",
            source,
        })??;
    }
    Ok(HttpResult {
        accepted: accepted.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
    })
}

/// Posts one body; returns how many fixes the server accepted.
pub(crate) async fn post_one(client: &reqwest::Client, url: &str, body: Bytes) -> Result<u64, Error> {
    const ACTION: &str = "POST /api/v1/positions";
    let reply = client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(Error::request(ACTION))?;
    if reply.status() != reqwest::StatusCode::ACCEPTED {
        return Err(Error::status(ACTION, reply).await);
    }
    let text = reply.text().await.map_err(Error::request(ACTION))?;
    let reply: serde_json::Value = serde_json::from_str(&text).map_err(|source| Error::Reply {
        action: ACTION.to_owned(),
        source,
    })?;
    Ok(reply["accepted"].as_u64().unwrap_or(0))
}

/// Times `psql -c "\copy ..."` of the same rows into a fresh table with `positions`' columns,
/// the unique key on (device, ts) and a BRIN index on ts.
async fn copy_baseline(database_url: &str, file: &std::path::Path, run_id: i64) -> Result<Duration, Error> {
    let table = format!("bench_copy_{run_id}");
    let mut conn = PgConnection::connect(database_url)
        .await
        .map_err(Error::database("cannot connect to the database"))?;
    sqlx::raw_sql(&format!(
        "CREATE TABLE {table} (LIKE positions INCLUDING DEFAULTS INCLUDING CONSTRAINTS, \
                               PRIMARY KEY (device, ts));
         CREATE INDEX ON {table} USING brin (ts)"
    ))
    .execute(&mut conn)
    .await
    .map_err(Error::database("cannot create the COPY table"))?;
    println!("COPY baseline through psql ...");
    let command = format!(
        "\\copy {table} (device, ts, geom, speed_mps, received_at, shard) FROM '{}'",
        file.display()
    );
    let started = Instant::now();
    let status = tokio::process::Command::new("psql")
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            database_url,
            "-c",
            &command,
        ])
        .status()
        .await
        .map_err(|source| Error::Spawn {
            program: "psql",
            source,
        })?;
    let elapsed = started.elapsed();
    sqlx::raw_sql(&format!("DROP TABLE {table}"))
        .execute(&mut conn)
        .await
        .map_err(Error::database("cannot drop the COPY table"))?;
    if !status.success() {
        return Err(Error::Copy(status));
    }
    Ok(elapsed)
}

pub(crate) async fn checkpoint(database_url: &str) -> Result<(), Error> {
    let mut conn = PgConnection::connect(database_url)
        .await
        .map_err(Error::database("cannot connect to the database"))?;
    sqlx::raw_sql("CHECKPOINT")
        .execute(&mut conn)
        .await
        .map_err(Error::database("CHECKPOINT"))?;
    Ok(())
}
