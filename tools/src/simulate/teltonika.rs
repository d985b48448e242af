//! The simulated fleet as Teltonika trackers: one TCP connection per vehicle, the IMEI
//! handshake, then one Codec 8 packet per fix, each waiting for the server's acknowledgement
//! (the record count) as a device does. A connection that fails or goes unacknowledged is
//! dropped and opened again at the vehicle's next fix.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracker::tcp::teltonika::{AvlRecord, Codec, IoElement, IoValue, encode};

use super::{Report, Vehicle, compass};

/// Longest wait for a connection, a handshake answer or an acknowledgement.
const WAIT: Duration = Duration::from_secs(10);

/// The IMEI of vehicle `index`: 15 digits, distinct per vehicle.
pub fn imei(index: usize) -> String {
    format!("35{:013}", index % 10_000_000_000_000)
}

/// The vehicles' connections, opened on first use.
#[derive(Debug)]
pub(super) struct Trackers {
    addr: String,
    connections: Vec<Option<TcpStream>>,
}

impl Trackers {
    pub(super) fn new(addr: String, vehicles: usize) -> Self {
        Self {
            addr,
            connections: (0..vehicles).map(|_| None).collect(),
        }
    }

    /// Sends every vehicle's current fix, concurrently, and waits for the acknowledgements.
    pub(super) async fn send(&mut self, fleet: &[Vehicle], report: &mut Report) {
        let now_ms = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or_default();
        let addr = self.addr.as_str();
        let sends = self.connections.iter_mut().zip(fleet).enumerate().map(
            |(index, (connection, vehicle))| async move {
                let started = Instant::now();
                let frame = encode::packet(Codec::Codec8, &[record(vehicle, now_ms)]);
                let sent = match frame {
                    Ok(frame) => send_one(connection, addr, &imei(index), &frame).await,
                    Err(error) => Err(error.to_string()),
                };
                if let Err(error) = &sent {
                    tracing::debug!(index, error, "simulated tracker");
                    *connection = None;
                }
                (sent.is_ok(), started.elapsed().as_secs_f64() * 1e3)
            },
        );
        report.count(futures_util::future::join_all(sends).await);
    }
}

/// A vehicle's fix as a record.
fn record(vehicle: &Vehicle, timestamp_ms: u64) -> AvlRecord {
    let heading = compass(vehicle.heading).round() as u16 % 360;
    let speed_kmh = (vehicle.speed * 3.6).round() as u16;
    moving_record(timestamp_ms, vehicle.pos, heading, speed_kmh)
}

/// A Codec 8 record of a moving vehicle at `[lon, lat]`: 35 m up, 10 satellites, ignition on
/// (IO 239) and 12.8 V external voltage (IO 66).
pub(crate) fn moving_record(
    timestamp_ms: u64,
    [lon, lat]: [f64; 2],
    angle_deg: u16,
    speed_kmh: u16,
) -> AvlRecord {
    AvlRecord {
        timestamp_ms,
        priority: 0,
        lon_e7: (lon * 1e7).round() as i32,
        lat_e7: (lat * 1e7).round() as i32,
        altitude_m: 35,
        angle_deg,
        satellites: 10,
        speed_kmh,
        event_io: 0,
        generation: None,
        io: vec![
            IoElement {
                id: 239,
                value: IoValue::U8(1),
            },
            IoElement {
                id: 66,
                value: IoValue::U16(12_800),
            },
        ],
    }
}

/// Sends one packet of one record on the vehicle's connection (connecting and shaking hands
/// first when there is none) and waits for its acknowledgement.
async fn send_one(
    connection: &mut Option<TcpStream>,
    addr: &str,
    imei: &str,
    frame: &[u8],
) -> Result<(), String> {
    if connection.is_none() {
        *connection = Some(connect(addr, imei).await?);
    }
    let Some(stream) = connection.as_mut() else {
        return Err("no connection".into());
    };
    stream.write_all(frame).await.map_err(|e| e.to_string())?;
    let mut ack = [0u8; 4];
    tokio::time::timeout(WAIT, stream.read_exact(&mut ack))
        .await
        .map_err(|_| "no acknowledgement in time".to_owned())?
        .map_err(|e| format!("connection closed before the acknowledgement: {e}"))?;
    match u32::from_be_bytes(ack) {
        1 => Ok(()),
        n => Err(format!("acknowledged {n} records instead of 1")),
    }
}

async fn connect(addr: &str, imei: &str) -> Result<TcpStream, String> {
    let mut stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
        .await
        .map_err(|_| format!("{addr}: no connection in time"))?
        .map_err(|e| format!("{addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    stream
        .write_all(&encode::imei(imei))
        .await
        .map_err(|e| e.to_string())?;
    let mut answer = [0u8; 1];
    tokio::time::timeout(WAIT, stream.read_exact(&mut answer))
        .await
        .map_err(|_| "no handshake answer in time".to_owned())?
        .map_err(|e| format!("connection closed at the handshake: {e}"))?;
    if answer[0] == 0x01 {
        Ok(stream)
    } else {
        Err(format!("IMEI {imei} refused by the server"))
    }
}
