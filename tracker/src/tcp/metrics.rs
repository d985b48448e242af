//! Prometheus metrics of the TCP listeners, per protocol (`geotrack_tcp_` prefix): connections
//! open and accepted, frames and records read, and what went wrong by reason. Fixes accepted
//! or rejected by validation are counted with every other protocol's, in
//! `geotrack_ingest_fixes_{accepted,rejected}_total{protocol}`.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::metrics::{ProtocolLabel, RejectLabels};

/// Why a connection or a frame was refused (`geotrack_tcp_errors_total{reason}`), besides the
/// framing errors' own reasons (`TeltonikaError::reason`).
pub mod reason {
    /// The listener already had `max_connections` open.
    pub const OVER_CAPACITY: &str = "over_capacity";
    /// The device said nothing for `idle_timeout_s`.
    pub const IDLE_TIMEOUT: &str = "idle_timeout";
    /// The handshake named a device the listener may not write.
    pub const REFUSED_DEVICE: &str = "refused_device";
    /// The records could not be made durable now (queue full, database or fix log down,
    /// rate limit): no acknowledgement, the device sends them again.
    pub const NOT_STORED: &str = "not_stored";
    /// GT06: a packet other than a login before the login.
    pub const BEFORE_LOGIN: &str = "before_login";
    /// GT06: a packet too short for its protocol number.
    pub const MALFORMED: &str = "malformed";
}

#[derive(Clone, Debug)]
pub struct TcpMetrics {
    /// Connections open now.
    pub connections: Family<ProtocolLabel, Gauge>,
    /// Connections accepted since the start (over-capacity ones included).
    pub connections_total: Family<ProtocolLabel, Counter>,
    /// Frames read whole (handshakes and data packets).
    pub packets: Family<ProtocolLabel, Counter>,
    /// Records read in data packets.
    pub records: Family<ProtocolLabel, Counter>,
    /// Refused connections, broken frames and unstored packets, by reason.
    pub errors: Family<RejectLabels, Counter>,
}

impl TcpMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            connections: Family::default(),
            connections_total: Family::default(),
            packets: Family::default(),
            records: Family::default(),
            errors: Family::default(),
        };
        let registry = registry.sub_registry_with_prefix("geotrack_tcp");
        registry.register(
            "connections",
            "Device connections open now",
            metrics.connections.clone(),
        );
        registry.register(
            "connections_accepted",
            "Device connections accepted",
            metrics.connections_total.clone(),
        );
        registry.register("packets", "Frames read whole", metrics.packets.clone());
        registry.register("records", "Records read in data packets", metrics.records.clone());
        registry.register(
            "errors",
            "Refused connections, broken frames and unstored packets, by reason",
            metrics.errors.clone(),
        );
        metrics
    }

    pub fn error(&self, protocol: &'static str, reason: &'static str) {
        self.errors
            .get_or_create(&RejectLabels { protocol, reason })
            .inc();
    }
}
