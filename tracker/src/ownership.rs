//! Cluster mode: the owner of a partition claims it in PostgreSQL with its lease's epoch, and
//! every one of its write transactions is fenced by that epoch (`partition_owners`, see its
//! migration), so a deposed owner (a paused process, a network split) can commit nothing once a
//! newer one has claimed the partition. The row also keeps how far the partition's fix log is
//! stored, moved in the same transaction as the fixes: the owner resumes reading from there.

use sqlx::PgPool;

/// SQLSTATE raised by `fence_partition` when the epoch no longer owns the partition.
const DEPOSED: &str = "GT001";
/// Longest wait for the previous owner's transaction to finish before a claim gives up (and
/// is tried again).
const CLAIM_LOCK_TIMEOUT: &str = "5s";

/// The epoch a write is fenced with and, for the last transaction of a batch read from the fix
/// log, the stream sequence it stores up to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fence {
    pub epoch: i64,
    pub stored_seq: Option<i64>,
}

/// Who claims a partition: the lease's epoch, the node, and the id of the cluster's incarnation
/// (its fix log and lease bucket). A claim in a new incarnation (the stream and buckets were
/// created again) takes the partition whatever the epochs, whose count started over, and
/// reads the new log from its start.
#[derive(Debug, Clone, Copy)]
pub struct Claimant<'a> {
    pub epoch: u64,
    pub node: &'a str,
    pub log_id: &'a str,
}

/// Claims `partition`: returns the stream sequence stored so far in this log, or `None` when a
/// newer epoch already owns it (this node's lease is stale). Waits for the previous owner's
/// transaction in progress, if any.
pub async fn claim(
    pool: &PgPool,
    partition: u16,
    claimant: Claimant<'_>,
) -> Result<Option<u64>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query(&format!("SET LOCAL lock_timeout = '{CLAIM_LOCK_TIMEOUT}'"))
        .execute(&mut *tx)
        .await?;
    let stored: Option<i64> = sqlx::query_scalar(
        "INSERT INTO partition_owners (partition, epoch, node, log_id) VALUES ($1, $2, $3, $4)
         ON CONFLICT (partition) DO UPDATE SET epoch = EXCLUDED.epoch, node = EXCLUDED.node,
             claimed_at = now(), log_id = EXCLUDED.log_id,
             stored_seq = CASE WHEN partition_owners.log_id = EXCLUDED.log_id
                               THEN partition_owners.stored_seq ELSE 0 END
         WHERE partition_owners.epoch <= EXCLUDED.epoch OR partition_owners.log_id <> EXCLUDED.log_id
         RETURNING stored_seq",
    )
    .bind(i16::try_from(partition).unwrap_or(i16::MAX))
    .bind(i64::try_from(claimant.epoch).unwrap_or(i64::MAX))
    .bind(claimant.node)
    .bind(claimant.log_id)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(stored.map(|s| u64::try_from(s).unwrap_or(0)))
}

/// Whether a write failed because its epoch was deposed (the partition has a newer owner).
pub fn is_deposed(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.code().as_deref() == Some(DEPOSED))
}
