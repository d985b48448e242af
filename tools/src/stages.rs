//! Where a benchmark's time went inside the server: the server's own latency histograms
//! (`/metrics`), read before and after a drive, so the difference covers the drive alone. The
//! same reading gives the server's plain counters and gauges.
//!
//! Each histogram gives a mean (its sum over its count) and, from its cumulative buckets, the
//! upper bound of the bucket holding the 50th and the 99th percentile: the buckets double, so
//! "≤ 8 ms" says the percentile lies between 4 and 8 ms.

use std::collections::HashMap;

/// One histogram's totals: its sum, its count and its cumulative buckets by upper bound.
#[derive(Debug, Clone, Default, PartialEq)]
struct Totals {
    sum: f64,
    count: f64,
    buckets: Vec<(f64, f64)>,
}

/// Every unlabelled histogram and every unlabelled value of a `/metrics` text, by name.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    histograms: HashMap<String, Totals>,
    values: HashMap<String, f64>,
}

impl Snapshot {
    /// Reads the server's `/metrics`; an unreadable answer gives an empty snapshot.
    pub(crate) async fn read(client: &reqwest::Client, url: &str) -> Self {
        match client.get(format!("{url}/metrics")).send().await {
            Ok(reply) => Self::parse(&reply.text().await.unwrap_or_default()),
            Err(_) => Self::default(),
        }
    }

    fn parse(text: &str) -> Self {
        let mut histograms: HashMap<String, Totals> = HashMap::new();
        let mut values = HashMap::new();
        for line in text.lines().filter(|line| !line.starts_with('#')) {
            let Some((key, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            if !key.contains('{') {
                values.insert(key.to_owned(), value);
            }
            if let Some(name) = key.strip_suffix("_sum") {
                histograms.entry(name.to_owned()).or_default().sum = value;
            } else if let Some(name) = key.strip_suffix("_count") {
                histograms.entry(name.to_owned()).or_default().count = value;
            } else if let Some((name, le)) = key.split_once("_bucket{le=\"") {
                let bound = le.trim_end_matches("\"}");
                let bound = if bound == "+Inf" {
                    f64::INFINITY
                } else {
                    bound.parse().unwrap_or(f64::NAN)
                };
                histograms
                    .entry(name.to_owned())
                    .or_default()
                    .buckets
                    .push((bound, value));
            }
        }
        Self { histograms, values }
    }

    /// The value of the unlabelled counter or gauge `name`, if the server reported it.
    pub(crate) fn value(&self, name: &str) -> Option<f64> {
        self.values.get(name).copied()
    }

    /// `name`'s observations since `before`, as one line of milliseconds (or of plain values
    /// when `unit` is empty); `None` when the histogram saw nothing in between.
    pub(crate) fn since(&self, before: &Self, name: &str, unit: &str) -> Option<String> {
        let after = self.histograms.get(name)?;
        let empty = Totals::default();
        let before = before.histograms.get(name).unwrap_or(&empty);
        let count = after.count - before.count;
        if count <= 0.0 {
            return None;
        }
        let scale = if unit == "ms" { 1_000.0 } else { 1.0 };
        let quantile = |q: f64| {
            let wanted = count * q;
            // One histogram keeps its buckets: the earlier reading's are in the same order.
            after
                .buckets
                .iter()
                .enumerate()
                .find_map(|(i, &(bound, cumulative))| {
                    let earlier = before.buckets.get(i).map_or(0.0, |&(_, c)| c);
                    (cumulative - earlier >= wanted).then_some(bound * scale)
                })
        };
        let bound = |value: Option<f64>| match value {
            Some(v) if v.is_finite() => format!("≤ {v:.3}{unit}"),
            _ => "beyond the last bucket".to_owned(),
        };
        Some(format!(
            "mean {:.2}{unit}, p50 {}, p99 {} over {count:.0}",
            scale * (after.sum - before.sum) / count,
            bound(quantile(0.5)),
            bound(quantile(0.99)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "# TYPE x_seconds histogram
x_seconds_sum 1.0
x_seconds_count 10
x_seconds_bucket{le=\"0.001\"} 10
x_seconds_bucket{le=\"0.002\"} 10
x_seconds_bucket{le=\"+Inf\"} 10
";

    const AFTER: &str = "# TYPE x_seconds histogram
x_seconds_sum 1.3
x_seconds_count 110
x_seconds_bucket{le=\"0.001\"} 60
x_seconds_bucket{le=\"0.002\"} 109
x_seconds_bucket{le=\"+Inf\"} 110
other_total 4
";

    #[test]
    fn the_difference_covers_only_what_was_observed_in_between() {
        let line = Snapshot::parse(AFTER).since(&Snapshot::parse(BEFORE), "x_seconds", "ms");
        assert_eq!(
            line.as_deref(),
            Some("mean 3.00ms, p50 ≤ 1.000ms, p99 ≤ 2.000ms over 100")
        );
    }

    #[test]
    fn plain_values_are_read_and_labelled_ones_left_out() {
        let snapshot = Snapshot::parse(AFTER);
        assert_eq!(snapshot.value("other_total"), Some(4.0));
        assert_eq!(snapshot.value("x_seconds_count"), Some(110.0));
        assert_eq!(snapshot.value("x_seconds_bucket"), None);
        assert_eq!(snapshot.value("missing"), None);
    }

    #[test]
    fn a_histogram_that_saw_nothing_gives_no_line() {
        let after = Snapshot::parse(BEFORE);
        assert_eq!(after.since(&Snapshot::parse(BEFORE), "x_seconds", "ms"), None);
        assert_eq!(after.since(&Snapshot::default(), "missing", "ms"), None);
    }
}
