//! Device groups: named sets of devices, by listed ids and by id prefixes (`taxis`: every id
//! starting with `taxi-`, plus `spare-3`). Fences apply to groups (`AppliesTo`), dispatch
//! queries filter by them; [`Groups`] is the in-memory registry every server keeps (the service
//! loads it from the database and reloads it when another process announces a change).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, PoisonError, RwLock};

use serde::{Deserialize, Serialize};

use crate::DeviceFilter;

/// Most devices a group may list (prefixes cover larger fleets).
pub const MAX_LISTED: usize = 100_000;
/// Most prefixes a group may have.
pub const MAX_PREFIXES: usize = 1_000;

/// A group as stored and as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub id: String,
    #[serde(default)]
    pub name: String,
    /// Devices listed by id.
    #[serde(default)]
    pub devices: BTreeSet<String>,
    /// Every device whose id starts with one of these.
    #[serde(default)]
    pub prefixes: BTreeSet<String>,
}

/// Why a group cannot be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    #[error("the group id {0}")]
    Id(crate::IdError),
    #[error("the name {0}")]
    Name(crate::IdError),
    #[error("device id {id:?} {error}")]
    Device { id: String, error: crate::IdError },
    #[error("prefix {prefix:?} {error}")]
    Prefix { prefix: String, error: crate::IdError },
    #[error(
        "a group lists at most {MAX_LISTED} devices and {MAX_PREFIXES} prefixes; use prefixes for larger fleets"
    )]
    TooLarge,
}

impl Group {
    /// Whether `device` belongs to the group.
    pub fn contains(&self, device: &str) -> bool {
        self.devices.contains(device) || self.prefixes.iter().any(|p| device.starts_with(p.as_str()))
    }

    /// Its members as a device filter (allowing no device when it has none).
    pub fn device_filter(&self) -> DeviceFilter {
        DeviceFilter::from_parts(
            self.devices.iter().cloned().collect(),
            self.prefixes.iter().cloned().collect(),
        )
    }

    /// Checks ids, the name and the sizes.
    pub fn validate(&self) -> Result<(), GroupError> {
        crate::check_id(&self.id).map_err(GroupError::Id)?;
        crate::id::check_text(&self.name).map_err(GroupError::Name)?;
        if self.devices.len() > MAX_LISTED || self.prefixes.len() > MAX_PREFIXES {
            return Err(GroupError::TooLarge);
        }
        for id in &self.devices {
            crate::check_id(id).map_err(|error| GroupError::Device {
                id: id.clone(),
                error,
            })?;
        }
        for prefix in &self.prefixes {
            // An empty prefix would make the group every device: list no prefix for that.
            crate::check_id(prefix).map_err(|error| GroupError::Prefix {
                prefix: prefix.clone(),
                error,
            })?;
        }
        Ok(())
    }
}

/// The groups of this node, by id; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Groups {
    groups: Arc<RwLock<HashMap<String, Arc<Group>>>>,
}

impl Groups {
    /// The group named `id`.
    pub fn get(&self, id: &str) -> Option<Arc<Group>> {
        self.groups
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()
    }

    /// Every group, in id order.
    pub fn list(&self) -> Vec<Arc<Group>> {
        let mut all: Vec<Arc<Group>> = self
            .groups
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    /// Stores or replaces a group (after it was written to the database).
    pub fn put(&self, group: Group) {
        let mut groups = self.groups.write().unwrap_or_else(PoisonError::into_inner);
        groups.insert(group.id.clone(), Arc::new(group));
    }

    /// Forgets a group; whether it was there.
    pub fn remove(&self, id: &str) -> bool {
        self.groups
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id)
            .is_some()
    }

    /// Replaces every group (a reload from the database).
    pub fn replace_all(&self, loaded: Vec<Group>) {
        let loaded = loaded.into_iter().map(|g| (g.id.clone(), Arc::new(g))).collect();
        *self.groups.write().unwrap_or_else(PoisonError::into_inner) = loaded;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taxis() -> Group {
        Group {
            id: "taxis".into(),
            name: "Taxis".into(),
            devices: ["spare-3".to_owned()].into(),
            prefixes: ["taxi-".to_owned()].into(),
        }
    }

    #[test]
    fn members_are_listed_or_prefixed() {
        let group = taxis();
        assert!(group.contains("taxi-12") && group.contains("spare-3"));
        assert!(!group.contains("spare-4") && !group.contains("bus-1"));
        assert_eq!(group.validate(), Ok(()));
    }

    #[test]
    fn bad_groups_are_refused_with_a_reason() {
        let mut group = taxis();
        group.prefixes.insert(String::new());
        assert!(matches!(group.validate(), Err(GroupError::Prefix { .. })));
        let mut group = taxis();
        group.devices.insert("a\u{202e}b".into());
        let refused = group.validate().expect_err("an invisible character");
        assert!(refused.to_string().contains("invisible"), "{refused}");
        let mut group = taxis();
        group.id = String::new();
        assert!(matches!(group.validate(), Err(GroupError::Id(_))));
    }

    #[test]
    fn the_registry_replaces_and_lists_in_id_order() {
        let groups = Groups::default();
        groups.put(taxis());
        groups.put(Group {
            id: "buses".into(),
            ..taxis()
        });
        assert_eq!(
            groups.list().iter().map(|g| g.id.as_str()).collect::<Vec<_>>(),
            ["buses", "taxis"]
        );
        groups.replace_all(vec![taxis()]);
        assert!(groups.get("buses").is_none());
        assert!(groups.remove("taxis") && !groups.remove("taxis"));
    }
}
