//! `geotrack bench-fanout`: many active WebSocket subscribers at a high alert rate, and slow
//! consumers beside them that must not slow them down.
//!
//! Loads `--fences` circles on a grid, connects `--subscribers` light sockets to `/ws/alerts`
//! (see `light_socket`: the client shares the cores with the server) and `--slow-subscribers`
//! that read only `--slow-bytes-per-s`, then drives `--devices` devices that each jump between
//! the centre of their fence and a point outside it with every fix, so every fix is an alert:
//! `--rate` fixes/s are `--rate` alerts/s, each sent to every subscriber. Reports deliveries/s
//! against subscribers × alerts/s, the slowest second, how many subscribers received exactly
//! the alerts of the table in id order, the latency from the fix reaching the server to the
//! alert on the socket, how each slow consumer ended (the server tells one that falls a hub's
//! capacity behind that it lagged and closes it, and drops one whose send takes longer than
//! `ws.send_timeout_s`), and the CPU of the server, PostgreSQL and this client.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::Args;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::bench_alerts::{Schedule, drive, finish, import_fences, ws_sessions};
use crate::light_socket::{AlertFields, Closed, LightSocket};
use crate::process::cpu_seconds;

#[derive(Debug, Args)]
pub struct BenchFanoutArgs {
    /// Base URL of the running server.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Subscribers that read as fast as they can.
    #[arg(long, default_value_t = 1_000)]
    pub subscribers: usize,
    /// Alerts per second: each fix is one (an enter or an exit).
    #[arg(long, default_value_t = 1_000)]
    pub rate: usize,
    #[arg(long, default_value_t = 20)]
    pub duration_s: u64,
    /// Devices taking turns; each jumps in or out of its fence with every fix.
    #[arg(long, default_value_t = 200)]
    pub devices: usize,
    #[arg(long, default_value_t = 100)]
    pub fences: usize,
    /// Fixes per request.
    #[arg(long, default_value_t = 50)]
    pub batch: usize,
    /// Subscribers that read slowly, beside the others.
    #[arg(long, default_value_t = 1)]
    pub slow_subscribers: usize,
    /// How fast a slow subscriber reads.
    #[arg(long, default_value_t = 32_768)]
    pub slow_bytes_per_s: usize,
    /// PID of the server, for its CPU time (read from /proc).
    #[arg(long)]
    pub server_pid: Option<u32>,
}

/// Where the fences lie: a grid of 0.1° cells from 20°N 20°E, one fence of 300 m per cell.
const ORIGIN: [f64; 2] = [20.0, 20.0];
const CELL_DEG: f64 = 0.1;
/// How far north of its fence's centre a device goes out: 0.01° is 1.1 km, and the next fence
/// is 11 km away.
const OUT_DEG: f64 = 0.01;

pub async fn run(args: &BenchFanoutArgs, database_url: &str) -> Result<(), Error> {
    let db = sqlx::PgPool::connect(database_url)
        .await
        .map_err(Error::database("cannot connect to the database"))?;
    let client = reqwest::Client::new();
    let fences = args.fences.max(1);
    load_grid(&client, &args.url, fences).await?;
    let start_cursor: i64 = sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM alerts")
        .fetch_one(&db)
        .await
        .map_err(Error::database("cannot read the last alert id"))?;
    let (stop, delivered) = (CancellationToken::new(), Arc::new(AtomicU64::new(0)));
    let mut subscribers = Vec::with_capacity(args.subscribers + args.slow_subscribers);
    for k in 0..args.subscribers + args.slow_subscribers {
        let mut socket = LightSocket::connect(&args.url, "/ws/alerts").await?;
        socket.wait_for("\"live\"").await?;
        let pace = (k >= args.subscribers).then(|| slow_pace(args.slow_bytes_per_s));
        let (stop, delivered) = (stop.clone(), delivered.clone());
        subscribers.push(tokio::spawn(listen(socket, pace, stop, delivered)));
    }
    let sessions_before = ws_sessions(&client, &args.url).await;
    println!(
        "{fences} fences, {} subscribers and {} slow ones ({} bytes/s); {} devices jumping in and out at {} alerts/s for {} s ...",
        args.subscribers,
        args.slow_subscribers,
        args.slow_bytes_per_s,
        args.devices,
        args.rate,
        args.duration_s
    );
    let cpu_before = cpu_seconds(args.server_pid);
    let seconds = tokio::spawn(per_second(delivered.clone(), stop.clone()));
    let schedule = Schedule {
        rate: args.rate,
        duration_s: args.duration_s,
        batch: args.batch,
    };
    let mut jumps = Jumps::new(args.devices, fences);
    let drive = drive(&client, &args.url, schedule, |n, ts| jumps.fixes(n, ts)).await;
    let cpu_after = cpu_seconds(args.server_pid);
    let (tallies, stored) = finish(subscribers, &stop, &db, start_cursor).await?;
    let seconds = seconds.await.map_err(Error::task("delivery counter"))?;
    drive.print(args.rate);
    let secs = drive.elapsed.as_secs_f64();
    println!("alerts: {} ({:.0}/s)", stored.len(), stored.len() as f64 / secs);
    let (fast, slow) = tallies.split_at(args.subscribers.min(tallies.len()));
    report_fast(fast, &stored, &seconds, secs);
    report_slow(slow);
    let after = ws_sessions(&client, &args.url).await;
    println!(
        "sessions the server dropped during the run: {}, told they lagged: {}",
        after.0.saturating_sub(sessions_before.0),
        after.1.saturating_sub(sessions_before.1)
    );
    if let (Some(before), Some(after)) = (cpu_before, cpu_after) {
        before.print_shares(&after, secs);
    }
    Ok(())
}

/// A slow consumer's reads: a quarter of its bytes per second, four times a second.
fn slow_pace(bytes_per_s: usize) -> (usize, Duration) {
    ((bytes_per_s / 4).max(1), Duration::from_millis(250))
}

/// Imports `count` circles of 300 m, one per cell of the grid (ids `fanout-<k>`).
async fn load_grid(client: &reqwest::Client, url: &str, count: usize) -> Result<(), Error> {
    let features: Vec<Value> = (0..count)
        .map(|k| {
            json!({"type": "Feature", "id": format!("fanout-{k}"),
                   "geometry": {"type": "Point", "coordinates": centre(k, count)},
                   "properties": {"radius_m": 300.0}})
        })
        .collect();
    import_fences(client, url, features).await
}

/// The centre of fence `k` of `count`, on a square grid.
fn centre(k: usize, count: usize) -> [f64; 2] {
    let side = (count as f64).sqrt().ceil().max(1.0) as usize;
    [
        ORIGIN[0] + (k % side) as f64 * CELL_DEG,
        ORIGIN[1] + (k / side) as f64 * CELL_DEG,
    ]
}

/// Devices in turn, each alternating between its fence's centre and a point outside.
struct Jumps {
    inside: Vec<bool>,
    fences: usize,
    next: usize,
}

impl Jumps {
    fn new(devices: usize, fences: usize) -> Self {
        Self {
            inside: vec![false; devices.max(1)],
            fences,
            next: 0,
        }
    }

    /// The next `n` fixes, all at time `ts`: each enters or leaves its device's fence.
    fn fixes(&mut self, n: usize, ts: &str) -> Vec<Value> {
        (0..n)
            .map(|_| {
                let d = self.next;
                self.next = (self.next + 1) % self.inside.len();
                self.inside[d] = !self.inside[d];
                let [lon, lat] = centre(d % self.fences, self.fences);
                let lat = if self.inside[d] { lat } else { lat + OUT_DEG };
                json!({"device": format!("fanout-{d}"), "ts": ts, "lon": lon, "lat": lat})
            })
            .collect()
    }
}

/// What one subscriber received.
struct Tally {
    count: u64,
    /// Of the ids in arrival order ([`digest`]), to compare with the table's.
    digest: u64,
    latency: Latencies,
    /// It received `{"type":"lagged", ...}`.
    lagged: bool,
    closed: Closed,
}

/// Reads alerts until the server closes the socket or `stop`.
async fn listen(
    mut socket: LightSocket,
    pace: Option<(usize, Duration)>,
    stop: CancellationToken,
    delivered: Arc<AtomicU64>,
) -> Tally {
    let fields = AlertFields::new();
    let mut tally = Tally {
        count: 0,
        digest: DIGEST_START,
        latency: Latencies::default(),
        lagged: false,
        closed: Closed::ByReader,
    };
    let read = socket.read(pace, |message, at| {
        match fields.alert(message) {
            Some((id, received_at)) => {
                tally.count += 1;
                tally.digest = digest_step(tally.digest, id);
                let latency = at.duration_since(received_at).unwrap_or_default();
                tally.latency.record(latency);
                delivered.fetch_add(1, Ordering::Relaxed);
            }
            None => tally.lagged |= fields.lagged(message),
        }
        true
    });
    let closed = tokio::select! {
        closed = read => closed,
        () = stop.cancelled() => Closed::ByReader,
    };
    tally.closed = closed;
    tally
}

const DIGEST_START: u64 = 0xcbf2_9ce4_8422_2325;

/// One step of an order-sensitive digest of alert ids (FNV-1a over each id's bytes).
fn digest_step(digest: u64, id: i64) -> u64 {
    id.to_le_bytes()
        .iter()
        .fold(digest, |d, &b| (d ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// The digest of `ids` in their order.
fn digest(ids: &[i64]) -> u64 {
    ids.iter().fold(DIGEST_START, |d, &id| digest_step(d, id))
}

/// Latencies in buckets of a quarter millisecond up to a second, and the largest.
struct Latencies {
    buckets: Vec<u32>,
    max: Duration,
}

const BUCKET_US: u128 = 250;
const BUCKETS: usize = 4_000;

impl Default for Latencies {
    fn default() -> Self {
        Self {
            buckets: vec![0; BUCKETS + 1],
            max: Duration::ZERO,
        }
    }
}

impl Latencies {
    fn record(&mut self, latency: Duration) {
        let bucket = usize::try_from(latency.as_micros() / BUCKET_US).unwrap_or(BUCKETS);
        self.buckets[bucket.min(BUCKETS)] += 1;
        self.max = self.max.max(latency);
    }

    fn merge(&mut self, other: &Self) {
        for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            *mine += theirs;
        }
        self.max = self.max.max(other.max);
    }

    /// The upper edge of the bucket holding quantile `q`, in ms (`None` when empty; at most
    /// the largest latency seen).
    fn quantile_ms(&self, q: f64) -> Option<f64> {
        let total: u64 = self.buckets.iter().map(|&c| u64::from(c)).sum();
        let rank = ((total as f64 * q).ceil() as u64).max(1);
        let mut seen = 0;
        let bucket = self.buckets.iter().position(|&c| {
            seen += u64::from(c);
            seen >= rank
        })?;
        if bucket == BUCKETS {
            return Some(self.max.as_secs_f64() * 1e3);
        }
        let edge_ms = (bucket + 1) as f64 * BUCKET_US as f64 / 1e3;
        Some(edge_ms.min(self.max.as_secs_f64() * 1e3))
    }
}

/// Deliveries in each second of the run, counted while `stop` is not cancelled.
async fn per_second(delivered: Arc<AtomicU64>, stop: CancellationToken) -> Vec<u64> {
    let mut seconds = Vec::new();
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    ticks.tick().await;
    let mut last = delivered.load(Ordering::Relaxed);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = stop.cancelled() => return seconds,
        }
        let now = delivered.load(Ordering::Relaxed);
        seconds.push(now - last);
        last = now;
    }
}

fn report_fast(fast: &[Tally], stored: &[i64], seconds: &[u64], secs: f64) {
    let delivered: u64 = fast.iter().map(|t| t.count).sum();
    println!(
        "deliveries to the {} subscribers: {delivered} ({:.0}/s, {:.0}% of subscribers × alerts/s)",
        fast.len(),
        delivered as f64 / secs,
        100.0 * delivered as f64 / (fast.len() as f64 * stored.len() as f64).max(1.0)
    );
    // The drive's seconds: leave out the first (sockets idle until the first alerts) and the
    // tail after the drive.
    let mut busy: Vec<u64> = seconds
        .iter()
        .copied()
        .skip(1)
        .take((secs as usize).saturating_sub(1))
        .collect();
    busy.sort_unstable();
    if let (Some(low), Some(high)) = (busy.first(), busy.last()) {
        println!(
            "deliveries per second during the drive: slowest {low}, median {}, fastest {high}",
            busy[busy.len() / 2]
        );
    }
    let expected = (stored.len() as u64, digest(stored));
    let exact = fast
        .iter()
        .filter(|t| (t.count, t.digest) == expected && t.closed == Closed::ByReader)
        .count();
    println!(
        "subscribers whose stream equals the table, in id order: {exact}/{}",
        fast.len()
    );
    let mut all = Latencies::default();
    for tally in fast {
        all.merge(&tally.latency);
    }
    if let (Some(p50), Some(p99)) = (all.quantile_ms(0.5), all.quantile_ms(0.99)) {
        println!(
            "latency received → on the socket over every delivery: p50 ≤ {p50:.2} ms, p99 ≤ {p99:.2} ms, max {:.1} ms",
            all.max.as_secs_f64() * 1e3
        );
    }
}

fn report_slow(slow: &[Tally]) {
    for (k, tally) in slow.iter().enumerate() {
        let ended = match (tally.closed, tally.lagged) {
            (Closed::ByServer, true) => "told it lagged, then closed by the server",
            (Closed::ByServer, false) => "closed by the server",
            (Closed::ByReader, true) => "told it lagged, still open",
            (Closed::ByReader, false) => {
                "still reading at the end (what the kernel buffered, if the server closed it)"
            }
        };
        println!("slow subscriber {k}: {} alerts received; {ended}", tally.count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_tells_order_and_gaps_apart() {
        let ids = [1, 2, 3, 5];
        let mut running = DIGEST_START;
        for id in ids {
            running = digest_step(running, id);
        }
        assert_eq!(running, digest(&ids));
        assert_ne!(digest(&[1, 3, 2, 5]), digest(&ids));
        assert_ne!(digest(&[1, 2, 3]), digest(&ids));
    }

    #[test]
    fn quantiles_come_from_the_buckets_and_never_exceed_the_largest() {
        let mut latencies = Latencies::default();
        for ms in 1..=100 {
            latencies.record(Duration::from_millis(ms));
        }
        assert_eq!(latencies.quantile_ms(0.5), Some(50.25));
        assert_eq!(latencies.quantile_ms(0.99), Some(99.25));
        assert_eq!(latencies.quantile_ms(1.0), Some(100.0));
        latencies.record(Duration::from_secs(5));
        assert_eq!(latencies.max, Duration::from_secs(5));
        assert_eq!(latencies.quantile_ms(1.0), Some(5000.0));
        assert!(Latencies::default().quantile_ms(0.5).is_none());
    }

    #[test]
    fn every_fix_of_a_device_crosses_its_fence() {
        let mut jumps = Jumps::new(2, 4);
        let fixes = jumps.fixes(4, "2026-12-07T10:00:00Z");
        let lat = |k: usize| fixes[k]["lat"].as_f64().expect("lat");
        assert_eq!(fixes[0]["device"], "fanout-0");
        assert_eq!(fixes[2]["device"], "fanout-0");
        // In (the centre), then out, by OUT_DEG north.
        assert!((lat(0) - centre(0, 4)[1]).abs() < 1e-12);
        assert!((lat(2) - lat(0) - OUT_DEG).abs() < 1e-12);
        let lon = fixes[1]["lon"].as_f64().expect("lon");
        assert!((lon - centre(1, 4)[0]).abs() < 1e-12);
    }
}
