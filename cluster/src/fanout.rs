//! Fan-out between nodes of what every node must see but nobody needs durably: the live
//! positions frames of `/ws/positions` and the tile changes of the `tracks` layer, both made by
//! the owner of a partition. Core NATS subjects, JSON payloads, at most once: a frame lost
//! while a node is disconnected is replaced by the next one (positions), and a node that was
//! disconnected drops its cached tiles of the layers concerned when it is back
//! ([`Fanout::reconnections`]), since changes sent meanwhile are lost.

use async_nats::Client;
use futures_util::StreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::error::ClusterError;
use crate::names::Names;
use crate::nats::Nats;

/// Publishes and subscribes on the cluster's fan-out subjects; cheap to clone.
#[derive(Debug, Clone)]
pub struct Fanout {
    client: Client,
    names: Names,
    reconnections: watch::Receiver<u64>,
}

impl Fanout {
    pub fn new(nats: &Nats) -> Self {
        Self {
            client: nats.client.clone(),
            names: nats.names.clone(),
            reconnections: nats.reconnections(),
        }
    }

    /// Sends `value` to every node subscribed to `channel` (this one included). Best effort: a
    /// failure is logged, never returned, since nothing waits for fan-out.
    pub async fn publish<T: Serialize + ?Sized>(&self, channel: &str, value: &T) {
        let payload = match serde_json::to_vec(value) {
            Ok(payload) => payload,
            Err(error) => {
                tracing::error!(channel, %error, "cannot encode a fan-out message");
                return;
            }
        };
        if let Err(error) = self
            .client
            .publish(self.names.fanout_subject(channel), payload.into())
            .await
        {
            tracing::warn!(channel, %error, "cannot fan out a message; other nodes miss it");
        }
    }

    /// Every message sent on `channel` from now on, decoded; undecodable ones are skipped.
    pub async fn subscribe<T: DeserializeOwned>(
        &self,
        channel: &'static str,
    ) -> Result<impl futures_util::Stream<Item = T> + Send + 'static, ClusterError> {
        let subscriber = self
            .client
            .subscribe(self.names.fanout_subject(channel))
            .await
            .map_err(|e| ClusterError::nats("subscribe to fan-out", e))?;
        Ok(subscriber.filter_map(move |message| async move {
            serde_json::from_slice(&message.payload)
                .inspect_err(|error| tracing::warn!(channel, %error, "skipping a fan-out message that does not decode"))
                .ok()
        }))
    }

    /// Changes each time the connection to NATS is re-established: messages sent while this
    /// node was away are lost.
    pub fn reconnections(&self) -> watch::Receiver<u64> {
        self.reconnections.clone()
    }
}
