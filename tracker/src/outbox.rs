//! Hand-off of committed batches from a shard writer to that shard's consumer (the fence
//! evaluator), in commit order.
//!
//! The database is the outbox (`positions.(shard, seq)`); this channel is only the fast path
//! that spares the consumer from reading back what was just written. It is bounded: when it is
//! full the writer does not wait (ingest must not slow down for evaluation) but drops the
//! batch and raises a flag, and the consumer then catches up from the database (every fix of
//! the shard with `seq` past its watermark). The flag is also raised when a write failed in a
//! way that leaves unknown whether it committed, for the same reason.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{Notify, mpsc};

use crate::fix::Fix;

/// Fixes of one committed transaction of one shard.
#[derive(Debug)]
pub struct Committed {
    /// The largest `positions.seq` the transaction stored: once this batch is evaluated, the
    /// shard's watermark may move here. Every later batch of the shard has larger ones.
    pub max_seq: i64,
    /// The fixes of the transaction in queue order, including any that were already stored
    /// (duplicates): evaluation skips a fix not newer than its device's last one.
    pub fixes: Vec<Fix>,
}

/// What a consumer receives.
#[derive(Debug)]
pub enum Delivery {
    Batch(Committed),
    /// Some batches were not handed over: read the shard's fixes past the watermark from the
    /// database before using the next batch.
    CatchUp,
}

#[derive(Debug)]
struct Shared {
    missed: AtomicBool,
    wake: Notify,
}

/// The writer's end.
#[derive(Debug)]
pub struct OutboxSender {
    batches: mpsc::Sender<Committed>,
    shared: Arc<Shared>,
}

/// The consumer's end.
#[derive(Debug)]
pub struct OutboxReceiver {
    batches: mpsc::Receiver<Committed>,
    shared: Arc<Shared>,
}

/// A hand-off channel holding up to `capacity` batches.
pub fn outbox(capacity: usize) -> (OutboxSender, OutboxReceiver) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let shared = Arc::new(Shared {
        missed: AtomicBool::new(false),
        wake: Notify::new(),
    });
    (
        OutboxSender {
            batches: tx,
            shared: shared.clone(),
        },
        OutboxReceiver { batches: rx, shared },
    )
}

impl OutboxSender {
    /// Hands a committed batch over without waiting; a full queue makes the consumer catch up.
    pub fn offer(&self, batch: Committed) {
        if self.batches.try_send(batch).is_err() {
            self.missed();
        }
    }

    /// Tells the consumer that something may have committed without being handed over.
    pub fn missed(&self) {
        self.shared.missed.store(true, Ordering::Release);
        self.shared.wake.notify_one();
    }
}

impl OutboxReceiver {
    /// The next delivery; `None` once the writer is gone and everything was received.
    /// A pending catch-up comes before any batch queued after it was raised.
    pub async fn recv(&mut self) -> Option<Delivery> {
        loop {
            if self.shared.missed.swap(false, Ordering::AcqRel) {
                return Some(Delivery::CatchUp);
            }
            tokio::select! {
                biased;
                () = self.shared.wake.notified() => {}
                batch = self.batches.recv() => return batch.map(Delivery::Batch),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(max_seq: i64) -> Committed {
        Committed {
            max_seq,
            fixes: Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_full_queue_turns_into_one_catch_up() {
        let (tx, mut rx) = outbox(1);
        tx.offer(batch(1));
        tx.offer(batch(2));
        tx.offer(batch(3));
        assert!(matches!(rx.recv().await, Some(Delivery::CatchUp)));
        assert!(matches!(
            rx.recv().await,
            Some(Delivery::Batch(Committed { max_seq: 1, .. }))
        ));
        drop(tx);
        assert!(rx.recv().await.is_none());
    }

    #[tokio::test]
    async fn a_missed_write_wakes_an_idle_consumer() {
        let (tx, mut rx) = outbox(4);
        let waiter = tokio::spawn(async move { rx.recv().await.map(|d| matches!(d, Delivery::CatchUp)) });
        tokio::task::yield_now().await;
        tx.missed();
        assert_eq!(waiter.await.expect("join"), Some(true));
    }
}
