//! The command line: global flags (the last configuration layer), subcommands, and what each
//! runs: the server ([`serve`]), migrations, imports ([`import`]) and the clients of the `tools`
//! crate (the simulator and the benchmarks).

mod error;
mod import;
pub mod logging;
mod serve;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use geotrack::Config;
use geotrack::config::Overrides;

pub use error::CliError;

#[derive(Debug, Parser)]
#[command(
    name = "geotrack",
    version,
    about = "Real-time geo-tracking, geofencing and vector tiles on PostGIS"
)]
pub struct Cli {
    /// Configuration file (default: ./geotrack.toml when present).
    #[arg(long, global = true, env = "GEOTRACK_CONFIG")]
    pub config: Option<PathBuf>,
    /// PostgreSQL URL (environment: `DATABASE_URL` or `GEOTRACK_DATABASE_URL`; default
    /// `postgres://postgres@127.0.0.1:5432/geotrack`).
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,
    /// Log lines as text, or as one JSON object per line.
    #[arg(long, global = true, value_enum, env = "GEOTRACK_LOG_FORMAT", default_value_t)]
    pub log_format: logging::LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service.
    Serve(ServeArgs),
    /// Create the database if needed and apply pending migrations (idempotent).
    Migrate,
    /// Load data from files.
    #[command(subcommand)]
    Import(Import),
    /// Measure ingest throughput of a running server against a raw COPY of the same rows.
    BenchIngest(tools::bench_ingest::BenchIngestArgs),
    /// Drive a simulated fleet against a server (`--demo` also draws fences).
    Simulate(tools::simulate::SimulateArgs),
    /// Measure alert latency (fix received to alert on a WebSocket) under an open-loop drive.
    BenchAlerts(tools::bench_alerts::BenchAlertsArgs),
    /// Measure delivery to many WebSocket subscribers at a high alert rate, slow ones beside them.
    BenchFanout(tools::bench_fanout::BenchFanoutArgs),
    /// Drive ingest at a multiple of its sustainable rate; check refusals, /health, nothing lost.
    BenchOverload(tools::bench_overload::BenchOverloadArgs),
    /// Drive ingest and alerts over the nodes of a cluster (with failover); check nothing lost.
    BenchCluster(tools::bench_cluster::BenchClusterArgs),
    /// Measure Teltonika TCP ingest against HTTP ingest in the same run (fixes/s, ratio, CPU).
    BenchTcp(tools::bench_tcp::BenchTcpArgs),
    /// Cluster mode administration (uses the `[cluster]` configuration).
    #[command(subcommand)]
    Cluster(ClusterCommand),
}

/// The flags only the server takes.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Also drive a demo fleet of 50 vehicles, with demo fences, inside the server.
    #[arg(long)]
    pub demo: bool,
    /// Address to listen on (environment: `GEOTRACK_BIND`; default 127.0.0.1:8080).
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<SocketAddr>,
    /// Allow listening on a non-loopback address with no tokens configured (open access).
    #[arg(long)]
    pub insecure: bool,
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Delete the cluster's fix log stream and buckets from NATS. Stop every node first: fixes
    /// in the log that no owner stored yet are lost.
    Destroy,
}

impl Cli {
    pub fn overrides(&self) -> Overrides {
        let (bind, insecure) = match &self.command {
            Command::Serve(serve) => (serve.bind, serve.insecure),
            _ => (None, false),
        };
        Overrides {
            bind,
            database_url: self.database_url.clone(),
            insecure,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Import {
    /// Load the track points of a GPX file as the history of one device (de-duplicated).
    Gpx {
        /// The GPX file.
        file: PathBuf,
        /// Device id to store the points under.
        #[arg(long)]
        device: String,
    },
    /// Load a GeoJSON FeatureCollection of fences (all or nothing; existing ids are replaced).
    /// Ids come from the Features' `id` (generated as f1, f2... when absent, and listed), or
    /// from a property with --id-property.
    Fences {
        /// The GeoJSON file.
        file: PathBuf,
        /// Take every fence's id from this property (e.g. `name`), so that importing the file
        /// again replaces its fences instead of adding new ones.
        #[arg(long, value_name = "NAME")]
        id_property: Option<String>,
    },
    /// Replace the basemap (the `countries` tile layer) with planar countries GeoJSON (see
    /// scripts/prepare-basemap.py); without a file, the 1:110m countries built in.
    Basemap {
        /// The GeoJSON file.
        file: Option<PathBuf>,
    },
}

/// Runs the command; the error's message is what to print.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    let config = Config::load(cli.config.as_deref(), &cli.overrides())?;
    match cli.command {
        Command::Migrate => {
            geotrack::db::migrate(&config.database_url)
                .await
                .map_err(CliError::Migrate)?;
            tracing::info!("database is migrated");
        }
        Command::Import(Import::Gpx { file, device }) => {
            let summary = import::gpx(&config, &file, &device).await?;
            println!(
                "{}: {} points, {} stored, {} already stored, {} skipped",
                file.display(),
                summary.points,
                summary.stored,
                summary.duplicates,
                summary.rejected
            );
        }
        Command::Import(Import::Fences { file, id_property }) => {
            let imported = import::fences(&config, &file, id_property.as_deref()).await?;
            println!("{}: {} fences imported", file.display(), imported.ids.len());
            if !imported.generated.is_empty() {
                println!("generated ids (feature index: id):");
                for &index in &imported.generated {
                    println!("{index}: {}", imported.ids[index]);
                }
            }
        }
        Command::Import(Import::Basemap { file }) => {
            let (source, count) = import::basemap(&config, file.as_deref()).await?;
            println!("{source}: {count} countries imported into the basemap");
        }
        Command::BenchIngest(args) => tools::bench_ingest::run(&args, &config.database_url).await?,
        Command::BenchAlerts(args) => tools::bench_alerts::run(&args, &config.database_url).await?,
        Command::BenchFanout(args) => tools::bench_fanout::run(&args, &config.database_url).await?,
        Command::BenchOverload(args) => tools::bench_overload::run(&args, &config.database_url).await?,
        Command::BenchCluster(args) => tools::bench_cluster::run(&args, &config.database_url).await?,
        Command::BenchTcp(args) => tools::bench_tcp::run(&args, &config.database_url).await?,
        Command::Cluster(ClusterCommand::Destroy) => {
            cluster::nats::destroy(&config.cluster).await?;
            println!("cluster {:?}: fix log and buckets deleted", config.cluster.prefix);
        }
        Command::Serve(ServeArgs { demo, .. }) => serve::serve(config, demo).await?,
        Command::Simulate(args) => {
            let stop = tokio_util::sync::CancellationToken::new();
            let on_signal = stop.clone();
            tokio::spawn(async move {
                geotrack::startup::shutdown_signal().await;
                on_signal.cancel();
            });
            let report = tools::simulate::run(&args, stop).await?;
            println!("{report}");
        }
    }
    Ok(())
}
