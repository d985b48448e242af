//! The `geotrack` binary: parses the command line, sets up logging and runs a subcommand.

use std::process::ExitCode;

use clap::Parser;
use geotrack::cli::{Cli, Command, Import};
use geotrack::{Application, Config};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_env("GEOTRACK_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    let config =
        Config::load(cli.config.as_deref(), &cli.overrides()).map_err(|e| format!("configuration: {e}"))?;
    match cli.command {
        Command::Migrate => {
            geotrack::db::migrate(&config.database_url)
                .await
                .map_err(|e| format!("migrate: {e}"))?;
            tracing::info!("database is migrated");
            Ok(())
        }
        Command::Import(Import::Gpx { file, device }) => {
            let summary = geotrack::import::gpx(&config, &file, &device).await?;
            println!(
                "{}: {} points, {} stored, {} already stored, {} skipped",
                file.display(),
                summary.points,
                summary.stored,
                summary.duplicates,
                summary.rejected
            );
            Ok(())
        }
        Command::Import(Import::Fences { file }) => {
            let count = geotrack::import::fences(&config, &file).await?;
            println!("{}: {count} fences imported", file.display());
            Ok(())
        }
        Command::BenchIngest(args) => geotrack::bench_ingest::run(&args, &config.database_url).await,
        Command::BenchAlerts(args) => geotrack::bench_alerts::run(&args, &config.database_url).await,
        Command::Serve => {
            let app = Application::build(config).await.map_err(|e| e.to_string())?;
            tracing::info!("geotrack listening on http://{}", app.local_addr());
            app.run_until(geotrack::app::shutdown_signal())
                .await
                .map_err(|e| e.to_string())
        }
    }
}
