//! `geotrack simulate`: a fleet of vehicles driving around a centre and posting their positions
//! to a server, as device apps would. Seeded, so a run can be repeated. `--demo` also draws
//! fences where the vehicles drive (circles, a polygon, a corridor, a speed zone) and a
//! proximity rule between the vehicles, so alerts fire within a minute; `geotrack serve --demo` runs it inside the server for `make run`.
//! `--protocol teltonika|gt06` drives the vehicles as hardware trackers over TCP ([`teltonika`],
//! [`gt06`]).

pub mod gt06;
pub mod teltonika;

use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::Error;

/// Metres per degree of latitude.
const M_PER_DEG: f64 = 111_320.0;
/// How long a run waits for the server's `/ready`.
const READY_WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    /// `POST /api/v1/positions` with every device's fix in one JSON array.
    Json,
    /// `POST /osmand?id=&lat=&lon=...`, one request per fix (OsmAnd, Traccar Client).
    Osmand,
    /// Teltonika trackers over TCP (`--tcp`): one connection per vehicle, one Codec 8 packet per
    /// fix, each acknowledged; device ids are IMEIs (`35` and the vehicle's number).
    Teltonika,
    /// GT06 trackers over TCP (`--tcp`): one connection per vehicle, a location packet and a
    /// heartbeat per fix (the heartbeat's answer confirms the location); device ids `86` and
    /// the vehicle's number.
    Gt06,
}

#[derive(Debug, Clone, Args)]
pub struct SimulateArgs {
    /// Base URL of the server.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    #[arg(long, default_value_t = 50)]
    pub devices: usize,
    /// Seconds between two fixes of a device.
    #[arg(long, default_value_t = 1.0)]
    pub interval_s: f64,
    /// Stop after this many seconds (0: until interrupted).
    #[arg(long, default_value_t = 0)]
    pub duration_s: u64,
    /// Centre of the area driven in, `lon,lat`.
    #[arg(long, default_value = "2.3522,48.8566")]
    pub centre: String,
    /// Radius of the area driven in, in metres.
    #[arg(long, default_value_t = 3_000.0)]
    pub radius_m: f64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long, value_enum, default_value_t = Protocol::Json)]
    pub protocol: Protocol,
    /// `host:port` of the server's Teltonika or GT06 listener (default: the URL's host, port
    /// 5027 for Teltonika, 5023 for GT06).
    #[arg(long)]
    pub tcp: Option<String>,
    /// Also create demo fences where the vehicles drive.
    #[arg(long)]
    pub demo: bool,
    /// Token with the `ingest` scope (and `admin` for `--demo`).
    #[arg(long, env = "GEOTRACK_SIMULATE_TOKEN")]
    pub token: Option<String>,
    /// No progress bar (when run inside the server).
    #[arg(long)]
    pub quiet: bool,
}

impl SimulateArgs {
    /// The defaults of the command line: 50 vehicles in Paris, one fix a second each.
    pub fn demo() -> Self {
        Self {
            url: "http://127.0.0.1:8080".into(),
            devices: 50,
            interval_s: 1.0,
            duration_s: 0,
            centre: "2.3522,48.8566".into(),
            radius_m: 3_000.0,
            seed: 1,
            protocol: Protocol::Json,
            tcp: None,
            demo: true,
            token: None,
            quiet: false,
        }
    }
}

/// What a run did.
#[derive(Debug, Default)]
pub struct Report {
    pub sent: usize,
    pub accepted: usize,
    pub rejected: usize,
    pub failed_requests: usize,
    pub elapsed: Duration,
    /// Request latencies in milliseconds.
    latencies: Vec<f64>,
}

impl Report {
    /// Counts sends that each carried one fix: whether it was acknowledged, and its latency in
    /// milliseconds.
    fn count(&mut self, outcomes: Vec<(bool, f64)>) {
        for (ok, ms) in outcomes {
            self.sent += 1;
            if ok {
                self.accepted += 1;
                self.latencies.push(ms);
            } else {
                self.failed_requests += 1;
            }
        }
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        write!(
            f,
            "{} fixes sent in {secs:.1} s ({:.0}/s): {} accepted, {} rejected, {} requests failed",
            self.sent,
            self.sent as f64 / secs,
            self.accepted,
            self.rejected,
            self.failed_requests
        )?;
        let mut l = self.latencies.clone();
        if !l.is_empty() {
            l.sort_by(f64::total_cmp);
            let at = |q: f64| l[((l.len() - 1) as f64 * q).round() as usize];
            write!(
                f,
                "; latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                at(0.5),
                at(0.99),
                at(1.0)
            )?;
        }
        Ok(())
    }
}

/// One simulated vehicle.
#[derive(Debug, Clone)]
struct Vehicle {
    id: String,
    pos: [f64; 2],
    heading: f64,
    speed: f64,
}

/// Drives the fleet until `duration_s` or `stop`.
pub async fn run(args: &SimulateArgs, stop: CancellationToken) -> Result<Report, Error> {
    let centre = parse_centre(&args.centre)?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(Error::Client)?;
    wait_until_ready(&client, &args.url, &stop).await?;
    if args.demo {
        create_demo_fences(&client, args, centre).await?;
    }
    let mut rng = Rng::new(args.seed);
    let mut fleet: Vec<Vehicle> = (0..args.devices)
        .map(|i| Vehicle {
            id: format!("sim-{i:03}"),
            pos: offset(
                centre,
                rng.unit() * args.radius_m * 0.8,
                rng.unit() * std::f64::consts::TAU,
            ),
            heading: rng.unit() * std::f64::consts::TAU,
            speed: 8.0 + rng.unit() * 10.0,
        })
        .collect();
    let progress = (!args.quiet).then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    });
    let mut trackers = Trackers::new(args, fleet.len());
    let mut report = Report::default();
    let started = Instant::now();
    let every = Duration::from_secs_f64(args.interval_s.max(0.05));
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = stop.cancelled() => break,
        }
        if args.duration_s > 0 && started.elapsed() >= Duration::from_secs(args.duration_s) {
            break;
        }
        for v in &mut fleet {
            drive(v, &mut rng, every.as_secs_f64(), centre, args.radius_m);
        }
        match &mut trackers {
            Trackers::Teltonika(trackers) => trackers.send(&fleet, &mut report).await,
            Trackers::Gt06(trackers) => trackers.send(&fleet, &mut report).await,
            Trackers::None => post(&client, args, &fleet, &mut report).await,
        }
        if let Some(bar) = &progress {
            bar.set_message(format!("{report}"));
        }
    }
    report.elapsed = started.elapsed();
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    Ok(report)
}

/// Waits (up to a minute) for the server's `/ready`: a server that just started may still be
/// loading its fences. The error says why the last attempt failed.
async fn wait_until_ready(
    client: &reqwest::Client,
    url: &str,
    stop: &CancellationToken,
) -> Result<(), Error> {
    let started = Instant::now();
    let ready = format!("{url}/ready");
    loop {
        let last = match client.get(&ready).send().await {
            Ok(reply) if reply.status().is_success() => return Ok(()),
            Ok(reply) => Error::status("GET /ready", reply).await,
            Err(e) => Error::request("GET /ready")(e),
        };
        if started.elapsed() > READY_WAIT || stop.is_cancelled() {
            return Err(Error::NotReady {
                url: url.to_owned(),
                waited_s: started.elapsed().as_secs(),
                last: Box::new(last),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The fleet's TCP connections, for the protocols that use them.
#[derive(Debug)]
enum Trackers {
    None,
    Teltonika(teltonika::Trackers),
    Gt06(gt06::Trackers),
}

impl Trackers {
    fn new(args: &SimulateArgs, vehicles: usize) -> Self {
        match args.protocol {
            Protocol::Json | Protocol::Osmand => Self::None,
            Protocol::Teltonika => Self::Teltonika(teltonika::Trackers::new(tcp_addr(args, 5027), vehicles)),
            Protocol::Gt06 => Self::Gt06(gt06::Trackers::new(tcp_addr(args, 5023), vehicles)),
        }
    }
}

/// The tracker listener: `--tcp`, else the server URL's host on `port`.
fn tcp_addr(args: &SimulateArgs, port: u16) -> String {
    args.tcp.clone().unwrap_or_else(|| {
        let host = reqwest::Url::parse(&args.url)
            .ok()
            .and_then(|url| url.host_str().map(str::to_owned))
            .unwrap_or_else(|| "127.0.0.1".into());
        format!("{host}:{port}")
    })
}

fn parse_centre(text: &str) -> Result<[f64; 2], Error> {
    let bad = |expected| Error::Argument {
        flag: "--centre",
        value: text.to_owned(),
        expected,
    };
    let parts: Vec<f64> = text
        .split(',')
        .map(|p| p.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|_| bad("must be lon,lat"))?;
    match parts[..] {
        [lon, lat] if (-180.0..=180.0).contains(&lon) && (-80.0..=80.0).contains(&lat) => Ok([lon, lat]),
        _ => Err(bad("must be lon,lat within ±180, ±80")),
    }
}

/// The point `distance_m` from `from` in direction `bearing` (radians from east, counterclockwise).
pub(crate) fn offset(from: [f64; 2], distance_m: f64, bearing: f64) -> [f64; 2] {
    let lat = from[1] + distance_m * bearing.sin() / M_PER_DEG;
    let lon = from[0] + distance_m * bearing.cos() / (M_PER_DEG * from[1].to_radians().cos());
    [lon, lat]
}

/// Moves a vehicle for `dt` seconds: a gently curving drive that turns back at the area's edge.
fn drive(v: &mut Vehicle, rng: &mut Rng, dt: f64, centre: [f64; 2], radius_m: f64) {
    v.heading += (rng.unit() - 0.5) * 0.4;
    v.speed = (v.speed + (rng.unit() - 0.5) * 2.0).clamp(3.0, 25.0);
    v.pos = offset(v.pos, v.speed * dt, v.heading);
    let dx = (v.pos[0] - centre[0]) * M_PER_DEG * centre[1].to_radians().cos();
    let dy = (v.pos[1] - centre[1]) * M_PER_DEG;
    if dx.hypot(dy) > radius_m {
        // Head back towards the centre, with some spread.
        v.heading = (-dy).atan2(-dx) + (rng.unit() - 0.5);
    }
}

/// The compass heading (degrees clockwise from north) of a bearing in radians from east.
fn compass(bearing: f64) -> f64 {
    (90.0 - bearing.to_degrees()).rem_euclid(360.0)
}

async fn post(client: &reqwest::Client, args: &SimulateArgs, fleet: &[Vehicle], report: &mut Report) {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    match args.protocol {
        Protocol::Json => {
            let fixes: Vec<Value> = fleet
                .iter()
                .map(|v| {
                    json!({"device": v.id, "ts": now, "lon": v.pos[0], "lat": v.pos[1],
                           "speed_mps": v.speed, "heading_deg": compass(v.heading), "accuracy_m": 5.0})
                })
                .collect();
            let started = Instant::now();
            let sent = authorised(client.post(format!("{}/api/v1/positions", args.url)), args)
                .json(&fixes)
                .send()
                .await;
            report.sent += fixes.len();
            match sent {
                Ok(reply) if reply.status().is_success() => {
                    report.latencies.push(started.elapsed().as_secs_f64() * 1e3);
                    let body: Value = reply.json().await.unwrap_or_default();
                    report.accepted += body["accepted"].as_u64().unwrap_or(0) as usize;
                    report.rejected += body["rejected"].as_array().map_or(0, Vec::len);
                }
                _ => report.failed_requests += 1,
            }
        }
        // Sent over TCP by `Trackers`, never posted.
        Protocol::Teltonika | Protocol::Gt06 => {}
        Protocol::Osmand => {
            let timestamp = chrono::Utc::now().timestamp();
            let requests = fleet.iter().map(|v| {
                let query = form_urlencoded::Serializer::new(String::new())
                    .append_pair("id", &v.id)
                    .append_pair("lat", &v.pos[1].to_string())
                    .append_pair("lon", &v.pos[0].to_string())
                    .append_pair("timestamp", &timestamp.to_string())
                    .append_pair("speed", &(v.speed / 0.514_444).to_string())
                    .append_pair("bearing", &compass(v.heading).to_string())
                    .finish();
                let request = authorised(client.post(format!("{}/osmand?{query}", args.url)), args);
                async move {
                    let started = Instant::now();
                    let ok = request.send().await.is_ok_and(|r| r.status().is_success());
                    (ok, started.elapsed().as_secs_f64() * 1e3)
                }
            });
            report.count(futures_util::future::join_all(requests).await);
        }
    }
}

fn authorised(request: reqwest::RequestBuilder, args: &SimulateArgs) -> reqwest::RequestBuilder {
    match &args.token {
        Some(token) => request.bearer_auth(token),
        None => request,
    }
}

/// Draws (or redraws: `PUT` replaces) the demo fences around the centre, and the demo proximity
/// rule.
async fn create_demo_fences(client: &reqwest::Client, args: &SimulateArgs, c: [f64; 2]) -> Result<(), Error> {
    let r = args.radius_m;
    let at = |fraction: f64, bearing_deg: f64| offset(c, r * fraction, bearing_deg.to_radians());
    let square = |centre: [f64; 2], half_m: f64| {
        let corner = |dx: f64, dy: f64| {
            [
                centre[0] + dx * half_m / (M_PER_DEG * centre[1].to_radians().cos()),
                centre[1] + dy * half_m / M_PER_DEG,
            ]
        };
        vec![
            corner(-1.0, -1.0),
            corner(1.0, -1.0),
            corner(1.0, 1.0),
            corner(-1.0, 1.0),
            corner(-1.0, -1.0),
        ]
    };
    let fences = [
        json!({"type": "Feature", "id": "demo-depot", "geometry": {"type": "Point", "coordinates": c},
               "properties": {"name": "Depot", "radius_m": r * 0.15, "dwell_s": 30}}),
        json!({"type": "Feature", "id": "demo-park", "geometry": {"type": "Polygon",
               "coordinates": [square(at(0.5, 45.0), r * 0.12)]},
               "properties": {"name": "Park"}}),
        json!({"type": "Feature", "id": "demo-school", "geometry": {"type": "Point", "coordinates": at(0.5, 200.0)},
               "properties": {"name": "School zone", "radius_m": r * 0.15, "speed_limit_mps": 12.0}}),
        json!({"type": "Feature", "id": "demo-bridge", "geometry": {"type": "LineString",
               "coordinates": [at(0.9, 120.0), at(0.3, 100.0), at(0.3, -60.0), at(0.9, -80.0)]},
               "properties": {"name": "Bridge road", "buffer_m": 40.0}}),
    ];
    for fence in fences {
        let id = fence["id"].as_str().unwrap_or_default();
        put(client, args, &format!("fences/{id}"), &fence).await?;
    }
    // Two vehicles passing each other: `near`, then `apart` once they are twice as far.
    let convoy = json!({"name": "Vehicles close together", "devices": ["sim-*"], "near": ["sim-*"],
                        "radius_m": r * 0.03, "hysteresis_m": r * 0.03});
    put(client, args, "proximity-rules/demo-convoy", &convoy).await
}

/// `PUT /api/v1/{path}` with `body`, or why it failed.
async fn put(
    client: &reqwest::Client,
    args: &SimulateArgs,
    path: &str,
    body: &serde_json::Value,
) -> Result<(), Error> {
    let action = format!("cannot create demo {path}");
    let reply = authorised(client.put(format!("{}/api/v1/{path}", args.url)), args)
        .json(body)
        .send()
        .await
        .map_err(Error::request(action.clone()))?;
    if !reply.status().is_success() {
        return Err(Error::status(action, reply).await);
    }
    Ok(())
}

/// A small deterministic generator (xorshift64*): the same run for the same seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vehicles_stay_near_their_area_and_runs_repeat() {
        let centre = [2.35, 48.85];
        let drive_all = |seed| {
            let mut rng = Rng::new(seed);
            let mut v = Vehicle {
                id: "v".into(),
                pos: centre,
                heading: 0.0,
                speed: 10.0,
            };
            for _ in 0..2_000 {
                drive(&mut v, &mut rng, 1.0, centre, 1_000.0);
                let dx = (v.pos[0] - centre[0]) * M_PER_DEG * centre[1].to_radians().cos();
                let dy = (v.pos[1] - centre[1]) * M_PER_DEG;
                assert!(dx.hypot(dy) < 1_000.0 + 2.0 * 25.0, "left the area: {:?}", v.pos);
            }
            v.pos
        };
        // Bit-for-bit: the same seed gives the same run.
        let bits = |p: [f64; 2]| p.map(f64::to_bits);
        assert_eq!(bits(drive_all(7)), bits(drive_all(7)));
        assert_ne!(bits(drive_all(7)), bits(drive_all(8)));
    }

    #[test]
    fn headings_are_compass_degrees() {
        assert!((compass(0.0) - 90.0).abs() < 1e-9, "east");
        assert!((compass(std::f64::consts::FRAC_PI_2) - 0.0).abs() < 1e-9, "north");
        assert!((compass(std::f64::consts::PI) - 270.0).abs() < 1e-9, "west");
        assert!(parse_centre("2.35,48.85").is_ok() && parse_centre("2.35").is_err());
    }
}
