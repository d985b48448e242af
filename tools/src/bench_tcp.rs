//! `geotrack bench-tcp`: end-to-end throughput of the Teltonika TCP listener against HTTP
//! ingest in the same run, on the same server. Both phases play the same fleet shape: one
//! connection per device (1,000 by default), each sending its device's fixes in packets (TCP) or
//! requests (HTTP) of the same size, one at a time, waiting for each acknowledgement (the ACK
//! or the 202 comes only once the fixes are committed). The stored rows are the same too: a
//! request's JSON carries every field the listener stores of a record (speed, heading, altitude,
//! the IO elements as `attrs`). Frames and bodies are encoded before each phase's clock starts;
//! the clock includes opening the connections (and, for TCP, the IMEI handshake). After each
//! phase the rows in `positions` are counted against the acknowledged fixes. Each phase starts
//! from a clean checkpoint; TCP goes first unless `--http-first`.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use sqlx::{Connection, PgConnection};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracker::tcp::teltonika::{AvlRecord, Codec, encode};

use crate::Error;
use crate::bench_ingest::{checkpoint, post_one};
use crate::process::{Cpu, cpu_seconds, peak_rss};
use crate::simulate::teltonika::moving_record;

#[derive(Debug, Args)]
pub struct BenchTcpArgs {
    /// Base URL of the running server (the HTTP phase).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Address of the server's Teltonika listener (`tcp.teltonika`).
    #[arg(long, default_value = "127.0.0.1:5027")]
    pub tcp: String,
    /// Devices, each on its own connection in both phases.
    #[arg(long, default_value_t = 1_000)]
    pub devices: usize,
    /// Records in an AVL packet, and fixes in an HTTP request (Codec 8 counts them in a byte).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u8).range(1..))]
    pub records: u8,
    /// Packets (and requests) each device sends in a phase.
    #[arg(long, default_value_t = 50)]
    pub packets: usize,
    /// Run the HTTP phase first (the second phase writes into a table the first one grew).
    #[arg(long)]
    pub http_first: bool,
    /// PID of the server, for its CPU time and peak RSS (read from /proc).
    #[arg(long)]
    pub server_pid: Option<u32>,
}

/// What one phase measured.
struct Phase {
    acknowledged: usize,
    elapsed: Duration,
    stored: i64,
    cpu: Option<(Cpu, Cpu)>,
}

impl Phase {
    fn rate(&self) -> f64 {
        self.acknowledged as f64 / self.elapsed.as_secs_f64()
    }
}

/// The fleet of one phase: device ids (15-digit IMEIs, distinct per run and phase) and the
/// time of every device's first fix.
struct Fleet {
    prefix: String,
    base_ms: u64,
}

impl Fleet {
    fn new(run_id: i64, phase: u8, base_ms: u64) -> Self {
        Self {
            prefix: format!("{:04}{phase}", run_id % 10_000),
            base_ms,
        }
    }

    fn device(&self, index: usize) -> String {
        format!("{}{:010}", self.prefix, index % 10_000_000_000)
    }

    /// Record `k` of device `index`: one second after the device's previous one.
    fn record(&self, index: usize, k: usize) -> AvlRecord {
        let lon = -170.0 + (index as f64 * 0.0341) % 340.0 + k as f64 * 1e-4;
        let lat = -60.0 + (index as f64 * 0.0173) % 120.0;
        let angle = ((index + k) % 360) as u16;
        let speed_kmh = (k % 90) as u16;
        moving_record(self.base_ms + 1_000 * k as u64, [lon, lat], angle, speed_kmh)
    }

    /// Every device's packets, in sending order.
    fn frames(&self, args: &BenchTcpArgs) -> Result<Vec<Vec<Bytes>>, Error> {
        let per = usize::from(args.records);
        (0..args.devices)
            .map(|index| {
                (0..args.packets)
                    .map(|p| {
                        let records: Vec<AvlRecord> =
                            (0..per).map(|r| self.record(index, p * per + r)).collect();
                        encode::packet(Codec::Codec8, &records)
                            .map(Bytes::from)
                            .map_err(|e| Error::Tracker {
                                connection: index,
                                reason: e.to_string(),
                            })
                    })
                    .collect()
            })
            .collect()
    }

    /// Every device's request bodies, in sending order: the same fixes as [`Self::frames`]
    /// would carry, as JSON.
    fn bodies(&self, args: &BenchTcpArgs) -> Vec<Vec<Bytes>> {
        let per = usize::from(args.records);
        (0..args.devices)
            .map(|index| {
                let device = self.device(index);
                (0..args.packets)
                    .map(|p| {
                        let mut body = String::with_capacity(per * 260);
                        body.push('[');
                        for r in 0..per {
                            if r > 0 {
                                body.push(',');
                            }
                            json_fix(&mut body, &device, &self.record(index, p * per + r));
                        }
                        body.push(']');
                        Bytes::from(body)
                    })
                    .collect()
            })
            .collect()
    }
}

/// A record as HTTP ingest takes it, with what the listener stores of it.
fn json_fix(out: &mut String, device: &str, record: &AvlRecord) {
    let ts = chrono::DateTime::from_timestamp_millis(record.timestamp_ms as i64).unwrap_or_default();
    let _ = write!(
        out,
        r#"{{"device":"{device}","ts":"{}","lon":{},"lat":{},"speed_mps":{},"heading_deg":{},"altitude_m":{},"attrs":{{"priority":{},"satellites":{},"event_io":{},"239":1,"66":12800}}}}"#,
        ts.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        record.lon(),
        record.lat(),
        f64::from(record.speed_kmh) / 3.6,
        f64::from(record.angle_deg),
        f64::from(record.altitude_m),
        record.priority,
        record.satellites,
        record.event_io,
    );
}

/// Runs both phases and prints the report. `database_url` is the server's database.
pub async fn run(args: &BenchTcpArgs, database_url: &str) -> Result<(), Error> {
    let run_id = chrono::Utc::now().timestamp_millis() / 1_000;
    let base_ms = u64::try_from((chrono::Utc::now() - chrono::Duration::hours(6)).timestamp() * 1_000)
        .unwrap_or_default();
    let fixes = args.devices * args.packets * usize::from(args.records);
    println!(
        "{} devices, {} packets (requests) of {} fixes each: {fixes} fixes a phase",
        args.devices, args.packets, args.records
    );

    let (tcp, http) = if args.http_first {
        let http = http_phase(args, database_url, run_id, base_ms).await?;
        (tcp_phase(args, database_url, run_id, base_ms).await?, http)
    } else {
        let tcp = tcp_phase(args, database_url, run_id, base_ms).await?;
        (tcp, http_phase(args, database_url, run_id, base_ms).await?)
    };
    print!("{}", report(args, &tcp, &http));
    for (name, phase) in [("TCP", &tcp), ("HTTP", &http)] {
        if phase.acknowledged != fixes {
            return Err(Error::Incomplete {
                accepted: phase.acknowledged,
                sent: fixes,
            });
        }
        if usize::try_from(phase.stored).ok() != Some(phase.acknowledged) {
            return Err(Error::NotStored {
                phase: name,
                acknowledged: phase.acknowledged,
                stored: phase.stored,
            });
        }
    }
    Ok(())
}

/// The TCP phase, its frames encoded before the clock starts.
async fn tcp_phase(
    args: &BenchTcpArgs,
    database_url: &str,
    run_id: i64,
    base_ms: u64,
) -> Result<Phase, Error> {
    let fleet = Fleet::new(run_id, 1, base_ms);
    let frames = fleet.frames(args)?;
    checkpoint(database_url).await?;
    println!("TCP: {} Teltonika connections to {} ...", args.devices, args.tcp);
    measure(args, database_url, &fleet, tcp_drive(args, &fleet, frames)).await
}

/// The HTTP phase, its bodies encoded before the clock starts.
async fn http_phase(
    args: &BenchTcpArgs,
    database_url: &str,
    run_id: i64,
    base_ms: u64,
) -> Result<Phase, Error> {
    let fleet = Fleet::new(run_id, 2, base_ms);
    let bodies = fleet.bodies(args);
    checkpoint(database_url).await?;
    println!("HTTP: {} connections to {} ...", args.devices, args.url);
    measure(args, database_url, &fleet, http_drive(args, bodies)).await
}

/// Times `drive` (which returns the acknowledged fixes) with the server's CPU around it, then
/// counts what the fleet has in `positions`.
async fn measure(
    args: &BenchTcpArgs,
    database_url: &str,
    fleet: &Fleet,
    drive: impl Future<Output = Result<usize, Error>>,
) -> Result<Phase, Error> {
    let cpu_before = cpu_seconds(args.server_pid);
    let started = Instant::now();
    let acknowledged = drive.await?;
    let elapsed = started.elapsed();
    let cpu_after = cpu_seconds(args.server_pid);
    let stored = stored(database_url, &fleet.prefix).await?;
    Ok(Phase {
        acknowledged,
        elapsed,
        stored,
        cpu: cpu_before.zip(cpu_after),
    })
}

/// One task per device: connect, handshake, then each packet after the previous one's ACK.
async fn tcp_drive(args: &BenchTcpArgs, fleet: &Fleet, frames: Vec<Vec<Bytes>>) -> Result<usize, Error> {
    let expected = u32::from(args.records);
    let tasks: Vec<_> = frames
        .into_iter()
        .enumerate()
        .map(|(index, frames)| {
            let (addr, imei) = (args.tcp.clone(), fleet.device(index));
            tokio::spawn(async move {
                tcp_device(&addr, &imei, &frames, expected)
                    .await
                    .map_err(|reason| Error::Tracker {
                        connection: index,
                        reason,
                    })
            })
        })
        .collect();
    let mut acknowledged = 0;
    for task in tasks {
        acknowledged += task.await.map_err(|source| Error::Task {
            what: "Teltonika connection",
            source,
        })??;
    }
    Ok(acknowledged)
}

/// Plays one device; the records acknowledged.
async fn tcp_device(addr: &str, imei: &str, frames: &[Bytes], expected: u32) -> Result<usize, String> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    stream
        .write_all(&encode::imei(imei))
        .await
        .map_err(|e| e.to_string())?;
    let mut answer = [0u8; 1];
    stream
        .read_exact(&mut answer)
        .await
        .map_err(|e| format!("closed at the handshake: {e}"))?;
    if answer[0] != 0x01 {
        return Err(format!("IMEI {imei} refused"));
    }
    let mut acknowledged = 0;
    let mut ack = [0u8; 4];
    for frame in frames {
        stream.write_all(frame).await.map_err(|e| e.to_string())?;
        stream
            .read_exact(&mut ack)
            .await
            .map_err(|e| format!("closed before the acknowledgement: {e}"))?;
        match u32::from_be_bytes(ack) {
            n if n == expected => acknowledged += n as usize,
            n => return Err(format!("{n} records acknowledged instead of {expected}")),
        }
    }
    Ok(acknowledged)
}

/// One task per device, on its own keep-alive connection: each request after the previous
/// one's 202.
async fn http_drive(args: &BenchTcpArgs, bodies: Vec<Vec<Bytes>>) -> Result<usize, Error> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.devices)
        .build()
        .map_err(Error::Client)?;
    let url = Arc::new(format!("{}/api/v1/positions", args.url.trim_end_matches('/')));
    let accepted = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = bodies
        .into_iter()
        .map(|bodies| {
            let (client, url, accepted) = (client.clone(), url.clone(), accepted.clone());
            tokio::spawn(async move {
                for body in bodies {
                    let n = post_one(&client, &url, body).await?;
                    accepted.fetch_add(usize::try_from(n).unwrap_or(0), Ordering::Relaxed);
                }
                Ok::<(), Error>(())
            })
        })
        .collect();
    for task in tasks {
        task.await.map_err(|source| Error::Task {
            what: "posting",
            source,
        })??;
    }
    Ok(accepted.load(Ordering::Relaxed))
}

/// Rows of the fleet in `positions`.
async fn stored(database_url: &str, prefix: &str) -> Result<i64, Error> {
    let mut conn = PgConnection::connect(database_url)
        .await
        .map_err(Error::database("cannot connect to the database"))?;
    sqlx::query_scalar("SELECT count(*) FROM positions WHERE device LIKE $1")
        .bind(format!("{prefix}%"))
        .fetch_one(&mut conn)
        .await
        .map_err(Error::database("cannot count the stored fixes"))
}

fn report(args: &BenchTcpArgs, tcp: &Phase, http: &Phase) -> String {
    let mut out = String::new();
    for (name, phase) in [("TCP (Teltonika Codec 8)", tcp), ("HTTP (JSON)", http)] {
        let _ = writeln!(
            out,
            "{name}: {} acknowledged in {:.2} s = {:.0} fixes/s; stored {} ({})",
            phase.acknowledged,
            phase.elapsed.as_secs_f64(),
            phase.rate(),
            phase.stored,
            if usize::try_from(phase.stored).ok() == Some(phase.acknowledged) {
                "= acknowledged"
            } else {
                "MISMATCH"
            }
        );
    }
    let _ = writeln!(
        out,
        "ratio TCP / HTTP: {:.2}x (target >= 1.0x)",
        tcp.rate() / http.rate()
    );
    for (name, phase) in [("TCP", tcp), ("HTTP", http)] {
        if let Some((before, after)) = phase.cpu {
            let per_million = 1e6 / phase.acknowledged.max(1) as f64;
            let _ = writeln!(
                out,
                "CPU-seconds per million fixes, {name}: server {:.2}, PostgreSQL {:.2}",
                (after.server - before.server) * per_million,
                (after.postgres - before.postgres) * per_million
            );
        }
    }
    if let Some(pid) = args.server_pid {
        let _ = writeln!(
            out,
            "server peak RSS: {}",
            peak_rss(pid).unwrap_or_else(|| "unknown".into())
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use tokio_util::codec::Decoder;
    use tracker::decode::{BodyFormat, positions};
    use tracker::fix::{Fix, Limits};
    use tracker::tcp::teltonika::{Frame, TeltonikaCodec};

    use super::*;

    fn args() -> BenchTcpArgs {
        BenchTcpArgs {
            url: String::new(),
            tcp: String::new(),
            devices: 3,
            records: 4,
            packets: 2,
            http_first: false,
            server_pid: None,
        }
    }

    /// The fixes as validated on receipt at `now`, speeds to 1e-9 m/s (`serde_json`'s float
    /// parsing may be off in the last bit).
    fn validated(
        fixes: impl IntoIterator<Item = tracker::fix::RawFix>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Vec<Fix> {
        fixes
            .into_iter()
            .map(|fix| {
                let mut fix = fix.validate(now, &Limits::default()).expect("a valid fix");
                fix.speed_mps = fix.speed_mps.map(|s| (s * 1e9).round() / 1e9);
                fix
            })
            .collect()
    }

    /// Both phases store the same rows: a device's packet, read as the listener reads it, and
    /// its request body, decoded as HTTP ingest does, validate to the same fixes.
    #[test]
    fn packets_and_bodies_carry_the_same_fixes() {
        let base_ms = u64::try_from(chrono::Utc::now().timestamp() * 1_000 - 3_600_000).expect("after 1970");
        let fleet = Fleet::new(42, 1, base_ms);
        let (frames, bodies) = (
            fleet.frames(&args()).expect("packets encode"),
            fleet.bodies(&args()),
        );
        assert_eq!((frames.len(), frames[2].len()), (3, 2));
        let imei = fleet.device(2);
        assert_eq!(imei.len(), 15);
        let mut codec = TeltonikaCodec::new();
        let mut stream = BytesMut::from(&encode::imei(&imei)[..]);
        stream.extend_from_slice(&frames[2][1]);
        assert_eq!(
            codec.decode(&mut stream).expect("a valid stream"),
            Some(Frame::Imei(imei.clone()))
        );
        let Some(Frame::Packet(packet)) = codec.decode(&mut stream).expect("a valid stream") else {
            panic!("no packet");
        };
        let now = chrono::Utc::now();
        let from_tcp = validated(
            packet
                .records
                .iter()
                .map(|r| r.raw_fix(&imei).expect("a record with a position")),
            now,
        );
        let from_http = validated(
            positions(&bodies[2][1], BodyFormat::Json, 100)
                .expect("a valid body")
                .into_iter()
                .map(|fix| fix.expect("a fix with every field")),
            now,
        );
        assert_eq!(from_tcp.len(), 4);
        assert_eq!(from_tcp, from_http);
        assert_ne!(from_tcp[0].ts, from_tcp[1].ts, "one second apart");
    }
}
