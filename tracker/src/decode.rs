//! Decoding of `POST /api/v1/positions` bodies: one JSON fix object, a JSON array of them, a
//! GeoJSON Feature or FeatureCollection of Points, or NDJSON (one fix or Feature per line).
//!
//! Syntax errors in a JSON body make the whole request malformed ([`DecodeError`]); a record
//! that is valid JSON but not a usable fix becomes a [`Rejection`] at its index, so the good
//! records of a partly bad batch are still stored. Field checks live in [`crate::fix`].

pub mod time;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Number, Value};

use crate::fix::{RawFix, Rejection};

/// How the body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// `application/json` or `application/geo+json`.
    Json,
    /// `application/x-ndjson`: one record per line, blank lines ignored.
    Ndjson,
}

/// The request as a whole cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("the body is not valid JSON: {0}")]
    Malformed(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("the batch holds {count} fixes; the limit is {max} per request")]
    TooManyFixes { count: usize, max: usize },
}

/// One entry per record of the body, in body order: the unchecked fix or why it is unusable.
pub type Records = Vec<Result<RawFix, Rejection>>;

/// Splits a body into records and decodes each one.
pub fn positions(body: &[u8], format: BodyFormat, max_fixes: usize) -> Result<Records, DecodeError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| DecodeError::Malformed(format!("the body is not UTF-8: {e}")))?;
    let raw: Vec<Result<&RawValue, Rejection>> = match format {
        BodyFormat::Json => json_records(text)?.into_iter().map(Ok).collect(),
        BodyFormat::Ndjson => ndjson_records(text),
    };
    if raw.len() > max_fixes {
        return Err(DecodeError::TooManyFixes {
            count: raw.len(),
            max: max_fixes,
        });
    }
    Ok(raw.into_iter().map(|r| r.and_then(record)).collect())
}

fn json_records(text: &str) -> Result<Vec<&RawValue>, DecodeError> {
    let top: &RawValue = serde_json::from_str(text).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    match top.get().as_bytes().first() {
        Some(b'[') => serde_json::from_str(top.get()).map_err(|e| DecodeError::Malformed(e.to_string())),
        Some(b'{') => {
            #[derive(Deserialize)]
            struct Envelope<'a> {
                #[serde(rename = "type")]
                kind: Option<Value>,
                #[serde(borrow)]
                features: Option<&'a RawValue>,
            }
            match serde_json::from_str::<Envelope>(top.get()) {
                Ok(Envelope {
                    kind: Some(Value::String(kind)),
                    features,
                }) if kind == "FeatureCollection" => {
                    let needs_array =
                        || DecodeError::Unsupported("a FeatureCollection needs a `features` array".into());
                    let features = features.ok_or_else(needs_array)?;
                    serde_json::from_str(features.get()).map_err(|_| needs_array())
                }
                _ => Ok(vec![top]),
            }
        }
        _ => Err(DecodeError::Unsupported(
            "expected a fix object, an array of fixes, a GeoJSON Feature or FeatureCollection".into(),
        )),
    }
}

fn ndjson_records(text: &str) -> Vec<Result<&RawValue, Rejection>> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| {
            serde_json::from_str::<&RawValue>(line)
                .map_err(|e| Rejection::new("invalid_json", format!("line {} is not valid JSON: {e}", n + 1)))
        })
        .collect()
}

/// A record: either a plain fix object or a GeoJSON Feature whose `properties` hold the fields
/// (one struct for both, so a plain fix is parsed in a single pass with no buffering).
#[derive(Deserialize, Default)]
struct Fields {
    #[serde(rename = "type")]
    kind: Option<String>,
    geometry: Option<Geometry>,
    properties: Option<Box<Fields>>,
    device: Option<DeviceId>,
    ts: Option<Timestamp>,
    lon: Option<f64>,
    lat: Option<f64>,
    speed_mps: Option<f64>,
    heading_deg: Option<f64>,
    accuracy_m: Option<f64>,
    altitude_m: Option<f64>,
    battery: Option<f64>,
    attrs: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum DeviceId {
    Text(String),
    Number(Number),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Timestamp {
    Epoch(Number),
    Text(String),
}

#[derive(Deserialize)]
struct Geometry {
    #[serde(rename = "type")]
    kind: String,
    coordinates: Vec<f64>,
}

fn record(raw: &RawValue) -> Result<RawFix, Rejection> {
    let record: Fields = serde_json::from_str(raw.get())
        .map_err(|e| Rejection::new("invalid_fix", format!("not a usable fix: {e}")))?;
    if record.kind.as_deref() != Some("Feature") {
        return fields_to_raw(record, None, None);
    }
    let geometry = record
        .geometry
        .ok_or_else(|| Rejection::new("missing_geometry", "a Feature needs a Point geometry"))?;
    if geometry.kind != "Point" || !(2..=3).contains(&geometry.coordinates.len()) {
        return Err(Rejection::new(
            "unsupported_geometry",
            format!(
                "a fix must be a Point with [lon, lat] or [lon, lat, alt]; got a {}",
                geometry.kind
            ),
        ));
    }
    let altitude = geometry.coordinates.get(2).copied();
    let lon_lat = (geometry.coordinates[0], geometry.coordinates[1]);
    fields_to_raw(*record.properties.unwrap_or_default(), Some(lon_lat), altitude)
}

fn fields_to_raw(f: Fields, lon_lat: Option<(f64, f64)>, altitude: Option<f64>) -> Result<RawFix, Rejection> {
    let ts: Option<DateTime<Utc>> = match f.ts {
        None => None,
        Some(Timestamp::Epoch(n)) => Some(time::from_epoch_number(&n)?),
        Some(Timestamp::Text(s)) => Some(time::from_rfc3339(&s)?),
    };
    let device = f.device.map(|d| match d {
        DeviceId::Text(s) => s,
        DeviceId::Number(n) => n.to_string(),
    });
    Ok(RawFix {
        device,
        ts,
        lon: lon_lat.map(|p| p.0).or(f.lon),
        lat: lon_lat.map(|p| p.1).or(f.lat),
        speed_mps: f.speed_mps,
        heading_deg: f.heading_deg,
        accuracy_m: f.accuracy_m,
        altitude_m: f.altitude_m.or(altitude),
        battery: f.battery,
        attrs: f.attrs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(body: &str) -> Result<RawFix, Rejection> {
        let mut records = positions(body.as_bytes(), BodyFormat::Json, 10).expect("decodes");
        assert_eq!(records.len(), 1);
        records.remove(0)
    }

    #[test]
    fn a_plain_object_and_a_feature_decode_to_the_same_fix() {
        let plain =
            one(r#"{"device":"a","ts":1700000000,"lon":1.5,"lat":2.5,"speed_mps":3}"#).expect("plain");
        let feature = one(
            r#"{"type":"Feature","geometry":{"type":"Point","coordinates":[1.5,2.5]},
                "properties":{"device":"a","ts":"2023-11-14T22:13:20Z","speed_mps":3}}"#,
        )
        .expect("feature");
        assert_eq!(plain.ts, feature.ts);
        assert_eq!(
            (plain.lon, plain.lat, plain.speed_mps),
            (feature.lon, feature.lat, feature.speed_mps)
        );
        assert_eq!(plain.device.as_deref(), Some("a"));
    }

    #[test]
    fn the_third_coordinate_is_altitude() {
        let fix =
            one(r#"{"type":"Feature","geometry":{"type":"Point","coordinates":[1,2,345]},"properties":{}}"#)
                .expect("feature");
        assert_eq!(fix.altitude_m, Some(345.0));
    }

    #[test]
    fn numeric_device_ids_are_kept_as_text() {
        assert_eq!(
            one(r#"{"device":123456,"lon":0,"lat":0}"#)
                .expect("fix")
                .device
                .as_deref(),
            Some("123456")
        );
    }

    #[test]
    fn a_wrongly_typed_field_rejects_only_its_record() {
        let records = positions(br#"[{"lat":"x"},{"device":"a"}]"#, BodyFormat::Json, 10).expect("decodes");
        assert_eq!(records[0].as_ref().expect_err("bad").code, "invalid_fix");
        assert!(records[1].is_ok());
    }

    #[test]
    fn non_point_features_are_rejected() {
        let err = one(r#"{"type":"Feature","geometry":{"type":"LineString","coordinates":[[0,0],[1,1]]}}"#)
            .expect_err("line");
        assert_eq!(err.code, "invalid_fix");
        let err =
            one(r#"{"type":"Feature","geometry":{"type":"Point","coordinates":[0]}}"#).expect_err("short");
        assert_eq!(err.code, "unsupported_geometry");
    }

    #[test]
    fn ndjson_skips_blank_lines_and_rejects_bad_lines_alone() {
        let body = b"{\"device\":\"a\"}\n\n   \nnot json\n{\"device\":\"b\"}\n";
        let records = positions(body, BodyFormat::Ndjson, 10).expect("decodes");
        assert_eq!(records.len(), 3);
        let bad = records[1].as_ref().expect_err("line 4");
        assert!(bad.message.starts_with("line 4 "), "{}", bad.message);
    }

    #[test]
    fn whole_body_errors() {
        assert!(matches!(
            positions(b"{", BodyFormat::Json, 10),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            positions(b"42", BodyFormat::Json, 10),
            Err(DecodeError::Unsupported(_))
        ));
        assert!(matches!(
            positions(br#"{"type":"FeatureCollection"}"#, BodyFormat::Json, 10),
            Err(DecodeError::Unsupported(_))
        ));
        assert!(matches!(
            positions(b"[{},{},{}]", BodyFormat::Json, 2),
            Err(DecodeError::TooManyFixes { count: 3, max: 2 })
        ));
        assert!(matches!(
            positions(&[0xff, 0xfe], BodyFormat::Json, 2),
            Err(DecodeError::Malformed(_))
        ));
    }
}
