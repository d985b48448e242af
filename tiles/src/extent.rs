//! Where a layer's data lies, for TileJSON `bounds` and `center`: the fences' extent, the
//! extent a table's planner statistics estimate (`ST_EstimatedExtent`: no scan of the table,
//! so the answer is as fresh as the last `ANALYZE`), and the world for the layers of devices,
//! which move.

use sqlx::PgPool;

use crate::catalog::Described;
use crate::layer::Source;

/// An extent as read: `ST_XMin`, `ST_YMin`, `ST_XMax`, `ST_YMax` (all NULL for no data).
type Corners = (Option<f64>, Option<f64>, Option<f64>, Option<f64>);

/// The web-mercator world, where tiles exist.
pub const WORLD: [f64; 4] = [-180.0, -85.051_129, 180.0, 85.051_129];

/// `[west, south, east, north]` of the layer's data in WGS 84, `None` when it cannot be
/// known cheaply (the layers of devices, a table without statistics, an empty layer).
pub async fn of(pool: &PgPool, described: &Described) -> Result<Option<[f64; 4]>, sqlx::Error> {
    let row: Option<Corners> = match &described.source {
        Source::Positions | Source::Tracks => return Ok(None),
        Source::Fences => {
            sqlx::query_as(
                "SELECT ST_XMin(b), ST_YMin(b), ST_XMax(b), ST_YMax(b) FROM (SELECT ST_Extent(geom) AS b FROM fences) e",
            )
            .fetch_optional(pool)
            .await?
        }
        Source::Table(table) => {
            sqlx::query_as(
                "SELECT ST_XMin(b), ST_YMin(b), ST_XMax(b), ST_YMax(b)
                 FROM (SELECT ST_Transform(ST_SetSRID(ST_EstimatedExtent($1, $2, $3)::geometry, $4), 4326) AS b) e",
            )
            .bind(&table.schema)
            .bind(&table.table)
            .bind(&table.geometry)
            .bind(table.srid)
            .fetch_optional(pool)
            .await?
        }
    };
    Ok(row.and_then(|(w, s, e, n)| Some(clamp([w?, s?, e?, n?]))))
}

/// Within the web-mercator world.
fn clamp([w, s, e, n]: [f64; 4]) -> [f64; 4] {
    [w.max(WORLD[0]), s.max(WORLD[1]), e.min(WORLD[2]), n.min(WORLD[3])]
}

/// The smallest zoom at which `bounds` spans no more than about one tile, within `[min, max]`:
/// TileJSON's `center` zoom, where a client opening the layer sees all of it.
pub fn fitting_zoom([w, s, e, n]: [f64; 4], min: u8, max: u8) -> u8 {
    let span = (e - w).max((n - s) * 2.0).max(1e-9);
    let zoom = (360.0 / span)
        .log2()
        .floor()
        .clamp(0.0, f64::from(crate::MAX_ZOOM));
    // In range by the clamp: a whole zoom from 0 to MAX_ZOOM.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let zoom = zoom as u8;
    zoom.clamp(min, max.max(min))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_centre_zoom_shows_the_whole_extent() {
        assert_eq!(fitting_zoom(WORLD, 0, 22), 0);
        assert_eq!(fitting_zoom([2.2, 48.8, 2.5, 48.9], 0, 22), 10);
        assert_eq!(fitting_zoom([2.2, 48.8, 2.5, 48.9], 0, 6), 6);
        assert_eq!(
            fitting_zoom([2.2, 48.8, 2.2, 48.8], 4, 14),
            14,
            "a point: the deepest zoom allowed"
        );
        let clamped = clamp([-200.0, -90.0, 10.0, 10.0]);
        let expected = [-180.0, -85.051_129, 10.0, 10.0];
        assert!(
            clamped.iter().zip(expected).all(|(a, b)| (a - b).abs() < 1e-12),
            "{clamped:?}"
        );
    }
}
