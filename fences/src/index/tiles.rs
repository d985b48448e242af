//! The pre-filter of [`super::FenceIndex`]: a flat grid of 1° × 1° lon/lat
//! tiles, each listing the fences that may hold a point of it, with the box
//! that bounds the fence there. A lookup reads one tile and compares a few
//! boxes before any H3 or exact work, so a point far from every fence costs a
//! few nanoseconds and H3 cells are computed only for fences that can matter.
//! Adding or removing a fence touches only its own tiles.
//!
//! The layout is about cache misses, which dominate a lookup: an occupancy
//! bitmap that stays in cache, entries of 20 bytes (boxes in `f32`, rounded
//! outwards), and a tile holding one fence keeps it inline, so reading it
//! costs one miss instead of two.

use geo::{Coord, Rect, coord};

const COLS: usize = 360;
const ROWS: usize = 180;

/// A fence in one tile.
#[derive(Debug, Clone, Copy)]
pub(super) struct TileEntry {
    /// The union of the fence's bounding boxes that meet the tile, rounded
    /// outwards to `f32` (min x, min y, max x, max y): a point of the tile
    /// outside it is outside the fence.
    bbox: [f32; 4],
    pub slot: u32,
}

/// The fences of one tile.
#[derive(Debug, Clone, Default)]
enum TileList {
    #[default]
    Empty,
    One(TileEntry),
    Many(Vec<TileEntry>),
}

impl TileList {
    fn as_slice(&self) -> &[TileEntry] {
        match self {
            Self::Empty => &[],
            Self::One(e) => std::slice::from_ref(e),
            Self::Many(v) => v,
        }
    }

    fn push(&mut self, e: TileEntry) {
        *self = match std::mem::take(self) {
            Self::Empty => Self::One(e),
            Self::One(first) => Self::Many(vec![first, e]),
            Self::Many(mut v) => {
                v.push(e);
                Self::Many(v)
            }
        };
    }

    fn remove(&mut self, slot: u32) {
        *self = match std::mem::take(self) {
            Self::One(e) if e.slot == slot => Self::Empty,
            Self::Many(mut v) => {
                v.retain(|e| e.slot != slot);
                match v.len() {
                    0 => Self::Empty,
                    1 => Self::One(v[0]),
                    _ => Self::Many(v),
                }
            }
            other => other,
        };
    }
}

/// Per tile, the fences that may hold a point of it.
#[derive(Debug)]
pub(super) struct Tiles {
    tiles: Vec<TileList>,
    /// One bit per tile, set when its list is not empty: 8 KiB that stay in
    /// cache, so a point in an empty tile does not wait for its list's header.
    occupied: Vec<u64>,
}

impl Tiles {
    pub fn new() -> Self {
        Self {
            tiles: vec![TileList::Empty; COLS * ROWS],
            occupied: vec![0; (COLS * ROWS).div_ceil(64)],
        }
    }

    /// The fences listed in the tile of `p`, which must have been normalised
    /// (longitude within [-180, 180]).
    pub fn at(&self, p: Coord) -> &[TileEntry] {
        let t = tile_of(p.x, p.y);
        if self.occupied[t / 64] & (1 << (t % 64)) == 0 {
            return &[];
        }
        self.tiles[t].as_slice()
    }

    /// Lists `slot` in each of `tiles`, with its boxes that meet the tile;
    /// tiles none of its boxes meet are skipped.
    pub fn insert(&mut self, slot: u32, tiles: &[u32], bboxes: &[Rect]) {
        for &t in tiles {
            let Some(bbox) = bboxes
                .iter()
                .filter(|b| box_reaches(b, t as usize))
                .copied()
                .reduce(union)
            else {
                continue;
            };
            self.tiles[t as usize].push(TileEntry {
                bbox: outward(&bbox),
                slot,
            });
            self.occupied[t as usize / 64] |= 1 << (t % 64);
        }
    }

    /// Unlists `slot` from each of `tiles` (the ones given to [`Self::insert`]).
    pub fn remove(&mut self, slot: u32, tiles: &[u32]) {
        for &t in tiles {
            let list = &mut self.tiles[t as usize];
            list.remove(slot);
            if list.as_slice().is_empty() {
                self.occupied[t as usize / 64] &= !(1 << (t % 64));
            }
        }
    }

    /// Rough heap size in bytes.
    pub fn approx_bytes(&self) -> usize {
        self.tiles.capacity() * size_of::<TileList>()
            + self.occupied.len() * 8
            + self
                .tiles
                .iter()
                .map(|t| match t {
                    TileList::Many(v) => v.capacity() * size_of::<TileEntry>(),
                    _ => 0,
                })
                .sum::<usize>()
    }
}

/// Whether `p` lies in the entry's box.
pub(super) fn entry_holds(e: &TileEntry, p: Coord) -> bool {
    let [x0, y0, x1, y1] = e.bbox.map(f64::from);
    p.x >= x0 && p.x <= x1 && p.y >= y0 && p.y <= y1
}

/// The `f32` box holding `r`: each bound rounded outwards.
#[expect(
    clippy::cast_possible_truncation,
    reason = "rounded to f32 on purpose, then widened to hold r"
)]
fn outward(r: &Rect) -> [f32; 4] {
    let down = |v: f64| {
        let f = v as f32;
        if f64::from(f) > v { f.next_down() } else { f }
    };
    let up = |v: f64| {
        let f = v as f32;
        if f64::from(f) < v { f.next_up() } else { f }
    };
    [down(r.min().x), down(r.min().y), up(r.max().x), up(r.max().y)]
}

/// The tile of a lon/lat point (clamped, so ±180 and ±90 stay on the map).
/// Monotone in each coordinate, which is all the pre-filter relies on: it is
/// not exact at tile edges (`-1e-300 + 180.0` rounds to 180, so that point
/// lands in the tile east of 0°), and nothing may assume it is.
fn tile_of(x: f64, y: f64) -> usize {
    // Saturating casts: floor for the non-negative values, 0 below (and for NaN),
    // without the call to `floor` that baseline x86-64 makes.
    let col = ((x + 180.0) as usize).min(COLS - 1);
    let row = ((y + 90.0) as usize).min(ROWS - 1);
    row * COLS + col
}

/// Every tile a closed box meets by `tile_of`: since `tile_of` is monotone, a
/// point in the box has its tile in the result.
pub(super) fn tiles_of(r: &Rect) -> impl Iterator<Item = u32> {
    let (lo, hi) = (tile_of(r.min().x, r.min().y), tile_of(r.max().x, r.max().y));
    let (c0, r0, c1, r1) = (lo % COLS, lo / COLS, hi % COLS, hi / COLS);
    (r0..=r1).flat_map(move |row| (c0..=c1).map(move |col| (row * COLS + col) as u32))
}

/// Whether tile `t` is one of `tiles_of(b)`.
fn box_reaches(b: &Rect, t: usize) -> bool {
    let (lo, hi) = (tile_of(b.min().x, b.min().y), tile_of(b.max().x, b.max().y));
    (lo % COLS..=hi % COLS).contains(&(t % COLS)) && (lo / COLS..=hi / COLS).contains(&(t / COLS))
}

fn union(a: Rect, b: Rect) -> Rect {
    Rect::new(
        coord! { x: a.min().x.min(b.min().x), y: a.min().y.min(b.min().y) },
        coord! { x: a.max().x.max(b.max().x), y: a.max().y.max(b.max().y) },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exact::rect_contains;

    #[test]
    fn a_point_in_a_box_finds_the_box_in_its_tile_even_where_rounding_bites() {
        // (Listing may be a hair wider than the box: f32 boxes, rounded outwards.)
        // Boxes ending on or a hair off tile edges, at ±180, at the poles and at 0°,
        // where `x + 180.0` rounds; probe points on and just around their corners.
        let edges = [
            -180.0,
            -1.0,
            -1e-300,
            0.0,
            1e-300,
            1.0,
            179.999_999_999_999_97,
            180.0,
        ];
        let rows = [-90.0, -1e-300, 0.0, 40.0, 89.999_999_999_999_99, 90.0];
        let mut tiles = Tiles::new();
        let mut boxes = Vec::new();
        for (i, w) in edges.windows(2).enumerate() {
            for (j, h) in rows.windows(2).enumerate() {
                let b = Rect::new(coord! { x: w[0], y: h[0] }, coord! { x: w[1], y: h[1] });
                let slot = (i * rows.len() + j) as u32;
                let ts: Vec<u32> = tiles_of(&b).collect();
                tiles.insert(slot, &ts, &[b]);
                boxes.push((slot, b));
            }
        }
        let probes = edges
            .iter()
            .chain(&rows)
            .flat_map(|&v| [v, v.next_down(), v.next_up()]);
        let probes: Vec<f64> = probes.collect();
        for &x in probes.iter().filter(|x| x.abs() <= 180.0) {
            for &y in probes.iter().filter(|y| y.abs() <= 90.0) {
                let p = coord! { x: x, y: y };
                for (slot, b) in &boxes {
                    let listed = tiles.at(p).iter().any(|e| e.slot == *slot && entry_holds(e, p));
                    if rect_contains(b, p) {
                        assert!(listed, "({x}, {y}) in {b:?} but not listed");
                    } else if listed {
                        // f32 boxes are rounded outwards: only by an f32 step.
                        let (dx, dy) = (
                            (b.min().x - x).max(x - b.max().x).max(0.0),
                            (b.min().y - y).max(y - b.max().y).max(0.0),
                        );
                        assert!(dx <= 2e-5 && dy <= 1e-5, "({x}, {y}) listed, {b:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_fence_is_listed_where_its_boxes_are_and_only_there() {
        let mut tiles = Tiles::new();
        let boxes = [
            Rect::new(coord! { x: 10.0, y: 40.0 }, coord! { x: 11.0, y: 41.0 }),
            Rect::new(coord! { x: 179.5, y: -1.0 }, coord! { x: 180.0, y: -0.5 }),
        ];
        let ts: Vec<u32> = boxes.iter().flat_map(tiles_of).collect();
        tiles.insert(7, &ts, &boxes);
        for (x, y, listed) in [
            (10.5, 40.5, true),
            (11.0, 41.0, true),
            (9.999, 40.5, false),
            (11.5, 41.5, true),
            (180.0, -0.7, true),
            (-180.0, -0.7, false),
        ] {
            let p = coord! { x: x, y: y };
            let found = tiles.at(p).iter().any(|e| e.slot == 7);
            assert_eq!(found, listed, "({x}, {y})");
        }
        assert!(
            tiles
                .at(coord! { x: 11.5, y: 41.5 })
                .iter()
                .all(|e| !entry_holds(e, coord! { x: 11.5, y: 41.5 }))
        );
        tiles.remove(7, &ts);
        assert!(tiles.at(coord! { x: 10.5, y: 40.5 }).is_empty());
        assert!(tiles.approx_bytes() > 0);
    }
}
