//! Vector tiles for geotrack, everything but the routes:
//!
//! - [`TileCoord`]: XYZ tile coordinates, and which tiles a change touches;
//! - [`layer`]: the PostGIS SQL that builds a tile of each kind of layer with `ST_AsMVT`
//!   (fences, positions, tracks, any table);
//! - [`catalog`]: the layers served (built-in and `[[tiles.tables]]`) and their descriptions;
//! - [`cache`]: tiles kept compressed in every coding, with a per-thread [`front`], invalidated
//!   per write so a tile is never served stale; [`coding`]: content codings and validators;
//! - [`TileStore`]: catalog, cache and the database together, as the service uses them;
//! - [`notify`]: the `NOTIFY` channel that tells servers a layer changed; [`basemap`]: the
//!   countries layer's table.
//!
//! No HTTP framework: the `http` crate's header types are the only web types used here.

pub mod basemap;
pub mod cache;
pub mod catalog;
pub mod coding;
pub mod config;
mod coord;
mod error;
pub mod extent;
mod front;
mod hits;
pub mod layer;
pub mod notify;
mod store;
mod tile;
pub mod window;

pub use cache::{CacheStats, Change, Tile, TileCache, TileChange, TileKey};
pub use catalog::{Catalog, Described, LayerId, LayerInfo};
pub use coding::{Coding, Validators};
pub use config::{TableLayerConfig, TilesConfig};
pub use coord::{MAX_ZOOM, TileCoord};
pub use error::Error;
pub use layer::{BUFFER_UNITS, Field, FieldKind, Source, Table};
pub use store::TileStore;
pub use window::{Window, Windows};

/// The media type of a Mapbox Vector Tile.
pub const CONTENT_TYPE: &str = "application/vnd.mapbox-vector-tile";
