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

use fences::Bbox;
use moka::future::Cache;

use crate::catalog::{Catalog, LayerId};
use crate::front::Front;
use crate::hits::ThreadCounter;
pub use crate::tile::{Tile, TileKey};

/// Log entries kept per layer for staleness checks (older ones are merged).
pub const LOG_LEN: usize = 1_024;
/// Boxes a merged log entry keeps before it counts as "everywhere".
const MERGED_BOXES: usize = 64;
/// Attempts to get a tile that no write has touched before building one without the cache.
const ATTEMPTS: usize = 3;

/// What a committed write touched. `None` parts mean "all": a change with neither touches every
/// tile of its layer.
#[derive(Debug, Clone, Default)]
pub struct Change {
    pub boxes: Option<Arc<[Bbox]>>,
    /// `[first, last]` fix times, in Unix milliseconds.
    pub times: Option<[i64; 2]>,
}

impl Change {
    /// A change within these extents.
    pub fn within(boxes: Vec<Bbox>) -> Self {
        Self {
            boxes: Some(boxes.into()),
            times: None,
        }
    }

    /// A change of history between these fix times (Unix milliseconds), anywhere.
    pub fn during(first_ms: i64, last_ms: i64) -> Self {
        Self {
            boxes: None,
            times: Some([first_ms, last_ms]),
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
                .is_none_or(|boxes| boxes.iter().any(|b| key.tile.meets(b, reach)))
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
    /// Extents; refetch the tiles that meet them.
    pub bboxes: Arc<[Bbox]>,
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
    /// Tiles served from the cache (its front or moka).
    hits: Arc<ThreadCounter>,
    /// Tiles built from the database (misses, stale hits and uncached builds).
    built: Arc<AtomicU64>,
    /// Tiles dropped to make room.
    evicted: Arc<AtomicU64>,
}

/// What the cache holds and has done, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Tiles served from the cache since start.
    pub hits: u64,
    /// Tiles built from the database since start.
    pub built: u64,
    /// Tiles kept (approximate: the cache counts lazily).
    pub entries: u64,
    /// Bytes of the tiles kept (all their encodings).
    pub bytes: u64,
    /// Tiles dropped to make room since start.
    pub evicted: u64,
}

/// Why a tile could not be built.
pub type BuildError = Arc<sqlx::Error>;

impl TileCache {
    /// A cache of the catalog's layers holding up to `max_bytes` of tiles.
    pub fn new(max_bytes: u64, catalog: Arc<Catalog>) -> Self {
        let evicted = Arc::new(AtomicU64::new(0));
        let evictions = evicted.clone();
        let tiles = Cache::builder()
            .max_capacity(max_bytes)
            .eviction_listener(move |_, _, cause| {
                if cause == moka::notification::RemovalCause::Size {
                    evictions.fetch_add(1, Ordering::Relaxed);
                }
            })
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
            hits: Arc::default(),
            built: Arc::default(),
            evicted,
        }
    }

    /// What the cache holds and has built.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.sum(),
            built: self.built.load(Ordering::Relaxed),
            entries: self.tiles.entry_count(),
            bytes: self.tiles.weighted_size(),
            evicted: self.evicted.load(Ordering::Relaxed),
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
            self.hits.add_one();
            return Ok(tile);
        }
        if let Some(tile) = self.tiles.get(&key).await
            && !self.is_stale(&key, &tile)
        {
            self.hits.add_one();
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
            let builds = self.built.clone();
            let tile = self
                .tiles
                .try_get_with(key, async move {
                    let mvt = query.await?;
                    builds.fetch_add(1, Ordering::Relaxed);
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
        self.built.fetch_add(1, Ordering::Relaxed);
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
        let bboxes = change.boxes.clone().unwrap_or_else(|| Arc::new([Bbox::WORLD]));
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
mod tests;
