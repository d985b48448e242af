//! Fences as the API speaks them: GeoJSON Features. A Polygon or MultiPolygon is a polygon
//! fence; a Point with `properties.radius_m` a circle; a LineString with `properties.buffer_m`
//! a corridor. Options live in `properties` too (`name`, `hysteresis_m`, `dwell_s`,
//! `speed_limit_mps`, `applies_to`: device ids, `prefix*` and `group:ID` entries, `webhooks`: URLs, checked by
//! the caller, which knows its webhook policy); every other property is kept as given. The
//! Feature's `id` is the fence id. Converting back gives the same Feature, so a client can GET,
//! edit and PUT.

use serde_json::{Map, Value, json};

use crate::{AppliesTo, Fence, FenceError, FenceKind};

/// Properties that configure the fence and are not kept as free-form properties.
const OPTION_KEYS: [&str; 8] = [
    "name",
    "radius_m",
    "buffer_m",
    "hysteresis_m",
    "dwell_s",
    "speed_limit_mps",
    "applies_to",
    "webhooks",
];

/// Reads a Feature into a fence. `fallback_id` is used when the Feature has no `id`.
pub fn to_fence(feature: &Value, fallback_id: impl FnOnce() -> String) -> Result<Fence, FenceError> {
    let object = feature
        .as_object()
        .ok_or(FenceError::Feature("a fence must be a GeoJSON Feature object"))?;
    if object.get("type").and_then(Value::as_str) != Some("Feature") {
        return Err(FenceError::Feature(
            "a fence must be a GeoJSON Feature (\"type\": \"Feature\")",
        ));
    }
    let empty = Map::new();
    let props = match object.get("properties") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(map)) => map,
        Some(_) => return Err(FenceError::Feature("`properties` must be an object")),
    };
    let geometry = object
        .get("geometry")
        .and_then(Value::as_object)
        .ok_or(FenceError::Feature("a fence needs a `geometry`"))?;
    let kind = kind(geometry, props)?;
    let id = match object.get("id") {
        None | Some(Value::Null) => fallback_id(),
        Some(Value::String(id)) => id.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => return Err(FenceError::Feature("`id` must be a string or a number")),
    };
    let name = match props.get("name") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(name)) => name.clone(),
        Some(_) => return Err(FenceError::Feature("`properties.name` must be a string")),
    };
    let dwell_s = number(props, "dwell_s")?
        .map(|d| {
            if d.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&d) {
                Ok(d as u32)
            } else {
                Err(FenceError::BadDwell(d))
            }
        })
        .transpose()?;
    Ok(Fence {
        id,
        name,
        kind,
        hysteresis_m: number(props, "hysteresis_m")?.unwrap_or(0.0),
        dwell_s,
        speed_limit_mps: number(props, "speed_limit_mps")?,
        applies_to: applies_to(props.get("applies_to"))?,
        webhooks: webhooks(props.get("webhooks"))?,
        properties: props
            .iter()
            .filter(|(k, _)| !OPTION_KEYS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    })
}

/// The fence kind of a Feature's geometry (circles and corridors take their size from `props`).
fn kind(geometry: &Map<String, Value>, props: &Map<String, Value>) -> Result<FenceKind, FenceError> {
    let coordinates = geometry
        .get("coordinates")
        .ok_or(FenceError::Feature("the geometry has no `coordinates`"))?;
    match geometry.get("type").and_then(Value::as_str) {
        Some("Polygon") => Ok(FenceKind::Polygon {
            rings: parse(coordinates, "Polygon")?,
        }),
        Some("MultiPolygon") => Ok(FenceKind::MultiPolygon {
            polygons: parse(coordinates, "MultiPolygon")?,
        }),
        Some("Point") => Ok(FenceKind::Circle {
            centre: parse(coordinates, "Point")?,
            radius_m: number(props, "radius_m")?.ok_or(FenceError::Feature(
                "a Point fence (circle) needs `properties.radius_m`",
            ))?,
        }),
        Some("LineString") => Ok(FenceKind::Corridor {
            line: parse(coordinates, "LineString")?,
            buffer_m: number(props, "buffer_m")?.ok_or(FenceError::Feature(
                "a LineString fence (corridor) needs `properties.buffer_m`",
            ))?,
        }),
        Some(other) => Err(FenceError::UnsupportedGeometry(other.to_owned())),
        None => Err(FenceError::Feature("the geometry has no `type`")),
    }
}

fn parse<T: serde::de::DeserializeOwned>(coordinates: &Value, kind: &'static str) -> Result<T, FenceError> {
    T::deserialize(coordinates).map_err(|e| FenceError::BadCoordinates {
        kind,
        reason: e.to_string(),
    })
}

fn number(props: &Map<String, Value>, key: &'static str) -> Result<Option<f64>, FenceError> {
    match props.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value.as_f64().map(Some).ok_or(FenceError::NotANumber(key)),
    }
}

/// `webhooks`: absent or a list of URLs the fence's alerts are also posted to (whether each
/// may be delivered to is the caller's policy).
fn webhooks(value: Option<&Value>) -> Result<Vec<String>, FenceError> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(entries)) => entries
            .iter()
            .map(|entry| {
                entry
                    .as_str()
                    .map(str::to_owned)
                    .ok_or(FenceError::Feature("`properties.webhooks` entries must be URLs"))
            })
            .collect(),
        Some(_) => Err(FenceError::Feature(
            "`properties.webhooks` must be a list of URLs",
        )),
    }
}

/// `applies_to`: absent (every device), or what [`AppliesTo::from_entries`] reads.
fn applies_to(value: Option<&Value>) -> Result<AppliesTo, FenceError> {
    match value {
        None | Some(Value::Null) => Ok(AppliesTo::All),
        Some(entries) => AppliesTo::from_entries(entries).map_err(FenceError::AppliesTo),
    }
}

/// The fence as a Feature, the inverse of [`to_fence`].
pub fn to_feature(fence: &Fence) -> Value {
    let mut props = fence.properties.clone();
    props.insert("name".into(), json!(fence.name));
    props.insert("kind".into(), json!(kind_name(&fence.kind)));
    let geometry = match &fence.kind {
        FenceKind::Polygon { rings } => json!({"type": "Polygon", "coordinates": rings}),
        FenceKind::MultiPolygon { polygons } => json!({"type": "MultiPolygon", "coordinates": polygons}),
        FenceKind::Circle { centre, radius_m } => {
            props.insert("radius_m".into(), json!(radius_m));
            json!({"type": "Point", "coordinates": centre})
        }
        FenceKind::Corridor { line, buffer_m } => {
            props.insert("buffer_m".into(), json!(buffer_m));
            json!({"type": "LineString", "coordinates": line})
        }
    };
    props.insert("hysteresis_m".into(), json!(fence.hysteresis_m));
    props.insert("dwell_s".into(), json!(fence.dwell_s));
    props.insert("speed_limit_mps".into(), json!(fence.speed_limit_mps));
    let applies = fence.applies_to.to_entries();
    props.insert("applies_to".into(), applies);
    if !fence.webhooks.is_empty() {
        props.insert("webhooks".into(), json!(fence.webhooks));
    }
    json!({"type": "Feature", "id": fence.id, "geometry": geometry, "properties": props})
}

/// `polygon`, `multipolygon`, `circle` or `corridor`.
pub fn kind_name(kind: &FenceKind) -> &'static str {
    match kind {
        FenceKind::Polygon { .. } => "polygon",
        FenceKind::MultiPolygon { .. } => "multipolygon",
        FenceKind::Circle { .. } => "circle",
        FenceKind::Corridor { .. } => "corridor",
    }
}

/// Reads a Feature as [`to_fence`] does, dropping `kind`, which [`to_feature`] derives.
pub fn fence_from_feature(
    feature: &Value,
    fallback_id: impl FnOnce() -> String,
) -> Result<Fence, FenceError> {
    let mut fence = to_fence(feature, fallback_id)?;
    fence.properties.remove("kind");
    Ok(fence)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_a_feature() {
        let features = [
            json!({"type": "Feature", "id": "p", "geometry": {"type": "Polygon", "coordinates": [[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]]},
                   "properties": {"name": "square", "colour": "red", "dwell_s": 60, "applies_to": ["a", "fleet-*", "group:night"]}}),
            json!({"type": "Feature", "id": "c", "geometry": {"type": "Point", "coordinates": [2.0, 3.0]},
                   "properties": {"radius_m": 150.0, "hysteresis_m": 5.0}}),
            json!({"type": "Feature", "id": "r", "geometry": {"type": "LineString", "coordinates": [[0.0, 0.0], [1.0, 1.0]]},
                   "properties": {"buffer_m": 20.0, "speed_limit_mps": 13.9}}),
        ];
        for feature in features {
            let fence = fence_from_feature(&feature, || unreachable!()).expect("fence");
            let back = to_feature(&fence);
            let again = fence_from_feature(&back, || unreachable!()).expect("round trip");
            assert_eq!(fence, again, "{back}");
        }
    }

    #[test]
    fn bad_features_say_what_is_wrong() {
        let cases = [
            (
                json!({"type": "Feature", "geometry": {"type": "Point", "coordinates": [0, 0]}}),
                "radius_m",
            ),
            (
                json!({"type": "Feature", "geometry": {"type": "LineString", "coordinates": [[0, 0], [1, 1]]}}),
                "buffer_m",
            ),
            (
                json!({"type": "Feature", "geometry": {"type": "MultiPoint", "coordinates": [[0, 0]]}}),
                "MultiPoint",
            ),
            (
                json!({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[0, 0]]}}),
                "coordinates",
            ),
            (json!({"type": "Feature"}), "geometry"),
            (json!({"type": "FeatureCollection"}), "Feature"),
            (
                json!({"type": "Feature", "geometry": {"type": "Point", "coordinates": [0, 0]},
                    "properties": {"radius_m": 5, "dwell_s": 1.5}}),
                "dwell_s",
            ),
        ];
        for (feature, needle) in cases {
            let error = to_fence(&feature, || "x".into()).expect_err(needle).to_string();
            assert!(error.contains(needle), "{needle}: {error}");
        }
    }
}
