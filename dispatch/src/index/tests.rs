//! The live index against brute force: every query scanned over all positions with the same
//! distance and containment tests, on fleets that straddle the antimeridian and the poles.

use chrono::{DateTime, Duration, TimeZone, Utc};
use fences::{Fence, FenceKind, FenceLimits};
use proptest::prelude::*;

use super::*;

/// A live position (also used by the proximity tests).
pub(crate) fn at(device: &str, lon: f64, lat: f64, ts: DateTime<Utc>) -> LivePosition {
    LivePosition {
        device: device.into(),
        ts,
        position: [lon, lat],
        speed_mps: None,
        heading_deg: None,
    }
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 6, 12, 0, 0).unwrap()
}

fn distance(position: &LivePosition, (lon, lat): (f64, f64)) -> f64 {
    let [x, y] = position.position;
    haversine_m(Coord { x: lon, y: lat }, Coord { x, y })
}

#[test]
fn an_older_position_never_replaces_a_newer_one() {
    let mut index = LiveIndex::default();
    assert!(index.upsert(at("a", 1.0, 1.0, t0())));
    assert!(!index.upsert(at("a", 5.0, 5.0, t0() - Duration::seconds(1))));
    assert_eq!(index.get("a").map(|p| p.position), Some([1.0, 1.0]));
    assert!(index.upsert(at("a", 5.0, 5.0, t0() + Duration::seconds(1))));
    let near = index.nearest((5.0, 5.0), None, 5, &Filter::default());
    assert_eq!(near.len(), 1, "a moved device is in the tree once");
    assert!(near[0].distance_m < 1e-6);
    assert!(index.remove("a"));
    assert!(!index.remove("a"));
    assert!(index.nearest((5.0, 5.0), None, 5, &Filter::default()).is_empty());
    assert!(index.is_empty());
}

#[test]
fn a_bulk_load_keeps_the_newest_position_of_each_device() {
    let index = LiveIndex::from_positions([
        at("a", 1.0, 1.0, t0()),
        at("a", 2.0, 2.0, t0() - Duration::seconds(5)),
        at("b", 3.0, 3.0, t0()),
    ]);
    assert_eq!(index.len(), 2);
    assert_eq!(index.get("a").map(|p| p.position), Some([1.0, 1.0]));
}

#[test]
fn the_nearest_devices_are_found_across_the_antimeridian_and_the_pole() {
    let index = LiveIndex::from_positions([
        at("east", 179.99, 0.0, t0()),
        at("west", -179.99, 0.0, t0()),
        at("far", 170.0, 0.0, t0()),
        at("pole-a", 0.0, 89.999, t0()),
        at("pole-b", 180.0, 89.999, t0()),
    ]);
    let near: Vec<_> = index
        .nearest((180.0, 0.0), Some(5_000.0), 10, &Filter::default())
        .into_iter()
        .map(|n| n.position.device)
        .collect();
    assert_eq!(near.len(), 2);
    assert!(near.contains(&"east".into()) && near.contains(&"west".into()));
    let over_pole = index.nearest((90.0, 89.999), Some(300.0), 10, &Filter::default());
    assert_eq!(over_pole.len(), 2, "{over_pole:?}");
}

#[test]
fn a_limited_reader_finds_only_its_devices() {
    let index =
        LiveIndex::from_positions((0..100).map(|i| at(&format!("d{i}"), f64::from(i) * 0.001, 0.0, t0())));
    let filter = Filter {
        devices: fences::DeviceFilter::new(&["d9*".into()]),
        ..Filter::default()
    };
    let near = index.nearest((0.0, 0.0), None, 3, &filter);
    let ids: Vec<_> = near.iter().map(|n| n.position.device.as_str()).collect();
    assert_eq!(ids, ["d9", "d90", "d91"]);
    let page = index.within_bbox(&Bbox::WORLD, &filter, None, 5);
    assert!(page.more);
    assert!(page.positions.iter().all(|p| p.device.starts_with("d9")));
}

/// A position anywhere, often near the antimeridian or a pole.
fn position() -> impl Strategy<Value = (f64, f64)> {
    prop_oneof![
        (-180.0f64..=180.0, -90.0f64..=90.0),
        (prop_oneof![170.0f64..=180.0, -180.0f64..-170.0], -20.0f64..20.0),
        (-180.0f64..=180.0, prop_oneof![80.0f64..=90.0, -90.0f64..-80.0]),
        (2.0f64..2.2, 48.8f64..48.9),
    ]
}

fn fleet() -> impl Strategy<Value = Vec<LivePosition>> {
    prop::collection::vec((position(), 0i64..600), 1..300).prop_map(|points| {
        points
            .into_iter()
            .enumerate()
            .map(|(i, ((lon, lat), age))| at(&format!("d{i}"), lon, lat, t0() - Duration::seconds(age)))
            .collect()
    })
}

/// A filter by age, by prefix (listing few devices: they are tested one by one), by a group
/// and by a token's limit (ids and a prefix).
fn filter(max_age_s: Option<i64>, prefix: bool, limited: bool) -> Filter {
    let limit = ["d3*".to_owned(), "d10".to_owned(), "d7".to_owned()];
    Filter {
        since: max_age_s.map(|s| t0() - Duration::seconds(s)),
        prefixes: if prefix {
            vec!["d1".into(), "d2".into()]
        } else {
            Vec::new()
        },
        // The token's limit narrowed to a group, as the routes do.
        devices: limited.then(|| {
            let group = fences::DeviceFilter::from_parts(
                vec!["d10".into(), "d21".into()],
                vec!["d3".into(), "d11".into()],
            );
            fences::DeviceFilter::intersect(fences::DeviceFilter::new(&limit).as_ref(), &group)
        }),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn nearest_equals_a_brute_force_scan(
        fleet in fleet(), centre in position(), k in 0usize..20,
        radius in prop::option::of(1.0f64..3_000_000.0),
        max_age_s in prop::option::of(0i64..600), prefix in any::<bool>(), limited in any::<bool>(),
    ) {
        let index = LiveIndex::from_positions(fleet.clone());
        let filter = filter(max_age_s, prefix, limited);
        let mut expected: Vec<f64> = fleet.iter()
            .filter(|p| filter.admits(p))
            .map(|p| distance(p, centre))
            .filter(|d| radius.is_none_or(|r| *d <= r))
            .collect();
        expected.sort_by(f64::total_cmp);
        expected.truncate(k);
        let found = index.nearest(centre, radius, k, &filter);
        prop_assert_eq!(found.len(), expected.len());
        for (near, want) in found.iter().zip(&expected) {
            prop_assert!((near.distance_m - want).abs() < 1e-3, "{} vs {}", near.distance_m, want);
            prop_assert!(filter.admits(&near.position));
            prop_assert!((distance(&near.position, centre) - near.distance_m).abs() < 1e-9);
        }
    }

    #[test]
    fn within_a_box_equals_a_brute_force_scan(
        fleet in fleet(), corner in position(), width in 0.0f64..60.0, height in 0.0f64..60.0,
        limit in 1usize..400, max_age_s in prop::option::of(0i64..600), limited in any::<bool>(),
    ) {
        let (west, south) = corner;
        let east = if west + width > 180.0 { west + width - 360.0 } else { west + width };
        let bbox = Bbox::new(west, south, east, (south + height).min(90.0)).expect("box");
        let index = LiveIndex::from_positions(fleet.clone());
        let filter = filter(max_age_s, false, limited);
        let mut expected: Vec<&str> = fleet.iter()
            .filter(|p| filter.admits(p) && bbox.contains(p.position[0], p.position[1]))
            .map(|p| p.device.as_str())
            .collect();
        expected.sort_unstable();
        let page = index.within_bbox(&bbox, &filter, None, limit);
        prop_assert_eq!(page.more, expected.len() > limit);
        expected.truncate(limit);
        let found: Vec<&str> = page.positions.iter().map(|p| p.device.as_str()).collect();
        prop_assert_eq!(found, expected);
    }

    #[test]
    fn within_an_area_equals_a_brute_force_scan(
        fleet in fleet(), centre in position(), radius_m in 1.0f64..2_000_000.0, polygon in any::<bool>(),
    ) {
        let kind = if polygon {
            let (lon, lat) = centre;
            let lat = lat.clamp(-80.0, 75.0);
            // A square with a hole, crossing the antimeridian when the centre is near it.
            FenceKind::Polygon { rings: vec![
                vec![[lon - 5.0, lat - 5.0], [lon + 5.0, lat - 5.0], [lon + 5.0, lat + 5.0], [lon - 5.0, lat + 5.0], [lon - 5.0, lat - 5.0]],
                vec![[lon - 1.0, lat - 1.0], [lon - 1.0, lat + 1.0], [lon + 1.0, lat + 1.0], [lon + 1.0, lat - 1.0], [lon - 1.0, lat - 1.0]],
            ]}
        } else {
            FenceKind::Circle { centre: [centre.0, centre.1], radius_m }
        };
        let area = PreparedFence::new(Fence::new("q", "", kind), &FenceLimits::default()).expect("valid area");
        let index = LiveIndex::from_positions(fleet.clone());
        let mut expected: Vec<&str> = fleet.iter()
            .filter(|p| area.contains(p.position[0], p.position[1]))
            .map(|p| p.device.as_str())
            .collect();
        expected.sort_unstable();
        let page = index.within_area(&area, &Filter::default(), None, usize::MAX - 1);
        let found: Vec<&str> = page.positions.iter().map(|p| p.device.as_str()).collect();
        prop_assert_eq!(found, expected);
    }
}

#[test]
fn pages_follow_each_other_without_gaps_or_repeats() {
    let index = LiveIndex::from_positions((0..25).map(|i| at(&format!("d{i:02}"), 0.0, 0.0, t0())));
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = index.within_bbox(&Bbox::WORLD, &Filter::default(), after.as_deref(), 10);
        seen.extend(page.positions.iter().map(|p| p.device.clone()));
        after = page.positions.last().map(|p| p.device.clone());
        if !page.more {
            break;
        }
    }
    let expected: Vec<String> = (0..25).map(|i| format!("d{i:02}")).collect();
    assert_eq!(seen, expected);
}

#[test]
fn a_filter_listing_many_devices_walks_the_tree_with_the_same_result() {
    // "d1*" names 1,111 of 3,000 devices: more than a listing is tested one by one.
    let fleet: Vec<LivePosition> = (0..3_000)
        .map(|i| {
            at(
                &format!("d{i}"),
                f64::from(i % 60) * 0.01,
                f64::from(i / 60) * 0.01,
                t0(),
            )
        })
        .collect();
    let index = LiveIndex::from_positions(fleet.clone());
    let filter = Filter {
        devices: fences::DeviceFilter::new(&["d1*".into()]),
        ..Filter::default()
    };
    assert!(index.listed(&filter).is_none(), "the tree is walked");
    let prefixed = Filter {
        prefixes: vec!["d1".into()],
        ..Filter::default()
    };
    for centre in [(0.3, 0.25), (0.0, 0.0), (0.59, 0.49)] {
        let mut expected: Vec<f64> = fleet
            .iter()
            .filter(|p| p.device.starts_with("d1"))
            .map(|p| distance(p, centre))
            .collect();
        expected.sort_by(f64::total_cmp);
        expected.truncate(25);
        let found: Vec<f64> = index
            .nearest(centre, None, 25, &filter)
            .iter()
            .map(|n| n.distance_m)
            .collect();
        assert_eq!(found.len(), 25);
        for (a, b) in found.iter().zip(&expected) {
            assert!((a - b).abs() < 1e-3, "{a} vs {b}");
        }
        let by_prefix: Vec<f64> = index
            .nearest(centre, None, 25, &prefixed)
            .iter()
            .map(|n| n.distance_m)
            .collect();
        assert_eq!(by_prefix, found);
    }
}
