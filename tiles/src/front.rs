//! The per-thread front of the tile cache: the tiles a worker thread served lately, found with
//! no lock, no atomic write and nothing shared with the other threads.
//!
//! A moka hit probes a concurrent hash map, pushes a read record onto a channel every worker
//! thread writes to, and now and then runs the upkeep of its LRU lists inline: on the benchmark
//! machine about 3-4 µs of a 60 µs warm tile request, the largest part of a tile request that
//! `/health` does not pay. Each worker thread keeps a direct-mapped table of the tiles it served
//! (the same `Arc<Tile>`s moka holds: no copy). It decides nothing about freshness: the cache
//! checks a tile found here exactly as one found in moka (later writes, the layer's TTL).
//!
//! Memory: a tile moka evicted lives on here until its slot is reused, so each thread's table
//! is bounded in bytes (a share of the cache's capacity, see [`Front::new`]); a table about to
//! pass its bound is emptied before the insert.

use std::cell::RefCell;
use std::sync::Arc;

use thread_local::ThreadLocal;

use crate::tile::{Tile, TileKey};

/// Slots per thread (a power of two). A working set of 2,000 tiles hits about 89% of the time.
const SLOTS: usize = 8_192;
/// The share of a table's byte bound one tile may take, so one big tile does not flush the rest.
const LARGEST_SHARE: usize = 16;

/// Every worker thread's table; cheap to read, private to the tile cache.
#[derive(Debug)]
pub struct Front {
    tables: ThreadLocal<RefCell<Table>>,
    /// Bytes of tiles one thread's table may hold.
    thread_bytes: usize,
}

/// A tile and the key it was kept under.
type Kept = Option<(TileKey, Arc<Tile>)>;

#[derive(Debug)]
struct Table {
    slots: Box<[Kept]>,
    /// Weight of the tiles in `slots`.
    bytes: usize,
}

impl Front {
    /// Fronts for a cache of `cache_bytes`: all threads' tables together hold at most an eighth
    /// of it (as many threads as the machine has cores, the size of tokio's worker pool).
    pub fn new(cache_bytes: u64) -> Self {
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        let share = usize::try_from(cache_bytes / 8).unwrap_or(usize::MAX);
        Self::with_thread_bytes(share / threads)
    }

    fn with_thread_bytes(thread_bytes: usize) -> Self {
        Self {
            tables: ThreadLocal::new(),
            thread_bytes,
        }
    }

    /// The tile this thread last kept under `key`, if its slot still holds it.
    pub fn get(&self, key: &TileKey) -> Option<Arc<Tile>> {
        let table = self.tables.get()?.borrow();
        match &table.slots[slot(key)] {
            Some((kept, tile)) if kept == key => Some(tile.clone()),
            _ => None,
        }
    }

    /// Keeps `tile` under `key` for this thread, in place of whatever shared its slot.
    pub fn insert(&self, key: TileKey, tile: &Arc<Tile>) {
        let weight = tile.weight();
        if weight > self.thread_bytes / LARGEST_SHARE {
            return;
        }
        let mut table = self
            .tables
            .get_or(|| {
                RefCell::new(Table {
                    slots: vec![None; SLOTS].into_boxed_slice(),
                    bytes: 0,
                })
            })
            .borrow_mut();
        let table = &mut *table;
        let slot = slot(&key);
        if let Some((_, old)) = table.slots[slot].take() {
            table.bytes -= old.weight();
        }
        if table.bytes + weight > self.thread_bytes {
            table.slots.fill(None);
            table.bytes = 0;
        }
        table.slots[slot] = Some((key, tile.clone()));
        table.bytes += weight;
    }
}

/// The slot of `key`: a multiplicative hash of its fields (the mixing of rustc's `FxHash`), top bits.
fn slot(key: &TileKey) -> usize {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let [from, to] = key.window.unwrap_or([0, 0]);
    let fields = [
        u64::from(key.tile.x) | u64::from(key.tile.y) << 32,
        u64::from(key.tile.z) | (key.layer.index() as u64) << 8,
        from.cast_unsigned(),
        to.cast_unsigned(),
    ];
    let hash = fields
        .iter()
        .fold(0u64, |h, &f| (h.rotate_left(5) ^ f).wrapping_mul(K));
    (hash >> (64 - SLOTS.trailing_zeros())) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TileCoord;
    use crate::catalog::{Catalog, LayerId};

    fn key(x: u32) -> TileKey {
        TileKey {
            layer: LayerId::FENCES,
            tile: TileCoord { z: 14, x, y: 5_000 },
            window: None,
            devices: 0,
        }
    }

    fn tile(bytes: usize) -> Arc<Tile> {
        let catalog = Catalog::new(&crate::config::TilesConfig::default()).expect("catalog");
        Arc::new(Tile::build(catalog.get(LayerId::FENCES), vec![7; bytes], 0))
    }

    /// A key other than `of` that falls in the same slot.
    fn slot_mate(of: u32) -> u32 {
        (of + 1..of + 1_000_000)
            .find(|&x| slot(&key(x)) == slot(&key(of)))
            .expect("a slot mate")
    }

    #[test]
    fn a_thread_finds_what_it_kept_and_no_other_thread_does() {
        let front = Front::with_thread_bytes(1 << 20);
        let kept = tile(100);
        assert!(front.get(&key(1)).is_none(), "nothing kept yet");
        front.insert(key(1), &kept);
        assert!(Arc::ptr_eq(&front.get(&key(1)).expect("kept"), &kept));
        assert!(front.get(&key(2)).is_none(), "another key");
        std::thread::scope(|s| {
            s.spawn(|| assert!(front.get(&key(1)).is_none(), "another thread's table"));
        });
    }

    #[test]
    fn a_key_sharing_a_slot_replaces_the_tile_kept_there() {
        let front = Front::with_thread_bytes(1 << 20);
        let mate = slot_mate(1);
        front.insert(key(1), &tile(100));
        front.insert(key(mate), &tile(100));
        assert!(front.get(&key(1)).is_none());
        assert!(front.get(&key(mate)).is_some());
        let table = front.tables.get().expect("table").borrow();
        assert_eq!(
            table.bytes,
            tile(100).weight(),
            "the replaced tile is no longer counted"
        );
    }

    #[test]
    fn a_table_stays_within_its_bound_and_keeps_no_tile_too_big_for_it() {
        let small = tile(100);
        let front = Front::with_thread_bytes(small.weight() * 20);
        let big = tile(small.weight() * 2);
        front.insert(key(0), &big);
        assert!(front.get(&key(0)).is_none(), "over a sixteenth of the bound");
        for x in 1..=40 {
            front.insert(key(x), &small);
            let bytes = front.tables.get().expect("table").borrow().bytes;
            assert!(bytes <= small.weight() * 20, "{bytes} bytes after {x} tiles");
        }
        assert!(front.get(&key(40)).is_some(), "the newest tile is kept");
    }
}
