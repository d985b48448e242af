//! The alert model: what the evaluator decides ([`Event`], as a [`NewAlert`] grouped with the
//! state changes that go with it in a [`Changes`]) and what is stored and sent ([`Alert`]).

use chrono::{DateTime, Utc};
use dispatch::roam::PairKey;
use serde::{Deserialize, Serialize};

/// Kinds of alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    Enter,
    Exit,
    Dwell,
    Overspeed,
    /// The device sent nothing for the configured time (sent once until it reports again).
    Offline,
    /// Two devices of a proximity rule came within its radius.
    Near,
    /// Two near devices got farther apart than the rule's radius plus its hysteresis.
    Apart,
}

impl AlertKind {
    pub const ALL: [Self; 7] = [
        Self::Enter,
        Self::Exit,
        Self::Dwell,
        Self::Overspeed,
        Self::Offline,
        Self::Near,
        Self::Apart,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enter => "enter",
            Self::Exit => "exit",
            Self::Dwell => "dwell",
            Self::Overspeed => "overspeed",
            Self::Offline => "offline",
            Self::Near => "near",
            Self::Apart => "apart",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

impl From<fences::TransitionKind> for AlertKind {
    fn from(kind: fences::TransitionKind) -> Self {
        match kind {
            fences::TransitionKind::Enter => Self::Enter,
            fences::TransitionKind::Exit => Self::Exit,
            fences::TransitionKind::Dwell => Self::Dwell,
            fences::TransitionKind::Overspeed => Self::Overspeed,
        }
    }
}

/// A stored alert, as the API and the WebSocket send it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    /// The cursor: resume with `since=<id>` to get every later alert.
    pub id: i64,
    #[serde(flatten)]
    pub event: Event,
    /// When it was committed.
    pub created_at: DateTime<Utc>,
}

/// What happened, as the evaluator decides it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    pub device: String,
    /// `null` for device alerts (`offline`).
    pub fence: Option<String>,
    pub fence_name: Option<String>,
    pub kind: AlertKind,
    /// When it happened: the fix time (interpolated for a crossing between two fixes), the due
    /// time of a dwell, the time the server noticed for `offline` and fence edits.
    pub ts: DateTime<Utc>,
    /// `[lon, lat]` where it happened.
    pub position: Option<[f64; 2]>,
    pub speed_mps: Option<f64>,
    /// Time and place were interpolated between two fixes (a fast pass through the fence).
    pub interpolated: bool,
    /// When the fix that caused it reached the server (absent for timer alerts).
    pub received_at: Option<DateTime<Utc>>,
    /// Proximity alerts (`near`, `apart`): the rule, the other device and their distance.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub proximity: Option<Proximity>,
}

/// What a proximity alert adds to an [`Event`] (whose `device` is the rule's watched device).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Proximity {
    pub rule: String,
    /// The device on the rule's `near` side.
    pub other: String,
    /// Great-circle distance between the two, in metres.
    pub distance_m: f64,
}

/// An alert before it is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAlert {
    pub event: Event,
    /// Webhook URLs of the fence, in addition to the configured ones.
    pub webhooks: Vec<String>,
}

/// What the evaluator remembers of a device inside a fence (outside is not stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Visit {
    pub entered_at_ms: i64,
    pub dwell_fired: bool,
    pub overspeed_fired: bool,
}

/// One evaluation step of one shard: alerts and the state they leave behind, committed
/// together so a crash can neither lose nor double an alert.
#[derive(Debug, Default)]
pub struct Changes {
    pub shard: i16,
    /// Cluster mode: the epoch the evaluator owned the shard with; the commit is refused if
    /// a newer owner has claimed it since.
    pub epoch: Option<i64>,
    /// The outbox position evaluated up to, when the step consumed fixes.
    pub watermark: Option<i64>,
    /// `(device, fence)` → the visit, or `None` when the device left.
    pub visits: Vec<((String, String), Option<Visit>)>,
    /// Device → since when it is offline, or `None` when it reported again.
    pub offline: Vec<(String, Option<DateTime<Utc>>)>,
    /// Proximity pair → since when it is near, or `None` when it no longer is.
    pub pairs: Vec<(PairKey, Option<DateTime<Utc>>)>,
    pub alerts: Vec<NewAlert>,
}

impl Changes {
    pub fn new(shard: i16, epoch: Option<i64>) -> Self {
        Self {
            shard,
            epoch,
            ..Self::default()
        }
    }

    /// Nothing to store.
    pub fn is_empty(&self) -> bool {
        self.watermark.is_none()
            && self.visits.is_empty()
            && self.offline.is_empty()
            && self.pairs.is_empty()
            && self.alerts.is_empty()
    }
}

/// Milliseconds since the epoch as a time (saturating at the representable range).
pub fn time_of_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or(if ms < 0 {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    })
}
