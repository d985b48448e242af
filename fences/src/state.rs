//! The per-(device, fence) state machine. A [`FenceState`] is a small serde
//! value the caller persists; [`step`] feeds it one fix and returns the
//! transitions: Enter, Exit, Dwell (once per visit, also from [`tick`] for a
//! device that stays silent inside) and Overspeed (once per visit). Hysteresis
//! (enter only when inside by `hysteresis_m`, leave only when outside by more),
//! accuracy gating (a fix whose accuracy circle straddles the boundary changes
//! nothing), out-of-order fixes (ignored) and segment crossing (a plausible hop
//! between two outside fixes that passes through the fence yields Enter and Exit
//! at interpolated times) are all handled here. Times are epoch milliseconds.

use serde::{Deserialize, Serialize};

use crate::error::FenceError;
use crate::exact::PreparedFence;
use crate::fence::Fence;
use crate::geodesy::{self, haversine_m};

/// Whether the device is in the fence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Not in the fence (the initial state).
    #[default]
    Outside,
    /// In the fence.
    Inside,
}

/// What the machine remembers between fixes for one (device, fence).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct FenceState {
    /// Current status.
    pub status: Status,
    /// When the current visit began.
    pub entered_at: Option<i64>,
    /// Time of the last fix evaluated.
    pub last_ts: Option<i64>,
    /// Position `[lon, lat]` of the last fix evaluated.
    pub last_pos: Option<[f64; 2]>,
    /// Dwell already reported for this visit.
    pub dwell_fired: bool,
    /// Overspeed already reported for this visit.
    pub overspeed_fired: bool,
}

/// One position report.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fix {
    /// Epoch milliseconds.
    pub ts_ms: i64,
    /// Longitude in degrees.
    pub lon: f64,
    /// Latitude in degrees.
    pub lat: f64,
    /// Horizontal accuracy radius in metres (0 if unknown).
    pub accuracy_m: f64,
    /// Reported speed; when absent, derived from the previous fix.
    pub speed_mps: Option<f64>,
}

/// Kinds of transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransitionKind {
    /// The device entered the fence.
    Enter,
    /// The device left the fence.
    Exit,
    /// The device has been inside for the fence's `dwell_s`.
    Dwell,
    /// The device went faster than the fence's speed limit inside it.
    Overspeed,
}

/// A transition produced by [`step`] or [`tick`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    /// What happened.
    pub kind: TransitionKind,
    /// When (epoch ms); interpolated for segment crossings, the due time for dwell.
    pub ts_ms: i64,
    /// Where, `[lon, lat]`.
    pub pos: [f64; 2],
    /// Whether time and place were interpolated between two fixes.
    pub interpolated: bool,
    /// The speed that triggered an overspeed.
    pub speed_mps: Option<f64>,
}

/// Tuning of the state machine.
#[derive(Debug, Clone, PartialEq)]
pub struct StateConfig {
    /// Longest gap between two fixes for which a crossing is interpolated.
    pub max_gap_s: u32,
    /// Fastest plausible speed of a hop for which a crossing is interpolated.
    pub max_speed_mps: f64,
    /// Sampling step along a hop when looking for a crossing; thinner fences
    /// may be missed.
    pub crossing_step_m: f64,
    /// Upper bound on samples per hop.
    pub max_crossing_samples: usize,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            max_gap_s: 300,
            max_speed_mps: 100.0,
            crossing_step_m: 5.0,
            max_crossing_samples: 8_192,
        }
    }
}

/// When a dwell alert is due for the current visit, if one is.
pub fn dwell_due_at(state: &FenceState, fence: &Fence) -> Option<i64> {
    if state.status != Status::Inside || state.dwell_fired {
        return None;
    }
    Some(state.entered_at? + i64::from(fence.dwell_s?) * 1_000)
}

/// Fires a dwell that has come due by `now_ms` (for devices that stay silent inside).
pub fn tick(fence: &Fence, state: &mut FenceState, now_ms: i64) -> Option<Transition> {
    let due = dwell_due_at(state, fence).filter(|&due| due <= now_ms)?;
    state.dwell_fired = true;
    Some(Transition {
        kind: TransitionKind::Dwell,
        ts_ms: due,
        pos: state.last_pos.unwrap_or_default(),
        interpolated: false,
        speed_mps: None,
    })
}

/// Feeds one fix to the machine and returns the transitions it causes, in time order.
pub fn step(
    fence: &PreparedFence,
    state: &mut FenceState,
    fix: &Fix,
    config: &StateConfig,
) -> Result<Vec<Transition>, FenceError> {
    if !fix.lon.is_finite()
        || !(-90.0..=90.0).contains(&fix.lat)
        || fix.accuracy_m.is_nan()
        || fix.accuracy_m < 0.0
    {
        return Err(FenceError::InvalidPoint {
            lon: fix.lon,
            lat: fix.lat,
        });
    }
    if state.last_ts.is_some_and(|last| fix.ts_ms <= last) {
        return Ok(Vec::new());
    }
    let def = fence.fence();
    let pos = [geodesy::normalize_lon(fix.lon), fix.lat];
    let mut out = Vec::new();
    // A dwell that fell due while the device was known to be inside.
    if let Some(t) = tick(def, state, state.last_ts.unwrap_or(i64::MIN)) {
        out.push(t);
    }
    let hop = state.last_ts.zip(state.last_pos).map(|(ts, p)| {
        let dt_s = (fix.ts_ms - ts) as f64 / 1_000.0;
        let dist = haversine_m(coord(p), coord(pos));
        (ts, p, dt_s, dist)
    });
    let speed = fix
        .speed_mps
        .or_else(|| hop.and_then(|(_, _, dt, d)| (dt > 0.0).then(|| d / dt)));
    let margin = def.hysteresis_m.max(fix.accuracy_m);
    let s = fence.signed_distance_m(pos[0], pos[1]);
    match state.status {
        Status::Outside if s <= -margin => {
            enter(state, &mut out, fix.ts_ms, pos, false);
        }
        Status::Outside if s > margin => {
            if let Some((ts, from, dt_s, dist)) = hop {
                let plausible = dt_s <= f64::from(config.max_gap_s) && dist <= config.max_speed_mps * dt_s;
                if plausible {
                    crossing(fence, state, &mut out, (ts, from), (fix.ts_ms, pos), dist, config);
                }
            }
        }
        Status::Inside if s > margin => {
            state.status = Status::Outside;
            state.entered_at = None;
            out.push(Transition {
                kind: TransitionKind::Exit,
                ts_ms: fix.ts_ms,
                pos,
                interpolated: false,
                speed_mps: None,
            });
        }
        _ => {}
    }
    if state.status == Status::Inside {
        overspeed(def, state, &mut out, fix.ts_ms, pos, speed, false);
        state.last_pos = Some(pos);
        if let Some(t) = tick(def, state, fix.ts_ms) {
            out.push(t);
        }
    }
    state.last_ts = Some(fix.ts_ms);
    state.last_pos = Some(pos);
    Ok(out)
}

fn coord([x, y]: [f64; 2]) -> geo::Coord {
    geo::coord! { x: x, y: y }
}

fn enter(state: &mut FenceState, out: &mut Vec<Transition>, ts_ms: i64, pos: [f64; 2], interpolated: bool) {
    *state = FenceState {
        status: Status::Inside,
        entered_at: Some(ts_ms),
        last_ts: state.last_ts,
        last_pos: state.last_pos,
        dwell_fired: false,
        overspeed_fired: false,
    };
    out.push(Transition {
        kind: TransitionKind::Enter,
        ts_ms,
        pos,
        interpolated,
        speed_mps: None,
    });
}

fn overspeed(
    def: &Fence,
    state: &mut FenceState,
    out: &mut Vec<Transition>,
    ts_ms: i64,
    pos: [f64; 2],
    speed: Option<f64>,
    interpolated: bool,
) {
    if let (Some(limit), Some(v)) = (def.speed_limit_mps, speed)
        && v > limit
        && !state.overspeed_fired
    {
        {
            state.overspeed_fired = true;
            out.push(Transition {
                kind: TransitionKind::Overspeed,
                ts_ms,
                pos,
                interpolated,
                speed_mps: Some(v),
            });
        }
    }
}

/// Looks for a pass through the fence on the great-circle hop between two
/// outside fixes; emits Enter (and Overspeed, Dwell if due) and Exit at
/// interpolated times and places.
#[expect(clippy::many_single_char_names, reason = "a, b, n, t0, t1 as in the formulas")]
fn crossing(
    fence: &PreparedFence,
    state: &mut FenceState,
    out: &mut Vec<Transition>,
    (t0, from): (i64, [f64; 2]),
    (t1, to): (i64, [f64; 2]),
    dist: f64,
    config: &StateConfig,
) {
    let (a, b) = (coord(from), coord(to));
    let boxes = geodesy::arc_bboxes(a, b);
    if !fence
        .bboxes()
        .iter()
        .any(|f| boxes.iter().any(|h| geo::Intersects::intersects(f, h)))
    {
        return;
    }
    let n = ((dist / config.crossing_step_m).ceil() as usize).clamp(2, config.max_crossing_samples.max(2));
    let at = |i: usize| {
        let p = geodesy::interpolate(a, b, i as f64 / n as f64);
        let ts = t0 + ((t1 - t0) as f64 * i as f64 / n as f64).round() as i64;
        (ts, [p.x, p.y])
    };
    let inside: Vec<usize> = (1..n)
        .filter(|&i| {
            let (_, [x, y]) = at(i);
            fence.contains(x, y)
        })
        .collect();
    let (Some(&first), Some(&last)) = (inside.first(), inside.last()) else {
        return;
    };
    let (t_in, p_in) = at(first);
    let (t_out, p_out) = at(last + 1);
    enter(state, out, t_in, p_in, true);
    let speed = dist / ((t1 - t0) as f64 / 1_000.0);
    let def = fence.fence();
    overspeed(def, state, out, t_in, p_in, Some(speed), true);
    if let Some(due) = dwell_due_at(state, def).filter(|&due| due <= t_out) {
        state.dwell_fired = true;
        out.push(Transition {
            kind: TransitionKind::Dwell,
            ts_ms: due,
            pos: p_in,
            interpolated: true,
            speed_mps: None,
        });
    }
    *state = FenceState {
        last_ts: state.last_ts,
        last_pos: state.last_pos,
        ..FenceState::default()
    };
    out.push(Transition {
        kind: TransitionKind::Exit,
        ts_ms: t_out,
        pos: p_out,
        interpolated: true,
        speed_mps: None,
    });
}

#[cfg(test)]
mod tests {
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
}
