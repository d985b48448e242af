//! The command line: global flags (the last configuration layer) and subcommands.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::Overrides;

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
    /// Address to listen on (default 127.0.0.1:8080).
    #[arg(long, global = true)]
    pub bind: Option<SocketAddr>,
    /// PostgreSQL URL (default `postgres://postgres@127.0.0.1:5432/geotrack`).
    #[arg(long, global = true)]
    pub database_url: Option<String>,
    /// Allow listening on a non-loopback address with no tokens configured (open access).
    #[arg(long, global = true)]
    pub insecure: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service.
    Serve {
        /// Also drive a demo fleet of 50 vehicles, with demo fences, inside the server.
        #[arg(long)]
        demo: bool,
    },
    /// Create the database if needed and apply pending migrations (idempotent).
    Migrate,
    /// Load data from files.
    #[command(subcommand)]
    Import(Import),
    /// Measure ingest throughput of a running server against a raw COPY of the same rows.
    BenchIngest(crate::bench_ingest::BenchIngestArgs),
    /// Drive a simulated fleet against a server (`--demo` also draws fences).
    Simulate(crate::simulate::SimulateArgs),
    /// Measure alert latency (fix received to alert on a WebSocket) under an open-loop drive.
    BenchAlerts(crate::bench_alerts::BenchAlertsArgs),
}

impl Cli {
    pub fn overrides(&self) -> Overrides {
        Overrides {
            bind: self.bind,
            database_url: self.database_url.clone(),
            insecure: self.insecure,
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
    Fences {
        /// The GeoJSON file.
        file: PathBuf,
    },
    /// Replace the basemap (the `countries` tile layer) with planar countries GeoJSON (see
    /// scripts/prepare-basemap.py); without a file, the 1:110m countries built in.
    Basemap {
        /// The GeoJSON file.
        file: Option<PathBuf>,
    },
}
