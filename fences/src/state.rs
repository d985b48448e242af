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
    check_fix(fix)?;
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
            leave(state, &mut out, fix.ts_ms, pos);
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

/// Refuses a fix the machine cannot place: a non-finite longitude, a
/// latitude outside ±90° or an accuracy that is negative or NaN.
fn check_fix(fix: &Fix) -> Result<(), FenceError> {
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
    Ok(())
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

/// A fix clearly outside ends the visit. The dwell and overspeed flags
/// stay set until the next [`enter`] clears them.
fn leave(state: &mut FenceState, out: &mut Vec<Transition>, ts_ms: i64, pos: [f64; 2]) {
    state.status = Status::Outside;
    state.entered_at = None;
    out.push(Transition {
        kind: TransitionKind::Exit,
        ts_ms,
        pos,
        interpolated: false,
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
fn crossing(
    fence: &PreparedFence,
    state: &mut FenceState,
    out: &mut Vec<Transition>,
    (t0, from): (i64, [f64; 2]),
    (t1, to): (i64, [f64; 2]),
    dist: f64,
    config: &StateConfig,
) {
    let Some(((t_in, p_in), (t_out, p_out))) = crossing_span(fence, (t0, from), (t1, to), dist, config)
    else {
        return;
    };
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

/// A moment of a hop: epoch milliseconds and `[lon, lat]`.
type Sample = (i64, [f64; 2]);

/// Where the hop passes through the fence, sampled every `crossing_step_m`
/// (at most `max_crossing_samples` times): the first sample inside and the
/// sample after the last one inside, as (time, `[lon, lat]`). `None` when no
/// sample between the two ends is inside; sampling is skipped when the hop's
/// bounding boxes miss the fence's.
#[expect(clippy::many_single_char_names, reason = "a, b, n, t0, t1 as in the formulas")]
fn crossing_span(
    fence: &PreparedFence,
    (t0, from): Sample,
    (t1, to): Sample,
    dist: f64,
    config: &StateConfig,
) -> Option<(Sample, Sample)> {
    let (a, b) = (coord(from), coord(to));
    let boxes = geodesy::arc_bboxes(a, b);
    if !fence
        .bboxes()
        .iter()
        .any(|f| boxes.iter().any(|h| geo::Intersects::intersects(f, h)))
    {
        return None;
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
        return None;
    };
    Some((at(first), at(last + 1)))
}

#[cfg(test)]
mod tests;
