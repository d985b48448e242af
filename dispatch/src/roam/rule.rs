//! Proximity rules and the registry every server keeps of them ([`Rules`]). A rule watches some
//! devices (`devices`) against others (`near`): a pair becomes `near` when its two devices are
//! within `radius_m` of each other, and `apart` again only once they are more than
//! `radius_m + hysteresis_m` apart, so two vehicles idling at the edge of the radius do not
//! flap. Either side is `"all"` or a list of ids, `prefix*` and `group:ID` entries, as a
//! fence's `applies_to` ([`AppliesTo`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use fences::{AppliesTo, Groups, IdError};
use tokio::sync::watch;

/// The largest radius a rule may have (a larger one would make most of a fleet pairs).
pub const MAX_RADIUS_M: f64 = 100_000.0;

/// A proximity rule; see the module documentation.
#[derive(Debug, Clone, PartialEq)]
pub struct ProximityRule {
    pub id: String,
    pub name: String,
    /// The watched devices (an alert's `device`).
    pub devices: AppliesTo,
    /// The devices they are watched against (an alert's `other`).
    pub near: AppliesTo,
    pub radius_m: f64,
    /// How much farther than `radius_m` a near pair must get to be apart again.
    pub hysteresis_m: f64,
}

/// Why a rule cannot be stored.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RuleError {
    #[error("the rule id {0}")]
    Id(IdError),
    #[error("the name {0}")]
    Name(IdError),
    #[error("`radius_m` must be a number of metres above 0 and at most {MAX_RADIUS_M}, not {0}")]
    Radius(f64),
    #[error("`hysteresis_m` must be a number of metres from 0 to `radius_m`, not {0}")]
    Hysteresis(f64),
    #[error("`{side}` entry {entry:?}: the device id or prefix {error}")]
    Entry {
        side: &'static str,
        entry: String,
        error: IdError,
    },
    #[error("`{0}` lists more than {MAX_ENTRIES} entries; use prefixes or a group for larger fleets")]
    TooManyEntries(&'static str),
}

/// Most entries a side may list.
pub const MAX_ENTRIES: usize = 10_000;

/// Checks the ids and prefixes a side lists (group ids were checked when it was read).
fn check_side(side: &'static str, applies: &AppliesTo) -> Result<(), RuleError> {
    let AppliesTo::Devices { ids, prefixes, .. } = applies else {
        return Ok(());
    };
    if ids.len() + prefixes.len() > MAX_ENTRIES {
        return Err(RuleError::TooManyEntries(side));
    }
    for entry in ids.iter().chain(prefixes) {
        fences::check_id(entry).map_err(|error| RuleError::Entry {
            side,
            entry: entry.clone(),
            error,
        })?;
    }
    Ok(())
}

impl ProximityRule {
    /// Checks the id, the name, the distances and the entries of both sides.
    pub fn validate(&self) -> Result<(), RuleError> {
        fences::check_id(&self.id).map_err(RuleError::Id)?;
        fences::id::check_text(&self.name).map_err(RuleError::Name)?;
        if !(self.radius_m > 0.0 && self.radius_m <= MAX_RADIUS_M) {
            return Err(RuleError::Radius(self.radius_m));
        }
        if !(self.hysteresis_m >= 0.0 && self.hysteresis_m <= self.radius_m) {
            return Err(RuleError::Hysteresis(self.hysteresis_m));
        }
        check_side("devices", &self.devices)?;
        check_side("near", &self.near)
    }

    /// The distance beyond which a near pair is apart again.
    pub fn apart_m(&self) -> f64 {
        self.radius_m + self.hysteresis_m
    }

    /// How the pair of `a` (a watched device) and `b` (one it is watched against) is keyed:
    /// `(device, other)`, or `None` when they are one device or `a` is not watched against `b`.
    /// When each of the two could stand on either side (a group watched against itself), the
    /// pair is keyed once, with the smaller id as `device`, so it fires once, not twice.
    pub fn pair<'a>(&self, a: &'a str, b: &'a str, groups: &Groups) -> Option<(&'a str, &'a str)> {
        if !self.devices.matches(a, groups) || !self.near.matches(b, groups) {
            return None;
        }
        self.key(a, b, groups, false)
    }

    /// [`pair`](Self::pair) for an `a` known to be watched and a `b` known to be on the `near`
    /// side; `symmetric`: both sides are known to be the same selection.
    pub fn key<'a>(
        &self,
        a: &'a str,
        b: &'a str,
        groups: &Groups,
        symmetric: bool,
    ) -> Option<(&'a str, &'a str)> {
        if a == b {
            return None;
        }
        let swappable =
            a > b && (symmetric || (self.devices.matches(b, groups) && self.near.matches(a, groups)));
        Some(if swappable { (b, a) } else { (a, b) })
    }

    /// Whether only listed ids can be on either side (no `all`, prefix or group).
    fn listed_only(&self) -> bool {
        [&self.devices, &self.near].into_iter().all(|side| {
            matches!(side, AppliesTo::Devices { prefixes, groups, .. } if prefixes.is_empty() && groups.is_empty())
        })
    }
}

/// A rule as the evaluator holds it, with what it would otherwise work out at every step.
#[derive(Debug)]
pub struct Armed {
    pub rule: ProximityRule,
    /// Both sides are the same selection (a side watched against itself).
    pub symmetric: bool,
}

impl Armed {
    fn new(rule: ProximityRule) -> Self {
        Self {
            symmetric: rule.devices == rule.near,
            rule,
        }
    }
}

impl std::ops::Deref for Armed {
    type Target = ProximityRule;

    fn deref(&self) -> &ProximityRule {
        &self.rule
    }
}

/// Every rule at one moment, arranged so that the rules a device can take part in are found
/// without testing every rule.
#[derive(Debug, Default)]
pub struct RuleSet {
    by_id: BTreeMap<String, Arc<Armed>>,
    /// Rules whose sides only list ids, by each id they list.
    listed: HashMap<String, Vec<Arc<Armed>>>,
    /// The other rules (any device may take part).
    broad: Vec<Arc<Armed>>,
}

impl RuleSet {
    fn new(by_id: BTreeMap<String, Arc<Armed>>) -> Self {
        let mut listed: HashMap<String, Vec<Arc<Armed>>> = HashMap::new();
        let mut broad = Vec::new();
        for rule in by_id.values() {
            if !rule.listed_only() {
                broad.push(rule.clone());
                continue;
            }
            for side in [&rule.devices, &rule.near] {
                if let AppliesTo::Devices { ids, .. } = side {
                    for id in ids {
                        let rules = listed.entry(id.clone()).or_default();
                        if !rules.iter().any(|r| r.id == rule.id) {
                            rules.push(rule.clone());
                        }
                    }
                }
            }
        }
        Self { by_id, listed, broad }
    }

    pub fn get(&self, id: &str) -> Option<&Arc<Armed>> {
        self.by_id.get(id)
    }

    /// Every rule, in id order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Armed>> {
        self.by_id.values()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The rules `device` may take part in (a superset: sides are tested after).
    pub fn touching<'a>(&'a self, device: &str) -> impl Iterator<Item = &'a Arc<Armed>> {
        self.listed.get(device).into_iter().flatten().chain(&self.broad)
    }

    /// When no rule takes any device: the ids the rules list, the only devices that can pair.
    pub fn listed_ids(&self) -> Option<impl Iterator<Item = &String>> {
        self.broad.is_empty().then(|| self.listed.keys())
    }
}

/// The rules of this node; cheap to clone. Every change (and [`touch`](Self::touch), for a
/// change of the groups the rules name) bumps a generation the roam evaluator watches.
#[derive(Debug, Clone)]
pub struct Rules {
    set: Arc<RwLock<Arc<RuleSet>>>,
    generation: Arc<watch::Sender<u64>>,
    /// Whether the rules were loaded from the database once (before that, no pair can be
    /// judged: a stored near pair would look like one of a deleted rule).
    loaded: Arc<AtomicBool>,
    /// Names this registry's writes in their announcements, so it does not reload for its own.
    origin: Arc<str>,
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            set: Arc::default(),
            generation: Arc::new(watch::channel(0).0),
            loaded: Arc::default(),
            origin: tracker::instance_tag().into(),
        }
    }
}

impl Rules {
    /// Whether [`replace_all`](Self::replace_all) ran once.
    pub fn loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// What this registry's writes are announced with.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The rules as they are now.
    pub fn snapshot(&self) -> Arc<RuleSet> {
        self.set.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Generations: the value changes whenever the rules (or the groups they name) do.
    pub fn generations(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Stores or replaces a rule (after it was written to the database).
    pub fn put(&self, rule: ProximityRule) {
        self.edit(|rules| {
            rules.insert(rule.id.clone(), Arc::new(Armed::new(rule)));
        });
    }

    /// Forgets a rule; whether it was there.
    pub fn remove(&self, id: &str) -> bool {
        let mut removed = false;
        self.edit(|rules| removed = rules.remove(id).is_some());
        removed
    }

    /// Replaces every rule (a reload from the database).
    pub fn replace_all(&self, loaded: Vec<ProximityRule>) {
        self.loaded.store(true, Ordering::Release);
        self.edit(|rules| {
            *rules = loaded
                .into_iter()
                .map(|r| (r.id.clone(), Arc::new(Armed::new(r))))
                .collect();
        });
    }

    /// Says that what the rules mean changed (a group they may name was written).
    pub fn touch(&self) {
        self.generation.send_modify(|g| *g += 1);
    }

    fn edit(&self, change: impl FnOnce(&mut BTreeMap<String, Arc<Armed>>)) {
        let mut set = self.set.write().unwrap_or_else(PoisonError::into_inner);
        let mut rules = set.by_id.clone();
        change(&mut rules);
        *set = Arc::new(RuleSet::new(rules));
        drop(set);
        self.touch();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn listing(ids: &[&str], prefixes: &[&str]) -> AppliesTo {
        AppliesTo::Devices {
            ids: ids.iter().map(|s| (*s).to_owned()).collect(),
            prefixes: prefixes.iter().map(|s| (*s).to_owned()).collect(),
            groups: BTreeSet::new(),
        }
    }

    fn rule(id: &str, devices: AppliesTo, near: AppliesTo) -> ProximityRule {
        ProximityRule {
            id: id.into(),
            name: String::new(),
            devices,
            near,
            radius_m: 100.0,
            hysteresis_m: 10.0,
        }
    }

    #[test]
    fn a_pair_is_keyed_once_when_both_devices_could_stand_on_either_side() {
        let groups = Groups::default();
        let taxis = rule("t", listing(&[], &["taxi-"]), listing(&[], &["taxi-"]));
        assert_eq!(
            taxis.pair("taxi-2", "taxi-1", &groups),
            Some(("taxi-1", "taxi-2"))
        );
        assert_eq!(
            taxis.pair("taxi-1", "taxi-2", &groups),
            Some(("taxi-1", "taxi-2"))
        );
        assert_eq!(taxis.pair("taxi-1", "taxi-1", &groups), None);
        // Couriers watched against pickups: the courier is always the watched side.
        let pickup = rule("p", listing(&[], &["van-"]), listing(&["depot"], &[]));
        assert_eq!(pickup.pair("van-9", "depot", &groups), Some(("van-9", "depot")));
        assert_eq!(pickup.pair("depot", "van-9", &groups), None);
    }

    #[test]
    fn rules_listing_ids_are_found_by_id_and_the_others_for_every_device() {
        let rules = Rules::default();
        let mut generations = rules.generations();
        rules.put(rule("pair", listing(&["a"], &[]), listing(&["b"], &[])));
        rules.put(rule("vans", listing(&[], &["van-"]), AppliesTo::All));
        assert!(generations.has_changed().expect("sender alive"));
        generations.mark_unchanged();
        let set = rules.snapshot();
        let ids = |device: &str| set.touching(device).map(|r| r.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids("a"), ["pair", "vans"]);
        assert_eq!(ids("b"), ["pair", "vans"]);
        assert_eq!(ids("c"), ["vans"]);
        assert!(set.listed_ids().is_none(), "a rule takes any device");
        assert!(rules.remove("vans") && !rules.remove("vans"));
        let mut listed: Vec<String> = rules
            .snapshot()
            .listed_ids()
            .expect("only listed")
            .cloned()
            .collect();
        listed.sort();
        assert_eq!(listed, ["a", "b"]);
        rules.touch();
        assert!(generations.has_changed().expect("sender alive"));
    }

    #[test]
    fn bad_rules_are_refused_with_a_reason() {
        let good = rule("r", AppliesTo::All, AppliesTo::All);
        assert_eq!(good.validate(), Ok(()));
        for (radius_m, hysteresis_m) in [
            (0.0, 0.0),
            (f64::NAN, 0.0),
            (MAX_RADIUS_M * 2.0, 0.0),
            (10.0, 11.0),
            (10.0, -1.0),
        ] {
            let bad = ProximityRule {
                radius_m,
                hysteresis_m,
                ..good.clone()
            };
            let error = bad.validate().expect_err("refused");
            assert!(error.to_string().contains("_m`"), "{error}");
        }
        let bad = ProximityRule {
            id: " ".into(),
            ..good
        };
        assert!(matches!(bad.validate(), Err(RuleError::Id(_))));
    }
}
