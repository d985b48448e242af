//! Overland (iOS) and Overland for Android batches (`tracker/PROTOCOLS.md` section 4):
//! `{"locations": [Feature, …], "current": …, "trip": …}`.
//!
//! Each GeoJSON Point Feature of `locations` is one fix; records that are not fixes (visits
//! and lifecycle actions, finished trips, stats records without geometry) are skipped and
//! counted. `current` and `trip` are never read: the same points arrive later in a batch.
//! The app re-sends a whole batch until it gets `{"result":"ok"}`, so a bad record becomes a
//! [`Rejection`] of its own and never fails the batch.

use serde_json::{Map, Value};

use super::{into_attrs, known, known_accuracy, number};
use crate::decode::time;
use crate::fix::{RawFix, Rejection};

/// The records of one Overland request, in body order.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// One entry per Point Feature: the unchecked fix, or why the record cannot be one.
    pub fixes: Vec<Result<RawFix, Rejection>>,
    /// Records that are not fixes (`properties.action`, `properties.type == "trip"`, no
    /// geometry); answered as success, stored nowhere.
    pub skipped: usize,
}

/// Why an Overland request body is unusable as a whole. The handler shows the message to the
/// app's user (`{"error": …}`), so it says what is wrong with the body.
// serde's error is part of the message (as it always was) rather than a `#[source]`, so that a
// reporter printing the error chain does not repeat it.
#[derive(Debug, thiserror::Error)]
pub enum OverlandError {
    /// The body does not parse as JSON.
    #[error("the body is not JSON: {0}")]
    NotJson(serde_json::Error),
    /// The body is JSON but has no `locations` array (not an object, or a wrong envelope).
    #[error("the body has no `locations` array")]
    NoLocations,
}

/// Properties that map to [`RawFix`] columns rather than attrs.
const COLUMNS: [&str; 7] = [
    "timestamp",
    "altitude",
    "speed",
    "course",
    "horizontal_accuracy",
    "battery_level",
    "device_id",
];

/// Accuracy properties where `-1` means "unknown" and which are left out of attrs then.
const ACCURACY_ATTRS: [&str; 3] = ["vertical_accuracy", "speed_accuracy", "course_accuracy"];

/// Decodes an Overland request body. `fallback_device` names the device of records whose
/// `properties.device_id` is empty or missing (Overland's default): the handler passes the
/// `?device=` query parameter or the access token's name.
///
/// `Err` means the envelope itself is unusable (not JSON, not an object, no `locations`
/// array); the handler then answers `{"error": …}` so that the app shows the reason.
///
/// Per record: `timestamp` is ISO 8601 (`Z`, `±hh:mm` or `±hhmm`, optional milliseconds);
/// `speed` (m/s), `course`, `horizontal_accuracy` and `battery_level` (0..1, stored as percent)
/// use `-1` for unknown; `altitude` is metres (a third coordinate is used when it is absent);
/// every other property (`motion`, `battery_state` as text or boolean, `wifi`, `unique_id`,
/// `trip_id`, `vertical_accuracy`, stats fields, ...) becomes an attribute, except `null`
/// values and `-1` accuracies.
pub fn decode(body: &[u8], fallback_device: Option<&str>) -> Result<Batch, OverlandError> {
    let envelope: Value = serde_json::from_slice(body).map_err(OverlandError::NotJson)?;
    let locations = envelope
        .get("locations")
        .and_then(Value::as_array)
        .ok_or(OverlandError::NoLocations)?;
    let fallback_device = fallback_device.filter(|d| !d.trim().is_empty());
    let mut batch = Batch::default();
    for record in locations {
        match classify(record) {
            Record::Skipped => batch.skipped += 1,
            Record::Point(feature) => batch
                .fixes
                .push(feature.and_then(|f| f.into_raw(fallback_device))),
        }
    }
    Ok(batch)
}

enum Record<'a> {
    Skipped,
    Point(Result<Point<'a>, Rejection>),
}

struct Point<'a> {
    lon: f64,
    lat: f64,
    third: Option<f64>,
    properties: Option<&'a Map<String, Value>>,
}

fn classify(record: &Value) -> Record<'_> {
    let Some(record) = record.as_object() else {
        return Record::Point(Err(Rejection::new(
            "invalid_record",
            "a `locations` entry is not a JSON object",
        )));
    };
    let properties = record.get("properties").and_then(Value::as_object);
    let is_action = properties.is_some_and(|p| p.get("action").is_some_and(|a| !a.is_null()));
    let is_trip = properties.and_then(|p| p.get("type")).and_then(Value::as_str) == Some("trip");
    let geometry = record.get("geometry").filter(|g| !g.is_null());
    let Some(geometry) = geometry.filter(|_| !is_action && !is_trip) else {
        return Record::Skipped;
    };
    Record::Point(point(geometry).map(|(lon, lat, third)| Point {
        lon,
        lat,
        third,
        properties,
    }))
}

fn point(geometry: &Value) -> Result<(f64, f64, Option<f64>), Rejection> {
    let kind = geometry.get("type").and_then(Value::as_str);
    let coordinates: Option<Vec<f64>> = geometry
        .get("coordinates")
        .and_then(Value::as_array)
        .and_then(|c| c.iter().map(Value::as_f64).collect());
    match (kind, coordinates.as_deref()) {
        (Some("Point"), Some([lon, lat])) => Ok((*lon, *lat, None)),
        (Some("Point"), Some([lon, lat, alt])) => Ok((*lon, *lat, Some(*alt))),
        _ => Err(Rejection::new(
            "unsupported_geometry",
            format!("a location must be a GeoJSON Point with [lon, lat]; got {geometry}"),
        )),
    }
}

impl Point<'_> {
    fn into_raw(self, fallback_device: Option<&str>) -> Result<RawFix, Rejection> {
        let empty = Map::new();
        let properties = self.properties.unwrap_or(&empty);
        let device = properties
            .get("device_id")
            .and_then(Value::as_str)
            .filter(|d| !d.trim().is_empty())
            .or(fallback_device)
            .ok_or_else(|| {
                Rejection::new(
                    "missing_device",
                    "the location has no `device_id`: set a Device ID in Overland's settings or add \
                     `?device=<name>` to the receiver URL",
                )
            })?;
        let ts = match properties.get("timestamp") {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => Some(
                time::parse_flexible(text)
                    .map_err(|r| Rejection::new("invalid_ts", format!("`timestamp`: {}", r.message)))?,
            ),
            Some(other) => {
                return Err(Rejection::new(
                    "invalid_ts",
                    format!("`timestamp` {other} is not an ISO 8601 time"),
                ));
            }
        };
        let field = |key: &str| numeric(properties, key);
        let mut attrs = Map::new();
        for (key, value) in properties {
            let unknown_accuracy =
                ACCURACY_ATTRS.contains(&key.as_str()) && value.as_f64().is_some_and(|v| v < 0.0);
            if !value.is_null() && !unknown_accuracy && !COLUMNS.contains(&key.as_str()) {
                attrs.insert(key.clone(), value.clone());
            }
        }
        Ok(RawFix {
            device: Some(device.to_owned()),
            ts,
            lon: Some(self.lon),
            lat: Some(self.lat),
            speed_mps: known(field("speed")?),
            heading_deg: known(field("course")?),
            accuracy_m: known_accuracy(field("horizontal_accuracy")?),
            altitude_m: field("altitude")?.or(self.third),
            battery: known(field("battery_level")?).map(|level| level * 100.0),
            attrs: into_attrs(attrs),
        })
    }
}

/// A numeric property: a JSON number or numeric text; absent or `null` is `None`.
fn numeric(properties: &Map<String, Value>, key: &str) -> Result<Option<f64>, Rejection> {
    match properties.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => text
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| Rejection::new("invalid_field", format!("`{key}` {text:?} is not a number"))),
        value @ Some(_) => number(value).map(Some).ok_or_else(|| {
            Rejection::new(
                "invalid_field",
                format!(
                    "`{key}` {} is not a number",
                    value.map_or_else(String::new, Value::to_string)
                ),
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};
    use serde_json::json;

    fn ts_of(fix: &Result<RawFix, Rejection>) -> Option<DateTime<Utc>> {
        fix.as_ref().ok().and_then(|f| f.ts)
    }

    fn feature(properties: &Value) -> Value {
        json!({"type": "Feature", "geometry": {"type": "Point", "coordinates": [-122.621, 45.512]},
               "properties": properties})
    }

    fn batch(locations: &[Value], fallback: Option<&str>) -> Batch {
        let body = json!({ "locations": locations });
        decode(body.to_string().as_bytes(), fallback).expect("envelope")
    }

    #[test]
    fn offsets_with_and_without_colon_and_milliseconds() {
        let expected = DateTime::parse_from_rfc3339("2015-10-01T15:00:00Z").expect("ts");
        for ts in [
            "2015-10-01T08:00:00-0700",
            "2015-10-01T08:00:00-07:00",
            "2015-10-01T15:00:00Z",
            "2015-10-01T15:00:00.000Z",
        ] {
            let b = batch(&[feature(&json!({"timestamp": ts, "device_id": "a"}))], None);
            assert_eq!(ts_of(&b.fixes[0]), Some(expected.with_timezone(&Utc)), "{ts}");
        }
        let b = batch(&[feature(&json!({"timestamp": "08:00", "device_id": "a"}))], None);
        assert_eq!(b.fixes[0].as_ref().expect_err("bad ts").code, "invalid_ts");
    }

    #[test]
    fn skipped_records_are_counted_not_returned() {
        let b = batch(
            &[
                feature(&json!({"action": "visit", "arrival_date": "2015-10-01T08:00:00-0700"})),
                feature(&json!({"type": "trip", "mode": "car"})),
                json!({"type": "Feature", "properties": {"action": "will_terminate"}}),
                json!({"type": "Feature", "geometry": null, "properties": {"pauses": false}}),
                feature(&json!({"device_id": "a"})),
            ],
            None,
        );
        assert_eq!(b.skipped, 4);
        assert_eq!(b.fixes.len(), 1);
    }

    #[test]
    fn device_falls_back_and_is_required() {
        let b = batch(
            &[
                feature(&json!({"device_id": ""})),
                feature(&json!({})),
                feature(&json!({"device_id": "mine"})),
            ],
            Some("from-url"),
        );
        let devices: Vec<_> = b
            .fixes
            .iter()
            .map(|f| f.as_ref().ok().and_then(|f| f.device.clone()))
            .collect();
        assert_eq!(
            devices,
            [
                Some("from-url".into()),
                Some("from-url".into()),
                Some("mine".into())
            ]
        );
        let b = batch(&[feature(&json!({"device_id": ""}))], Some(" "));
        assert_eq!(b.fixes[0].as_ref().expect_err("no device").code, "missing_device");
    }

    #[test]
    fn units_unknowns_and_attrs() {
        let b = batch(
            &[feature(&json!({
                "device_id": "a", "speed": -1, "course": -1, "horizontal_accuracy": -1,
                "vertical_accuracy": -1, "speed_accuracy": 0.5, "battery_level": -1,
                "battery_state": "unknown", "motion": [], "wifi": "", "altitude": 0
            }))],
            None,
        );
        let fix = b.fixes[0].as_ref().expect("fix");
        assert_eq!(
            (
                fix.speed_mps,
                fix.heading_deg,
                fix.accuracy_m,
                fix.battery,
                fix.altitude_m
            ),
            (None, None, None, None, Some(0.0))
        );
        let attrs = fix.attrs.as_ref().expect("attrs");
        assert!(!attrs.contains_key("vertical_accuracy"));
        assert_eq!(attrs.get("speed_accuracy"), Some(&json!(0.5)));
        assert_eq!(attrs.get("wifi"), Some(&json!("")));
        assert!(!attrs.contains_key("speed") && !attrs.contains_key("device_id"));

        let b = batch(
            &[feature(
                &json!({"device_id": "a", "speed": "4.5", "battery_level": 0.5}),
            )],
            None,
        );
        let fix = b.fixes[0].as_ref().expect("fix");
        assert_eq!((fix.speed_mps, fix.battery), (Some(4.5), Some(50.0)));
        let b = batch(&[feature(&json!({"device_id": "a", "speed": "fast"}))], None);
        assert_eq!(b.fixes[0].as_ref().expect_err("speed").code, "invalid_field");
    }

    #[test]
    fn geometry_problems_reject_only_their_record() {
        let b = batch(
            &[
                json!({"type": "Feature", "geometry": {"type": "LineString", "coordinates": [[0, 0], [1, 1]]},
                       "properties": {"device_id": "a"}}),
                json!({"type": "Feature", "geometry": {"type": "Point", "coordinates": [1, 2, 30]},
                       "properties": {"device_id": "a"}}),
                json!("text"),
            ],
            None,
        );
        assert_eq!(
            b.fixes[0].as_ref().expect_err("line").code,
            "unsupported_geometry"
        );
        assert_eq!(b.fixes[1].as_ref().expect("3d").altitude_m, Some(30.0));
        assert_eq!(b.fixes[2].as_ref().expect_err("text").code, "invalid_record");
    }

    #[test]
    fn envelope_errors() {
        assert!(matches!(
            decode(b"not json", None),
            Err(OverlandError::NotJson(_))
        ));
        assert!(matches!(decode(b"[]", None), Err(OverlandError::NoLocations)));
        assert!(matches!(
            decode(br#"{"locations": {}}"#, None),
            Err(OverlandError::NoLocations)
        ));
        let b = decode(br#"{"locations": []}"#, None).expect("empty batch");
        assert_eq!((b.fixes.len(), b.skipped), (0, 0));
    }
}
