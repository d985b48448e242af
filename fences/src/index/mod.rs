//! `FenceIndex`: answers "which fences contain this point" without testing
//! every fence. A lookup goes through three stages, cheapest first:
//!
//! 1. The [`tiles`] pre-filter: the point's 1° tile lists the fences that may
//!    hold it, each with its bounding box there. Most points far from every
//!    fence stop here.
//! 2. Fences whose exact test is cheap (circles, short corridors, polygons that
//!    a parallel crosses a few times, tested by latitude bands: see
//!    [`IndexConfig::direct_max_cost`]) are tested exactly right away: computing
//!    one H3 cell costs more than such a test.
//! 3. Other fences have an H3 [`cover`]: the point's cell at the fence's
//!    resolution (computed once per resolution per lookup, never via
//!    `parent()`, since H3 cells do not nest geometrically) is interior (inside,
//!    no geometry), boundary (an exact test on the few edges meeting the cell)
//!    or absent (outside).
//!
//! Points beyond `polar_lat` are tested exactly against the fences that reach
//! there, since cells near the poles are too distorted in lon/lat. Every
//! structure is per fence or per tile, so adding, replacing or removing a fence
//! touches only that fence's cells and tiles. The costly part of adding one, its
//! cover, is built apart from the index ([`IndexedFence`]), so a caller builds it
//! outside any lock and the index is changed in a few microseconds.

mod bands;
mod cover;
mod grid;
mod hot;
mod tiles;

use std::collections::{BTreeMap, HashMap};

use geo::{Coord, Rect, coord};
use h3o::{CellIndex, LatLng, Resolution};
use rstar::{AABB, RTree, primitives::GeomWithData, primitives::Rectangle};

use crate::error::FenceError;
use crate::exact::{PreparedFence, Shape, circle_contains};
use crate::geodesy;
use bands::Bands;
use cover::{CellTest, Cover, Found, cell_test};
use grid::{Cell, Grid};
use hot::{Hot, HotTest};
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
    /// Fences whose exact test costs at most this many polygon edges get no H3
    /// cover and are tested exactly when the point is in their bounding box. A
    /// circle counts as 4 edges, a corridor segment as 8, and a polygon as the
    /// edges its test reads: the mean length of its latitude bands (about how
    /// often a parallel crosses its boundary) once it has more than a few edges.
    /// Finding a point's cell costs as much as reading a few hundred edges, so
    /// covers pay only for corridors of many segments and for polygons that a
    /// parallel crosses very often: on the Natural Earth countries (at most 21
    /// edges a band, Canada at 1:10m) exact tests by bands were 2.4 to 4.5 times
    /// faster than covers (see the README's Benchmarks). 0 covers every fence.
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
    /// Cells of the lon/lat grids of polygons tested by bands, and how many of
    /// them the boundary crosses (the rest answer without an edge read).
    pub grid_cells: usize,
    pub grid_boundary_cells: usize,
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
    /// The grid of a many-edged polygon without a cover, until it moves to
    /// the fence's [`Hot`] entry when the slot is attached (boxed: the empty
    /// field stays in every record).
    grid: Option<Box<Grid>>,
    /// Tiles the fence is listed in.
    tiles: Box<[u32]>,
    polar: bool,
}

/// A fence with everything the index keeps about it (cover, bands, tiles), built
/// apart from any index (the costly step: seconds for a country's coastline),
/// then put in with [`FenceIndex::put`].
#[derive(Debug)]
pub struct IndexedFence(Slot);

impl IndexedFence {
    /// Builds the index structures of `fence` for an index with `config`.
    pub fn new(fence: PreparedFence, config: &IndexConfig) -> Result<Self, FenceError> {
        build_slot(fence, config).map(Self)
    }

    pub fn fence(&self) -> &PreparedFence {
        &self.0.fence
    }

    pub fn id(&self) -> &str {
        self.0.fence.id()
    }
}

/// Builds the index structures of many fences on every core, in order.
pub fn build_all(fences: Vec<PreparedFence>, config: &IndexConfig) -> Result<Vec<IndexedFence>, FenceError> {
    use rayon::prelude::*;
    fences
        .into_par_iter()
        .map(|fence| IndexedFence::new(fence, config))
        .collect()
}

/// An index over fences; see the module documentation.
#[derive(Debug)]
pub struct FenceIndex {
    config: IndexConfig,
    slots: Vec<Option<Slot>>,
    /// Beside `slots`: what a lookup reads first.
    hot: Vec<Option<Hot>>,
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
            hot: Vec::new(),
            free: Vec::new(),
            ids: HashMap::new(),
            tiles: Tiles::new(),
            polar: Vec::new(),
            boxes: RTree::new(),
        })
    }

    /// The configuration [`IndexedFence`]s for this index are built with.
    pub fn config(&self) -> &IndexConfig {
        &self.config
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

    /// The ids after `after` (byte order), at most `limit` of them, sorted: a page of
    /// a listing. O(n) plus the sort of the page.
    pub fn ids_after(&self, after: Option<&str>, limit: usize) -> Vec<&str> {
        let mut ids: Vec<&str> = self
            .ids
            .keys()
            .map(String::as_str)
            .filter(|id| after.is_none_or(|a| *id > a))
            .collect();
        if ids.len() > limit {
            ids.select_nth_unstable(limit);
            ids.truncate(limit);
        }
        ids.sort_unstable();
        ids
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
        Ok(self.put(IndexedFence::new(fence, &self.config)?))
    }

    /// Adds or replaces a fence built with this index's [`Self::config`], returning
    /// the one it replaced. Cheap: the cover is already built.
    pub fn put(&mut self, fence: IndexedFence) -> Option<PreparedFence> {
        let old = self.remove(fence.id());
        self.attach(fence.0);
        old
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
        self.hot[s as usize] = None;
        self.free.push(s);
        Some(slot.fence)
    }

    /// Candidate fences at a point, from tiles and cells alone (plus polar
    /// fences by bbox beyond `polar_lat`): every fence containing the point is
    /// one. `Inside` is certain; `Boundary` needs an exact test.
    pub fn lookup(&self, lon: f64, lat: f64) -> Result<Vec<Candidate<'_>>, FenceError> {
        let mut out = Vec::new();
        self.visit(lon, lat, |hot, _, _, test| {
            let hit = if test.is_some() {
                Hit::Boundary
            } else {
                Hit::Inside
            };
            out.push(Candidate { id: &hot.id, hit });
        })?;
        Ok(out)
    }

    /// Ids of the fences containing the point (boundary included): the exact answer.
    pub fn contains(&self, lon: f64, lat: f64) -> Result<Vec<&str>, FenceError> {
        let mut out = Vec::new();
        self.visit(lon, lat, |hot, s, p, test| {
            let exact = |test| self.slot(s).is_some_and(|slot| slot.test(test, p));
            let inside = match (test, &hot.test) {
                (None, _) => true,
                (Some(CellTest::Full), HotTest::Circle(centre, radius_m)) => {
                    circle_contains(*centre, *radius_m, p)
                }
                (Some(test @ CellTest::Full), HotTest::Grid(grid)) => match grid.at(p) {
                    Cell::Inside => true,
                    Cell::Outside => false,
                    Cell::Boundary => exact(test),
                },
                (Some(test), _) => exact(test),
            };
            if inside {
                out.push(&*hot.id);
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
            approx_bytes: self.tiles.approx_bytes()
                + self.slots.capacity() * size_of::<Option<Slot>>()
                + self.hot.capacity() * size_of::<Option<Hot>>(),
            ..IndexStats::default()
        };
        for hot in self.hot.iter().flatten() {
            if let HotTest::Grid(grid) = &hot.test {
                let (boundary, all) = grid.counts();
                st.grid_cells += all;
                st.grid_boundary_cells += boundary;
                st.approx_bytes += grid.approx_bytes();
            }
        }
        let mut per_res: BTreeMap<u8, usize> = BTreeMap::new();
        for slot in self.slots.iter().flatten() {
            st.approx_bytes += slot.tiles.len() * 4
                + slot.fence.id().len()
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

    fn attach(&mut self, mut slot: Slot) {
        let s = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.hot.push(None);
            (self.slots.len() - 1) as u32
        });
        self.hot[s as usize] = Some(Hot::of(&mut slot));
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

    /// Calls `f` with every candidate fence at the point (its hot entry and
    /// slot): `None` when the point is certainly inside, else the test that
    /// decides. Only covered fences' records are read here.
    fn visit<'a>(
        &'a self,
        lon: f64,
        lat: f64,
        mut f: impl FnMut(&'a Hot, u32, Coord, Option<&'a CellTest>),
    ) -> Result<(), FenceError> {
        if !lon.is_finite() || !(-90.0..=90.0).contains(&lat) {
            return Err(FenceError::InvalidPoint { lon, lat });
        }
        let p = coord! { x: geodesy::normalize_lon(lon), y: lat };
        if lat.abs() > self.config.polar_lat {
            for &s in &self.polar {
                if let (Some(slot), Some(hot)) = (self.slot(s), self.hot(s))
                    && slot.fence.bbox_contains(p)
                {
                    f(hot, s, p, Some(&FULL));
                }
            }
            return Ok(());
        }
        let mut cells = PointCells::new(p);
        for entry in self.tiles.at(p) {
            if !entry_holds(entry, p) {
                continue;
            }
            let s = entry.slot;
            let Some(hot) = self.hot(s) else { continue };
            if !matches!(hot.test, HotTest::Covered) {
                f(hot, s, p, Some(&FULL));
                continue;
            }
            let Some(cover) = self.slot(s).and_then(|slot| slot.cover.as_ref()) else {
                continue;
            };
            match cover.find(cells.at(cover.res)?) {
                Found::Outside => {}
                Found::Interior => f(hot, s, p, None),
                Found::Boundary(test) => f(hot, s, p, Some(test)),
            }
        }
        Ok(())
    }

    fn hot(&self, s: u32) -> Option<&Hot> {
        self.hot.get(s as usize).and_then(Option::as_ref)
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
    let polar = fence
        .bboxes()
        .iter()
        .any(|b| b.max().y > config.polar_lat || b.min().y < -config.polar_lat);
    // Built first: the cover tests cell centres with them (a country's cover tests
    // thousands, each a walk of every edge without them).
    let bands = match &fence.shape {
        Shape::Area { edges, .. } if polar || edges.len() > BANDS_MIN_EDGES => Some(Bands::new(edges)),
        _ => None,
    };
    let cost = match &bands {
        Some(bands) => bands.mean_len().ceil() as usize,
        None => exact_cost(&fence),
    };
    let (cover, tiles) = if cost <= config.direct_max_cost {
        let mut tiles: Vec<u32> = fence.bboxes().iter().flat_map(tiles_of).collect();
        tiles.sort_unstable();
        tiles.dedup();
        (None, tiles)
    } else {
        let (cover, tiles) = cover::cover(&fence, config, bands.as_ref())?;
        (Some(cover), tiles)
    };
    let grid = match (&fence.shape, &bands, &cover) {
        (Shape::Area { edges, .. }, Some(bands), None) => Grid::new(edges, bands).map(Box::new),
        _ => None,
    };
    Ok(Slot {
        fence,
        cover,
        bands,
        grid,
        tiles: tiles.into_boxed_slice(),
        polar,
    })
}

#[cfg(test)]
mod tests;
