//! Segmentation of a scripted delivery day, with GPS jitter at the stops, a red light that is no
//! stop, and a tracker switched off while parked.

use chrono::{Duration, TimeZone};

use super::*;

/// Metres to degrees of longitude at latitude 45° (and of latitude).
const LON_M: f64 = 1.0 / 78_846.8;
const LAT_M: f64 = 1.0 / 111_132.0;

fn at(minutes: f64, east_m: f64, north_m: f64, speed_mps: Option<f64>) -> TrackPoint {
    let start = Utc.with_ymd_and_hms(2026, 12, 7, 8, 0, 0).unwrap();
    TrackPoint {
        ts: start + Duration::milliseconds((minutes * 60_000.0) as i64),
        lon: 5.0 + east_m * LON_M,
        lat: 45.0 + north_m * LAT_M,
        speed_mps,
    }
}

/// A deterministic wobble of up to 15 m, as a parked receiver reports.
fn jitter(i: usize) -> (f64, f64) {
    let i = i as f64;
    ((i * 2.399).sin() * 15.0, (i * 1.713).cos() * 15.0)
}

/// Parked from `from` to `to` minutes at `east_m`, a fix every 30 s.
fn parked(points: &mut Vec<TrackPoint>, from: f64, to: f64, east_m: f64, speed: bool) {
    let mut minute = from;
    while minute <= to {
        let (dx, dy) = jitter(points.len());
        points.push(at(minute, east_m + dx, dy, speed.then_some(0.2)));
        minute += 0.5;
    }
}

/// Driving east (or west) at 12.5 m/s from `east_m` for `minutes`, a fix every 10 s, with a
/// red light of two minutes at `red_at` minutes when given.
fn drive(
    points: &mut Vec<TrackPoint>,
    from: f64,
    minutes: f64,
    east_m: f64,
    west: bool,
    red_at: Option<f64>,
    speed: bool,
) -> f64 {
    let sign = if west { -1.0 } else { 1.0 };
    let mut position = east_m;
    let mut minute = from;
    while minute < from + minutes {
        minute += 1.0 / 6.0;
        let red = red_at.is_some_and(|r| minute > from + r && minute <= from + r + 2.0);
        if !red {
            position += sign * 125.0;
        }
        points.push(at(
            minute,
            position,
            0.0,
            speed.then_some(if red { 0.0 } else { 12.5 }),
        ));
    }
    position
}

/// The day: depot 08:00-08:30, 20 min east, delivery 08:50-09:05, 20 min back with a red
/// light, depot from 09:25, tracker off at 09:30, one fix at 12:00.
fn day(speed: bool) -> Vec<TrackPoint> {
    let mut points = Vec::new();
    parked(&mut points, 0.0, 30.0, 0.0, speed);
    let out = drive(&mut points, 30.0, 20.0, 0.0, false, None, speed);
    parked(&mut points, 50.0 + 0.5, 65.0, out, speed);
    let back = drive(&mut points, 65.0, 22.0, out, true, Some(8.0), speed);
    parked(&mut points, 87.0 + 0.5, 90.0, back, speed);
    points.push(at(240.0, back + 3.0, 2.0, speed.then_some(0.0)));
    points
}

fn segment(points: &[TrackPoint]) -> Report {
    let mut segmenter = Segmenter::new(TripRules::default());
    for point in points {
        segmenter.push(*point);
    }
    segmenter.finish()
}

#[test]
fn a_delivery_day_has_three_stops_and_two_trips() {
    for speed in [true, false] {
        let report = segment(&day(speed));
        let minutes = |ts: DateTime<Utc>| {
            (ts - Utc.with_ymd_and_hms(2026, 12, 7, 8, 0, 0).unwrap()).num_seconds() as f64 / 60.0
        };
        let stops: Vec<(f64, f64)> = report
            .stops
            .iter()
            .map(|s| (minutes(s.start), minutes(s.end)))
            .collect();
        assert_eq!(stops.len(), 3, "speed reported: {speed}; {stops:?}");
        assert_eq!(stops[0], (0.0, 30.0));
        assert!(
            (50.0..=51.0).contains(&stops[1].0) && (stops[1].1 - 65.0).abs() < 1e-9,
            "{stops:?}"
        );
        assert!(
            (87.0..=88.0).contains(&stops[2].0) && (stops[2].1 - 240.0).abs() < 1e-9,
            "parked through the gap: {stops:?}"
        );
        assert_eq!(report.trips.len(), 2, "the red light splits no trip");
        for trip in &report.trips {
            assert!((trip.distance_m - 15_000.0).abs() < 400.0, "{trip:?}");
            // Without reported speeds, speeds between fixes: the first hop off a jittered
            // stop is up to 15 m longer.
            let slack = if speed { 0.1 } else { 1.6 };
            assert!((trip.max_speed_mps - 12.5).abs() < slack, "{trip:?}");
        }
        let summary = &report.summary;
        assert_eq!((summary.trips, summary.stops), (2, 3));
        assert_eq!(summary.fixes, day(speed).len() as u64);
        let total: f64 = report.trips.iter().map(|t| t.distance_m).sum();
        assert!((summary.distance_m - total).abs() < 1e-6);
        assert_eq!(
            summary.stopped_s,
            report.stops.iter().map(|s| s.duration_s).sum::<i64>()
        );
        assert!((summary.avg_speed_mps - total / summary.driving_s as f64).abs() < 1e-9);
        // The first stop's mean position is the depot, within the jitter.
        let [lon, lat] = report.stops[0].position;
        assert!((lon - 5.0).abs() < 10.0 * LON_M && (lat - 45.0).abs() < 10.0 * LAT_M);
    }
}

#[test]
fn jitter_around_one_place_is_one_stop_and_no_trip() {
    let mut points = Vec::new();
    parked(&mut points, 0.0, 120.0, 0.0, false);
    let report = segment(&points);
    assert_eq!(report.stops.len(), 1);
    assert!(report.trips.is_empty(), "{:?}", report.trips);
    assert!(report.summary.distance_m.abs() < f64::EPSILON);
}

#[test]
fn a_short_history_is_one_trip_or_nothing() {
    assert_eq!(segment(&[]), Report::default());
    let mut points = Vec::new();
    drive(&mut points, 0.0, 5.0, 0.0, false, None, true);
    let report = segment(&points);
    assert!(report.stops.is_empty());
    assert_eq!(report.trips.len(), 1);
    assert!(
        (report.trips[0].distance_m - 3_625.0).abs() < 50.0,
        "{:?}",
        report.trips[0]
    );
}
