//! The fence model as clients define and store it (serde, GeoJSON-like
//! positions `[lon, lat]` in degrees) and its validation. Geometry is kept as
//! written; [`crate::normalize`] and [`crate::exact::PreparedFence`] turn it into
//! something that can be tested.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::error::FenceError;
use crate::groups::Groups;

/// A position `[lon, lat]` in degrees, as in GeoJSON.
pub type Position = [f64; 2];

/// Longest fence name, in bytes.
pub const MAX_NAME_BYTES: usize = 256;

/// Whether a JSON value holds a NUL character in any string or key (PostgreSQL's `jsonb`
/// cannot store one: every path that stores client JSON checks this first).
pub fn holds_nul(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(text) => text.contains('\0'),
        serde_json::Value::Array(items) => items.iter().any(holds_nul),
        serde_json::Value::Object(map) => map_holds_nul(map),
        _ => false,
    }
}

/// Whether a JSON object holds a NUL character in any key or string (see [`holds_nul`]).
pub fn map_holds_nul(map: &serde_json::Map<String, serde_json::Value>) -> bool {
    map.iter().any(|(k, v)| k.contains('\0') || holds_nul(v))
}

/// Whether the edge `a`→`b` joins the same point on Earth 360° of longitude
/// apart away from the poles: the seam of a ring that goes around a pole (a
/// ring closed by such an edge is closed along the pole, see [`crate::normalize`]).
pub fn is_pole_seam(a: Position, b: Position) -> bool {
    const EPS: f64 = 1e-9;
    ((b[0] - a[0]).abs() - 360.0).abs() < EPS && (b[1] - a[1]).abs() < EPS && a[1].abs() < 90.0
}

/// The geometry of a fence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FenceKind {
    /// One polygon: exterior ring then holes, each ring closed (first == last).
    /// Edges are straight lines in lon/lat; longitudes beyond ±180 mean the
    /// polygon crosses the antimeridian. An exterior ring that goes around a pole
    /// either ends 360° of longitude from where it starts (same latitude) or has
    /// one such 360° edge; it is closed along that pole.
    Polygon {
        /// Rings, GeoJSON `Polygon.coordinates`.
        rings: Vec<Vec<Position>>,
    },
    /// Several polygons, GeoJSON `MultiPolygon.coordinates`.
    MultiPolygon {
        /// Polygons, each a list of rings.
        polygons: Vec<Vec<Vec<Position>>>,
    },
    /// Every point within `radius_m` metres (great-circle distance) of `centre`.
    Circle {
        /// Centre `[lon, lat]`.
        centre: Position,
        /// Radius in metres.
        radius_m: f64,
    },
    /// Every point within `buffer_m` metres of a polyline whose segments are
    /// great-circle arcs (the shorter way, so a hop over the antimeridian is short).
    Corridor {
        /// The polyline.
        line: Vec<Position>,
        /// Half-width in metres.
        buffer_m: f64,
    },
}

/// Which devices a fence applies to.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AppliesTo {
    /// Every device.
    #[default]
    All,
    /// Devices whose id is listed, starts with one of the prefixes, or belongs to one of the
    /// groups.
    Devices {
        /// Exact device ids.
        #[serde(default)]
        ids: BTreeSet<String>,
        /// Device id prefixes.
        #[serde(default)]
        prefixes: Vec<String>,
        /// Device group ids (a group that does not exist has no members).
        #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
        groups: BTreeSet<String>,
    },
}

/// How an `applies_to` entry names a device group: `group:taxis`.
const GROUP_PREFIX: &str = "group:";

impl AppliesTo {
    /// Reads the API's notation: `"all"`, or a list of device ids where `prefix*` is an id prefix
    /// and `group:ID` a device group. The error says what is wrong, after the field's name.
    pub fn from_entries(value: &serde_json::Value) -> Result<Self, &'static str> {
        let entries = match value {
            serde_json::Value::String(all) if all == "all" => return Ok(Self::All),
            serde_json::Value::Array(entries) => entries,
            _ => return Err("must be \"all\" or a list of device ids (`prefix*` for prefixes)"),
        };
        let mut ids = BTreeSet::new();
        let mut prefixes = Vec::new();
        let mut groups = BTreeSet::new();
        for entry in entries {
            let entry = entry.as_str().ok_or("entries must be strings")?;
            if let Some(group) = entry.strip_prefix(GROUP_PREFIX) {
                crate::check_id(group).map_err(|_| "has a `group:` entry without a valid group id")?;
                groups.insert(group.to_owned());
            } else if let Some(prefix) = entry.strip_suffix('*') {
                prefixes.push(prefix.to_owned());
            } else {
                ids.insert(entry.to_owned());
            }
        }
        Ok(Self::Devices {
            ids,
            prefixes,
            groups,
        })
    }

    /// The inverse of [`from_entries`](Self::from_entries).
    pub fn to_entries(&self) -> serde_json::Value {
        match self {
            Self::All => serde_json::json!("all"),
            Self::Devices {
                ids,
                prefixes,
                groups,
            } => serde_json::json!(
                ids.iter()
                    .cloned()
                    .chain(prefixes.iter().map(|p| format!("{p}*")))
                    .chain(groups.iter().map(|g| format!("{GROUP_PREFIX}{g}")))
                    .collect::<Vec<_>>()
            ),
        }
    }

    /// Whether the fence applies to `device_id`, with the groups as they are now.
    pub fn matches(&self, device_id: &str, groups: &Groups) -> bool {
        match self {
            Self::All => true,
            Self::Devices {
                ids,
                prefixes,
                groups: named,
            } => {
                ids.contains(device_id)
                    || prefixes.iter().any(|p| device_id.starts_with(p.as_str()))
                    || named
                        .iter()
                        .any(|g| groups.get(g).is_some_and(|g| g.contains(device_id)))
            }
        }
    }
}

/// A geofence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fence {
    /// Stable identifier.
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Geometry.
    pub kind: FenceKind,
    /// Metres a device must be inside to enter, or outside to leave (anti-flapping).
    #[serde(default)]
    pub hysteresis_m: f64,
    /// Seconds inside after which a dwell alert fires once per visit.
    #[serde(default)]
    pub dwell_s: Option<u32>,
    /// Speed above which an overspeed alert fires once per visit.
    #[serde(default)]
    pub speed_limit_mps: Option<f64>,
    /// Devices the fence applies to.
    #[serde(default)]
    pub applies_to: AppliesTo,
    /// URLs its alerts are also delivered to (the caller validates and delivers them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<String>,
    /// Free-form properties, kept as given.
    #[serde(default)]
    pub properties: serde_json::Map<String, serde_json::Value>,
}

impl Fence {
    /// A fence with default options (no hysteresis, dwell or speed limit, all devices).
    pub fn new(id: impl Into<String>, name: impl Into<String>, kind: FenceKind) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            kind,
            hysteresis_m: 0.0,
            dwell_s: None,
            speed_limit_mps: None,
            applies_to: AppliesTo::All,
            webhooks: Vec::new(),
            properties: serde_json::Map::new(),
        }
    }

    /// Number of positions in the geometry.
    pub fn vertex_count(&self) -> usize {
        match &self.kind {
            FenceKind::Polygon { rings } => rings.iter().map(Vec::len).sum(),
            FenceKind::MultiPolygon { polygons } => polygons.iter().flatten().map(Vec::len).sum(),
            FenceKind::Circle { .. } => 1,
            FenceKind::Corridor { line, .. } => line.len(),
        }
    }

    /// Checks everything that can be checked without normalising: ids,
    /// parameters, ring closure and size, coordinate ranges, vertex limit.
    /// Self-intersection is checked by [`crate::exact::PreparedFence::new`], after
    /// pole rings are closed.
    pub fn validate(&self, limits: &FenceLimits) -> Result<(), FenceError> {
        match crate::check_id(&self.id) {
            Ok(()) => {}
            Err(crate::IdError::Empty) => return Err(FenceError::EmptyId),
            Err(other) => return Err(FenceError::BadId(other)),
        }
        if self.name.len() > MAX_NAME_BYTES {
            return Err(FenceError::NameTooLong(self.name.len()));
        }
        crate::id::check_text(&self.name).map_err(FenceError::BadName)?;
        if map_holds_nul(&self.properties) {
            return Err(FenceError::NulInProperties);
        }
        check_param("hysteresis_m", self.hysteresis_m)?;
        if let Some(v) = self.speed_limit_mps {
            check_param("speed_limit_mps", v)?;
        }
        let count = self.vertex_count();
        if count > limits.max_vertices {
            return Err(FenceError::TooManyVertices {
                count,
                limit: limits.max_vertices,
            });
        }
        match &self.kind {
            FenceKind::Polygon { rings } => check_polygon(0, rings),
            FenceKind::MultiPolygon { polygons } => {
                if polygons.is_empty() {
                    return Err(FenceError::EmptyGeometry);
                }
                polygons
                    .iter()
                    .enumerate()
                    .try_for_each(|(i, rings)| check_polygon(i, rings))
            }
            FenceKind::Circle { centre, radius_m } => {
                check_position("circle centre", *centre)?;
                if !(radius_m.is_finite() && *radius_m > 0.0 && *radius_m <= limits.max_radius_m) {
                    return Err(FenceError::InvalidRadius {
                        value: *radius_m,
                        max: limits.max_radius_m,
                    });
                }
                Ok(())
            }
            FenceKind::Corridor { line, buffer_m } => {
                if line.len() < 2 {
                    return Err(FenceError::LineTooShort(line.len()));
                }
                for (i, p) in line.iter().enumerate() {
                    check_position(&format!("corridor position {i}"), *p)?;
                }
                // The exact test reads such a segment as its two ends and the drawing for the
                // index as garbage, so the two disagreed (found by `tests/fuzz.rs`).
                let at = |p: &Position| geo::coord! { x: p[0], y: p[1] };
                if let Some(i) = line
                    .windows(2)
                    .position(|w| crate::geodesy::antipodal(at(&w[0]), at(&w[1])))
                {
                    return Err(FenceError::AntipodalSegment(i));
                }
                if !(buffer_m.is_finite() && *buffer_m > 0.0 && *buffer_m <= limits.max_radius_m) {
                    return Err(FenceError::InvalidBuffer {
                        value: *buffer_m,
                        max: limits.max_radius_m,
                    });
                }
                Ok(())
            }
        }
    }
}

/// Caller-chosen limits for [`Fence::validate`] and preparation.
#[derive(Debug, Clone, PartialEq)]
pub struct FenceLimits {
    /// Maximum number of positions in a fence.
    pub max_vertices: usize,
    /// Maximum circle radius and corridor buffer, in metres.
    pub max_radius_m: f64,
    /// Reject self-intersecting rings and overlapping parts (geo's `Validation`).
    /// Turn off only for trusted data whose quantisation makes rings touch.
    pub check_validity: bool,
}

impl Default for FenceLimits {
    fn default() -> Self {
        Self {
            max_vertices: 100_000,
            max_radius_m: 2_000_000.0,
            check_validity: true,
        }
    }
}

fn check_param(field: &'static str, value: f64) -> Result<(), FenceError> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(FenceError::InvalidParameter { field, value })
    }
}

/// Checks one position: finite, latitude within [-90, 90], longitude within a turn of the map.
pub(crate) fn check_position(at: &str, [lon, lat]: Position) -> Result<(), FenceError> {
    if !lon.is_finite() || !lat.is_finite() {
        return Err(FenceError::NonFinite {
            at: at.to_owned(),
            lon,
            lat,
        });
    }
    if !(-90.0..=90.0).contains(&lat) {
        return Err(FenceError::LatitudeOutOfRange {
            at: at.to_owned(),
            lat,
        });
    }
    if !(-540.0..=540.0).contains(&lon) {
        return Err(FenceError::LongitudeOutOfRange {
            at: at.to_owned(),
            lon,
        });
    }
    Ok(())
}

fn check_polygon(index: usize, rings: &[Vec<Position>]) -> Result<(), FenceError> {
    if rings.is_empty() {
        return Err(FenceError::EmptyGeometry);
    }
    for (r, ring) in rings.iter().enumerate() {
        let name = format!("polygon {index} ring {r}");
        for (i, p) in ring.iter().enumerate() {
            check_position(&format!("{name} position {i}"), *p)?;
        }
        if ring.len() < 4 {
            return Err(FenceError::TooFewPositions {
                ring: name,
                count: ring.len(),
            });
        }
        let (first, last) = (ring[0], ring[ring.len() - 1]);
        #[expect(clippy::float_cmp, reason = "GeoJSON closes a ring on the identical position")]
        let closed = first == last;
        if !closed && !is_pole_seam(last, first) {
            return Err(FenceError::UnclosedRing {
                ring: name,
                first,
                last,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square() -> Vec<Position> {
        vec![[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 0.0]]
    }

    #[test]
    fn validation_errors_are_specific() {
        let l = FenceLimits::default();
        let f = |kind| Fence::new("f", "", kind);
        let mut open = square();
        open.pop();
        open.push([0.0, 0.5]);
        assert!(matches!(
            f(FenceKind::Polygon { rings: vec![open] }).validate(&l),
            Err(FenceError::UnclosedRing { .. })
        ));
        assert!(matches!(
            f(FenceKind::Polygon {
                rings: vec![vec![[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]]]
            })
            .validate(&l),
            Err(FenceError::TooFewPositions { count: 3, .. })
        ));
        let mut nan = square();
        nan[1] = [f64::NAN, 0.0];
        assert!(matches!(
            f(FenceKind::Polygon { rings: vec![nan] }).validate(&l),
            Err(FenceError::NonFinite { .. })
        ));
        let mut high = square();
        high[2] = [1.0, 91.0];
        assert!(matches!(
            f(FenceKind::Polygon { rings: vec![high] }).validate(&l),
            Err(FenceError::LatitudeOutOfRange { .. })
        ));
        assert!(matches!(
            f(FenceKind::Circle {
                centre: [0.0, 0.0],
                radius_m: 0.0
            })
            .validate(&l),
            Err(FenceError::InvalidRadius { .. })
        ));
        assert!(matches!(
            f(FenceKind::Corridor {
                line: vec![[0.0, 0.0], [1.0, 0.0]],
                buffer_m: -1.0
            })
            .validate(&l),
            Err(FenceError::InvalidBuffer { .. })
        ));
        let small = FenceLimits {
            max_vertices: 4,
            ..FenceLimits::default()
        };
        assert!(matches!(
            f(FenceKind::Polygon {
                rings: vec![square()]
            })
            .validate(&small),
            Err(FenceError::TooManyVertices { count: 5, limit: 4 })
        ));
        let mut neg = f(FenceKind::Polygon {
            rings: vec![square()],
        });
        neg.hysteresis_m = -1.0;
        assert!(matches!(
            neg.validate(&l),
            Err(FenceError::InvalidParameter {
                field: "hysteresis_m",
                ..
            })
        ));
        assert!(
            f(FenceKind::Polygon {
                rings: vec![square()]
            })
            .validate(&l)
            .is_ok()
        );
        let msg = f(FenceKind::Polygon {
            rings: vec![vec![[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]]],
        })
        .validate(&l)
        .map_err(|e| e.to_string());
        assert_eq!(
            msg,
            Err("polygon 0 ring 0: ring has 3 positions, a closed ring needs at least 4".into())
        );
    }

    #[test]
    fn applies_to_ids_prefixes_and_groups() {
        let groups = crate::Groups::default();
        let a = AppliesTo::Devices {
            ids: ["truck-1".to_owned()].into(),
            prefixes: vec!["van-".into()],
            groups: ["night".to_owned(), "nobody".to_owned()].into(),
        };
        assert!(a.matches("truck-1", &groups) && a.matches("van-7", &groups));
        assert!(!a.matches("truck-2", &groups) && !a.matches("cab-1", &groups));
        groups.put(crate::Group {
            id: "night".into(),
            name: String::new(),
            devices: ["truck-2".to_owned()].into(),
            prefixes: ["cab-".to_owned()].into(),
        });
        assert!(
            a.matches("truck-2", &groups) && a.matches("cab-1", &groups),
            "members as they are now"
        );
        assert!(AppliesTo::All.matches("anything", &groups));
    }

    #[test]
    fn serde_round_trip() {
        let json =
            r#"{"id":"c1","kind":{"type":"circle","centre":[2.35,48.85],"radius_m":150.0},"dwell_s":60}"#;
        let f: Fence = serde_json::from_str(json).expect("parses");
        assert_eq!(f.dwell_s, Some(60));
        assert_eq!(f.applies_to, AppliesTo::All);
        let back: Fence = serde_json::from_str(&serde_json::to_string(&f).expect("ser")).expect("de");
        assert_eq!(back, f);
    }
}
