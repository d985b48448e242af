//! `geotrack bench-overload`: what a running server does with more load than it can take, and
//! with PostgreSQL going away under load (the script restarts it in the middle of the run).
//!
//! 1. Calibrate: `--connections` clients post `--batch` fixes per request back to back for
//!    `--calibrate-seconds`; the acknowledged (202) fixes per second are the sustainable rate S.
//! 2. Overload: open loop (a fixed schedule) at `--factor` × S for `--seconds`, each request its
//!    own task, at most `--max-in-flight` outstanding (the requests the cap stops are counted as
//!    not sent: the report says whether the client made the load). Every answer is counted; a
//!    probe GETs `/health` every 100 ms on its own connection; the server's RSS is sampled every
//!    second; a line per second shows a database restart as a run of refusals.
//! 3. Verify: the (device, ts) keys of every acknowledged fix are COPYed into a temporary table
//!    and looked up in `positions`.
//!
//! Fails when an acknowledged fix is missing, a 5xx other than 503 or a 503 without Retry-After
//! was seen, or over 1% of the `/health` probes failed. Refusing the excess is no failure.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use sqlx::{Connection, PgConnection};
use tokio::sync::Semaphore;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::process::{Cpu, cpu_seconds, peak_rss, rss_kib};

#[derive(Debug, Args)]
pub struct BenchOverloadArgs {
    /// Base URL of the running server.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Fixes per request.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Overload rate as a multiple of the calibrated sustainable rate.
    #[arg(long, default_value_t = 10.0)]
    pub factor: f64,
    /// Duration of the overload, in seconds.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    #[arg(long, default_value_t = 10)]
    pub calibrate_seconds: u64,
    /// Concurrent connections of the (closed-loop) calibration: enough to saturate the server
    /// (8 measured S at about half of what 64 sustained on 2 cores).
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Most requests outstanding during the overload; those it stops are counted as not sent.
    #[arg(long, default_value_t = 4096)]
    pub max_in_flight: usize,
    /// PID of the server, for its memory and CPU time (read from /proc).
    #[arg(long)]
    pub server_pid: Option<u32>,
    #[arg(long, default_value_t = 10_000)]
    pub devices: usize,
    /// Local address of the /health probe (e.g. 127.0.0.2), so that the server's per-address
    /// connection cap, which the overload fills, does not count it (as for a load balancer's).
    #[arg(long)]
    pub health_from: Option<IpAddr>,
}

/// Fix times step by this much per round over the devices.
const STEP_MS: i64 = 100;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
const HEALTH_EVERY: Duration = Duration::from_millis(100);

/// Runs the three phases and prints the report. `database_url` is the server's database.
pub async fn run(args: &BenchOverloadArgs, database_url: &str) -> Result<(), Error> {
    let client = client(REQUEST_TIMEOUT, args.max_in_flight.max(args.connections), None)?;
    let now = chrono::Utc::now().timestamp_millis();
    let run = Arc::new(Run {
        client,
        base: args.url.trim_end_matches('/').to_owned(),
        id: now % 1_000_000_000,
        base_ms: now - 3 * 3_600_000,
        devices: args.devices.max(1) as u64,
        batch: args.batch.max(1) as u64,
        ..Run::default()
    });
    let (sustainable, next) = calibrate(args, &run).await?;
    let overload = overload(args, &run, sustainable, next).await?;
    print!("{}", summary(args, &run, &overload, sustainable));
    // Every request has its answer; give what the client gave up on time to leave the queue.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (acknowledged, missing) = verify(database_url, &run).await?;
    println!("acknowledged {acknowledged}, missing {missing}");
    verdict(&run, missing)
}

fn client(timeout: Duration, connections: usize, from: Option<IpAddr>) -> Result<reqwest::Client, Error> {
    let builder = reqwest::Client::builder().timeout(timeout);
    let builder = builder.local_address(from).pool_max_idle_per_host(connections);
    builder.build().map_err(Error::Client)
}

/// What a [`Tally`] counts.
#[derive(Debug, Clone, Copy)]
enum C {
    Sent,
    NotSent,
    AckedRequests,
    AckedFixes,
    RejectedFixes,
    Unavailable,
    UnavailableBare,
    Other,
    Failed,
    Timeouts,
}

/// The counts of one phase, and its answers other than 202 and 503 by status.
#[derive(Debug, Default)]
struct Tally {
    counts: [AtomicU64; 10],
    statuses: Mutex<BTreeMap<u16, u64>>,
}

impl Tally {
    fn add(&self, count: C, n: u64) {
        self.counts[count as usize].fetch_add(n, Ordering::Relaxed);
    }

    fn get(&self, count: C) -> u64 {
        self.counts[count as usize].load(Ordering::Relaxed)
    }

    /// "code × count" of the statuses in `codes`, if any.
    fn statuses(&self, codes: Range<u16>) -> Option<String> {
        let statuses = lock(&self.statuses);
        let listed = statuses.iter().filter(|(c, _)| codes.contains(c));
        let listed: Vec<String> = listed.map(|(c, n)| format!("{c} × {n}")).collect();
        (!listed.is_empty()).then(|| listed.join(", "))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// State shared by every task of the run, and which fixes it sends: request k holds fixes
/// `k·batch .. (k+1)·batch`; fix g is device `g mod devices` at `base + (g div devices) ×
/// STEP_MS`. So every (device, ts) of the run is unique and a few hours old, and the fixes of
/// a request follow from its index alone.
#[derive(Debug, Default)]
struct Run {
    client: reqwest::Client,
    /// The server's base URL, without a trailing slash.
    base: String,
    id: i64,
    base_ms: i64,
    devices: u64,
    batch: u64,
    calibration: Tally,
    overload: Tally,
    /// Acknowledged fixes: whole requests by index, and the single fixes of partly refused ones.
    acked_requests: Mutex<Vec<u64>>,
    acked_fixes: Mutex<Vec<u64>>,
    /// Overload answers: (ms since the overload started, acknowledged?).
    events: Mutex<Vec<(u32, bool)>>,
    overload_started: OnceLock<Instant>,
    /// The first request that got no answer, and why.
    first_error: OnceLock<String>,
    /// Latencies (µs) of the /health answers, and the probes that failed.
    health: Mutex<Vec<u64>>,
    health_failures: AtomicU64,
    /// For the timeline: slowest /health (µs) and failed probes since its last line.
    health_max_us: AtomicU64,
    health_failed: AtomicU64,
}

impl Run {
    fn fixes(&self, k: u64) -> Range<u64> {
        k * self.batch..(k + 1) * self.batch
    }

    /// Device and time of fix g, as sent.
    fn key(&self, g: u64) -> (String, String) {
        let ms = self.base_ms + (g / self.devices) as i64 * STEP_MS;
        let ts = chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
        let ts = ts.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        (format!("ovl-{}-{}", self.id, g % self.devices), ts)
    }

    /// The JSON array of request k.
    fn body(&self, k: u64) -> Bytes {
        let mut body = String::with_capacity(self.batch as usize * 110);
        for g in self.fixes(k) {
            let ((device, ts), d) = (self.key(g), (g % self.devices) as f64);
            let (lon, lat) = (-170.0 + (d * 0.0341) % 340.0, -60.0 + (d * 0.0173) % 120.0);
            body.push(if body.is_empty() { '[' } else { ',' });
            let speed = g % 40;
            let _ = write!(
                body,
                r#"{{"device":"{device}","ts":"{ts}","lon":{lon:.5},"lat":{lat:.5},"speed_mps":{speed}}}"#
            );
        }
        body.push(']');
        Bytes::from(body)
    }

    /// Posts request k and records its outcome in `tally` (and, in the overload, its time).
    async fn send(&self, tally: &Tally, k: u64) {
        tally.add(C::Sent, 1);
        let url = format!("{}/api/v1/positions", self.base);
        let reply = post(&self.client, &url, self.body(k)).await;
        if let Some(started) = self.overload_started.get() {
            let ms = u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX);
            lock(&self.events).push((ms, matches!(reply, Ok((StatusCode::ACCEPTED, ..)))));
        }
        let (status, retry_after, body) = match reply {
            Ok(reply) => reply,
            Err(error) => {
                tally.add(C::Failed, 1);
                tally.add(C::Timeouts, u64::from(error.is_timeout()));
                let _ = self.first_error.set(Error::request("POST")(error).to_string());
                return;
            }
        };
        match (status, acked(&body)) {
            (StatusCode::SERVICE_UNAVAILABLE, _) if retry_after => tally.add(C::Unavailable, 1),
            (StatusCode::SERVICE_UNAVAILABLE, _) => tally.add(C::UnavailableBare, 1),
            (StatusCode::ACCEPTED, Some((accepted, rejected))) => {
                tally.add(C::AckedRequests, 1);
                tally.add(C::AckedFixes, accepted);
                tally.add(C::RejectedFixes, rejected.len() as u64);
                if rejected.is_empty() {
                    lock(&self.acked_requests).push(k);
                } else {
                    let kept = self.fixes(k).filter(|g| !rejected.contains(&(g % self.batch)));
                    lock(&self.acked_fixes).extend(kept);
                }
            }
            // Includes a 202 whose report cannot be read: it does not say what was stored.
            (status, _) => {
                tally.add(C::Other, 1);
                *lock(&tally.statuses).entry(status.as_u16()).or_default() += 1;
            }
        }
    }
}

/// One POST: the status, whether it came with a Retry-After in seconds, and the body (read, so
/// the connection can serve again); or why there is no answer.
async fn post(
    client: &reqwest::Client,
    url: &str,
    body: Bytes,
) -> reqwest::Result<(StatusCode, bool, Bytes)> {
    let request = client.post(url).header(CONTENT_TYPE, "application/json");
    let reply = request.body(body).send().await?;
    let status = reply.status();
    let retry_after = reply.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok());
    let retry_after = retry_after.is_some_and(|v| v.trim().parse::<u64>().is_ok());
    Ok((status, retry_after, reply.bytes().await?))
}

/// A 202's report `{"accepted": n, "rejected": [{"index": i, ...}]}`: n and the indexes.
fn acked(body: &[u8]) -> Option<(u64, Vec<u64>)> {
    let report = serde_json::from_slice::<serde_json::Value>(body).ok()?;
    let rejected = report["rejected"].as_array()?.iter();
    Some((
        report["accepted"].as_u64()?,
        rejected.filter_map(|r| r["index"].as_u64()).collect(),
    ))
}

/// Phase 1: closed loop; returns the acknowledged fixes per second, and the index of the next
/// request (the overload continues the numbering, so no fix is sent twice).
async fn calibrate(args: &BenchOverloadArgs, run: &Arc<Run>) -> Result<(f64, u64), Error> {
    let (connections, seconds, batch) = (args.connections.max(1), args.calibrate_seconds.max(1), run.batch);
    println!("calibrating: {connections} connections, {batch} fixes per request, {seconds} s ...");
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            let (run, next) = (run.clone(), next.clone());
            tokio::spawn(async move {
                while Instant::now() < until {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    run.send(&run.calibration, k).await;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.map_err(Error::task("calibration"))?;
    }
    let t = &run.calibration;
    let sustainable = t.get(C::AckedFixes) as f64 / started.elapsed().as_secs_f64();
    let (sent, acked) = (t.get(C::Sent), t.get(C::AckedRequests));
    println!("calibration: S = {sustainable:.0} fixes/s ({acked} of {sent} requests acknowledged)");
    if sustainable <= 0.0 {
        return Err(Error::NothingAcknowledged { seconds });
    }
    Ok((sustainable, next.load(Ordering::Relaxed)))
}

/// What the overload phase measured besides the tallies: the time the schedule took, the
/// server's RSS (KiB) before and at most, and its CPU.
#[derive(Debug)]
struct Overload {
    elapsed: Duration,
    rss: (Option<i64>, Option<i64>),
    cpu: String,
}

/// Phase 2: the open loop, with the /health probe and the timeline running alongside.
async fn overload(args: &BenchOverloadArgs, run: &Arc<Run>, s: f64, first: u64) -> Result<Overload, Error> {
    let target = args.factor * s;
    let per_second = target / run.batch as f64;
    let health_client = client(HEALTH_TIMEOUT, 1, args.health_from)?;
    let rss_before = args.server_pid.and_then(rss_kib);
    let (seconds, cap) = (args.seconds, args.max_in_flight);
    println!("overload starts: {target:.0} fixes/s = {per_second:.1} requests/s, {seconds} s, cap {cap}");
    let stop = CancellationToken::new();
    let _ = run.overload_started.set(Instant::now());
    let health = tokio::spawn(probe_health(health_client, run.clone(), stop.clone()));
    let timeline = tokio::spawn(timeline(run.clone(), args.server_pid, stop.clone()));
    let (cpu_before, drive_started) = (cpu_seconds(args.server_pid), Instant::now());
    let elapsed = drive(args, run, per_second, first).await;
    let cpu = cpu_line(cpu_before, cpu_seconds(args.server_pid), drive_started.elapsed());
    stop.cancel();
    health.await.map_err(Error::task("health probe"))?;
    let rss = (rss_before, timeline.await.map_err(Error::task("timeline"))?);
    Ok(Overload { elapsed, rss, cpu })
}

/// The server's and PostgreSQL's CPU over `span` (the schedule and its last answers).
fn cpu_line(before: Option<Cpu>, after: Option<Cpu>, span: Duration) -> String {
    let (Some(b), Some(a)) = (before, after) else {
        return "  CPU: unknown".into();
    };
    // Only live processes count: a restart of PostgreSQL drops its old ones' time (low, or "?").
    let share = |cpu: f64| format!("{:.0}%", 100.0 * cpu / span.as_secs_f64());
    let (server, pg) = (share(a.server - b.server), a.postgres - b.postgres);
    let pg = if pg < 0.0 { "?".into() } else { share(pg) };
    format!("  CPU (of one core, 2 shared with this client): server {server}, PostgreSQL {pg}")
}

/// Sends on schedule: every 10 ms, the requests due by then (a late tick sends what it owes).
/// Returns the time the schedule took, once every request sent has its answer.
async fn drive(args: &BenchOverloadArgs, run: &Arc<Run>, per_second: f64, first: u64) -> Duration {
    let cap = args.max_in_flight.clamp(1, Semaphore::MAX_PERMITS);
    let permits = Arc::new(Semaphore::new(cap));
    let duration = Duration::from_secs(args.seconds);
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let (mut k, mut issued) = (first, 0_u64);
    while started.elapsed() < duration {
        tick.tick().await;
        let due = (per_second * started.elapsed().min(duration).as_secs_f64()) as u64;
        for _ in issued..due {
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                run.overload.add(C::NotSent, 1);
                continue;
            };
            let run = run.clone();
            tokio::spawn(async move {
                run.send(&run.overload, k).await;
                drop(permit);
            });
            k += 1;
        }
        issued = issued.max(due);
    }
    let elapsed = started.elapsed();
    // Each request ends within the client's timeout.
    let all = u32::try_from(cap).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(REQUEST_TIMEOUT * 2, permits.acquire_many(all)).await;
    elapsed
}

/// GETs /health every 100 ms, one at a time on its own connection, until `stop`.
async fn probe_health(client: reqwest::Client, run: Arc<Run>, stop: CancellationToken) {
    let url = format!("{}/health", run.base);
    let mut tick = tokio::time::interval(HEALTH_EVERY);
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        let started = Instant::now();
        let ok = match client.get(&url).send().await {
            Ok(reply) => reply.status().is_success() && reply.bytes().await.is_ok(),
            Err(_) => false,
        };
        let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        run.health_max_us.fetch_max(us, Ordering::Relaxed);
        if ok {
            lock(&run.health).push(us);
        } else {
            run.health_failures.fetch_add(1, Ordering::Relaxed);
            run.health_failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Prints one line per second of the overload, sampling the server's RSS; returns its maximum.
async fn timeline(run: Arc<Run>, pid: Option<u32>, stop: CancellationToken) -> Option<i64> {
    use C::{AckedFixes, Failed, NotSent, Other, Unavailable, UnavailableBare};
    const COLUMNS: [C; 6] = [AckedFixes, Unavailable, UnavailableBare, Other, Failed, NotSent];
    println!(
        "     t  acked fixes/s  503/s  other/s  errors/s  not sent/s  in flight  health max ms  RSS MiB"
    );
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut last = COLUMNS.map(|c| run.overload.get(c));
    let mut rss_max = None;
    for second in 1_u64.. {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => break,
        }
        let now = COLUMNS.map(|c| run.overload.get(c));
        let [acked, refused, bare, other, failed, not_sent] = [0, 1, 2, 3, 4, 5].map(|i| now[i] - last[i]);
        last = now;
        let rss = pid.and_then(rss_kib);
        rss_max = rss_max.max(rss);
        let rss = rss.map_or_else(|| "?".to_owned(), |kib| (kib / 1024).to_string());
        let mut health = (run.health_max_us.swap(0, Ordering::Relaxed) / 1000).to_string();
        if let failed @ 1.. = run.health_failed.swap(0, Ordering::Relaxed) {
            let _ = write!(health, " ({failed} failed)");
        }
        let (refused, in_flight) = (refused + bare, in_flight(&run.overload));
        let counts =
            format!("{acked:>14} {refused:>6} {other:>8} {failed:>9} {not_sent:>11} {in_flight:>10}");
        println!("{second:>5}s {counts} {health:>14} {rss:>8}");
    }
    rss_max
}

/// Requests sent and not answered yet.
fn in_flight(t: &Tally) -> u64 {
    let answered = t.get(C::AckedRequests) + t.get(C::Unavailable) + t.get(C::UnavailableBare);
    t.get(C::Sent)
        .saturating_sub(answered + t.get(C::Other) + t.get(C::Failed))
}

/// The report of the overload phase.
fn summary(args: &BenchOverloadArgs, run: &Run, o: &Overload, sustainable: f64) -> String {
    let (t, secs, batch) = (&run.overload, o.elapsed.as_secs_f64(), run.batch as f64);
    let (target, cap) = (args.factor * sustainable, args.max_in_flight);
    let (sent, not_sent, requests) = (t.get(C::Sent), t.get(C::NotSent), t.get(C::AckedRequests));
    let (fixes, rejected, failed) = (t.get(C::AckedFixes), t.get(C::RejectedFixes), t.get(C::Failed));
    let (with, without) = (t.get(C::Unavailable), t.get(C::UnavailableBare));
    let send_rate = sent as f64 * batch / secs;
    let (send_share, ack_rate) = (100.0 * send_rate / target, fixes as f64 / secs);
    let ack_ratio = ack_rate / sustainable;
    let others = t.statuses(0..1000).unwrap_or_else(|| "none".into());
    let first_error = run.first_error.get().map_or("none", String::as_str);
    let lines = [
        format!("overload summary ({secs:.1} s): S = {sustainable:.0} fixes/s, target {target:.0} fixes/s"),
        format!("  sent {sent} requests = {send_rate:.0} fixes/s ({send_share:.0}% of target)"),
        format!("  not sent (at the cap of {cap} in flight): {not_sent} requests"),
        format!("  202: {requests} requests, {fixes} fixes = {ack_rate:.0} fixes/s ({ack_ratio:.2} S)"),
        format!("  fixes rejected inside 202s: {rejected}"),
        format!("  503 with Retry-After: {with}; 503 without Retry-After: {without}"),
        format!("  other statuses: {others}"),
        format!("  transport errors: {failed} ({} timeouts)", t.get(C::Timeouts)),
        format!("  first transport error: {first_error}"),
        o.cpu.clone(),
        health_line(run),
        memory_line(args.server_pid, o.rss),
        recovery_line(longest_refusal_run(lock(&run.events).clone())),
    ];
    lines.join("\n") + "\n"
}

fn health_line(run: &Run) -> String {
    let mut sorted = lock(&run.health).clone();
    sorted.sort_unstable();
    let at = |q: f64| {
        let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len().max(1)) - 1;
        sorted.get(i).map_or(f64::NAN, |&us| us as f64 / 1000.0)
    };
    let (p50, p99, max) = (at(0.5), at(0.99), at(1.0));
    let failures = run.health_failures.load(Ordering::Relaxed);
    let probes = sorted.len() as u64 + failures;
    let share = 100.0 * failures as f64 / probes.max(1) as f64;
    format!(
        "  /health: {probes} probes, p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms; {failures} failed ({share:.2}%)"
    )
}

fn memory_line(pid: Option<u32>, (before, max): (Option<i64>, Option<i64>)) -> String {
    let Some(pid) = pid else {
        return "  server RSS: unknown (no --server-pid)".into();
    };
    let mib = |kib: Option<i64>| kib.map_or_else(|| "?".to_owned(), |k| format!("{} MiB", k / 1024));
    let (before, max) = (mib(before), mib(max));
    let peak = peak_rss(pid).unwrap_or_else(|| "unknown".into());
    format!("  server RSS: {before} before the overload, max sampled {max}; peak (VmHWM) {peak}")
}

/// The longest stretch from a refusal (any answer but 202) to the next acknowledgement, by time
/// of answer: (first refusal, next acknowledgement if any, refusals, last answer), in ms.
fn longest_refusal_run(mut events: Vec<(u32, bool)>) -> Option<(u32, Option<u32>, u64, u32)> {
    events.sort_unstable();
    let end = events.last()?.0;
    let (mut runs, mut current) = (Vec::new(), None);
    for (ms, acked) in events {
        match (acked, &mut current) {
            (false, Some((_, n))) => *n += 1,
            (false, None) => current = Some((ms, 1)),
            (true, _) => runs.extend(current.take().map(|(start, n)| (start, Some(ms), n, end))),
        }
    }
    runs.extend(current.map(|(start, n)| (start, None, n, end)));
    runs.into_iter()
        .max_by_key(|&(start, ack, ..)| ack.unwrap_or(end) - start)
}

fn recovery_line(run: Option<(u32, Option<u32>, u64, u32)>) -> String {
    let Some((start, ack, n, end)) = run else {
        return "  no refusal".into();
    };
    let (from, to) = (f64::from(start) / 1000.0, f64::from(ack.unwrap_or(end)) / 1000.0);
    let after = if ack.is_some() {
        format!(
            "to the next acknowledgement at t={to:.2} s: recovered in {:.2} s",
            to - from
        )
    } else {
        format!("and never an acknowledgement again (last answer at t={to:.2} s)")
    };
    format!("  longest run of refusals: {n} answers from t={from:.2} s {after}")
}

const ACKED_TABLE: &str = "CREATE TEMP TABLE bench_acked (device text NOT NULL, ts timestamptz NOT NULL)";
const MISSING: &str = "SELECT count(*) FROM bench_acked a \
    WHERE NOT EXISTS (SELECT 1 FROM positions p WHERE p.device = a.device AND p.ts = a.ts)";

/// Phase 3: COPYs the keys of every acknowledged fix into a temporary table and counts those
/// not in `positions`. Returns (acknowledged, missing).
async fn verify(database_url: &str, run: &Run) -> Result<(u64, i64), Error> {
    let requests = std::mem::take(&mut *lock(&run.acked_requests));
    let keys = requests.into_iter().flat_map(|k| run.fixes(k));
    let keys = keys.chain(std::mem::take(&mut *lock(&run.acked_fixes)));
    let conn = PgConnection::connect(database_url).await;
    let mut conn = conn.map_err(Error::database("cannot connect to the database"))?;
    let created = sqlx::raw_sql(ACKED_TABLE).execute(&mut conn).await;
    created.map_err(Error::database("cannot create the table of acknowledged fixes"))?;
    let copy_failed = || Error::database("cannot COPY the acknowledged fixes");
    let copy = conn.copy_in_raw("COPY bench_acked FROM STDIN").await;
    let mut copy = copy.map_err(copy_failed())?;
    let mut chunk = String::with_capacity(1 << 20);
    for g in keys {
        let (device, ts) = run.key(g);
        let _ = writeln!(chunk, "{device}\t{ts}");
        if chunk.len() >= 1 << 20 {
            let full = std::mem::take(&mut chunk).into_bytes();
            copy.send(full).await.map_err(copy_failed())?;
        }
    }
    copy.send(chunk.into_bytes()).await.map_err(copy_failed())?;
    let acknowledged = copy.finish().await.map_err(copy_failed())?;
    let missing = sqlx::query_scalar::<_, i64>(MISSING).fetch_one(&mut conn).await;
    let missing = missing.map_err(Error::database("cannot count the missing fixes"))?;
    Ok((acknowledged, missing))
}

/// The run's verdict: what the server must never do, under any load.
fn verdict(run: &Run, missing: i64) -> Result<(), Error> {
    let mut failures = Vec::new();
    if missing > 0 {
        failures.push(format!("{missing} acknowledged fixes are not stored"));
    }
    for (phase, tally) in [("calibration", &run.calibration), ("overload", &run.overload)] {
        let server_errors = [tally.statuses(500..503), tally.statuses(504..600)];
        for server_errors in server_errors.into_iter().flatten() {
            failures.push(format!("{phase}: 5xx other than 503: {server_errors}"));
        }
        if let bare @ 1.. = tally.get(C::UnavailableBare) {
            failures.push(format!("{phase}: {bare} answers 503 without a Retry-After"));
        }
    }
    let failed = run.health_failures.load(Ordering::Relaxed);
    let probes = lock(&run.health).len() as u64 + failed;
    if probes == 0 || failed * 100 > probes {
        failures.push(format!("/health failed {failed} of {probes} probes"));
    }
    if failures.is_empty() {
        println!("PASS: no acknowledged fix lost, every refusal a 503 with Retry-After, /health answered");
        return Ok(());
    }
    Err(Error::OverloadFailed(failures))
}
