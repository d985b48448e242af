//! `[tcp]`: the listeners of hardware trackers (Teltonika, GT06), each off unless given an
//! address.

use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// The protocols of hardware trackers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Teltonika,
    Gt06,
}

impl Protocol {
    /// Its name in configuration keys, logs and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Self::Teltonika => "teltonika",
            Self::Gt06 => "gt06",
        }
    }
}

/// The TCP listeners and the limits they share.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TcpConfig {
    /// Teltonika (Codec 8, 8 Extended, 16), e.g. `0.0.0.0:5027`; off when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub teltonika: Option<SocketAddr>,
    /// GT06 (Concox and clones), e.g. `0.0.0.0:5023`; off when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gt06: Option<SocketAddr>,
    /// The configured token the listeners act as, when tokens are configured: it needs the
    /// `ingest` scope, and a device's IMEI must be within its device limit (exact ids, `prefix*`
    /// or `group:NAME`) for the handshake to be accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// A device silent for this long is disconnected.
    pub idle_timeout_s: u64,
    /// Open connections per listener at most; more are closed at once.
    pub max_connections: usize,
}

impl Default for TcpConfig {
    fn default() -> Self {
        Self {
            teltonika: None,
            gt06: None,
            token: None,
            // Teltonika devices close an idle link after 300 s by default ("Open Link Timeout"):
            // twice that leaves the closing to them.
            idle_timeout_s: 600,
            max_connections: 10_000,
        }
    }
}

impl TcpConfig {
    /// The configured listeners: protocol and address.
    pub fn listeners(&self) -> Vec<(Protocol, SocketAddr)> {
        [(Protocol::Teltonika, self.teltonika), (Protocol::Gt06, self.gt06)]
            .into_iter()
            .filter_map(|(protocol, addr)| addr.map(|a| (protocol, a)))
            .collect()
    }
}

impl fmt::Debug for TcpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpConfig")
            .field("teltonika", &self.teltonika)
            .field("gt06", &self.gt06)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("idle_timeout_s", &self.idle_timeout_s)
            .field("max_connections", &self.max_connections)
            .finish()
    }
}
