//! Trips, stops and a summary from a device's history, as fleet reports show them.
//!
//! A **stop** is a stretch of at least [`TripRules::min_stop_s`] during which every fix stays
//! within [`TripRules::stop_radius_m`] of the stretch's first fix and reports no speed above
//! [`TripRules::stop_speed_mps`] (a fix without a speed counts as slow: only its position
//! decides). A gap between fixes inside the radius is part of the stop: a tracker switched off
//! while parked. A **trip** is the movement between two stops (or before the first, or after
//! the last, within the range asked for); trips shorter than [`TripRules::min_trip_m`] are
//! dropped as GPS jitter around a stop. The summary adds the trips up.
//!
//! [`Segmenter`] takes fixes one at a time, oldest first, and keeps only running totals, so a
//! month of fixes at 1 Hz costs no more memory than an hour.

use chrono::{DateTime, Utc};
use fences::geodesy::haversine_m;
use geo::Coord;
use serde::{Deserialize, Serialize};

/// What makes a stop and a trip; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TripRules {
    /// Fastest reported speed of a fix inside a stop (m/s); default 1 m/s (3.6 km/h).
    pub stop_speed_mps: f64,
    /// Shortest stop, in seconds; default 300.
    pub min_stop_s: i64,
    /// How far a stop's fixes may stray from its first fix, in metres; default 100.
    pub stop_radius_m: f64,
    /// Shortest trip kept, in metres; default 200.
    pub min_trip_m: f64,
}

impl Default for TripRules {
    fn default() -> Self {
        Self {
            stop_speed_mps: 1.0,
            min_stop_s: 300,
            stop_radius_m: 100.0,
            min_trip_m: 200.0,
        }
    }
}

/// One fix of the history, as the segmentation reads it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrackPoint {
    pub ts: DateTime<Utc>,
    pub lon: f64,
    pub lat: f64,
    pub speed_mps: Option<f64>,
}

/// A stop: where and from when to when.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stop {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub duration_s: i64,
    /// The mean position of its fixes, `[lon, lat]`.
    pub position: [f64; 2],
    pub fixes: u64,
}

/// A trip: from where and when to where and when, how far and how fast.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trip {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub duration_s: i64,
    pub start_position: [f64; 2],
    pub end_position: [f64; 2],
    /// Great-circle metres between consecutive fixes, added up.
    pub distance_m: f64,
    /// The fastest reported speed (or, for fixes without one, speed between two fixes).
    pub max_speed_mps: f64,
    /// `distance_m / duration_s`.
    pub avg_speed_mps: f64,
    pub fixes: u64,
}

/// The trips and stops of a range added up.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Summary {
    pub fixes: u64,
    pub trips: usize,
    pub stops: usize,
    pub distance_m: f64,
    pub driving_s: i64,
    pub stopped_s: i64,
    pub max_speed_mps: f64,
    /// `distance_m / driving_s` (0 without trips).
    pub avg_speed_mps: f64,
}

/// What a history comes to.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Report {
    pub trips: Vec<Trip>,
    pub stops: Vec<Stop>,
    pub summary: Summary,
}

/// A trip being measured.
#[derive(Debug, Clone, Copy)]
struct Leg {
    start: TrackPoint,
    end: TrackPoint,
    distance_m: f64,
    max_speed_mps: f64,
    fixes: u64,
}

impl Leg {
    fn starting_at(point: TrackPoint) -> Self {
        Self {
            start: point,
            end: point,
            distance_m: 0.0,
            max_speed_mps: point.speed_mps.unwrap_or(0.0),
            fixes: 1,
        }
    }

    fn extend(&mut self, point: TrackPoint) {
        let hop = distance(&self.end, &point);
        let seconds = (point.ts - self.end.ts).num_milliseconds() as f64 / 1000.0;
        let speed = point
            .speed_mps
            .or((seconds >= 1.0).then(|| hop / seconds))
            .unwrap_or(0.0);
        self.distance_m += hop;
        self.max_speed_mps = self.max_speed_mps.max(speed);
        self.end = point;
        self.fixes += 1;
    }
}

/// A possible stop: its first fix and the running mean of its fixes.
#[derive(Debug, Clone, Copy)]
struct Still {
    anchor: TrackPoint,
    last: TrackPoint,
    sum: [f64; 2],
    fixes: u64,
    /// The trip as it was before this stretch began (the stretch is cut from it if it stops).
    leg_before: Option<Leg>,
}

/// Cuts a history into trips and stops; feed fixes oldest first, then [`finish`](Self::finish).
#[derive(Debug)]
pub struct Segmenter {
    rules: TripRules,
    report: Report,
    leg: Option<Leg>,
    still: Option<Still>,
}

impl Segmenter {
    pub fn new(rules: TripRules) -> Self {
        Self {
            rules,
            report: Report::default(),
            leg: None,
            still: None,
        }
    }

    /// Takes the next fix (fixes out of order are the caller's bug; equal times are fine).
    pub fn push(&mut self, point: TrackPoint) {
        self.report.summary.fixes += 1;
        let slow = point.speed_mps.is_none_or(|s| s <= self.rules.stop_speed_mps);
        if let Some(still) = &mut self.still {
            if slow && distance(&still.anchor, &point) <= self.rules.stop_radius_m {
                still.last = point;
                still.sum[0] += point.lon;
                still.sum[1] += point.lat;
                still.fixes += 1;
                self.extend_leg(point);
                return;
            }
            let still = self.still.take().expect("checked");
            if self.is_stop(&still) {
                self.close_stop(&still);
                // The trip resumes from the stop's last fix.
                self.leg = Some(Leg::starting_at(still.last));
            }
        }
        if slow {
            self.still = Some(Still {
                anchor: point,
                last: point,
                sum: [point.lon, point.lat],
                fixes: 1,
                leg_before: self.leg,
            });
        }
        self.extend_leg(point);
    }

    /// The report, with a stretch still open at the end counted as a stop when long enough.
    pub fn finish(mut self) -> Report {
        if let Some(still) = self.still.take()
            && self.is_stop(&still)
        {
            self.close_stop(&still);
        }
        if let Some(leg) = self.leg.take() {
            self.close_leg(leg);
        }
        let summary = &mut self.report.summary;
        summary.trips = self.report.trips.len();
        summary.stops = self.report.stops.len();
        summary.avg_speed_mps = if summary.driving_s > 0 {
            summary.distance_m / summary.driving_s as f64
        } else {
            0.0
        };
        self.report
    }

    fn extend_leg(&mut self, point: TrackPoint) {
        match &mut self.leg {
            Some(leg) => leg.extend(point),
            None => self.leg = Some(Leg::starting_at(point)),
        }
    }

    fn is_stop(&self, still: &Still) -> bool {
        (still.last.ts - still.anchor.ts).num_seconds() >= self.rules.min_stop_s
    }

    /// Records `still` as a stop, ending the trip where the stretch began.
    fn close_stop(&mut self, still: &Still) {
        if let Some(before) = still.leg_before {
            let mut leg = before;
            // The hop onto the stop's first fix belongs to the trip.
            if leg.end.ts < still.anchor.ts {
                leg.extend(still.anchor);
            }
            self.close_leg(leg);
        }
        self.leg = None;
        let duration_s = (still.last.ts - still.anchor.ts).num_seconds();
        let n = still.fixes as f64;
        self.report.summary.stopped_s += duration_s;
        self.report.stops.push(Stop {
            start: still.anchor.ts,
            end: still.last.ts,
            duration_s,
            position: [still.sum[0] / n, still.sum[1] / n],
            fixes: still.fixes,
        });
    }

    fn close_leg(&mut self, leg: Leg) {
        if leg.distance_m < self.rules.min_trip_m {
            return;
        }
        let duration_s = (leg.end.ts - leg.start.ts).num_seconds();
        let summary = &mut self.report.summary;
        summary.distance_m += leg.distance_m;
        summary.driving_s += duration_s;
        summary.max_speed_mps = summary.max_speed_mps.max(leg.max_speed_mps);
        self.report.trips.push(Trip {
            start: leg.start.ts,
            end: leg.end.ts,
            duration_s,
            start_position: [leg.start.lon, leg.start.lat],
            end_position: [leg.end.lon, leg.end.lat],
            distance_m: leg.distance_m,
            max_speed_mps: leg.max_speed_mps,
            avg_speed_mps: if duration_s > 0 {
                leg.distance_m / duration_s as f64
            } else {
                0.0
            },
            fixes: leg.fixes,
        });
    }
}

fn distance(a: &TrackPoint, b: &TrackPoint) -> f64 {
    haversine_m(Coord { x: a.lon, y: a.lat }, Coord { x: b.lon, y: b.lat })
}

#[cfg(test)]
mod tests;
