//! A built tile and its cache key: the MVT bytes kept plain, gzipped and brotli-compressed,
//! with a strong validator per coding, and what the cache needs to decide whether it may still
//! be served (the write generation it was built at, when its layer's TTL ends it).

use std::time::Instant;

use bytes::Bytes;

use crate::TileCoord;
use crate::catalog::{LayerId, LayerInfo};
use crate::coding::{Coding, Validators};

/// What a tile is cached under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TileKey {
    pub layer: LayerId,
    pub tile: TileCoord,
    /// `[from, to)` in Unix milliseconds, for layers drawn over a time window (`tracks`).
    pub window: Option<[i64; 2]>,
    /// Whose view of a layer of devices: 0 for every device, else the [`DeviceFilter::key`]
    /// of the reader's devices (a limited reader never gets a tile drawn for another).
    ///
    /// [`DeviceFilter::key`]: fences::DeviceFilter::key
    pub devices: u64,
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
    pub(crate) generation: u64,
    /// When the layer's TTL ends it: moka expires it then, and the front checks it.
    pub(crate) expires: Option<Instant>,
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
