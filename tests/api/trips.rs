//! Trips, stops and summaries over a real server: a delivery day recorded as a GPX file (depot,
//! a drive out, a delivery, a drive back with a red light, the depot again with the tracker off
//! for the afternoon), imported with `geotrack import gpx`, then reported in JSON and CSV.

use std::fmt::Write as _;

use chrono::{DateTime, Duration, DurationRound, Utc};
use serde_json::Value;

use crate::helpers::{TestApp, geotrack, json_with_status, spawn_app};

/// Metres to degrees of longitude and latitude at 45°N.
const LON_M: f64 = 1.0 / 78_846.8;
const LAT_M: f64 = 1.0 / 111_132.0;

/// The day as GPX 1.1 from `start`: (seconds after start, east metres, north metres, speed).
fn day_gpx(start: DateTime<Utc>) -> String {
    let mut points: Vec<(f64, f64, f64, f64)> = Vec::new();
    let parked = |points: &mut Vec<(f64, f64, f64, f64)>, from_min: f64, to_min: f64, east: f64| {
        let mut s = from_min * 60.0;
        while s <= to_min * 60.0 {
            let i = points.len() as f64;
            points.push((s, east + (i * 2.399).sin() * 12.0, (i * 1.713).cos() * 12.0, 0.1));
            s += 30.0;
        }
    };
    let drive = |points: &mut Vec<(f64, f64, f64, f64)>,
                 from_min: f64,
                 minutes: f64,
                 east: f64,
                 sign: f64,
                 red: Option<f64>| {
        let (mut s, mut x) = (from_min * 60.0, east);
        while s < (from_min + minutes) * 60.0 {
            s += 10.0;
            let stopped = red.is_some_and(|r| s > (from_min + r) * 60.0 && s <= (from_min + r + 2.0) * 60.0);
            if !stopped {
                x += sign * 125.0;
            }
            points.push((s, x, 0.0, if stopped { 0.0 } else { 12.5 }));
        }
        x
    };
    parked(&mut points, 0.0, 30.0, 0.0);
    let out = drive(&mut points, 30.0, 20.0, 0.0, 1.0, None);
    parked(&mut points, 50.5, 65.0, out);
    let back = drive(&mut points, 65.0, 22.0, out, -1.0, Some(8.0));
    parked(&mut points, 87.5, 90.0, back);
    points.push((240.0 * 60.0, back + 3.0, 2.0, 0.0));

    let mut gpx = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<gpx version=\"1.1\" creator=\"geotrack test\" \
         xmlns=\"http://www.topografix.com/GPX/1/1\" xmlns:gpxtpx=\"http://www.garmin.com/xmlschemas/TrackPointExtension/v2\">\
         <trk><trkseg>\n",
    );
    for (s, east, north, speed) in points {
        let ts = (start + Duration::milliseconds((s * 1000.0) as i64)).to_rfc3339();
        let (lon, lat) = (5.0 + east * LON_M, 45.0 + north * LAT_M);
        let _ = writeln!(
            gpx,
            "<trkpt lat=\"{lat:.7}\" lon=\"{lon:.7}\"><time>{ts}</time><extensions><gpxtpx:TrackPointExtension>\
             <gpxtpx:speed>{speed}</gpxtpx:speed></gpxtpx:TrackPointExtension></extensions></trkpt>"
        );
    }
    gpx.push_str("</trkseg></trk></gpx>\n");
    gpx
}

async fn import_day(app: &TestApp) -> DateTime<Utc> {
    let start = Utc::now().duration_trunc(Duration::days(1)).expect("midnight") - Duration::hours(16);
    let dir = std::env::temp_dir().join(format!("geotrack-trips-{}", app.db_name));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("day.gpx");
    std::fs::write(&file, day_gpx(start)).expect("gpx written");
    let args = [
        "import",
        "gpx",
        file.to_str().expect("path"),
        "--device",
        "van-7",
        "--database-url",
        &app.db_url,
    ];
    let output = geotrack(&args).await;
    assert!(output.status.success(), "{output:?}");
    std::fs::remove_dir_all(&dir).expect("temp dir removed");
    start
}

/// The minutes after `start` of a report's time field.
fn minutes(value: &Value, start: DateTime<Utc>) -> f64 {
    let ts: DateTime<Utc> = value.as_str().expect("time").parse().expect("rfc 3339");
    (ts - start).num_milliseconds() as f64 / 60_000.0
}

#[tokio::test]
async fn a_recorded_day_is_three_stops_two_trips_and_a_summary() {
    let app = spawn_app().await;
    let start = import_day(&app).await;
    let range = format!(
        "from={}&to={}",
        start.timestamp(),
        (start + Duration::hours(5)).timestamp()
    );

    let stops = json_with_status(
        app.get(&format!("/api/v1/devices/van-7/stops?{range}")).await,
        200,
    )
    .await;
    let spans: Vec<(f64, f64)> = stops["stops"]
        .as_array()
        .expect("stops")
        .iter()
        .map(|s| (minutes(&s["start"], start), minutes(&s["end"], start)))
        .collect();
    assert_eq!(spans.len(), 3, "{spans:?}");
    assert_eq!(spans[0], (0.0, 30.0));
    assert_eq!(spans[1], (50.5, 65.0));
    assert_eq!(spans[2], (87.5, 240.0), "parked while the tracker was off");
    assert_eq!(stops["rules"]["min_stop_s"], 300);

    let trips = json_with_status(
        app.get(&format!("/api/v1/devices/van-7/trips?{range}")).await,
        200,
    )
    .await;
    let trips = trips["trips"].as_array().expect("trips");
    assert_eq!(trips.len(), 2, "the red light splits no trip: {trips:?}");
    for trip in trips {
        let distance = trip["distance_m"].as_f64().expect("distance");
        assert!((distance - 15_000.0).abs() < 300.0, "{trip}");
        assert_eq!(trip["max_speed_mps"], 12.5);
    }

    let summary = json_with_status(
        app.get(&format!("/api/v1/devices/van-7/summary?{range}")).await,
        200,
    )
    .await;
    let summary = &summary["summary"];
    assert_eq!(
        (summary["trips"].as_u64(), summary["stops"].as_u64()),
        (Some(2), Some(3))
    );
    assert!(
        (summary["distance_m"].as_f64().expect("distance") - 30_000.0).abs() < 600.0,
        "{summary}"
    );

    // Under a 90-second rule the two-minute red light is a stop too.
    let strict = format!("/api/v1/devices/van-7/stops?{range}&min_stop_s=90");
    let strict = json_with_status(app.get(&strict).await, 200).await;
    assert_eq!(strict["stops"].as_array().expect("stops").len(), 4);

    let csv = app
        .get(&format!("/api/v1/devices/van-7/trips?{range}&format=csv"))
        .await;
    assert_eq!(csv.status(), 200);
    assert!(
        csv.headers()["content-type"]
            .to_str()
            .expect("type")
            .starts_with("text/csv")
    );
    let csv = csv.text().await.expect("body");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[0].starts_with("device,start,end,duration_s,"));
    assert!(lines[1].starts_with("van-7,"));
    let summary_csv = app
        .get_with(
            &format!("/api/v1/devices/van-7/summary?{range}"),
            "accept",
            "text/csv",
        )
        .await
        .text()
        .await
        .expect("body");
    assert_eq!(summary_csv.lines().count(), 2, "{summary_csv}");
    app.stop().await;
}

#[tokio::test]
async fn bad_report_requests_are_explained() {
    let app = spawn_app().await;
    import_day(&app).await;
    for (query, code) in [
        ("min_stop_s=-1", "invalid_rules"),
        ("stop_radius_m=0", "invalid_rules"),
        ("stop_speed_mps=NaN", "invalid_rules"),
        ("format=xml", "invalid_format"),
        (
            "from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z",
            "invalid_range",
        ),
        ("colour=red", "invalid_query"),
    ] {
        let reply = app.get(&format!("/api/v1/devices/van-7/trips?{query}")).await;
        assert_eq!(
            json_with_status(reply, 400).await["error"]["code"],
            code,
            "{query}"
        );
    }
    let unknown = app.get("/api/v1/devices/nobody/summary").await;
    assert_eq!(
        json_with_status(unknown, 404).await["error"]["code"],
        "device_not_found"
    );
    app.stop().await;
}
