//! The sweep against geo's quadratic validation on random polygons, the rules one by one, and
//! the sizes and shapes that made the quadratic check a denial of service.

use geo::{MultiPolygon, Polygon, Validation, coord};
use proptest::prelude::*;

use super::*;

fn ring(points: &[(f64, f64)]) -> LineString {
    let mut coords: Vec<Coord> = points.iter().map(|&(x, y)| coord! { x: x, y: y }).collect();
    coords.push(coords[0]);
    LineString::new(coords)
}

fn polygon(shell: &[(f64, f64)], holes: &[&[(f64, f64)]]) -> Polygon {
    Polygon::new(ring(shell), holes.iter().map(|h| ring(h)).collect())
}

fn valid(polygons: Vec<Polygon>) -> bool {
    check(&MultiPolygon::new(polygons)).is_ok()
}

const SQUARE: [(f64, f64); 4] = [(0.0, 0.0), (10.0, 0.0), (10.0, 10.0), (0.0, 10.0)];

#[test]
fn the_rules_one_by_one() {
    assert!(valid(vec![polygon(&SQUARE, &[])]));
    let bow_tie = [(0.0, 0.0), (1.0, 1.0), (1.0, 0.0), (0.0, 1.0)];
    assert!(!valid(vec![polygon(&bow_tie, &[])]), "edges cross");
    let hole = [(2.0, 2.0), (4.0, 2.0), (4.0, 4.0), (2.0, 4.0)];
    assert!(valid(vec![polygon(&SQUARE, &[&hole])]));
    let outside = [(20.0, 2.0), (24.0, 2.0), (24.0, 4.0)];
    assert!(
        !valid(vec![polygon(&SQUARE, &[&outside])]),
        "a hole outside its shell"
    );
    let crossing_hole = [(8.0, 2.0), (14.0, 2.0), (14.0, 4.0)];
    assert!(
        !valid(vec![polygon(&SQUARE, &[&crossing_hole])]),
        "a hole crossing its shell"
    );
    let inner = [(2.5, 2.5), (3.5, 2.5), (3.0, 3.5)];
    assert!(
        !valid(vec![polygon(&SQUARE, &[&hole, &inner])]),
        "a hole inside a hole"
    );
    let touching_hole = [(0.0, 0.0), (4.0, 2.0), (2.0, 4.0)];
    assert!(
        valid(vec![polygon(&SQUARE, &[&touching_hole])]),
        "a hole may touch its shell at a vertex"
    );
    let t_hole = [(0.0, 5.0), (4.0, 2.0), (4.0, 8.0)];
    assert!(
        !valid(vec![polygon(&SQUARE, &[&t_hole])]),
        "a vertex inside another ring's edge"
    );
    let far = [(20.0, 0.0), (30.0, 0.0), (30.0, 10.0), (20.0, 10.0)];
    assert!(valid(vec![polygon(&SQUARE, &[]), polygon(&far, &[])]));
    let overlapping = [(5.0, 5.0), (15.0, 5.0), (15.0, 15.0), (5.0, 15.0)];
    assert!(
        !valid(vec![polygon(&SQUARE, &[]), polygon(&overlapping, &[])]),
        "parts cross"
    );
    let nested = [(1.0, 1.0), (2.0, 1.0), (2.0, 2.0)];
    assert!(
        !valid(vec![polygon(&SQUARE, &[]), polygon(&nested, &[])]),
        "a part inside a part"
    );
    let island = [(2.5, 2.5), (3.5, 2.5), (3.0, 3.5)];
    assert!(
        valid(vec![polygon(&SQUARE, &[&hole]), polygon(&island, &[])]),
        "an island in a lake"
    );
    let corner = [(10.0, 10.0), (20.0, 10.0), (20.0, 20.0), (10.0, 20.0)];
    assert!(
        valid(vec![polygon(&SQUARE, &[]), polygon(&corner, &[])]),
        "parts sharing a corner"
    );
    let shared_edge = [(10.0, 0.0), (20.0, 0.0), (20.0, 10.0), (10.0, 10.0)];
    assert!(
        !valid(vec![polygon(&SQUARE, &[]), polygon(&shared_edge, &[])]),
        "parts sharing an edge"
    );
    let spike = [
        (0.0, 0.0),
        (10.0, 0.0),
        (10.0, 10.0),
        (5.0, 10.0),
        (5.0, 15.0),
        (5.0, 10.0),
        (0.0, 10.0),
    ];
    assert!(
        !valid(vec![polygon(&spike, &[])]),
        "an edge doubling back on itself"
    );
    let line = [(0.0, 0.0), (1.0, 1.0), (2.0, 2.0)];
    assert!(!valid(vec![polygon(&line, &[])]), "no area");
}

#[test]
fn errors_say_which_rings_and_where() {
    let bow_tie = [(0.0, 0.0), (2.0, 2.0), (2.0, 0.0), (0.0, 2.0)];
    let error = check(&MultiPolygon::new(vec![polygon(&bow_tie, &[])]))
        .expect_err("crossing")
        .to_string();
    assert!(
        error.contains("polygon 0 exterior ring") && error.contains("(1.0000000, 1.0000000)"),
        "{error}"
    );
}

/// A star of `n` spikes (valid) and a comb of `n` long, parallel, overlapping-in-x teeth
/// (valid): both once took the quadratic check seconds to minutes.
#[test]
fn large_and_adversarial_rings_are_checked_fast() {
    let n = 40_000;
    let star: Vec<(f64, f64)> = (0..n)
        .map(|i| {
            let angle = std::f64::consts::TAU * f64::from(i) / f64::from(n);
            let radius = if i % 2 == 0 { 10.0 } else { 5.0 };
            (radius * angle.cos(), radius * angle.sin())
        })
        .collect();
    let comb: Vec<(f64, f64)> = (0..n / 2)
        .flat_map(|i| {
            let x = f64::from(i) * 0.001;
            [(x, 0.0), (x + 50.0, 10.0)]
        })
        .chain([(70.0, 10.0), (70.0, -5.0), (0.0, -5.0)])
        .collect();
    for (name, shape) in [("star", star), ("comb", comb)] {
        let started = std::time::Instant::now();
        let result = check(&MultiPolygon::new(vec![polygon(&shape, &[])]));
        let took = started.elapsed();
        assert!(took < std::time::Duration::from_secs(3), "{name}: {took:?}");
        if name == "star" {
            assert!(result.is_ok(), "{name}: {result:?}");
        }
    }
}

fn coords(n: std::ops::Range<usize>) -> impl Strategy<Value = Vec<(f64, f64)>> {
    prop::collection::vec((0.0..10.0f64, 0.0..10.0f64), n)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// On random rings (most of them invalid), random holes and random second parts, the
    /// sweep says what geo's quadratic validation says. Random coordinates put no three
    /// points on a line, where the two may differ on purpose (geo does not see every spike).
    #[test]
    fn agrees_with_geo(shell in coords(3..9), hole in coords(3..6), part in coords(3..6), with_hole: bool, with_part: bool) {
        let holes: Vec<&[(f64, f64)]> = if with_hole { vec![&hole] } else { vec![] };
        let mut polygons = vec![polygon(&shell, &holes)];
        if with_part {
            polygons.push(polygon(&part, &[]));
        }
        let mp = MultiPolygon::new(polygons);
        prop_assert_eq!(check(&mp).is_ok(), mp.is_valid(), "{:?}", mp);
    }
}
