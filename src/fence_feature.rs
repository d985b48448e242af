//! Fences as the API speaks them: GeoJSON Features. A Polygon or MultiPolygon is a polygon
//! fence; a Point with `properties.radius_m` a circle; a LineString with `properties.buffer_m`
//! a corridor. Options live in `properties` too (`name`, `hysteresis_m`, `dwell_s`,
//! `speed_limit_mps`, `applies_to`: device ids, `prefix*` entries, `webhooks`: URLs); every other property is
//! kept as given. The Feature's `id` is the fence id. Converting back gives the same Feature,
//! so a client can GET, edit and PUT.

use fences::{AppliesTo, Fence, FenceKind, FenceLimits, PreparedFence};
use serde_json::{Map, Value, json};

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
pub fn to_fence(feature: &Value, fallback_id: impl FnOnce() -> String) -> Result<Fence, String> {
    let object = feature
        .as_object()
        .ok_or("a fence must be a GeoJSON Feature object")?;
    if object.get("type").and_then(Value::as_str) != Some("Feature") {
        return Err("a fence must be a GeoJSON Feature (\"type\": \"Feature\")".into());
    }
    let empty = Map::new();
    let props = match object.get("properties") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(map)) => map,
        Some(_) => return Err("`properties` must be an object".into()),
    };
    let geometry = object
        .get("geometry")
        .and_then(Value::as_object)
        .ok_or("a fence needs a `geometry`")?;
    let coordinates = geometry
        .get("coordinates")
        .ok_or("the geometry has no `coordinates`")?;
    let kind = match geometry.get("type").and_then(Value::as_str) {
        Some("Polygon") => FenceKind::Polygon {
            rings: parse(coordinates, "Polygon")?,
        },
        Some("MultiPolygon") => FenceKind::MultiPolygon {
            polygons: parse(coordinates, "MultiPolygon")?,
        },
        Some("Point") => FenceKind::Circle {
            centre: parse(coordinates, "Point")?,
            radius_m: number(props, "radius_m")?
                .ok_or("a Point fence (circle) needs `properties.radius_m`")?,
        },
        Some("LineString") => FenceKind::Corridor {
            line: parse(coordinates, "LineString")?,
            buffer_m: number(props, "buffer_m")?
                .ok_or("a LineString fence (corridor) needs `properties.buffer_m`")?,
        },
        Some(other) => {
            return Err(format!(
                "a fence geometry must be Polygon, MultiPolygon, Point or LineString, not {other}"
            ));
        }
        None => return Err("the geometry has no `type`".into()),
    };
    let id = match object.get("id") {
        None | Some(Value::Null) => fallback_id(),
        Some(Value::String(id)) => id.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => return Err("`id` must be a string or a number".into()),
    };
    let name = match props.get("name") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(name)) => name.clone(),
        Some(_) => return Err("`properties.name` must be a string".into()),
    };
    let dwell_s = number(props, "dwell_s")?
        .map(|d| {
            if d.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&d) {
                Ok(d as u32)
            } else {
                Err(format!(
                    "`properties.dwell_s` must be a whole number of seconds, not {d}"
                ))
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

fn parse<T: serde::de::DeserializeOwned>(coordinates: &Value, kind: &str) -> Result<T, String> {
    serde_json::from_value(coordinates.clone())
        .map_err(|e| format!("the {kind} coordinates are not valid: {e}"))
}

fn number(props: &Map<String, Value>, key: &str) -> Result<Option<f64>, String> {
    match props.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_f64()
            .map(Some)
            .ok_or_else(|| format!("`properties.{key}` must be a number")),
    }
}

/// `webhooks`: absent or a list of `http://` URLs the fence's alerts are also posted to.
fn webhooks(value: Option<&Value>) -> Result<Vec<String>, String> {
    let entries = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(entries)) => entries,
        Some(_) => return Err("`properties.webhooks` must be a list of URLs".into()),
    };
    entries
        .iter()
        .map(|entry| {
            let url = entry
                .as_str()
                .ok_or("`properties.webhooks` entries must be URLs")?;
            crate::webhooks::check_url(url).map(|()| url.to_owned())
        })
        .collect()
}

/// `applies_to`: absent, `"all"`, or a list of device ids where `prefix*` is a prefix.
fn applies_to(value: Option<&Value>) -> Result<AppliesTo, String> {
    let entries =
        match value {
            None | Some(Value::Null) => return Ok(AppliesTo::All),
            Some(Value::String(all)) if all == "all" => return Ok(AppliesTo::All),
            Some(Value::Array(entries)) => entries,
            Some(_) => return Err(
                "`properties.applies_to` must be \"all\" or a list of device ids (`prefix*` for prefixes)"
                    .into(),
            ),
        };
    let mut ids = std::collections::BTreeSet::new();
    let mut prefixes = Vec::new();
    for entry in entries {
        let entry = entry
            .as_str()
            .ok_or("`properties.applies_to` entries must be strings")?;
        match entry.strip_suffix('*') {
            Some(prefix) => prefixes.push(prefix.to_owned()),
            None => {
                ids.insert(entry.to_owned());
            }
        }
    }
    Ok(AppliesTo::Devices { ids, prefixes })
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
    let applies: Value = match &fence.applies_to {
        AppliesTo::All => json!("all"),
        AppliesTo::Devices { ids, prefixes } => {
            json!(
                ids.iter()
                    .cloned()
                    .chain(prefixes.iter().map(|p| format!("{p}*")))
                    .collect::<Vec<_>>()
            )
        }
    };
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
pub fn fence_from_feature(feature: &Value, fallback_id: impl FnOnce() -> String) -> Result<Fence, String> {
    let mut fence = to_fence(feature, fallback_id)?;
    fence.properties.remove("kind");
    Ok(fence)
}

/// Why a FeatureCollection cannot be imported.
#[derive(Debug)]
pub enum CollectionError {
    NotACollection,
    /// `report`: `{index, id, reason}` for every invalid feature, of `total`.
    Invalid {
        report: Vec<Value>,
        total: usize,
    },
}

/// Validates and prepares every fence of a FeatureCollection, or reports every invalid one
/// (all or nothing). Each feature needs an `id`, unique in the collection. `progress` is called
/// once per feature (preparing a fence computes its H3 cover, the slow part of an import).
pub fn prepare_collection(
    collection: &Value,
    limits: &FenceLimits,
    progress: impl Fn(),
) -> Result<Vec<PreparedFence>, CollectionError> {
    let (Some("FeatureCollection"), Some(Value::Array(features))) = (
        collection.get("type").and_then(Value::as_str),
        collection.get("features"),
    ) else {
        return Err(CollectionError::NotACollection);
    };
    let mut prepared = Vec::with_capacity(features.len());
    let mut report = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (index, feature) in features.iter().enumerate() {
        let result = match fence_from_feature(feature, String::new) {
            Ok(fence) if fence.id.is_empty() => Err("every imported fence needs an `id`".to_owned()),
            Ok(fence) if !seen.insert(fence.id.clone()) => {
                Err(format!("id {:?} appears twice in the collection", fence.id))
            }
            Ok(fence) => PreparedFence::new(fence, limits).map_err(|e| e.to_string()),
            Err(reason) => Err(reason),
        };
        match result {
            Ok(fence) => prepared.push(fence),
            Err(reason) => report.push(json!({"index": index, "id": feature.get("id"), "reason": reason})),
        }
        progress();
    }
    if report.is_empty() {
        Ok(prepared)
    } else {
        Err(CollectionError::Invalid {
            report,
            total: features.len(),
        })
    }
}

/// The area polygon as WKT for PostGIS (`ST_GeomFromText(wkt, 4326)`).
pub fn area_wkt(area: &geo::MultiPolygon) -> String {
    use std::fmt::Write as _;
    let mut wkt = String::from("MULTIPOLYGON(");
    for (p, polygon) in area.0.iter().enumerate() {
        wkt.push_str(if p == 0 { "(" } else { ",(" });
        for (r, ring) in std::iter::once(polygon.exterior())
            .chain(polygon.interiors())
            .enumerate()
        {
            wkt.push_str(if r == 0 { "(" } else { ",(" });
            for (i, c) in ring.coords().enumerate() {
                let _ = write!(wkt, "{}{} {}", if i == 0 { "" } else { "," }, c.x, c.y);
            }
            wkt.push(')');
        }
        wkt.push(')');
    }
    wkt.push(')');
    wkt
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_a_feature() {
        let features = [
            json!({"type": "Feature", "id": "p", "geometry": {"type": "Polygon", "coordinates": [[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]]},
                   "properties": {"name": "square", "colour": "red", "dwell_s": 60, "applies_to": ["a", "fleet-*"]}}),
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
            let error = to_fence(&feature, || "x".into()).expect_err(needle);
            assert!(error.contains(needle), "{needle}: {error}");
        }
    }

    #[test]
    fn area_wkt_writes_every_ring() {
        let ring = geo::LineString::from(vec![(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 0.0)]);
        let square = geo::Polygon::new(ring, vec![]);
        let wkt = area_wkt(&geo::MultiPolygon(vec![square]));
        assert_eq!(wkt, "MULTIPOLYGON(((0 0,1 0,1 1,0 0)))");
    }
}
