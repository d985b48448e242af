//! `geotrack import ...`: loading files into the database. Fixes go through the same pipeline
//! as live ingest (validated and de-duplicated like any other); fences through the same
//! validation as the API, all or nothing; countries into the basemap table.

use std::path::Path;
use std::time::Duration;

use fences::collection::{IdSource, ids_to_generate, prepare_collection};
use geotrack::Config;
use indicatif::{ProgressBar, ProgressStyle};
use prometheus_client::registry::Registry;
use tokio_util::task::TaskTracker;

use super::error::CliError;

/// Fixes handed to the pipeline at once.
const CHUNK: usize = 1_000;

/// What an import did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportSummary {
    /// Points in the file.
    pub points: usize,
    /// Fixes newly stored.
    pub stored: u64,
    /// Fixes that were already in history (same device and time).
    pub duplicates: u64,
    /// Points that could not be stored (no time, out of range...).
    pub rejected: usize,
}

/// What a fence import stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedFences {
    /// The fences' ids, in feature order.
    pub ids: Vec<String>,
    /// The indexes of the features whose id was generated.
    pub generated: Vec<usize>,
}

/// Imports a GeoJSON FeatureCollection of fences, all or nothing (fences with an existing id
/// are replaced); ids come from `id_property` when given, else from the Features (generated
/// when absent). A running server hears of it and reloads those fences.
pub async fn fences(
    config: &Config,
    file: &Path,
    id_property: Option<&str>,
) -> Result<ImportedFences, CliError> {
    let text = std::fs::read_to_string(file).map_err(CliError::read(file))?;
    let collection: serde_json::Value = serde_json::from_str(&text).map_err(|source| CliError::NotJson {
        path: file.to_owned(),
        source,
    })?;
    drop(text);
    let source = IdSource::from_property(id_property);
    let policy = alerts::webhooks::Policy::new(&config.webhooks.allowed_networks)?;
    geotrack::db::migrate(&config.database_url).await?;
    let pool = geotrack::db::pool(&config.database_url, 2)?;
    let missing = ids_to_generate(&collection, source);
    let generated = alerts::fence_store::next_ids(&pool, missing).await?;
    let generated_ids: std::collections::HashSet<String> = generated.iter().cloned().collect();
    let total = collection["features"].as_array().map_or(0, Vec::len);
    let progress = bar(total, "fences");
    let prepared = prepare_collection(
        &collection,
        source,
        generated,
        &config.fences.limits(),
        geotrack::fence_registry::webhook_check(&policy),
        || progress.inc(1),
    );
    progress.finish_and_clear();
    let prepared = prepared.map_err(|source| CliError::Fences {
        path: file.to_owned(),
        source,
    })?;
    if config.webhooks.secret().is_none()
        && let Some(fence) = prepared.iter().find(|f| !f.fence().webhooks.is_empty())
    {
        return Err(CliError::UnsignedWebhooks {
            fence: fence.id().to_owned(),
        });
    }
    let to_store: Vec<&fences::PreparedFence> = prepared.iter().collect();
    alerts::fence_store::store_and_announce(&pool, "import", &to_store).await?;
    pool.close().await;
    let ids: Vec<String> = prepared.iter().map(|f| f.id().to_owned()).collect();
    let generated = (0..ids.len())
        .filter(|&i| generated_ids.contains(&ids[i]))
        .collect();
    Ok(ImportedFences { ids, generated })
}

fn bar(len: usize, what: &str) -> ProgressBar {
    let template = format!("{{bar:40}} {{pos}}/{{len}} {what} {{per_sec}} {{eta}}");
    ProgressBar::new(len as u64)
        .with_style(ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar()))
}

/// Imports the track points of a GPX file as the history of `device`, then tells running
/// servers (`NOTIFY geotrack_tiles, 'tracks'`) so their cached track tiles show it.
pub async fn gpx(config: &Config, file: &Path, device: &str) -> Result<ImportSummary, CliError> {
    let xml = std::fs::read_to_string(file).map_err(CliError::read(file))?;
    let points = tracker::gpx::parse(&xml).map_err(|source| CliError::Gpx {
        path: file.to_owned(),
        source,
    })?;
    geotrack::db::migrate(&config.database_url).await?;
    let pool = geotrack::db::pool(&config.database_url, 2)?;
    let metrics = tracker::metrics::IngestMetrics::register(&mut Registry::default());
    let tasks = TaskTracker::new();
    let mut pipeline_config = config.ingest.pipeline();
    pipeline_config.shards = 1;
    pipeline_config.enqueue_wait = Duration::from_secs(60);
    let pipeline =
        tracker::Pipeline::start(&pool, pipeline_config, metrics.clone(), Vec::new(), None, &tasks);
    // History may be of any age; only the future limit still applies.
    let limits = tracker::Limits {
        max_age: chrono::Duration::days(365 * 200),
        ..config.ingest.limits()
    };

    let progress = bar(points.len(), "points");
    let received_at = chrono::Utc::now();
    let mut rejected = 0;
    let mut result = Ok(());
    for chunk in points.chunks(CHUNK) {
        let mut fixes = Vec::with_capacity(chunk.len());
        for point in chunk {
            match tracker::gpx::to_raw_fix(point, device).validate(received_at, &limits) {
                Ok(fix) => fixes.push(fix),
                Err(rejection) => {
                    rejected += 1;
                    tracing::warn!(lat = point.lat, lon = point.lon, reason = %rejection.message, "point skipped");
                }
            }
        }
        match pipeline.submit(fixes).await {
            Ok(submitted) => rejected += submitted.rejected.len(),
            Err(e) => {
                result = Err(CliError::ImportStopped(e));
                break;
            }
        }
        progress.inc(chunk.len() as u64);
    }
    progress.finish_and_clear();
    pipeline.close();
    tasks.close();
    tasks.wait().await;
    if metrics.stored.get() > 0 {
        // Running servers keep cached `tracks` tiles; this history may fall in their windows.
        if let Err(e) = tiles::notify::tiles_changed(&pool, "tracks").await {
            tracing::warn!(%e, "running servers were not told that tracks changed; their cached track tiles may lag");
        }
    }
    pool.close().await;
    result?;
    Ok(ImportSummary {
        points: points.len(),
        stored: metrics.stored.get(),
        duplicates: metrics.duplicates.get(),
        rejected,
    })
}

/// Replaces the basemap with the countries of `file` (the built-in 1:110m countries without
/// one); returns what was loaded and how many countries.
pub async fn basemap(config: &Config, file: Option<&Path>) -> Result<(String, usize), CliError> {
    let bytes = match file {
        Some(file) => std::fs::read(file).map_err(CliError::read(file))?,
        None => geotrack::web::COUNTRIES.to_vec(),
    };
    let pool = geotrack::db::pool(&config.database_url, 2)?;
    let count = tiles::basemap::import(&pool, &bytes).await?;
    let source = file.map_or("built-in 1:110m countries".to_owned(), |f| {
        f.display().to_string()
    });
    Ok((source, count))
}
