//! `geotrack import basemap [FILE]`: loads countries into `basemap_countries`, the table behind
//! the `countries` and `country_labels` tile layers, replacing what was there in one transaction.
//!
//! The input is planar GeoJSON as `scripts/prepare-basemap.py` writes it from the npm package
//! `world-atlas` (Natural Earth, public domain): rings are continuous, so a country crossing the
//! antimeridian has longitudes beyond ±180. PostGIS splits them back into [-180, 180]
//! (`ST_WrapX`) and repairs what the split or the source leaves invalid. Running servers are
//! told through `NOTIFY geotrack_tiles, 'countries'` (and `'country_labels'`) and drop the
//! layers' cached tiles.

use std::sync::Arc;

use serde_json::Value;
use sqlx::PgPool;

use crate::Error;

fn database(error: sqlx::Error) -> Error {
    Error::BasemapDatabase(Arc::new(error))
}

/// Replaces the basemap with the countries of `geojson` (a FeatureCollection of `Polygon` and
/// `MultiPolygon` features with a `name` property); returns how many were stored.
pub async fn import(pool: &PgPool, geojson: &[u8]) -> Result<usize, Error> {
    let collection: Value =
        serde_json::from_slice(geojson).map_err(|e| Error::BasemapInput(format!("not JSON: {e}")))?;
    let features = collection["features"]
        .as_array()
        .ok_or_else(|| Error::BasemapInput("not a GeoJSON FeatureCollection".into()))?;
    let mut tx = pool.begin().await.map_err(database)?;
    sqlx::query("DELETE FROM basemap_countries")
        .execute(&mut *tx)
        .await
        .map_err(database)?;
    for (index, feature) in features.iter().enumerate() {
        let geometry = &feature["geometry"];
        if !matches!(geometry["type"].as_str(), Some("Polygon" | "MultiPolygon")) {
            return Err(Error::BasemapInput(format!(
                "feature {index}: not a Polygon or MultiPolygon"
            )));
        }
        let name = feature["properties"]["name"]
            .as_str()
            .ok_or_else(|| Error::BasemapInput(format!("feature {index}: no properties.name")))?;
        let iso = feature["id"]
            .as_str()
            .map(str::to_owned)
            .or_else(|| feature["id"].as_i64().map(|n| format!("{n:03}")));
        sqlx::query(
            "INSERT INTO basemap_countries (fid, name, iso_n3, geom)
             SELECT $1, $2, $3, ST_Multi(ST_CollectionExtract(ST_MakeValid(
                 ST_WrapX(ST_WrapX(ST_SetSRID(ST_GeomFromGeoJSON($4), 4326), 180, -360), -180, 360)), 3))",
        )
        .bind(i32::try_from(index + 1).unwrap_or(i32::MAX))
        .bind(name)
        .bind(iso)
        .bind(geometry.to_string())
        .execute(&mut *tx)
        .await
        .map_err(|e| Error::BasemapInput(format!("feature {index} ({name}): {e}")))?;
    }
    for layer in ["countries", "country_labels"] {
        crate::notify::tiles_changed(&mut *tx, layer)
            .await
            .map_err(database)?;
    }
    tx.commit().await.map_err(database)?;
    // Fresh statistics: the TileJSON's bounds come from the planner's estimate of the extent.
    sqlx::query("ANALYZE basemap_countries")
        .execute(pool)
        .await
        .map_err(database)?;
    Ok(features.len())
}

/// Loads `fallback` countries when the basemap is empty (for `serve --demo`); returns how many
/// were stored.
pub async fn ensure(pool: &PgPool, fallback: &[u8]) -> Result<usize, Error> {
    let present: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM basemap_countries)")
        .fetch_one(pool)
        .await
        .map_err(database)?;
    if present {
        Ok(0)
    } else {
        import(pool, fallback).await
    }
}
