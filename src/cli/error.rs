//! Why a subcommand failed: [`CliError`], whose message `main` prints before exiting with 1.
//! Errors of the crates keep their own wording; a file's errors name the file.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use fences::collection::CollectionError;

/// Invalid features listed in the message of an import that refused a fence file.
const LISTED: usize = 20;

/// Errors of the `geotrack` subcommands.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The configuration layers (file, environment, flags) do not make a valid configuration.
    #[error("configuration: {0}")]
    Config(#[from] Box<figment::Error>),
    /// `geotrack migrate` could not create or migrate the database.
    #[error("migrate: {0}")]
    Migrate(#[source] sqlx::Error),
    /// The database of an import (connection, migration, writes).
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The server could not start or stopped with an error.
    #[error(transparent)]
    Start(#[from] geotrack::StartError),
    /// NATS refused or could not be reached (`geotrack cluster ...`).
    #[error(transparent)]
    Cluster(#[from] cluster::ClusterError),
    /// The simulator or a benchmark failed.
    #[error(transparent)]
    Tool(#[from] tools::Error),
    /// The basemap could not be imported (its messages start with `basemap:`).
    #[error(transparent)]
    Tiles(#[from] tiles::Error),
    /// The pipeline stopped taking a GPX import's fixes.
    #[error("import stopped: {0}")]
    ImportStopped(#[from] tracker::SubmitError),
    /// An input file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    /// A fence file is not JSON.
    #[error("{} is not JSON: {source}", path.display())]
    NotJson {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// A GPX file that cannot be parsed.
    #[error("{}: {source}", path.display())]
    Gpx {
        path: PathBuf,
        source: tracker::gpx::GpxError,
    },
    /// A fence file that is not a FeatureCollection, or with invalid features (listed).
    #[error("{}", fence_report(path, source))]
    Fences { path: PathBuf, source: CollectionError },
    /// The webhook configuration (`webhooks.allowed_networks`) is not usable.
    #[error("webhooks: {0}")]
    Webhooks(#[from] alerts::Error),
    /// A fence names webhooks, but there is no secret to sign their deliveries with.
    #[error("fence {fence:?} names webhooks, but no webhooks.secret is configured to sign them with")]
    UnsignedWebhooks { fence: String },
}

impl CliError {
    /// For `map_err`: `path` could not be read.
    pub fn read(path: &Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        |source| Self::Read {
            path: path.to_owned(),
            source,
        }
    }
}

/// What is wrong with a fence file: the first [`LISTED`] invalid features, one a line.
fn fence_report(path: &Path, error: &CollectionError) -> String {
    match error {
        CollectionError::NotACollection => format!("{} is not a GeoJSON FeatureCollection", path.display()),
        e @ CollectionError::GeneratedIds { .. } => format!("{}: {e}", path.display()),
        CollectionError::Invalid { report, total } => {
            let mut text = format!(
                "{}: {} of {total} features are invalid; nothing was imported:",
                path.display(),
                report.len()
            );
            for line in report.iter().take(LISTED) {
                let _ = write!(text, "\n{line}");
            }
            if report.len() > LISTED {
                text.push_str("\n...");
            }
            text
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_refused_fence_file_lists_its_invalid_features() {
        let report = (0..25).map(|i| json!({"index": i, "reason": "bad"})).collect();
        let error = CliError::Fences {
            path: "f.json".into(),
            source: CollectionError::Invalid { report, total: 30 },
        };
        let text = error.to_string();
        assert!(
            text.starts_with("f.json: 25 of 30 features are invalid; nothing was imported:\n{"),
            "{text}"
        );
        assert_eq!(text.lines().count(), 1 + LISTED + 1, "{text}");
        assert!(text.ends_with("\n..."), "{text}");
    }
}
