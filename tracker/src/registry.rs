//! The device registry (`devices`): what an operator records about a device besides its
//! positions, a name and free attributes. Ingest registers every new device id with neither;
//! erasing a device removes its registration with the rest (`latest::erase`).

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use sqlx::PgPool;

/// Longest name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Largest attributes object, as JSON bytes.
pub const MAX_ATTRIBUTES_BYTES: usize = 16 * 1024;

/// A device's registration.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct Registration {
    pub id: String,
    pub name: Option<String>,
    pub attributes: sqlx::types::Json<Map<String, Value>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The registration of `id`, if it is registered (reported once, or written).
pub async fn get(pool: &PgPool, id: &str) -> Result<Option<Registration>, sqlx::Error> {
    sqlx::query_as("SELECT id, name, attributes, created_at, updated_at FROM devices WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// A registration as written, and whether the write created it.
#[derive(sqlx::FromRow)]
struct Written {
    #[sqlx(flatten)]
    registration: Registration,
    created: bool,
}

/// Writes the name and attributes of `id` (registering it when new); the registration as
/// stored and whether it was created.
pub async fn put(
    pool: &PgPool,
    id: &str,
    name: Option<&str>,
    attributes: &Map<String, Value>,
) -> Result<(Registration, bool), sqlx::Error> {
    let written: Written = sqlx::query_as(
        "INSERT INTO devices (id, name, attributes) VALUES ($1, $2, $3)
         ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, attributes = EXCLUDED.attributes,
             updated_at = now()
         RETURNING id, name, attributes, created_at, updated_at, xmax = 0 AS created",
    )
    .bind(id)
    .bind(name)
    .bind(sqlx::types::Json(attributes))
    .fetch_one(pool)
    .await?;
    Ok((written.registration, written.created))
}
