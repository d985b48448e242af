//! The broadcast hub: committed alerts go out to every subscriber of this node, in id order.
//!
//! [`AlertHub`] is the seam for scaling out. [`LocalHub`] (one process) is a ring buffer of
//! the latest `capacity` alerts that every subscriber reads at its own pace; one that falls
//! more than `capacity` behind learns it lagged (and how far it got) instead of slowing the
//! others. A NATS JetStream hub would publish each committed batch to a stream and feed every
//! node's local ring from one ordered consumer of it, so subscribers see the same thing.

use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::broadcast;

use crate::model::Alert;

/// A committed alert and its message, serialised once for every subscriber and webhook.
#[derive(Debug)]
pub struct Published {
    pub alert: Alert,
    /// `{"type":"alert", ...alert}` as UTF-8 JSON.
    pub message: Bytes,
}

impl Published {
    pub fn new(alert: Alert) -> Arc<Self> {
        #[derive(Serialize)]
        struct Message<'a> {
            r#type: &'static str,
            #[serde(flatten)]
            alert: &'a Alert,
        }
        let text = serde_json::to_string(&Message {
            r#type: "alert",
            alert: &alert,
        })
        .expect("an alert always serialises");
        Arc::new(Self {
            alert,
            message: Bytes::from(text),
        })
    }
}

/// A subscriber's view of the hub: alerts published after it subscribed, in id order.
pub type Subscription = broadcast::Receiver<Arc<Published>>;

/// Where committed alerts are published and subscribers listen.
pub trait AlertHub: std::fmt::Debug + Send + Sync {
    /// Publishes alerts committed together, already in id order. Called by one writer only,
    /// so successive calls are in id order too.
    fn publish(&self, alerts: Vec<Arc<Published>>);

    /// Alerts published from now on.
    fn subscribe(&self) -> Subscription;

    /// Subscribers currently listening.
    fn subscribers(&self) -> usize;
}

/// The in-process hub.
#[derive(Debug)]
pub struct LocalHub {
    ring: broadcast::Sender<Arc<Published>>,
}

impl LocalHub {
    /// A hub that keeps the latest `capacity` alerts for subscribers that fall behind.
    pub fn new(capacity: usize) -> Self {
        Self {
            ring: broadcast::channel(capacity.max(1)).0,
        }
    }
}

impl AlertHub for LocalHub {
    fn publish(&self, alerts: Vec<Arc<Published>>) {
        for alert in alerts {
            // No subscriber is not an error: the table holds the alert for later readers.
            let _ = self.ring.send(alert);
        }
    }

    fn subscribe(&self) -> Subscription {
        self.ring.subscribe()
    }

    fn subscribers(&self) -> usize {
        self.ring.receiver_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AlertKind, Event};

    fn alert(id: i64) -> Arc<Published> {
        let now = chrono::Utc::now();
        Published::new(Alert {
            id,
            event: Event {
                device: "d".into(),
                fence: Some("f".into()),
                fence_name: None,
                kind: AlertKind::Enter,
                ts: now,
                position: Some([1.0, 2.0]),
                speed_mps: None,
                interpolated: false,
                received_at: None,
                proximity: None,
            },
            created_at: now,
        })
    }

    #[tokio::test]
    async fn a_subscriber_that_falls_behind_is_told_it_lagged() {
        let hub = LocalHub::new(2);
        let mut slow = hub.subscribe();
        hub.publish((1..=3).map(alert).collect());
        assert!(matches!(
            slow.recv().await,
            Err(broadcast::error::RecvError::Lagged(1))
        ));
        assert_eq!(slow.recv().await.expect("alert").alert.id, 2);
    }

    #[test]
    fn the_message_is_the_alert_with_a_type() {
        let published = alert(7);
        let value: serde_json::Value = serde_json::from_slice(&published.message).expect("json");
        assert_eq!(value["type"], "alert");
        assert_eq!(value["id"], 7);
        assert_eq!(value["kind"], "enter");
        assert_eq!(value["position"], serde_json::json!([1.0, 2.0]));
    }
}
