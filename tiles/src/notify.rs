//! `NOTIFY geotrack_tiles, '<layer>'`: how writers outside a server (imports, an operator's
//! trigger) tell every running server that a layer's tiles changed.

/// The channel servers listen on; the payload is a layer name.
pub const CHANNEL: &str = "geotrack_tiles";

/// Tells every running server that `layer`'s tiles changed (delivered when `db`'s transaction,
/// if any, commits).
pub async fn tiles_changed<'e>(db: impl sqlx::PgExecutor<'e>, layer: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(layer)
        .execute(db)
        .await
        .map(drop)
}
