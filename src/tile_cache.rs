//! The tile cache: built tiles kept compressed, with their ETag, and never served stale.
//!
//! Entries hold the tile as built, gzipped and brotli-compressed once (served as they are,
//! never re-compressed), weighed in bytes against a configured capacity. Concurrent misses for one tile share one
//! database query (`try_get_with`). A layer with a TTL (live `positions`: one second; operator
//! tables: configured) expires by it; the others live until a write touches them.
//!
//! Staleness: a write, once committed and before it is acknowledged, records what it touched
//! ([`Change`]: old and new bounding boxes of a fence; the time range of ingested fixes for
//! `tracks`) under a new generation of its layer ([`TileCache::invalidate`]). Every tile
//! remembers the generation current when its build started (its query saw every write up to
//! it). A tile is only served if no later write touches it (its extent widened by the layer's
//! reach, and its time window), so a slow build that read before a write, or that joined a
//! build started before it, is rebuilt rather than served or kept. The log keeps [`LOG_LEN`]
//! entries; beyond that the two oldest merge into one covering both (conservatively), so no
//! write is ever forgotten. A predicate over cached keys also drops entries a fence or table
//! write touches, to free their memory; no tile is enumerated (a country covers billions of z22
//! tiles).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use moka::future::Cache;
use tiles::TileCoord;

use crate::content_coding::{Coding, Validators};
use crate::tile_front::Front;
use crate::tile_layers::{Catalog, LayerId, LayerInfo};

/// Log entries kept per layer for staleness checks (older ones are merged).
pub const LOG_LEN: usize = 1_024;
/// Boxes a merged log entry keeps before it counts as "everywhere".
const MERGED_BOXES: usize = 64;
/// Attempts to get a tile that no write has touched before building one without the cache.
const ATTEMPTS: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TileKey {
    pub layer: LayerId,
    pub tile: TileCoord,
    /// `[from, to)` in Unix milliseconds, for layers drawn over a time window (`tracks`).
    pub window: Option<[i64; 2]>,
}

/// What a committed write touched. `None` parts mean "all": a change with neither touches every
/// tile of its layer.
#[derive(Debug, Clone, Default)]
pub struct Change {
    /// `[min_lon, min_lat, max_lon, max_lat]` extents.
    pub boxes: Option<Arc<[[f64; 4]]>>,
    /// `[first, last]` fix times, in Unix milliseconds.
    pub times: Option<[i64; 2]>,
}

impl Change {
    /// A change within these extents.
    pub fn within(boxes: Vec<[f64; 4]>) -> Self {
        Self {
            boxes: Some(boxes.into()),
            times: None,
        }
    }

    fn touches(&self, key: &TileKey, reach: f64) -> bool {
        let in_time = match (self.times, key.window) {
            (Some([first, last]), Some([from, to])) => first < to && last >= from,
            _ => true,
        };
        in_time
            && self
                .boxes
                .as_ref()
                .is_none_or(|boxes| boxes.iter().any(|b| key.tile.meets(*b, reach)))
    }

    /// One change covering both.
    fn merge(&self, other: &Self) -> Self {
        let boxes = match (&self.boxes, &other.boxes) {
            (Some(a), Some(b)) if a.len() + b.len() <= MERGED_BOXES => {
                Some(a.iter().chain(b.iter()).copied().collect())
            }
            _ => None,
        };
        let times = match (self.times, other.times) {
            (Some([a0, a1]), Some([b0, b1])) => Some([a0.min(b0), a1.max(b1)]),
            _ => None,
        };
        Self { boxes, times }
    }
}

/// A built tile.
#[derive(Debug)]
pub struct Tile {
    /// The MVT bytes (empty: no feature).
    pub identity: Bytes,
    pub gzip: Bytes,
    pub brotli: Bytes,
    /// Its `ETag` in each coding, ready to send.
    pub etags: Validators,
    /// The layer's generation when the build started.
    generation: u64,
    /// When the layer's TTL ends it: moka expires it then, and the front checks it.
    expires: Option<Instant>,
}

impl Tile {
    pub(crate) fn build(layer: &LayerInfo, mvt: Vec<u8>, generation: u64) -> Self {
        let expires = layer.ttl.map(|ttl| Instant::now() + ttl);
        // The catalog allows only letters, digits, '_' and '-' in layer names.
        let etags = Validators::new(&format!(
            "{}-{:016x}",
            layer.name,
            xxhash_rust::xxh3::xxh3_64(&mvt)
        ));
        let compressed = |coding: Coding| {
            if mvt.is_empty() {
                Bytes::new()
            } else {
                Bytes::from(coding.encode(&mvt))
            }
        };
        Self {
            gzip: compressed(Coding::Gzip),
            brotli: compressed(Coding::Brotli),
            identity: Bytes::from(mvt),
            etags,
            generation,
            expires,
        }
    }

    /// The tile in `coding`.
    pub fn body(&self, coding: Coding) -> &Bytes {
        match coding {
            Coding::Identity => &self.identity,
            Coding::Gzip => &self.gzip,
            Coding::Brotli => &self.brotli,
        }
    }

    /// Bytes it holds, about.
    pub(crate) fn weight(&self) -> usize {
        self.identity.len() + self.gzip.len() + self.brotli.len() + self.etags.size() + 96
    }
}

/// Writes that touched a layer.
#[derive(Debug, Default)]
struct Changes {
    /// The newest write's generation. Set under `log`'s lock, after its entry is logged; read
    /// without it, so a hit that no write followed takes no lock.
    generation: AtomicU64,
    /// (generation of its newest write, change) of every write since start, newest last; the
    /// oldest entry may stand for several merged writes.
    log: Mutex<VecDeque<(u64, Change)>>,
}

/// A committed write that changed tiles of `layer` within `bboxes`, for `WS /ws/tiles`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TileChange {
    pub layer: Arc<str>,
    /// `[min_lon, min_lat, max_lon, max_lat]` extents; refetch the tiles that meet them.
    pub bboxes: Arc<[[f64; 4]]>,
}

/// The cache; cheap to clone.
#[derive(Debug, Clone)]
pub struct TileCache {
    tiles: Cache<TileKey, Arc<Tile>>,
    /// Tiles each worker thread served lately, in front of `tiles`.
    front: Arc<Front>,
    catalog: Arc<Catalog>,
    changes: Arc<[Changes]>,
    announce: tokio::sync::broadcast::Sender<TileChange>,
}

/// Why a tile could not be built.
pub type BuildError = Arc<sqlx::Error>;

/// The whole world, as a change extent.
const WORLD: [f64; 4] = [-180.0, -90.0, 180.0, 90.0];

impl TileCache {
    /// A cache of the catalog's layers holding up to `max_bytes` of tiles.
    pub fn new(max_bytes: u64, catalog: Arc<Catalog>) -> Self {
        let tiles = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_, tile: &Arc<Tile>| u32::try_from(tile.weight()).unwrap_or(u32::MAX))
            .expire_after(TileExpiry)
            .support_invalidation_closures()
            .build();
        Self {
            tiles,
            front: Arc::new(Front::new(max_bytes)),
            changes: catalog.ids().map(|_| Changes::default()).collect(),
            catalog,
            announce: tokio::sync::broadcast::channel(256).0,
        }
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The log of writes to `layer`, locked.
    fn log(&self, layer: LayerId) -> std::sync::MutexGuard<'_, VecDeque<(u64, Change)>> {
        self.changes[layer.index()]
            .log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The generation of the newest write to `layer`: a query started after reading it sees
    /// that write (it was committed before it was logged).
    fn generation(&self, layer: LayerId) -> u64 {
        self.changes[layer.index()].generation.load(Ordering::Acquire)
    }

    /// Whether a write after the tile's build started touches it.
    fn is_stale(&self, key: &TileKey, tile: &Tile) -> bool {
        if tile.generation == self.generation(key.layer) {
            return false;
        }
        let reach = self.catalog.get(key.layer).reach;
        self.log(key.layer)
            .iter()
            .rev()
            .take_while(|(g, _)| *g > tile.generation)
            .any(|(_, change)| change.touches(key, reach))
    }

    /// Whether `tile`, kept under `key`, may be served at `now`: its TTL has not run out and
    /// no write after its build touched it.
    fn servable(&self, key: &TileKey, tile: &Tile, now: impl FnOnce() -> Instant) -> bool {
        tile.expires.is_none_or(|at| now() < at) && !self.is_stale(key, tile)
    }

    /// The tile, from the cache or built by `build` (one build for concurrent misses).
    pub async fn get<F, Fut>(&self, key: TileKey, build: F) -> Result<Arc<Tile>, BuildError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Vec<u8>, sqlx::Error>> + Send,
    {
        if let Some(tile) = self.front.get(&key)
            && self.servable(&key, &tile, Instant::now)
        {
            return Ok(tile);
        }
        if let Some(tile) = self.tiles.get(&key).await
            && !self.is_stale(&key, &tile)
        {
            self.front.insert(key, &tile);
            return Ok(tile);
        }
        // Boxed: a build holds kilobytes of query state, which would otherwise enlarge the
        // future of every request, hits included (it is allocated and moved on each one).
        Box::pin(self.get_or_build(key, build)).await
    }

    /// [`Self::get`] past a miss or a stale hit.
    async fn get_or_build<F, Fut>(&self, key: TileKey, build: F) -> Result<Arc<Tile>, BuildError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Vec<u8>, sqlx::Error>> + Send,
    {
        for _ in 0..ATTEMPTS {
            let generation = self.generation(key.layer);
            let query = build();
            let layer = self.catalog.get(key.layer);
            let tile = self
                .tiles
                .try_get_with(key, async move {
                    let mvt = query.await?;
                    Ok::<_, sqlx::Error>(Arc::new(Tile::build(layer, mvt, generation)))
                })
                .await?;
            if !self.is_stale(&key, &tile) {
                self.front.insert(key, &tile);
                return Ok(tile);
            }
            self.tiles.invalidate(&key).await;
        }
        // Writes keep touching this tile: serve a fresh build without keeping it.
        self.build_uncached(key.layer, build).await
    }

    /// A tile built now and not kept (for requests whose answer changes with the clock).
    pub async fn build_uncached<F, Fut>(&self, layer: LayerId, build: F) -> Result<Arc<Tile>, BuildError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Vec<u8>, sqlx::Error>> + Send,
    {
        let generation = self.generation(layer);
        // Boxed for the reason given in `get`.
        let mvt = Box::pin(build()).await.map_err(Arc::new)?;
        Ok(Arc::new(Tile::build(self.catalog.get(layer), mvt, generation)))
    }

    /// Records a committed write to `layer`; call it before acknowledging the write. Fence and
    /// table changes are announced on `WS /ws/tiles` and free the entries they touch at once.
    pub fn invalidate(&self, layer: LayerId, change: Change) {
        {
            let mut log = self.log(layer);
            let generation = self.generation(layer) + 1;
            log.push_back((generation, change.clone()));
            if log.len() > LOG_LEN
                && let (Some((_, oldest)), Some((newer, next))) = (log.pop_front(), log.pop_front())
            {
                log.push_front((newer, oldest.merge(&next)));
            }
            self.changes[layer.index()]
                .generation
                .store(generation, Ordering::Release);
        }
        let info = self.catalog.get(layer);
        if !info.announced {
            // Tracks change with every ingested batch: stale entries are dropped when read.
            return;
        }
        let bboxes = change.boxes.clone().unwrap_or_else(|| Arc::new([WORLD]));
        let _ = self.announce.send(TileChange {
            layer: info.name.as_str().into(),
            bboxes,
        });
        let reach = info.reach;
        // Frees touched entries; correctness does not depend on when this runs.
        let _ = self
            .tiles
            .invalidate_entries_if(move |key, _| key.layer == layer && change.touches(key, reach));
    }

    /// What the ingest pipeline calls with every committed batch (see [`Self::fixes_written`]).
    pub fn commit_hook(&self) -> tracker::CommitHook {
        let tiles = self.clone();
        Arc::new(move |fixes| tiles.fixes_written(fixes))
    }

    /// Records ingested fixes (committed, not yet acknowledged) for the `tracks` layer.
    pub fn fixes_written(&self, fixes: &[&tracker::Fix]) {
        let times = fixes.iter().map(|f| f.ts.timestamp_millis());
        let (Some(first), Some(last)) = (times.clone().min(), times.max()) else {
            return;
        };
        self.invalidate(
            LayerId::TRACKS,
            Change {
                boxes: None,
                times: Some([first, last]),
            },
        );
    }

    /// Changes announced from now on (the receiver learns how many it missed if it lags).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<TileChange> {
        self.announce.subscribe()
    }

    /// Records a write that may have touched any tile of `layer` (a reload of every fence).
    pub fn invalidate_layer(&self, layer: LayerId) {
        self.invalidate(layer, Change::default());
    }
}

/// Tiles of a layer with a TTL expire when the tile says ([`Tile::build`] set it from the
/// layer's TTL, which the front checks too); other layers stay until invalidated or evicted.
struct TileExpiry;

impl moka::Expiry<TileKey, Arc<Tile>> for TileExpiry {
    fn expire_after_create(&self, _: &TileKey, tile: &Arc<Tile>, created: Instant) -> Option<Duration> {
        tile.expires.map(|at| at.saturating_duration_since(created))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use tokio::sync::Notify;

    fn key(z: u8, x: u32, y: u32) -> TileKey {
        TileKey {
            layer: LayerId::FENCES,
            tile: TileCoord { z, x, y },
            window: None,
        }
    }

    fn cache() -> TileCache {
        let catalog = Catalog::new(&crate::config::TilesConfig::default()).expect("catalog");
        TileCache::new(1 << 20, Arc::new(catalog))
    }

    /// A build whose tile reads `v<version>`.
    fn versioned(
        version: &Arc<AtomicUsize>,
    ) -> impl Future<Output = Result<Vec<u8>, sqlx::Error>> + Send + use<> {
        let version = version.clone();
        async move { Ok(format!("v{}", version.load(Ordering::SeqCst)).into_bytes()) }
    }

    /// Paris at z10 and a box inside it.
    const PARIS: [f64; 4] = [2.34, 48.84, 2.36, 48.86];

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
        cache.invalidate(LayerId::FENCES, Change::within(vec![PARIS]));
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
        cache.invalidate(LayerId::FENCES, Change::within(vec![PARIS]));
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
        };
        let (yesterday, today) = (track([0, 1_000]), track([1_000, 2_000]));
        for key in [yesterday, today] {
            assert_eq!(&cache.get(key, build).await.expect("tile").identity[..], b"v1");
        }
        version.store(2, Ordering::SeqCst);
        let at = chrono::DateTime::from_timestamp_millis(1_500).expect("time");
        let fix = tracker::Fix {
            device: "bus-1".into(),
            ts: at,
            lon: 2.35,
            lat: 48.85,
            speed_mps: None,
            heading_deg: None,
            accuracy_m: None,
            altitude_m: None,
            battery: None,
            attrs: None,
            received_at: at,
        };
        cache.fixes_written(&[&fix]);
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
        cache.invalidate(LayerId::FENCES, Change::within(vec![PARIS]));
        for _ in 0..LOG_LEN + 10 {
            cache.invalidate(LayerId::FENCES, Change::within(vec![[100.0, -10.0, 100.1, -9.9]]));
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
}
