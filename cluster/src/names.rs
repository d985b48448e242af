//! Names of the streams, buckets and subjects of one cluster, all derived from its prefix so
//! that several clusters (or parallel tests) share one NATS server without meeting.

use crate::error::ClusterError;

/// The JetStream and core NATS names of a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    prefix: String,
}

impl Names {
    /// Checks the prefix: letters, digits, `-` and `_` only (it is part of stream names, which
    /// allow no `.`, `*`, `>` or spaces), 1 to 32 characters.
    pub fn new(prefix: &str) -> Result<Self, ClusterError> {
        let valid = (1..=32).contains(&prefix.len())
            && prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if valid {
            Ok(Self {
                prefix: prefix.to_owned(),
            })
        } else {
            Err(ClusterError::Config(format!(
                "cluster.prefix {prefix:?} must be 1 to 32 letters, digits, '-' or '_'"
            )))
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The fix log stream.
    pub fn fix_stream(&self) -> String {
        format!("{}_fixes", self.prefix)
    }

    /// The subject of one partition's fixes.
    pub fn fix_subject(&self, partition: u16) -> String {
        format!("{}.fixes.{partition}", self.prefix)
    }

    /// Every partition's subject (the stream's filter).
    pub fn fix_subjects(&self) -> String {
        format!("{}.fixes.*", self.prefix)
    }

    /// KV bucket of partition leases (`p<partition>` → owner).
    pub fn lease_bucket(&self) -> String {
        format!("{}_leases", self.prefix)
    }

    /// KV bucket of node heartbeats (node name → liveness).
    pub fn node_bucket(&self) -> String {
        format!("{}_nodes", self.prefix)
    }

    /// KV bucket of settings fixed at cluster creation (the partition count).
    pub fn meta_bucket(&self) -> String {
        format!("{}_meta", self.prefix)
    }

    /// Core NATS subject of a fan-out channel (`live`, `tiles`, ...).
    pub fn fanout_subject(&self, channel: &str) -> String {
        format!("{}.fanout.{channel}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_that_would_break_subjects_are_refused() {
        for bad in ["", "a.b", "a*", "a>", "a b", &"x".repeat(33)] {
            assert!(Names::new(bad).is_err(), "{bad:?} accepted");
        }
        let names = Names::new("t-1_x").expect("valid");
        assert_eq!(names.fix_subject(7), "t-1_x.fixes.7");
        assert_eq!(names.fix_stream(), "t-1_x_fixes");
    }
}
