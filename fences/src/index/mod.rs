//! `FenceIndex`: answers "which fences contain this point" without testing
//! every fence. A lookup goes through three stages, cheapest first:
//!
//! 1. The [`tiles`] pre-filter: the point's 1° tile lists the fences that may
//!    hold it, each with its bounding box there. Most points far from every
//!    fence stop here.
//! 2. Fences whose exact test is cheap (circles, short corridors, polygons with
//!    few edges: see [`IndexConfig::direct_max_cost`]) are tested exactly right
//!    away: computing one H3 cell costs more than such a test.
//! 3. Other fences have an H3 [`cover`]: the point's cell at the fence's
//!    resolution (computed once per resolution per lookup, never via
//!    `parent()`, since H3 cells do not nest geometrically) is interior (inside,
//!    no geometry), boundary (an exact test on the few edges meeting the cell)
//!    or absent (outside).
//!
//! Points beyond `polar_lat` are tested exactly against the fences that reach
//! there, since cells near the poles are too distorted in lon/lat. Every
//! structure is per fence or per tile, so adding, replacing or removing a fence
//! touches only that fence's cells and tiles.

mod bands;
mod cover;
mod tiles;

use std::collections::{BTreeMap, HashMap};

use geo::{Coord, Rect, coord};
use h3o::{CellIndex, LatLng, Resolution};
use rstar::{AABB, RTree, primitives::GeomWithData, primitives::Rectangle};

use crate::error::FenceError;
use crate::exact::{PreparedFence, Shape};
use crate::geodesy;
use bands::Bands;
use cover::{CellTest, Cover, Found, cell_test};
use tiles::{Tiles, entry_holds, tiles_of};

/// Index tuning.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexConfig {
    /// Target upper bound on cells per fence, used to choose its resolution.
    pub max_cells_per_fence: usize,
    /// Resolutions fences may be covered at; a lookup computes the point's
    /// cell at each one its candidate fences use, so keep the list short.
    pub resolutions: Vec<u8>,
    /// Cover every fence at this resolution instead of choosing by size.
    pub fixed_resolution: Option<u8>,
    /// Beyond this latitude (north or south) points are tested exactly against
    /// the fences that reach there: H3 cells near the poles are too distorted in
    /// lon/lat to classify cheaply.
    pub polar_lat: f64,
    /// Fences whose exact test costs at most this many polygon edges (a circle
    /// counts as 4 edges, a corridor segment as 8) get no H3 cover and are
    /// tested exactly when the point is in their bounding box. 0 covers every
    /// fence.
    pub direct_max_cost: usize,
}

impl Default for IndexConfig {
    fn default() -> Self {
        Self {
            max_cells_per_fence: 2_000,
            resolutions: vec![2, 4, 6, 8, 10],
            fixed_resolution: None,
            polar_lat: 80.0,
            direct_max_cost: 64,
        }
    }
}

/// What a cell lookup knows about a candidate fence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hit {
    /// The point's cell lies entirely inside the fence.
    Inside,
    /// The point is near the fence boundary: an exact test decides.
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
    /// Fences tested exactly without an H3 cover (see [`IndexConfig::direct_max_cost`]).
    pub direct_fences: usize,
    /// Fences also tested exactly beyond `polar_lat`.
    pub polar_fences: usize,
    /// Cells of all covers.
    pub cells: usize,
    /// Cells that answer "inside" without geometry.
    pub interior_entries: usize,
    /// Cells that need an exact test.
    pub boundary_entries: usize,
    /// Edge or segment references kept by boundary cells.
    pub boundary_edges: usize,
    /// Cells per resolution in use.
    pub cells_per_resolution: Vec<(u8, usize)>,
    /// Rough heap size of the index structures, fence geometry included.
    pub approx_bytes: usize,
}

/// The test every fence without a cover gets (and every fence beyond `polar_lat`).
static FULL: CellTest = CellTest::Full;

#[derive(Debug)]
struct Slot {
    fence: PreparedFence,
    /// `None` for fences tested exactly (cheap tests).
    cover: Option<Cover>,
    /// What full exact tests of covered, polar or many-edged polygons use.
    bands: Option<Bands>,
    /// Tiles the fence is listed in.
    tiles: Box<[u32]>,
    polar: bool,
}

/// An index over fences; see the module documentation.
#[derive(Debug)]
pub struct FenceIndex {
    config: IndexConfig,
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
    ids: HashMap<String, u32>,
    tiles: Tiles,
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
            tiles: Tiles::new(),
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
        self.tiles.remove(s, &slot.tiles);
        self.polar.retain(|&p| p != s);
        self.free.push(s);
        Some(slot.fence)
    }

    /// Candidate fences at a point, from tiles and cells alone (plus polar
    /// fences by bbox beyond `polar_lat`): every fence containing the point is
    /// one. `Inside` is certain; `Boundary` needs an exact test.
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
            if test.is_none_or(|t| slot.test(t, p)) {
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
            approx_bytes: self.tiles.approx_bytes() + self.slots.capacity() * size_of::<Option<Slot>>(),
            ..IndexStats::default()
        };
        let mut per_res: BTreeMap<u8, usize> = BTreeMap::new();
        for slot in self.slots.iter().flatten() {
            st.approx_bytes += slot.tiles.len() * 4
                + slot.bands.as_ref().map_or(0, Bands::approx_bytes)
                + match &slot.fence.shape {
                    Shape::Area { rings, edges } => rings.len() * 48 + edges.len() * 32,
                    Shape::Corridor { line, .. } => line.len() * 16,
                    Shape::Circle { .. } => 0,
                };
            let Some(cover) = &slot.cover else {
                st.direct_fences += 1;
                continue;
            };
            st.cells += cover.len();
            st.boundary_entries += cover.boundary_cells();
            st.interior_entries += cover.len() - cover.boundary_cells();
            st.boundary_edges += cover.boundary_edges();
            st.approx_bytes += cover.approx_bytes();
            *per_res.entry(u8::from(cover.res)).or_default() += cover.len();
        }
        st.cells_per_resolution = per_res.into_iter().collect();
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
        for rect in slot.fence.bboxes() {
            self.boxes.insert(box_of(rect, s));
        }
        self.tiles.insert(s, &slot.tiles, slot.fence.bboxes());
        if slot.polar {
            self.polar.push(s);
        }
        self.ids.insert(slot.fence.id().to_owned(), s);
        self.slots[s as usize] = Some(slot);
    }

    /// Calls `f` with every candidate fence at the point: `None` when the
    /// point is certainly inside, else the test that decides.
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
                    f(slot, p, Some(&FULL));
                }
            }
            return Ok(());
        }
        let mut cells = PointCells::new(p);
        for entry in self.tiles.at(p) {
            if !entry_holds(entry, p) {
                continue;
            }
            let Some(slot) = self.slot(entry.slot) else {
                continue;
            };
            let Some(cover) = &slot.cover else {
                f(slot, p, Some(&FULL));
                continue;
            };
            match cover.find(cells.at(cover.res)?) {
                Found::Outside => {}
                Found::Interior => f(slot, p, None),
                Found::Boundary(test) => f(slot, p, Some(test)),
            }
        }
        Ok(())
    }
}

impl Slot {
    /// Runs a candidate's test for `p`.
    fn test(&self, test: &CellTest, p: Coord) -> bool {
        match (test, &self.bands, &self.fence.shape) {
            (CellTest::Full, Some(bands), Shape::Area { edges, .. }) => bands.contains(edges, p),
            _ => cell_test(&self.fence, test, p),
        }
    }
}

/// The cells of one point, computed on first use at each resolution.
struct PointCells {
    p: Coord,
    cells: [Option<CellIndex>; 16],
}

impl PointCells {
    fn new(p: Coord) -> Self {
        Self { p, cells: [None; 16] }
    }

    fn at(&mut self, res: Resolution) -> Result<CellIndex, FenceError> {
        let slot = &mut self.cells[usize::from(u8::from(res))];
        if let Some(cell) = *slot {
            return Ok(cell);
        }
        let (lon, lat) = (self.p.x, self.p.y);
        let cell = LatLng::new(lat, lon)
            .map_err(|_| FenceError::InvalidPoint { lon, lat })?
            .to_cell(res);
        *slot = Some(cell);
        Ok(cell)
    }
}

/// Polygons tested exactly with more edges than this read them by latitude
/// band: below it, walking every edge is as quick as finding the band.
const BANDS_MIN_EDGES: usize = 16;

/// What an exact test of the fence costs, in polygon edges (see
/// [`IndexConfig::direct_max_cost`]).
fn exact_cost(fence: &PreparedFence) -> usize {
    match &fence.shape {
        Shape::Area { edges, .. } => edges.len(),
        Shape::Circle { .. } => 4,
        Shape::Corridor { line, .. } => 8 * line.len().saturating_sub(1),
    }
}

/// Everything the index keeps about one fence, built before the index is
/// touched, so a failed `replace` leaves it unchanged.
fn build_slot(fence: PreparedFence, config: &IndexConfig) -> Result<Slot, FenceError> {
    let (cover, tiles) = if exact_cost(&fence) <= config.direct_max_cost {
        let mut tiles: Vec<u32> = fence.bboxes().iter().flat_map(tiles_of).collect();
        tiles.sort_unstable();
        tiles.dedup();
        (None, tiles)
    } else {
        let (cover, tiles) = cover::cover(&fence, config)?;
        (Some(cover), tiles)
    };
    let polar = fence
        .bboxes()
        .iter()
        .any(|b| b.max().y > config.polar_lat || b.min().y < -config.polar_lat);
    let bands = match &fence.shape {
        Shape::Area { edges, .. } if cover.is_some() || polar || edges.len() > BANDS_MIN_EDGES => {
            Some(Bands::new(edges))
        }
        _ => None,
    };
    Ok(Slot {
        fence,
        cover,
        bands,
        tiles: tiles.into_boxed_slice(),
        polar,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fence::{Fence, FenceKind, FenceLimits};
    use geo::Intersects;

    fn prep(id: &str, kind: FenceKind) -> PreparedFence {
        PreparedFence::new(Fence::new(id, id, kind), &FenceLimits::default()).expect("valid fence")
    }

    /// Every fence covered with H3 cells, however cheap its exact test.
    fn covered() -> IndexConfig {
        IndexConfig {
            direct_max_cost: 0,
            ..IndexConfig::default()
        }
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
        let mut idx = FenceIndex::new(covered()).expect("config");
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
        let mut idx = FenceIndex::new(covered()).expect("config");
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
    fn cheap_fences_are_tested_exactly_and_costly_ones_covered() {
        let mut idx = FenceIndex::new(IndexConfig::default()).expect("config");
        idx.insert(square("sq", 10.0, 40.0, 1.0)).expect("insert");
        let ring: Vec<[f64; 2]> = (0..=100)
            .map(|i| {
                let t = std::f64::consts::TAU * f64::from(i % 100) / 100.0;
                [20.0 + 2.0 * t.cos(), 40.0 + 2.0 * t.sin()]
            })
            .collect();
        idx.insert(prep("round", FenceKind::Polygon { rings: vec![ring] }))
            .expect("insert");
        let st = idx.stats();
        assert_eq!((st.fences, st.direct_fences), (2, 1), "{st:?}");
        assert!(st.cells > 0, "the 100-edge polygon is covered: {st:?}");
        // A cheap fence is a candidate wherever its bbox is, to be tested exactly.
        assert_eq!(
            idx.lookup(10.5, 40.5).expect("ok"),
            vec![Candidate {
                id: "sq",
                hit: Hit::Boundary
            }]
        );
        assert_eq!(idx.contains(10.5, 40.5).expect("ok"), vec!["sq"]);
        assert_eq!(
            idx.contains(11.0, 41.0).expect("ok"),
            vec!["sq"],
            "corner, on a tile edge"
        );
        assert!(idx.contains(11.000_000_001, 41.0).expect("ok").is_empty());
        assert_eq!(
            idx.lookup(20.0, 40.0).expect("ok"),
            vec![Candidate {
                id: "round",
                hit: Hit::Inside
            }]
        );
        assert!(idx.contains(20.0, 42.1).expect("ok").is_empty());
        idx.remove("sq");
        assert!(idx.lookup(10.5, 40.5).expect("ok").is_empty());
        assert_eq!(idx.stats().direct_fences, 0);
    }
}
