//! Teltonika trackers over a real socket against the real server: the handshake (accepted,
//! refused by the token's device limit), records stored under the IMEI, the acknowledgement
//! held back until the records are committed, and everything that must get no
//! acknowledgement (bad CRC, unknown codec, garbage); a device sending one byte at a time, the
//! idle timeout and the connection cap.

use std::net::SocketAddr;
use std::time::Duration;

use chrono::Utc;
use geotrack::Config;
use geotrack::auth::TokensSetting;
use serde_json::Value;
use sqlx::Connection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracker::tcp::teltonika::encode;
use tracker::tcp::teltonika::{AvlRecord, Codec, IoElement, IoValue};

use crate::helpers::{TestApp, eventually, spawn_with};

const IMEI: &str = "356307042441013";
/// How long a test waits for something that must happen.
const PATIENCE: Duration = Duration::from_secs(10);

async fn app(tweak: impl FnOnce(&mut Config)) -> TestApp {
    spawn_with(|c| {
        c.tcp.teltonika = Some("127.0.0.1:0".parse().expect("addr"));
        tweak(c);
    })
    .await
}

/// A tracker's connection.
struct Tracker(TcpStream);

impl Tracker {
    async fn connect(app: &TestApp) -> Self {
        let addr: SocketAddr = app.teltonika.expect("the Teltonika listener");
        let stream = TcpStream::connect(addr).await.expect("connects");
        stream.set_nodelay(true).expect("nodelay");
        Self(stream)
    }

    /// Connects and sends the handshake; the server's answer byte.
    async fn handshake(app: &TestApp, imei: &str) -> (Self, u8) {
        let mut tracker = Self::connect(app).await;
        tracker.send(&encode::imei(imei)).await;
        let answer = tracker.read(1).await.expect("a handshake answer");
        (tracker, answer[0])
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.0.write_all(bytes).await.expect("sends");
    }

    /// `n` bytes, or `None` when the server closed the connection first; panics when nothing
    /// comes within [`PATIENCE`].
    async fn read(&mut self, n: usize) -> Option<Vec<u8>> {
        self.read_within(n, PATIENCE)
            .await
            .expect("an answer or a close in time")
    }

    /// `Err` when nothing (neither bytes nor a close) came within `wait`.
    async fn read_within(&mut self, n: usize, wait: Duration) -> Result<Option<Vec<u8>>, ()> {
        let mut buffer = vec![0; n];
        match tokio::time::timeout(wait, self.0.read_exact(&mut buffer)).await {
            Err(_) => Err(()),
            Ok(Ok(_)) => Ok(Some(buffer)),
            Ok(Err(_)) => Ok(None),
        }
    }

    async fn ack(&mut self) -> Option<u32> {
        self.read(4)
            .await
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// The server closes the connection without sending anything.
    async fn expect_closed(&mut self) {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(PATIENCE, self.0.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "the server did not close the connection");
        assert!(rest.is_empty(), "the server sent {rest:?} before closing");
    }
}

/// A record `age_s` seconds old at `lon`,`lat`, 54 km/h (15 m/s), heading 90, with IO elements.
fn record(age_s: i64, lon: f64, lat: f64) -> AvlRecord {
    let ts = Utc::now() - chrono::Duration::seconds(age_s);
    AvlRecord {
        timestamp_ms: u64::try_from(ts.timestamp_millis()).expect("after 1970"),
        priority: 0,
        lon_e7: (lon * 1e7).round() as i32,
        lat_e7: (lat * 1e7).round() as i32,
        altitude_m: 120,
        angle_deg: 90,
        satellites: 9,
        speed_kmh: 54,
        event_io: 0,
        generation: None,
        io: vec![
            IoElement {
                id: 239,
                value: IoValue::U8(1),
            },
            IoElement {
                id: 66,
                value: IoValue::U16(12_345),
            },
        ],
    }
}

fn packet(records: &[AvlRecord]) -> Vec<u8> {
    encode::packet(Codec::Codec8, records).expect("encodes")
}

async fn metrics(app: &TestApp) -> String {
    app.get("/metrics").await.text().await.expect("metrics")
}

/// The value of the metric line starting with `prefix` (labels included).
fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[derive(Debug, sqlx::FromRow)]
struct Row {
    device: String,
    lon: f64,
    lat: f64,
    speed_mps: Option<f64>,
    heading_deg: Option<f64>,
    altitude_m: Option<f64>,
    attrs: Option<Value>,
}

async fn rows(app: &TestApp) -> Vec<Row> {
    sqlx::query_as(
        "SELECT device, ST_X(geom) AS lon, ST_Y(geom) AS lat, speed_mps, heading_deg, altitude_m, attrs
         FROM positions ORDER BY ts",
    )
    .fetch_all(&app.db)
    .await
    .expect("rows")
}

#[tokio::test]
async fn records_are_stored_under_the_imei_and_acknowledged_by_count() {
    let app = app(|_| {}).await;
    let (mut tracker, answer) = Tracker::handshake(&app, IMEI).await;
    assert_eq!(answer, 0x01);
    let mut no_fix = record(5, 0.0, 0.0);
    no_fix.satellites = 0;
    tracker
        .send(&packet(&[
            record(20, 16.37, 48.21),
            record(10, 16.38, 48.22),
            no_fix,
        ]))
        .await;
    assert_eq!(
        tracker.ack().await,
        Some(3),
        "every record of the packet is acknowledged"
    );

    let rows = rows(&app).await;
    assert_eq!(
        rows.len(),
        2,
        "the record without a GPS fix is not stored: {rows:?}"
    );
    let first = &rows[0];
    assert_eq!(first.device, IMEI);
    assert!((first.lon - 16.37).abs() < 1e-7 && (first.lat - 48.21).abs() < 1e-7);
    assert!(first.speed_mps.is_some_and(|s| (s - 15.0).abs() < 1e-9));
    assert_eq!((first.heading_deg, first.altitude_m), (Some(90.0), Some(120.0)));
    let attrs = first.attrs.as_ref().expect("attrs");
    assert_eq!(
        (&attrs["239"], &attrs["66"]),
        (&Value::from(1), &Value::from(12_345))
    );
    assert_eq!(attrs["satellites"], Value::from(9));

    // A second packet on the same connection.
    tracker.send(&packet(&[record(1, 16.39, 48.23)])).await;
    assert_eq!(tracker.ack().await, Some(1));
    assert_eq!(app.stored().await, 3);

    let text = metrics(&app).await;
    let count = |prefix: &str| metric(&text, prefix);
    assert_eq!(
        count("geotrack_tcp_records_total{protocol=\"teltonika\"}"),
        Some(4.0)
    );
    assert_eq!(
        count("geotrack_tcp_packets_total{protocol=\"teltonika\"}"),
        Some(3.0)
    );
    assert_eq!(
        count("geotrack_tcp_connections{protocol=\"teltonika\"}"),
        Some(1.0)
    );
    assert_eq!(
        count("geotrack_ingest_fixes_accepted_total{protocol=\"teltonika\"}"),
        Some(3.0)
    );
    assert_eq!(
        count("geotrack_ingest_fixes_rejected_total{protocol=\"teltonika\",reason=\"no_gps_fix\"}"),
        Some(1.0)
    );
    drop(tracker);
    app.stop().await;
}

#[tokio::test]
async fn a_packet_of_records_that_fail_validation_is_still_acknowledged() {
    let app = app(|_| {}).await;
    let (mut tracker, answer) = Tracker::handshake(&app, IMEI).await;
    assert_eq!(answer, 0x01);
    // Two years old (beyond ingest.max_age_days) and an hour ahead of the server clock.
    tracker
        .send(&packet(&[
            record(2 * 366 * 86_400, 1.0, 1.0),
            record(-3_600, 1.0, 1.0),
        ]))
        .await;
    assert_eq!(
        tracker.ack().await,
        Some(2),
        "or the device would resend them forever"
    );
    assert_eq!(app.stored().await, 0);
    let text = metrics(&app).await;
    for reason in ["ts_too_old", "ts_in_future"] {
        let line =
            format!("geotrack_ingest_fixes_rejected_total{{protocol=\"teltonika\",reason=\"{reason}\"}}");
        assert_eq!(metric(&text, &line), Some(1.0), "{reason}");
    }
    app.stop().await;
}

#[tokio::test]
async fn imeis_outside_the_tokens_device_limit_are_refused() {
    let app = app(|c| {
        c.tokens = TokensSetting::Compact("tracker-token-0001=ingest@35*".into());
        c.tcp.token = Some("tracker-token-0001".into());
    })
    .await;
    let (mut refused, answer) = Tracker::handshake(&app, "861234567890123").await;
    assert_eq!(answer, 0x00);
    refused.expect_closed().await;

    let (mut accepted, answer) = Tracker::handshake(&app, IMEI).await;
    assert_eq!(answer, 0x01);
    accepted.send(&packet(&[record(1, 2.35, 48.85)])).await;
    assert_eq!(accepted.ack().await, Some(1));
    assert_eq!(app.stored().await, 1);
    let text = metrics(&app).await;
    assert_eq!(
        metric(
            &text,
            "geotrack_tcp_errors_total{protocol=\"teltonika\",reason=\"refused_device\"}"
        ),
        Some(1.0)
    );
    app.stop().await;
}

#[tokio::test]
async fn a_listener_needs_an_ingest_token_when_tokens_are_configured() {
    let db = crate::helpers::new_database().await;
    let mut config = Config {
        bind: "127.0.0.1:0".parse().expect("addr"),
        database_url: crate::helpers::database_url(&db),
        db_max_connections: 8,
        tokens: TokensSetting::Compact("reader-token-00001=read".into()),
        ..Config::default()
    };
    config.ingest.shards = 2;
    config.tcp.teltonika = Some("127.0.0.1:0".parse().expect("addr"));
    for token in [None, Some("reader-token-00001"), Some("unknown-token-0001")] {
        config.tcp.token = token.map(str::to_owned);
        let err = geotrack::Application::build(config.clone())
            .await
            .expect_err("refused");
        assert!(err.to_string().contains("tcp.token"), "{err}");
    }
    crate::helpers::admin_exec(&format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)")).await;
}

#[tokio::test]
async fn the_acknowledgement_waits_for_the_commit() {
    let app = app(|_| {}).await;
    let (mut tracker, answer) = Tracker::handshake(&app, IMEI).await;
    assert_eq!(answer, 0x01);
    // Hold the writers: nothing can be inserted into positions until this transaction ends.
    let mut blocker = sqlx::PgConnection::connect(&app.db_url).await.expect("connects");
    let mut tx = blocker.begin().await.expect("begins");
    sqlx::query("LOCK TABLE positions IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await
        .expect("locks");
    tracker
        .send(&packet(&[record(3, 13.40, 52.52), record(2, 13.41, 52.52)]))
        .await;
    assert_eq!(
        tracker.read_within(4, Duration::from_secs(2)).await,
        Err(()),
        "no acknowledgement while the records cannot be committed"
    );
    tx.rollback().await.expect("releases");
    assert_eq!(tracker.ack().await, Some(2), "acknowledged once committed");
    assert_eq!(app.stored().await, 2);
    app.stop().await;
}

#[tokio::test]
async fn a_bad_crc_or_an_unknown_codec_gets_no_acknowledgement_and_stores_nothing() {
    let app = app(|_| {}).await;
    let mut bad_crc = packet(&[record(1, 2.0, 48.0)]);
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 0xFF;
    // Codec 12 (a GPRS command answer), with a valid CRC: not an AVL packet.
    let mut codec12 = packet(&[record(1, 2.0, 48.0)]);
    codec12[8] = 0x0C;
    let data_end = codec12.len() - 4;
    let crc = tracker::tcp::teltonika::crc16_ibm(&codec12[8..data_end]);
    codec12[data_end..].copy_from_slice(&u32::from(crc).to_be_bytes());
    for frame in [bad_crc, codec12] {
        let (mut tracker, answer) = Tracker::handshake(&app, IMEI).await;
        assert_eq!(answer, 0x01);
        tracker.send(&frame).await;
        tracker.expect_closed().await;
    }
    assert_eq!(app.stored().await, 0);
    let text = metrics(&app).await;
    for reason in ["bad_crc", "unknown_codec"] {
        let line = format!("geotrack_tcp_errors_total{{protocol=\"teltonika\",reason=\"{reason}\"}}");
        assert_eq!(metric(&text, &line), Some(1.0), "{reason}");
    }
    app.stop().await;
}

#[tokio::test]
async fn garbage_is_closed_without_an_answer() {
    let app = app(|_| {}).await;
    let mut http = Tracker::connect(&app).await;
    http.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    http.expect_closed().await;
    // After a good handshake, bytes that are not a packet.
    let (mut tracker, answer) = Tracker::handshake(&app, IMEI).await;
    assert_eq!(answer, 0x01);
    tracker.send(b"\x01\x02\x03\x04\x05\x06\x07\x08").await;
    tracker.expect_closed().await;
    assert_eq!(app.stored().await, 0);
    // The listener still serves others.
    let (_tracker, answer) = Tracker::handshake(&app, IMEI).await;
    assert_eq!(answer, 0x01);
    app.stop().await;
}

#[tokio::test]
async fn a_device_sending_one_byte_at_a_time_is_understood() {
    let app = app(|_| {}).await;
    let mut tracker = Tracker::connect(&app).await;
    let handshake = encode::imei(IMEI);
    for byte in &handshake {
        tracker.send(&[*byte]).await;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(tracker.read(1).await, Some(vec![0x01]));
    let frame = packet(&[record(2, 9.18, 45.46), record(1, 9.19, 45.46)]);
    for byte in &frame {
        tracker.send(&[*byte]).await;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(tracker.ack().await, Some(2));
    assert_eq!(app.stored().await, 2);
    app.stop().await;
}

#[tokio::test]
async fn silent_devices_are_disconnected_and_the_cap_closes_extra_connections() {
    let app = app(|c| {
        c.tcp.idle_timeout_s = 1;
        c.tcp.max_connections = 1;
    })
    .await;
    let (mut first, answer) = Tracker::handshake(&app, IMEI).await;
    assert_eq!(answer, 0x01);
    let mut second = Tracker::connect(&app).await;
    second.expect_closed().await;
    // The first one, silent, is closed by the idle timeout; then there is room again.
    first.expect_closed().await;
    assert!(
        eventually(async || {
            let mut tracker = Tracker::connect(&app).await;
            tracker.send(&encode::imei(IMEI)).await;
            tracker.read(1).await == Some(vec![0x01])
        })
        .await
    );
    let text = metrics(&app).await;
    for reason in ["over_capacity", "idle_timeout"] {
        let line = format!("geotrack_tcp_errors_total{{protocol=\"teltonika\",reason=\"{reason}\"}}");
        assert!(metric(&text, &line).is_some_and(|n| n >= 1.0), "{reason}: {text}");
    }
    app.stop().await;
}

#[tokio::test]
async fn the_server_shuts_down_with_trackers_connected() {
    let app = app(|_| {}).await;
    let (mut tracker, answer) = Tracker::handshake(&app, IMEI).await;
    assert_eq!(answer, 0x01);
    let stopped = tokio::time::timeout(PATIENCE, app.stop()).await;
    assert!(stopped.is_ok(), "shutdown waited for an idle tracker");
    tracker.expect_closed().await;
}

#[tokio::test]
async fn in_cluster_mode_the_fix_log_acknowledges_and_the_partition_owner_stores() {
    let prefix = crate::helpers::cluster_prefix("tcp-teltonika");
    let app = app(|c| c.cluster = crate::helpers::cluster_config(&prefix, "n0", 4, 2)).await;
    let (mut tracker, answer) = Tracker::handshake(&app, IMEI).await;
    assert_eq!(answer, 0x01);
    tracker
        .send(&packet(&[
            record(3, 4.35, 50.85),
            record(2, 4.36, 50.85),
            record(1, 4.37, 50.85),
        ]))
        .await;
    assert_eq!(tracker.ack().await, Some(3));
    assert!(
        eventually(async || app.stored().await == 3).await,
        "the owner of the device's partition stores the acknowledged records"
    );
    drop(tracker);
    app.stop().await;
    crate::helpers::destroy_cluster(&prefix, 4).await;
}
