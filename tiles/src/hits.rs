//! A counter cheap enough for the warm tile path: each thread adds to its own cache line with
//! a plain load and store (only that thread writes it: no read-modify-write, no line shared
//! with another core), and a reader (a `/metrics` scrape) sums the threads' counts. A shared
//! atomic would make every core bounce one cache line on every tile served.

use std::sync::atomic::{AtomicU64, Ordering};

use thread_local::ThreadLocal;

/// Per-thread counts, summed when read.
#[derive(Debug, Default)]
pub struct ThreadCounter {
    counts: ThreadLocal<Slot>,
}

/// One thread's count, alone on its cache line (128 bytes: two lines, for the adjacent-line
/// prefetcher).
#[derive(Debug, Default)]
#[repr(align(128))]
struct Slot(AtomicU64);

impl ThreadCounter {
    /// Adds one to this thread's count.
    pub fn add_one(&self) {
        let slot = &self.counts.get_or_default().0;
        slot.store(slot.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }

    /// The sum over every thread that ever counted (a thread's count outlives it).
    pub fn sum(&self) -> u64 {
        self.counts
            .iter()
            .map(|slot| slot.0.load(Ordering::Relaxed))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_of_every_thread_are_summed() {
        let counter = std::sync::Arc::new(ThreadCounter::default());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let counter = counter.clone();
                std::thread::spawn(move || (0..1_000).for_each(|_| counter.add_one()))
            })
            .collect();
        for thread in threads {
            thread.join().expect("joined");
        }
        counter.add_one();
        assert_eq!(counter.sum(), 4_001);
    }
}
