//! Writes that other servers must hear of: each commits with a `NOTIFY` in its transaction, so
//! the listeners (every node's `listen` task) learn of it once it is committed, never before.

use sqlx::PgPool;

/// `NOTIFY channel, payload` in the transaction `tx`.
pub async fn announce(tx: &mut sqlx::PgConnection, channel: &str, payload: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(channel)
        .bind(payload)
        .execute(tx)
        .await?;
    Ok(())
}

/// Deletes the row `id` of `table` and announces it on `channel` with `payload`, in one
/// transaction; whether the row existed.
pub async fn delete(
    pool: &PgPool,
    table: &'static str,
    id: &str,
    (channel, payload): (&str, &str),
) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let deleted = sqlx::query(&format!("DELETE FROM {table} WHERE id = $1"))
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
        > 0;
    announce(&mut tx, channel, payload).await?;
    tx.commit().await?;
    Ok(deleted)
}
