//! The fence index every evaluator and fence read uses, shared between tasks: a
//! [`FenceIndex`] behind a lock that is only ever held for short, synchronous work, with a
//! generation that every change bumps so evaluators can re-check devices against the fences as
//! they are now.

use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use fences::FenceIndex;
use tokio::sync::watch;

/// The shared in-memory index. Locked only for short, synchronous work (never across `.await`).
/// Every change bumps a generation that evaluators watch, to re-check devices against the
/// fences as they are now.
#[derive(Debug, Clone)]
pub struct SharedIndex {
    index: Arc<RwLock<FenceIndex>>,
    generation: Arc<watch::Sender<u64>>,
}

impl SharedIndex {
    /// An index at generation 0 (nothing loaded yet).
    pub fn new(index: FenceIndex) -> Self {
        Self {
            index: Arc::new(RwLock::new(index)),
            generation: Arc::new(watch::Sender::new(0)),
        }
    }

    /// A poisoned lock only says a panic happened while it was held; every index operation
    /// leaves the index whole, so it is used as it is.
    pub fn read(&self) -> RwLockReadGuard<'_, FenceIndex> {
        self.index.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes the index and announces a new generation.
    pub fn update<T>(&self, change: impl FnOnce(&mut FenceIndex) -> T) -> T {
        let result = {
            let mut index: RwLockWriteGuard<'_, FenceIndex> =
                self.index.write().unwrap_or_else(PoisonError::into_inner);
            change(&mut index)
        };
        self.generation.send_modify(|g| *g += 1);
        result
    }

    /// Follows the generation: it changes after every update (0 until the first load).
    pub fn generations(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }
}
