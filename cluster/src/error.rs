//! The cluster crate's errors.

/// Why a cluster operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("invalid cluster configuration: {0}")]
    Config(String),
    /// NATS or JetStream could not be reached or refused a request; `what` says what was
    /// being done.
    #[error("NATS: cannot {what}: {detail}")]
    Nats { what: &'static str, detail: String },
    /// Too many fixes are waiting for JetStream already; retry later.
    #[error("too many fixes are being appended to the log; retry later")]
    LogFull,
    /// The cluster was created with other settings than this node's.
    #[error("this node's configuration does not match the cluster's: {0}")]
    Mismatch(String),
}

impl ClusterError {
    /// A NATS failure while doing `what`.
    pub fn nats(what: &'static str, error: impl std::fmt::Display) -> Self {
        Self::Nats {
            what,
            detail: error.to_string(),
        }
    }
}
