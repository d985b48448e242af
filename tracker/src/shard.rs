//! Which shard a device belongs to: a stable hash (xxh3, seedless) of its id, modulo the shard
//! count. Stable across processes and releases, unlike std's randomly seeded hasher, because
//! the shard is stored with every fix (`positions.shard`) and drives evaluation order.

use xxhash_rust::xxh3::xxh3_64;

/// The shard of `device` among `shards` (which must be at least 1).
pub fn shard_of(device: &str, shards: usize) -> usize {
    debug_assert!(shards > 0, "at least one shard");
    (xxh3_64(device.as_bytes()) % shards.max(1) as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    const PINNED: u64 = 636_347_818_700_538_031;

    #[test]
    fn the_hash_is_stable_across_runs() {
        // Pinned values: if these change, stored fixes would be re-sharded.
        assert_eq!(xxh3_64(b"truck-1"), PINNED);
        assert_eq!(shard_of("truck-1", 1), 0);
        assert_eq!(shard_of("truck-1", 8), (PINNED % 8) as usize);
        let first: Vec<usize> = (0..100).map(|i| shard_of(&format!("dev-{i}"), 8)).collect();
        let second: Vec<usize> = (0..100).map(|i| shard_of(&format!("dev-{i}"), 8)).collect();
        assert_eq!(first, second);
    }

    #[test]
    fn devices_spread_over_all_shards() {
        let mut counts = [0usize; 4];
        for i in 0..10_000 {
            counts[shard_of(&format!("device-{i}"), 4)] += 1;
        }
        for count in counts {
            assert!((2_200..=2_800).contains(&count), "uneven spread: {counts:?}");
        }
    }
}
