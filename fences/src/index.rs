//! `FenceIndex`: an H3 cell index over prepared fences. Each fence is covered
//! with H3 cells at one resolution chosen from its size (a few distinct
//! resolutions in all; a point is indexed at each resolution in use, never via
//! `parent()`, since H3 cells do not nest geometrically). The cover is a flood
//! fill from cells known to meet the fence, and every cell is classified here:
//! *interior* only if no fence edge meets the cell's exact lon/lat bounding box
//! (geodesic cell edges included) and its centre is inside; for circles and
//! corridors only if its centre is inside by more than the cell's radius.
//! Boundary cells keep what an exact test needs: for polygons, the centre's
//! state and the few edges that meet the cell, so a query counts the crossings
//! of the segment centre→point with those edges; for corridors, the nearby
//! segments. Points beyond `polar_lat` are tested exactly against the fences
//! that reach there, since cells near the poles are too distorted in lon/lat.
//!
//! h3o's `TilerBuilder` is not used: with its transmeridian heuristic on it
//! guesses from long edges (which normalised polygons legitimately have); with
//! it off, 0.11.1 trips its own debug assertion ("cell index … in polygon") on
//! fences touching ±180 or a pole. The flood fill needs no such guess.

use std::collections::{HashMap, hash_map::Entry as MapEntry};
use std::hash::{BuildHasherDefault, Hasher};

use std::collections::{HashSet, VecDeque};

use geo::{
    ChamberlainDuquetteArea, Coord, Intersects, Kernel, Line, Orientation, Rect, coord, kernels::RobustKernel,
};
use h3o::{CellIndex, LatLng, LatLngIndexer, Resolution};
use rstar::{AABB, RTree, primitives::GeomWithData, primitives::Rectangle};

use crate::error::FenceError;
use crate::exact::{PreparedFence, Shape, corridor_distance_m, on_segment, rect_contains};
use crate::geodesy::{self, arc_lat_range, haversine_m, point_arc_distance_m};

/// Index tuning.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexConfig {
    /// Target upper bound on cells per fence, used to choose its resolution.
    pub max_cells_per_fence: usize,
    /// Resolutions fences may be indexed at; each one in use costs a cell
    /// computation per lookup, so keep the list short.
    pub resolutions: Vec<u8>,
    /// Index every fence at this resolution instead of choosing by size.
    pub fixed_resolution: Option<u8>,
    /// Beyond this latitude (north or south) points are tested exactly against
    /// the fences that reach there: H3 cells near the poles are too distorted in
    /// lon/lat to classify cheaply.
    pub polar_lat: f64,
}

impl Default for IndexConfig {
    fn default() -> Self {
        Self {
            max_cells_per_fence: 2_000,
            resolutions: vec![2, 4, 6, 8, 10],
            fixed_resolution: None,
            polar_lat: 80.0,
        }
    }
}

/// What a cell lookup knows about a candidate fence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hit {
    /// The point's cell lies entirely inside the fence.
    Inside,
    /// The point's cell meets the fence boundary: an exact test decides.
    Boundary,
}

/// A candidate fence from [`FenceIndex::lookup`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate<'a> {
    /// Fence id.
    pub id: &'a str,
    /// Inside for sure, or needs an exact test.
    pub hit: Hit,
}

/// Size figures of an index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexStats {
    /// Fences indexed.
    pub fences: usize,
    /// Fences also tested exactly beyond `polar_lat`.
    pub polar_fences: usize,
    /// Distinct (resolution, cell) keys.
    pub cells: usize,
    /// Cell entries that answer "inside" without geometry.
    pub interior_entries: usize,
    /// Cell entries that need an exact test.
    pub boundary_entries: usize,
    /// Edge or segment references kept by boundary cells.
    pub boundary_edges: usize,
    /// Cells per resolution in use.
    pub cells_per_resolution: Vec<(u8, usize)>,
    /// Rough heap size of the index structures, fence geometry included.
    pub approx_bytes: usize,
}

const INTERIOR: u32 = u32::MAX;

#[derive(Debug, Clone, Copy)]
struct Entry {
    slot: u32,
    /// Index into the slot's boundary tests, or `INTERIOR`.
    test: u32,
}

/// What a boundary cell needs for an exact answer.
#[derive(Debug)]
enum CellTest {
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

#[derive(Debug)]
struct Slot {
    fence: PreparedFence,
    res: Resolution,
    /// Covered cells with their boundary test index, or `INTERIOR`.
    cells: Vec<(CellIndex, u32)>,
    tests: Vec<CellTest>,
    /// 1° tiles (see `tile_of`) met by the cells.
    tiles: Vec<u32>,
    polar: bool,
}

/// A hasher for H3 cell indices (plain `u64`s whose low bits are mostly the
/// all-ones padding of unused digits): the splitmix64 finaliser, much cheaper
/// than `SipHash` on the lookup hot path. Keys are not attacker-chosen strings.
#[derive(Debug, Default, Clone, Copy)]
struct CellHasher(u64);

impl Hasher for CellHasher {
    fn finish(&self) -> u64 {
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 ^= n;
    }
}

type CellMap = HashMap<CellIndex, Vec<Entry>, BuildHasherDefault<CellHasher>>;

#[derive(Debug)]
struct Level {
    res: Resolution,
    fences: usize,
    cells: CellMap,
    /// Per 1° tile, how many fences have cells meeting it: a lookup skips the
    /// resolution (and its cell computation) where the count is zero.
    tiles: Vec<u32>,
}

/// An H3 index over fences; see the module documentation.
#[derive(Debug)]
pub struct FenceIndex {
    config: IndexConfig,
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
    ids: HashMap<String, u32>,
    levels: Vec<Level>,
    polar: Vec<u32>,
    /// Every fence's bounding boxes, for [`FenceIndex::near_segment`].
    boxes: RTree<BoxOf>,
}

/// A fence bounding box tagged with its slot.
type BoxOf = GeomWithData<Rectangle<[f64; 2]>, u32>;

fn box_of(rect: &Rect, slot: u32) -> BoxOf {
    GeomWithData::new(
        Rectangle::from_corners(rect.min().into(), rect.max().into()),
        slot,
    )
}

impl FenceIndex {
    /// An empty index.
    pub fn new(config: IndexConfig) -> Result<Self, FenceError> {
        for &r in config.resolutions.iter().chain(config.fixed_resolution.iter()) {
            Resolution::try_from(r).map_err(|_| FenceError::InvalidResolution(r))?;
        }
        if config.resolutions.is_empty() && config.fixed_resolution.is_none() {
            return Err(FenceError::InvalidResolution(u8::MAX));
        }
        Ok(Self {
            config,
            slots: Vec::new(),
            free: Vec::new(),
            ids: HashMap::new(),
            levels: Vec::new(),
            polar: Vec::new(),
            boxes: RTree::new(),
        })
    }

    /// Number of fences.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the index holds no fence.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The fence with this id.
    pub fn get(&self, id: &str) -> Option<&PreparedFence> {
        self.ids.get(id).and_then(|&s| self.slot(s)).map(|s| &s.fence)
    }

    /// Every fence, in no particular order.
    pub fn fences(&self) -> impl Iterator<Item = &PreparedFence> {
        self.slots.iter().flatten().map(|s| &s.fence)
    }

    /// Adds a fence; fails if its id is already indexed.
    pub fn insert(&mut self, fence: PreparedFence) -> Result<(), FenceError> {
        if self.ids.contains_key(fence.id()) {
            return Err(FenceError::DuplicateId(fence.id().to_owned()));
        }
        let slot = build_slot(fence, &self.config)?;
        self.attach(slot);
        Ok(())
    }

    /// Adds or replaces a fence, returning the one it replaced. On error the
    /// index is unchanged.
    pub fn replace(&mut self, fence: PreparedFence) -> Result<Option<PreparedFence>, FenceError> {
        let slot = build_slot(fence, &self.config)?;
        let old = self.remove(slot.fence.id());
        self.attach(slot);
        Ok(old)
    }

    /// Removes a fence, returning it.
    pub fn remove(&mut self, id: &str) -> Option<PreparedFence> {
        let s = self.ids.remove(id)?;
        let slot = self.slots.get_mut(s as usize)?.take()?;
        for rect in slot.fence.bboxes() {
            self.boxes.remove(&box_of(rect, s));
        }
        if let Some(level) = self.levels.iter_mut().find(|l| l.res == slot.res) {
            level.fences -= 1;
            for &t in &slot.tiles {
                level.tiles[t as usize] -= 1;
            }
            for (cell, _) in &slot.cells {
                if let MapEntry::Occupied(mut e) = level.cells.entry(*cell) {
                    e.get_mut().retain(|entry| entry.slot != s);
                    if e.get().is_empty() {
                        e.remove();
                    }
                }
            }
        }
        self.levels.retain(|l| l.fences > 0);
        self.polar.retain(|&p| p != s);
        self.free.push(s);
        Some(slot.fence)
    }

    /// Candidate fences at a point, from cells alone (plus polar fences by bbox
    /// beyond `polar_lat`). `Inside` is certain; `Boundary` needs an exact test.
    pub fn lookup(&self, lon: f64, lat: f64) -> Result<Vec<Candidate<'_>>, FenceError> {
        let mut out = Vec::new();
        self.visit(lon, lat, |slot, _, test| {
            let hit = if test.is_some() {
                Hit::Boundary
            } else {
                Hit::Inside
            };
            out.push(Candidate {
                id: slot.fence.id(),
                hit,
            });
        })?;
        Ok(out)
    }

    /// Ids of the fences containing the point (boundary included): the exact answer.
    pub fn contains(&self, lon: f64, lat: f64) -> Result<Vec<&str>, FenceError> {
        let mut out = Vec::new();
        self.visit(lon, lat, |slot, p, test| {
            if test.is_none_or(|t| cell_test(slot, t, p)) {
                out.push(slot.fence.id());
            }
        })?;
        Ok(out)
    }

    /// Fences whose bounding box meets the bounding box of the great-circle hop
    /// between two positions: the ones a fast device may have crossed between
    /// two fixes (see [`crate::state::step`]). An R-tree query, in slot order.
    pub fn near_segment(&self, from: [f64; 2], to: [f64; 2]) -> Vec<&PreparedFence> {
        let hops = geodesy::arc_bboxes(coord! { x: from[0], y: from[1] }, coord! { x: to[0], y: to[1] });
        let mut slots: Vec<u32> = hops
            .iter()
            .flat_map(|h| {
                let envelope = AABB::from_corners(h.min().into(), h.max().into());
                self.boxes
                    .locate_in_envelope_intersecting(&envelope)
                    .map(|b| b.data)
                    .collect::<Vec<_>>()
            })
            .collect();
        slots.sort_unstable();
        slots.dedup();
        slots
            .into_iter()
            .filter_map(|s| self.slot(s))
            .map(|s| &s.fence)
            .collect()
    }

    /// Size figures.
    pub fn stats(&self) -> IndexStats {
        let mut st = IndexStats {
            fences: self.len(),
            polar_fences: self.polar.len(),
            ..IndexStats::default()
        };
        for level in &self.levels {
            st.cells += level.cells.len();
            st.cells_per_resolution
                .push((u8::from(level.res), level.cells.len()));
            st.approx_bytes += level.cells.capacity() * (8 + 24 + 8) + level.tiles.len() * 4;
            for entries in level.cells.values() {
                st.approx_bytes += entries.capacity() * size_of::<Entry>();
                for e in entries {
                    if e.test == INTERIOR {
                        st.interior_entries += 1;
                    } else {
                        st.boundary_entries += 1;
                    }
                }
            }
        }
        for slot in self.slots.iter().flatten() {
            st.approx_bytes += slot.cells.capacity() * 16
                + slot.tiles.capacity() * 4
                + slot.tests.capacity() * size_of::<CellTest>();
            for t in &slot.tests {
                let n = match t {
                    CellTest::Full => 0,
                    CellTest::Local { edges, .. } | CellTest::Segments(edges) => edges.len(),
                };
                st.boundary_edges += n;
                st.approx_bytes += n * 4;
            }
            st.approx_bytes += match &slot.fence.shape {
                Shape::Area { rings, edges } => rings.len() * 48 + edges.len() * 32,
                Shape::Corridor { line, .. } => line.len() * 16,
                Shape::Circle { .. } => 0,
            };
        }
        st
    }

    fn slot(&self, s: u32) -> Option<&Slot> {
        self.slots.get(s as usize).and_then(Option::as_ref)
    }

    fn attach(&mut self, slot: Slot) {
        let s = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            (self.slots.len() - 1) as u32
        });
        let i = match self.levels.binary_search_by_key(&slot.res, |l| l.res) {
            Ok(i) => i,
            Err(i) => {
                self.levels.insert(
                    i,
                    Level {
                        res: slot.res,
                        fences: 0,
                        cells: CellMap::default(),
                        tiles: vec![0; TILES],
                    },
                );
                i
            }
        };
        for rect in slot.fence.bboxes() {
            self.boxes.insert(box_of(rect, s));
        }
        let level = &mut self.levels[i];
        level.fences += 1;
        for &t in &slot.tiles {
            level.tiles[t as usize] += 1;
        }
        for &(cell, test) in &slot.cells {
            level
                .cells
                .entry(cell)
                .or_insert_with(|| Vec::with_capacity(1))
                .push(Entry { slot: s, test });
        }
        if slot.polar {
            self.polar.push(s);
        }
        self.ids.insert(slot.fence.id().to_owned(), s);
        self.slots[s as usize] = Some(slot);
    }

    fn visit<'a>(
        &'a self,
        lon: f64,
        lat: f64,
        mut f: impl FnMut(&'a Slot, Coord, Option<&'a CellTest>),
    ) -> Result<(), FenceError> {
        if !lon.is_finite() || !(-90.0..=90.0).contains(&lat) {
            return Err(FenceError::InvalidPoint { lon, lat });
        }
        let p = coord! { x: geodesy::normalize_lon(lon), y: lat };
        if lat.abs() > self.config.polar_lat {
            for slot in self.polar.iter().filter_map(|&s| self.slot(s)) {
                if slot.fence.bbox_contains(p) {
                    f(slot, p, Some(&CellTest::Full));
                }
            }
            return Ok(());
        }
        let ll = LatLng::new(p.y, p.x).map_err(|_| FenceError::InvalidPoint { lon, lat })?;
        // One projection of the point, then its cell at each resolution in use.
        let tile = tile_of(p.x, p.y);
        let levels: Vec<&Level> = self.levels.iter().filter(|l| l.tiles[tile] > 0).collect();
        let mut indexer = LatLngIndexer::default();
        let cells = indexer.to_cells(ll, levels.iter().map(|l| l.res));
        for (level, cell) in levels.iter().zip(cells) {
            let Some(entries) = level.cells.get(&cell) else {
                continue;
            };
            for e in entries {
                let Some(slot) = self.slot(e.slot) else { continue };
                let test = (e.test != INTERIOR).then(|| &slot.tests[e.test as usize]);
                f(slot, p, test);
            }
        }
        Ok(())
    }
}

/// Runs a boundary cell's exact test for `p` (a point of that cell).
fn cell_test(slot: &Slot, test: &CellTest, p: Coord) -> bool {
    match (test, &slot.fence.shape) {
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
        (CellTest::Segments(segs), Shape::Corridor { line, buffer_m }) => segs
            .iter()
            .any(|&i| point_arc_distance_m(p, line[i as usize], line[i as usize + 1]) <= *buffer_m),
        _ => slot.fence.contains(p.x, p.y),
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
        Shape::Corridor { line, buffer_m } => {
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
}

impl Classifier<'_> {
    /// The cell's class, and its lon/lat box (for the tile prefilter).
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
            Shape::Corridor { line, buffer_m } => {
                let rho = cell_radius_m(centre, &vertices);
                if corridor_distance_m(line, centre) + rho <= *buffer_m {
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
        let centre_inside = self.fence.contains(centre.x, centre.y);
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

const TILES: usize = 360 * 180;

/// The 1° × 1° tile of a lon/lat point (clamped, so ±180 and ±90 stay on the map).
fn tile_of(x: f64, y: f64) -> usize {
    let col = (x + 180.0).floor().clamp(0.0, 359.0) as usize;
    let row = (y + 90.0).floor().clamp(0.0, 179.0) as usize;
    row * 360 + col
}

/// Every tile a box meets (boxes are closed, `tile_of` is monotone: a point in
/// the box has its tile in the result).
fn tiles_of(r: &Rect) -> impl Iterator<Item = u32> {
    let (lo, hi) = (tile_of(r.min().x, r.min().y), tile_of(r.max().x, r.max().y));
    let (c0, r0, c1, r1) = (lo % 360, lo / 360, hi % 360, hi / 360);
    (r0..=r1).flat_map(move |row| (c0..=c1).map(move |col| (row * 360 + col) as u32))
}

/// The lon/lat bounding box of a cell: one box, or two when it spans ±180.
enum CellBox {
    Simple(Rect),
    Split([Rect; 2]),
}

/// Exact lon/lat bounding box of a cell with geodesic edges, slightly padded.
/// (Cells around a pole are never classified: see `build_slot`'s limit.)
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
fn seeds(fence: &PreparedFence, limit: f64) -> Vec<Coord> {
    let mut out = Vec::new();
    match &fence.shape {
        Shape::Area { edges, .. } => {
            for &[a, b] in edges {
                out.push(a);
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
        Shape::Corridor { line, buffer_m } => {
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

/// Covers a fence with cells: a flood fill from the seed cells through every
/// cell that is not certainly outside. Classification is exact-conservative
/// (a cell is dropped only if no point of it can be in the fence), and the cells
/// meeting a connected region are edge-connected in a hexagonal grid, so every
/// cell meeting the fence below the polar limit is found.
fn build_slot(fence: PreparedFence, config: &IndexConfig) -> Result<Slot, FenceError> {
    let res = choose_resolution(&fence, config)?;
    // Cells whose centre is this far from the equator are never looked up.
    let limit = (config.polar_lat + 3.0 * res.edge_length_m() / geodesy::METRES_PER_DEGREE).min(90.0);
    let classifier = Classifier {
        tree: match &fence.shape {
            Shape::Area { edges, .. } => Some(edge_tree(edges)),
            _ => None,
        },
        fence: &fence,
    };
    let mut seen: HashSet<CellIndex> = HashSet::new();
    let mut queue: VecDeque<CellIndex> = VecDeque::new();
    for c in seeds(&fence, limit) {
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
            Class::Interior => cells.push((cell, INTERIOR)),
            Class::Boundary(t) => {
                cells.push((cell, tests.len() as u32));
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
    cells.shrink_to_fit();
    tests.shrink_to_fit();
    let polar = fence
        .bboxes()
        .iter()
        .any(|b| b.max().y > config.polar_lat || b.min().y < -config.polar_lat);
    tiles.sort_unstable();
    tiles.dedup();
    Ok(Slot {
        fence,
        res,
        cells,
        tests,
        tiles,
        polar,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fence::{Fence, FenceKind, FenceLimits};

    fn prep(id: &str, kind: FenceKind) -> PreparedFence {
        PreparedFence::new(Fence::new(id, id, kind), &FenceLimits::default()).expect("valid fence")
    }

    fn square(id: &str, x0: f64, y0: f64, size: f64) -> PreparedFence {
        let (x1, y1) = (x0 + size, y0 + size);
        prep(
            id,
            FenceKind::Polygon {
                rings: vec![vec![[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]],
            },
        )
    }

    #[test]
    fn interior_boundary_and_outside() {
        let mut idx = FenceIndex::new(IndexConfig::default()).expect("config");
        idx.insert(square("sq", 10.0, 40.0, 1.0)).expect("insert");
        assert_eq!(
            idx.lookup(10.5, 40.5).expect("ok"),
            vec![Candidate {
                id: "sq",
                hit: Hit::Inside
            }]
        );
        assert_eq!(
            idx.lookup(10.000_01, 40.5).expect("ok"),
            vec![Candidate {
                id: "sq",
                hit: Hit::Boundary
            }]
        );
        assert_eq!(idx.contains(10.000_01, 40.5).expect("ok"), vec!["sq"]);
        assert!(idx.contains(9.999_99, 40.5).expect("ok").is_empty());
        assert_eq!(
            idx.contains(10.0, 40.5).expect("ok"),
            vec!["sq"],
            "boundary counts as inside"
        );
        assert!(idx.lookup(20.0, 40.5).expect("ok").is_empty());
        let st = idx.stats();
        assert!(
            st.interior_entries > 0 && st.boundary_entries > 0 && st.approx_bytes > 0,
            "{st:?}"
        );
        assert!(idx.contains(f64::NAN, 0.0).is_err());
    }

    #[test]
    fn insert_remove_replace() {
        let mut idx = FenceIndex::new(IndexConfig::default()).expect("config");
        idx.insert(square("a", 0.0, 0.0, 1.0)).expect("insert");
        idx.insert(square("b", 0.5, 0.5, 1.0)).expect("insert");
        assert!(matches!(
            idx.insert(square("a", 5.0, 5.0, 1.0)),
            Err(FenceError::DuplicateId(_))
        ));
        let mut ids = idx.contains(0.75, 0.75).expect("ok");
        ids.sort_unstable();
        assert_eq!(ids, vec!["a", "b"]);
        let old = idx.replace(square("a", 5.0, 5.0, 1.0)).expect("replace");
        assert!(old.is_some());
        assert_eq!(idx.contains(0.75, 0.75).expect("ok"), vec!["b"]);
        assert_eq!(idx.contains(5.5, 5.5).expect("ok"), vec!["a"]);
        assert!(idx.remove("b").is_some());
        assert!(idx.remove("b").is_none());
        assert!(idx.contains(0.75, 0.75).expect("ok").is_empty());
        assert_eq!(idx.len(), 1);
        idx.remove("a");
        assert!(idx.is_empty() && idx.stats().cells == 0);
    }

    #[test]
    fn near_segment_finds_what_a_scan_of_every_bbox_finds_through_inserts_and_removes() {
        let mut idx = FenceIndex::new(IndexConfig::default()).expect("config");
        for i in 0..40 {
            let (x, y) = (f64::from(i % 8) * 0.3, f64::from(i / 8) * 0.3);
            idx.insert(square(&format!("s{i}"), x, y, 0.1)).expect("insert");
        }
        for i in (0..40).step_by(3) {
            idx.remove(&format!("s{i}"));
        }
        idx.replace(square("s1", 5.0, 5.0, 0.1)).expect("replace");
        let hops = [
            ([0.05, 0.05], [2.2, 1.3]),
            ([-1.0, 0.65], [3.0, 0.65]),
            ([0.95, -0.5], [0.95, 2.0]),
            ([4.9, 4.9], [5.2, 5.3]),
            ([10.0, 10.0], [10.1, 10.1]),
        ];
        for (from, to) in hops {
            let boxes = geodesy::arc_bboxes(coord! { x: from[0], y: from[1] }, coord! { x: to[0], y: to[1] });
            let mut scanned: Vec<&str> = idx
                .fences()
                .filter(|f| f.bboxes().iter().any(|b| boxes.iter().any(|h| b.intersects(h))))
                .map(PreparedFence::id)
                .collect();
            let mut found: Vec<&str> = idx
                .near_segment(from, to)
                .into_iter()
                .map(PreparedFence::id)
                .collect();
            scanned.sort_unstable();
            found.sort_unstable();
            assert_eq!(found, scanned, "hop {from:?} -> {to:?}");
        }
        assert_eq!(
            idx.near_segment([4.9, 4.9], [5.2, 5.3])
                .iter()
                .map(|f| f.id())
                .collect::<Vec<_>>(),
            ["s1"]
        );
    }

    #[test]
    fn circles_corridors_and_resolutions() {
        let mut idx = FenceIndex::new(IndexConfig::default()).expect("config");
        idx.insert(prep(
            "c",
            FenceKind::Circle {
                centre: [2.35, 48.85],
                radius_m: 200.0,
            },
        ))
        .expect("insert");
        idx.insert(prep(
            "big",
            FenceKind::Circle {
                centre: [2.0, 48.0],
                radius_m: 300_000.0,
            },
        ))
        .expect("insert");
        idx.insert(prep(
            "k",
            FenceKind::Corridor {
                line: vec![[179.9, 0.0], [-179.9, 0.0]],
                buffer_m: 50.0,
            },
        ))
        .expect("insert");
        assert!(idx.stats().cells_per_resolution.len() >= 2);
        let mut ids = idx.contains(2.35, 48.85).expect("ok");
        ids.sort_unstable();
        assert_eq!(ids, vec!["big", "c"]);
        assert_eq!(idx.contains(180.0, 0.0004).expect("ok"), vec!["k"]);
        assert_eq!(idx.contains(-180.0, 0.0004).expect("ok"), vec!["k"]);
        assert!(idx.contains(180.0, 0.0005).expect("ok").is_empty());
        assert_eq!(idx.near_segment([179.0, 0.0], [-179.0, 0.0]).len(), 1);
    }

    #[test]
    fn polar_fences_are_tested_exactly_beyond_polar_lat() {
        let mut idx = FenceIndex::new(IndexConfig::default()).expect("config");
        let ring: Vec<[f64; 2]> = (0..=8).map(|i| [-180.0 + 45.0 * f64::from(i), 75.0]).collect();
        idx.insert(prep("cap", FenceKind::Polygon { rings: vec![ring] }))
            .expect("insert");
        assert_eq!(idx.contains(12.0, 89.9).expect("ok"), vec!["cap"]);
        assert_eq!(idx.contains(12.0, 78.0).expect("ok"), vec!["cap"]);
        assert!(idx.contains(12.0, 74.0).expect("ok").is_empty());
        assert_eq!(idx.stats().polar_fences, 1);
    }

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
