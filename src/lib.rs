//! geotrack, the service: configuration, HTTP routes and start-up around the domain crates
//! (`tracker` for ingest, `fences` for geofencing, `tiles` for vector tiles). `main.rs` only
//! parses the command line and calls into here, so tests run the real application.

pub mod alerts;
pub mod app;
pub mod auth;
pub mod basemap;
pub mod bench_alerts;
pub mod bench_ingest;
pub mod cli;
pub mod config;
pub mod content_coding;
pub mod db;
pub mod error;
pub mod evaluator;
pub mod fence_feature;
pub mod fence_store;
mod http_metrics;
pub mod import;
pub mod limits;
pub mod live;
mod routes;
pub mod simulate;
pub mod state;
pub mod tile_cache;
mod tile_front;
pub mod tile_layers;
pub mod web;
pub mod webhooks;
mod ws;

pub use app::Application;
pub use config::Config;
