//! [`LiveIndex`]: the newest position of every device, in an R-tree of unit vectors
//! ([`crate::sphere`]), answering the dispatcher's questions without a table scan: the k
//! nearest devices to a point (within an optional radius), the devices in a box, the devices
//! in a polygon or circle. Results are exact: the tree only proposes candidates, and every
//! candidate is checked with the same great-circle distance and point-in-polygon test as the
//! rest of geotrack (`fences::geodesy`, `fences::PreparedFence`).
//!
//! A position replaces a device's stored one only when it is at least as recent, so frames
//! arriving out of order never move a device back in time.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use fences::geodesy::haversine_m;
use fences::{Bbox, PreparedFence};
use geo::Coord;
use rstar::primitives::GeomWithData;
use rstar::{PointDistance, RTree};
use tracker::live::LivePosition;

use crate::filter::Filter;
use crate::sphere::{chord2_of_metres, lonlat_box, unit_vector};

/// A filter listing at most this share of the devices (1/32) is applied by testing each device
/// it lists rather than by walking the tree past the others...
const LISTED_SHARE: usize = 32;
/// ...and so is one listing at most this many, in any index.
const LISTED_MIN: usize = 1_024;

/// A tree entry: a device's unit vector and its slot.
type Point = GeomWithData<[f64; 3], u32>;

/// One device's newest position and where it sits in the tree.
#[derive(Debug, Clone)]
struct Slot {
    position: LivePosition,
    point: [f64; 3],
}

/// A device found near a point, with its great-circle distance.
#[derive(Debug, Clone, PartialEq)]
pub struct Nearby {
    pub position: LivePosition,
    pub distance_m: f64,
}

/// A page of devices found in an area, in device id order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Within {
    pub positions: Vec<LivePosition>,
    /// Whether more devices in the area follow the page.
    pub more: bool,
}

/// The live positions; see the module documentation.
#[derive(Debug, Default)]
pub struct LiveIndex {
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
    /// Ordered, so that the devices of an id prefix are one range.
    by_device: BTreeMap<String, u32>,
    tree: RTree<Point>,
}

impl LiveIndex {
    /// An index of `positions`, the newest per device kept (the tree is bulk-loaded).
    pub fn from_positions(positions: impl IntoIterator<Item = LivePosition>) -> Self {
        let mut newest: HashMap<String, LivePosition> = HashMap::new();
        for position in positions {
            match newest.entry(position.device.clone()) {
                Entry::Occupied(mut kept) if kept.get().ts <= position.ts => {
                    kept.insert(position);
                }
                Entry::Occupied(_) => {}
                Entry::Vacant(slot) => {
                    slot.insert(position);
                }
            }
        }
        let mut index = Self::default();
        let mut points = Vec::with_capacity(newest.len());
        for (device, position) in newest {
            let slot = u32::try_from(index.slots.len()).expect("fewer than 4 billion devices");
            let point = unit_vector(position.position[0], position.position[1]);
            points.push(Point::new(point, slot));
            index.slots.push(Some(Slot { position, point }));
            index.by_device.insert(device, slot);
        }
        index.tree = RTree::bulk_load(points);
        index
    }

    /// How many devices the index holds.
    pub fn len(&self) -> usize {
        self.by_device.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_device.is_empty()
    }

    /// Stores `position` unless the index holds a newer one for its device; whether it did.
    pub fn upsert(&mut self, position: LivePosition) -> bool {
        let point = unit_vector(position.position[0], position.position[1]);
        if let Some(&slot) = self.by_device.get(&position.device) {
            let stored = self.slots[slot as usize]
                .as_mut()
                .expect("indexed devices have a slot");
            if stored.position.ts > position.ts {
                return false;
            }
            // Exactly the same point (a parked device): the tree needs no change.
            if stored.point.map(f64::to_bits) != point.map(f64::to_bits) {
                self.tree.remove(&Point::new(stored.point, slot));
                self.tree.insert(Point::new(point, slot));
            }
            *stored = Slot { position, point };
            return true;
        }
        let slot = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            u32::try_from(self.slots.len() - 1).expect("fewer than 4 billion devices")
        });
        self.by_device.insert(position.device.clone(), slot);
        self.slots[slot as usize] = Some(Slot { position, point });
        self.tree.insert(Point::new(point, slot));
        true
    }

    /// Forgets `device` (erased); whether it was there.
    pub fn remove(&mut self, device: &str) -> bool {
        let Some(slot) = self.by_device.remove(device) else {
            return false;
        };
        if let Some(stored) = self.slots[slot as usize].take() {
            self.tree.remove(&Point::new(stored.point, slot));
        }
        self.free.push(slot);
        true
    }

    /// The position stored for `device`.
    pub fn get(&self, device: &str) -> Option<&LivePosition> {
        let slot = *self.by_device.get(device)?;
        self.slot(slot).map(|s| &s.position)
    }

    /// Up to `k` devices nearest to `(lon, lat)` that `filter` admits, within `radius_m` when
    /// given, nearest first.
    pub fn nearest(
        &self,
        (lon, lat): (f64, f64),
        radius_m: Option<f64>,
        k: usize,
        filter: &Filter,
    ) -> Vec<Nearby> {
        let query = unit_vector(lon, lat);
        let reach2 = radius_m.and_then(chord2_of_metres);
        let ranked = match self.listed(filter) {
            Some(slots) => self.rank_listed(&slots, query, reach2, k, filter),
            None => self.rank_by_tree(query, reach2, k, |p| filter.admits(p)),
        };
        measured(ranked, (lon, lat), radius_m)
    }

    /// The devices within `radius_m` of `(lon, lat)` that `admit` accepts, nearest first, `k` at
    /// most (the nearest), found by one range search of the tree (for a caller whose own test
    /// beats a [`Filter`], and whose radius is small: no k-nearest heap walk).
    pub fn around_where(
        &self,
        (lon, lat): (f64, f64),
        radius_m: f64,
        k: usize,
        admit: impl Fn(&LivePosition) -> bool,
    ) -> Vec<Nearby> {
        let query = unit_vector(lon, lat);
        let Some(reach2) = chord2_of_metres(radius_m) else {
            // Beyond half the globe: everywhere is within reach.
            return measured(self.rank_by_tree(query, None, k, admit), (lon, lat), None);
        };
        let mut scored: Vec<(f64, &Slot)> = self
            .tree
            .locate_within_distance(query, reach2)
            .filter_map(|point| self.slot(point.data))
            .filter(|slot| admit(&slot.position))
            .map(|slot| (slot.point.distance_2(&query), slot))
            .collect();
        if scored.len() > k {
            scored.select_nth_unstable_by(k, |a, b| a.0.total_cmp(&b.0));
            scored.truncate(k);
        }
        measured(
            scored.into_iter().map(|(_, slot)| slot).collect(),
            (lon, lat),
            Some(radius_m),
        )
    }

    /// Every stored position, in device id order.
    pub fn positions(&self) -> impl Iterator<Item = &LivePosition> {
        self.by_device
            .values()
            .filter_map(|&slot| self.slot(slot))
            .map(|s| &s.position)
    }

    /// The `k` admitted devices nearest to `query` within `reach2`, walking the tree outwards.
    fn rank_by_tree(
        &self,
        query: [f64; 3],
        reach2: Option<f64>,
        k: usize,
        admit: impl Fn(&LivePosition) -> bool,
    ) -> Vec<&Slot> {
        let mut ranked = Vec::with_capacity(k.min(64));
        if k == 0 {
            return ranked;
        }
        for (point, chord2) in self.tree.nearest_neighbor_iter_with_distance_2(&query) {
            if reach2.is_some_and(|reach2| chord2 > reach2) {
                break;
            }
            if let Some(slot) = self.slot(point.data).filter(|s| admit(&s.position)) {
                ranked.push(slot);
                if ranked.len() == k {
                    break;
                }
            }
        }
        ranked
    }

    /// The same among `slots`, the only devices the filter can admit, each measured.
    fn rank_listed(
        &self,
        slots: &[u32],
        query: [f64; 3],
        reach2: Option<f64>,
        k: usize,
        filter: &Filter,
    ) -> Vec<&Slot> {
        let mut scored: Vec<(f64, &Slot)> = slots
            .iter()
            .filter_map(|&s| self.slot(s))
            .filter(|s| filter.admits(&s.position))
            .map(|s| (s.point.distance_2(&query), s))
            .filter(|(c2, _)| reach2.is_none_or(|reach2| *c2 <= reach2))
            .collect();
        if scored.len() > k {
            scored.select_nth_unstable_by(k, |a, b| a.0.total_cmp(&b.0));
            scored.truncate(k);
        }
        scored.into_iter().map(|(_, slot)| slot).collect()
    }

    /// The slots of the only devices `filter` can admit (its device limit's ids and prefixes, or
    /// the query's prefixes, whichever lists fewer), when there are few enough that testing each
    /// beats walking the tree past the devices the reader may not see; `None` otherwise.
    fn listed(&self, filter: &Filter) -> Option<Vec<u32>> {
        let cap = (self.len() / LISTED_SHARE).max(LISTED_MIN);
        let no_ids: &[String] = &[];
        let listings = [
            filter
                .devices
                .as_ref()
                .and_then(|d| self.list(d.exact(), d.prefixes(), cap)),
            (!filter.prefixes.is_empty())
                .then(|| self.list(no_ids, &filter.prefixes, cap))
                .flatten(),
        ];
        listings.into_iter().flatten().min_by_key(Vec::len)
    }

    /// The slots of `exact` ids and of ids starting with `prefixes`; `None` past `cap` of them.
    fn list(&self, exact: &[String], prefixes: &[String], cap: usize) -> Option<Vec<u32>> {
        let mut slots: Vec<u32> = exact
            .iter()
            .filter_map(|id| self.by_device.get(id).copied())
            .collect();
        for prefix in prefixes {
            let from = (Bound::Included(prefix.as_str()), Bound::Unbounded);
            for (_, &slot) in self
                .by_device
                .range::<str, _>(from)
                .take_while(|(id, _)| id.starts_with(prefix.as_str()))
            {
                slots.push(slot);
                if slots.len() > cap {
                    return None;
                }
            }
        }
        if slots.len() > cap {
            return None;
        }
        slots.sort_unstable();
        slots.dedup();
        Some(slots)
    }

    /// The devices in `bbox` that `filter` admits, in id order after `after`, `limit` at most.
    pub fn within_bbox(&self, bbox: &Bbox, filter: &Filter, after: Option<&str>, limit: usize) -> Within {
        let inside = |p: &LivePosition| bbox.contains(p.position[0], p.position[1]);
        self.page(
            self.candidates(std::slice::from_ref(bbox), filter),
            inside,
            filter,
            after,
            limit,
        )
    }

    /// The devices inside `area` (a polygon, multipolygon or circle, as fences are tested) that
    /// `filter` admits, in id order after `after`, `limit` at most.
    pub fn within_area(
        &self,
        area: &PreparedFence,
        filter: &Filter,
        after: Option<&str>,
        limit: usize,
    ) -> Within {
        let boxes: Vec<Bbox> = area.extents().collect();
        let inside = |p: &LivePosition| area.contains(p.position[0], p.position[1]);
        self.page(self.candidates(&boxes, filter), inside, filter, after, limit)
    }

    /// The slots of the devices the filter lists, or of the tree entries in any of `boxes` (a
    /// superset either way: callers test exactly).
    fn candidates(&self, boxes: &[Bbox], filter: &Filter) -> Vec<u32> {
        if let Some(slots) = self.listed(filter) {
            return slots;
        }
        let mut slots = Vec::new();
        for bbox in boxes {
            let ranges = if bbox.west() <= bbox.east() {
                vec![(bbox.west(), bbox.east())]
            } else {
                vec![(bbox.west(), 180.0), (-180.0, bbox.east())]
            };
            for (west, east) in ranges {
                let envelope = lonlat_box(west, bbox.south(), east, bbox.north());
                slots.extend(self.tree.locate_in_envelope(&envelope).map(|p| p.data));
            }
        }
        if boxes.len() > 1 {
            slots.sort_unstable();
            slots.dedup();
        }
        slots
    }

    fn page(
        &self,
        candidates: Vec<u32>,
        inside: impl Fn(&LivePosition) -> bool,
        filter: &Filter,
        after: Option<&str>,
        limit: usize,
    ) -> Within {
        let mut matched: Vec<&LivePosition> = candidates
            .into_iter()
            .filter_map(|slot| self.slot(slot))
            .map(|slot| &slot.position)
            .filter(|p| after.is_none_or(|after| p.device.as_str() > after))
            .filter(|p| filter.admits(p) && inside(p))
            .collect();
        let more = matched.len() > limit;
        if more {
            matched.select_nth_unstable_by(limit, |a, b| a.device.cmp(&b.device));
            matched.truncate(limit);
        }
        matched.sort_unstable_by(|a, b| a.device.cmp(&b.device));
        Within {
            positions: matched.into_iter().cloned().collect(),
            more,
        }
    }

    fn slot(&self, slot: u32) -> Option<&Slot> {
        self.slots.get(slot as usize).and_then(Option::as_ref)
    }
}

/// Ranked slots as results: each with its great-circle distance from `(lon, lat)`, those within
/// `radius_m`, nearest first.
fn measured(ranked: Vec<&Slot>, (lon, lat): (f64, f64), radius_m: Option<f64>) -> Vec<Nearby> {
    let centre = Coord { x: lon, y: lat };
    let mut found: Vec<Nearby> = ranked
        .into_iter()
        .map(|slot| {
            let [x, y] = slot.position.position;
            Nearby {
                position: slot.position.clone(),
                distance_m: haversine_m(centre, Coord { x, y }),
            }
        })
        .filter(|n| radius_m.is_none_or(|r| n.distance_m <= r))
        .collect();
    // Ranked by chord; haversine may round two equal distances apart.
    found.sort_by(|a, b| a.distance_m.total_cmp(&b.distance_m));
    found
}

#[cfg(test)]
pub(crate) mod tests;
