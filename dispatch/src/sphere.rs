//! Positions as unit vectors, so that the live index is a plain 3-D R-tree with no seams.
//!
//! On the unit sphere the straight-line (chord) distance between two points grows with the
//! great-circle angle between them (`chord = 2 sin(angle / 2)`), so the k nearest points by
//! chord are the k nearest by great-circle distance, across the antimeridian and over the
//! poles alike. A longitude/latitude box becomes the smallest axis-aligned 3-D box holding
//! its patch of sphere ([`lonlat_box`]): a conservative pre-filter that callers finish with
//! the exact longitude/latitude test.

use fences::geodesy::EARTH_RADIUS_M;
use rstar::AABB;

/// Slack added around computed boxes so that rounding never drops a point on an edge.
const SLACK: f64 = 1e-12;

/// The unit vector of a longitude/latitude position (degrees).
pub fn unit_vector(lon: f64, lat: f64) -> [f64; 3] {
    let (sin_lat, cos_lat) = lat.to_radians().sin_cos();
    let (sin_lon, cos_lon) = lon.to_radians().sin_cos();
    [cos_lat * cos_lon, cos_lat * sin_lon, sin_lat]
}

/// The squared chord of a great-circle distance in metres; `None` when the distance reaches
/// the antipode, so that nothing on the sphere is farther.
pub fn chord2_of_metres(metres: f64) -> Option<f64> {
    let angle = metres / EARTH_RADIUS_M;
    if angle >= std::f64::consts::PI {
        return None;
    }
    let chord = 2.0 * (angle / 2.0).sin();
    // Rounding must never leave out a point at exactly `metres`.
    Some(chord * chord * (1.0 + 1e-9) + SLACK)
}

/// The 3-D box holding every unit vector whose longitude lies in `[west, east]` (`west <=
/// east`, both within ±180) and latitude in `[south, north]`.
pub fn lonlat_box(west: f64, south: f64, east: f64, north: f64) -> AABB<[f64; 3]> {
    let (south_r, north_r) = (south.to_radians(), north.to_radians());
    let (west_r, east_r) = (west.to_radians(), east.to_radians());
    let z = (south_r.sin(), north_r.sin());
    // cos(lat) >= 0 on [-90°, 90°]; it peaks at the equator.
    let cos_lat_min = south_r.cos().min(north_r.cos());
    let cos_lat_max = if south <= 0.0 && north >= 0.0 {
        1.0
    } else {
        south_r.cos().max(north_r.cos())
    };
    let cos_lon = range_with_peaks(west, east, west_r.cos(), east_r.cos(), &[(0.0, 1.0)], &[]);
    let sin_lon = range_with_peaks(
        west,
        east,
        west_r.sin(),
        east_r.sin(),
        &[(90.0, 1.0)],
        &[(-90.0, -1.0)],
    );
    let (x_min, x_max) = product_range((cos_lat_min, cos_lat_max), cos_lon);
    let (y_min, y_max) = product_range((cos_lat_min, cos_lat_max), sin_lon);
    AABB::from_corners(
        [x_min - SLACK, y_min - SLACK, z.0 - SLACK],
        [x_max + SLACK, y_max + SLACK, z.1 + SLACK],
    )
}

/// The range of a function of longitude over `[west, east]`, from its values at the ends and
/// the maxima and minima it takes at the longitudes listed.
fn range_with_peaks(
    west: f64,
    east: f64,
    at_west: f64,
    at_east: f64,
    maxima: &[(f64, f64)],
    minima: &[(f64, f64)],
) -> (f64, f64) {
    let inside = |lon: f64| west <= lon && lon <= east;
    let mut low = at_west.min(at_east);
    let mut high = at_west.max(at_east);
    for &(lon, value) in maxima {
        if inside(lon) {
            high = high.max(value);
        }
    }
    for &(lon, value) in minima {
        if inside(lon) {
            low = low.min(value);
        }
    }
    (low, high)
}

/// The range of `a * b` for `a` and `b` in their ranges.
fn product_range((a_low, a_high): (f64, f64), (b_low, b_high): (f64, f64)) -> (f64, f64) {
    let products = [a_low * b_low, a_low * b_high, a_high * b_low, a_high * b_high];
    products
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(low, high), &p| {
            (low.min(p), high.max(p))
        })
}

#[cfg(test)]
mod tests {
    use fences::geodesy::haversine_m;
    use geo::Coord;
    use proptest::prelude::*;
    use rstar::{Envelope, PointDistance};

    use super::*;

    #[test]
    fn the_chord_of_a_distance_bounds_the_points_at_that_distance() {
        let (a, b) = (Coord { x: 2.35, y: 48.85 }, Coord { x: 2.29, y: 48.86 });
        let metres = haversine_m(a, b);
        let chord2_ab = unit_vector(a.x, a.y).distance_2(&unit_vector(b.x, b.y));
        assert!(chord2_ab <= chord2_of_metres(metres).expect("short"));
        assert!(chord2_ab > chord2_of_metres(metres * 0.999).expect("short"));
        assert_eq!(chord2_of_metres(EARTH_RADIUS_M * 4.0), None);
    }

    proptest! {
        #[test]
        fn a_box_holds_every_point_of_its_patch(
            west in -180.0f64..180.0, width in 0.0f64..360.0,
            south in -90.0f64..90.0, height in 0.0f64..180.0,
            fx in 0.0f64..=1.0, fy in 0.0f64..=1.0,
        ) {
            let east = (west + width).min(180.0);
            let north = (south + height).min(90.0);
            let (lon, lat) = (west + (east - west) * fx, south + (north - south) * fy);
            let envelope = lonlat_box(west, south, east, north);
            prop_assert!(envelope.contains_point(&unit_vector(lon, lat)));
            for (lon, lat) in [(west, south), (west, north), (east, south), (east, north)] {
                prop_assert!(envelope.contains_point(&unit_vector(lon, lat)));
            }
        }
    }

    #[test]
    fn a_small_box_is_small() {
        let envelope = lonlat_box(2.0, 48.0, 3.0, 49.0);
        let [dx, dy, dz] = [0, 1, 2].map(|i| envelope.upper()[i] - envelope.lower()[i]);
        assert!(dx < 0.02 && dy < 0.02 && dz < 0.02, "{envelope:?}");
    }
}
