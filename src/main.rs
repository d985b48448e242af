//! The `geotrack` binary: parses the command line, sets up logging and runs a subcommand.

use std::process::ExitCode;

use clap::Parser;
use geotrack::cli::{Cli, Command, Import};
use geotrack::{Application, Config};
use tracing_subscriber::EnvFilter;

/// mimalloc rather than glibc's malloc: see `Cargo.toml`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        Command::Import(Import::Basemap { file }) => {
            let bytes = match &file {
                Some(file) => {
                    std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?
                }
                None => geotrack::basemap::EMBEDDED.to_vec(),
            };
            let pool = geotrack::db::pool(&config.database_url, 2).map_err(|e| e.to_string())?;
            let count = geotrack::basemap::import(&pool, &bytes).await?;
            let source = file.map_or("built-in 1:110m countries".to_owned(), |f| {
                f.display().to_string()
            });
            println!("{source}: {count} countries imported into the basemap");
            Ok(())
        }
        Command::BenchIngest(args) => geotrack::bench_ingest::run(&args, &config.database_url).await,
        Command::BenchAlerts(args) => geotrack::bench_alerts::run(&args, &config.database_url).await,
        Command::Serve { demo } => serve(config, demo).await,
        Command::Simulate(args) => {
            let stop = tokio_util::sync::CancellationToken::new();
            let on_signal = stop.clone();
            tokio::spawn(async move {
                geotrack::app::shutdown_signal().await;
                on_signal.cancel();
            });
            let report = geotrack::simulate::run(&args, stop).await?;
            println!("{report}");
            Ok(())
        }
    }
}

/// Runs the server until SIGINT/SIGTERM; with `demo`, a simulated fleet drives meanwhile.
async fn serve(config: Config, demo: bool) -> Result<(), String> {
    let token = demo_token(&config);
    let app = Application::build(config).await.map_err(|e| e.to_string())?;
    if demo {
        // The demo map's land and borders come from the `countries` layer.
        match geotrack::basemap::ensure(&app.state().pool).await {
            Ok(0) => {}
            Ok(count) => tracing::info!(countries = count, "basemap imported"),
            Err(error) => tracing::warn!("demo basemap not imported: {error}"),
        }
    }
    let url = format!("http://{}", app.local_addr());
    tracing::info!("geotrack listening on {url}");
    let stop = tokio_util::sync::CancellationToken::new();
    if demo {
        let args = geotrack::simulate::SimulateArgs {
            url: url.clone(),
            token,
            demo: true,
            quiet: true,
            ..geotrack::simulate::SimulateArgs::demo()
        };
        let until = stop.clone();
        tokio::spawn(async move {
            tracing::info!(devices = args.devices, "demo fleet driving; open {}", args.url);
            match geotrack::simulate::run(&args, until).await {
                Ok(report) => tracing::info!("demo fleet stopped: {report}"),
                Err(error) => tracing::error!("demo fleet: {error}"),
            }
        });
    }
    let on_signal = stop.clone();
    app.run_until(async move {
        geotrack::app::shutdown_signal().await;
        on_signal.cancel();
    })
    .await
    .map_err(|e| e.to_string())
}

/// A configured token that may write positions and fences, for the demo fleet.
fn demo_token(config: &Config) -> Option<String> {
    let entries = config.tokens.entries().ok()?;
    entries
        .iter()
        .find(|t| t.scopes.contains(&geotrack::auth::Scope::Admin))
        .map(|t| t.token.clone())
}
