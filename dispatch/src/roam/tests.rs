//! The incremental step against an oracle that measures every pair of every rule after each
//! frame, on fleets in Paris, across the antimeridian and at the pole; and scripted approaches.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use fences::geodesy::haversine_m;
use fences::{AppliesTo, Group, Groups};
use geo::Coord;
use proptest::prelude::*;
use tracker::live::LivePosition;

use super::rule::{ProximityRule, Rules};
use super::state::{self, PairKey, RoamState, Transition};
use crate::index::tests::at;
use crate::shared::SharedLiveIndex;

fn side(entries: &[&str]) -> AppliesTo {
    AppliesTo::from_entries(&serde_json::json!(entries)).expect("entries")
}

fn rule(id: &str, devices: AppliesTo, near: AppliesTo, radius_m: f64, hysteresis_m: f64) -> ProximityRule {
    ProximityRule {
        id: id.into(),
        name: String::new(),
        devices,
        near,
        radius_m,
        hysteresis_m,
    }
}

/// Every kind of rule: all against all, prefix against prefix, listed ids, a group.
fn rules() -> Rules {
    let rules = Rules::default();
    rules.put(rule("all", AppliesTo::All, AppliesTo::All, 300.0, 50.0));
    rules.put(rule("ab", side(&["a-*"]), side(&["b-*"]), 500.0, 0.0));
    rules.put(rule(
        "listed",
        side(&["a-1", "a-2"]),
        side(&["b-2"]),
        800.0,
        100.0,
    ));
    rules.put(rule(
        "crew",
        side(&["group:crew"]),
        side(&["group:crew", "b-0"]),
        400.0,
        40.0,
    ));
    rules
}

fn groups() -> Groups {
    let groups = Groups::default();
    groups.put(Group {
        id: "crew".into(),
        name: String::new(),
        devices: ["a-0".to_owned(), "b-1".to_owned(), "c-1".to_owned()].into(),
        prefixes: ["c-2".to_owned()].into(),
    });
    groups
}

/// The oracle: every pair of every rule measured, near at the radius, apart past the margin.
fn oracle_step(
    near: &mut BTreeSet<PairKey>,
    positions: &BTreeMap<String, [f64; 2]>,
    rules: &Rules,
    groups: &Groups,
) {
    let set = rules.snapshot();
    for rule in set.iter() {
        for (a, pa) in positions {
            for (b, pb) in positions {
                let Some((device, other)) = rule.pair(a, b, groups) else {
                    continue;
                };
                if (device, other) != (a.as_str(), b.as_str()) {
                    continue;
                }
                let key = PairKey {
                    rule: rule.id.clone(),
                    device: a.clone(),
                    other: b.clone(),
                };
                let d = haversine_m(Coord { x: pa[0], y: pa[1] }, Coord { x: pb[0], y: pb[1] });
                if near.contains(&key) && d > rule.apart_m() {
                    near.remove(&key);
                } else if !near.contains(&key) && d <= rule.radius_m {
                    near.insert(key);
                }
            }
        }
    }
}

/// Applies the transitions to a set of near pairs, checking each is a real change.
fn follow(near: &mut BTreeSet<PairKey>, transitions: &[Transition]) {
    for t in transitions {
        match t {
            Transition::Near(m) => assert!(near.insert(m.key.clone()), "near twice: {m:?}"),
            Transition::Apart(m) => assert!(near.remove(&m.key), "apart without near: {m:?}"),
            Transition::Dropped(key) => panic!("nothing should be dropped here: {key:?}"),
        }
    }
}

const DEVICES: [&str; 12] = [
    "a-0", "a-1", "a-2", "a-3", "b-0", "b-1", "b-2", "b-3", "c-1", "c-20", "c-21", "d-0",
];
/// Where the fleets are: Paris, across the antimeridian, next to the north pole.
const PLACES: [(f64, f64); 3] = [(2.35, 48.85), (179.998, -17.0), (0.0, 89.995)];

/// A move: a device and its offset from the place, in metres east and north.
fn moves() -> impl Strategy<Value = Vec<Vec<(usize, f64, f64)>>> {
    let one = (0..DEVICES.len(), -700.0..700.0f64, -700.0..700.0f64);
    prop::collection::vec(prop::collection::vec(one, 1..8), 1..25)
}

fn offset((lon, lat): (f64, f64), east_m: f64, north_m: f64) -> [f64; 2] {
    let dlat = north_m / 111_195.0;
    let dlon = east_m / (111_195.0 * lat.to_radians().cos());
    let lon = lon + dlon;
    let lon = if lon > 180.0 { lon - 360.0 } else { lon };
    [lon, (lat + dlat).min(90.0)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn incremental_steps_agree_with_measuring_every_pair(place in 0..PLACES.len(), frames in moves()) {
        let (rules, groups) = (rules(), groups());
        let set = rules.snapshot();
        let index = SharedLiveIndex::default();
        let mut state = RoamState::default();
        let (mut expected, mut followed) = (BTreeSet::new(), BTreeSet::new());
        let mut positions = BTreeMap::new();
        let start = Utc::now();
        for (step, frame) in frames.iter().enumerate() {
            let ts = start + Duration::seconds(step as i64);
            let moved: Vec<LivePosition> = frame
                .iter()
                .map(|&(d, e, n)| {
                    let [lon, lat] = offset(PLACES[place], e, n);
                    at(DEVICES[d], lon, lat, ts)
                })
                .collect();
            for p in &moved {
                positions.insert(p.device.clone(), p.position);
            }
            index.apply(&std::sync::Arc::new(moved.clone()));
            let names: Vec<&str> = moved.iter().map(|p| p.device.as_str()).collect();
            let mut out = Vec::new();
            state::on_moved(&mut state, (&set, &groups), &index, &names, &mut out);
            follow(&mut followed, &out);
            oracle_step(&mut expected, &positions, &rules, &groups);
            prop_assert_eq!(&followed, &expected, "after frame {}", step);
            prop_assert_eq!(state.len(), expected.len());
        }
        // A reassessment from scratch of a state loaded from the pairs changes nothing.
        let mut reloaded = RoamState::load(expected.iter().map(|k| (k.clone(), start)));
        let mut out = Vec::new();
        state::reassess(&mut reloaded, (&set, &groups), &index, &mut out);
        prop_assert!(out.is_empty(), "{:?}", out);
    }
}

/// Runs one frame moving `device` to `metres` east of a fixed point; returns the transitions.
fn step_to(
    state: &mut RoamState,
    (rules, groups, index): (&Rules, &Groups, &SharedLiveIndex),
    device: &str,
    east_m: f64,
    ts: DateTime<Utc>,
) -> Vec<Transition> {
    let [lon, lat] = offset((2.35, 48.85), east_m, 0.0);
    index.apply(&std::sync::Arc::new(vec![at(device, lon, lat, ts)]));
    let mut out = Vec::new();
    state::on_moved(state, (&rules.snapshot(), groups), index, &[device], &mut out);
    out
}

fn kinds(transitions: &[Transition]) -> Vec<(String, &'static str)> {
    transitions
        .iter()
        .map(|t| match t {
            Transition::Near(m) => (format!("{}~{}", m.key.device, m.key.other), "near"),
            Transition::Apart(m) => (format!("{}~{}", m.key.device, m.key.other), "apart"),
            Transition::Dropped(k) => (format!("{}~{}", k.device, k.other), "dropped"),
        })
        .collect()
}

#[test]
fn an_approach_fires_near_once_and_a_separation_apart_only_past_the_margin() {
    let rules = Rules::default();
    rules.put(rule("pickup", side(&["van"]), side(&["depot"]), 200.0, 50.0));
    let (groups, index) = (Groups::default(), SharedLiveIndex::default());
    let mut state = RoamState::default();
    let t0 = Utc::now();
    let cx = (&rules, &groups, &index);
    assert!(step_to(&mut state, cx, "depot", 0.0, t0).is_empty());
    let path = [
        1_000.0, 500.0, 210.0, 190.0, 20.0, 0.0, 120.0, 240.0, 199.0, 260.0, 230.0, 180.0,
    ];
    let mut seen = Vec::new();
    for (i, east_m) in path.into_iter().enumerate() {
        let ts = t0 + Duration::seconds(i as i64 + 1);
        for (pair, kind) in kinds(&step_to(&mut state, cx, "van", east_m, ts)) {
            seen.push((east_m, pair, kind));
        }
    }
    let pair = "van~depot".to_owned();
    assert_eq!(
        seen,
        [
            (190.0, pair.clone(), "near"),
            (260.0, pair.clone(), "apart"),
            (180.0, pair, "near")
        ],
        "240 m is inside the 50 m margin; 230 m after apart is not near again"
    );
    // The alert says where the watched device was, how far, and when.
    let out = step_to(&mut state, cx, "van", 400.0, t0 + Duration::seconds(60));
    let Some(Transition::Apart(meeting)) = out.first() else {
        panic!("apart expected: {out:?}");
    };
    assert!((meeting.distance_m - 400.0).abs() < 1.0, "{meeting:?}");
    assert_eq!(meeting.ts, t0 + Duration::seconds(60));
    assert!((meeting.position[1] - 48.85).abs() < 1e-9);
}

#[test]
fn pairs_of_deleted_rules_erased_devices_and_left_groups_are_dropped_without_alerts() {
    let rules = Rules::default();
    rules.put(rule("r", side(&["group:crew"]), side(&["depot"]), 200.0, 0.0));
    rules.put(rule("s", side(&["x"]), side(&["depot"]), 200.0, 0.0));
    let groups = Groups::default();
    let crew = |members: &[&str]| Group {
        id: "crew".into(),
        name: String::new(),
        devices: members.iter().map(|m| (*m).to_owned()).collect(),
        prefixes: BTreeSet::new(),
    };
    groups.put(crew(&["a", "b"]));
    let index = SharedLiveIndex::default();
    let t0 = Utc::now();
    let mut state = RoamState::default();
    let cx = (&rules, &groups, &index);
    step_to(&mut state, cx, "depot", 0.0, t0);
    for device in ["a", "b", "x"] {
        let near = step_to(&mut state, cx, device, 10.0, t0);
        assert_eq!(kinds(&near), [(format!("{device}~depot"), "near")]);
    }
    groups.put(crew(&["a"]));
    rules.remove("s");
    index.remove("a");
    let mut out = Vec::new();
    state::reassess(&mut state, (&rules.snapshot(), &groups), &index, &mut out);
    let mut dropped = kinds(&out);
    dropped.sort();
    assert_eq!(
        dropped,
        [
            ("a~depot".into(), "dropped"),
            ("b~depot".into(), "dropped"),
            ("x~depot".into(), "dropped")
        ]
    );
    assert!(state.is_empty());
}

#[test]
fn a_device_has_at_most_the_nearest_max_partners_in_a_rule() {
    let rules = Rules::default();
    rules.put(rule("depot", AppliesTo::All, AppliesTo::All, 1_000.0, 0.0));
    let (groups, index) = (Groups::default(), SharedLiveIndex::default());
    let t0 = Utc::now();
    let parked: Vec<LivePosition> = (0..state::MAX_PARTNERS + 50)
        .map(|i| {
            let [lon, lat] = offset((2.35, 48.85), i as f64, 0.0);
            at(&format!("van-{i:03}"), lon, lat, t0)
        })
        .collect();
    index.apply(&std::sync::Arc::new(parked));
    let mut state = RoamState::default();
    let mut out = Vec::new();
    state::on_moved(
        &mut state,
        (&rules.snapshot(), &groups),
        &index,
        &["van-000"],
        &mut out,
    );
    assert_eq!(out.len(), state::MAX_PARTNERS);
    let farthest = out
        .iter()
        .filter_map(|t| match t {
            Transition::Near(m) => Some(m.distance_m),
            _ => None,
        })
        .fold(0.0, f64::max);
    assert!(
        farthest < state::MAX_PARTNERS as f64 + 1.0,
        "the nearest are kept: {farthest}"
    );
}
