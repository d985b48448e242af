//! The tile layers this server serves: the built-in `fences`, `positions`, `tracks` and
//! `countries` (the basemap, `geotrack import basemap`), then the operator's tables from
//! `[[tiles.tables]]`. A layer is named by a small [`LayerId`], so cache keys stay `Copy`.
//!
//! A table layer is described by the database (SRID from `geometry_columns`, property types from
//! `information_schema.columns`) the first time it is needed, and remembered; a description that
//! fails (database down, table missing) is retried on the next request and explains itself.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::OnceCell;

use crate::Error;
use crate::config::{TableLayerConfig, TilesConfig};
use crate::layer::{Field, FieldKind, Source, Table};

/// A layer's position in the [`Catalog`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LayerId(u16);

impl LayerId {
    pub const FENCES: Self = Self(0);
    pub const POSITIONS: Self = Self(1);
    pub const TRACKS: Self = Self(2);
    pub const COUNTRIES: Self = Self(3);
    pub const COUNTRY_LABELS: Self = Self(4);

    /// For per-layer arrays.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// The basemap table (`migrations/`, filled by `geotrack import basemap`).
pub const BASEMAP_TABLE: &str = "basemap_countries";

/// One layer.
#[derive(Debug)]
pub struct LayerInfo {
    pub name: String,
    pub description: String,
    /// Credit for the data (TileJSON `attribution`); empty for geotrack's own layers.
    pub attribution: String,
    pub minzoom: u8,
    pub maxzoom: u8,
    /// How long a cached tile lives; `None`: until a write touches it.
    pub ttl: Option<Duration>,
    /// Whether its changes are announced on `WS /ws/tiles` (not for layers that change every
    /// second: positions and tracks).
    pub announced: bool,
    /// How far from a tile, in tile widths, a change can still alter it.
    pub reach: f64,
    origin: Origin,
}

#[derive(Debug)]
enum Origin {
    Ready(Described),
    Table {
        config: Box<TableLayerConfig>,
        described: OnceCell<Described>,
    },
}

impl LayerInfo {
    /// A table layer, described by the database when first used.
    fn table(config: &TableLayerConfig) -> Self {
        Self {
            name: config.name.clone(),
            description: config.description.clone(),
            attribution: config.attribution.clone(),
            minzoom: config.minzoom,
            maxzoom: config.maxzoom,
            ttl: (config.ttl_s > 0).then(|| Duration::from_secs(config.ttl_s)),
            announced: true,
            reach: BUFFER,
            origin: Origin::Table {
                config: Box::new(config.clone()),
                described: OnceCell::new(),
            },
        }
    }
}

/// The MVT buffer as a fraction of a tile's width.
const BUFFER: f64 = crate::BUFFER_UNITS as f64 / 4096.0;

/// What it takes to build and describe a layer's tiles.
#[derive(Debug)]
pub struct Described {
    pub source: Source,
    pub sql: String,
    /// For layers of devices: the query for a reader limited to some devices.
    pub sql_for_devices: Option<String>,
    pub fields: Vec<Field>,
}

/// Every layer, built-in first.
#[derive(Debug)]
pub struct Catalog {
    layers: Vec<LayerInfo>,
    max_features: u32,
}

impl Catalog {
    /// The built-in layers plus `config.tables`; refuses duplicate or malformed names.
    pub fn new(config: &TilesConfig) -> Result<Self, Error> {
        let max_features = config.max_features.max(1);
        let builtin = |source: Source, name: &str, description: &str, ttl, reach| LayerInfo {
            name: name.to_owned(),
            description: description.to_owned(),
            attribution: String::new(),
            minzoom: 0,
            maxzoom: crate::MAX_ZOOM,
            ttl,
            // Positions and tracks change with every fix.
            announced: source == Source::Fences,
            reach,
            origin: Origin::Ready(Described {
                sql: source.sql(name, max_features),
                sql_for_devices: source.sql_for_devices(name, max_features),
                fields: source.fields(),
                source,
            }),
        };
        let mut layers = vec![
            builtin(
                Source::Fences,
                "fences",
                "Geofence areas (circles and corridors as polygons)",
                None,
                BUFFER,
            ),
            builtin(
                Source::Positions,
                "positions",
                "The latest position of each device",
                Some(Duration::from_secs(1)),
                BUFFER,
            ),
            // A fix one tile away pulls its device's line in.
            builtin(
                Source::Tracks,
                "tracks",
                "Position history as one line per device (?from=&to=, RFC 3339)",
                None,
                1.0 + BUFFER,
            ),
        ];
        layers.extend(basemap_layers().iter().map(LayerInfo::table));
        for table in &config.tables {
            check_table(table)?;
            if layers.iter().any(|l| l.name == table.name) {
                return Err(Error::Config(format!("layer {:?} is defined twice", table.name)));
            }
            layers.push(LayerInfo::table(table));
        }
        if layers.len() > usize::from(u16::MAX) {
            return Err(Error::Config("too many layers".into()));
        }
        Ok(Self { layers, max_features })
    }

    /// The layer of that name.
    pub fn find(&self, name: &str) -> Option<LayerId> {
        let index = self.layers.iter().position(|l| l.name == name)?;
        u16::try_from(index).ok().map(LayerId)
    }

    /// The layer of that name, or an error listing the layers.
    pub fn layer(&self, name: &str) -> Result<LayerId, Error> {
        self.find(name).ok_or_else(|| Error::UnknownLayer {
            name: name.to_owned(),
            known: self.names().join(", "),
        })
    }

    pub fn get(&self, id: LayerId) -> &LayerInfo {
        &self.layers[id.index()]
    }

    pub fn len(&self) -> usize {
        self.layers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// Every layer id, in catalog order.
    pub fn ids(&self) -> impl Iterator<Item = LayerId> + '_ {
        (0..self.layers.len()).filter_map(|i| u16::try_from(i).ok().map(LayerId))
    }

    /// Every layer name, for error messages.
    pub fn names(&self) -> Vec<&str> {
        self.layers.iter().map(|l| l.name.as_str()).collect()
    }

    /// The layer's SQL and fields, asking the database about a table layer the first time.
    /// Borrowed, not a counted reference: every tile request asks, and a count shared by all
    /// of them is a cache line the worker threads would pass back and forth.
    pub async fn describe(&self, pool: &PgPool, id: LayerId) -> Result<&Described, Error> {
        match &self.get(id).origin {
            Origin::Ready(described) => Ok(described),
            Origin::Table { config, described } => match described.get() {
                Some(described) => Ok(described),
                // Boxed: this future, kilobytes of sqlx state, would otherwise enlarge every
                // tile request's future (allocated and moved on each request) for a one-time
                // question.
                None => {
                    Box::pin(described.get_or_try_init(|| async {
                        let table = describe_table(pool, config).await?;
                        let source = Source::Table(table);
                        Ok(Described {
                            sql: source.sql(&config.name, self.max_features),
                            sql_for_devices: None,
                            fields: source.fields(),
                            source,
                        })
                    }))
                    .await
                }
            },
        }
    }
}

/// The basemap's layers over [`BASEMAP_TABLE`]: the countries, and one point per country for
/// its name (the `label` column PostgreSQL keeps, see `migrations/`). Replaced only by
/// `geotrack import basemap`, which notifies servers: cached until then.
fn basemap_layers() -> [TableLayerConfig; 2] {
    let layer = |name: &str, geometry: &str, description: &str| TableLayerConfig {
        name: name.into(),
        table: BASEMAP_TABLE.into(),
        geometry: Some(geometry.into()),
        columns: Some(vec!["name".into(), "iso_n3".into()]),
        id: Some("fid".into()),
        description: description.into(),
        attribution: "<a href=\"https://www.naturalearthdata.com/\">Natural Earth</a>".into(),
        minzoom: 0,
        maxzoom: crate::MAX_ZOOM,
        ttl_s: 0,
    };
    [
        layer(
            "countries",
            "geom",
            "Natural Earth countries (public domain), from geotrack import basemap",
        ),
        layer(
            "country_labels",
            "label",
            "Where the countries' names go: one point per country, inside its largest part",
        ),
    ]
}

/// A configured table layer's name and zoom range are usable.
fn check_table(table: &TableLayerConfig) -> Result<(), Error> {
    let valid = !table.name.is_empty()
        && table
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid {
        return Err(Error::Config(format!(
            "layer name {:?} must be letters, digits, '_' or '-'",
            table.name
        )));
    }
    if table.minzoom > table.maxzoom || table.maxzoom > crate::MAX_ZOOM {
        return Err(Error::Config(format!(
            "layer {:?} needs minzoom <= maxzoom <= {}",
            table.name,
            crate::MAX_ZOOM
        )));
    }
    Ok(())
}

/// Reads a configured table's geometry column, SRID and property columns from the database.
async fn describe_table(pool: &PgPool, config: &TableLayerConfig) -> Result<Table, Error> {
    let misconfigured = |reason: String| Error::Misconfigured {
        layer: config.name.clone(),
        reason,
    };
    let (schema, table) = config
        .table
        .split_once('.')
        .unwrap_or(("public", config.table.as_str()));
    let (geometry, srid) = geometry_column(pool, config, schema, table).await?;
    let columns: Vec<(String, String)> = sqlx::query_as(
        "SELECT column_name::text, udt_name::text FROM information_schema.columns
         WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
    )
    .bind(schema)
    .bind(table)
    .fetch_all(pool)
    .await
    .map_err(|source| describe_failed(config, source))?;
    let kind_of = |name: &str| {
        columns
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, udt)| udt.as_str())
            .ok_or_else(|| misconfigured(format!("{schema}.{table} has no column {name:?}")))
    };
    let wanted: Vec<String> = match &config.columns {
        Some(names) => names.clone(),
        None => columns
            .iter()
            .filter(|(name, udt)| *name != geometry && udt != "geometry" && Some(name) != config.id.as_ref())
            .map(|(name, _)| name.clone())
            .collect(),
    };
    let fields = wanted
        .iter()
        .map(|name| {
            Ok(Field {
                name: name.clone(),
                kind: FieldKind::of_postgres_type(kind_of(name)?),
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let id = match &config.id {
        Some(name) => Some((name.clone(), matches!(kind_of(name)?, "int2" | "int4" | "int8"))),
        None => None,
    };
    Ok(Table {
        schema: schema.to_owned(),
        table: table.to_owned(),
        geometry,
        srid,
        id,
        columns: fields,
    })
}

/// The table's geometry column (the configured one, or its only one) and its SRID.
async fn geometry_column(
    pool: &PgPool,
    config: &TableLayerConfig,
    schema: &str,
    table: &str,
) -> Result<(String, i32), Error> {
    let misconfigured = |reason: String| Error::Misconfigured {
        layer: config.name.clone(),
        reason,
    };
    let geometries: Vec<(String, i32)> = sqlx::query_as(
        "SELECT f_geometry_column::text, srid FROM geometry_columns
         WHERE f_table_schema = $1 AND f_table_name = $2 ORDER BY 1",
    )
    .bind(schema)
    .bind(table)
    .fetch_all(pool)
    .await
    .map_err(|source| describe_failed(config, source))?;
    let (geometry, srid) = match (&config.geometry, geometries.as_slice()) {
        (_, []) => {
            return Err(misconfigured(format!(
                "{schema}.{table} has no geometry column in geometry_columns (no such table or view, or not PostGIS)"
            )));
        }
        (None, [only]) => only.clone(),
        (None, many) => {
            let names: Vec<&str> = many.iter().map(|(n, _)| n.as_str()).collect();
            return Err(misconfigured(format!(
                "{schema}.{table} has several geometry columns ({}); set geometry",
                names.join(", ")
            )));
        }
        (Some(wanted), all) => all
            .iter()
            .find(|(n, _)| n == wanted)
            .cloned()
            .ok_or_else(|| misconfigured(format!("{schema}.{table} has no geometry column {wanted:?}")))?,
    };
    if srid <= 0 {
        return Err(misconfigured(format!(
            "{schema}.{table}.{geometry} has no SRID (constrain it, e.g. geometry(Point, 4326))"
        )));
    }
    Ok((geometry, srid))
}

fn describe_failed(config: &TableLayerConfig, source: sqlx::Error) -> Error {
    Error::Describe {
        layer: config.name.clone(),
        source: Arc::new(source),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(name: &str) -> TableLayerConfig {
        TableLayerConfig {
            name: name.into(),
            table: "roads".into(),
            geometry: None,
            columns: None,
            id: None,
            description: String::new(),
            attribution: String::new(),
            minzoom: 0,
            maxzoom: 14,
            ttl_s: 60,
        }
    }

    #[test]
    fn built_in_layers_come_first_and_tables_follow() {
        let config = TilesConfig {
            tables: vec![table("roads")],
            ..TilesConfig::default()
        };
        let catalog = Catalog::new(&config).expect("catalog");
        assert_eq!(
            catalog.names(),
            [
                "fences",
                "positions",
                "tracks",
                "countries",
                "country_labels",
                "roads"
            ]
        );
        assert_eq!(catalog.find("countries"), Some(LayerId::COUNTRIES));
        assert_eq!(catalog.find("country_labels"), Some(LayerId::COUNTRY_LABELS));
        let roads = catalog.get(catalog.find("roads").expect("roads"));
        assert_eq!((roads.maxzoom, roads.ttl), (14, Some(Duration::from_secs(60))));
        assert_eq!(catalog.find("nope"), None);
    }

    #[test]
    fn bad_table_layers_are_refused_with_a_reason() {
        for (bad, reason) in [
            (table("fences"), "defined twice"),
            (table("a b"), "letters, digits"),
            (
                TableLayerConfig {
                    minzoom: 15,
                    ..table("roads")
                },
                "minzoom <= maxzoom",
            ),
        ] {
            let config = TilesConfig {
                tables: vec![bad],
                ..TilesConfig::default()
            };
            let error = Catalog::new(&config).expect_err("refused").to_string();
            assert!(error.contains(reason), "{error}");
        }
    }
}
