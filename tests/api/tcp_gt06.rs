//! GT06 trackers over a real socket against the real server: the login (answered, or the
//! connection closed for an IMEI the token may not write), packets before a login refused,
//! heartbeats answered, locations stored under the IMEI, alarms answered only once committed,
//! unpositioned fixes counted and not stored, broken packets closing the connection.

use std::time::Duration;

use chrono::{Datelike, Timelike, Utc};
use geotrack::Config;
use geotrack::auth::TokensSetting;
use sqlx::Connection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracker::tcp::gt06::{crc_itu, reply};

use crate::helpers::{TestApp, spawn_with};

const IMEI: &str = "864717003283581";
const PATIENCE: Duration = Duration::from_secs(10);

async fn app(tweak: impl FnOnce(&mut Config)) -> TestApp {
    spawn_with(|c| {
        c.tcp.gt06 = Some("127.0.0.1:0".parse().expect("addr"));
        tweak(c);
    })
    .await
}

/// A `78 78` packet as a device sends it.
fn packet(protocol: u8, content: &[u8], serial: u16) -> Vec<u8> {
    let len = u8::try_from(content.len() + 5).expect("short packet");
    let mut body = vec![len, protocol];
    body.extend_from_slice(content);
    body.extend_from_slice(&serial.to_be_bytes());
    let crc = crc_itu(&body);
    [&[0x78, 0x78][..], &body, &crc.to_be_bytes(), &[0x0D, 0x0A]].concat()
}

/// The login of `imei` (15 digits, BCD with a leading zero).
fn login(imei: &str, serial: u16) -> Vec<u8> {
    let digits: Vec<u8> = format!("0{imei}").bytes().map(|b| b - b'0').collect();
    let bcd: Vec<u8> = digits.chunks(2).map(|p| (p[0] << 4) | p[1]).collect();
    packet(0x01, &bcd, serial)
}

/// A GPS block `age_s` old at `lat` north, `lon` east, 36 km/h, course 90, positioned or not,
/// followed by an LBS block as 0x22 packets carry.
fn gps(age_s: i64, lat: f64, lon: f64, positioned: bool) -> Vec<u8> {
    let t = Utc::now() - chrono::Duration::seconds(age_s);
    let part = |v: u32| u8::try_from(v).expect("fits");
    let mut out = vec![
        part(u32::try_from(t.year() - 2000).expect("year")),
        part(t.month()),
        part(t.day()),
        part(t.hour()),
        part(t.minute()),
        part(t.second()),
        0xC9,
    ];
    let unit = |deg: f64| ((deg * 1_800_000.0).round() as u32).to_be_bytes();
    out.extend_from_slice(&unit(lat));
    out.extend_from_slice(&unit(lon));
    out.push(36);
    let status: u16 = (1 << 10) | (u16::from(positioned) << 12) | 0x5A; // course 90
    out.extend_from_slice(&status.to_be_bytes());
    out.extend_from_slice(&[0x01, 0xCC, 0x00, 0x28, 0x7D, 0x00, 0x1F, 0x71, 0x00, 0x00, 0x01]);
    out
}

struct Tracker(TcpStream);

impl Tracker {
    async fn connect(app: &TestApp) -> Self {
        let stream = TcpStream::connect(app.gt06.expect("the GT06 listener"))
            .await
            .expect("connects");
        stream.set_nodelay(true).expect("nodelay");
        Self(stream)
    }

    async fn logged_in(app: &TestApp) -> Self {
        let mut tracker = Self::connect(app).await;
        tracker.send(&login(IMEI, 1)).await;
        assert_eq!(tracker.answer(PATIENCE).await, Some(reply(0x01, 1).to_vec()));
        tracker
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.0.write_all(bytes).await.expect("sends");
    }

    /// The server's 10-byte answer; `None` when nothing came within `wait` or it closed.
    async fn answer(&mut self, wait: Duration) -> Option<Vec<u8>> {
        let mut buffer = vec![0; 10];
        match tokio::time::timeout(wait, self.0.read_exact(&mut buffer)).await {
            Ok(Ok(_)) => Some(buffer),
            _ => None,
        }
    }

    async fn expect_closed(&mut self) {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(PATIENCE, self.0.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "the server did not close the connection");
        assert!(rest.is_empty(), "the server sent {rest:?} before closing");
    }
}

async fn metric(app: &TestApp, line: &str) -> Option<f64> {
    let text = app.get("/metrics").await.text().await.expect("metrics");
    text.lines()
        .find(|l| l.starts_with(line))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn a_logged_in_tracker_is_answered_and_its_positions_are_stored_under_its_imei() {
    let app = app(|_| {}).await;
    let mut tracker = Tracker::logged_in(&app).await;
    tracker
        .send(&packet(0x13, &[0x40, 0x04, 0x04, 0x00, 0x01], 2))
        .await;
    assert_eq!(tracker.answer(PATIENCE).await, Some(reply(0x13, 2).to_vec()));
    // A location packet is not answered: the stored row shows it was processed.
    tracker.send(&packet(0x22, &gps(10, 22.5, 114.05, true), 3)).await;
    assert!(
        crate::helpers::eventually(async || app.stored().await == 1).await,
        "the location was not stored"
    );
    let (device, lon, lat, speed): (String, f64, f64, Option<f64>) =
        sqlx::query_as("SELECT device, ST_X(geom), ST_Y(geom), speed_mps FROM positions")
            .fetch_one(&app.db)
            .await
            .expect("row");
    assert_eq!(device, IMEI);
    assert!(
        (lon - 114.05).abs() < 1e-6 && (lat - 22.5).abs() < 1e-6,
        "{lon} {lat}"
    );
    assert!(speed.is_some_and(|s| (s - 10.0).abs() < 1e-9));
    // An alarm without a GPS position is answered, counted, not stored.
    tracker.send(&packet(0x16, &gps(5, 22.5, 114.05, false), 4)).await;
    assert_eq!(tracker.answer(PATIENCE).await, Some(reply(0x16, 4).to_vec()));
    assert_eq!(app.stored().await, 1);
    let line = "geotrack_ingest_fixes_rejected_total{protocol=\"gt06\",reason=\"not_positioned\"}";
    assert_eq!(metric(&app, line).await, Some(1.0));
    app.stop().await;
}

#[tokio::test]
async fn an_alarm_is_answered_only_once_committed() {
    let app = app(|_| {}).await;
    let mut tracker = Tracker::logged_in(&app).await;
    let mut blocker = sqlx::PgConnection::connect(&app.db_url).await.expect("connects");
    let mut tx = blocker.begin().await.expect("begins");
    sqlx::query("LOCK TABLE positions IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await
        .expect("locks");
    tracker.send(&packet(0x26, &gps(3, 48.85, 2.35, true), 7)).await;
    assert_eq!(
        tracker.answer(Duration::from_secs(2)).await,
        None,
        "answered before the commit"
    );
    tx.rollback().await.expect("releases");
    assert_eq!(tracker.answer(PATIENCE).await, Some(reply(0x26, 7).to_vec()));
    assert_eq!(app.stored().await, 1);
    app.stop().await;
}

#[tokio::test]
async fn packets_before_a_login_broken_packets_and_refused_imeis_close_the_connection() {
    let app = app(|c| {
        c.tokens = TokensSetting::Compact("tracker-token-0001=ingest@8647*".into());
        c.tcp.token = Some("tracker-token-0001".into());
    })
    .await;
    let mut early = Tracker::connect(&app).await;
    early.send(&packet(0x22, &gps(1, 48.85, 2.35, true), 1)).await;
    early.expect_closed().await;

    let mut refused = Tracker::connect(&app).await;
    refused.send(&login("356307042441013", 1)).await;
    refused.expect_closed().await;

    let mut broken = Tracker::logged_in(&app).await;
    let mut bad_crc = packet(0x22, &gps(1, 48.85, 2.35, true), 2);
    bad_crc[8] ^= 0x01;
    broken.send(&bad_crc).await;
    broken.expect_closed().await;

    let mut garbage = Tracker::connect(&app).await;
    garbage.send(b"GET / HTTP/1.1\r\n\r\n").await;
    garbage.expect_closed().await;

    assert_eq!(app.stored().await, 0);
    for reason in ["before_login", "refused_device", "bad_crc", "bad_start"] {
        let line = format!("geotrack_tcp_errors_total{{protocol=\"gt06\",reason=\"{reason}\"}}");
        assert_eq!(metric(&app, &line).await, Some(1.0), "{reason}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_tracker_sending_one_byte_at_a_time_is_understood() {
    let app = app(|_| {}).await;
    let mut tracker = Tracker::connect(&app).await;
    let stream = [login(IMEI, 1), packet(0x16, &gps(2, 48.85, 2.35, true), 2)].concat();
    for byte in &stream {
        tracker.send(&[*byte]).await;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(tracker.answer(PATIENCE).await, Some(reply(0x01, 1).to_vec()));
    assert_eq!(tracker.answer(PATIENCE).await, Some(reply(0x16, 2).to_vec()));
    assert_eq!(app.stored().await, 1);
    app.stop().await;
}
