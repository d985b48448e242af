//! A coarse lon/lat grid over a many-edged polygon fence, read before its
//! latitude [`Bands`]: each cell is known to be wholly inside, wholly outside,
//! or crossed by the boundary. A point in a settled cell is answered from the
//! grid's bits (one cache line, kept in the index's dense array), with no edge
//! read; only points in boundary cells run the band test. On the Natural Earth
//! 1:10m countries about one cell in twenty is a boundary cell, and a band test
//! costs three dependent memory reads (band start, edge list, edges) before the
//! first edge is compared.
//!
//! Why a settled cell needs no test: the cell of a point is monotone in each
//! coordinate, so every float point of an edge's bounding box falls in the
//! block of cells between the cells of its corners, and all of them are marked
//! as boundary. If an edge met a cell's rectangle, the corner of their overlap
//! (a float point, since both boxes have float corners) would be in the cell
//! and in the edge's box: the cell would be marked. An unmarked cell is
//! therefore not met by the boundary, and neither is the segment between two
//! points of consecutive unmarked cells of a row (where it leaves one cell's
//! rectangle, the edge's box would reach the cell's float bound), so a run of
//! unmarked cells takes the answer of one point in its first cell, found by the
//! exact test. Long edges are marked piece by piece (boxes of their pieces,
//! widened far beyond the rounding of the interpolation), not by their whole
//! box, which for a long diagonal border would mark a block of cells.

use geo::Coord;

use super::bands::Bands;

/// What the grid knows about a point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cell {
    Outside,
    Inside,
    /// The boundary may cross the point's cell (or the point lies beyond the
    /// grid): the exact test decides.
    Boundary,
}

/// Cells per polygon edge: enough that most cells are settled on real borders.
const CELLS_PER_EDGE: usize = 8;
const MIN_CELLS: usize = 64;
const MAX_CELLS: usize = 1 << 20;
const MAX_SIDE: usize = 4_096;
/// Edges that span more cells than this are marked piece by piece.
const PIECE_CELLS: usize = 4;
/// How far the box of an edge's piece is widened (degrees): far beyond the
/// rounding of `a + t (b - a)` (about 1e-13 degrees), far below a cell.
const PIECE_MARGIN: f64 = 1e-9;

/// Two bits per cell (see [`Cell`]), row-major.
#[derive(Debug)]
pub(super) struct Grid {
    x0: f32,
    y0: f32,
    /// Cells per degree.
    sx: f32,
    sy: f32,
    cols: u16,
    rows: u16,
    /// Cells crossed by the boundary (for the index's figures).
    boundary: u32,
    bits: Box<[u64]>,
}

const OUTSIDE: u64 = 0;
const INSIDE: u64 = 1;
const BOUNDARY: u64 = 2;

impl Grid {
    /// The grid of the polygon whose `edges` (and their `bands`) are given, or
    /// `None` when its extent is degenerate.
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "grid sizes are clamped to u16 and origins rounded down to f32 on purpose"
    )]
    pub fn new(edges: &[[Coord; 2]], bands: &Bands) -> Option<Self> {
        let (mut x0, mut y0, mut x1, mut y1) =
            (f64::INFINITY, f64::INFINITY, f64::NEG_INFINITY, f64::NEG_INFINITY);
        for &[a, b] in edges {
            x0 = x0.min(a.x.min(b.x));
            y0 = y0.min(a.y.min(b.y));
            x1 = x1.max(a.x.max(b.x));
            y1 = y1.max(a.y.max(b.y));
        }
        let (w, h) = (x1 - x0, y1 - y0);
        if !(w > 0.0 && h > 0.0) {
            return None;
        }
        let target = (edges.len() * CELLS_PER_EDGE).clamp(MIN_CELLS, MAX_CELLS) as f64;
        let cols = (target * w / h).sqrt().round().clamp(1.0, MAX_SIDE as f64) as usize;
        let rows = (target / cols as f64).round().clamp(1.0, MAX_SIDE as f64) as usize;
        let mut grid = Self {
            x0: round_down(x0),
            y0: round_down(y0),
            sx: (cols as f64 / w) as f32,
            sy: (rows as f64 / h) as f32,
            cols: cols as u16,
            rows: rows as u16,
            boundary: 0,
            bits: vec![0; (cols * rows).div_ceil(32)].into_boxed_slice(),
        };
        for &[a, b] in edges {
            grid.mark_edge(a, b);
        }
        grid.settle(edges, bands);
        grid.boundary = (0..cols * rows).filter(|&i| grid.get(i) == BOUNDARY).count() as u32;
        Some(grid)
    }

    /// What the grid says about `p`.
    pub fn at(&self, p: Coord) -> Cell {
        let fx = (p.x - f64::from(self.x0)) * f64::from(self.sx);
        let fy = (p.y - f64::from(self.y0)) * f64::from(self.sy);
        // Also false for NaN.
        if !(fx >= 0.0 && fy >= 0.0 && fx < f64::from(self.cols) && fy < f64::from(self.rows)) {
            return Cell::Boundary;
        }
        match self.get(self.index(p)) {
            INSIDE => Cell::Inside,
            OUTSIDE => Cell::Outside,
            _ => Cell::Boundary,
        }
    }

    /// Cells crossed by the boundary, and all cells.
    pub fn counts(&self) -> (usize, usize) {
        (
            self.boundary as usize,
            usize::from(self.cols) * usize::from(self.rows),
        )
    }

    /// Rough heap size in bytes.
    pub fn approx_bytes(&self) -> usize {
        self.bits.len() * 8
    }

    /// The column and row of a point, clamped to the grid: monotone in each
    /// coordinate (what the module's argument rests on).
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a saturating cast is floor for the non-negative values kept, and 0 below"
    )]
    fn col_row(&self, p: Coord) -> (usize, usize) {
        let col = ((p.x - f64::from(self.x0)) * f64::from(self.sx)) as usize;
        let row = ((p.y - f64::from(self.y0)) * f64::from(self.sy)) as usize;
        (
            col.min(usize::from(self.cols) - 1),
            row.min(usize::from(self.rows) - 1),
        )
    }

    fn index(&self, p: Coord) -> usize {
        let (col, row) = self.col_row(p);
        row * usize::from(self.cols) + col
    }

    fn get(&self, i: usize) -> u64 {
        (self.bits[i / 32] >> (2 * (i % 32))) & 3
    }

    fn set(&mut self, i: usize, v: u64) {
        let word = &mut self.bits[i / 32];
        *word = (*word & !(3 << (2 * (i % 32)))) | (v << (2 * (i % 32)));
    }

    /// Marks the cells of the box from `lo` to `hi` as boundary.
    fn mark_box(&mut self, lo: Coord, hi: Coord) {
        let ((c0, r0), (c1, r1)) = (self.col_row(lo), self.col_row(hi));
        for row in r0..=r1 {
            for col in c0..=c1 {
                self.set(row * usize::from(self.cols) + col, BOUNDARY);
            }
        }
    }

    /// Marks every cell an edge may meet: its box, or for a long edge the
    /// widened boxes of pieces about [`PIECE_CELLS`] cells long.
    #[expect(
        clippy::cast_precision_loss,
        reason = "piece counts are small; t only needs to step through [0, 1]"
    )]
    fn mark_edge(&mut self, a: Coord, b: Coord) {
        let lo = |p: Coord, q: Coord| Coord {
            x: p.x.min(q.x),
            y: p.y.min(q.y),
        };
        let hi = |p: Coord, q: Coord| Coord {
            x: p.x.max(q.x),
            y: p.y.max(q.y),
        };
        let ((c0, r0), (c1, r1)) = (self.col_row(lo(a, b)), self.col_row(hi(a, b)));
        let span = (c1 - c0).max(r1 - r0);
        if span <= PIECE_CELLS {
            self.mark_box(lo(a, b), hi(a, b));
            return;
        }
        let pieces = span.div_ceil(PIECE_CELLS);
        let at = |i: usize| {
            let t = i as f64 / pieces as f64;
            Coord {
                x: a.x + t * (b.x - a.x),
                y: a.y + t * (b.y - a.y),
            }
        };
        let margin = Coord {
            x: PIECE_MARGIN,
            y: PIECE_MARGIN,
        };
        for i in 0..pieces {
            let (p, q) = (
                if i == 0 { a } else { at(i) },
                if i + 1 == pieces { b } else { at(i + 1) },
            );
            self.mark_box(lo(p, q) - margin, hi(p, q) + margin);
        }
    }

    /// Gives every unmarked cell its answer: per run of unmarked cells in a
    /// row, the exact answer at the centre of its first cell. A cell whose
    /// centre rounds into another cell is marked instead.
    #[expect(clippy::cast_precision_loss, reason = "cell counts are far below 2^52")]
    fn settle(&mut self, edges: &[[Coord; 2]], bands: &Bands) {
        let cols = usize::from(self.cols);
        for row in 0..usize::from(self.rows) {
            let mut run: Option<u64> = None;
            for col in 0..cols {
                let i = row * cols + col;
                if self.get(i) == BOUNDARY {
                    run = None;
                    continue;
                }
                let answer = if let Some(answer) = run {
                    answer
                } else {
                    let centre = Coord {
                        x: f64::from(self.x0) + (col as f64 + 0.5) / f64::from(self.sx),
                        y: f64::from(self.y0) + (row as f64 + 0.5) / f64::from(self.sy),
                    };
                    if self.index(centre) != i {
                        self.set(i, BOUNDARY);
                        continue;
                    }
                    if bands.contains(edges, centre) {
                        INSIDE
                    } else {
                        OUTSIDE
                    }
                };
                self.set(i, answer);
                run = Some(answer);
            }
        }
    }
}

/// The largest `f32` at or below `v`.
#[expect(clippy::cast_possible_truncation, reason = "rounded to f32 on purpose")]
fn round_down(v: f64) -> f32 {
    let f = v as f32;
    if f64::from(f) > v { f.next_down() } else { f }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exact::{PreparedFence, Shape};
    use crate::fence::{Fence, FenceKind, FenceLimits};
    use rand::{Rng, SeedableRng, rngs::StdRng};

    fn prepared(rings: Vec<Vec<[f64; 2]>>) -> PreparedFence {
        PreparedFence::new(
            Fence::new("p", "p", FenceKind::Polygon { rings }),
            &FenceLimits::default(),
        )
        .expect("valid")
    }

    /// A settled cell's answer equals the exact test's, on random many-edged
    /// polygons with a hole and a long diagonal edge, at random points, at
    /// vertices and on edges; and most cells are settled.
    #[test]
    fn settled_cells_answer_like_the_exact_test() {
        let mut rng = StdRng::seed_from_u64(11);
        let mut settled = 0;
        for _ in 0..40 {
            let n = rng.random_range(20..400);
            let mut outer: Vec<[f64; 2]> = (0..n)
                .map(|i| {
                    let t = std::f64::consts::TAU * f64::from(i) / f64::from(n);
                    let r = rng.random_range(6.0..10.0);
                    [r * t.cos(), r * t.sin()]
                })
                .collect();
            // A long straight stretch: marked piece by piece.
            outer.truncate(outer.len() * 3 / 4);
            outer.push(outer[0]);
            let hole = vec![[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 0.0]];
            let fence = prepared(vec![outer, hole]);
            let Shape::Area { edges, .. } = &fence.shape else {
                unreachable!()
            };
            let bands = Bands::new(edges);
            let grid = Grid::new(edges, &bands).expect("a grid");
            let (boundary, all) = grid.counts();
            settled += all - boundary;
            let mut probes: Vec<Coord> = (0..2_000)
                .map(|_| Coord {
                    x: rng.random_range(-11.0..11.0),
                    y: rng.random_range(-11.0..11.0),
                })
                .collect();
            for &[a, b] in edges {
                let t: f64 = rng.random();
                probes.extend([
                    a,
                    Coord {
                        x: a.x + t * (b.x - a.x),
                        y: a.y + t * (b.y - a.y),
                    },
                ]);
            }
            for p in probes {
                let exact = fence.contains(p.x, p.y);
                match grid.at(p) {
                    Cell::Inside => assert!(exact, "{p:?} settled inside, exact outside"),
                    Cell::Outside => assert!(!exact, "{p:?} settled outside, exact inside"),
                    Cell::Boundary => {}
                }
            }
        }
        assert!(settled > 0);
    }

    #[test]
    fn most_cells_of_a_detailed_ring_are_settled_and_far_points_fall_back() {
        let n = 2_000;
        let ring: Vec<[f64; 2]> = (0..=n)
            .map(|i| {
                let t = std::f64::consts::TAU * f64::from(i % n) / f64::from(n);
                let r = 5.0 + 0.2 * (40.0 * t).sin();
                [r * t.cos(), r * t.sin()]
            })
            .collect();
        let fence = prepared(vec![ring]);
        let Shape::Area { edges, .. } = &fence.shape else {
            unreachable!()
        };
        let grid = Grid::new(edges, &Bands::new(edges)).expect("a grid");
        let (boundary, all) = grid.counts();
        assert!(boundary * 5 < all, "{boundary} of {all} cells are boundary cells");
        assert_eq!(grid.at(Coord { x: 0.0, y: 0.0 }), Cell::Inside);
        assert_eq!(grid.at(Coord { x: 5.1, y: 5.1 }), Cell::Outside);
        assert_eq!(grid.at(Coord { x: 50.0, y: 0.0 }), Cell::Boundary);
        assert_eq!(grid.at(Coord { x: f64::NAN, y: 0.0 }), Cell::Boundary);
    }
}
