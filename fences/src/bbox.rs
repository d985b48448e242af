//! [`Bbox`]: a box of WGS 84 longitudes and latitudes, the one box type of every geotrack crate
//! (API filters, the live feed, fence extents, tile invalidation). A box whose west edge lies
//! east of its east edge crosses the antimeridian: `170,-10,-170,10` is the 20° wide box
//! around longitude 180. Every box is checked when made, so holders never see NaN, a longitude
//! beyond ±180 or a south edge north of the north edge.

use serde::{Deserialize, Serialize};

/// A checked longitude/latitude box; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "[f64; 4]", into = "[f64; 4]")]
pub struct Bbox {
    west: f64,
    south: f64,
    east: f64,
    north: f64,
}

/// Why four numbers are not a box.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BboxError {
    #[error("a bbox is minLon,minLat,maxLon,maxLat: four numbers separated by commas")]
    Malformed,
    #[error("bbox longitudes must be within ±180 and latitudes within ±90, south <= north")]
    OutOfRange,
}

impl Bbox {
    /// The whole world.
    pub const WORLD: Self = Self {
        west: -180.0,
        south: -90.0,
        east: 180.0,
        north: 90.0,
    };

    /// A box from its edges; `west > east` crosses the antimeridian.
    pub fn new(west: f64, south: f64, east: f64, north: f64) -> Result<Self, BboxError> {
        let lon_ok = |v: f64| (-180.0..=180.0).contains(&v);
        let lat_ok = |v: f64| (-90.0..=90.0).contains(&v);
        if lon_ok(west) && lon_ok(east) && lat_ok(south) && lat_ok(north) && south <= north {
            Ok(Self {
                west,
                south,
                east,
                north,
            })
        } else {
            Err(BboxError::OutOfRange)
        }
    }

    /// The smallest box holding `[min_lon, min_lat, max_lon, max_lat]` clamped to the world
    /// (for extents computed from geometry, never crossing the antimeridian).
    pub fn covering([min_lon, min_lat, max_lon, max_lat]: [f64; 4]) -> Self {
        let lon = |v: f64| v.clamp(-180.0, 180.0);
        let lat = |v: f64| v.clamp(-90.0, 90.0);
        let (west, east) = (lon(min_lon), lon(max_lon));
        let (south, north) = (lat(min_lat), lat(max_lat));
        Self {
            west: west.min(east),
            south: south.min(north),
            east: east.max(west),
            north: north.max(south),
        }
    }

    /// Reads `minLon,minLat,maxLon,maxLat` (spaces around the numbers are allowed).
    pub fn parse(text: &str) -> Result<Self, BboxError> {
        let mut numbers = text.split(',').map(|v| v.trim().parse::<f64>());
        let mut next = || numbers.next().and_then(Result::ok).ok_or(BboxError::Malformed);
        let [west, south, east, north] = [next()?, next()?, next()?, next()?];
        if numbers.next().is_some() {
            return Err(BboxError::Malformed);
        }
        Self::new(west, south, east, north)
    }

    pub fn west(&self) -> f64 {
        self.west
    }

    pub fn south(&self) -> f64 {
        self.south
    }

    pub fn east(&self) -> f64 {
        self.east
    }

    pub fn north(&self) -> f64 {
        self.north
    }

    /// `[west, south, east, north]`.
    pub fn to_array(self) -> [f64; 4] {
        [self.west, self.south, self.east, self.north]
    }

    pub fn crosses_antimeridian(&self) -> bool {
        self.west > self.east
    }

    /// Whether `(lon, lat)` lies in the box (edges included).
    pub fn contains(&self, lon: f64, lat: f64) -> bool {
        let lon_in = if self.crosses_antimeridian() {
            lon >= self.west || lon <= self.east
        } else {
            (self.west..=self.east).contains(&lon)
        };
        lon_in && (self.south..=self.north).contains(&lat)
    }

    /// The box as boxes that do not cross the antimeridian: itself, or its two halves.
    pub fn halves(self) -> impl Iterator<Item = Self> {
        let (first, second) = if self.crosses_antimeridian() {
            (Self { east: 180.0, ..self }, Some(Self { west: -180.0, ..self }))
        } else {
            (self, None)
        };
        std::iter::once(first).chain(second)
    }

    /// Whether the two boxes share a point.
    pub fn meets(&self, other: &Self) -> bool {
        self.halves().any(|a| {
            other
                .halves()
                .any(|b| a.west <= b.east && a.east >= b.west && a.south <= b.north && a.north >= b.south)
        })
    }
}

impl TryFrom<[f64; 4]> for Bbox {
    type Error = BboxError;

    fn try_from([west, south, east, north]: [f64; 4]) -> Result<Self, BboxError> {
        Self::new(west, south, east, north)
    }
}

impl From<Bbox> for [f64; 4] {
    fn from(bbox: Bbox) -> Self {
        bbox.to_array()
    }
}

impl std::str::FromStr for Bbox {
    type Err = BboxError;

    fn from_str(text: &str) -> Result<Self, BboxError> {
        Self::parse(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing_checks_count_numbers_and_ranges() {
        let bbox = Bbox::parse(" 2.3, 48.8 ,2.4,48.9").expect("bbox");
        assert_eq!(bbox, Bbox::new(2.3, 48.8, 2.4, 48.9).expect("bbox"));
        for bad in ["", "1,2,3", "1,2,3,4,5", "a,2,3,4"] {
            assert_eq!(Bbox::parse(bad), Err(BboxError::Malformed), "{bad}");
        }
        for bad in [
            "-181,0,0,1",
            "0,-91,1,0",
            "0,10,1,5",
            "0,0,181,1",
            "1,2,3,NaN",
            "inf,0,1,1",
        ] {
            assert_eq!(Bbox::parse(bad), Err(BboxError::OutOfRange), "{bad}");
        }
    }

    #[test]
    fn a_box_crossing_the_antimeridian_contains_both_sides_and_splits_in_two() {
        let bbox = Bbox::parse("170,-10,-170,10").expect("bbox");
        assert!(bbox.crosses_antimeridian());
        assert!(bbox.contains(175.0, 0.0) && bbox.contains(-175.0, 0.0) && bbox.contains(180.0, 0.0));
        assert!(!bbox.contains(0.0, 0.0) && !bbox.contains(175.0, 20.0));
        let halves: Vec<[f64; 4]> = bbox.halves().map(Bbox::to_array).collect();
        assert_eq!(
            halves,
            [[170.0, -10.0, 180.0, 10.0], [-180.0, -10.0, -170.0, 10.0]]
        );
        assert!(bbox.meets(&Bbox::parse("-175,0,-174,1").expect("east half")));
        assert!(!bbox.meets(&Bbox::parse("0,0,1,1").expect("far away")));
    }

    #[test]
    fn json_is_an_array_and_is_checked() {
        let bbox: Bbox = serde_json::from_str("[1,2,3,4]").expect("bbox");
        assert_eq!(serde_json::to_string(&bbox).expect("json"), "[1.0,2.0,3.0,4.0]");
        assert!(serde_json::from_str::<Bbox>("[1,95,3,4]").is_err());
        assert_eq!(
            Bbox::covering([-190.0, 10.0, 10.0, 95.0]),
            Bbox::new(-180.0, 10.0, 10.0, 90.0).expect("bbox")
        );
    }
}
