//! The crate's error: every way a tile request, a layer or the tile configuration can fail, with
//! messages meant for the client or the operator (the service maps each to a status).

use std::sync::Arc;

use crate::coord::MAX_ZOOM;

/// Errors of tile addressing, layers, windows, builds and configuration.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("{0:?} is not a tile coordinate (expected a non-negative integer)")]
    NotANumber(String),
    #[error("zoom {0} is outside 0..={MAX_ZOOM}")]
    ZoomOutOfRange(u32),
    #[error("tile {x}/{y} does not exist at zoom {z} (x and y must be below {limit})")]
    OutOfRange { z: u8, x: u32, y: u32, limit: u64 },
    #[error("no layer {name:?}; layers: {known}")]
    UnknownLayer { name: String, known: String },
    /// A `tracks` time window that is empty or longer than allowed.
    #[error("{0}")]
    Window(String),
    #[error("layer {layer:?} is misconfigured: {reason}")]
    Misconfigured { layer: String, reason: String },
    #[error("cannot describe layer {layer:?}: {source}")]
    Describe { layer: String, source: Arc<sqlx::Error> },
    /// The database could not build a tile (shared by every request that waited for it).
    #[error("cannot build the tile: {0}")]
    Build(Arc<sqlx::Error>),
    #[error("tiles.tables: {0}")]
    Config(String),
    /// A basemap file that is not a FeatureCollection of named (multi)polygons.
    #[error("basemap: {0}")]
    BasemapInput(String),
    #[error("basemap: {0} (is the database migrated?)")]
    BasemapDatabase(Arc<sqlx::Error>),
}

impl Error {
    /// Whether the request itself is at fault (a tile or window that does not exist).
    pub fn is_bad_request(&self) -> bool {
        matches!(
            self,
            Self::NotANumber(_) | Self::ZoomOutOfRange(_) | Self::OutOfRange { .. } | Self::Window(_)
        )
    }
}
