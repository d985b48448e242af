//! Unit tests of `FenceIndex` and its stages; `fences/tests/index_vs_brute.rs` checks
//! lookups against testing every fence.

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
    // A 100-edge round polygon: a parallel crosses it twice, so its test by bands is cheap.
    let ring: Vec<[f64; 2]> = (0..=100)
        .map(|i| {
            let t = std::f64::consts::TAU * f64::from(i % 100) / 100.0;
            [30.0 + 2.0 * t.cos(), 40.0 + 2.0 * t.sin()]
        })
        .collect();
    idx.insert(prep("round", FenceKind::Polygon { rings: vec![ring] }))
        .expect("insert");
    // A comb of 100 teeth on a base from 40.0 to 41.0: a parallel through the teeth crosses
    // 200 edges, so its exact test is costly and it is covered.
    let mut comb = vec![[20.0, 40.0], [22.0, 40.0]];
    for tooth in (0..100).rev() {
        let x = 20.0 + 0.02 * f64::from(tooth);
        comb.extend([[x + 0.02, 41.5], [x + 0.01, 41.0]]);
    }
    comb.push([20.0, 40.0]);
    idx.insert(prep("comb", FenceKind::Polygon { rings: vec![comb] }))
        .expect("insert");
    let st = idx.stats();
    assert_eq!((st.fences, st.direct_fences), (3, 2), "{st:?}");
    assert!(st.cells > 0, "the comb is covered: {st:?}");
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
        idx.lookup(21.0, 40.5).expect("ok"),
        vec![Candidate {
            id: "comb",
            hit: Hit::Inside
        }],
        "inside the comb's base: an interior cell"
    );
    assert_eq!(idx.contains(30.0, 40.0).expect("ok"), vec!["round"]);
    assert!(idx.contains(30.0, 42.1).expect("ok").is_empty());
    assert!(
        idx.contains(21.01, 41.4).expect("ok").is_empty(),
        "between two teeth"
    );
    assert_eq!(idx.contains(21.02, 41.4).expect("ok"), vec!["comb"], "in a tooth");
    idx.remove("sq");
    assert!(idx.lookup(10.5, 40.5).expect("ok").is_empty());
    assert_eq!(idx.stats().direct_fences, 1);
}
