//! The database: connection pool, migrations (embedded from `migrations/`) and readiness.

use std::time::Duration;

use sqlx::migrate::{MigrateDatabase, Migrator};
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Postgres};

/// The migrations in `migrations/`, compiled into the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// A pooled connection idle for longer than this is pinged before it is handed out.
const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

/// A pool that connects on first use, so the server starts (and reports not ready) while the
/// database is down.
///
/// A connection that sat idle for over [`PING_AFTER_IDLE`] is checked with a ping before use
/// (one that died meanwhile, with a database restart, is replaced); one in steady use is not,
/// which spares every query a round trip to the database. sqlx's default pings before every
/// use. A connection that dies while in use fails its query: the ingest writers and the alert
/// writer retry on a fresh one, and an API request answers 503.
pub fn pool(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for > PING_AFTER_IDLE {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
        .connect_lazy(url)
}

/// Creates the database if it does not exist, then applies pending migrations (idempotent).
pub async fn migrate(url: &str) -> Result<(), sqlx::Error> {
    if !Postgres::database_exists(url).await? {
        tracing::info!("creating database");
        Postgres::create_database(url).await?;
    }
    let pool = pool(url, 2)?;
    MIGRATOR.run(&pool).await?;
    pool.close().await;
    Ok(())
}

/// Why the database is not ready to serve.
#[derive(Debug, thiserror::Error)]
pub enum NotReady {
    #[error("the database did not answer within 2 s")]
    Timeout,
    #[error("the database has no migrations applied; run `geotrack migrate`")]
    NotMigrated,
    #[error("the database is not reachable: {0}")]
    Unreachable(sqlx::Error),
    #[error("migration {latest} is not applied (the database is at {applied}); run `geotrack migrate`")]
    Behind { latest: i64, applied: i64 },
}

/// Ok when the database answers within two seconds and every embedded migration is applied.
pub async fn readiness(pool: &PgPool) -> Result<(), NotReady> {
    let latest = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
    let check =
        sqlx::query_scalar::<_, Option<i64>>("SELECT max(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(pool);
    match tokio::time::timeout(Duration::from_secs(2), check).await {
        Err(_) => Err(NotReady::Timeout),
        Ok(Err(sqlx::Error::Database(e))) if e.code().as_deref() == Some("42P01") => {
            Err(NotReady::NotMigrated)
        }
        Ok(Err(e)) => Err(NotReady::Unreachable(e)),
        Ok(Ok(applied)) if applied.unwrap_or(0) < latest => Err(NotReady::Behind {
            latest,
            applied: applied.unwrap_or(0),
        }),
        Ok(Ok(_)) => Ok(()),
    }
}
