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

    /// The devices both filters allow, as one filter (`None` stands for every device): an id
    /// listed by one and allowed by the other, and of two prefixes where one extends the other,
    /// the longer. So a query's group and a token's limit go to SQL as one `ANY`/`LIKE ANY` pair.
    pub fn intersect(a: Option<&Self>, b: &Self) -> Self {
        let Some(a) = a else { return b.clone() };
        let mut exact: Vec<String> = a.exact.iter().filter(|id| b.allows(id)).cloned().collect();
        let from_b: Vec<String> = b
            .exact
            .iter()
            .filter(|id| a.allows(id) && !exact.contains(id))
            .cloned()
            .collect();
        exact.extend(from_b);
        let mut prefixes = Vec::new();
        for pa in &a.prefixes {
            for pb in &b.prefixes {
                let longer = if pa.starts_with(pb.as_str()) {
                    pa
                } else if pb.starts_with(pa.as_str()) {
                    pb
                } else {
                    continue;
                };
                if !prefixes.contains(longer) {
                    prefixes.push(longer.clone());
                }
            }
        }
        Self { exact, prefixes }
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
    use proptest::prelude::*;

    use super::*;

    /// Short ids over a tiny alphabet, so that prefixes and ids often meet.
    fn entries() -> impl Strategy<Value = Vec<String>> {
        prop::collection::vec(
            ("[ab]{1,3}", any::<bool>()).prop_map(|(id, prefix)| if prefix { format!("{id}*") } else { id }),
            0..5,
        )
    }

    proptest! {
        #[test]
        fn an_intersection_allows_what_both_allow(a in entries(), b in entries(), id in "[ab]{1,4}") {
            let (fa, fb) = (DeviceFilter::new(&a), DeviceFilter::new(&b));
            let Some(fb) = fb else { return Ok(()) };
            let both = DeviceFilter::intersect(fa.as_ref(), &fb);
            let expected = fa.as_ref().is_none_or(|f| f.allows(&id)) && fb.allows(&id);
            prop_assert_eq!(both.allows(&id), expected, "{:?} & {:?} on {}", a, b, id);
        }
    }

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
