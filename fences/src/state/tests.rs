//! Unit tests of the enter/exit/dwell/overspeed state machine.

use super::*;
use crate::fence::{FenceKind, FenceLimits};

const CFG: StateConfig = StateConfig {
    max_gap_s: 300,
    max_speed_mps: 100.0,
    crossing_step_m: 5.0,
    max_crossing_samples: 8_192,
};

/// A 0.01° square (about 1.1 km) at the equator, x in [0, 0.01].
fn square(hysteresis_m: f64) -> PreparedFence {
    let mut f = Fence::new(
        "sq",
        "sq",
        FenceKind::Polygon {
            rings: vec![vec![
                [0.0, 0.0],
                [0.01, 0.0],
                [0.01, 0.01],
                [0.0, 0.01],
                [0.0, 0.0],
            ]],
        },
    );
    f.hysteresis_m = hysteresis_m;
    f.dwell_s = Some(60);
    f.speed_limit_mps = Some(20.0);
    PreparedFence::new(f, &FenceLimits::default()).expect("valid")
}

fn fix(ts_s: i64, lon: f64, lat: f64) -> Fix {
    Fix {
        ts_ms: ts_s * 1_000,
        lon,
        lat,
        accuracy_m: 0.0,
        speed_mps: Some(1.0),
    }
}

fn kinds(t: &[Transition]) -> Vec<TransitionKind> {
    t.iter().map(|t| t.kind).collect()
}

fn run(fence: &PreparedFence, state: &mut FenceState, fixes: &[Fix]) -> Vec<Transition> {
    fixes
        .iter()
        .flat_map(|f| step(fence, state, f, &CFG).expect("valid fix"))
        .collect()
}

use TransitionKind::{Dwell, Enter, Exit, Overspeed};

#[test]
fn enter_then_exit() {
    let f = square(0.0);
    let mut st = FenceState::default();
    let t = run(
        &f,
        &mut st,
        &[fix(0, -0.001, 0.005), fix(10, 0.005, 0.005), fix(20, 0.02, 0.005)],
    );
    assert_eq!(kinds(&t), vec![Enter, Exit]);
    assert_eq!((t[0].ts_ms, t[1].ts_ms), (10_000, 20_000));
    assert_eq!(st.status, Status::Outside);
}

#[test]
fn hysteresis_prevents_flapping_on_the_line() {
    let f = square(20.0);
    let mut st = FenceState::default();
    // Jitter within ±10 m of the western edge (x = 0): nothing happens.
    let jitter: Vec<Fix> = (0..10)
        .map(|i| fix(i, if i % 2 == 0 { -0.00009 } else { 0.00009 }, 0.005))
        .collect();
    assert!(run(&f, &mut st, &jitter).is_empty());
    // 30 m inside: enter. Back to 10 m inside and 10 m outside: still inside. 30 m out: exit.
    let t = run(
        &f,
        &mut st,
        &[
            fix(20, 0.00027, 0.005),
            fix(21, 0.00009, 0.005),
            fix(22, -0.00009, 0.005),
        ],
    );
    assert_eq!(kinds(&t), vec![Enter]);
    let t = run(&f, &mut st, &[fix(23, -0.00027, 0.005)]);
    assert_eq!(kinds(&t), vec![Exit]);
}

#[test]
fn accuracy_gating() {
    let f = square(0.0);
    let mut st = FenceState::default();
    let mut fx = fix(0, 0.0005, 0.005); // 55 m inside
    fx.accuracy_m = 100.0;
    assert!(
        run(&f, &mut st, &[fx]).is_empty(),
        "accuracy circle straddles the edge"
    );
    fx.accuracy_m = 30.0;
    fx.ts_ms += 1_000;
    assert_eq!(kinds(&run(&f, &mut st, &[fx])), vec![Enter]);
    let mut out = fix(5, -0.0005, 0.005);
    out.accuracy_m = 100.0;
    assert!(run(&f, &mut st, &[out]).is_empty());
    assert_eq!(st.status, Status::Inside);
}

#[test]
fn out_of_order_fixes_change_nothing() {
    let f = square(0.0);
    let mut st = FenceState::default();
    run(&f, &mut st, &[fix(10, 0.005, 0.005)]);
    let before = st;
    assert!(run(&f, &mut st, &[fix(5, 0.02, 0.005), fix(10, 0.02, 0.005)]).is_empty());
    assert_eq!(st, before);
}

#[test]
fn dwell_from_fixes_and_from_tick() {
    let f = square(0.0);
    let mut st = FenceState::default();
    let t = run(
        &f,
        &mut st,
        &[
            fix(0, 0.005, 0.005),
            fix(30, 0.005, 0.005),
            fix(61, 0.005, 0.005),
            fix(200, 0.005, 0.005),
        ],
    );
    assert_eq!(kinds(&t), vec![Enter, Dwell]);
    assert_eq!(t[1].ts_ms, 60_000, "dwell is stamped when it fell due");
    // A silent device parked inside gets its dwell from tick.
    let mut st = FenceState::default();
    run(&f, &mut st, &[fix(0, 0.005, 0.005)]);
    assert_eq!(dwell_due_at(&st, f.fence()), Some(60_000));
    assert!(tick(f.fence(), &mut st, 59_999).is_none());
    assert_eq!(
        tick(f.fence(), &mut st, 75_000).map(|t| (t.kind, t.ts_ms)),
        Some((Dwell, 60_000))
    );
    assert!(tick(f.fence(), &mut st, 80_000).is_none(), "once per visit");
    assert_eq!(dwell_due_at(&st, f.fence()), None);
    // Leaving and coming back starts a new visit.
    let t = run(
        &f,
        &mut st,
        &[
            fix(100, 0.02, 0.005),
            fix(110, 0.005, 0.005),
            fix(171, 0.005, 0.005),
        ],
    );
    assert_eq!(kinds(&t), vec![Exit, Enter, Dwell]);
}

#[test]
fn overspeed_once_per_visit() {
    let f = square(0.0);
    let mut st = FenceState::default();
    let mut fast = fix(0, 0.005, 0.005);
    fast.speed_mps = Some(25.0);
    let mut fast2 = fast;
    fast2.ts_ms = 1_000;
    let t = run(&f, &mut st, &[fast, fast2]);
    assert_eq!(kinds(&t), vec![Enter, Overspeed]);
    assert_eq!(t[1].speed_mps, Some(25.0));
    let mut back = fast;
    back.ts_ms = 30_000;
    let t = run(&f, &mut st, &[fix(20, 0.02, 0.005), back]);
    assert_eq!(kinds(&t), vec![Exit, Enter, Overspeed]);
}

#[test]
fn segment_crossing_interpolates_enter_and_exit() {
    let f = square(0.0);
    let mut st = FenceState::default();
    // 0.03° (3.3 km) in 60 s = 56 m/s, straight through the square.
    let t = run(&f, &mut st, &[fix(0, -0.01, 0.005), fix(60, 0.02, 0.005)]);
    assert_eq!(kinds(&t), vec![Enter, Overspeed, Exit]);
    assert!(t.iter().all(|t| t.interpolated));
    assert!((t[0].ts_ms - 20_000).abs() < 200, "{}", t[0].ts_ms);
    assert!((t[2].ts_ms - 40_000).abs() < 200, "{}", t[2].ts_ms);
    assert_eq!(st.status, Status::Outside);
    // Too long a gap, or an implausible speed: nothing.
    let mut st = FenceState::default();
    assert!(run(&f, &mut st, &[fix(0, -0.01, 0.005), fix(400, 0.02, 0.005)]).is_empty());
    let mut st = FenceState::default();
    assert!(run(&f, &mut st, &[fix(0, -0.01, 0.005), fix(10, 0.02, 0.005)]).is_empty());
}

#[test]
fn crossing_over_the_antimeridian_takes_the_short_way() {
    let thin = Fence::new(
        "dateline",
        "",
        FenceKind::Polygon {
            rings: vec![vec![
                [179.99, -1.0],
                [180.01, -1.0],
                [180.01, 1.0],
                [179.99, 1.0],
                [179.99, -1.0],
            ]],
        },
    );
    let f = PreparedFence::new(thin, &FenceLimits::default()).expect("valid");
    let mut st = FenceState::default();
    // 179.9 -> -179.9 is 22 km: at 90 km/h that takes about 15 minutes; allow it.
    let cfg = StateConfig {
        max_gap_s: 1_000,
        ..CFG
    };
    let mut t = step(&f, &mut st, &fix(0, 179.9, 0.0), &cfg).expect("ok");
    t.extend(step(&f, &mut st, &fix(900, -179.9, 0.0), &cfg).expect("ok"));
    assert_eq!(kinds(&t), vec![Enter, Exit]);
    assert!((t[0].ts_ms - 405_000).abs() < 1_000, "{}", t[0].ts_ms);
    // A fence on the far side of the map is not crossed.
    let far = Fence::new(
        "far",
        "",
        FenceKind::Polygon {
            rings: vec![vec![
                [-1.0, -1.0],
                [1.0, -1.0],
                [1.0, 1.0],
                [-1.0, 1.0],
                [-1.0, -1.0],
            ]],
        },
    );
    let f = PreparedFence::new(far, &FenceLimits::default()).expect("valid");
    let mut st = FenceState::default();
    step(&f, &mut st, &fix(0, 179.9, 0.0), &cfg).expect("ok");
    assert!(
        step(&f, &mut st, &fix(900, -179.9, 0.0), &cfg)
            .expect("ok")
            .is_empty()
    );
}

#[test]
fn thin_corridor_crossing() {
    let road = Fence::new(
        "road",
        "",
        FenceKind::Corridor {
            line: vec![[0.0, -1.0], [0.0, 1.0]],
            buffer_m: 8.0,
        },
    );
    let f = PreparedFence::new(road, &FenceLimits::default()).expect("valid");
    let mut st = FenceState::default();
    let t = run(&f, &mut st, &[fix(0, -0.001, 0.0), fix(10, 0.001, 0.0)]);
    assert_eq!(kinds(&t), vec![Enter, Exit]);
}

#[test]
fn state_round_trips_through_serde_and_bad_fixes_error() {
    let f = square(0.0);
    let mut st = FenceState::default();
    run(&f, &mut st, &[fix(0, 0.005, 0.005)]);
    let json = serde_json::to_string(&st).expect("ser");
    assert!(json.contains("\"inside\""), "{json}");
    assert_eq!(serde_json::from_str::<FenceState>(&json).expect("de"), st);
    assert!(step(&f, &mut st, &fix(1, f64::NAN, 0.0), &CFG).is_err());
    assert!(step(&f, &mut st, &fix(1, 0.0, 91.0), &CFG).is_err());
}
