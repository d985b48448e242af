//! [`DeviceFilter`]: the devices a reader may see (a token's device limit) as exact ids and id
//! prefixes, checked in memory ([`DeviceFilter::allows`]) or handed to SQL as `device = ANY($n)
//! OR device LIKE ANY($m)` parameters ([`DeviceFilter::exact`], [`DeviceFilter::like_patterns`]).
//! Every read path applies the same filter, so a limited token sees nothing of other devices.

use std::hash::{Hash, Hasher};

/// Exact device ids and id prefixes; see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeviceFilter {
    exact: Vec<String>,
    prefixes: Vec<String>,
}

impl DeviceFilter {
    /// From configured entries, where a trailing `*` makes a prefix; `None` when there are
    /// none (no limit).
    pub fn new(entries: &[String]) -> Option<Self> {
        if entries.is_empty() {
            return None;
        }
        let (prefixes, exact): (Vec<String>, Vec<String>) =
            entries.iter().cloned().partition(|d| d.ends_with('*'));
        Some(Self {
            exact,
            prefixes: prefixes
                .iter()
                .map(|p| p.trim_end_matches('*').to_owned())
                .collect(),
        })
    }

    /// From exact ids and prefixes (without `*`), even when both are empty: then it allows no
    /// device (a limit to groups that have no members yet), unlike [`new`](Self::new).
    pub fn from_parts(exact: Vec<String>, prefixes: Vec<String>) -> Self {
        Self { exact, prefixes }
    }

    /// Whether `device` passes the filter.
    pub fn allows(&self, device: &str) -> bool {
        self.exact.iter().any(|d| d == device) || self.prefixes.iter().any(|p| device.starts_with(p.as_str()))
    }

    /// The exact ids, for `device = ANY($n)`.
    pub fn exact(&self) -> &[String] {
        &self.exact
    }

    /// The id prefixes (without their `*`).
    pub fn prefixes(&self) -> &[String] {
        &self.prefixes
    }

    /// The prefixes as `LIKE` patterns (`_`, `%` and `\` escaped), for `device LIKE ANY($m)`.
    pub fn like_patterns(&self) -> Vec<String> {
        self.prefixes
            .iter()
            .map(|p| {
                format!(
                    "{}%",
                    p.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
                )
            })
            .collect()
    }

    /// A number naming this filter within the process (equal filters, equal keys), for caches
    /// that keep what each filter sees apart.
    pub fn key(&self) -> u64 {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.hash(&mut hasher);
        // 0 stands for "no filter" in the caches that use this.
        hasher.finish().max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_prefixes_filter_and_become_sql_patterns() {
        let filter =
            DeviceFilter::new(&["phone-1".into(), "fleet-*".into(), "a_b%*".into()]).expect("limited");
        assert!(filter.allows("phone-1") && filter.allows("fleet-9") && filter.allows("a_b%c"));
        assert!(!filter.allows("phone-2") && !filter.allows("xfleet-1") && !filter.allows("aXb%c"));
        assert_eq!(filter.exact(), ["phone-1"]);
        assert_eq!(filter.like_patterns(), ["fleet-%", "a\\_b\\%%"]);
        assert!(DeviceFilter::new(&[]).is_none());
        let same = DeviceFilter::new(&["phone-1".into(), "fleet-*".into(), "a_b%*".into()]).expect("limited");
        assert_eq!(filter.key(), same.key());
        assert_ne!(
            filter.key(),
            DeviceFilter::new(&["phone-1".into()]).expect("limited").key()
        );
    }
}
