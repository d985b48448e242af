//! The built-in layers and the SQL that builds one of their tiles.
//!
//! Every query takes `$1, $2, $3` = z, x, y and returns one `bytea` (empty when no feature
//! falls in the tile). The bbox filter transforms the tile envelope to 4326, never the column,
//! so the GiST index on `geom` is used. Geometry is clipped to Web Mercator's latitude range
//! before it is projected (a fence reaching a pole cannot be projected at ±90°). Feature ids
//! are stable 60-bit integers derived from the fence or device id, since MVT ids are integers.

/// A tile layer served at `/tiles/{name}/{z}/{x}/{y}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layer {
    /// Fence areas (circles and corridors as polygons) with `id`, `name`, `kind`.
    Fences,
    /// The live position of each device with `device`, `speed_mps`, `heading_deg` and the fix
    /// time `ts` (no age: it would change every second and defeat caching).
    Positions,
}

impl Layer {
    /// Every layer, for catalogs and error messages.
    pub const ALL: [Layer; 2] = [Layer::Fences, Layer::Positions];

    /// The layer's position in [`Layer::ALL`], for per-layer arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|layer| layer.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Fences => "fences",
            Self::Positions => "positions",
        }
    }

    /// What the layer shows, for catalogs and TileJSON.
    pub fn description(self) -> &'static str {
        match self {
            Self::Fences => "Geofence areas (circles and corridors as polygons)",
            Self::Positions => "The live position of each device",
        }
    }

    /// Feature properties and their types, as TileJSON `vector_layers[].fields` lists them.
    pub fn fields(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Self::Fences => &[("id", "String"), ("name", "String"), ("kind", "String")],
            Self::Positions => &[
                ("device", "String"),
                ("speed_mps", "Number"),
                ("heading_deg", "Number"),
                ("ts", "String"),
            ],
        }
    }

    /// The query building this layer's tile for `$1, $2, $3` = z, x, y.
    pub fn sql(self) -> &'static str {
        match self {
            Self::Fences => FENCES_SQL,
            Self::Positions => POSITIONS_SQL,
        }
    }
}

const FENCES_SQL: &str = "
WITH tile AS (
    SELECT ST_TileEnvelope($1, $2, $3) AS env,
           ST_Transform(ST_TileEnvelope($1, $2, $3), 4326) AS env4326
), features AS (
    SELECT ('x' || substr(md5(f.id), 1, 15))::bit(60)::bigint AS fid, f.id, f.name, f.kind,
           ST_AsMVTGeom(
               ST_Transform(ST_ClipByBox2D(f.geom, ST_MakeEnvelope(-180, -85.06, 180, 85.06, 4326)), 3857),
               tile.env, 4096, 64, true) AS geom
    FROM fences f, tile
    WHERE f.geom && tile.env4326
)
SELECT coalesce((SELECT ST_AsMVT(features, 'fences', 4096, 'geom', 'fid') FROM features
                 WHERE geom IS NOT NULL), ''::bytea)";

const POSITIONS_SQL: &str = "
WITH tile AS (
    SELECT ST_TileEnvelope($1, $2, $3) AS env,
           ST_Transform(ST_TileEnvelope($1, $2, $3), 4326) AS env4326
), features AS (
    SELECT ('x' || substr(md5(d.device), 1, 15))::bit(60)::bigint AS fid, d.device,
           d.speed_mps, d.heading_deg, to_char(d.ts AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS ts,
           ST_AsMVTGeom(
               ST_Transform(ST_ClipByBox2D(d.geom, ST_MakeEnvelope(-180, -85.06, 180, 85.06, 4326)), 3857),
               tile.env, 4096, 64, true) AS geom
    FROM devices_latest d, tile
    WHERE d.geom && tile.env4326
)
SELECT coalesce((SELECT ST_AsMVT(features, 'positions', 4096, 'geom', 'fid') FROM features
                 WHERE geom IS NOT NULL), ''::bytea)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_are_found_by_name() {
        for layer in Layer::ALL {
            assert_eq!(Layer::from_name(layer.name()), Some(layer));
            assert_eq!(Layer::ALL[layer.index()], layer);
            assert!(layer.sql().contains("ST_AsMVT"));
        }
        assert_eq!(Layer::from_name("roads"), None);
    }
}
