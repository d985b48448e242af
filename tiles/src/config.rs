//! The `[tiles]` section of the service's configuration: cache size, feature cap, `tracks`
//! windows, the operator's tables served as layers (`[[tiles.tables]]`) and an outside basemap
//! style for map clients (`basemap_style`).

use serde::{Deserialize, Serialize};

/// Vector tiles.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TilesConfig {
    /// Memory for cached tiles (compressed and plain), in MiB.
    pub cache_mb: u64,
    /// Features per layer per tile at most (keeps z0–z4 tiles small).
    pub max_features: u32,
    /// The `tracks` window when a request names no `from` (the last this many seconds).
    pub tracks_window_s: u64,
    /// The longest `tracks` window a request may ask for, in seconds.
    pub tracks_max_window_s: u64,
    /// Operator tables and views served as layers.
    pub tables: Vec<TableLayerConfig>,
    /// A MapLibre style (an `http(s)://` URL) to draw under geotrack's layers instead of the
    /// `countries` basemap. `/styles/default.json` names it in its metadata
    /// (`geotrack:basemap`); the web map loads it and adds geotrack's own layers on top.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub basemap_style: Option<String>,
}

impl Default for TilesConfig {
    fn default() -> Self {
        Self {
            cache_mb: 256,
            max_features: 20_000,
            tracks_window_s: 3_600,
            tracks_max_window_s: 7 * 86_400,
            tables: Vec::new(),
            basemap_style: None,
        }
    }
}

/// A PostGIS table or view served as the tile layer `name` (`[[tiles.tables]]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableLayerConfig {
    /// The layer name in URLs and in tiles: letters, digits, `_` and `-`.
    pub name: String,
    /// `schema.table` or `table` (schema `public`).
    pub table: String,
    /// The geometry column; may be left out when the table has only one.
    pub geometry: Option<String>,
    /// Columns carried as properties; all columns but the geometry when left out.
    pub columns: Option<Vec<String>>,
    /// A column of feature ids (integers are used as they are, other types are hashed).
    pub id: Option<String>,
    #[serde(default)]
    pub description: String,
    /// Credit for the data, shown by map clients (TileJSON `attribution`; HTML allowed).
    #[serde(default)]
    pub attribution: String,
    #[serde(default)]
    pub minzoom: u8,
    #[serde(default = "max_zoom")]
    pub maxzoom: u8,
    /// How long a cached tile of this layer lives, in seconds (writes to an operator table do
    /// not go through geotrack: invalidate with `POST /tiles/{name}/invalidate`, or
    /// `NOTIFY geotrack_tiles, '{name}'` from a trigger).
    #[serde(default = "table_ttl_s")]
    pub ttl_s: u64,
}

fn max_zoom() -> u8 {
    crate::MAX_ZOOM
}

fn table_ttl_s() -> u64 {
    60
}
