//! Helpers shared by the integration tests: loading the Natural Earth countries
//! and generating random fences and points (seeded, so runs are reproducible).

#![allow(dead_code)] // each test binary uses a different subset
#![allow(clippy::many_single_char_names, clippy::similar_names)] // geometry generators: x, y, a, b, t

use fences::{Fence, FenceKind, FenceLimits, Position, PreparedFence};
use rand::{Rng, rngs::StdRng};

/// Natural Earth 1:110m countries as prepared fences (validity checks off: the
/// quantised rings self-intersect in places).
pub fn countries() -> Vec<PreparedFence> {
    countries_from(include_str!("../data/ne_110m_countries.geojson"))
}

/// The countries of a GeoJSON FeatureCollection (named by `properties.name`) as
/// prepared fences, validity checks off; those that do not load are left out.
pub fn countries_from(text: &str) -> Vec<PreparedFence> {
    let fc: geojson::FeatureCollection = text.parse().expect("valid GeoJSON");
    let limits = FenceLimits {
        check_validity: false,
        ..FenceLimits::default()
    };
    fc.features
        .into_iter()
        .filter_map(|f| {
            let name = f
                .property("name")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned();
            let kind = match f.geometry?.value {
                geojson::Value::Polygon(rings) => FenceKind::Polygon {
                    rings: to_rings(rings),
                },
                geojson::Value::MultiPolygon(polys) => FenceKind::MultiPolygon {
                    polygons: polys.into_iter().map(to_rings).collect(),
                },
                _ => return None,
            };
            // A hole crossing the antimeridian looks like a ring around a pole once unrolled
            // (one at 1:50m); such a country is left out.
            PreparedFence::new(Fence::new(name.clone(), name, kind), &limits).ok()
        })
        .collect()
}

/// world-atlas rings follow d3's spherical convention (an edge from 178.6 to
/// -180 is a short hop east), while fences take edges literally. Unroll such
/// rings so their longitudes are continuous (beyond ±180 where they cross it),
/// as GeoJSON writes them; the fence normaliser then cuts them at ±180, and a
/// ring that ends 360° from where it started (Antarctica) is closed along the pole.
fn to_rings(rings: Vec<Vec<Vec<f64>>>) -> Vec<Vec<Position>> {
    rings
        .into_iter()
        .map(|r| {
            let mut out: Vec<Position> = Vec::with_capacity(r.len());
            for p in r {
                let x = match out.last() {
                    Some(last) => last[0] + fences::geodesy::delta_lon(last[0], p[0]),
                    None => p[0],
                };
                out.push([x, p[1]]);
            }
            out
        })
        .collect()
}

/// A star-shaped ring (simple by construction) around `(cx, cy)`, longitudes unrolled.
pub fn star(rng: &mut StdRng, cx: f64, cy: f64, r_min: f64, r_max: f64, max_n: usize) -> Vec<Position> {
    let count = rng.random_range(max_n.clamp(3, 5)..=max_n);
    let mut ring: Vec<Position> = (0..count)
        .map(|i| {
            let t = std::f64::consts::TAU * (i as f64 + rng.random_range(0.0..0.8)) / count as f64;
            let r = rng.random_range(r_min..r_max);
            [cx + r * t.cos(), (cy + r * t.sin()).clamp(-89.9, 89.9)]
        })
        .collect();
    ring.push(ring[0]);
    ring
}

/// A random centre: anywhere, near the antimeridian, or near a pole.
pub fn centre(rng: &mut StdRng) -> (f64, f64) {
    match rng.random_range(0..4) {
        0 => (rng.random_range(-180.0..180.0), rng.random_range(-70.0..70.0)),
        1 => (rng.random_range(177.0..183.0), rng.random_range(-60.0..60.0)),
        2 => (rng.random_range(-180.0..180.0), rng.random_range(75.0..88.0)),
        _ => (rng.random_range(-180.0..180.0), rng.random_range(-88.0..-75.0)),
    }
}

/// A random fence of any kind near `centre`, with `size` in degrees.
pub fn random_fence(rng: &mut StdRng, id: usize) -> PreparedFence {
    let (cx, cy) = centre(rng);
    let size = 10f64.powf(rng.random_range(-3.0..0.7));
    let kind = match rng.random_range(0..5) {
        0 => FenceKind::Polygon {
            rings: vec![star(rng, cx, cy, size * 0.6, size, 12)],
        },
        1 => FenceKind::Polygon {
            rings: vec![
                star(rng, cx, cy, size * 0.6, size, 12),
                star(rng, cx, cy, size * 0.05, size * 0.2, 8),
            ],
        },
        2 => {
            let dx = size * 2.5;
            FenceKind::MultiPolygon {
                polygons: vec![
                    vec![star(rng, cx, cy, size * 0.5, size, 6)],
                    vec![
                        star(rng, cx + dx, cy, size * 0.5, size, 5),
                        star(rng, cx + dx, cy, size * 0.1, size * 0.3, 4),
                    ],
                ],
            }
        }
        3 => FenceKind::Circle {
            centre: [cx, cy],
            radius_m: size * 50_000.0,
        },
        _ => {
            let mut line = vec![[cx, cy]];
            for _ in 0..rng.random_range(1..4) {
                let [x, y] = line[line.len() - 1];
                line.push([
                    x + rng.random_range(-size..size),
                    (y + rng.random_range(-size..size)).clamp(-89.0, 89.0),
                ]);
            }
            FenceKind::Corridor {
                line,
                buffer_m: size * 10_000.0,
            }
        }
    };
    // Clamping near the poles can still push a hole out of its shell: fall back to a circle.
    PreparedFence::new(Fence::new(format!("f{id}"), "", kind), &FenceLimits::default()).unwrap_or_else(|_| {
        let kind = FenceKind::Circle {
            centre: [cx, cy],
            radius_m: size * 50_000.0,
        };
        PreparedFence::new(Fence::new(format!("f{id}"), "", kind), &FenceLimits::default())
            .expect("circle is valid")
    })
}

/// Random points around a fence: near its vertices and edges (down to 1e-9°
/// away), inside its bounding boxes, and around it.
pub fn points_near(rng: &mut StdRng, fence: &PreparedFence, n: usize) -> Vec<(f64, f64)> {
    let area = fence.area_polygon();
    let coords: Vec<geo::Coord> = area
        .0
        .iter()
        .flat_map(|p| {
            p.exterior()
                .0
                .iter()
                .chain(p.interiors().iter().flat_map(|r| r.0.iter()))
        })
        .copied()
        .collect();
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let (x, y) = match rng.random_range(0..4) {
            0 | 1 => {
                // near a boundary: on an edge of the area polygon or of the fence itself, jittered
                let (a, b) = match &fence.fence().kind {
                    FenceKind::Circle { centre, radius_m } => {
                        let p = fences::geodesy::destination(
                            geo::coord! { x: centre[0], y: centre[1] },
                            rng.random_range(0.0..360.0),
                            *radius_m,
                        );
                        (p, p)
                    }
                    FenceKind::Corridor { line, buffer_m } => {
                        let i = rng.random_range(0..line.len() - 1);
                        let a = geo::coord! { x: line[i][0], y: line[i][1] };
                        let b = geo::coord! { x: line[i + 1][0], y: line[i + 1][1] };
                        let on = fences::geodesy::interpolate(a, b, rng.random_range(-0.05..1.05));
                        let side = if rng.random_bool(0.5) { 90.0 } else { -90.0 };
                        let p = fences::geodesy::destination(
                            on,
                            fences::geodesy::bearing(a, b) + side,
                            *buffer_m,
                        );
                        (p, p)
                    }
                    FenceKind::Polygon { .. } | FenceKind::MultiPolygon { .. } => {
                        let i = rng.random_range(0..coords.len().max(2) - 1);
                        (coords[i], coords[(i + 1) % coords.len()])
                    }
                };
                let t: f64 = rng.random();
                let jitter = 10f64.powf(rng.random_range(-9.0..-2.0));
                (
                    a.x + t * (b.x - a.x) + rng.random_range(-jitter..jitter),
                    a.y + t * (b.y - a.y) + rng.random_range(-jitter..jitter),
                )
            }
            2 => {
                let b = fence.bboxes()[rng.random_range(0..fence.bboxes().len())];
                (
                    rng.random_range(b.min().x..=b.max().x),
                    rng.random_range(b.min().y..=b.max().y),
                )
            }
            _ => {
                let b = fence.bboxes()[0];
                let w = (b.max().x - b.min().x).max(0.01);
                let h = (b.max().y - b.min().y).max(0.01);
                (
                    rng.random_range(b.min().x - w..b.max().x + w),
                    rng.random_range(b.min().y - h..b.max().y + h),
                )
            }
        };
        out.push((fences::geodesy::normalize_lon(x), y.clamp(-90.0, 90.0)));
    }
    out
}
