//! The tile cache: built tiles kept compressed, with their ETag, and never served stale.
//!
//! Entries hold the tile as built and gzipped once (served as they are, never re-compressed),
//! weighed in bytes against a configured capacity. Concurrent misses for one tile share one
//! database query (`try_get_with`). The live `positions` layer lives one second; other layers
//! until a write touches them.
//!
//! Staleness: a fence write, once committed and before it is acknowledged, records its old and
//! new bounding boxes under a new generation of the layer ([`TileCache::invalidate`]). Every tile
//! remembers the generation current when its build started (its query saw every write up to
//! it). A tile is only served if no later write touches it (tile extent plus the MVT buffer), so
//! a slow build that read before a write, or that joined a build started before it, is rebuilt
//! rather than served or kept. Only the last [`LOG_LEN`] writes are remembered: a tile older
//! than all of them counts as stale. A predicate over cached keys also drops touched entries,
//! to free their memory; no tile is enumerated (a country covers billions of z22 tiles).

use std::collections::VecDeque;
use std::io::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use moka::future::Cache;
use tiles::{Layer, TileCoord};

/// Writes remembered per layer for staleness checks.
pub const LOG_LEN: usize = 1_024;
/// The MVT buffer (64 of 4096 units) as a fraction of a tile's width.
const BUFFER: f64 = 64.0 / 4096.0;
/// How long a `positions` tile lives.
const LIVE_TTL: Duration = Duration::from_secs(1);
/// Attempts to get a tile that no write has touched before building one without the cache.
const ATTEMPTS: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TileKey {
    pub layer: Layer,
    pub tile: TileCoord,
}

/// A built tile.
#[derive(Debug)]
pub struct Tile {
    /// The MVT bytes (empty: no feature).
    pub identity: Bytes,
    pub gzip: Bytes,
    /// A strong validator of the content.
    pub etag: String,
    /// The layer's generation when the build started.
    generation: u64,
}

impl Tile {
    fn build(layer: Layer, mvt: Vec<u8>, generation: u64) -> Self {
        let etag = format!("\"{}-{:016x}\"", layer.name(), xxhash_rust::xxh3::xxh3_64(&mvt));
        let gzip = if mvt.is_empty() {
            Bytes::new()
        } else {
            let mut encoder = GzEncoder::new(Vec::with_capacity(mvt.len() / 2), Compression::fast());
            // Writing into a Vec cannot fail.
            let _ = encoder.write_all(&mvt);
            Bytes::from(encoder.finish().unwrap_or_default())
        };
        Self {
            identity: Bytes::from(mvt),
            gzip,
            etag,
            generation,
        }
    }

    fn weight(&self) -> u32 {
        u32::try_from(self.identity.len() + self.gzip.len() + self.etag.len() + 64).unwrap_or(u32::MAX)
    }
}

/// Writes that touched a layer, newest last.
#[derive(Debug, Default)]
struct Changes {
    generation: u64,
    /// (generation, bounding boxes) of the latest writes.
    log: VecDeque<(u64, Arc<[[f64; 4]]>)>,
}

/// A committed write that changed tiles of `layer` within `bboxes`, for `WS /ws/tiles`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TileChange {
    pub layer: &'static str,
    /// `[min_lon, min_lat, max_lon, max_lat]` extents; refetch the tiles that meet them.
    pub bboxes: Arc<[[f64; 4]]>,
}

/// The cache; cheap to clone.
#[derive(Debug, Clone)]
pub struct TileCache {
    tiles: Cache<TileKey, Arc<Tile>>,
    changes: Arc<[Mutex<Changes>; Layer::ALL.len()]>,
    announce: tokio::sync::broadcast::Sender<TileChange>,
}

/// Why a tile could not be built.
pub type BuildError = Arc<sqlx::Error>;

impl TileCache {
    /// A cache holding up to `max_bytes` of tiles.
    pub fn new(max_bytes: u64) -> Self {
        let tiles = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_, tile: &Arc<Tile>| tile.weight())
            .expire_after(LayerExpiry)
            .support_invalidation_closures()
            .build();
        Self {
            tiles,
            changes: Arc::default(),
            announce: tokio::sync::broadcast::channel(256).0,
        }
    }

    fn changes(&self, layer: Layer) -> std::sync::MutexGuard<'_, Changes> {
        self.changes[layer.index()]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn generation(&self, layer: Layer) -> u64 {
        self.changes(layer).generation
    }

    /// Whether a write after the tile's build started touches it.
    fn is_stale(&self, key: &TileKey, tile: &Tile) -> bool {
        let changes = self.changes(key.layer);
        if tile.generation == changes.generation {
            return false;
        }
        match changes.log.front() {
            // Writes the log no longer holds may have touched it.
            Some((oldest, _)) if *oldest > tile.generation + 1 => true,
            None => true,
            Some(_) => changes
                .log
                .iter()
                .filter(|(g, _)| *g > tile.generation)
                .any(|(_, boxes)| boxes.iter().any(|b| key.tile.meets(*b, BUFFER))),
        }
    }

    /// The tile, from the cache or built by `build` (one build for concurrent misses).
    pub async fn get<F, Fut>(&self, key: TileKey, build: F) -> Result<Arc<Tile>, BuildError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Vec<u8>, sqlx::Error>> + Send,
    {
        for _ in 0..ATTEMPTS {
            let generation = self.generation(key.layer);
            let query = build();
            let tile = self
                .tiles
                .try_get_with(key, async move {
                    let mvt = query.await?;
                    Ok::<_, sqlx::Error>(Arc::new(Tile::build(key.layer, mvt, generation)))
                })
                .await?;
            if !self.is_stale(&key, &tile) {
                return Ok(tile);
            }
            self.tiles.invalidate(&key).await;
        }
        // Writes keep touching this tile: serve a fresh build without keeping it.
        let generation = self.generation(key.layer);
        let mvt = build().await.map_err(Arc::new)?;
        Ok(Arc::new(Tile::build(key.layer, mvt, generation)))
    }

    /// Records a committed write to `layer` covering `boxes` (`[min_lon, min_lat, max_lon,
    /// max_lat]`, old and new extents); call it before acknowledging the write.
    pub fn invalidate(&self, layer: Layer, boxes: Vec<[f64; 4]>) {
        let boxes: Arc<[[f64; 4]]> = boxes.into();
        {
            let mut changes = self.changes(layer);
            changes.generation += 1;
            let generation = changes.generation;
            changes.log.push_back((generation, boxes.clone()));
            if changes.log.len() > LOG_LEN {
                changes.log.pop_front();
            }
        }
        let _ = self.announce.send(TileChange {
            layer: layer.name(),
            bboxes: boxes.clone(),
        });
        // Frees touched entries; correctness does not depend on when this runs.
        let _ = self.tiles.invalidate_entries_if(move |key, _| {
            key.layer == layer && boxes.iter().any(|b| key.tile.meets(*b, BUFFER))
        });
    }

    /// Changes announced from now on (the receiver learns how many it missed if it lags).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<TileChange> {
        self.announce.subscribe()
    }

    /// Records a write that may have touched any tile of `layer` (a reload of every fence).
    pub fn invalidate_layer(&self, layer: Layer) {
        self.invalidate(layer, vec![[-180.0, -90.0, 180.0, 90.0]]);
    }
}

/// Live positions expire after a second; other layers stay until invalidated or evicted.
struct LayerExpiry;

impl moka::Expiry<TileKey, Arc<Tile>> for LayerExpiry {
    fn expire_after_create(&self, key: &TileKey, _: &Arc<Tile>, _: Instant) -> Option<Duration> {
        (key.layer == Layer::Positions).then_some(LIVE_TTL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::sync::Notify;

    fn key(z: u8, x: u32, y: u32) -> TileKey {
        TileKey {
            layer: Layer::Fences,
            tile: TileCoord { z, x, y },
        }
    }

    /// Paris at z10 and a box inside it.
    const PARIS: [f64; 4] = [2.34, 48.84, 2.36, 48.86];

    #[tokio::test]
    async fn concurrent_misses_share_one_build_and_hits_build_nothing() {
        let cache = TileCache::new(1 << 20);
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
        assert_eq!(a.expect("a").etag, b.expect("b").etag);
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
        let cache = TileCache::new(1 << 20);
        let version = Arc::new(AtomicUsize::new(1));
        let build = || {
            let version = version.clone();
            async move { Ok(format!("v{}", version.load(Ordering::SeqCst)).into_bytes()) }
        };
        let paris = key(10, 518, 352);
        let elsewhere = key(10, 100, 100);
        assert_eq!(&cache.get(paris, build).await.expect("paris").identity[..], b"v1");
        assert_eq!(
            &cache.get(elsewhere, build).await.expect("elsewhere").identity[..],
            b"v1"
        );
        version.store(2, Ordering::SeqCst);
        cache.invalidate(Layer::Fences, vec![PARIS]);
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
        let cache = TileCache::new(1 << 20);
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
        cache.invalidate(Layer::Fences, vec![PARIS]);
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
}
