//! What one shard's evaluator knows about its devices, and the rules that turn fixes, the
//! passing of time and fence edits into alerts. No I/O: every method records what changed in
//! a [`Changes`] that the alert writer commits.
//!
//! Per device it keeps the last evaluated fix (the state machine's "previous fix") and the
//! fences the device is in (a [`Visit`] each); being outside is the default and is not kept.
//! A fix not newer than the device's last one is history only: it changes no state.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use chrono::{DateTime, Utc};
use fences::{FenceIndex, FenceState, Groups, PreparedFence, StateConfig, Status, Transition};

use tracker::Fix;

use crate::model::{AlertKind, Changes, Event, NewAlert, Visit, time_of_ms};

/// The last evaluated fix of a device.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LastFix {
    pub ts_ms: i64,
    pub pos: [f64; 2],
    pub accuracy_m: f64,
}

/// One device as the evaluator knows it.
#[derive(Debug, Clone, Default)]
pub struct Device {
    pub last: Option<LastFix>,
    /// Server time of the last fix received (for `offline`).
    pub received_ms: i64,
    /// An `offline` alert was sent and the device has not reported since.
    pub offline: bool,
    /// The fences the device is in.
    pub visits: Vec<(String, Visit)>,
}

/// A dwell alert that falls due at a time (for devices that stop reporting inside).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct DwellTimer {
    due_ms: i64,
    device: String,
    fence: String,
    /// The visit it belongs to; a later visit has its own timer.
    entered_at_ms: i64,
}

/// The state of one shard's devices.
#[derive(Debug)]
pub struct ShardState {
    pub devices: HashMap<String, Device>,
    dwell_timers: BinaryHeap<Reverse<DwellTimer>>,
    config: StateConfig,
    /// Send `offline` after this long without a fix; `None`: never.
    offline_after_ms: Option<i64>,
    /// Device groups, as fences' `applies_to` name them.
    groups: Groups,
}

impl ShardState {
    pub fn new(config: StateConfig, offline_after_ms: Option<i64>, groups: Groups) -> Self {
        Self {
            devices: HashMap::new(),
            dwell_timers: BinaryHeap::new(),
            config,
            offline_after_ms,
            groups,
        }
    }

    /// Re-arms the dwell timers of stored visits (after loading them).
    pub fn arm_timers(&mut self, index: &FenceIndex) {
        let mut timers = Vec::new();
        for (device, d) in &self.devices {
            for (fence, visit) in &d.visits {
                if let Some(f) = index.get(fence) {
                    timers.extend(dwell_timer(device, f, visit));
                }
            }
        }
        self.dwell_timers.extend(timers.into_iter().map(Reverse));
    }

    /// Evaluates one fix against every fence it may concern. Returns whether it was newer than
    /// the device's last fix (only then does it move the device).
    pub fn evaluate(&mut self, index: &FenceIndex, input: &Fix, out: &mut Changes) -> bool {
        let ts_ms = input.ts.timestamp_millis();
        let device = self.devices.entry(input.device.clone()).or_default();
        device.received_ms = device.received_ms.max(input.received_at.timestamp_millis());
        if device.offline {
            device.offline = false;
            out.offline.push((input.device.clone(), None));
        }
        if device.last.is_some_and(|last| ts_ms <= last.ts_ms) {
            return false;
        }
        let pos = [input.lon, input.lat];
        let fix = fences::Fix {
            ts_ms,
            lon: input.lon,
            lat: input.lat,
            accuracy_m: input.accuracy_m.unwrap_or(0.0),
            speed_mps: input.speed_mps,
        };
        // The fences the device is in, the ones at its position (an invalid point cannot get
        // here: fixes are validated before they are stored) and the ones it may have passed
        // through since its last fix.
        let here = index.lookup(input.lon, input.lat).unwrap_or_default();
        let hop = device
            .last
            .map(|last| index.near_segment(last.pos, pos))
            .unwrap_or_default();
        // A handful at most: a linear check beats hashing on this path, run for every fix.
        let mut candidates: Vec<&PreparedFence> =
            Vec::with_capacity(device.visits.len() + here.len() + hop.len());
        let found = device.visits.iter().filter_map(|(id, _)| index.get(id));
        for fence in found
            .chain(here.iter().filter_map(|hit| index.get(hit.id)))
            .chain(hop)
        {
            if candidates.iter().all(|c| c.id() != fence.id()) {
                candidates.push(fence);
            }
        }
        for fence in candidates {
            let def = fence.fence();
            let visit_at = device.visits.iter().position(|(id, _)| id == fence.id());
            if visit_at.is_none() && !def.applies_to.matches(&input.device, &self.groups) {
                continue;
            }
            let before = visit_at.map(|i| device.visits[i].1);
            let mut state = machine_state(device.last, before);
            // Invalid fixes never reach here (see above), so a step cannot fail.
            let transitions = fences::step(fence, &mut state, &fix, &self.config).unwrap_or_default();
            let after = visit_of(&state);
            for t in &transitions {
                out.alerts
                    .push(alert(&input.device, fence, t, Some(input.received_at)));
            }
            record_visit(
                device,
                &input.device,
                fence,
                before,
                after,
                out,
                &mut self.dwell_timers,
            );
        }
        device.last = Some(LastFix {
            ts_ms,
            pos,
            accuracy_m: fix.accuracy_m,
        });
        true
    }

    /// Fires what time alone makes due by `now_ms`: dwell for devices that stay silent inside,
    /// `offline` for devices silent for the configured time.
    pub fn tick(&mut self, index: &FenceIndex, now_ms: i64, out: &mut Changes) {
        while let Some(Reverse(timer)) = self.dwell_timers.peek() {
            if timer.due_ms > now_ms {
                break;
            }
            let Some(Reverse(timer)) = self.dwell_timers.pop() else {
                break;
            };
            let (Some(device), Some(fence)) = (self.devices.get_mut(&timer.device), index.get(&timer.fence))
            else {
                continue;
            };
            let Some(at) = device.visits.iter().position(|(id, v)| {
                *id == timer.fence && v.entered_at_ms == timer.entered_at_ms && !v.dwell_fired
            }) else {
                continue;
            };
            let before = device.visits[at].1;
            let mut state = machine_state(device.last, Some(before));
            if let Some(t) = fences::tick(fence.fence(), &mut state, now_ms) {
                out.alerts.push(alert(&timer.device, fence, &t, None));
                record_visit(
                    device,
                    &timer.device,
                    fence,
                    Some(before),
                    visit_of(&state),
                    out,
                    &mut self.dwell_timers,
                );
            }
        }
        let Some(after) = self.offline_after_ms else {
            return;
        };
        for (id, device) in &mut self.devices {
            if !device.offline && device.received_ms > 0 && device.received_ms + after <= now_ms {
                device.offline = true;
                let now = time_of_ms(now_ms);
                out.offline.push((id.clone(), Some(now)));
                out.alerts.push(NewAlert {
                    event: Event {
                        device: id.clone(),
                        fence: None,
                        fence_name: None,
                        kind: AlertKind::Offline,
                        ts: now,
                        position: device.last.map(|l| l.pos),
                        speed_mps: None,
                        interpolated: false,
                        received_at: None,
                        proximity: None,
                    },
                    webhooks: Vec::new(),
                });
            }
        }
    }

    /// After fences changed: checks every device's last position against the fences as they
    /// are now. A device in a deleted fence, or no longer in an edited one, exits; a device
    /// now inside a new or grown fence enters (the time is `now_ms`: the edit made it so).
    pub fn reassess(&mut self, index: &FenceIndex, now_ms: i64, out: &mut Changes) {
        for (id, device) in &mut self.devices {
            let Some(last) = device.last else { continue };
            let mut visits = std::mem::take(&mut device.visits);
            visits.retain(|(fence_id, _)| {
                let margin = |f: &PreparedFence| f.fence().hysteresis_m.max(last.accuracy_m);
                let stays = index
                    .get(fence_id)
                    .filter(|f| f.fence().applies_to.matches(id, &self.groups))
                    .is_some_and(|f| f.signed_distance_m(last.pos[0], last.pos[1]) <= margin(f));
                if !stays {
                    let def = index.get(fence_id).map(PreparedFence::fence);
                    out.alerts
                        .push(edit_alert(id, fence_id, def, AlertKind::Exit, now_ms, last.pos));
                    out.visits.push(((id.clone(), fence_id.clone()), None));
                }
                stays
            });
            device.visits = visits;
            for hit in index.lookup(last.pos[0], last.pos[1]).unwrap_or_default() {
                let Some(fence) = index.get(hit.id) else { continue };
                let def = fence.fence();
                let margin = def.hysteresis_m.max(last.accuracy_m);
                if device.visits.iter().any(|(f, _)| f == hit.id)
                    || !def.applies_to.matches(id, &self.groups)
                    || fence.signed_distance_m(last.pos[0], last.pos[1]) > -margin
                {
                    continue;
                }
                let visit = Visit {
                    entered_at_ms: now_ms,
                    dwell_fired: false,
                    overspeed_fired: false,
                };
                out.alerts.push(edit_alert(
                    id,
                    hit.id,
                    Some(def),
                    AlertKind::Enter,
                    now_ms,
                    last.pos,
                ));
                record_visit(device, id, fence, None, Some(visit), out, &mut self.dwell_timers);
            }
        }
    }

    /// Drops everything known about a device (it was erased).
    pub fn forget(&mut self, device: &str) {
        self.devices.remove(device);
    }
}

/// The state machine's view of a (device, fence): the stored visit, or outside, plus the
/// device's last fix.
fn machine_state(last: Option<LastFix>, visit: Option<Visit>) -> FenceState {
    let mut state = FenceState {
        last_ts: last.map(|l| l.ts_ms),
        last_pos: last.map(|l| l.pos),
        ..FenceState::default()
    };
    if let Some(v) = visit {
        state.status = Status::Inside;
        state.entered_at = Some(v.entered_at_ms);
        state.dwell_fired = v.dwell_fired;
        state.overspeed_fired = v.overspeed_fired;
    }
    state
}

fn visit_of(state: &FenceState) -> Option<Visit> {
    (state.status == Status::Inside).then(|| Visit {
        entered_at_ms: state.entered_at.unwrap_or_default(),
        dwell_fired: state.dwell_fired,
        overspeed_fired: state.overspeed_fired,
    })
}

/// Keeps the device's visit list, the stored state and the dwell timers in line with a change.
fn record_visit(
    device: &mut Device,
    id: &str,
    fence: &PreparedFence,
    before: Option<Visit>,
    after: Option<Visit>,
    out: &mut Changes,
    timers: &mut BinaryHeap<Reverse<DwellTimer>>,
) {
    if before == after {
        return;
    }
    let at = device.visits.iter().position(|(f, _)| f == fence.id());
    match (at, after) {
        (Some(i), Some(v)) => device.visits[i].1 = v,
        (None, Some(v)) => device.visits.push((fence.id().to_owned(), v)),
        (Some(i), None) => {
            device.visits.swap_remove(i);
        }
        (None, None) => {}
    }
    if let Some(v) = &after
        && before.is_none_or(|b| b.entered_at_ms != v.entered_at_ms)
    {
        timers.extend(dwell_timer(id, fence, v).map(Reverse));
    }
    out.visits.push(((id.to_owned(), fence.id().to_owned()), after));
}

fn dwell_timer(device: &str, fence: &PreparedFence, visit: &Visit) -> Option<DwellTimer> {
    let dwell_s = fence.fence().dwell_s?;
    (!visit.dwell_fired).then(|| DwellTimer {
        due_ms: visit.entered_at_ms + i64::from(dwell_s) * 1_000,
        device: device.to_owned(),
        fence: fence.id().to_owned(),
        entered_at_ms: visit.entered_at_ms,
    })
}

fn alert(
    device: &str,
    fence: &PreparedFence,
    t: &Transition,
    received_at: Option<DateTime<Utc>>,
) -> NewAlert {
    let def = fence.fence();
    NewAlert {
        event: Event {
            device: device.to_owned(),
            fence: Some(def.id.clone()),
            fence_name: Some(def.name.clone()),
            kind: t.kind.into(),
            ts: time_of_ms(t.ts_ms),
            position: Some(t.pos),
            speed_mps: t.speed_mps,
            interpolated: t.interpolated,
            received_at,
            proximity: None,
        },
        webhooks: def.webhooks.clone(),
    }
}

fn edit_alert(
    device: &str,
    fence: &str,
    def: Option<&fences::Fence>,
    kind: AlertKind,
    now_ms: i64,
    pos: [f64; 2],
) -> NewAlert {
    NewAlert {
        event: Event {
            device: device.to_owned(),
            fence: Some(fence.to_owned()),
            fence_name: def.map(|d| d.name.clone()),
            kind,
            ts: time_of_ms(now_ms),
            position: Some(pos),
            speed_mps: None,
            interpolated: false,
            received_at: None,
            proximity: None,
        },
        webhooks: def.map(|d| d.webhooks.clone()).unwrap_or_default(),
    }
}
