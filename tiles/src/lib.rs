//! Vector tiles for geotrack: XYZ tile coordinates ([`TileCoord`]) and the PostGIS SQL that
//! builds a tile of each kind of layer ([`Source`]: fences, positions, tracks, any table) with
//! `ST_AsMVT`. The binary lists the layers, runs the SQL and caches tiles (`src/tile_cache.rs`,
//! which asks [`TileCoord::meets`] which cached tiles a write touches); this crate knows no
//! HTTP and no connection.

mod coord;
mod layer;

pub use coord::{MAX_ZOOM, TileCoord, TileError};
pub use layer::{BUFFER_UNITS, Field, FieldKind, Source, Table};

/// The media type of a Mapbox Vector Tile.
pub const CONTENT_TYPE: &str = "application/vnd.mapbox-vector-tile";
