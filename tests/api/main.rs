//! Integration tests: the real application on a real socket against a fresh PostGIS database
//! per test. Shared code lives in `helpers`, the one module the others import from. One test
//! binary, so the suite links once.

mod alert_commits;
mod alerts;
mod auth;
mod cluster;
mod cluster_fanout;
mod cluster_faults;
mod crash;
mod device_apps;
mod devices;
mod dispatch;
mod durability;
mod faults;
mod fence_imports;
mod fence_versions;
mod fences;
mod groups;
mod helpers;
mod history;
mod import;
mod ingest;
mod limits;
mod logging;
mod ogc;
mod openapi;
mod ops;
mod ownership;
mod proximity;
mod security;
mod server;
mod simulate;
mod styles;
mod tcp_gt06;
mod tcp_teltonika;
mod tile_layers;
mod tiles;
mod trips;
mod webhooks;
mod webhooks_https;
