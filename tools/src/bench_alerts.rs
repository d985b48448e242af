//! `geotrack bench-alerts`: end-to-end alert latency against a running server.
//!
//! Loads `--fences` circles, connects `--subscribers` light WebSocket subscribers to
//! `/ws/alerts` (see `light_socket`: the client shares the two cores with the server), then
//! drives `--devices` simulated vehicles open loop (a fixed send schedule, not request after
//! reply) at `--rate` fixes/s for `--duration-s` seconds over HTTP. Each alert carries the time
//! its fix reached the server (`received_at`, same clock), so a subscriber's receive time minus
//! it is the latency from ingest to socket. Reports latency percentiles over every delivery,
//! alerts/s, and whether every subscriber saw exactly the alerts in the table, in id order,
//! then where the time went: the server's own histograms of each stage over the drive.
//! The first `--warmup-s` seconds, when every device sends its first fix (its registration, its
//! first fence states), are reported apart from the steady state that follows, and together.
//! With `--stalled-subscribers N`, N more sockets connect and then never read: the server must
//! drop them (their send buffers fill, their pings go unanswered) while the others go on as
//! before; the report gives the server's dropped and lagged session counts over the run.
//! With `--idle-subscribers N` it instead holds N idle sockets open and reports the server's
//! memory per socket.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::light_socket::{AlertFields, LightSocket};
use crate::process::{cpu_seconds, peak_rss, rss_kib};
use crate::simulate::{Rng, offset};
use crate::stages::Snapshot;

#[derive(Debug, Args)]
pub struct BenchAlertsArgs {
    /// Base URL of the running server.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    #[arg(long, default_value_t = 10_000)]
    pub devices: usize,
    /// Fixes per second, all devices together.
    #[arg(long, default_value_t = 25_000)]
    pub rate: usize,
    #[arg(long, default_value_t = 60)]
    pub duration_s: u64,
    #[arg(long, default_value_t = 1_000)]
    pub fences: usize,
    #[arg(long, default_value_t = 100)]
    pub subscribers: usize,
    /// Fixes per request.
    #[arg(long, default_value_t = 250)]
    pub batch: usize,
    /// Seconds at the start of the drive whose alerts' latency is reported apart (the devices'
    /// first fixes) besides the steady state after them.
    #[arg(long, default_value_t = 3)]
    pub warmup_s: u64,
    /// Sockets that subscribe and then never read (consumers that stop), beside the others.
    #[arg(long, default_value_t = 0)]
    pub stalled_subscribers: usize,
    /// Instead of driving: hold this many idle sockets and report memory per socket.
    #[arg(long, default_value_t = 0)]
    pub idle_subscribers: usize,
    /// PID of the server, for its CPU time and memory (read from /proc).
    #[arg(long)]
    pub server_pid: Option<u32>,
}

/// The area the fleet drives in and the fences lie in: half a degree square at 10°N 10°E.
pub(crate) const AREA: [f64; 4] = [10.0, 10.0, 10.5, 10.5];

pub async fn run(args: &BenchAlertsArgs, database_url: &str) -> Result<(), Error> {
    if args.idle_subscribers > 0 {
        return idle(args).await;
    }
    let db = sqlx::PgPool::connect(database_url)
        .await
        .map_err(Error::database("cannot connect to the database"))?;
    let client = reqwest::Client::new();
    load_fences(&client, &args.url, args.fences).await?;
    let start_cursor: i64 = sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM alerts")
        .fetch_one(&db)
        .await
        .map_err(Error::database("cannot read the last alert id"))?;
    let stop = CancellationToken::new();
    let mut subscribers = Vec::new();
    for _ in 0..args.subscribers {
        let socket = subscribe(&args.url).await?;
        subscribers.push(tokio::spawn(collect(socket, stop.clone())));
    }
    let mut stalled = Vec::with_capacity(args.stalled_subscribers);
    for _ in 0..args.stalled_subscribers {
        stalled.push(subscribe(&args.url).await?);
    }
    let sessions_before = ws_sessions(&client, &args.url).await;
    println!(
        "{} fences, {} subscribers ({} more that never read); driving {} devices at {} fixes/s for {} s ...",
        args.fences, args.subscribers, args.stalled_subscribers, args.devices, args.rate, args.duration_s
    );
    let cpu_before = cpu_seconds(args.server_pid);
    let stages_before = Snapshot::read(&client, &args.url).await;
    let stages_warm = read_stages_later(&client, &args.url, Duration::from_secs(args.warmup_s));
    let schedule = Schedule {
        rate: args.rate,
        duration_s: args.duration_s,
        batch: args.batch,
    };
    let mut fleet = Fleet::new(args.devices, args.rate);
    let drive = drive(&client, &args.url, schedule, |n, ts| fleet.fixes(n, ts)).await;
    let cpu_after = cpu_seconds(args.server_pid);
    let (seen, stored) = finish(subscribers, &stop, &db, start_cursor).await?;
    report(args, &drive, &stored, &seen);
    let stages_warm = stages_warm.await.map_err(|source| Error::Task {
        what: "metrics reader",
        source,
    })?;
    let stages_after = Snapshot::read(&client, &args.url).await;
    report_stages(args.warmup_s, [&stages_before, &stages_warm, &stages_after]);
    if !stalled.is_empty() {
        let after = ws_sessions(&client, &args.url).await;
        println!(
            "sessions the server dropped (a peer not reading or answering pings) during the run: {}, lagged: {} ({} stalled sockets)",
            after.0.saturating_sub(sessions_before.0),
            after.1.saturating_sub(sessions_before.1),
            stalled.len()
        );
    }
    drop(stalled);
    if let (Some(before), Some(after)) = (cpu_before, cpu_after) {
        before.print_shares(&after, drive.elapsed.as_secs_f64());
    }
    if let Some(pid) = args.server_pid {
        println!(
            "server peak RSS: {}",
            peak_rss(pid).unwrap_or_else(|| "unknown".into())
        );
    }
    Ok(())
}

/// Reads the server's histograms `after` from now, in a task of its own.
fn read_stages_later(
    client: &reqwest::Client,
    url: &str,
    after: Duration,
) -> tokio::task::JoinHandle<Snapshot> {
    let (client, url) = (client.clone(), url.to_owned());
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        Snapshot::read(&client, &url).await
    })
}

/// After a drive: lets the last alerts reach every socket, stops the subscribers, and returns
/// what each received and the ids of the alerts stored after `cursor`, in order.
pub(crate) async fn finish<T>(
    subscribers: Vec<tokio::task::JoinHandle<T>>,
    stop: &CancellationToken,
    db: &sqlx::PgPool,
    cursor: i64,
) -> Result<(Vec<T>, Vec<i64>), Error> {
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.cancel();
    let mut seen = Vec::new();
    for s in subscribers {
        seen.push(s.await.map_err(|source| Error::Task {
            what: "subscriber",
            source,
        })?);
    }
    let stored = sqlx::query_scalar("SELECT id FROM alerts WHERE id > $1 ORDER BY id")
        .bind(cursor)
        .fetch_all(db)
        .await
        .map_err(Error::database("cannot read the alerts of the run"))?;
    Ok((seen, stored))
}

/// Imports `count` circles of 200 to 800 m in [`AREA`] through `url`.
pub(crate) async fn load_fences(client: &reqwest::Client, url: &str, count: usize) -> Result<(), Error> {
    let mut rng = Rng::new(0x5eed_f00d);
    let features: Vec<Value> = (0..count)
        .map(|i| {
            let lon = AREA[0] + rng.unit() * (AREA[2] - AREA[0]);
            let lat = AREA[1] + rng.unit() * (AREA[3] - AREA[1]);
            json!({"type": "Feature", "id": format!("bench-{i}"),
                   "geometry": {"type": "Point", "coordinates": [lon, lat]},
                   "properties": {"radius_m": 200.0 + rng.unit() * 600.0}})
        })
        .collect();
    import_fences(client, url, features).await
}

/// Imports `features` (GeoJSON fences) through `url`'s bulk import.
pub(crate) async fn import_fences(
    client: &reqwest::Client,
    url: &str,
    features: Vec<Value>,
) -> Result<(), Error> {
    let reply = client
        .post(format!("{url}/api/v1/fences/import"))
        .json(&json!({"type": "FeatureCollection", "features": features}))
        .send()
        .await
        .map_err(Error::request("fence import"))?;
    if !reply.status().is_success() {
        return Err(Error::status("fence import", reply).await);
    }
    Ok(())
}

/// Connects a light subscriber to `/ws/alerts` and waits for the live marker.
async fn subscribe(url: &str) -> Result<LightSocket, Error> {
    let mut socket = LightSocket::connect(url, "/ws/alerts").await?;
    socket.wait_for("\"live\"").await?;
    Ok(socket)
}

/// What a subscriber saw of one alert.
struct Delivery {
    id: i64,
    /// From the fix's arrival at the server to this socket.
    latency_ms: f64,
    /// When the fix arrived.
    received: chrono::DateTime<chrono::Utc>,
}

/// Every alert a subscriber received, in arrival order, until `stop` or the server closes.
async fn collect(mut socket: LightSocket, stop: CancellationToken) -> Vec<Delivery> {
    let fields = AlertFields::new();
    let mut seen = Vec::new();
    let read = socket.read(None, |message, at| {
        if let Some((id, received)) = fields.alert(message) {
            let latency = at.duration_since(received).unwrap_or_default();
            seen.push(Delivery {
                id,
                latency_ms: latency.as_secs_f64() * 1e3,
                received: received.into(),
            });
        }
        true
    });
    tokio::select! {
        _ = read => {}
        () = stop.cancelled() => {}
    }
    seen
}

/// Vehicles driving at 20 m/s in [`AREA`], turning a little at random, bouncing off its edges.
pub(crate) struct Fleet {
    vehicles: Vec<([f64; 2], f64)>,
    rng: Rng,
    next: usize,
    /// Metres each vehicle moves between two of its fixes.
    step_m: f64,
}

impl Fleet {
    /// `devices` vehicles reporting `rate` fixes per second between them.
    pub(crate) fn new(devices: usize, rate: usize) -> Self {
        let mut rng = Rng::new(42);
        let vehicles = (0..devices.max(1))
            .map(|_| {
                let lon = AREA[0] + rng.unit() * (AREA[2] - AREA[0]);
                let lat = AREA[1] + rng.unit() * (AREA[3] - AREA[1]);
                ([lon, lat], rng.unit() * std::f64::consts::TAU)
            })
            .collect::<Vec<_>>();
        let step_m = 20.0 * vehicles.len() as f64 / rate.max(1) as f64;
        Self {
            vehicles,
            rng,
            next: 0,
            step_m,
        }
    }

    /// The next `n` fixes (vehicles in turn), all at time `ts`, as JSON.
    pub(crate) fn fixes(&mut self, n: usize, ts: &str) -> Vec<Value> {
        (0..n)
            .map(|_| {
                let d = self.next;
                self.next = (self.next + 1) % self.vehicles.len();
                let (pos, heading) = &mut self.vehicles[d];
                *heading += (self.rng.unit() - 0.5) * 0.3;
                *pos = offset(*pos, self.step_m, *heading);
                if !(AREA[0]..AREA[2]).contains(&pos[0]) || !(AREA[1]..AREA[3]).contains(&pos[1]) {
                    *heading += std::f64::consts::PI;
                    pos[0] = pos[0].clamp(AREA[0], AREA[2]);
                    pos[1] = pos[1].clamp(AREA[1], AREA[3]);
                }
                json!({"device": format!("bench-{d}"), "ts": ts, "lon": pos[0], "lat": pos[1]})
            })
            .collect()
    }
}

/// A drive's send schedule: `rate` fixes/s for `duration_s` seconds, `batch` fixes a request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Schedule {
    pub rate: usize,
    pub duration_s: u64,
    pub batch: usize,
}

pub(crate) struct Drive {
    /// When the first request was sent.
    pub started_at: chrono::DateTime<chrono::Utc>,
    sent: usize,
    accepted: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    late: usize,
    pub elapsed: Duration,
}

impl Drive {
    /// Prints what was sent and acknowledged against the schedule.
    pub(crate) fn print(&self, rate: usize) {
        let secs = self.elapsed.as_secs_f64();
        println!(
            "fixes: {} sent in {secs:.1} s ({:.0}/s, target {rate}), {} acknowledged, {} failed; {} sends waited for room",
            self.sent,
            self.sent as f64 / secs,
            self.accepted.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            self.late
        );
    }
}

/// Posts the fixes `next(n, ts)` gives, `n` at a time, to `url` on a fixed schedule; a request
/// never waits for the previous one's reply.
pub(crate) async fn drive(
    client: &reqwest::Client,
    url: &str,
    schedule: Schedule,
    mut next: impl FnMut(usize, &str) -> Vec<Value>,
) -> Drive {
    let batch = schedule.batch.max(1);
    let requests = (schedule.rate as u64 * schedule.duration_s) as usize / batch;
    let every = Duration::from_secs_f64(batch as f64 / schedule.rate.max(1) as f64);
    let in_flight = Arc::new(Semaphore::new(512));
    let (accepted, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let started_at = chrono::Utc::now();
    let mut late = 0;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..requests {
        ticks.tick().await;
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let fixes = next(batch, &now);
        let permit = if let Ok(permit) = in_flight.clone().try_acquire_owned() {
            permit
        } else {
            late += 1; // the server is behind: this send waits, the schedule slips
            in_flight.clone().acquire_owned().await.expect("never closed")
        };
        let request = client.post(format!("{url}/api/v1/positions")).json(&fixes);
        let (accepted, failed) = (accepted.clone(), failed.clone());
        tasks.spawn(async move {
            match request.send().await {
                Ok(reply) if reply.status().as_u16() == 202 => accepted.fetch_add(batch, Ordering::Relaxed),
                _ => failed.fetch_add(batch, Ordering::Relaxed),
            };
            drop(permit);
        });
    }
    while tasks.join_next().await.is_some() {}
    Drive {
        started_at,
        sent: requests * batch,
        accepted,
        failed,
        late,
        elapsed: started.elapsed(),
    }
}

fn report(args: &BenchAlertsArgs, drive: &Drive, stored: &[i64], seen: &[Vec<Delivery>]) {
    let secs = drive.elapsed.as_secs_f64();
    drive.print(args.rate);
    println!("alerts: {} ({:.0}/s)", stored.len(), stored.len() as f64 / secs);
    let exact = seen
        .iter()
        .filter(|s| s.iter().map(|d| d.id).eq(stored.iter().copied()))
        .count();
    println!(
        "subscribers whose stream equals the table, in id order: {exact}/{}",
        seen.len()
    );
    let steady_from = drive.started_at + chrono::Duration::seconds(args.warmup_s as i64);
    let all = seen.iter().flatten();
    print_latency("all", all.clone().map(|d| d.latency_ms));
    print_latency(
        &format!("first {} s (each device's first fixes)", args.warmup_s),
        all.clone()
            .filter(|d| d.received < steady_from)
            .map(|d| d.latency_ms),
    );
    print_latency(
        "steady state after them",
        all.clone()
            .filter(|d| d.received >= steady_from)
            .map(|d| d.latency_ms),
    );
    // The warm-up second by second: how long its burst lasts.
    for k in 0..args.warmup_s {
        let from = drive.started_at + chrono::Duration::seconds(k as i64);
        let to = from + chrono::Duration::seconds(1);
        print_latency(
            &format!("second {} of the drive", k + 1),
            all.clone()
                .filter(|d| (from..to).contains(&d.received))
                .map(|d| d.latency_ms),
        );
    }
}

/// Prints where the server's time went, stage by stage along an alert's way: over the first
/// `warmup_s` seconds and over the rest of the drive, from three readings of its histograms.
fn report_stages(warmup_s: u64, [before, warm, after]: [&Snapshot; 3]) {
    for (during, from, to) in [
        (format!("the first {warmup_s} s"), before, warm),
        ("the rest of the drive".to_owned(), warm, after),
    ] {
        println!("stages over {during}, from the server's histograms:");
        for (what, name, unit) in [
            ("fixes per batch", "geotrack_ingest_batch_fixes", ""),
            ("batch write up to commit", "geotrack_ingest_commit_seconds", "ms"),
            (
                "fix received → evaluated",
                "geotrack_alerts_evaluation_lag_seconds",
                "ms",
            ),
            ("alert commit", "geotrack_alerts_commit_seconds", "ms"),
            (
                "fix received → alert published",
                "geotrack_alerts_latency_seconds",
                "ms",
            ),
        ] {
            if let Some(line) = to.since(from, name, unit) {
                println!("  {what}: {line}");
            }
        }
    }
}

/// Prints the percentiles of `latencies` (ms) against the target.
fn print_latency(what: &str, latencies: impl Iterator<Item = f64>) {
    let mut latencies: Vec<f64> = latencies.collect();
    if latencies.is_empty() {
        return;
    }
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    println!(
        "latency received → on the socket, {what}, over {} deliveries: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (target p99 < 25 ms)",
        latencies.len(),
        at(0.5),
        at(0.99),
        at(1.0)
    );
}

/// The server's `geotrack_ws_dropped_total` and `geotrack_ws_lagged_total` (0 when unreadable).
pub(crate) async fn ws_sessions(client: &reqwest::Client, url: &str) -> (u64, u64) {
    let metrics = Snapshot::read(client, url).await;
    let value = |name: &str| metrics.value(name).map_or(0, |v| v as u64);
    (
        value("geotrack_ws_dropped_total"),
        value("geotrack_ws_lagged_total"),
    )
}

/// Holds `idle_subscribers` open sockets and reports the server's memory per socket.
async fn idle(args: &BenchAlertsArgs) -> Result<(), Error> {
    let before = args.server_pid.and_then(rss_kib);
    let started = Instant::now();
    let mut sockets = Vec::with_capacity(args.idle_subscribers);
    for i in 0..args.idle_subscribers {
        match subscribe(&args.url).await {
            Ok(socket) => sockets.push(socket),
            Err(e) => {
                println!("socket {i} failed: {e}");
                break;
            }
        }
    }
    println!(
        "{} idle sockets open after {:.1} s",
        sockets.len(),
        started.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = args.server_pid.and_then(rss_kib);
    if let (Some(before), Some(after)) = (before, after) {
        println!(
            "server RSS {before} KiB -> {after} KiB: {:.1} KiB per idle socket",
            (after - before) as f64 / sockets.len().max(1) as f64
        );
    }
    Ok(())
}
