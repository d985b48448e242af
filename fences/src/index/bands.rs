//! Latitude bands over a polygon fence's edges, for the exact tests the index
//! runs on polygons of more than a few edges (cheap fences tested directly,
//! points beyond `polar_lat`, cells across ±180):
//! the even-odd ray test only needs the edges whose latitude range holds the
//! point, so each band lists those edges and a query reads one band instead of
//! every edge of every ring. The answer is the same as
//! [`crate::PreparedFence::contains`]: an edge outside the point's latitude
//! can neither hold the point nor cross its ray, and crossing parity does not
//! depend on order.

use geo::Coord;

use crate::exact::{on_segment, ray_crosses};

/// Edge lists per latitude band (a flat table: `edges[starts[b]..starts[b + 1]]`).
#[derive(Debug)]
pub(super) struct Bands {
    y0: f64,
    /// Bands per degree.
    scale: f64,
    starts: Box<[u32]>,
    edges: Box<[u32]>,
}

impl Bands {
    /// About one band per edge over the fence's latitude range.
    pub fn new(edges: &[[Coord; 2]]) -> Self {
        let (mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY);
        for &[a, b] in edges {
            y0 = y0.min(a.y.min(b.y));
            y1 = y1.max(a.y.max(b.y));
        }
        let n = edges.len().clamp(1, 1 << 16);
        let span = y1 - y0;
        let scale = if span > 0.0 { n as f64 / span } else { 0.0 };
        let mut bands = Self {
            y0,
            scale,
            starts: vec![0; n + 1].into_boxed_slice(),
            edges: Box::default(),
        };
        // Two passes over the band range of every edge: count, then fill.
        let range =
            |bands: &Self, [a, b]: [Coord; 2]| bands.band_of(a.y.min(b.y))..=bands.band_of(a.y.max(b.y));
        let mut counts = vec![0u32; n];
        for &e in edges {
            for band in range(&bands, e) {
                counts[band] += 1;
            }
        }
        let mut starts = vec![0u32; n + 1];
        for (band, c) in counts.iter().enumerate() {
            starts[band + 1] = starts[band] + c;
        }
        let mut fill = starts.clone();
        let mut list = vec![0u32; starts[n] as usize];
        for (i, &e) in edges.iter().enumerate() {
            for band in range(&bands, e) {
                list[fill[band] as usize] = i as u32;
                fill[band] += 1;
            }
        }
        bands.starts = starts.into_boxed_slice();
        bands.edges = list.into_boxed_slice();
        bands
    }

    /// Edges an exact test reads on average: the mean length of a band's list. About the
    /// number of times a parallel crosses the boundary (21 for Canada at 1:10m, 68,000 edges).
    pub fn mean_len(&self) -> f64 {
        self.edges.len() as f64 / (self.starts.len() - 1) as f64
    }

    /// The band of a latitude, clamped; monotone, so a latitude within an
    /// edge's range falls in one of the bands the edge is listed in.
    fn band_of(&self, y: f64) -> usize {
        let last = self.starts.len() - 2;
        // A saturating cast: floor for the non-negative values, 0 below (and for NaN),
        // without the call to `floor` that baseline x86-64 makes.
        (((y - self.y0) * self.scale) as usize).min(last)
    }

    /// Whether `p` is in the polygon of `edges` (the ones given to [`Self::new`]),
    /// boundary included.
    ///
    /// The exact predicates are needed only for edges that span `p.x`: an edge
    /// the eastward ray's height straddles (half-open, as [`ray_crosses`]) that
    /// lies wholly east of `p` is crossed, and one wholly west is not, since at
    /// that height its line passes strictly east (or west) of `p`; neither can
    /// hold `p`.
    pub fn contains(&self, edges: &[[Coord; 2]], p: Coord) -> bool {
        let band = self.band_of(p.y);
        let mut inside = false;
        for &i in &self.edges[self.starts[band] as usize..self.starts[band + 1] as usize] {
            let [a, b] = edges[i as usize];
            let straddles = (a.y > p.y) != (b.y > p.y);
            if straddles && a.x > p.x && b.x > p.x {
                inside = !inside;
                continue;
            }
            if straddles && a.x < p.x && b.x < p.x {
                continue;
            }
            if on_segment(a, b, p) {
                return true;
            }
            if straddles && ray_crosses(a, b, p) {
                inside = !inside;
            }
        }
        inside
    }

    /// Rough heap size in bytes.
    pub fn approx_bytes(&self) -> usize {
        (self.starts.len() + self.edges.len()) * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exact::{PreparedFence, Shape};
    use crate::fence::{Fence, FenceKind, FenceLimits};
    use rand::{Rng, SeedableRng, rngs::StdRng};

    /// Same answers as the fence's own test on vertices, edge points and
    /// jittered points of random many-edged polygons with a hole.
    #[test]
    fn bands_answer_like_the_full_test() {
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..50 {
            let star = |rng: &mut StdRng, r0: f64, r1: f64, n: usize| -> Vec<[f64; 2]> {
                let mut vertices: Vec<[f64; 2]> = (0..n)
                    .map(|i| {
                        let t = std::f64::consts::TAU * i as f64 / n as f64;
                        let r = rng.random_range(r0..r1);
                        [r * t.cos(), (r * t.sin()).clamp(-89.0, 89.0)]
                    })
                    .collect();
                vertices.push(vertices[0]);
                vertices
            };
            let n = rng.random_range(3..300);
            let kind = FenceKind::Polygon {
                rings: vec![star(&mut rng, 5.0, 10.0, n), star(&mut rng, 1.0, 2.0, 7)],
            };
            let f = PreparedFence::new(Fence::new("p", "p", kind), &FenceLimits::default()).expect("valid");
            let Shape::Area { edges, .. } = &f.shape else {
                unreachable!()
            };
            let bands = Bands::new(edges);
            for &[a, b] in edges {
                let t: f64 = rng.random();
                let j = 10f64.powf(rng.random_range(-12.0..-1.0));
                for p in [
                    a,
                    Coord {
                        x: a.x + t * (b.x - a.x),
                        y: a.y + t * (b.y - a.y),
                    },
                    Coord {
                        x: a.x + rng.random_range(-j..j),
                        y: a.y + rng.random_range(-j..j),
                    },
                    Coord {
                        x: a.x,
                        y: rng.random_range(-12.0..12.0),
                    },
                ] {
                    assert_eq!(bands.contains(edges, p), f.contains(p.x, p.y), "{p:?}");
                }
            }
        }
    }
}
