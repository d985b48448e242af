//! What a tile layer draws from ([`Source`]) and the SQL that builds one of its tiles.
//!
//! Every query takes `$1, $2, $3` = z, x, y (the `tracks` layer also `$4, $5` = the time window,
//! `timestamptz`) and returns one `bytea`, empty when no feature falls in the tile. Layers of
//! devices (positions, tracks) also have a variant for a reader limited to some devices
//! ([`Source::sql_for_devices`]), taking the ids and `LIKE` patterns as two more `text[]`
//! parameters. The bbox
//! filter transforms the tile envelope to the data's SRID, never the column, so GiST indexes
//! are used. Geometry is clipped to the tile (plus the MVT buffer) before it is projected: a
//! z14 tile of a 60,000-vertex country then projects a handful of vertices, and nothing at a
//! pole is projected (Web Mercator is undefined at ±90°). Lines and polygons are simplified to
//! half a pixel of the tile's zoom, and every layer stops at `max_features` per tile, so z0–z4
//! tiles stay small. Feature ids are stable 60-bit integers derived from text ids (MVT ids are
//! integers).

/// The MVT buffer, in tile units of 4096: features this close to a tile appear in it too.
pub const BUFFER_UNITS: u32 = 64;

/// Where a layer's features come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// Fence areas (circles and corridors as polygons) with `id`, `name`, `kind`.
    Fences,
    /// The latest position of each device with `device`, `speed_mps`, `heading_deg` and the
    /// fix time `ts` (no age: it would change every second and defeat caching).
    Positions,
    /// Position history as one line per device within a time window, with `device`, `from`,
    /// `to` (first and last fix time) and `fixes`.
    Tracks,
    /// A PostGIS table or view.
    Table(Table),
}

/// A table or view with a geometry column, as the database describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub schema: String,
    pub table: String,
    pub geometry: String,
    /// From `geometry_columns`.
    pub srid: i32,
    /// The column giving feature ids, and whether it is an integer (else it is hashed).
    pub id: Option<(String, bool)>,
    /// Columns carried as feature properties.
    pub columns: Vec<Field>,
}

/// A feature property as TileJSON lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub kind: FieldKind,
}

/// TileJSON `vector_layers[].fields` types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    Number,
    String,
    Boolean,
}

impl FieldKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Number => "Number",
            Self::String => "String",
            Self::Boolean => "Boolean",
        }
    }

    /// The kind of a column of PostgreSQL type `udt_name` (from `information_schema.columns`).
    pub fn of_postgres_type(udt_name: &str) -> Self {
        match udt_name {
            "int2" | "int4" | "int8" | "float4" | "float8" | "numeric" | "oid" => Self::Number,
            "bool" => Self::Boolean,
            _ => Self::String,
        }
    }
}

impl Source {
    /// Feature properties and their types.
    pub fn fields(&self) -> Vec<Field> {
        use FieldKind::{Number, String};
        let field = |name: &str, kind| Field {
            name: name.to_owned(),
            kind,
        };
        match self {
            Self::Fences => vec![field("id", String), field("name", String), field("kind", String)],
            Self::Positions => vec![
                field("device", String),
                field("speed_mps", Number),
                field("heading_deg", Number),
                field("ts", String),
            ],
            Self::Tracks => vec![
                field("device", String),
                field("from", String),
                field("to", String),
                field("fixes", Number),
            ],
            Self::Table(table) => table.columns.clone(),
        }
    }

    /// The query building a tile of this source as MVT layer `name`, for `$1, $2, $3` = z, x, y
    /// (and `$4, $5` = from, to for [`Source::Tracks`]).
    pub fn sql(&self, name: &str, max_features: u32) -> String {
        self.query(name, max_features, None)
    }

    /// For a layer of devices, the query that draws only the devices a limited reader may see:
    /// the parameters of [`Self::sql`], then device ids (`text[]`) and `LIKE` patterns (`text[]`).
    /// `None` for layers that show no device.
    pub fn sql_for_devices(&self, name: &str, max_features: u32) -> Option<String> {
        let first = match self {
            Self::Positions => 4,
            Self::Tracks => 6,
            Self::Fences | Self::Table(_) => return None,
        };
        let filter = format!(
            "(t.device = ANY(${first}::text[]) OR t.device LIKE ANY(${}::text[]))",
            first + 1
        );
        Some(self.query(name, max_features, Some(&filter)))
    }

    /// The query, with `device_filter` (over alias `t`) added to the features' conditions.
    fn query(&self, name: &str, max_features: u32, device_filter: Option<&str>) -> String {
        let name = literal(name);
        let filter = device_filter.map(|f| format!(" AND {f}")).unwrap_or_default();
        match self {
            Self::Fences => layer_query(&SelectSpec {
                name: &name,
                srid: 4326,
                from: "fences t",
                id: "('x' || substr(md5(t.id), 1, 15))::bit(60)::bigint",
                columns: "t.id, t.name, t.kind",
                geometry: "t.geom",
                filter: &filter,
                max_features,
            }),
            Self::Positions => layer_query(&SelectSpec {
                name: &name,
                srid: 4326,
                from: "devices_latest t",
                id: "('x' || substr(md5(t.device), 1, 15))::bit(60)::bigint",
                columns: &format!("t.device, t.speed_mps, t.heading_deg, {} AS ts", iso_time("t.ts")),
                geometry: "t.geom",
                filter: &filter,
                max_features,
            }),
            Self::Tracks => tracks_query(&name, max_features, &filter),
            Self::Table(table) => {
                let columns: Vec<String> = table
                    .columns
                    .iter()
                    .map(|c| {
                        let column = format!("t.{}", ident(&c.name));
                        match c.kind {
                            // Timestamps, json, arrays...: their text form, which MVT can carry.
                            FieldKind::String => format!("{column}::text AS {}", ident(&c.name)),
                            _ => column,
                        }
                    })
                    .collect();
                let id = match &table.id {
                    Some((column, true)) => format!("t.{}::bigint", ident(column)),
                    Some((column, false)) => format!(
                        "('x' || substr(md5(t.{}::text), 1, 15))::bit(60)::bigint",
                        ident(column)
                    ),
                    None => "NULL::bigint".to_owned(),
                };
                layer_query(&SelectSpec {
                    name: &name,
                    srid: table.srid,
                    from: &format!("{}.{} t", ident(&table.schema), ident(&table.table)),
                    id: &id,
                    columns: &columns.join(", "),
                    geometry: &format!("t.{}", ident(&table.geometry)),
                    filter: &filter,
                    max_features,
                })
            }
        }
    }
}

/// The parts of a one-table layer query.
struct SelectSpec<'a> {
    /// The layer name as an SQL literal.
    name: &'a str,
    srid: i32,
    /// `FROM` item, aliased `t`.
    from: &'a str,
    id: &'a str,
    /// Property expressions (may be empty).
    columns: &'a str,
    geometry: &'a str,
    /// More conditions on the rows (` AND ...`), or empty.
    filter: &'a str,
    max_features: u32,
}

fn layer_query(spec: &SelectSpec<'_>) -> String {
    let SelectSpec {
        name,
        srid,
        from,
        id,
        columns,
        geometry,
        filter,
        max_features,
    } = spec;
    let columns = if columns.is_empty() {
        String::new()
    } else {
        format!("{columns}, ")
    };
    format!(
        "WITH tile AS ({tile_cte}
), features AS (
    SELECT {id} AS fid, {columns}
           ST_AsMVTGeom(ST_Simplify(ST_Transform(ST_ClipByBox2D({geometry}, tile.clip), 3857), {tolerance}),
                        tile.env, 4096, {BUFFER_UNITS}, true) AS geom
    FROM {from}, tile
    WHERE {geometry} && tile.clip{filter}
    LIMIT {max_features}
)
SELECT coalesce((SELECT ST_AsMVT(features, {name}, 4096, 'geom', 'fid') FROM features
                 WHERE geom IS NOT NULL), ''::bytea)",
        tile_cte = tile_cte(*srid, "64.0 / 4096"),
        tolerance = TOLERANCE,
    )
}

/// `tile.env` (the tile in 3857) and `tile.clip`: the tile widened by `margin` tile widths, in
/// `srid`. See [`widened`].
fn tile_cte(srid: i32, margin: &str) -> String {
    format!(
        "\n    SELECT ST_TileEnvelope($1, $2, $3) AS env, {} AS clip",
        widened(srid, margin)
    )
}

/// The tile widened by `margin` tile widths, in `srid`, kept within the Web Mercator world
/// first: past ±180° a transformed envelope wraps round (a tile at the antimeridian would
/// become a box spanning the globe but for the antimeridian itself), and at ±90° it cannot be
/// projected. The world's edge is kept a hair inside 180° so it cannot come back as -180°.
fn widened(srid: i32, margin: &str) -> String {
    format!(
        "ST_Transform(ST_ClipByBox2D(ST_TileEnvelope($1, $2, $3, margin => {margin}),
                      ST_MakeEnvelope(-20037508.34, -20037508.34, 20037508.34, 20037508.34, 3857)), {srid})"
    )
}

/// Half a pixel of a 4096-unit tile at zoom `$1`, in Web Mercator metres.
const TOLERANCE: &str = "(40075016.68 / (8192.0 * 2 ^ $1))";

/// Tracks: every device with a fix in the window within one tile width of this tile (so a hop
/// into the tile from a neighbour is drawn), as its whole line in the window, clipped to the
/// tile. A line is broken where a hop crosses the antimeridian (it would otherwise sweep the
/// globe). Devices are capped at `max_features`.
fn tracks_query(name: &str, max_features: u32, filter: &str) -> String {
    format!(
        "WITH tile AS ({tile_cte}
), near AS (
    SELECT {near} AS box
), devices AS (
    SELECT DISTINCT t.device FROM positions t, near
    WHERE t.geom && near.box AND t.ts >= $4 AND t.ts < $5{filter}
    ORDER BY t.device
    LIMIT {max_features}
), fixes AS (
    SELECT p.device, p.ts, p.geom,
           CASE WHEN abs(ST_X(p.geom) - lag(ST_X(p.geom)) OVER w) > 180 THEN 1 ELSE 0 END AS wraps
    FROM positions p JOIN devices USING (device)
    WHERE p.ts >= $4 AND p.ts < $5
    WINDOW w AS (PARTITION BY p.device ORDER BY p.ts)
), parts AS (
    SELECT device, ts, geom, sum(wraps) OVER (PARTITION BY device ORDER BY ts) AS part FROM fixes
), lines AS (
    SELECT device, min(ts) AS first, max(ts) AS last, count(*) AS fixes,
           ST_MakeLine(geom ORDER BY ts) AS line
    FROM parts GROUP BY device, part
), features AS (
    SELECT ('x' || substr(md5(l.device), 1, 15))::bit(60)::bigint AS fid, l.device,
           {from} AS \"from\", {to} AS \"to\", sum(l.fixes)::bigint AS fixes,
           ST_AsMVTGeom(ST_Simplify(ST_Transform(ST_ClipByBox2D(
               ST_Collect(l.line) FILTER (WHERE l.fixes > 1), tile.clip), 3857), {TOLERANCE}),
               tile.env, 4096, {BUFFER_UNITS}, true) AS geom
    FROM lines l, tile
    GROUP BY l.device, tile.env, tile.clip
)
SELECT coalesce((SELECT ST_AsMVT(features, {name}, 4096, 'geom', 'fid') FROM features
                 WHERE geom IS NOT NULL), ''::bytea)",
        tile_cte = tile_cte(4326, "64.0 / 4096"),
        near = widened(4326, "1.0"),
        from = iso_time("min(l.first)"),
        to = iso_time("max(l.last)"),
    )
}

/// A `timestamptz` expression as RFC 3339 UTC text.
fn iso_time(expression: &str) -> String {
    format!("to_char({expression} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
}

/// An SQL identifier, quoted.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// An SQL string literal.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roads() -> Table {
        Table {
            schema: "public".into(),
            table: "ro\"ads".into(),
            geometry: "geom".into(),
            srid: 2154,
            id: Some(("gid".into(), true)),
            columns: vec![
                Field {
                    name: "name".into(),
                    kind: FieldKind::String,
                },
                Field {
                    name: "lanes".into(),
                    kind: FieldKind::Number,
                },
            ],
        }
    }

    #[test]
    fn every_query_builds_one_mvt_with_the_layer_name_and_a_feature_cap() {
        for source in [
            Source::Fences,
            Source::Positions,
            Source::Tracks,
            Source::Table(roads()),
        ] {
            let sql = source.sql("it's", 777);
            assert!(
                sql.contains("ST_AsMVT(features, 'it''s', 4096, 'geom', 'fid')"),
                "{sql}"
            );
            assert!(sql.contains("LIMIT 777"), "{sql}");
        }
    }

    #[test]
    fn table_queries_quote_identifiers_and_filter_in_the_table_srid() {
        let sql = Source::Table(roads()).sql("roads", 10);
        assert!(sql.contains("FROM \"public\".\"ro\"\"ads\" t, tile"), "{sql}");
        assert!(sql.contains("20037508.34, 3857)), 2154)"), "{sql}");
        assert!(sql.contains("t.\"gid\"::bigint AS fid"), "{sql}");
        assert!(sql.contains("t.\"name\"::text AS \"name\", t.\"lanes\""), "{sql}");
        assert!(sql.contains("WHERE t.\"geom\" && tile.clip"), "{sql}");
    }

    #[test]
    fn tracks_take_a_time_window_and_fields_match_the_query() {
        let sql = Source::Tracks.sql("tracks", 10);
        assert!(sql.contains("p.ts >= $4 AND p.ts < $5"));
        for field in Source::Tracks.fields() {
            assert!(
                sql.contains(&format!("AS \"{}\"", field.name)) || sql.contains(&format!("l.{}", field.name))
            );
        }
    }

    #[test]
    fn postgres_types_map_to_tilejson_kinds() {
        assert_eq!(FieldKind::of_postgres_type("int8"), FieldKind::Number);
        assert_eq!(FieldKind::of_postgres_type("bool"), FieldKind::Boolean);
        assert_eq!(FieldKind::of_postgres_type("timestamptz"), FieldKind::String);
    }
}
