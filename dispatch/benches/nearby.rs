//! The live index at fleet scale: 100,000 devices spread over metropolitan France.
//!
//! - `nearest_k10`: the 10 nearest devices to a random point of France (the dispatcher's first
//!   question); target p99 under 1 ms. The setup also times 20,000 queries one by one and
//!   prints their p50/p99/max, since criterion reports means.
//! - `nearest_k10_limited`: the same for a token limited to 0.1% of the fleet (an id prefix);
//!   the setup prints percentiles for 0.1%, 1% and 10% too (a short listing is tested device by
//!   device, a long one walks the tree past the devices the token may not see).
//! - `within_10km_box`: the devices in a 10 km box (about 20 of them), one page.
//! - `move_one`: one device moves (remove + insert in the tree), as a frame applies it.
//!
//! Run: `cargo bench -p dispatch --bench nearby`.

use std::hint::black_box;
use std::time::Instant;

use chrono::{Duration, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use dispatch::{Filter, LiveIndex};
use fences::{Bbox, DeviceFilter};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tracker::live::LivePosition;

const DEVICES: usize = 100_000;
/// Metropolitan France, roughly.
const WEST: f64 = -4.5;
const EAST: f64 = 8.0;
const SOUTH: f64 = 42.5;
const NORTH: f64 = 51.0;

fn random_point(rng: &mut StdRng) -> (f64, f64) {
    (rng.random_range(WEST..EAST), rng.random_range(SOUTH..NORTH))
}

fn fleet(rng: &mut StdRng) -> LiveIndex {
    let now = Utc::now();
    LiveIndex::from_positions((0..DEVICES).map(|i| {
        let (lon, lat) = random_point(rng);
        LivePosition {
            device: format!("veh-{i:06}"),
            ts: now - Duration::seconds(rng.random_range(0..600)),
            position: [lon, lat],
            speed_mps: Some(10.0),
            heading_deg: Some(90.0),
        }
    }))
}

/// p50, p99 and max of `queries` timed one by one, in microseconds.
fn percentiles(index: &LiveIndex, filter: &Filter, rng: &mut StdRng, queries: usize) -> [f64; 3] {
    let mut micros: Vec<f64> = (0..queries)
        .map(|_| {
            let centre = random_point(rng);
            let start = Instant::now();
            black_box(index.nearest(centre, None, 10, filter));
            start.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    micros.sort_by(f64::total_cmp);
    [
        micros[queries / 2],
        micros[queries * 99 / 100],
        micros[queries - 1],
    ]
}

fn bench(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(7);
    let build = Instant::now();
    let index = fleet(&mut rng);
    println!(
        "bulk load of {DEVICES} devices: {:.1} ms",
        build.elapsed().as_secs_f64() * 1e3
    );
    // Tokens limited to 0.1%, 1% and 10% of the fleet by an id prefix.
    let limited = |prefix: &str| Filter {
        devices: DeviceFilter::new(&[format!("{prefix}*")]),
        ..Filter::default()
    };
    let tenth = limited("veh-0000");
    for (name, filter) in [
        ("all devices", &Filter::default()),
        ("a token limited to 0.1%", &tenth),
        ("a token limited to 1%", &limited("veh-000")),
        ("a token limited to 10%", &limited("veh-00")),
    ] {
        let [p50, p99, max] = percentiles(&index, filter, &mut rng, 20_000);
        println!("k = 10 nearest, {name}: p50 {p50:.1} µs, p99 {p99:.1} µs, max {max:.1} µs");
    }

    c.bench_function("nearest_k10", |b| {
        b.iter(|| black_box(index.nearest(random_point(&mut rng), None, 10, &Filter::default())));
    });
    c.bench_function("nearest_k10_limited", |b| {
        b.iter(|| black_box(index.nearest(random_point(&mut rng), None, 10, &tenth)));
    });
    c.bench_function("within_10km_box", |b| {
        b.iter(|| {
            let (lon, lat) = random_point(&mut rng);
            let bbox = Bbox::new(lon, lat, lon + 0.13, lat + 0.09).expect("box");
            black_box(index.within_bbox(&bbox, &Filter::default(), None, 1_000))
        });
    });
    let mut moving = fleet(&mut StdRng::seed_from_u64(8));
    let mut ts = Utc::now();
    c.bench_function("move_one", |b| {
        b.iter(|| {
            ts += Duration::milliseconds(1);
            let (lon, lat) = random_point(&mut rng);
            let device = format!("veh-{:06}", rng.random_range(0..DEVICES));
            black_box(moving.upsert(LivePosition {
                device,
                ts,
                position: [lon, lat],
                speed_mps: None,
                heading_deg: None,
            }))
        });
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
