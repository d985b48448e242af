//! Exact point-in-fence tests and metric distances to fence boundaries. A
//! [`PreparedFence`] is a validated, normalised fence ready for testing:
//! polygons use an even-odd crossing test over every ring (boundary counts as
//! inside) with robust orientation predicates; circles and corridors use
//! great-circle distances in metres. Signed distances to the boundary drive
//! hysteresis and accuracy gating in [`crate::state`].

use geo::{Coord, Kernel, MultiPolygon, Orientation, Rect, coord, kernels::RobustKernel};

use crate::error::FenceError;
use crate::fence::{Fence, FenceKind, FenceLimits, Position};
use crate::geodesy::{
    self, Arc, EARTH_RADIUS_M, arc_reach, haversine_m, point_lonlat_segment_dist2_deg,
    point_lonlat_segment_distance_m,
};
use crate::normalize::normalize_polygons;

/// Vertices per full turn when circles and corridor ends are drawn as polygons.
const ARC_STEPS: usize = 64;
/// Enlargement of drawn circles/corridors so the polygon contains the true shape
/// (chords fall inside arcs; lon/lat-straight chords bend off great circles).
const AREA_OVERSIZE: f64 = 1.04;
/// Most samples along one corridor segment (each becomes two vertices of its capsule).
const MAX_SEGMENT_SAMPLES: usize = 4096;

/// A ring of a normalised polygon: a slice of the fence's edge list and its bbox.
#[derive(Debug, Clone)]
pub(crate) struct Ring {
    pub bbox: Rect,
    pub edges: std::ops::Range<usize>,
}

/// The testable geometry of a fence.
#[derive(Debug, Clone)]
pub(crate) enum Shape {
    /// Normalised polygons, flattened into edges (straight in lon/lat).
    Area {
        rings: Vec<Ring>,
        edges: Vec<[Coord; 2]>,
    },
    /// Great-circle disc.
    Circle { centre: Coord, radius_m: f64 },
    /// Great-circle polyline with a buffer; `arcs` are its segments prepared
    /// for distance queries, `reach` is `arc_reach(buffer_m)`.
    Corridor {
        line: Vec<Coord>,
        arcs: Vec<Arc>,
        buffer_m: f64,
        reach: f64,
    },
}

/// A validated fence with its normalised geometry, ready for exact tests.
#[derive(Debug, Clone)]
pub struct PreparedFence {
    fence: Fence,
    pub(crate) shape: Shape,
    /// Polygons containing the fence, within [-180, 180]: the fence itself for
    /// polygon kinds, a slightly oversized drawing for circles and corridors.
    pub(crate) area: MultiPolygon,
    pub(crate) bboxes: Vec<Rect>,
}

impl PreparedFence {
    /// Validates and normalises a fence.
    pub fn new(fence: Fence, limits: &FenceLimits) -> Result<Self, FenceError> {
        fence.validate(limits)?;
        let (shape, area) = match &fence.kind {
            FenceKind::Polygon { rings } => {
                let mp = normalize_polygons(std::slice::from_ref(rings), limits.check_validity)?;
                (area_shape(&mp), mp)
            }
            FenceKind::MultiPolygon { polygons } => {
                let mp = normalize_polygons(polygons, limits.check_validity)?;
                (area_shape(&mp), mp)
            }
            FenceKind::Circle { centre, radius_m } => {
                let centre = coord! { x: geodesy::normalize_lon(centre[0]), y: centre[1] };
                let ring = circle_ring(centre, radius_m * AREA_OVERSIZE + 1.0);
                let area = normalize_polygons(&[vec![ring]], false)?;
                (
                    Shape::Circle {
                        centre,
                        radius_m: *radius_m,
                    },
                    area,
                )
            }
            FenceKind::Corridor { line, buffer_m } => {
                let line: Vec<Coord> = line
                    .iter()
                    .map(|&[x, y]| coord! { x: geodesy::normalize_lon(x), y: y })
                    .collect();
                let capsules: Vec<Vec<Vec<Position>>> = line
                    .windows(2)
                    .flat_map(|w| quarter_arcs(w[0], w[1]))
                    .map(|(a, b)| vec![capsule_ring(a, b, *buffer_m)])
                    .collect();
                let area = normalize_polygons(&capsules, false)?;
                let arcs = line.windows(2).map(|w| Arc::new(w[0], w[1])).collect();
                (
                    Shape::Corridor {
                        line,
                        arcs,
                        buffer_m: *buffer_m,
                        reach: arc_reach(*buffer_m),
                    },
                    area,
                )
            }
        };
        let bboxes = area
            .0
            .iter()
            .filter_map(geo::BoundingRect::bounding_rect)
            .collect();
        Ok(Self {
            fence,
            shape,
            area,
            bboxes,
        })
    }

    /// The fence definition.
    pub fn fence(&self) -> &Fence {
        &self.fence
    }

    /// The fence id.
    pub fn id(&self) -> &str {
        &self.fence.id
    }

    /// The fence's area as polygons within [-180, 180]: the normalised polygons,
    /// or for circles and corridors a drawing slightly larger than the true
    /// shape (corridor capsules may overlap), for bounding boxes and maps.
    pub fn area_polygon(&self) -> &MultiPolygon {
        &self.area
    }

    /// Bounding boxes of the parts of [`Self::area_polygon`].
    pub fn bboxes(&self) -> &[Rect] {
        &self.bboxes
    }

    /// [`Self::bboxes`] as boxes (none crosses the antimeridian: parts are split there).
    pub fn extents(&self) -> impl Iterator<Item = crate::Bbox> + '_ {
        self.bboxes
            .iter()
            .map(|r| crate::Bbox::covering([r.min().x, r.min().y, r.max().x, r.max().y]))
    }

    /// Whether `(lon, lat)` is in the fence; the boundary counts as inside.
    /// `lon` is used as given (call [`geodesy::normalize_lon`] first for
    /// longitudes outside [-180, 180]).
    pub fn contains(&self, lon: f64, lat: f64) -> bool {
        let p = coord! { x: lon, y: lat };
        match &self.shape {
            Shape::Area { rings, edges } => area_contains(rings, edges, p),
            Shape::Circle { centre, radius_m } => circle_contains(*centre, *radius_m, p),
            Shape::Corridor {
                arcs,
                buffer_m,
                reach,
                ..
            } => corridor_contains(arcs, *buffer_m, *reach, p),
        }
    }

    /// Signed distance in metres from `(lon, lat)` to the fence boundary:
    /// negative or zero inside, positive outside. Polygon parts cut at ±180 or
    /// closed along a pole do not count as boundary there.
    pub fn signed_distance_m(&self, lon: f64, lat: f64) -> f64 {
        let p = coord! { x: lon, y: lat };
        match &self.shape {
            Shape::Area { rings, edges } => {
                let d = area_boundary_distance_m(edges, p);
                if area_contains(rings, edges, p) { -d } else { d }
            }
            Shape::Circle { centre, radius_m } => haversine_m(*centre, p) - radius_m,
            Shape::Corridor { arcs, buffer_m, .. } => corridor_distance_m(arcs, p) - buffer_m,
        }
    }

    /// Inside, at least `margin_m` metres from the boundary.
    pub fn inside_by(&self, lon: f64, lat: f64, margin_m: f64) -> bool {
        self.signed_distance_m(lon, lat) <= -margin_m
    }

    /// Outside, more than `margin_m` metres from the boundary.
    pub fn outside_by(&self, lon: f64, lat: f64, margin_m: f64) -> bool {
        self.signed_distance_m(lon, lat) > margin_m
    }

    /// Whether the lon/lat point is within one of the bounding boxes.
    pub(crate) fn bbox_contains(&self, p: Coord) -> bool {
        self.bboxes.iter().any(|b| rect_contains(b, p))
    }
}

/// Whether `p` is in the circle (great-circle distance, rim included): the one test of a circle,
/// which the index also runs from its dense array.
pub(crate) fn circle_contains(centre: Coord, radius_m: f64, p: Coord) -> bool {
    haversine_m(centre, p) <= radius_m
}

pub(crate) fn rect_contains(b: &Rect, p: Coord) -> bool {
    p.x >= b.min().x && p.x <= b.max().x && p.y >= b.min().y && p.y <= b.max().y
}

fn area_shape(mp: &MultiPolygon) -> Shape {
    let mut rings = Vec::new();
    let mut edges = Vec::new();
    for polygon in mp {
        for ring in std::iter::once(polygon.exterior()).chain(polygon.interiors()) {
            let start = edges.len();
            edges.extend(ring.lines().map(|l| [l.start, l.end]));
            if let Some(bbox) = geo::BoundingRect::bounding_rect(ring) {
                rings.push(Ring {
                    bbox,
                    edges: start..edges.len(),
                });
            }
        }
    }
    Shape::Area { rings, edges }
}

/// Whether `p` lies on the segment `a`-`b` (exactly, with robust orientation).
pub(crate) fn on_segment(a: Coord, b: Coord, p: Coord) -> bool {
    p.x >= a.x.min(b.x)
        && p.x <= a.x.max(b.x)
        && p.y >= a.y.min(b.y)
        && p.y <= a.y.max(b.y)
        && RobustKernel::orient2d(a, b, p) == Orientation::Collinear
}

/// Whether the ray from `p` towards +x crosses the edge `a`-`b` (half-open in y).
pub(crate) fn ray_crosses(a: Coord, b: Coord, p: Coord) -> bool {
    if (a.y > p.y) == (b.y > p.y) {
        return false;
    }
    let o = RobustKernel::orient2d(a, b, p);
    if b.y > a.y {
        o == Orientation::CounterClockwise
    } else {
        o == Orientation::Clockwise
    }
}

fn area_contains(rings: &[Ring], edges: &[[Coord; 2]], p: Coord) -> bool {
    let mut inside = false;
    for ring in rings {
        if !rect_contains(&ring.bbox, p) {
            // Outside a ring's bbox the ray crosses that closed ring an even number of times.
            continue;
        }
        for &[a, b] in &edges[ring.edges.clone()] {
            if on_segment(a, b, p) {
                return true;
            }
            if ray_crosses(a, b, p) {
                inside = !inside;
            }
        }
    }
    inside
}

/// Whether the edge is an artefact of normalisation (on the ±180 cut or the pole line).
fn is_artificial(a: Coord, b: Coord) -> bool {
    #[allow(clippy::float_cmp)] // exact: normalisation writes these values exactly
    let on = |u: f64, v: f64, m: f64| u.abs() == m && u == v;
    on(a.x, b.x, 180.0) || on(a.y, b.y, 90.0)
}

fn area_boundary_distance_m(edges: &[[Coord; 2]], p: Coord) -> f64 {
    let mut best: Option<(f64, [Coord; 2])> = None;
    for &[a, b] in edges {
        if is_artificial(a, b) {
            continue;
        }
        let d2 = point_lonlat_segment_dist2_deg(p, a, b);
        if best.is_none_or(|(bd, _)| d2 < bd) {
            best = Some((d2, [a, b]));
        }
    }
    best.map_or(f64::INFINITY, |(_, [a, b])| {
        point_lonlat_segment_distance_m(p, a, b)
    })
}

pub(crate) fn corridor_distance_m(arcs: &[Arc], p: Coord) -> f64 {
    let vp = geodesy::unit_vector(p);
    arcs.iter()
        .map(|arc| arc.distance_m(vp))
        .fold(f64::INFINITY, f64::min)
}

/// `corridor_distance_m(arcs, p) <= buffer_m`, computed to the same bit, but
/// skipping the trigonometry for segments whose great circle is already too far.
pub(crate) fn corridor_contains(arcs: &[Arc], buffer_m: f64, reach: f64, p: Coord) -> bool {
    let vp = geodesy::unit_vector(p);
    arcs.iter()
        .any(|arc| !arc.certainly_beyond(vp, reach) && arc.distance_m(vp) <= buffer_m)
}

/// Appends `p` to an unrolled ring, keeping its longitude continuous with the last vertex.
fn push_unrolled(ring: &mut Vec<Position>, p: Coord) {
    let x = match ring.last() {
        Some(last) => last[0] + geodesy::delta_lon(last[0], p.x),
        None => p.x,
    };
    ring.push([x, p.y]);
}

/// Closes an unrolled ring: back to the first vertex, 360° away if it went around a pole.
fn close_unrolled(ring: &mut Vec<Position>) {
    if let (Some(&first), Some(&last)) = (ring.first(), ring.last()) {
        let x = last[0] + geodesy::delta_lon(last[0], first[0]);
        // Exactly whole turns from the first vertex: the summed steps miss by rounding, and a
        // circle centred on -180 that goes around a pole ended at 179.99999999999997, so the
        // index missed its points at longitude 180 (found by `tests/fuzz.rs`).
        let x = first[0] + 360.0 * ((x - first[0]) / 360.0).round();
        ring.push([x, first[1]]);
    }
}

fn circle_ring(centre: Coord, radius_m: f64) -> Vec<Position> {
    let r = radius_m / (std::f64::consts::PI / ARC_STEPS as f64).cos();
    let r = r.min(EARTH_RADIUS_M * std::f64::consts::PI * 0.999);
    let mut ring = Vec::with_capacity(ARC_STEPS + 1);
    for i in 0..ARC_STEPS {
        push_unrolled(
            &mut ring,
            geodesy::destination(centre, 360.0 * i as f64 / ARC_STEPS as f64, r),
        );
    }
    close_unrolled(&mut ring);
    ring
}

/// How many pieces the offsets of a segment of `len` metres are drawn in: pieces no longer
/// than `r` (up to 64), and short enough that a straight lon/lat chord, which strays from its
/// great circle by about `c²·tan φ / 8R`, stays within half the drawing's `slack`: long segments
/// of thin corridors at high latitude were drawn too small and the index missed points the
/// exact test found (found by `tests/fuzz.rs`).
fn segment_samples(a: Coord, b: Coord, len: f64, r: f64, slack: f64) -> usize {
    let (south, north) = geodesy::arc_lat_range(a, b);
    let reach = (r / EARTH_RADIUS_M).to_degrees();
    let lat = (south.abs().max(north.abs()) + reach).min(89.99);
    let tan = lat.to_radians().tan().max(1e-9);
    let chord = (4.0 * EARTH_RADIUS_M * slack / tan).sqrt();
    let by_buffer = (len / r.max(1.0)).ceil().min(64.0);
    let by_bend = (len / chord).ceil();
    (by_buffer.max(by_bend) as usize).clamp(1, MAX_SEGMENT_SAMPLES)
}

/// The segment `a`-`b` as arcs of at most 90°, to be drawn one capsule each: the capsule of a
/// longer segment may hold both poles, which no ring in lon/lat outlines (its complement was
/// drawn, and the index missed the corridor; found by `tests/fuzz.rs`).
fn quarter_arcs(a: Coord, b: Coord) -> Vec<(Coord, Coord)> {
    let k = (haversine_m(a, b) / (EARTH_RADIUS_M * std::f64::consts::FRAC_PI_2)).ceil() as usize;
    if k <= 1 {
        return vec![(a, b)];
    }
    let at = |i: usize| match i {
        0 => a,
        i if i == k => b,
        i => geodesy::interpolate(a, b, i as f64 / k as f64),
    };
    (0..k).map(|i| (at(i), at(i + 1))).collect()
}

/// A polygon holding everything within `buffer_m` of the great-circle segment `a`-`b`, drawn a
/// little larger (`AREA_OVERSIZE` and 1 m): offsets on both sides plus half circles at the ends.
fn capsule_ring(a: Coord, b: Coord, buffer_m: f64) -> Vec<Position> {
    let drawn = buffer_m * AREA_OVERSIZE + 1.0;
    let r = drawn / (std::f64::consts::PI / ARC_STEPS as f64).cos();
    let len = haversine_m(a, b);
    let n = segment_samples(a, b, len, r, drawn - buffer_m);
    let samples: Vec<Coord> = (0..=n)
        .map(|i| geodesy::interpolate(a, b, i as f64 / n as f64))
        .collect();
    let heading = |i: usize| {
        if len < 1e-6 {
            0.0
        } else if i < n {
            geodesy::bearing(samples[i], samples[i + 1])
        } else {
            // The heading at the end itself (back-bearing plus 180°), not the one at the last
            // sample before it: near a pole the two differ by up to 180° and the drawing missed
            // the end cap (found by `tests/fuzz.rs`).
            geodesy::bearing(samples[n], samples[n - 1]) + 180.0
        }
    };
    let mut ring = Vec::with_capacity(2 * n + ARC_STEPS + 4);
    // Left side forward, end cap, right side back, start cap.
    for (i, &s) in samples.iter().enumerate() {
        push_unrolled(&mut ring, geodesy::destination(s, heading(i) - 90.0, r));
    }
    let half = ARC_STEPS / 2;
    let end_heading = if len < 1e-6 {
        0.0
    } else {
        geodesy::bearing(b, a) + 180.0
    };
    for k in 1..half {
        let brg = end_heading - 90.0 + 180.0 * k as f64 / half as f64;
        push_unrolled(&mut ring, geodesy::destination(b, brg, r));
    }
    for (i, &s) in samples.iter().enumerate().rev() {
        push_unrolled(&mut ring, geodesy::destination(s, heading(i) + 90.0, r));
    }
    let start_heading = heading(0);
    for k in 1..half {
        let brg = start_heading + 90.0 + 180.0 * k as f64 / half as f64;
        push_unrolled(&mut ring, geodesy::destination(a, brg, r));
    }
    close_unrolled(&mut ring);
    ring
}

#[cfg(test)]
mod tests {
    use super::*;
    use geo::{Intersects, Point};

    fn prep(kind: FenceKind) -> PreparedFence {
        PreparedFence::new(Fence::new("t", "t", kind), &FenceLimits::default()).expect("valid fence")
    }

    fn square_with_hole() -> FenceKind {
        FenceKind::Polygon {
            rings: vec![
                vec![[0.0, 0.0], [10.0, 0.0], [10.0, 10.0], [0.0, 10.0], [0.0, 0.0]],
                vec![[4.0, 4.0], [6.0, 4.0], [6.0, 6.0], [4.0, 6.0], [4.0, 4.0]],
            ],
        }
    }

    #[test]
    fn polygon_with_hole_matches_geo_intersects() {
        let f = prep(square_with_hole());
        let mp = f.area_polygon().clone();
        for (x, y) in [
            (1.0, 1.0),
            (5.0, 5.0),
            (0.0, 5.0),
            (4.0, 5.0),
            (10.0, 10.0),
            (11.0, 5.0),
            (6.0, 6.0),
            (3.9, 5.0),
        ] {
            assert_eq!(f.contains(x, y), mp.intersects(&Point::new(x, y)), "({x}, {y})");
        }
        assert!(!f.contains(5.0, 5.0));
        assert!(f.contains(4.0, 5.0), "hole boundary is fence boundary");
    }

    #[test]
    fn multipolygon_parts() {
        let f = prep(FenceKind::MultiPolygon {
            polygons: vec![
                vec![vec![[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 0.0]]],
                vec![vec![[5.0, 5.0], [6.0, 5.0], [6.0, 6.0], [5.0, 6.0], [5.0, 5.0]]],
            ],
        });
        assert!(f.contains(0.5, 0.5) && f.contains(5.5, 5.5));
        assert!(!f.contains(3.0, 3.0));
        assert_eq!(f.bboxes().len(), 2);
    }

    #[test]
    fn polygon_signed_distance() {
        let f = prep(square_with_hole());
        let d = f.signed_distance_m(2.0, 5.0);
        assert!((d + 2.0 * 111_000.0).abs() < 1_000.0, "{d}");
        let d = f.signed_distance_m(5.0, 5.0);
        assert!(
            (d - 111_100.0).abs() < 1_000.0,
            "centre of the hole is outside by ~1°: {d}"
        );
        assert!(f.inside_by(2.0, 5.0, 100_000.0) && !f.inside_by(2.0, 5.0, 300_000.0));
        assert!(f.outside_by(12.0, 5.0, 100_000.0));
    }

    #[test]
    fn circle_uses_geodesic_distance() {
        let f = prep(FenceKind::Circle {
            centre: [2.35, 48.85],
            radius_m: 1_000.0,
        });
        let east = geodesy::destination(coord! { x: 2.35, y: 48.85 }, 90.0, 999.0);
        let out = geodesy::destination(coord! { x: 2.35, y: 48.85 }, 90.0, 1_001.0);
        assert!(f.contains(east.x, east.y) && !f.contains(out.x, out.y));
        assert!((f.signed_distance_m(2.35, 48.85) + 1_000.0).abs() < 1e-6);
        // the drawn polygon contains the circle
        assert!(f.area_polygon().intersects(&Point::new(out.x, out.y)));
    }

    #[test]
    fn circle_across_antimeridian_and_pole() {
        let f = prep(FenceKind::Circle {
            centre: [179.99, 10.0],
            radius_m: 5_000.0,
        });
        assert!(f.contains(-179.99, 10.0));
        assert_eq!(f.bboxes().len(), 2);
        let f = prep(FenceKind::Circle {
            centre: [30.0, 89.0],
            radius_m: 300_000.0,
        });
        assert!(f.contains(-150.0, 89.5) && f.contains(0.0, 90.0));
        assert!(f.area_polygon().intersects(&Point::new(-150.0, 89.5)));
        assert!(f.area_polygon().intersects(&Point::new(100.0, 88.0)));
    }

    #[test]
    fn corridor_distance_and_antimeridian() {
        let f = prep(FenceKind::Corridor {
            line: vec![[179.9, 0.0], [-179.9, 0.0]],
            buffer_m: 100.0,
        });
        assert!(f.contains(180.0, 0.0005));
        assert!(f.contains(-180.0, -0.0008));
        assert!(!f.contains(180.0, 0.001));
        assert!(!f.contains(0.0, 0.0), "the short way, not around the world");
        let d = f.signed_distance_m(180.0, 0.001);
        assert!((d - 11.2).abs() < 0.5, "{d}");
        for [x, y] in [[180.0, 0.0009], [179.95, 0.0], [-179.95, 0.0], [179.9, 0.0009]] {
            assert!(f.area_polygon().intersects(&Point::new(x, y)), "{x} {y}");
        }
    }

    /// The trig-free rejection in `corridor_contains` must never change an
    /// answer: compared with the plain minimum of per-segment distances, on
    /// points within a hair of the buffer, for long, short and degenerate
    /// segments, near the antimeridian and the poles.
    #[test]
    fn corridor_contains_agrees_with_the_plain_distance() {
        use rand::{Rng, SeedableRng, rngs::StdRng};
        let mut rng = StdRng::seed_from_u64(11);
        for _ in 0..2_000 {
            let a = coord! { x: rng.random_range(-180.0..180.0), y: rng.random_range(-89.0..89.0) };
            let len = 10f64.powf(rng.random_range(-9.0..1.5));
            let b = coord! {
                x: a.x + rng.random_range(-len..len),
                y: (a.y + rng.random_range(-len..len)).clamp(-89.5, 89.5),
            };
            let buffer_m = 10f64.powf(rng.random_range(0.0..6.0));
            let f = prep(FenceKind::Corridor {
                line: vec![[a.x, a.y], [b.x, b.y]],
                buffer_m,
            });
            for _ in 0..20 {
                let on = geodesy::interpolate(a, b, rng.random_range(-0.2..1.2));
                let off = buffer_m * (1.0 + rng.random_range(-1e-6..1e-6)) + rng.random_range(-0.1..0.1);
                let p = geodesy::destination(on, rng.random_range(0.0..360.0), off);
                let p = coord! { x: geodesy::normalize_lon(p.x), y: p.y };
                let plain = geodesy::point_arc_distance_m(p, a, b) <= buffer_m;
                assert_eq!(f.contains(p.x, p.y), plain, "{a:?} {b:?} {buffer_m} at {p:?}");
            }
        }
    }
}
