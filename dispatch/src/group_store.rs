//! The `device_groups` table: loading every group, writing and deleting one. Each write
//! announces itself with `NOTIFY geotrack_groups` in its transaction, so the other processes
//! on the database (the nodes of a cluster) reload their [`Groups`](fences::Groups)
//! once it is committed.

use sqlx::PgPool;

use fences::Group;

/// The channel group writes are announced on (the payload is the group id; listeners reload
/// every group, a small table).
pub const CHANNEL: &str = "geotrack_groups";

/// A `device_groups` row as read.
#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    name: String,
    devices: Vec<String>,
    prefixes: Vec<String>,
}

/// Every group.
pub async fn load(pool: &PgPool) -> Result<Vec<Group>, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as("SELECT id, name, devices, prefixes FROM device_groups")
        .fetch_all(pool)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| Group {
            id: r.id,
            name: r.name,
            devices: r.devices.into_iter().collect(),
            prefixes: r.prefixes.into_iter().collect(),
        })
        .collect())
}

/// Creates or replaces `group`; whether it was created.
pub async fn put(pool: &PgPool, group: &Group) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let created: bool = sqlx::query_scalar(
        "INSERT INTO device_groups (id, name, devices, prefixes) VALUES ($1, $2, $3, $4)
         ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, devices = EXCLUDED.devices,
             prefixes = EXCLUDED.prefixes, updated_at = now()
         RETURNING xmax = 0",
    )
    .bind(&group.id)
    .bind(&group.name)
    .bind(group.devices.iter().collect::<Vec<_>>())
    .bind(group.prefixes.iter().collect::<Vec<_>>())
    .fetch_one(&mut *tx)
    .await?;
    crate::announce::announce(&mut tx, CHANNEL, &group.id).await?;
    tx.commit().await?;
    Ok(created)
}

/// Deletes the group `id`; whether it existed.
pub async fn delete(pool: &PgPool, id: &str) -> Result<bool, sqlx::Error> {
    crate::announce::delete(pool, "device_groups", id, (CHANNEL, id)).await
}
