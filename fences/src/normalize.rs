//! Normalisation of polygon geometry as clients write it into a `MultiPolygon`
//! inside [-180, 180] × [-90, 90] whose edges are straight in lon/lat:
//! polygons written across the antimeridian (longitudes beyond ±180, e.g. a
//! ring from 170 to 190) are cut at ±180 into parts; rings that go around a
//! pole are closed along ±90. Edges are taken literally: a longitude jump is
//! never reinterpreted as "the short way round", the only special edge is one
//! joining the same point on Earth 360° apart (a pole seam). The cut uses geo's
//! boolean operations, which snap coordinates to a grid of about 1e-7° (1 cm):
//! polygons that need no cut are returned untouched.

use geo::{BooleanOps, Coord, LineString, MultiPolygon, Polygon, Rect, coord};

use crate::error::FenceError;
use crate::fence::{Position, is_pole_seam};

const EPS: f64 = 1e-9;
/// geo's boolean operations work on a snapped integer grid (about 1e-7° here);
/// vertices this close to ±180 after the cut are put back on the meridian.
const CUT_SNAP: f64 = 1e-6;

/// Normalises polygons (each a list of rings of positions, exterior first).
/// `check_validity` rejects self-intersecting rings and overlapping parts, tested
/// before the antimeridian cut (after closing pole rings).
pub fn normalize_polygons(
    polygons: &[Vec<Vec<Position>>],
    check_validity: bool,
) -> Result<MultiPolygon, FenceError> {
    let mut raw = Vec::with_capacity(polygons.len());
    for (pi, rings) in polygons.iter().enumerate() {
        let Some((exterior, holes)) = rings.split_first() else {
            return Err(FenceError::EmptyGeometry);
        };
        let exterior = close_pole_ring(exterior, pi)?;
        let holes = holes
            .iter()
            .enumerate()
            .map(|(hi, h)| {
                let ring = closed_ring(h);
                if ring.lines().any(|l| is_pole_seam(l.start.into(), l.end.into())) {
                    Err(FenceError::PoleRing(format!(
                        "polygon {pi} hole {hi} goes around a pole; only exterior rings may"
                    )))
                } else {
                    Ok(ring)
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        raw.push(Polygon::new(exterior, holes));
    }
    let raw = MultiPolygon::new(raw);
    if check_validity {
        crate::validity::check(&raw)?;
    }
    Ok(split_antimeridian(raw))
}

fn closed_ring(ring: &[Position]) -> LineString {
    let mut coords: Vec<Coord> = ring.iter().map(|&[x, y]| coord! { x: x, y: y }).collect();
    if let (Some(&first), Some(&last)) = (coords.first(), coords.last())
        && first != last
    {
        coords.push(first);
    }
    LineString::new(coords)
}

/// Replaces the single pole seam of an exterior ring, if any, by a detour along
/// the nearer pole (the one on the side of the ring's mean latitude).
fn close_pole_ring(ring: &[Position], polygon: usize) -> Result<LineString, FenceError> {
    let ring = closed_ring(ring);
    let seams: Vec<usize> = ring
        .lines()
        .enumerate()
        .filter(|(_, l)| is_pole_seam(l.start.into(), l.end.into()))
        .map(|(i, _)| i)
        .collect();
    let [seam] = seams[..] else {
        if seams.is_empty() {
            return Ok(ring);
        }
        return Err(FenceError::PoleRing(format!(
            "polygon {polygon} exterior ring has {} edges spanning 360° of longitude, at most one is allowed",
            seams.len()
        )));
    };
    let n = ring.0.len() - 1;
    let mean_lat = ring.0[..n].iter().map(|c| c.y).sum::<f64>() / n as f64;
    if mean_lat.abs() < EPS {
        return Err(FenceError::PoleRing(format!(
            "polygon {polygon} goes around the Earth along the equator; which pole it encloses is ambiguous"
        )));
    }
    let pole = 90.0_f64.copysign(mean_lat);
    let (a, b) = (ring.0[seam], ring.0[seam + 1]);
    let mut coords = Vec::with_capacity(ring.0.len() + 2);
    coords.extend_from_slice(&ring.0[..=seam]);
    coords.push(coord! { x: a.x, y: pole });
    coords.push(coord! { x: b.x, y: pole });
    coords.extend_from_slice(&ring.0[seam + 1..]);
    Ok(LineString::new(coords))
}

/// Cuts polygons that extend beyond ±180 into parts within [-180, 180].
fn split_antimeridian(raw: MultiPolygon) -> MultiPolygon {
    let mut out = Vec::with_capacity(raw.0.len());
    for polygon in raw {
        let (min_x, max_x) = polygon
            .exterior()
            .coords()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), c| {
                (lo.min(c.x), hi.max(c.x))
            });
        if min_x >= -180.0 && max_x <= 180.0 {
            out.push(polygon);
            continue;
        }
        let k_min = ((min_x + 180.0) / 360.0).floor() as i32;
        let k_max = ((max_x + 180.0) / 360.0).ceil() as i32 - 1;
        // The parts of a ring around a pole also meet on the meridian of its pole seam, where
        // geo's grid left them up to ~1e-7° apart: a sliver in no part, missed by the index for
        // circles (found by `tests/fuzz.rs`). Part vertices that close to the meridian of a
        // vertex on the pole (one end of the seam is always within ±180) go back on it.
        let mut seams: Vec<f64> = polygon
            .exterior()
            .coords()
            .filter(|c| c.y.abs() >= 90.0 && c.x.abs() <= 180.0)
            .map(|c| c.x)
            .collect();
        seams.sort_by(f64::total_cmp);
        let seam_near = |x: f64| {
            let i = seams.partition_point(|&m| m < x);
            [i.checked_sub(1), Some(i)]
                .into_iter()
                .flatten()
                .filter_map(|i| seams.get(i).copied())
                .find(|m| (m - x).abs() < CUT_SNAP)
        };
        for k in k_min..=k_max {
            let shift = 360.0 * f64::from(k);
            let strip = Rect::new(
                coord! { x: shift - 180.0, y: -90.0 },
                coord! { x: shift + 180.0, y: 90.0 },
            )
            .to_polygon();
            for mut part in polygon.intersection(&strip) {
                let fix = |ring: &mut LineString| {
                    for c in ring.coords_mut() {
                        c.x -= shift;
                        if (c.x - 180.0).abs() < CUT_SNAP {
                            c.x = 180.0;
                        } else if (c.x + 180.0).abs() < CUT_SNAP {
                            c.x = -180.0;
                        } else if let Some(seam) = seam_near(c.x) {
                            c.x = seam;
                        }
                    }
                };
                part.exterior_mut(fix);
                part.interiors_mut(|holes| holes.iter_mut().for_each(fix));
                out.push(part);
            }
        }
    }
    MultiPolygon::new(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use geo::{Area, BoundingRect, Contains, Point};

    fn bbox(mp: &MultiPolygon) -> Rect {
        mp.bounding_rect().expect("non-empty")
    }

    #[test]
    fn plain_polygon_is_unchanged() {
        let ring = vec![[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]];
        let mp = normalize_polygons(&[vec![ring]], true).expect("valid");
        assert_eq!(mp.0.len(), 1);
        assert_eq!(mp.0[0].exterior().0.len(), 4);
    }

    #[test]
    fn antimeridian_ring_is_split() {
        let ring = vec![
            [170.0, -10.0],
            [190.0, -10.0],
            [190.0, 10.0],
            [170.0, 10.0],
            [170.0, -10.0],
        ];
        let hole = vec![
            [175.0, -1.0],
            [185.0, -1.0],
            [185.0, 1.0],
            [175.0, 1.0],
            [175.0, -1.0],
        ];
        let mp = normalize_polygons(&[vec![ring, hole]], true).expect("valid");
        assert_eq!(mp.0.len(), 2);
        let b = bbox(&mp);
        assert!((b.min().x + 180.0).abs() < 1e-12 && (b.max().x - 180.0).abs() < 1e-12);
        assert!((mp.unsigned_area() - (20.0 * 20.0 - 10.0 * 2.0)).abs() < 1e-9);
        assert!(mp.contains(&Point::new(-175.0, 5.0)));
        assert!(mp.contains(&Point::new(172.0, 5.0)));
        assert!(!mp.contains(&Point::new(-178.0, 0.0)), "hole survives the cut");
        assert!(!mp.contains(&Point::new(0.0, 0.0)), "no band across the map");
    }

    #[test]
    fn west_side_crossing_is_split_too() {
        let ring = vec![
            [-190.0, 0.0],
            [-170.0, 0.0],
            [-170.0, 5.0],
            [-190.0, 5.0],
            [-190.0, 0.0],
        ];
        let mp = normalize_polygons(&[vec![ring]], true).expect("valid");
        assert_eq!(mp.0.len(), 2);
        assert!(mp.contains(&Point::new(175.0, 2.0)));
    }

    #[test]
    fn already_split_parts_stay() {
        let east = vec![
            [170.0, 0.0],
            [180.0, 0.0],
            [180.0, 5.0],
            [170.0, 5.0],
            [170.0, 0.0],
        ];
        let west = vec![
            [-180.0, 0.0],
            [-170.0, 0.0],
            [-170.0, 5.0],
            [-180.0, 5.0],
            [-180.0, 0.0],
        ];
        let mp = normalize_polygons(&[vec![east], vec![west]], true).expect("valid");
        assert_eq!(mp.0.len(), 2);
        assert!(!mp.contains(&Point::new(0.0, 2.0)));
    }

    #[test]
    fn pole_ring_is_closed_along_the_pole() {
        // A cap north of 80°, written as a ring going once around the pole.
        let ring: Vec<Position> = (0..=8).map(|i| [-180.0 + 45.0 * f64::from(i), 80.0]).collect();
        let mp = normalize_polygons(&[vec![ring]], true).expect("valid");
        assert!(mp.contains(&Point::new(0.0, 85.0)));
        assert!(mp.contains(&Point::new(179.0, 89.0)));
        assert!(!mp.contains(&Point::new(0.0, 75.0)));
        // The same ring explicitly closed with a 360° edge, going westward, in the south.
        let ring: Vec<Position> = (0..=8)
            .map(|i| [180.0 - 45.0 * f64::from(i), -70.0])
            .chain(std::iter::once([180.0, -70.0]))
            .collect();
        let mp = normalize_polygons(&[vec![ring]], true).expect("valid");
        assert!(mp.contains(&Point::new(10.0, -80.0)));
        assert!(!mp.contains(&Point::new(10.0, -60.0)));
    }

    #[test]
    fn pole_ring_crossing_the_seam_is_unrolled_and_cut() {
        // Starts at 100°E and goes once around the north pole eastwards.
        let ring: Vec<Position> = (0..=8).map(|i| [100.0 + 45.0 * f64::from(i), 70.0]).collect();
        let mp = normalize_polygons(&[vec![ring]], true).expect("valid");
        let b = bbox(&mp);
        assert!(b.min().x >= -180.0 && b.max().x <= 180.0);
        for lon in [-170.0, -90.0, 0.0, 99.0, 101.0, 179.0] {
            assert!(mp.contains(&Point::new(lon, 80.0)), "{lon}");
            assert!(!mp.contains(&Point::new(lon, 60.0)), "{lon}");
        }
    }

    #[test]
    fn self_intersection_is_reported() {
        let bow = vec![[0.0, 0.0], [1.0, 1.0], [1.0, 0.0], [0.0, 1.0], [0.0, 0.0]];
        let err = normalize_polygons(&[vec![bow.clone()]], true).expect_err("bow tie");
        assert!(matches!(err, FenceError::InvalidGeometry(_)), "{err}");
        assert!(normalize_polygons(&[vec![bow]], false).is_ok());
    }
}
