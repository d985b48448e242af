//! The H3 cover of one fence: its cells at one resolution chosen from its
//! size, found by a flood fill from cells known to meet the fence, each
//! classified here. A cell is *interior* only if no fence edge meets the cell's
//! exact lon/lat bounding box (geodesic cell edges included) and its centre is
//! inside; for circles and corridors only if its centre is inside by more than
//! the cell's radius. Boundary cells keep what an exact test needs: for
//! polygons, the centre's state and the few edges that meet the cell, so a
//! query counts the crossings of the segment centre→point with those edges; for
//! corridors, the nearby segments. The cells are a sorted table searched by
//! binary search: denser than a hash map and private to the fence, so adding or
//! removing a fence never touches another's cells.
//!
//! h3o's `TilerBuilder` is not used: with its transmeridian heuristic on it
//! guesses from long edges (which normalised polygons legitimately have); with
//! it off, 0.11.1 trips its own debug assertion ("cell index … in polygon") on
//! fences touching ±180 or a pole. The flood fill needs no such guess.

use std::collections::{HashSet, VecDeque};

use geo::{
    ChamberlainDuquetteArea, Coord, Intersects, Kernel, Line, Orientation, Rect, coord, kernels::RobustKernel,
};
use h3o::{CellIndex, LatLng, Resolution};
use rstar::{AABB, RTree, primitives::GeomWithData, primitives::Rectangle};

use super::IndexConfig;
use super::bands::Bands;
use super::tiles::tiles_of;
use crate::error::FenceError;
use crate::exact::{PreparedFence, Shape, corridor_distance_m, on_segment, rect_contains};
use crate::geodesy::{self, arc_lat_range, haversine_m, point_arc_distance_m};

/// Marks an interior cell in [`Cover::tests`]' place.
const INTERIOR: u32 = u32::MAX;

/// A fence's cells at one resolution; see the module documentation.
#[derive(Debug)]
pub(super) struct Cover {
    pub res: Resolution,
    /// Covered cells, sorted.
    cells: Box<[u64]>,
    /// Per cell, its index in `tests`, or `INTERIOR`.
    test_of: Box<[u32]>,
    tests: Box<[CellTest]>,
}

/// What the cover says about a point's cell.
pub(super) enum Found<'a> {
    /// The cell is not covered: the point is outside the fence.
    Outside,
    /// The cell lies inside the fence.
    Interior,
    /// The cell meets the boundary: this test decides.
    Boundary(&'a CellTest),
}

impl Cover {
    /// Looks up the cell holding a point.
    pub fn find(&self, cell: CellIndex) -> Found<'_> {
        match self.cells.binary_search(&u64::from(cell)) {
            Err(_) => Found::Outside,
            Ok(i) => match self.test_of[i] {
                INTERIOR => Found::Interior,
                t => Found::Boundary(&self.tests[t as usize]),
            },
        }
    }

    /// Number of cells.
    pub fn len(&self) -> usize {
        self.cells.len()
    }

    /// Number of boundary cells.
    pub fn boundary_cells(&self) -> usize {
        self.tests.len()
    }

    /// Edge or segment references kept by boundary cells.
    pub fn boundary_edges(&self) -> usize {
        self.tests
            .iter()
            .map(|t| match t {
                CellTest::Full => 0,
                CellTest::Local { edges, .. } | CellTest::Segments(edges) => edges.len(),
            })
            .sum()
    }

    /// Rough heap size in bytes.
    pub fn approx_bytes(&self) -> usize {
        self.cells.len() * (8 + 4) + self.tests.len() * size_of::<CellTest>() + self.boundary_edges() * 4
    }
}

/// What a boundary cell needs for an exact answer.
#[derive(Debug)]
pub(super) enum CellTest {
    /// Run the fence's full exact test (cells across the antimeridian, degenerate cases, circles).
    Full,
    /// Polygon: parity of crossings of centre→point with the edges meeting `bbox`.
    Local {
        bbox: Rect,
        centre: Coord,
        centre_inside: bool,
        edges: Box<[u32]>,
    },
    /// Corridor: only these segments can be within the buffer of a point of the cell.
    Segments(Box<[u32]>),
}

/// Runs a boundary cell's exact test for `p` (a point of that cell).
pub(super) fn cell_test(fence: &PreparedFence, test: &CellTest, p: Coord) -> bool {
    match (test, &fence.shape) {
        (
            CellTest::Local {
                bbox,
                centre,
                centre_inside,
                edges: local,
            },
            Shape::Area { edges, .. },
        ) if rect_contains(bbox, p) => {
            let mut inside = *centre_inside;
            for &i in &**local {
                let [a, b] = edges[i as usize];
                if on_segment(a, b, p) {
                    return true;
                }
                if crosses(*centre, p, a, b) {
                    inside = !inside;
                }
            }
            inside
        }
        (
            CellTest::Segments(segs),
            Shape::Corridor {
                arcs,
                buffer_m,
                reach,
                ..
            },
        ) => {
            let vp = geodesy::unit_vector(p);
            segs.iter().any(|&i| {
                let arc = &arcs[i as usize];
                !arc.certainly_beyond(vp, *reach) && arc.distance_m(vp) <= *buffer_m
            })
        }
        _ => fence.contains(p.x, p.y),
    }
}

/// Whether segment `c`-`p` crosses edge `a`-`b`, given that `c` is not on the
/// line through `a`-`b` and `p` is not on the edge. Vertices of the edge lying
/// exactly on the line `c`-`p` count as being on its clockwise side (a
/// consistent perturbation), so each crossing of the boundary counts once.
fn crosses(c: Coord, p: Coord, a: Coord, b: Coord) -> bool {
    let oc = RobustKernel::orient2d(a, b, c);
    let op = RobustKernel::orient2d(a, b, p);
    if op == Orientation::Collinear || op == oc {
        return false;
    }
    let ccw = |o| o == Orientation::CounterClockwise;
    ccw(RobustKernel::orient2d(c, p, a)) != ccw(RobustKernel::orient2d(c, p, b))
}

/// Area (m²) and perimeter (m) of a fence, to choose its resolution.
fn size_of_fence(fence: &PreparedFence) -> (f64, f64) {
    use std::f64::consts::PI;
    match &fence.shape {
        Shape::Area { edges, .. } => {
            let perimeter = edges.iter().map(|&[a, b]| haversine_m(a, b)).sum();
            (fence.area.chamberlain_duquette_unsigned_area(), perimeter)
        }
        Shape::Circle { radius_m, .. } => (PI * radius_m * radius_m, 2.0 * PI * radius_m),
        Shape::Corridor { line, buffer_m, .. } => {
            let len: f64 = line.windows(2).map(|w| haversine_m(w[0], w[1])).sum();
            (
                2.0 * len * buffer_m + PI * buffer_m * buffer_m,
                2.0 * len + 2.0 * PI * buffer_m,
            )
        }
    }
}

fn choose_resolution(fence: &PreparedFence, config: &IndexConfig) -> Result<Resolution, FenceError> {
    let to_res = |r: u8| Resolution::try_from(r).map_err(|_| FenceError::InvalidResolution(r));
    if let Some(r) = config.fixed_resolution {
        return to_res(r);
    }
    let (area, perimeter) = size_of_fence(fence);
    let parts = fence.area.0.len() as f64;
    let mut ladder = config.resolutions.clone();
    ladder.sort_unstable();
    let coarsest = *ladder.first().ok_or(FenceError::InvalidResolution(u8::MAX))?;
    for &r in ladder.iter().rev() {
        let res = to_res(r)?;
        let estimate = area / res.area_m2() + 3.0 * perimeter / res.edge_length_m() + 7.0 * parts;
        if estimate <= config.max_cells_per_fence as f64 {
            return Ok(res);
        }
    }
    to_res(coarsest)
}

type EdgeTree = RTree<GeomWithData<Rectangle<[f64; 2]>, u32>>;

fn edge_tree(edges: &[[Coord; 2]]) -> EdgeTree {
    RTree::bulk_load(
        edges
            .iter()
            .enumerate()
            .map(|(i, &[a, b])| {
                GeomWithData::new(
                    Rectangle::from_corners([a.x.min(b.x), a.y.min(b.y)], [a.x.max(b.x), a.y.max(b.y)]),
                    i as u32,
                )
            })
            .collect(),
    )
}

/// How a cell relates to a fence.
enum Class {
    Interior,
    Boundary(CellTest),
    Outside,
}

struct Classifier<'a> {
    fence: &'a PreparedFence,
    tree: Option<EdgeTree>,
    /// The fence's latitude bands, when it has them: cell centres are tested with them.
    bands: Option<&'a Bands>,
}

impl Classifier<'_> {
    /// The cell's class, and its lon/lat box (for the tile pre-filter).
    fn classify(&self, cell: CellIndex) -> (Class, CellBox) {
        let centre_ll = LatLng::from(cell);
        let centre = coord! { x: centre_ll.lng(), y: centre_ll.lat() };
        let vertices: Vec<Coord> = cell
            .boundary()
            .iter()
            .map(|ll| coord! { x: ll.lng(), y: ll.lat() })
            .collect();
        let cbox = cell_bbox(&vertices);
        let class = match &self.fence.shape {
            Shape::Area { edges, .. } => self.classify_area(centre, &cbox, edges),
            Shape::Circle { centre: c, radius_m } => {
                let rho = cell_radius_m(centre, &vertices);
                let d = haversine_m(centre, *c);
                if d + rho <= *radius_m {
                    Class::Interior
                } else if d - rho > *radius_m {
                    Class::Outside
                } else {
                    Class::Boundary(CellTest::Full)
                }
            }
            Shape::Corridor {
                line, arcs, buffer_m, ..
            } => {
                let rho = cell_radius_m(centre, &vertices);
                if corridor_distance_m(arcs, centre) + rho <= *buffer_m {
                    Class::Interior
                } else {
                    let near: Box<[u32]> = line
                        .windows(2)
                        .enumerate()
                        .filter(|(_, w)| point_arc_distance_m(centre, w[0], w[1]) - rho <= *buffer_m)
                        .map(|(i, _)| i as u32)
                        .collect();
                    if near.is_empty() {
                        Class::Outside
                    } else {
                        Class::Boundary(CellTest::Segments(near))
                    }
                }
            }
        };
        (class, cbox)
    }

    /// Edges of the fence meeting `bbox`.
    fn edges_in(&self, edges: &[[Coord; 2]], bbox: &Rect) -> Vec<u32> {
        let Some(tree) = &self.tree else { return Vec::new() };
        let envelope = AABB::from_corners([bbox.min().x, bbox.min().y], [bbox.max().x, bbox.max().y]);
        tree.locate_in_envelope_intersecting(&envelope)
            .map(|g| g.data)
            .filter(|&i| {
                let [a, b] = edges[i as usize];
                Line::new(a, b).intersects(bbox)
            })
            .collect()
    }

    fn classify_area(&self, centre: Coord, cbox: &CellBox, edges: &[[Coord; 2]]) -> Class {
        let bbox = match cbox {
            CellBox::Simple(bbox) => *bbox,
            CellBox::Split(parts) => {
                // Across the antimeridian: test exactly if the fence can be there at all.
                let near = parts.iter().any(|part| {
                    !self.edges_in(edges, part).is_empty()
                        || self.fence.bboxes().iter().any(|b| b.intersects(part))
                });
                return if near {
                    Class::Boundary(CellTest::Full)
                } else {
                    Class::Outside
                };
            }
        };
        let centre_inside = match self.bands {
            Some(bands) => bands.contains(edges, centre),
            None => self.fence.contains(centre.x, centre.y),
        };
        let mut local = self.edges_in(edges, &bbox);
        if local.is_empty() {
            return if centre_inside {
                Class::Interior
            } else {
                Class::Outside
            };
        }
        if local.iter().any(|&i| {
            let [a, b] = edges[i as usize];
            RobustKernel::orient2d(a, b, centre) == Orientation::Collinear
        }) {
            return Class::Boundary(CellTest::Full);
        }
        local.sort_unstable();
        Class::Boundary(CellTest::Local {
            bbox,
            centre,
            centre_inside,
            edges: local.into_boxed_slice(),
        })
    }
}

/// Largest distance from the centre to the cell's vertices: every point of a
/// cell (geodesic edges) is within it.
fn cell_radius_m(centre: Coord, vertices: &[Coord]) -> f64 {
    let rho = vertices
        .iter()
        .map(|&v| haversine_m(centre, v))
        .fold(0.0, f64::max);
    rho * (1.0 + 1e-9) + 1e-3
}

/// The lon/lat bounding box of a cell: one box, or two when it spans ±180.
enum CellBox {
    Simple(Rect),
    Split([Rect; 2]),
}

/// Exact lon/lat bounding box of a cell with geodesic edges, slightly padded.
/// (Cells around a pole are never classified: see `cover`'s limit.)
fn cell_bbox(vertices: &[Coord]) -> CellBox {
    let spans = vertices
        .iter()
        .zip(vertices.iter().cycle().skip(1))
        .any(|(a, b)| (b.x - a.x).abs() > 180.0);
    let (mut x0, mut x1) = (f64::INFINITY, f64::NEG_INFINITY);
    let (mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY);
    for (i, &a) in vertices.iter().enumerate() {
        let b = vertices[(i + 1) % vertices.len()];
        let (lo, hi) = arc_lat_range(a, b);
        let a = if spans && a.x < 0.0 {
            coord! { x: a.x + 360.0, y: a.y }
        } else {
            a
        };
        x0 = x0.min(a.x);
        x1 = x1.max(a.x);
        y0 = y0.min(lo);
        y1 = y1.max(hi);
    }
    let pad_x = (x1 - x0) * 1e-6 + 1e-9;
    let pad_y = (y1 - y0) * 1e-6 + 1e-9;
    let (y0, y1) = (y0 - pad_y, y1 + pad_y);
    if spans {
        CellBox::Split([
            Rect::new(coord! { x: x0 - pad_x, y: y0 }, coord! { x: 180.0, y: y1 }),
            Rect::new(
                coord! { x: -180.0, y: y0 },
                coord! { x: x1 + pad_x - 360.0, y: y1 },
            ),
        ])
    } else {
        CellBox::Simple(Rect::new(
            coord! { x: x0 - pad_x, y: y0 },
            coord! { x: x1 + pad_x, y: y1 },
        ))
    }
}

/// Points known to lie in the fence, at least one in every connected part of
/// the fence within `limit` degrees of latitude: polygon vertices and the
/// points where edges cross the limit; circle centre and points just inside its
/// rim; corridor vertices and points beside them.
///
/// A polygon vertex within `skip_m` of the last vertex kept is left out (a
/// coastline has hundreds of vertices per cell, and finding a point's cell is the
/// costly part of a seed): with `skip_m` a quarter of the cells' mean edge
/// length, so under half the smallest cell's inradius, its cell is the kept
/// vertex's cell or a neighbour, which the flood fill visits anyway.
fn seeds(fence: &PreparedFence, limit: f64, skip_m: f64) -> Vec<Coord> {
    let mut out = Vec::new();
    match &fence.shape {
        Shape::Area { edges, .. } => {
            let mut kept: Option<Coord> = None;
            for &[a, b] in edges {
                if kept.is_none_or(|k| planar_distance_m(k, a) > skip_m) {
                    out.push(a);
                    kept = Some(a);
                }
                for l in [-limit, limit] {
                    if (a.y - l) * (b.y - l) < 0.0 {
                        let t = (l - a.y) / (b.y - a.y);
                        out.push(coord! { x: a.x + t * (b.x - a.x), y: l });
                    }
                }
            }
        }
        Shape::Circle { centre, radius_m } => {
            out.push(*centre);
            let n = ((2.0 * std::f64::consts::PI * radius_m / 10_000.0).ceil() as usize).clamp(8, 4096);
            for i in 0..n {
                out.push(geodesy::destination(
                    *centre,
                    360.0 * i as f64 / n as f64,
                    radius_m * 0.999,
                ));
            }
        }
        Shape::Corridor { line, buffer_m, .. } => {
            for w in line.windows(2) {
                let len = haversine_m(w[0], w[1]);
                let n = ((len / 10_000.0).ceil() as usize).clamp(1, 4096);
                for i in 0..=n {
                    let p = geodesy::interpolate(w[0], w[1], i as f64 / n as f64);
                    let brg = geodesy::bearing(w[0], w[1]);
                    out.push(p);
                    out.push(geodesy::destination(p, brg + 90.0, buffer_m * 0.999));
                    out.push(geodesy::destination(p, brg - 90.0, buffer_m * 0.999));
                }
            }
        }
    }
    out.retain(|c| c.y.abs() <= limit);
    for c in &mut out {
        c.x = geodesy::normalize_lon(c.x);
    }
    out
}

/// The distance between two nearby points on a local flat approximation (good to
/// a fraction of a percent over a few kilometres; far apart or across the
/// antimeridian it only overestimates, which keeps a seed).
fn planar_distance_m(a: Coord, b: Coord) -> f64 {
    let dx = (b.x - a.x) * f64::midpoint(a.y, b.y).to_radians().cos();
    dx.hypot(b.y - a.y) * geodesy::METRES_PER_DEGREE
}

/// Covers a fence with cells: a flood fill from the seed cells through every
/// cell that is not certainly outside. Classification is exact-conservative
/// (a cell is dropped only if no point of it can be in the fence), and the cells
/// meeting a connected region are edge-connected in a hexagonal grid, so every
/// cell meeting the fence below the polar limit is found. Also returns the 1°
/// tiles (see [`super::tiles`]) the cells meet.
pub(super) fn cover(
    fence: &PreparedFence,
    config: &IndexConfig,
    bands: Option<&Bands>,
) -> Result<(Cover, Vec<u32>), FenceError> {
    let res = choose_resolution(fence, config)?;
    // Cells whose centre is this far from the equator are never looked up.
    let limit = (config.polar_lat + 3.0 * res.edge_length_m() / geodesy::METRES_PER_DEGREE).min(90.0);
    let classifier = Classifier {
        tree: match &fence.shape {
            Shape::Area { edges, .. } => Some(edge_tree(edges)),
            _ => None,
        },
        fence,
        bands,
    };
    let mut seen: HashSet<CellIndex> = HashSet::new();
    let mut queue: VecDeque<CellIndex> = VecDeque::new();
    for c in seeds(fence, limit, res.edge_length_m() / 4.0) {
        let ll = LatLng::new(c.y, c.x).map_err(|_| FenceError::InvalidPoint { lon: c.x, lat: c.y })?;
        let cell = ll.to_cell(res);
        if seen.insert(cell) {
            queue.push_back(cell);
        }
    }
    let mut cells = Vec::new();
    let mut tests = Vec::new();
    let mut tiles = Vec::new();
    while let Some(cell) = queue.pop_front() {
        if LatLng::from(cell).lat().abs() > limit {
            continue;
        }
        let (class, cbox) = classifier.classify(cell);
        match class {
            Class::Outside => continue,
            Class::Interior => cells.push((u64::from(cell), INTERIOR)),
            Class::Boundary(t) => {
                cells.push((u64::from(cell), tests.len() as u32));
                tests.push(t);
            }
        }
        match &cbox {
            CellBox::Simple(r) => tiles.extend(tiles_of(r)),
            CellBox::Split(parts) => parts.iter().for_each(|r| tiles.extend(tiles_of(r))),
        }
        for n in cell.grid_disk::<Vec<_>>(1) {
            if seen.insert(n) {
                queue.push_back(n);
            }
        }
    }
    cells.sort_unstable_by_key(|&(c, _)| c);
    tiles.sort_unstable();
    tiles.dedup();
    let cover = Cover {
        res,
        cells: cells.iter().map(|&(c, _)| c).collect(),
        test_of: cells.iter().map(|&(_, t)| t).collect(),
        tests: tests.into_boxed_slice(),
    };
    Ok((cover, tiles))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crossing_rule_counts_vertex_hits_once() {
        let c = coord! { x: 0.0, y: 0.0 };
        let p = coord! { x: 2.0, y: 0.0 };
        // A vertex exactly on c-p, edges on both sides: crossing (spike through).
        let v = coord! { x: 1.0, y: 0.0 };
        let (up, down) = (coord! { x: 1.0, y: 1.0 }, coord! { x: 1.0, y: -1.0 });
        let n = [crosses(c, p, up, v), crosses(c, p, v, down)]
            .iter()
            .filter(|&&x| x)
            .count();
        assert_eq!(n, 1);
        // A vertex touching c-p from one side: zero or two crossings.
        let n = [crosses(c, p, up, v), crosses(c, p, v, coord! { x: 1.5, y: 1.0 })]
            .iter()
            .filter(|&&x| x)
            .count();
        assert_eq!(n % 2, 0);
    }
}
