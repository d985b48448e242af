//! The fix log: acknowledged fixes live in a JetStream stream until their partition's owner
//! has stored them in PostgreSQL.
//!
//! Any node appends ([`FixLog::append`]): the fixes of a request are grouped by partition into
//! messages of at most [`MAX_FIXES_PER_MESSAGE`] on the partition's subject, each with a
//! `Nats-Msg-Id` drawn from its fixes' devices and times, so a client's retry of the same
//! request within the stream's duplicate window stores nothing twice (and a duplicate that
//! gets through is harmless: history skips a stored (device, time)). The node answers the
//! client only once JetStream acknowledged every message.
//!
//! The owner of a partition reads it in order from just after the last message it stored
//! ([`PartitionReader`], in bounded pulls); the stream sequence of that message is committed in PostgreSQL in
//! the same transaction as the fixes, so progress and data cannot disagree, and no JetStream
//! acknowledgement or redelivery timer is involved. What is stored is purged from the stream
//! by its owner ([`FixLog::purge_stored`]).

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, Consumer, DeliverPolicy, pull};
use async_nats::jetstream::context::{Publish, PublishAckFuture};
use async_nats::jetstream::{self, Message};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::Semaphore;
use tracker::Fix;
use tracker::shard::shard_of;
use xxhash_rust::xxh3::Xxh3;

use crate::error::ClusterError;
use crate::names::Names;
use crate::nats::Nats;

/// Most fixes in one message: about 200 B each in JSON, so a message stays near 100 KiB, well
/// under NATS's 1 MB payload limit (and an owner's reads stay bounded, see [`READ_MESSAGES`]).
pub const MAX_FIXES_PER_MESSAGE: usize = 500;
/// Longest wait for JetStream to acknowledge a request's messages.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// Appends fixes to the log and purges what owners stored; cheap to clone.
#[derive(Debug, Clone)]
pub struct FixLog {
    js: jetstream::Context,
    names: Names,
    partitions: u16,
    /// Room for fixes being appended (waiting for JetStream): beyond it a request is refused at
    /// once, so memory stays bounded whatever the number of connections.
    room: Arc<Semaphore>,
    capacity: usize,
}

impl FixLog {
    /// A log handle that holds at most `max_in_flight` fixes waiting for JetStream.
    pub fn new(nats: &Nats, max_in_flight: usize) -> Self {
        Self {
            js: nats.js.clone(),
            names: nats.names.clone(),
            partitions: nats.partitions,
            room: Arc::new(Semaphore::new(max_in_flight.max(1))),
            capacity: max_in_flight.max(1),
        }
    }

    /// The partition of a device.
    pub fn partition_of(&self, device: &str) -> u16 {
        u16::try_from(shard_of(device, usize::from(self.partitions))).unwrap_or(0)
    }

    /// Appends `fixes`; returns once JetStream has stored every one of them. On error some
    /// may be stored and others not: the client is not acknowledged and retries.
    /// [`ClusterError::LogFull`] when too many fixes are already on their way.
    pub async fn append(&self, fixes: &[Fix]) -> Result<(), ClusterError> {
        // A request larger than the whole room takes all of it rather than never fitting.
        let wanted = u32::try_from(fixes.len().min(self.capacity)).unwrap_or(u32::MAX);
        let Ok(_room) = self.room.try_acquire_many(wanted) else {
            return Err(ClusterError::LogFull);
        };
        let mut per_partition: Vec<Vec<&Fix>> = vec![Vec::new(); usize::from(self.partitions)];
        for fix in fixes {
            per_partition[usize::from(self.partition_of(&fix.device))].push(fix);
        }
        let mut acks: Vec<PublishAckFuture> = Vec::new();
        for (partition, fixes) in per_partition.iter().enumerate() {
            let subject = self.names.fix_subject(u16::try_from(partition).unwrap_or(0));
            for chunk in fixes.chunks(MAX_FIXES_PER_MESSAGE) {
                let payload = serde_json::to_vec(chunk).expect("fixes always serialise");
                let publish = Publish::build()
                    .payload(Bytes::from(payload))
                    .message_id(message_id(chunk));
                let ack = self
                    .js
                    .send_publish(subject.clone(), publish)
                    .await
                    .map_err(|e| ClusterError::nats("append fixes to the log", e))?;
                acks.push(ack);
            }
        }
        let all = futures_util::future::join_all(acks.into_iter().map(std::future::IntoFuture::into_future));
        let results = tokio::time::timeout(ACK_TIMEOUT, all)
            .await
            .map_err(|_| ClusterError::nats("append fixes to the log", "no acknowledgement in time"))?;
        for result in results {
            result.map_err(|e| ClusterError::nats("append fixes to the log", e))?;
        }
        Ok(())
    }

    /// Drops the messages of `partition` up to and including stream sequence `stored` (its
    /// owner committed them to PostgreSQL).
    pub async fn purge_stored(&self, partition: u16, stored: u64) -> Result<(), ClusterError> {
        let stream = self
            .js
            .get_stream(self.names.fix_stream())
            .await
            .map_err(|e| ClusterError::nats("find the fix log", e))?;
        stream
            .purge()
            .filter(self.names.fix_subject(partition))
            .sequence(stored + 1)
            .await
            .map_err(|e| ClusterError::nats("purge stored fixes", e))?;
        Ok(())
    }
}

/// The de-duplication id of a message: a hash of its fixes' devices and times.
fn message_id(fixes: &[&Fix]) -> String {
    let mut hasher = Xxh3::new();
    for fix in fixes {
        hasher.update(fix.device.as_bytes());
        hasher.update(&[0]);
        hasher.update(&fix.ts.timestamp_micros().to_le_bytes());
    }
    format!("{:032x}", hasher.digest128())
}

/// Fixes read from a partition, and the stream sequence of the last message they came from.
#[derive(Debug, Default)]
pub struct Batch {
    pub fixes: Vec<Fix>,
    /// Store this with the fixes: reading resumes after it. `None` for an empty batch.
    pub last_seq: Option<u64>,
}

/// Most messages one read takes from the log, and how many reads are kept ahead of the owner:
/// with messages of at most [`MAX_FIXES_PER_MESSAGE`] fixes, what an owner holds of a
/// partition stays under about 20 MiB however far behind it is, while the next batch is read
/// as the current one is committed. (No byte limit on a pull: NATS 2.9 answers a pull that
/// reaches its byte limit with more pending by an error, 409, instead of ending the batch.)
const READ_MESSAGES: usize = 64;
const READ_AHEAD: usize = 2;

/// One partition's messages in stream order, from a given point: an ephemeral consumer without
/// acknowledgements (the stored position lives in PostgreSQL), read in bounded pulls by a task
/// that keeps [`READ_AHEAD`] batches ready.
pub struct PartitionReader {
    batches: tokio::sync::mpsc::Receiver<Result<Batch, ClusterError>>,
    reading: tokio::task::AbortHandle,
}

impl Drop for PartitionReader {
    fn drop(&mut self) {
        self.reading.abort();
    }
}

/// The reading side of a [`PartitionReader`].
struct Puller {
    partition: u16,
    consumer: Consumer<pull::Config>,
}

impl std::fmt::Debug for PartitionReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionReader").finish_non_exhaustive()
    }
}

impl PartitionReader {
    /// Reads `partition` from the message after stream sequence `stored` (0: from the start).
    pub async fn open(nats: &Nats, partition: u16, stored: u64) -> Result<Self, ClusterError> {
        let stream = nats
            .js
            .get_stream(nats.names.fix_stream())
            .await
            .map_err(|e| ClusterError::nats("find the fix log", e))?;
        let deliver_policy = if stored == 0 {
            DeliverPolicy::All
        } else {
            DeliverPolicy::ByStartSequence {
                start_sequence: stored + 1,
            }
        };
        let consumer = stream
            .create_consumer(pull::Config {
                filter_subject: nats.names.fix_subject(partition),
                deliver_policy,
                ack_policy: AckPolicy::None,
                // Removed by the server once its owner is gone; an owner reads far more often.
                inactive_threshold: Duration::from_secs(30),
                ..Default::default()
            })
            .await
            .map_err(|e| ClusterError::nats("read a partition of the fix log", e))?;
        let (sender, batches) = tokio::sync::mpsc::channel(READ_AHEAD);
        let puller = Puller { partition, consumer };
        let reading = tokio::spawn(puller.run(sender)).abort_handle();
        Ok(Self { batches, reading })
    }

    /// The next messages in order: a batch read ahead, or the first that arrives within
    /// `wait`. An empty batch means nothing arrived in time; after an error the reader is done
    /// (open another from the stored position).
    pub async fn next_batch(&mut self, wait: Duration) -> Result<Batch, ClusterError> {
        match tokio::time::timeout(wait, self.batches.recv()).await {
            Err(_) => Ok(Batch::default()),
            Ok(Some(batch)) => batch,
            Ok(None) => Err(ClusterError::nats(
                "read a partition of the fix log",
                "the reader stopped",
            )),
        }
    }
}

/// How long one pull waits for a first message when nothing is pending.
const PULL_WAIT: Duration = Duration::from_millis(250);

impl Puller {
    /// Pulls batches until the reader is dropped or a pull fails (the error is its last item).
    async fn run(self, batches: tokio::sync::mpsc::Sender<Result<Batch, ClusterError>>) {
        loop {
            let batch = self.pull().await;
            let failed = batch.is_err();
            let empty = batch.as_ref().is_ok_and(|b| b.last_seq.is_none());
            if !empty && batches.send(batch).await.is_err() || failed {
                return;
            }
        }
    }

    /// Whatever has arrived (up to [`READ_MESSAGES`] messages), or else the first message that
    /// arrives within [`PULL_WAIT`].
    async fn pull(&self) -> Result<Batch, ClusterError> {
        let mut batch = Batch::default();
        let ready = self
            .consumer
            .fetch()
            .max_messages(READ_MESSAGES)
            .messages()
            .await
            .map_err(|e| ClusterError::nats("read a partition of the fix log", e))?;
        self.take(ready, &mut batch).await?;
        if batch.last_seq.is_none() {
            let first = self
                .consumer
                .batch()
                .max_messages(1)
                .expires(PULL_WAIT)
                .messages()
                .await
                .map_err(|e| ClusterError::nats("read a partition of the fix log", e))?;
            self.take(first, &mut batch).await?;
        }
        Ok(batch)
    }

    async fn take(
        &self,
        mut messages: impl futures_util::Stream<Item = Result<Message, impl std::fmt::Display>> + Unpin,
        batch: &mut Batch,
    ) -> Result<(), ClusterError> {
        while let Some(message) = messages.next().await {
            let message = message.map_err(|e| ClusterError::nats("read a partition of the fix log", e))?;
            let seq = message
                .info()
                .map_err(|e| ClusterError::nats("read a partition of the fix log", e))?
                .stream_sequence;
            match serde_json::from_slice::<Vec<Fix>>(&message.payload) {
                Ok(mut fixes) => batch.fixes.append(&mut fixes),
                // Only geotrack writes here; a message it cannot read would block the
                // partition forever if it were retried, so it is skipped loudly.
                Err(error) => tracing::error!(
                    partition = self.partition,
                    seq,
                    %error,
                    "skipping a fix log message that does not decode"
                ),
            }
            batch.last_seq = Some(seq);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn fix(device: &str, second: i64) -> Fix {
        let ts = Utc
            .timestamp_opt(1_700_000_000 + second, 0)
            .single()
            .expect("time");
        Fix {
            device: device.into(),
            ts,
            lon: 2.35,
            lat: 48.85,
            speed_mps: None,
            heading_deg: None,
            accuracy_m: None,
            altitude_m: None,
            battery: None,
            attrs: None,
            received_at: ts,
        }
    }

    #[test]
    fn message_ids_depend_on_devices_and_times_only() {
        let (a, b) = (fix("a", 1), fix("b", 1));
        let mut later = fix("a", 1);
        later.received_at = Utc::now();
        assert_eq!(message_id(&[&a, &b]), message_id(&[&later, &b]));
        assert_ne!(message_id(&[&a, &b]), message_id(&[&b, &a]));
        assert_ne!(message_id(&[&a]), message_id(&[&fix("a", 2)]));
        // The separator keeps ("ab", t) and ("a", "b"...) apart.
        assert_ne!(message_id(&[&fix("ab", 1)]), message_id(&[&fix("a", 1)]));
    }
}
