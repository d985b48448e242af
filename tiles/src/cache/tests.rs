//! The cache against its promises: one build for concurrent misses, nothing stale after a
//! write (also for builds that raced with one), TTLs, a bounded log that forgets no write.

use super::*;
use crate::{Coding, TileCoord};
use std::sync::atomic::AtomicUsize;
use tokio::sync::Notify;

fn key(z: u8, x: u32, y: u32) -> TileKey {
    TileKey {
        layer: LayerId::FENCES,
        tile: TileCoord { z, x, y },
        window: None,
        devices: 0,
    }
}

fn cache() -> TileCache {
    let catalog = Catalog::new(&crate::TilesConfig::default()).expect("catalog");
    TileCache::new(1 << 20, Arc::new(catalog))
}

/// A build whose tile reads `v<version>`.
fn versioned(
    version: &Arc<AtomicUsize>,
) -> impl Future<Output = Result<Vec<u8>, sqlx::Error>> + Send + use<> {
    let version = version.clone();
    async move { Ok(format!("v{}", version.load(Ordering::SeqCst)).into_bytes()) }
}

/// A box inside Paris's z10 tile.
fn paris_box() -> Bbox {
    Bbox::new(2.34, 48.84, 2.36, 48.86).expect("bbox")
}

#[tokio::test]
async fn concurrent_misses_share_one_build_and_hits_build_nothing() {
    let cache = cache();
    let builds = Arc::new(AtomicUsize::new(0));
    let build = || {
        let builds = builds.clone();
        async move {
            builds.fetch_add(1, Ordering::SeqCst);
            tokio::task::yield_now().await;
            Ok(b"tile".to_vec())
        }
    };
    let (a, b) = tokio::join!(
        cache.get(key(10, 518, 352), build),
        cache.get(key(10, 518, 352), build)
    );
    assert_eq!(
        a.expect("a").etags.get(Coding::Gzip),
        b.expect("b").etags.get(Coding::Gzip)
    );
    let again = cache.get(key(10, 518, 352), build).await.expect("hit");
    assert_eq!(&again.identity[..], b"tile");
    assert_eq!(builds.load(Ordering::SeqCst), 1);
    assert!(
        !again.gzip.is_empty() && again.gzip[..2] == [0x1f, 0x8b],
        "gzip kept with the tile"
    );
}

#[tokio::test]
async fn a_write_invalidates_the_tiles_it_touches_and_only_those() {
    let cache = cache();
    let version = Arc::new(AtomicUsize::new(1));
    let build = || versioned(&version);
    let paris = key(10, 518, 352);
    let elsewhere = key(10, 100, 100);
    assert_eq!(&cache.get(paris, build).await.expect("paris").identity[..], b"v1");
    assert_eq!(
        &cache.get(elsewhere, build).await.expect("elsewhere").identity[..],
        b"v1"
    );
    version.store(2, Ordering::SeqCst);
    cache.invalidate(LayerId::FENCES, Change::within(vec![paris_box()]));
    assert_eq!(&cache.get(paris, build).await.expect("paris").identity[..], b"v2");
    assert_eq!(
        &cache.get(elsewhere, build).await.expect("elsewhere").identity[..],
        b"v1",
        "untouched"
    );
    assert_eq!(
        &cache.get(key(3, 4, 2), build).await.expect("z3").identity[..],
        b"v2",
        "never cached before: built now"
    );
}

#[tokio::test]
async fn a_slow_build_that_read_before_a_write_is_neither_served_after_it_nor_kept() {
    let cache = cache();
    let version = Arc::new(AtomicUsize::new(1));
    let (reading, resume) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let slow = {
        let (version, reading, resume) = (version.clone(), reading.clone(), resume.clone());
        move || {
            let (version, reading, resume) = (version.clone(), reading.clone(), resume.clone());
            async move {
                let read = version.load(Ordering::SeqCst);
                reading.notify_one();
                if read == 1 {
                    resume.notified().await; // paused at the barrier after reading v1
                }
                Ok(format!("v{read}").into_bytes())
            }
        }
    };
    let paris = key(10, 518, 352);
    let first = {
        let (cache, slow) = (cache.clone(), slow.clone());
        tokio::spawn(async move { cache.get(paris, slow).await })
    };
    reading.notified().await;
    // The write commits and is recorded while the build holds v1.
    version.store(2, Ordering::SeqCst);
    cache.invalidate(LayerId::FENCES, Change::within(vec![paris_box()]));
    resume.notify_one();
    let served = first.await.expect("join").expect("tile");
    assert_eq!(
        &served.identity[..],
        b"v2",
        "the request waiting on the stale build gets a fresh one"
    );
    let next = cache.get(paris, slow).await.expect("tile");
    assert_eq!(&next.identity[..], b"v2", "and the stale bytes were not kept");
}

#[tokio::test]
async fn ingest_makes_stale_only_the_track_tiles_whose_window_it_falls_in() {
    let cache = cache();
    let version = Arc::new(AtomicUsize::new(1));
    let build = || versioned(&version);
    let track = |window| TileKey {
        layer: LayerId::TRACKS,
        tile: TileCoord {
            z: 10,
            x: 518,
            y: 352,
        },
        window: Some(window),
        devices: 0,
    };
    let (yesterday, today) = (track([0, 1_000]), track([1_000, 2_000]));
    for key in [yesterday, today] {
        assert_eq!(&cache.get(key, build).await.expect("tile").identity[..], b"v1");
    }
    version.store(2, Ordering::SeqCst);
    // A fix of 1.5 s after the epoch was written.
    cache.invalidate(LayerId::TRACKS, Change::during(1_500, 1_500));
    assert_eq!(
        &cache.get(yesterday, build).await.expect("tile").identity[..],
        b"v1"
    );
    assert_eq!(&cache.get(today, build).await.expect("tile").identity[..], b"v2");
}

#[tokio::test]
async fn a_long_log_merges_its_oldest_writes_instead_of_forgetting_them() {
    let cache = cache();
    let version = Arc::new(AtomicUsize::new(1));
    let build = || versioned(&version);
    let (paris, elsewhere) = (key(10, 518, 352), key(10, 100, 100));
    for key in [paris, elsewhere] {
        assert_eq!(&cache.get(key, build).await.expect("tile").identity[..], b"v1");
    }
    version.store(2, Ordering::SeqCst);
    // The write touching Paris is the oldest of more than the log holds.
    cache.invalidate(LayerId::FENCES, Change::within(vec![paris_box()]));
    for _ in 0..LOG_LEN + 10 {
        cache.invalidate(
            LayerId::FENCES,
            Change::within(vec![Bbox::new(100.0, -10.0, 100.1, -9.9).expect("bbox")]),
        );
    }
    assert_eq!(cache.log(LayerId::FENCES).len(), LOG_LEN);
    // The cache may have dropped Paris already; either way it is rebuilt, and elsewhere is not.
    assert_eq!(&cache.get(paris, build).await.expect("tile").identity[..], b"v2");
    assert_eq!(
        &cache.get(elsewhere, build).await.expect("tile").identity[..],
        b"v1"
    );
}

#[tokio::test]
async fn a_kept_tile_is_served_until_its_layers_ttl_runs_out_and_not_after() {
    let cache = cache();
    let version = Arc::new(AtomicUsize::new(1));
    let build = || versioned(&version);
    // Live positions keep for a second.
    let live = TileKey {
        layer: LayerId::POSITIONS,
        ..key(10, 518, 352)
    };
    let tile = cache.get(live, build).await.expect("tile");
    let again = cache.get(live, build).await.expect("hit");
    assert!(Arc::ptr_eq(&tile, &again), "served as kept within the TTL");
    assert!(cache.servable(&live, &tile, Instant::now));
    let later = || Instant::now() + Duration::from_millis(1_001);
    assert!(!cache.servable(&live, &tile, later), "past the TTL");
    // Fences have no TTL: only a write ends them.
    let fence = cache.get(key(10, 518, 352), build).await.expect("tile");
    let much_later = || Instant::now() + Duration::from_secs(86_400 * 365);
    assert!(cache.servable(&key(10, 518, 352), &fence, much_later));
}
