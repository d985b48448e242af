//! Test data and the requests that store it: fixes, fence features (a polygon over a box, a
//! square around a point, a circle, a corridor), creating and replacing fences and posting fixes
//! with the status checked, and vector tiles fetched and decoded into layers of features.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use geozero::mvt::{Message, Tile};
use reqwest::Method;
use serde_json::{Value, json};

use super::app::{TestApp, json_with_status};

/// A fix as JSON, at `ts`.
pub fn fix_at(device: &str, ts: DateTime<Utc>, lon: f64, lat: f64) -> Value {
    json!({"device": device, "ts": ts.to_rfc3339(), "lon": lon, "lat": lat})
}

/// A fix as JSON, timestamped `age_s` seconds ago.
pub fn fix(device: &str, age_s: i64, lon: f64, lat: f64) -> Value {
    fix_at(device, Utc::now() - chrono::Duration::seconds(age_s), lon, lat)
}

/// Where fix `i` of a device that keeps crossing `square("a", 10.0025, 10.0, 0.0025)` is, as
/// (lon, lat): inside at even `i`, outside at odd `i`, so every fix is an enter or an exit.
pub fn in_and_out(i: usize) -> (f64, f64) {
    let lon = if i.is_multiple_of(2) { 10.0025 } else { 10.02 };
    (lon, 10.0)
}

/// A polygon fence over the box `[west, south, east, north]`, without properties.
pub fn polygon(id: &str, [west, south, east, north]: [f64; 4]) -> Value {
    let ring = [
        [west, south],
        [east, south],
        [east, north],
        [west, north],
        [west, south],
    ];
    json!({"type": "Feature", "id": id, "geometry": {"type": "Polygon", "coordinates": [ring]}})
}

/// A square fence around (lon, lat), `half` degrees from the centre to each side.
pub fn square(id: &str, lon: f64, lat: f64, half: f64) -> Value {
    let square = polygon(id, [lon - half, lat - half, lon + half, lat + half]);
    named(square, &format!("square {id}"))
}

/// A circle fence of `radius_m` around (lon, lat).
pub fn circle(id: &str, lon: f64, lat: f64, radius_m: f64) -> Value {
    json!({"type": "Feature", "id": id, "geometry": {"type": "Point", "coordinates": [lon, lat]},
           "properties": {"name": format!("circle {id}"), "radius_m": radius_m}})
}

/// A corridor fence: the band `buffer_m` either side of the line through `points`.
pub fn corridor(id: &str, points: &[[f64; 2]], buffer_m: f64) -> Value {
    json!({"type": "Feature", "id": id, "geometry": {"type": "LineString", "coordinates": points},
           "properties": {"buffer_m": buffer_m}})
}

/// `feature` with the `name` property set.
pub fn named(mut feature: Value, name: &str) -> Value {
    feature["properties"]["name"] = json!(name);
    feature
}

/// Creates a fence (expecting 201); the created feature.
pub async fn create_fence(app: &TestApp, feature: &Value) -> Value {
    let reply = app.send_json(Method::POST, "/api/v1/fences", feature).await;
    json_with_status(reply, 201).await
}

/// Replaces the fence of the feature's id (expecting 200); the stored feature.
pub async fn replace_fence(app: &TestApp, feature: &Value) -> Value {
    let id = feature["id"].as_str().expect("the feature has an id");
    let reply = app
        .send_json(Method::PUT, &format!("/api/v1/fences/{id}"), feature)
        .await;
    json_with_status(reply, 200).await
}

/// Posts one fix and checks it was accepted.
pub async fn post_fix(app: &TestApp, device: &str, ts: DateTime<Utc>, lon: f64, lat: f64) {
    let reply = json_with_status(app.post_json(&fix_at(device, ts, lon, lat)).await, 202).await;
    assert_eq!(reply["accepted"], 1, "{reply}");
}

/// Layer name -> features as (id, properties) of a decoded tile.
pub type Decoded = BTreeMap<String, Vec<(u64, BTreeMap<String, String>)>>;

/// GETs a tile and decodes it (`None` unless 200).
pub async fn tile(app: &TestApp, path: &str) -> (u16, Option<Decoded>) {
    let reply = app.get(path).await;
    let status = reply.status().as_u16();
    if status != 200 {
        return (status, None);
    }
    assert_eq!(
        reply.headers()["content-type"],
        "application/vnd.mapbox-vector-tile"
    );
    let bytes = reply.bytes().await.expect("bytes");
    let decoded = Tile::decode(bytes.as_ref()).expect("a valid vector tile");
    let mut layers = BTreeMap::new();
    for layer in decoded.layers {
        assert_eq!(layer.extent, Some(4096));
        let features = layer
            .features
            .iter()
            .map(|feature| {
                let props = feature
                    .tags
                    .chunks(2)
                    .map(|pair| {
                        let value = &layer.values[pair[1] as usize];
                        let text = value
                            .string_value
                            .clone()
                            .or_else(|| value.double_value.map(|v| v.to_string()))
                            .or_else(|| value.int_value.map(|v| v.to_string()))
                            .or_else(|| value.uint_value.map(|v| v.to_string()))
                            .or_else(|| value.sint_value.map(|v| v.to_string()))
                            .or_else(|| value.bool_value.map(|v| v.to_string()))
                            .unwrap_or_default();
                        (layer.keys[pair[0] as usize].clone(), text)
                    })
                    .collect();
                assert!(!feature.geometry.is_empty(), "every feature has a geometry");
                (feature.id.expect("feature ids are set"), props)
            })
            .collect();
        layers.insert(layer.name, features);
    }
    (status, Some(layers))
}

/// The XYZ tile holding a point.
pub fn tile_of(lon: f64, lat: f64, z: u8) -> (u32, u32) {
    let n = f64::from(1u32 << z);
    let x = ((lon + 180.0) / 360.0 * n).floor();
    let lat = lat.to_radians();
    let y = ((1.0 - (lat.tan() + 1.0 / lat.cos()).ln() / std::f64::consts::PI) / 2.0 * n).floor();
    (x as u32, y as u32)
}

/// The `name` (or else `device`) property of every feature of `layer`, in the tile's order.
pub fn names(decoded: Option<&Decoded>, layer: &str) -> Vec<String> {
    decoded
        .and_then(|d| d.get(layer))
        .map(|features| {
            features
                .iter()
                .filter_map(|(_, props)| props.get("name").or_else(|| props.get("device")).cloned())
                .collect()
        })
        .unwrap_or_default()
}

/// The names of the features of `layer` in the tile at (lon, lat, z), sorted; the tile must be
/// 200 or 204.
pub async fn names_at(app: &TestApp, layer: &str, lon: f64, lat: f64, z: u8, query: &str) -> Vec<String> {
    let (x, y) = tile_of(lon, lat, z);
    let (status, decoded) = tile(app, &format!("/tiles/{layer}/{z}/{x}/{y}.mvt{query}")).await;
    assert!(status == 200 || status == 204, "status {status}");
    let mut names = names(decoded.as_ref(), layer);
    names.sort();
    names
}

/// Checks the alerts table after devices `dev-0`, `dev-1`, ... drove `fixes` fixes each, one
/// second apart from `start`, in and out of a fence ([`in_and_out`]): every device has exactly
/// an `enter` at each even fix and an `exit` at each odd one, each once, in order. Returns the
/// ids of every alert, in order.
pub async fn check_crossing_alerts(
    db: &sqlx::PgPool,
    devices: usize,
    fixes: usize,
    start: DateTime<Utc>,
) -> Vec<i64> {
    let rows: Vec<(i64, String, String, DateTime<Utc>)> =
        sqlx::query_as("SELECT id, device, kind, ts FROM alerts ORDER BY id")
            .fetch_all(db)
            .await
            .expect("alerts");
    for d in 0..devices {
        let device = format!("dev-{d}");
        let mine: Vec<(&str, DateTime<Utc>)> = rows
            .iter()
            .filter(|r| r.1 == device)
            .map(|r| (r.2.as_str(), r.3))
            .collect();
        let expected: Vec<(&str, DateTime<Utc>)> = (0..fixes)
            .map(|i| {
                let kind = if i.is_multiple_of(2) { "enter" } else { "exit" };
                (kind, start + chrono::Duration::seconds(i as i64))
            })
            .collect();
        assert_eq!(mine, expected, "{device}: one alert per fix, each once, in order");
    }
    rows.iter().map(|r| r.0).collect()
}
