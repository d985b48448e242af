//! geotrack, the service: the one composition point of the domain crates (`tracker` for ingest,
//! `fences` for geofencing, `alerts` for evaluation and alerts, `tiles` for vector tiles).
//! It holds configuration, start-up and shutdown ([`Application`]), the router with its thin
//! handlers, authentication and WebSocket sessions; `main.rs` and `cli/` parse the command line
//! and call into here, so tests run the real application.

mod access_log;
pub mod auth;
mod catch_panic;
mod checks;
pub mod cluster;
pub mod config;
mod connection;
mod cors;
pub mod db;
mod deadline;
pub mod error;
mod extract;
pub mod fence_imports;
pub mod fence_registry;
mod guard;
mod http_metrics;
pub mod ingest;
pub mod limits;
mod listen;
pub mod log_sink;
mod process_metrics;
mod prometheus_text;
mod request_id;
mod routes;
pub mod server;
pub mod startup;
pub mod state;
pub mod tcp;
mod upkeep;
pub mod web;
pub mod ws;

pub use config::Config;
pub use startup::{Application, StartError};
pub use upkeep::HistoryConfig;
