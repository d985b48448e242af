//! [`Filter`]: which live positions a query may return. Every query of the live index applies
//! one, so a token limited to some devices never sees another device's position, whatever the
//! query.

use chrono::{DateTime, Utc};
use fences::DeviceFilter;
use tracker::live::LivePosition;

/// What a position must satisfy to be returned; the default admits everything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only positions taken at or after this time (a query's `max_age_s` before now).
    pub since: Option<DateTime<Utc>>,
    /// Only devices whose id starts with one of these (none: any id).
    pub prefixes: Vec<String>,
    /// The devices the reader may see (a token's device limit, narrowed to a group's members
    /// when the query names one: `DeviceFilter::intersect`); `None`: every device.
    pub devices: Option<DeviceFilter>,
}

impl Filter {
    /// Whether `position` passes.
    pub fn admits(&self, position: &LivePosition) -> bool {
        self.since.is_none_or(|since| position.ts >= since)
            && (self.prefixes.is_empty()
                || self
                    .prefixes
                    .iter()
                    .any(|p| position.device.starts_with(p.as_str())))
            && self.devices.as_ref().is_none_or(|d| d.allows(&position.device))
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    fn at(device: &str, ts: DateTime<Utc>) -> LivePosition {
        LivePosition {
            device: device.into(),
            ts,
            position: [0.0, 0.0],
            speed_mps: None,
            heading_deg: None,
        }
    }

    #[test]
    fn every_condition_must_hold() {
        let now = Utc::now();
        let filter = Filter {
            since: Some(now - Duration::seconds(60)),
            prefixes: vec!["taxi-".into(), "bus-".into()],
            // A token's limit narrowed to a group of bus-7, bus-8 and taxi-*.
            devices: Some(DeviceFilter::intersect(
                DeviceFilter::new(&["taxi-*".into(), "bus-7".into(), "bus-9".into()]).as_ref(),
                &DeviceFilter::from_parts(vec!["bus-7".into(), "bus-8".into()], vec!["taxi-".into()]),
            )),
        };
        assert!(filter.admits(&at("taxi-1", now)));
        assert!(filter.admits(&at("bus-7", now)));
        assert!(!filter.admits(&at("bus-8", now)), "outside the token's limit");
        assert!(!filter.admits(&at("bus-9", now)), "outside the group");
        assert!(!filter.admits(&at("van-1", now)), "no prefix matches");
        assert!(
            !filter.admits(&at("taxi-1", now - Duration::seconds(61))),
            "stale"
        );
        assert!(Filter::default().admits(&at("van-1", now - Duration::days(900))));
    }
}
