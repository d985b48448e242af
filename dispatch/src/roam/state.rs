//! What the roam evaluator knows: the pairs of each rule that are near ([`RoamState`]), and the
//! steps that update it when a device moved ([`RoamState::moved`]) or when everything must be
//! checked again ([`reassess`]: rules or groups changed, the live index was reloaded). Only the
//! moved device's neighbourhood is examined: its partners within the radius come from the live
//! index (the tree, or the listed devices one by one for a side naming a few ids), and its near
//! pairs are measured again. No I/O: the caller stores the [`Transition`]s (alerts and pair
//! states, in one transaction).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use fences::geodesy::haversine_m;
use fences::{AppliesTo, Groups};
use geo::Coord;
use tracker::live::LivePosition;

use super::rule::{ProximityRule, RuleSet};
use crate::index::{LiveIndex, Nearby};
use crate::shared::SharedLiveIndex;

/// Most partners a device has in one rule at a time (the nearest): a depot where a thousand
/// vans park does not make a million pairs.
pub const MAX_PARTNERS: usize = 100;
/// A side that lists at most this many ids (and nothing else) is tested id by id.
const LISTED_SIDE: usize = 64;
/// Devices examined under one read lock of the live index.
const CHUNK: usize = 256;

/// One pair of one rule: `device` is on the rule's watched side, `other` on its `near` side.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PairKey {
    pub rule: String,
    pub device: String,
    pub other: String,
}

/// Where and when a pair became near or apart.
#[derive(Debug, Clone, PartialEq)]
pub struct Meeting {
    pub key: PairKey,
    pub distance_m: f64,
    /// `[lon, lat]` of `device`.
    pub position: [f64; 2],
    /// The newer of the two devices' fix times.
    pub ts: DateTime<Utc>,
}

/// A change of a pair's state.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    Near(Meeting),
    Apart(Meeting),
    /// No longer a pair (its rule, or one of its devices, is gone, or a side no longer holds
    /// its device): forgotten without an alert.
    Dropped(PairKey),
}

/// What a step reads: the rules, the groups they name and the live positions.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub rules: &'a RuleSet,
    pub groups: &'a Groups,
    pub index: &'a LiveIndex,
}

/// The near pairs (apart is the default and is not kept), since when each is near.
#[derive(Debug, Default)]
pub struct RoamState {
    near: HashMap<PairKey, DateTime<Utc>>,
    by_device: HashMap<String, HashSet<PairKey>>,
}

impl RoamState {
    /// A state holding `pairs` (stored ones, at start).
    pub fn load(pairs: impl IntoIterator<Item = (PairKey, DateTime<Utc>)>) -> Self {
        let mut state = Self::default();
        for (key, since) in pairs {
            state.insert(key, since);
        }
        state
    }

    /// How many pairs are near.
    pub fn len(&self) -> usize {
        self.near.len()
    }

    pub fn is_empty(&self) -> bool {
        self.near.is_empty()
    }

    /// Whether the pair is near.
    pub fn is_near(&self, key: &PairKey) -> bool {
        self.near.contains_key(key)
    }

    /// Everything to do after `device` moved: new pairs within a radius, and its near pairs
    /// measured again (its sides have not changed since they met: a change of the rules or
    /// groups is followed by a [`reassess`]).
    pub fn moved(&mut self, cx: &Context<'_>, device: &str, out: &mut Vec<Transition>) {
        self.meet(cx, device, out);
        self.recheck(cx, device, false, out);
    }

    /// Makes near every pair `device` forms within a rule's radius that was not near.
    pub fn meet(&mut self, cx: &Context<'_>, device: &str, out: &mut Vec<Transition>) {
        let Some(here) = cx.index.get(device) else {
            return;
        };
        for rule in cx.rules.touching(device) {
            let watched = rule.devices.matches(device, cx.groups);
            if watched {
                for found in partners(cx, here, rule, &rule.near) {
                    let key = rule.key(device, &found.position.device, cx.groups, rule.symmetric);
                    self.start(rule, key, (here, &found), out);
                }
            }
            // A rule watching a side against itself found every partner above already.
            if !(watched && rule.symmetric) && rule.near.matches(device, cx.groups) {
                for found in partners(cx, here, rule, &rule.devices) {
                    let key = rule.key(&found.position.device, device, cx.groups, rule.symmetric);
                    self.start(rule, key, (here, &found), out);
                }
            }
        }
    }

    /// Measures the near pairs of `device` again: apart beyond the rule's `apart_m`, dropped
    /// when the pair no longer exists (its rule or a device is gone; with `sides`, also when a
    /// device is no longer on its side).
    pub fn recheck(&mut self, cx: &Context<'_>, device: &str, sides: bool, out: &mut Vec<Transition>) {
        let Some(keys) = self.by_device.get(device) else {
            return;
        };
        let keys: Vec<PairKey> = keys.iter().cloned().collect();
        for key in keys {
            self.recheck_pair(cx, key, sides, out);
        }
    }

    /// Forgets the pairs of an erased device (their rows are erased with it).
    pub fn forget(&mut self, device: &str) {
        for key in self.by_device.remove(device).unwrap_or_default() {
            self.remove(&key);
        }
    }

    /// The devices that have a near pair.
    pub fn paired_devices(&self) -> Vec<String> {
        self.by_device.keys().cloned().collect()
    }

    /// Makes the pair `key` of `here` and `found` near, if it was not.
    fn start(
        &mut self,
        rule: &ProximityRule,
        key: Option<(&str, &str)>,
        (here, found): (&LivePosition, &Nearby),
        out: &mut Vec<Transition>,
    ) {
        let there = &found.position;
        let Some((device, other)) = key else {
            return;
        };
        let key = PairKey {
            rule: rule.id.clone(),
            device: device.to_owned(),
            other: other.to_owned(),
        };
        if self.near.contains_key(&key) {
            return;
        }
        let mine = if here.device == key.device { here } else { there };
        let meeting = Meeting {
            key,
            distance_m: found.distance_m,
            position: mine.position,
            ts: here.ts.max(there.ts),
        };
        self.insert(meeting.key.clone(), meeting.ts);
        out.push(Transition::Near(meeting));
    }

    fn recheck_pair(&mut self, cx: &Context<'_>, key: PairKey, sides: bool, out: &mut Vec<Transition>) {
        let rule = cx.rules.get(&key.rule).filter(|rule| {
            !sides
                || rule.pair(&key.device, &key.other, cx.groups)
                    == Some((key.device.as_str(), key.other.as_str()))
        });
        let (Some(rule), Some(mine), Some(theirs)) =
            (rule, cx.index.get(&key.device), cx.index.get(&key.other))
        else {
            self.remove(&key);
            out.push(Transition::Dropped(key));
            return;
        };
        let distance_m = distance(mine, theirs);
        if distance_m > rule.apart_m() {
            self.remove(&key);
            out.push(Transition::Apart(Meeting {
                key,
                distance_m,
                position: mine.position,
                ts: mine.ts.max(theirs.ts),
            }));
        }
    }

    fn insert(&mut self, key: PairKey, since: DateTime<Utc>) {
        for device in [&key.device, &key.other] {
            self.by_device
                .entry(device.clone())
                .or_default()
                .insert(key.clone());
        }
        self.near.insert(key, since);
    }

    fn remove(&mut self, key: &PairKey) {
        self.near.remove(key);
        for device in [&key.device, &key.other] {
            if let Some(keys) = self.by_device.get_mut(device) {
                keys.remove(key);
                if keys.is_empty() {
                    self.by_device.remove(device);
                }
            }
        }
    }
}

/// The devices of `side` within the rule's radius of `here`, nearest first, at most
/// [`MAX_PARTNERS`].
fn partners(cx: &Context<'_>, here: &LivePosition, rule: &ProximityRule, side: &AppliesTo) -> Vec<Nearby> {
    match side {
        AppliesTo::Devices {
            ids,
            prefixes,
            groups,
        } if prefixes.is_empty() && groups.is_empty() && ids.len() <= LISTED_SIDE => {
            let mut found: Vec<Nearby> = ids
                .iter()
                .filter(|id| **id != here.device)
                .filter_map(|id| cx.index.get(id))
                .map(|there| Nearby {
                    distance_m: distance(here, there),
                    position: there.clone(),
                })
                .filter(|n| n.distance_m <= rule.radius_m)
                .collect();
            found.sort_by(|a, b| a.distance_m.total_cmp(&b.distance_m));
            found.truncate(MAX_PARTNERS);
            found
        }
        _ => cx.index.around_where(
            (here.position[0], here.position[1]),
            rule.radius_m,
            MAX_PARTNERS,
            |p| p.device != here.device && side.matches(&p.device, cx.groups),
        ),
    }
}

fn distance(a: &LivePosition, b: &LivePosition) -> f64 {
    let coord = |p: &LivePosition| Coord {
        x: p.position[0],
        y: p.position[1],
    };
    haversine_m(coord(a), coord(b))
}

/// Runs [`RoamState::moved`] for each of `devices`.
pub fn on_moved(
    state: &mut RoamState,
    (rules, groups): (&RuleSet, &Groups),
    index: &SharedLiveIndex,
    devices: &[&str],
    out: &mut Vec<Transition>,
) {
    if rules.is_empty() && state.is_empty() {
        return;
    }
    in_chunks((rules, groups), index, devices, |cx, device| {
        state.moved(cx, device, out);
    });
}

/// Checks every pair from scratch: each device a rule may take meets its partners, then every
/// near pair is measured again (so pairs of deleted rules and erased devices are dropped).
pub fn reassess(
    state: &mut RoamState,
    (rules, groups): (&RuleSet, &Groups),
    index: &SharedLiveIndex,
    out: &mut Vec<Transition>,
) {
    let devices: Vec<String> = match rules.listed_ids() {
        Some(ids) => ids.cloned().collect(),
        None => index.read().positions().map(|p| p.device.clone()).collect(),
    };
    // The pairs near before this pass: those it makes are within their radius already.
    let paired = state.paired_devices();
    in_chunks((rules, groups), index, &devices, |cx, device| {
        state.meet(cx, device, out);
    });
    in_chunks((rules, groups), index, &paired, |cx, device| {
        state.recheck(cx, device, true, out);
    });
}

/// Runs `step` for each of `devices`, a chunk at a time under the index's read lock (a frame
/// applied meanwhile waits for one chunk at most).
fn in_chunks<D: AsRef<str>>(
    (rules, groups): (&RuleSet, &Groups),
    index: &SharedLiveIndex,
    devices: &[D],
    mut step: impl FnMut(&Context<'_>, &str),
) {
    for chunk in devices.chunks(CHUNK) {
        let live = index.read();
        let cx = Context {
            rules,
            groups,
            index: &live,
        };
        for device in chunk {
            step(&cx, device.as_ref());
        }
    }
}
