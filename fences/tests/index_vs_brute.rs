//! The H3 index must answer exactly what testing every fence answers: on random
//! fences of every kind (near the antimeridian and the poles too) with points
//! very close to their boundaries, and on the Natural Earth countries.

mod common;

use fences::{FenceIndex, Hit, IndexConfig, PreparedFence};
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
        let config = IndexConfig { max_cells_per_fence: 400, fixed_resolution: fixed_res.filter(|_| rng.random_bool(0.3)), ..IndexConfig::default() };
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

#[test]
fn index_matches_brute_force_on_countries() {
    let countries = common::countries();
    assert!(countries.len() > 170);
    let mut index = FenceIndex::new(IndexConfig::default()).expect("config");
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
    assert!(st.interior_entries > st.boundary_entries / 10, "{st:?}");
}
