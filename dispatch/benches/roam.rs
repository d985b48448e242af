//! Proximity rules at fleet scale: 10,000 couriers in one group (listed by id) among 50,000
//! devices in a 10 km square of Paris, watched against each other within 100 m (hysteresis 20 m).
//!
//! - `roam_frame_1000`: a live frame of 1,000 couriers that each moved about 15 m, through the
//!   incremental step (each mover's neighbourhood from the live index, its near pairs measured
//!   again). The setup prints the cost per moved device and the near pairs it keeps.
//! - `roam_reassess`: every pair checked from scratch (after a rule or group change, or a reload
//!   of the live index).
//!
//! Run: `cargo bench -p dispatch --bench roam`.

use std::collections::BTreeSet;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use chrono::{Duration, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use dispatch::roam::state::{on_moved, reassess};
use dispatch::roam::{ProximityRule, RoamState, Rules};
use dispatch::{Group, Groups, SharedLiveIndex};
use fences::AppliesTo;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tracker::live::LivePosition;

const DEVICES: usize = 50_000;
const COURIERS: usize = 10_000;
const FRAME: usize = 1_000;
/// A 10 km square of Paris.
const WEST: f64 = 2.28;
const SOUTH: f64 = 48.82;
const SIDE_LON: f64 = 0.136;
const SIDE_LAT: f64 = 0.09;

fn device(i: usize) -> String {
    if i < COURIERS {
        format!("courier-{i:05}")
    } else {
        format!("car-{i:05}")
    }
}

fn setup(rng: &mut StdRng) -> (SharedLiveIndex, Rules, Groups) {
    let now = Utc::now();
    let index = SharedLiveIndex::default();
    index.apply(&Arc::new(
        (0..DEVICES)
            .map(|i| LivePosition {
                device: device(i),
                ts: now,
                position: [
                    WEST + rng.random_range(0.0..SIDE_LON),
                    SOUTH + rng.random_range(0.0..SIDE_LAT),
                ],
                speed_mps: None,
                heading_deg: None,
            })
            .collect(),
    ));
    let groups = Groups::default();
    groups.put(Group {
        id: "couriers".into(),
        name: String::new(),
        devices: (0..COURIERS).map(device).collect(),
        prefixes: BTreeSet::new(),
    });
    let couriers = AppliesTo::Devices {
        ids: BTreeSet::new(),
        prefixes: Vec::new(),
        groups: ["couriers".to_owned()].into(),
    };
    let rules = Rules::default();
    rules.put(ProximityRule {
        id: "couriers".into(),
        name: String::new(),
        devices: couriers.clone(),
        near: couriers,
        radius_m: 100.0,
        hysteresis_m: 20.0,
    });
    (index, rules, groups)
}

/// A frame of `FRAME` random couriers, each moved about 15 m from where it is.
fn frame(index: &SharedLiveIndex, rng: &mut StdRng, ts: chrono::DateTime<Utc>) -> Arc<Vec<LivePosition>> {
    let live = index.read();
    let mut moved = Vec::with_capacity(FRAME);
    for _ in 0..FRAME {
        let Some(p) = live.get(&device(rng.random_range(0..COURIERS))) else {
            continue;
        };
        moved.push(LivePosition {
            ts,
            position: [
                p.position[0] + rng.random_range(-0.0002..0.0002),
                p.position[1] + rng.random_range(-0.000_13..0.000_13),
            ],
            ..p.clone()
        });
    }
    Arc::new(moved)
}

fn bench(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(11);
    let (index, rules, groups) = setup(&mut rng);
    let set = rules.snapshot();
    let mut state = RoamState::default();
    let started = Instant::now();
    let mut out = Vec::new();
    reassess(&mut state, (&set, &groups), &index, &mut out);
    println!(
        "first reassessment of {COURIERS} couriers: {:.1} ms, {} near pairs",
        started.elapsed().as_secs_f64() * 1e3,
        state.len()
    );

    let mut ts = Utc::now();
    // One frame through the step: (time of the step alone, moved devices, near/apart found).
    let mut step = |state: &mut RoamState| {
        ts += Duration::seconds(1);
        let frame = frame(&index, &mut rng, ts);
        index.apply(&frame);
        let names: Vec<&str> = frame.iter().map(|p| p.device.as_str()).collect();
        let mut out = Vec::new();
        let started = Instant::now();
        on_moved(state, (&set, &groups), &index, &names, &mut out);
        (started.elapsed(), names.len(), black_box(out).len())
    };
    let (mut moved, mut spent, mut transitions) = (0usize, 0.0f64, 0usize);
    for _ in 0..50 {
        let (took, n, found) = step(&mut state);
        spent += took.as_secs_f64();
        moved += n;
        transitions += found;
    }
    println!(
        "incremental step: {:.2} µs per moved courier ({:.0} moves/s on one core), {transitions} near/apart over {moved} moves, {} near pairs",
        spent / moved as f64 * 1e6,
        moved as f64 / spent,
        state.len()
    );

    c.bench_function("roam_frame_1000", |b| {
        b.iter_custom(|iterations| (0..iterations).map(|_| step(&mut state).0).sum());
    });
    c.bench_function("roam_reassess", |b| {
        b.iter(|| {
            let mut out = Vec::new();
            reassess(&mut state, (&set, &groups), &index, &mut out);
            black_box(out)
        });
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = bench
}
criterion_main!(benches);
