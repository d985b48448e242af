//! [`SharedLiveIndex`]: the live index shared by the request handlers (readers) and the task that
//! keeps it current ([`crate::sync`]). Frames are applied in chunks, each under a short write
//! lock, so a frame of 100,000 moved devices never holds a query up for more than one chunk.
//! A reload from the database builds a whole new index outside the lock and swaps it in;
//! devices erased while it was read are removed from it before the swap. Each change is then
//! announced ([`IndexChange`]) to whoever follows the index (the roam evaluator).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard};

use tokio::sync::broadcast;
use tracker::live::Frame;

use crate::index::LiveIndex;

/// Positions applied under one write lock (each costs about a microsecond).
const CHUNK: usize = 256;
/// Changes kept for a follower that falls behind (it then starts over from the whole index).
const CHANGES_BACKLOG: usize = 64;

/// A change of the index, once it is made.
#[derive(Debug, Clone)]
pub enum IndexChange {
    /// These positions were applied (older ones than stored were skipped).
    Moved(Frame),
    /// The index was reloaded whole: anything may have changed.
    Reloaded,
    /// This device was erased.
    Erased(String),
}

/// The live index behind a lock; cheap to clone.
#[derive(Debug, Clone)]
pub struct SharedLiveIndex {
    index: Arc<RwLock<LiveIndex>>,
    /// While a reload reads the database: the devices erased since it began.
    erased_during_load: Arc<Mutex<Option<Vec<String>>>>,
    /// Whether the index was loaded from the database once (before that it knows nothing).
    loaded: Arc<AtomicBool>,
    changes: broadcast::Sender<IndexChange>,
}

impl Default for SharedLiveIndex {
    fn default() -> Self {
        Self {
            index: Arc::default(),
            erased_during_load: Arc::default(),
            loaded: Arc::default(),
            changes: broadcast::channel(CHANGES_BACKLOG).0,
        }
    }
}

impl SharedLiveIndex {
    /// The changes made from now on.
    pub fn changes(&self) -> broadcast::Receiver<IndexChange> {
        self.changes.subscribe()
    }

    /// Whether the first load from the database is done: until then queries have no answer.
    pub fn loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// The index, for reading (hold the guard briefly: writers wait).
    pub fn read(&self) -> RwLockReadGuard<'_, LiveIndex> {
        self.index.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies a frame of positions (older ones than stored are skipped).
    pub fn apply(&self, frame: &Frame) {
        for chunk in frame.chunks(CHUNK) {
            let mut index = self.index.write().unwrap_or_else(PoisonError::into_inner);
            for position in chunk {
                index.upsert(position.clone());
            }
        }
        let _ = self.changes.send(IndexChange::Moved(frame.clone()));
    }

    /// Forgets an erased device, now and in a reload under way.
    pub fn remove(&self, device: &str) {
        if let Some(erased) = self
            .erased_during_load
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
        {
            erased.push(device.to_owned());
        }
        self.index
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(device);
        let _ = self.changes.send(IndexChange::Erased(device.to_owned()));
    }

    /// Marks the start of a reload: erasures from now on are applied to the reloaded index too.
    pub fn begin_load(&self) {
        *self
            .erased_during_load
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Vec::new());
    }

    /// Swaps in a reloaded index, without the devices erased since [`begin_load`](Self::begin_load).
    pub fn replace(&self, mut loaded: LiveIndex) {
        let mut erased = self
            .erased_during_load
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for device in erased.take().unwrap_or_default() {
            loaded.remove(&device);
        }
        *self.index.write().unwrap_or_else(PoisonError::into_inner) = loaded;
        self.loaded.store(true, Ordering::Release);
        let _ = self.changes.send(IndexChange::Reloaded);
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use tracker::live::LivePosition;

    use super::*;

    fn at(device: &str) -> LivePosition {
        LivePosition {
            device: device.into(),
            ts: Utc::now(),
            position: [2.0, 48.0],
            speed_mps: None,
            heading_deg: None,
        }
    }

    #[test]
    fn a_device_erased_during_a_reload_stays_erased() {
        let shared = SharedLiveIndex::default();
        assert!(!shared.loaded());
        shared.apply(&Arc::new(vec![at("a"), at("b")]));
        shared.begin_load();
        // The reload read the table before "a" was erased from it.
        let loaded = LiveIndex::from_positions([at("a"), at("b")]);
        shared.remove("a");
        shared.replace(loaded);
        assert!(shared.loaded());
        assert!(shared.read().get("a").is_none());
        assert!(shared.read().get("b").is_some());
        // Later reloads are not affected by old erasures.
        shared.begin_load();
        shared.replace(LiveIndex::from_positions([at("a")]));
        assert!(shared.read().get("a").is_some());
    }
}
