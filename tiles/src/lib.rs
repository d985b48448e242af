//! Vector tiles for geotrack: XYZ tile coordinates ([`TileCoord`]) and the built-in layers
//! ([`Layer`]) with the PostGIS SQL that builds each tile with `ST_AsMVT`. The binary runs the
//! SQL, and caches tiles (`src/tile_cache.rs`, which asks [`TileCoord::meets`] which cached
//! tiles a write touches); this crate knows no HTTP and no connection.

mod coord;
mod layer;

pub use coord::{MAX_ZOOM, TileCoord, TileError};
pub use layer::Layer;

/// The media type of a Mapbox Vector Tile.
pub const CONTENT_TYPE: &str = "application/vnd.mapbox-vector-tile";
