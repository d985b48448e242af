//! `geotrack bench-cluster`: ingest and alerts across the nodes of a cluster, as clients
//! behind a round-robin load balancer see them, while an operator may restart the nodes.
//!
//! Loads `--fences` circles through the first node, connects `--subscribers` WebSocket clients
//! spread over the nodes, then drives `--devices` vehicles open loop at `--rate` fixes/s for
//! `--duration-s` seconds. Request `k` goes to node `k mod N`; a node that fails (refused,
//! reset, 503) passes the request to the next node, as a load balancer retrying upstream does,
//! until it is acknowledged. A subscriber whose node goes away reconnects to the next node with
//! its cursor (`since=`). Afterwards it checks that every acknowledged fix is stored (the count
//! of the run's fixes in `positions`), and for each subscriber the alerts it lost and the ones it
//! saw twice against the alerts table; it reports the requests refused (each retried elsewhere)
//! and the alert latency (fix received by a node to alert on a socket) per time window, so a
//! rolling restart shows before, during and after.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::bench_alerts::{Fleet, finish, load_fences};

#[derive(Debug, Args)]
pub struct BenchClusterArgs {
    /// Base URLs of the nodes, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub urls: Vec<String>,
    #[arg(long, default_value_t = 2_000)]
    pub devices: usize,
    /// Fixes per second, all devices together.
    #[arg(long, default_value_t = 2_000)]
    pub rate: usize,
    #[arg(long, default_value_t = 60)]
    pub duration_s: u64,
    #[arg(long, default_value_t = 200)]
    pub fences: usize,
    #[arg(long, default_value_t = 6)]
    pub subscribers: usize,
    /// Fixes per request.
    #[arg(long, default_value_t = 50)]
    pub batch: usize,
    /// Seconds per window of the latency report.
    #[arg(long, default_value_t = 10)]
    pub window_s: u64,
}

/// What one subscriber received: (alert id, latency in ms, seconds since the drive started).
type Seen = Vec<(i64, f64, f64)>;

/// A full WebSocket client: a cluster subscriber reconnects with its cursor and reads every
/// kind of message.
type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn run(args: &BenchClusterArgs, database_url: &str) -> Result<(), Error> {
    let db = sqlx::PgPool::connect(database_url)
        .await
        .map_err(Error::database("cannot connect to the database"))?;
    let client = reqwest::Client::new();
    load_fences(&client, &args.urls[0], args.fences).await?;
    // Every node hears of the fences by notification; give them a moment.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let cursor: i64 = sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM alerts")
        .fetch_one(&db)
        .await
        .map_err(Error::database("cannot read the last alert id"))?;
    let started = Instant::now();
    let stop = CancellationToken::new();
    let subscribers: Vec<_> = (0..args.subscribers)
        .map(|i| tokio::spawn(follow(args.urls.clone(), i, cursor, started, stop.clone())))
        .collect();
    let first_ts = chrono::Utc::now();
    println!(
        "drive starts at unix {:.1}: {} devices at {} fixes/s for {} s over {} nodes, {} subscribers",
        first_ts.timestamp_millis() as f64 / 1e3,
        args.devices,
        args.rate,
        args.duration_s,
        args.urls.len(),
        args.subscribers
    );
    let drive = drive(&client, args).await;
    let stored = wait_stored(&db, first_ts, drive.acked.load(Ordering::Relaxed)).await?;
    let stored_after = started.elapsed();
    let (seen, table) = finish(subscribers, &stop, &db, cursor).await?;
    report(args, &drive, (stored, stored_after), &table, &seen);
    Ok(())
}

/// Waits until the run's fixes in `positions` reach `acked`, or stop growing for 10 s.
async fn wait_stored(
    db: &sqlx::PgPool,
    since: chrono::DateTime<chrono::Utc>,
    acked: usize,
) -> Result<i64, Error> {
    let (mut last, mut grew) = (-1, Instant::now());
    loop {
        let stored: i64 =
            sqlx::query_scalar("SELECT count(*) FROM positions WHERE device LIKE 'bench-%' AND ts >= $1")
                .bind(since)
                .fetch_one(db)
                .await
                .map_err(Error::database("cannot count the stored fixes"))?;
        if stored > last {
            (last, grew) = (stored, Instant::now());
        }
        if stored >= acked as i64 || grew.elapsed() > Duration::from_secs(10) {
            return Ok(stored);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Connects to `/ws/alerts?since=cursor`; returns the socket and the alerts replayed before the
/// live marker.
async fn connect(url: &str, cursor: i64) -> Result<(Socket, Vec<Value>), Error> {
    let ws_url = format!("{}/ws/alerts?since={cursor}", url.replacen("http", "ws", 1));
    let (mut socket, _) = match tokio_tungstenite::connect_async(&ws_url).await {
        Ok(connected) => connected,
        Err(source) => return Err(Error::WebSocket { url: ws_url, source }),
    };
    let mut replayed = Vec::new();
    while let Some(message) = socket.next().await {
        let Ok(Message::Text(text)) = message else {
            continue;
        };
        let Ok(value) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        match value["type"].as_str() {
            Some("live") => return Ok((socket, replayed)),
            Some("alert") => replayed.push(value),
            _ => {}
        }
    }
    Err(Error::NotLive { url: ws_url })
}

/// One subscriber, starting on node `first`: follows alerts until `stop`, moving to the next
/// node with its cursor whenever its node goes away.
async fn follow(
    urls: Vec<String>,
    first: usize,
    mut cursor: i64,
    started: Instant,
    stop: CancellationToken,
) -> Seen {
    let mut seen = Vec::new();
    let mut node = first;
    while !stop.is_cancelled() {
        let Ok((mut socket, replayed)) = connect(&urls[node % urls.len()], cursor).await else {
            node += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        for alert in replayed {
            record(&alert, started, &mut cursor, &mut seen);
        }
        loop {
            let message = tokio::select! {
                m = socket.next() => m,
                () = stop.cancelled() => return seen,
            };
            let Some(Ok(message)) = message else { break };
            let Message::Text(text) = message else { continue };
            if let Ok(alert) = serde_json::from_str::<Value>(&text) {
                record(&alert, started, &mut cursor, &mut seen);
            }
        }
        node += 1;
    }
    seen
}

fn record(alert: &Value, started: Instant, cursor: &mut i64, seen: &mut Seen) {
    let (Some(id), Some(received)) = (alert["id"].as_i64(), alert["received_at"].as_str()) else {
        return;
    };
    let Ok(received) = chrono::DateTime::parse_from_rfc3339(received) else {
        return;
    };
    let latency = (chrono::Utc::now() - received.with_timezone(&chrono::Utc))
        .num_microseconds()
        .unwrap_or(0) as f64
        / 1e3;
    *cursor = (*cursor).max(id);
    seen.push((id, latency, started.elapsed().as_secs_f64()));
}

struct Drive {
    sent: usize,
    acked: Arc<AtomicUsize>,
    /// Replies other than 202 (and transport errors), each retried on the next node.
    refused: Arc<AtomicUsize>,
    /// Requests never acknowledged within 60 s.
    failed: Arc<AtomicUsize>,
    elapsed: Duration,
}

/// Sends the fixes on a fixed schedule over the nodes in turn.
async fn drive(client: &reqwest::Client, args: &BenchClusterArgs) -> Drive {
    let batch = args.batch.max(1);
    let mut fleet = Fleet::new(args.devices, args.rate);
    let requests = (args.rate as u64 * args.duration_s) as usize / batch;
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(batch as f64 / args.rate.max(1) as f64));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let in_flight = Arc::new(Semaphore::new(512));
    let counters = (0..3).map(|_| Arc::new(AtomicUsize::new(0))).collect::<Vec<_>>();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..requests {
        ticks.tick().await;
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let fixes = fleet.fixes(batch, &now);
        let permit = in_flight.clone().acquire_owned().await.expect("never closed");
        let (client, urls, counters) = (client.clone(), args.urls.clone(), counters.clone());
        tasks.spawn(async move {
            let outcome = send_until_acked(&client, &urls, k, &Value::Array(fixes), &counters[1]).await;
            counters[if outcome { 0 } else { 2 }].fetch_add(batch, Ordering::Relaxed);
            drop(permit);
        });
    }
    while tasks.join_next().await.is_some() {}
    Drive {
        sent: requests * batch,
        acked: counters[0].clone(),
        refused: counters[1].clone(),
        failed: counters[2].clone(),
        elapsed: started.elapsed(),
    }
}

/// Posts `body` to node `k mod N`, then to the next ones, until one acknowledges it (60 s at
/// most); counts every refusal.
async fn send_until_acked(
    client: &reqwest::Client,
    urls: &[String],
    k: usize,
    body: &Value,
    refused: &AtomicUsize,
) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    for attempt in 0.. {
        let url = &urls[(k + attempt) % urls.len()];
        let reply = client
            .post(format!("{url}/api/v1/positions"))
            .json(body)
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        if reply.is_ok_and(|r| r.status().as_u16() == 202) {
            return true;
        }
        refused.fetch_add(1, Ordering::Relaxed);
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// `stored`: the run's fixes found in `positions`, and when the count was reached.
fn report(
    args: &BenchClusterArgs,
    drive: &Drive,
    (stored, stored_after): (i64, Duration),
    table: &[i64],
    seen: &[Seen],
) {
    let secs = drive.elapsed.as_secs_f64();
    let acked = drive.acked.load(Ordering::Relaxed);
    println!(
        "stored {stored} fixes {:.1} s after the drive started: {:.0} fixes/s end to end, {:.0}/s acknowledged",
        stored_after.as_secs_f64(),
        stored as f64 / stored_after.as_secs_f64(),
        acked as f64 / secs
    );
    println!(
        "fixes: {} sent in {secs:.1} s ({:.0}/s, target {}), {acked} acknowledged, {stored} stored ({}), {} never acknowledged; {} requests refused and retried on another node",
        drive.sent,
        drive.sent as f64 / secs,
        args.rate,
        if stored == acked as i64 {
            "all"
        } else {
            "MISSING: stored nothing more for 10 s"
        },
        drive.failed.load(Ordering::Relaxed),
        drive.refused.load(Ordering::Relaxed)
    );
    println!("alerts: {} ({:.0}/s)", table.len(), table.len() as f64 / secs);
    for (i, s) in seen.iter().enumerate() {
        let ids: std::collections::BTreeSet<i64> = s.iter().map(|(id, ..)| *id).collect();
        let lost = table.iter().filter(|id| !ids.contains(id)).count();
        let doubled = s.len() - ids.len();
        let ordered = s.windows(2).all(|w| w[0].0 < w[1].0);
        println!(
            "subscriber {i}: {} alerts, {lost} lost, {doubled} doubled, in id order: {ordered}",
            s.len()
        );
    }
    let window = args.window_s.max(1) as f64;
    let windows = seen
        .iter()
        .flatten()
        .map(|(.., t)| (t / window) as usize)
        .max()
        .unwrap_or(0);
    for w in 0..=windows {
        let mut latencies: Vec<f64> = seen
            .iter()
            .flatten()
            .filter(|(.., t)| (t / window) as usize == w)
            .map(|(_, ms, _)| *ms)
            .collect();
        if latencies.is_empty() {
            continue;
        }
        latencies.sort_by(f64::total_cmp);
        let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
        println!(
            "t {:>4.0}-{:<4.0} s: {:>6} deliveries, latency p50 {:>7.1} ms, p99 {:>7.1} ms",
            w as f64 * window,
            (w + 1) as f64 * window,
            latencies.len(),
            at(0.5),
            at(0.99)
        );
    }
}
