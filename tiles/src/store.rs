//! [`TileStore`]: a node's tiles, the catalog and cache with the database they are built from.
//! The service's tile route asks it for one layer's tile; whether it comes from the cache or
//! from `ST_AsMVT` is decided here.

use std::sync::Arc;

use fences::DeviceFilter;
use sqlx::PgPool;

use crate::cache::{Tile, TileCache, TileKey};
use crate::catalog::{Catalog, Described, LayerId};
use crate::window::{Window, Windows};
use crate::{Error, TileCoord, TilesConfig};

/// The catalog, the cache and the pool tiles are built from.
#[derive(Debug)]
pub struct TileStore {
    cache: TileCache,
    pool: PgPool,
    windows: Windows,
    basemap_style: Option<String>,
}

impl TileStore {
    /// The built-in layers plus the configured tables, with an empty cache.
    pub fn new(config: &TilesConfig, pool: PgPool) -> Result<Self, Error> {
        let catalog = Catalog::new(config)?;
        if let Some(url) = &config.basemap_style
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return Err(Error::Config(format!(
                "tiles.basemap_style {url:?} must be an http:// or https:// URL"
            )));
        }
        Ok(Self {
            cache: TileCache::new(config.cache_mb.saturating_mul(1 << 20), Arc::new(catalog)),
            pool,
            windows: Windows {
                default: std::time::Duration::from_secs(config.tracks_window_s.max(1)),
                max: std::time::Duration::from_secs(config.tracks_max_window_s.max(1)),
            },
            basemap_style: config.basemap_style.clone(),
        })
    }

    pub fn cache(&self) -> &TileCache {
        &self.cache
    }

    pub fn catalog(&self) -> &Catalog {
        self.cache.catalog()
    }

    pub fn windows(&self) -> &Windows {
        &self.windows
    }

    /// The outside basemap style maps draw under geotrack's layers, when one is configured.
    pub fn basemap_style(&self) -> Option<&str> {
        self.basemap_style.as_deref()
    }

    /// The layer's SQL and fields (a table layer is described by the database once).
    pub async fn describe(&self, layer: LayerId) -> Result<&Described, Error> {
        self.catalog().describe(&self.pool, layer).await
    }

    /// Where the layer's data lies (see [`crate::extent`]).
    pub async fn extent(&self, layer: LayerId) -> Result<Option<[f64; 4]>, Error> {
        let described = self.describe(layer).await?;
        crate::extent::of(&self.pool, described)
            .await
            .map_err(|source| Error::Describe {
                layer: self.catalog().get(layer).name.clone(),
                source: Arc::new(source),
            })
    }

    /// One layer's tile as a reader limited to `devices` (`None`: every device) may see it:
    /// cached unless it is a `tracks` tile over a window relative to now. `window` is the
    /// request's (given whenever it asks for `tracks`); only `tracks` uses it.
    pub async fn tile(
        &self,
        layer: LayerId,
        tile: TileCoord,
        window: Option<Window>,
        devices: Option<&DeviceFilter>,
    ) -> Result<Arc<Tile>, Error> {
        let described = self.describe(layer).await?;
        let window = window.filter(|_| layer == LayerId::TRACKS);
        // Only layers of devices depend on the reader.
        let (sql, devices) = match (&described.sql_for_devices, devices) {
            (Some(sql), Some(devices)) => (sql.as_str(), Some(devices)),
            _ => (described.sql.as_str(), None),
        };
        let pool = &self.pool;
        let build = || async move {
            let query = sqlx::query_scalar(sql)
                .bind(i32::from(tile.z))
                // ST_TileEnvelope takes integers; x and y stay below 2^22.
                .bind(i32::try_from(tile.x).unwrap_or(i32::MAX))
                .bind(i32::try_from(tile.y).unwrap_or(i32::MAX));
            let query = match window {
                Some(window) => query.bind(window.from).bind(window.to),
                None => query,
            };
            let query = match devices {
                Some(devices) => query.bind(devices.exact()).bind(devices.like_patterns()),
                None => query,
            };
            query.fetch_one(pool).await
        };
        let result = match window {
            Some(window) if !window.absolute => self.cache.build_uncached(layer, build).await,
            _ => {
                let key = TileKey {
                    layer,
                    tile,
                    window: window.map(|w| w.millis()),
                    devices: devices.map_or(0, DeviceFilter::key),
                };
                self.cache.get(key, build).await
            }
        };
        result.map_err(Error::Build)
    }
}
