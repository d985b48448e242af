//! Spherical geometry helpers in metres and degrees: haversine distance,
//! destination points, great-circle interpolation, distance from a point to a
//! great-circle arc and to a segment that is straight in lon/lat, and the
//! latitude extent of a great-circle arc. One sphere for the whole crate, of
//! the same mean radius as `geo::Haversine`.

use geo::{Coord, Rect, coord};

/// Mean Earth radius in metres (the value `geo::Haversine` uses).
pub const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// Metres per degree of latitude on [`EARTH_RADIUS_M`].
pub const METRES_PER_DEGREE: f64 = EARTH_RADIUS_M * std::f64::consts::PI / 180.0;

/// Wraps a longitude into [-180, 180]; values already in range are returned unchanged
/// (so both -180 and 180 survive).
pub fn normalize_lon(lon: f64) -> f64 {
    if (-180.0..=180.0).contains(&lon) {
        lon
    } else {
        let w = (lon + 180.0).rem_euclid(360.0) - 180.0;
        if w < -180.0 { w + 360.0 } else { w }
    }
}

/// The longitude difference `b - a` folded into [-180, 180].
pub fn delta_lon(a: f64, b: f64) -> f64 {
    normalize_lon(b - a)
}

/// Unit vector of a lon/lat position in degrees.
fn to_vec(c: Coord) -> [f64; 3] {
    let (lat, lon) = (c.y.to_radians(), c.x.to_radians());
    let (sl, cl) = lat.sin_cos();
    let (so, co) = lon.sin_cos();
    [cl * co, cl * so, sl]
}

/// Lon/lat in degrees of a (not necessarily unit) vector.
fn from_vec(v: [f64; 3]) -> Coord {
    let h = v[0].hypot(v[1]);
    Coord {
        x: v[1].atan2(v[0]).to_degrees(),
        y: v[2].atan2(h).to_degrees(),
    }
}

fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

fn norm(a: [f64; 3]) -> f64 {
    dot(a, a).sqrt()
}

fn angle(a: [f64; 3], b: [f64; 3]) -> f64 {
    norm(cross(a, b)).atan2(dot(a, b))
}

/// Whether two lon/lat positions are opposite points of the sphere (within about a metre),
/// between which no shorter great-circle arc is defined.
pub fn antipodal(a: Coord, b: Coord) -> bool {
    let (va, vb) = (to_vec(a), to_vec(b));
    dot(va, vb) < 0.0 && norm(cross(va, vb)) < 1.0 / EARTH_RADIUS_M
}

/// Great-circle distance in metres between two lon/lat positions.
pub fn haversine_m(a: Coord, b: Coord) -> f64 {
    let (la, lb) = (a.y.to_radians(), b.y.to_radians());
    let dlat = lb - la;
    let dlon = (b.x - a.x).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + la.cos() * lb.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * h.sqrt().min(1.0).asin()
}

/// The position reached from `origin` after `distance_m` along `bearing_deg`
/// (clockwise from north). The longitude is *not* wrapped: it stays within 180
/// degrees of the origin's, so rings built from it can be unrolled.
pub fn destination(origin: Coord, bearing_deg: f64, distance_m: f64) -> Coord {
    let d = distance_m / EARTH_RADIUS_M;
    let (lat1, lon1) = (origin.y.to_radians(), origin.x.to_radians());
    let brg = bearing_deg.to_radians();
    let lat2 = (lat1.sin() * d.cos() + lat1.cos() * d.sin() * brg.cos())
        .clamp(-1.0, 1.0)
        .asin();
    // `atan2(sin θ·sin d·cos φ1, cos d − sin φ1·sin φ2)` with the common factor cos φ1 taken
    // out of both arguments: the same angle, but at a pole (cos φ1 ≈ 6e-17) the textbook form
    // divides rounding noise by rounding noise, so circles and corridor ends drawn around a
    // pole collapsed into a line and the index missed them (found by `tests/fuzz.rs`).
    let lon2 = lon1 + (brg.sin() * d.sin()).atan2(d.cos() * lat1.cos() - lat1.sin() * d.sin() * brg.cos());
    Coord {
        x: origin.x + normalize_lon(lon2.to_degrees() - origin.x),
        y: lat2.to_degrees(),
    }
}

/// Initial great-circle bearing in degrees from `a` to `b`.
pub fn bearing(a: Coord, b: Coord) -> f64 {
    let (la, lb) = (a.y.to_radians(), b.y.to_radians());
    let dlon = (b.x - a.x).to_radians();
    let y = dlon.sin() * lb.cos();
    let x = la.cos() * lb.sin() - la.sin() * lb.cos() * dlon.cos();
    y.atan2(x).to_degrees()
}

/// The point at fraction `f` (0..=1) of the great-circle arc from `a` to `b`
/// (the shorter way). Longitude is wrapped into [-180, 180].
pub fn interpolate(a: Coord, b: Coord, f: f64) -> Coord {
    let (va, vb) = (to_vec(a), to_vec(b));
    let omega = angle(va, vb);
    if omega < 1e-12 {
        return a;
    }
    let s = omega.sin();
    let (wa, wb) = (((1.0 - f) * omega).sin() / s, (f * omega).sin() / s);
    from_vec([
        wa * va[0] + wb * vb[0],
        wa * va[1] + wb * vb[1],
        wa * va[2] + wb * vb[2],
    ])
}

/// Distance in metres from `p` to the great-circle arc from `a` to `b` (the shorter arc).
pub fn point_arc_distance_m(p: Coord, a: Coord, b: Coord) -> f64 {
    Arc::new(a, b).distance_m(unit_vector(p))
}

/// Unit vector of a lon/lat position, for [`Arc`] queries.
pub(crate) fn unit_vector(p: Coord) -> [f64; 3] {
    to_vec(p)
}

/// A great-circle arc prepared for many distance queries: the unit vectors of
/// its ends and the unit normal of its plane, computed once per fence instead
/// of once per query (the trigonometry dominated corridor tests).
#[derive(Debug, Clone)]
pub(crate) struct Arc {
    a: [f64; 3],
    b: [f64; 3],
    /// `a × b`, normalised when its norm is at least 1e-15.
    n: [f64; 3],
    /// Norm of `a × b`.
    nn: f64,
}

impl Arc {
    /// The shorter arc from `a` to `b`.
    pub fn new(a: Coord, b: Coord) -> Self {
        let (va, vb) = (to_vec(a), to_vec(b));
        let n = cross(va, vb);
        let nn = norm(n);
        let n = if nn < 1e-15 {
            n
        } else {
            [n[0] / nn, n[1] / nn, n[2] / nn]
        };
        Self { a: va, b: vb, n, nn }
    }

    /// Distance in metres from the point with unit vector `vp` (see
    /// [`unit_vector`]) to the arc.
    pub fn distance_m(&self, vp: [f64; 3]) -> f64 {
        let (va, vb, n) = (self.a, self.b, self.n);
        // Only needed when the closest point is an end: two atan2 saved otherwise.
        let ends = || angle(vp, va).min(angle(vp, vb)) * EARTH_RADIUS_M;
        if self.nn < 1e-15 {
            return ends();
        }
        let s = dot(vp, n);
        let q = [vp[0] - s * n[0], vp[1] - s * n[1], vp[2] - s * n[2]];
        if norm(q) < 1e-15 {
            return ends();
        }
        if dot(cross(va, q), n) >= 0.0 && dot(cross(q, vb), n) >= 0.0 {
            s.abs().min(1.0).asin() * EARTH_RADIUS_M
        } else {
            ends()
        }
    }

    /// Whether [`Self::distance_m`] from `vp` is certainly more than the
    /// distance `reach` stands for (see [`arc_reach`]), found without
    /// trigonometry: a point is at least as far from the arc as from its whole
    /// great circle, `asin(|vp · n|)`. `false` when unsure (short arcs, whose
    /// normal is imprecise, and points within ~6 cm of that distance).
    pub fn certainly_beyond(&self, vp: [f64; 3], reach: f64) -> bool {
        self.nn > 1e-6 && dot(vp, self.n).abs() > reach
    }
}

/// The bound [`Arc::certainly_beyond`] compares with for a distance in metres:
/// its sine on the unit sphere plus a margin of 1e-8 (~6 cm), far above the
/// rounding of either computation (~1e-10 with the normal of an arc of 1e-6 rad).
pub(crate) fn arc_reach(distance_m: f64) -> f64 {
    (distance_m / EARTH_RADIUS_M)
        .min(std::f64::consts::FRAC_PI_2)
        .sin()
        + 1e-8
}

/// Closest point to `p` on the segment `a`-`b` that is straight in lon/lat,
/// found in an equirectangular projection centred on `p` (edge offsets folded
/// across the antimeridian). Returns the point and its squared projected
/// distance in degrees² of latitude (for ranking edges cheaply).
#[expect(
    clippy::many_single_char_names,
    reason = "vector formulas read best with the usual letters"
)]
fn closest_on_lonlat_segment(p: Coord, a: Coord, b: Coord) -> (Coord, f64) {
    let k = p.y.to_radians().cos().max(1e-9);
    let (ax, ay) = (delta_lon(p.x, a.x) * k, a.y - p.y);
    let (dx, dy) = ((b.x - a.x) * k, b.y - a.y);
    let len2 = dx * dx + dy * dy;
    let t = if len2 > 0.0 {
        (-(ax * dx + ay * dy) / len2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let (qx, qy) = (ax + t * dx, ay + t * dy);
    let q = Coord {
        x: a.x + t * (b.x - a.x),
        y: a.y + t * (b.y - a.y),
    };
    (q, qx * qx + qy * qy)
}

/// Approximate distance in metres from `p` to the segment `a`-`b` that is a
/// straight line in lon/lat degrees (a polygon edge): the closest point is found
/// in a local projection, then measured with haversine. Exact for short edges,
/// an upper bound otherwise.
pub fn point_lonlat_segment_distance_m(p: Coord, a: Coord, b: Coord) -> f64 {
    haversine_m(p, closest_on_lonlat_segment(p, a, b).0)
}

/// Squared projected distance (degrees² of latitude) from `p` to the lon/lat
/// segment `a`-`b`, for ranking edges before [`point_lonlat_segment_distance_m`].
pub fn point_lonlat_segment_dist2_deg(p: Coord, a: Coord, b: Coord) -> f64 {
    closest_on_lonlat_segment(p, a, b).1
}

/// Minimum and maximum latitude (degrees) reached by the great-circle arc from
/// `a` to `b`, which may exceed the endpoints' latitudes.
pub fn arc_lat_range(a: Coord, b: Coord) -> (f64, f64) {
    let (mut lo, mut hi) = (a.y.min(b.y), a.y.max(b.y));
    let (va, vb) = (to_vec(a), to_vec(b));
    let n = cross(va, vb);
    let nn = norm(n);
    if nn < 1e-15 {
        return (lo, hi);
    }
    let n = [n[0] / nn, n[1] / nn, n[2] / nn];
    // The northernmost point of the great circle: z projected onto its plane.
    let top = [-n[2] * n[0], -n[2] * n[1], 1.0 - n[2] * n[2]];
    if norm(top) < 1e-15 {
        return (lo, hi);
    }
    for v in [top, [-top[0], -top[1], -top[2]]] {
        if dot(cross(va, v), n) >= 0.0 && dot(cross(v, vb), n) >= 0.0 {
            let lat = from_vec(v).y;
            lo = lo.min(lat);
            hi = hi.max(lat);
        }
    }
    (lo, hi)
}

/// Lon/lat bounding boxes of the great-circle arc from `a` to `b` (the shorter
/// way): one box, or two when the arc crosses ±180.
pub fn arc_bboxes(a: Coord, b: Coord) -> Vec<Rect> {
    let (lo, hi) = arc_lat_range(a, b);
    let ax = normalize_lon(a.x);
    let end = ax + delta_lon(ax, normalize_lon(b.x));
    let (x0, x1) = (ax.min(end), ax.max(end));
    let rect = |x0: f64, x1: f64| Rect::new(coord! { x: x0, y: lo }, coord! { x: x1, y: hi });
    if x0 < -180.0 {
        vec![rect(-180.0, x1), rect(x0 + 360.0, 180.0)]
    } else if x1 > 180.0 {
        vec![rect(x0, 180.0), rect(-180.0, x1 - 360.0)]
    } else {
        vec![rect(x0, x1)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use geo::{Distance, Haversine, Point};

    fn c(x: f64, y: f64) -> Coord {
        Coord { x, y }
    }

    #[test]
    fn haversine_matches_geo() {
        let (a, b) = (c(2.35, 48.85), c(-0.12, 51.5));
        let ours = haversine_m(a, b);
        let theirs = Haversine.distance(Point::from(a), Point::from(b));
        assert!((ours - theirs).abs() < 1e-6 * theirs);
    }

    #[test]
    fn antimeridian_hop_is_short() {
        let d = haversine_m(c(179.9, 0.0), c(-179.9, 0.0));
        assert!((d - 22_239.0).abs() < 10.0, "{d}");
        let d = point_arc_distance_m(c(180.0, 0.001), c(179.9, 0.0), c(-179.9, 0.0));
        assert!((d - 111.2).abs() < 0.5, "{d}");
    }

    #[test]
    fn destination_round_trip() {
        let o = c(170.0, 60.0);
        let p = destination(o, 90.0, 1_000_000.0);
        assert!(p.x > 180.0, "longitude stays unrolled: {p:?}");
        assert!((haversine_m(o, p) - 1_000_000.0).abs() < 1e-3);
        assert!((bearing(o, p) - 90.0).abs() < 1e-9);
    }

    #[test]
    fn arc_distance_inside_and_past_ends() {
        let (a, b) = (c(0.0, 0.0), c(1.0, 0.0));
        let d = point_arc_distance_m(c(0.5, 0.01), a, b);
        assert!((d - 0.01 * METRES_PER_DEGREE).abs() < 1e-3);
        let d = point_arc_distance_m(c(2.0, 0.0), a, b);
        assert!((d - METRES_PER_DEGREE).abs() < 1e-3);
    }

    #[test]
    fn lonlat_segment_distance() {
        let d = point_lonlat_segment_distance_m(c(10.5, 60.001), c(10.0, 60.0), c(11.0, 60.0));
        assert!((d - 0.001 * METRES_PER_DEGREE).abs() < 0.01, "{d}");
        // across the antimeridian: the edge is on the other side of the seam
        let d = point_lonlat_segment_distance_m(c(-179.999, 0.0), c(179.0, -1.0), c(179.0, 1.0));
        assert!((d - 1.001 * METRES_PER_DEGREE).abs() < 1.0, "{d}");
    }

    #[test]
    fn arc_bulges_poleward() {
        let (lo, hi) = arc_lat_range(c(0.0, 60.0), c(40.0, 60.0));
        assert!((lo - 60.0).abs() < 1e-9);
        assert!(hi > 61.0 && hi < 65.0, "{hi}");
        for (lon, want) in [(190.0, -170.0), (-180.0, -180.0), (540.0, -180.0), (12.5, 12.5)] {
            assert!((normalize_lon(lon) - want).abs() < 1e-12, "{lon}");
        }
    }
}
