//! Live positions for map views (`WS /ws/positions`), throttled per device.
//!
//! Whoever evaluates fixes [`record`](LiveFeed::record)s every fix that moves a device. The feed keeps only
//! the newest per device, and every interval (1 s by default) publishes what changed as one
//! frame, so a device reporting ten times a second costs subscribers one update per interval,
//! and a hundred subscribers cost one frame, not a hundred copies of every fix. While nobody
//! subscribes, recording is a no-op.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use fences::Bbox;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::Fix;

/// The newest position of a device, as a map view receives it (a [`Fix`] reduced to what a
/// map draws). Deserialisable: in cluster mode frames travel between nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LivePosition {
    pub device: String,
    pub ts: DateTime<Utc>,
    /// `[lon, lat]`.
    pub position: [f64; 2],
    pub speed_mps: Option<f64>,
    pub heading_deg: Option<f64>,
}

impl LivePosition {
    /// Whether the position lies in `bbox`.
    pub fn within(&self, bbox: &Bbox) -> bool {
        bbox.contains(self.position[0], self.position[1])
    }
}

impl From<&Fix> for LivePosition {
    fn from(fix: &Fix) -> Self {
        Self {
            device: fix.device.clone(),
            ts: fix.ts,
            position: [fix.lon, fix.lat],
            speed_mps: fix.speed_mps,
            heading_deg: fix.heading_deg,
        }
    }
}

/// The devices that moved during one interval.
pub type Frame = Arc<Vec<LivePosition>>;

/// Collects positions and publishes frames; cheap to clone.
#[derive(Debug, Clone)]
pub struct LiveFeed {
    pending: Arc<Mutex<HashMap<String, LivePosition>>>,
    frames: broadcast::Sender<Frame>,
}

impl LiveFeed {
    /// A feed keeping up to `backlog` frames for subscribers that fall behind.
    pub fn new(backlog: usize) -> Self {
        Self {
            pending: Arc::default(),
            frames: broadcast::channel(backlog.max(1)).0,
        }
    }

    /// Notes a fix that moved its device.
    pub fn record(&self, fix: &Fix) {
        if self.frames.receiver_count() == 0 {
            return;
        }
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(fix.device.clone(), LivePosition::from(fix));
    }

    /// Publishes a frame made elsewhere (cluster mode: by the node owning those devices).
    pub fn send_frame(&self, frame: Frame) {
        let _ = self.frames.send(frame);
    }

    /// Frames published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Frame> {
        self.frames.subscribe()
    }

    /// Publishes a frame every `interval` until `shutdown`.
    pub async fn run(self, interval: Duration, shutdown: CancellationToken) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = shutdown.cancelled() => return,
            }
            let moved: Vec<LivePosition> = {
                let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
                if pending.is_empty() {
                    continue;
                }
                pending.drain().map(|(_, p)| p).collect()
            };
            let _ = self.frames.send(Arc::new(moved));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fix(device: &str, lon: f64) -> Fix {
        let now = Utc::now();
        Fix {
            device: device.into(),
            ts: now,
            lon,
            lat: 1.0,
            speed_mps: None,
            heading_deg: Some(90.0),
            accuracy_m: None,
            altitude_m: None,
            battery: None,
            attrs: None,
            received_at: now,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_frame_holds_the_newest_position_of_each_device_that_moved() {
        let feed = LiveFeed::new(4);
        let mut frames = feed.subscribe();
        let stop = CancellationToken::new();
        let task = tokio::spawn(feed.clone().run(Duration::from_secs(1), stop.clone()));
        feed.record(&fix("a", 1.0));
        feed.record(&fix("a", 2.0));
        feed.record(&fix("b", 3.0));
        let mut frame = (*frames.recv().await.expect("frame")).clone();
        frame.sort_by(|x, y| x.device.cmp(&y.device));
        let seen: Vec<(&str, f64)> = frame.iter().map(|p| (p.device.as_str(), p.position[0])).collect();
        assert_eq!(seen, [("a", 2.0), ("b", 3.0)]);
        stop.cancel();
        task.await.expect("join");
    }

    #[test]
    fn bbox_tests_cross_the_antimeridian() {
        let mut p = LivePosition {
            device: "d".into(),
            ts: Utc::now(),
            position: [179.5, 0.0],
            speed_mps: None,
            heading_deg: None,
        };
        let across = Bbox::new(170.0, -5.0, -170.0, 5.0).expect("bbox");
        assert!(p.within(&across));
        assert!(!p.within(&Bbox::new(-10.0, -5.0, 10.0, 5.0).expect("bbox")));
        p.position = [-179.5, 0.0];
        assert!(p.within(&across));
    }
}
