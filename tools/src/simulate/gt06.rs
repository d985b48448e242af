//! The simulated fleet as GT06 trackers: one TCP connection per vehicle, a login, then for each
//! fix a location packet (0x22) followed by a heartbeat. GT06 does not answer locations; the
//! server handles a connection's packets in order and stores a location before reading the next
//! packet, so the heartbeat's answer says the location before it was processed. A connection
//! that fails is dropped and opened again at the vehicle's next fix.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracker::tcp::gt06::{encode, reply};

use super::{Report, Vehicle, compass};

/// Longest wait for a connection or an answer.
const WAIT: Duration = Duration::from_secs(10);

/// The IMEI of vehicle `index`: 15 digits, distinct per vehicle (not those of Teltonika runs).
pub fn imei(index: usize) -> String {
    format!("86{:013}", index % 10_000_000_000_000)
}

/// A vehicle's connection and its next serial number.
#[derive(Debug, Default)]
struct Link {
    stream: Option<TcpStream>,
    serial: u16,
}

/// The vehicles' connections, opened on first use.
#[derive(Debug)]
pub(super) struct Trackers {
    addr: String,
    links: Vec<Link>,
}

impl Trackers {
    pub(super) fn new(addr: String, vehicles: usize) -> Self {
        Self {
            addr,
            links: (0..vehicles).map(|_| Link::default()).collect(),
        }
    }

    /// Sends every vehicle's current fix, concurrently, each confirmed by a heartbeat's answer.
    pub(super) async fn send(&mut self, fleet: &[Vehicle], report: &mut Report) {
        let now = chrono::Utc::now();
        let addr = self.addr.as_str();
        let sends = self
            .links
            .iter_mut()
            .zip(fleet)
            .enumerate()
            .map(|(index, (link, vehicle))| async move {
                let started = Instant::now();
                let sent = send_one(link, addr, &imei(index), vehicle, now).await;
                if let Err(error) = &sent {
                    tracing::debug!(index, error, "simulated GT06 tracker");
                    link.stream = None;
                }
                (sent.is_ok(), started.elapsed().as_secs_f64() * 1e3)
            });
        report.count(futures_util::future::join_all(sends).await);
    }
}

impl Link {
    fn next_serial(&mut self) -> u16 {
        self.serial = self.serial.wrapping_add(1);
        self.serial
    }
}

async fn send_one(
    link: &mut Link,
    addr: &str,
    imei: &str,
    vehicle: &Vehicle,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), String> {
    if link.stream.is_none() {
        let serial = link.next_serial();
        let login = encode::login(imei, serial).ok_or("the IMEI is not digits")?;
        let mut stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
            .await
            .map_err(|_| format!("{addr}: no connection in time"))?
            .map_err(|e| format!("{addr}: {e}"))?;
        let _ = stream.set_nodelay(true);
        exchange(&mut stream, &login, reply(0x01, serial)).await?;
        link.stream = Some(stream);
    }
    let location_serial = link.next_serial();
    let heartbeat_serial = link.next_serial();
    let location = encode::location(
        now,
        vehicle.pos[0],
        vehicle.pos[1],
        vehicle.speed * 3.6,
        compass(vehicle.heading),
        location_serial,
    );
    let packets = [location, encode::heartbeat(heartbeat_serial)].concat();
    let stream = link.stream.as_mut().ok_or("no connection")?;
    exchange(stream, &packets, reply(0x13, heartbeat_serial)).await
}

/// Sends `bytes` and waits for exactly `answer`.
async fn exchange(stream: &mut TcpStream, bytes: &[u8], answer: [u8; 10]) -> Result<(), String> {
    stream.write_all(bytes).await.map_err(|e| e.to_string())?;
    let mut got = [0u8; 10];
    tokio::time::timeout(WAIT, stream.read_exact(&mut got))
        .await
        .map_err(|_| "no answer in time".to_owned())?
        .map_err(|e| format!("connection closed before the answer: {e}"))?;
    if got == answer {
        Ok(())
    } else {
        Err(format!("unexpected answer {got:02x?}"))
    }
}
