//! The H3 index must answer exactly what testing every fence answers: on random
//! fences of every kind (near the antimeridian and the poles too) with points
//! very close to their boundaries, and on the Natural Earth countries.

mod common;

use fences::{Fence, FenceIndex, FenceKind, FenceLimits, Hit, IndexConfig, PreparedFence};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use rand::{Rng, SeedableRng, rngs::StdRng};

fn brute(fences: &[PreparedFence], lon: f64, lat: f64) -> Vec<String> {
    let mut ids: Vec<String> = fences
        .iter()
        .filter(|f| f.contains(lon, lat))
        .map(|f| f.id().to_owned())
        .collect();
    ids.sort_unstable();
    ids
}

fn check(index: &FenceIndex, fences: &[PreparedFence], lon: f64, lat: f64) -> Result<(), String> {
    let mut got: Vec<String> = index
        .contains(lon, lat)
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(str::to_owned)
        .collect();
    got.sort_unstable();
    let want = brute(fences, lon, lat);
    if got != want {
        return Err(format!("at ({lon}, {lat}): index {got:?}, brute force {want:?}"));
    }
    for c in index.lookup(lon, lat).map_err(|e| e.to_string())? {
        if c.hit == Hit::Inside && !want.iter().any(|w| w == c.id) {
            return Err(format!("at ({lon}, {lat}): {} claimed inside", c.id));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(Config {
        cases: 128,
        rng_seed: RngSeed::Fixed(0x6e0_7ac4),
        failure_persistence: None,
        ..Config::default()
    })]

    #[test]
    fn index_matches_brute_force_on_random_fences(seed in any::<u64>(), fixed_res in prop::option::of(3u8..9)) {
        let mut rng = StdRng::seed_from_u64(seed);
        // Half the runs cover every fence with H3 cells, the others test the cheaper
        // ones exactly (random fences cost 4 to 24 edges).
        let direct_max_cost = if rng.random_bool(0.5) { 0 } else { rng.random_range(0..32) };
        let config = IndexConfig { max_cells_per_fence: 400, fixed_resolution: fixed_res.filter(|_| rng.random_bool(0.3)), direct_max_cost, ..IndexConfig::default() };
        let mut index = FenceIndex::new(config).expect("config");
        let fences: Vec<PreparedFence> = (0..rng.random_range(1..6)).map(|i| common::random_fence(&mut rng, i)).collect();
        for f in &fences {
            index.insert(f.clone()).expect("insert");
        }
        for f in &fences {
            for (lon, lat) in common::points_near(&mut rng, f, 150) {
                let result = check(&index, &fences, lon, lat);
                prop_assert!(result.is_ok(), "{:?}", result);
            }
        }
    }
}

/// A value on or a hair off an integer degree, where the 1° tiles of the
/// pre-filter meet (and where `x + 180.0` rounds).
fn near_integer(rng: &mut StdRng, lo: i32, hi: i32) -> f64 {
    let k = f64::from(rng.random_range(lo..=hi));
    match rng.random_range(0..6) {
        0 => k,
        1 => k.next_up(),
        2 => k.next_down(),
        3 => k + 1e-300,
        4 => k - 1e-300,
        _ => k + rng.random_range(-1e-9..1e-9),
    }
}

proptest! {
    #![proptest_config(Config {
        cases: 64,
        rng_seed: RngSeed::Fixed(0x7113_ed9e),
        failure_persistence: None,
        ..Config::default()
    })]

    /// Boxes and circles whose edges and centres sit on tile edges (at 0°, ±180,
    /// ±80 where polar handling starts and ±90 too), probed on and around tile
    /// edges, tested exactly and through H3 covers.
    #[test]
    fn index_matches_brute_force_at_tile_edges(seed in any::<u64>()) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut fences = Vec::new();
        for i in 0..rng.random_range(1..5) {
            let (lon_lo, lat_lo) = match rng.random_range(0..4) {
                0 => (-2, -2),
                1 => (177, -2),
                2 => (-2, 78),
                _ => (-180, -90),
            };
            let (x0, y0) = (near_integer(&mut rng, lon_lo, lon_lo + 3), near_integer(&mut rng, lat_lo, lat_lo + 3));
            let (x1, y1) = (near_integer(&mut rng, lon_lo + 4, lon_lo + 6), near_integer(&mut rng, lat_lo + 4, lat_lo + 6));
            let kind = if rng.random_bool(0.7) {
                FenceKind::Polygon { rings: vec![vec![[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]] }
            } else {
                FenceKind::Circle { centre: [x0, y0.clamp(-89.0, 89.0)], radius_m: rng.random_range(1_000.0..300_000.0) }
            };
            if let Ok(f) = PreparedFence::new(Fence::new(format!("e{i}"), "", kind), &FenceLimits::default()) {
                fences.push(f);
            }
        }
        for direct_max_cost in [0, 64] {
            let config = IndexConfig { max_cells_per_fence: 400, direct_max_cost, ..IndexConfig::default() };
            let mut index = FenceIndex::new(config).expect("config");
            for f in &fences {
                index.insert(f.clone()).expect("insert");
            }
            for f in &fences {
                let b = f.bboxes()[0];
                for _ in 0..100 {
                    let (lo_x, lo_y) = (b.min().x.floor() as i32 - 1, b.min().y.floor() as i32 - 1);
                    let (hi_x, hi_y) = (b.max().x.ceil() as i32 + 1, b.max().y.ceil() as i32 + 1);
                    let x = near_integer(&mut rng, lo_x, hi_x).clamp(-180.0, 180.0);
                    let y = near_integer(&mut rng, lo_y, hi_y).clamp(-90.0, 90.0);
                    let result = check(&index, &fences, x, y);
                    prop_assert!(result.is_ok(), "{:?}", result);
                }
            }
        }
    }
}

#[test]
fn index_matches_brute_force_on_countries() {
    countries_match(&IndexConfig::default());
}

#[test]
fn index_matches_brute_force_on_countries_all_covered() {
    countries_match(&IndexConfig {
        direct_max_cost: 0,
        ..IndexConfig::default()
    });
}

/// The 1:50m layer (241 countries, about 100,000 edges): coastlines where covers meet
/// thousands of edges. Fewer points than at 1:110m, so that the brute force fits a debug test.
#[test]
fn index_matches_brute_force_on_50m_countries() {
    let countries = common::countries_from(include_str!("data/ne_50m_countries.geojson"));
    assert!(countries.len() > 230);
    let mut index = FenceIndex::new(IndexConfig::default()).expect("config");
    for c in &countries {
        index.insert(c.clone()).expect("insert");
    }
    let mut rng = StdRng::seed_from_u64(50);
    let uniform = (0..1_000).map(|_| (rng.random_range(-180.0..=180.0), rng.random_range(-90.0..=90.0)));
    let uniform: Vec<(f64, f64)> = uniform.collect();
    let near_coasts = countries.iter().flat_map(|c| common::points_near(&mut rng, c, 8));
    let near_coasts: Vec<(f64, f64)> = near_coasts.collect();
    for (lon, lat) in uniform.into_iter().chain(near_coasts) {
        if let Err(e) = check(&index, &countries, lon, lat) {
            panic!("{e}");
        }
    }
    assert_eq!(index.contains(2.35, 48.85).expect("ok"), vec!["France"]);
}

fn countries_match(config: &IndexConfig) {
    let countries = common::countries();
    assert!(countries.len() > 170);
    let mut index = FenceIndex::new(config.clone()).expect("config");
    for c in &countries {
        index.insert(c.clone()).expect("insert");
    }
    let mut rng = StdRng::seed_from_u64(7);
    // Uniform points, then points near the boundaries of every country, then the hard cases.
    for _ in 0..3_000 {
        let (lon, lat) = (rng.random_range(-180.0..=180.0), rng.random_range(-90.0..=90.0));
        if let Err(e) = check(&index, &countries, lon, lat) {
            panic!("{e}");
        }
    }
    for c in &countries {
        let n = if matches!(
            c.id(),
            "Russia" | "Fiji" | "Antarctica" | "Canada" | "United States of America"
        ) {
            400
        } else {
            30
        };
        for (lon, lat) in common::points_near(&mut rng, c, n) {
            if let Err(e) = check(&index, &countries, lon, lat) {
                panic!("{e}");
            }
        }
    }
    for (lon, lat) in [
        (180.0, -16.5),
        (-180.0, -16.5),
        (179.99, 67.0),
        (-179.99, 67.0),
        (0.0, -90.0),
        (45.0, -89.0),
        (0.0, -80.0),
        (160.0, -79.9),
    ] {
        if let Err(e) = check(&index, &countries, lon, lat) {
            panic!("{e}");
        }
    }
    assert_eq!(index.contains(0.0, -90.0).expect("ok"), vec!["Antarctica"]);
    assert_eq!(index.contains(2.35, 48.85).expect("ok"), vec!["France"]);
    assert_eq!(
        index.contains(-150.0, 65.0).expect("ok"),
        vec!["United States of America"]
    );
    assert_eq!(index.contains(179.5, 67.0).expect("ok"), vec!["Russia"]);
    assert_eq!(index.contains(-179.5, 67.0).expect("ok"), vec!["Russia"]);
    assert_eq!(index.contains(-179.99, -16.3).expect("ok"), vec!["Fiji"]);
    assert!(
        index.contains(0.0, 69.0).expect("ok").is_empty(),
        "no band across the map"
    );
    let st = index.stats();
    if config.direct_max_cost == 0 {
        assert!(st.interior_entries > st.boundary_entries / 10, "{st:?}");
        assert_eq!(st.direct_fences, 0, "{st:?}");
    } else {
        // A parallel crosses no country more than 64 times: every one is tested by bands.
        assert_eq!(st.direct_fences, st.fences, "{st:?}");
    }
}

/// A thin corridor along one long segment at high latitude (Oslo to Tromsø, 50 m either side):
/// its drawn area (what the index covers with cells, and what tiles and bbox queries use) holds
/// the points just inside its edge all along, and the index finds them. Drawn in at most 64
/// straight lon/lat chords, each bowed off the great circle by up to 14 m, it did not.
#[test]
fn a_long_thin_corridor_at_high_latitude_is_drawn_and_found_all_along_its_edge() {
    use fences::geodesy::{bearing, destination, interpolate};
    use geo::Contains;
    let (oslo, tromso) = (
        geo::coord! { x: 10.75, y: 59.91 },
        geo::coord! { x: 18.96, y: 69.65 },
    );
    let kind = FenceKind::Corridor {
        line: vec![[oslo.x, oslo.y], [tromso.x, tromso.y]],
        buffer_m: 50.0,
    };
    let fences =
        vec![PreparedFence::new(Fence::new("e6", "", kind), &FenceLimits::default()).expect("valid")];
    let mut index = FenceIndex::new(IndexConfig {
        direct_max_cost: 0,
        ..IndexConfig::default()
    })
    .expect("config");
    index.insert(fences[0].clone()).expect("insert");
    let area = fences[0].area_polygon();
    for i in 1..400 {
        let on = interpolate(oslo, tromso, f64::from(i) / 400.0);
        let heading = bearing(on, tromso);
        for side in [-90.0, 90.0] {
            let p = destination(on, heading + side, 49.0);
            assert!(area.contains(&geo::Point::from(p)), "drawn area misses {p:?}");
            check(&index, &fences, p.x, p.y).expect("agrees");
            assert_eq!(brute(&fences, p.x, p.y), ["e6"], "49 m off the line is inside");
        }
    }
}
