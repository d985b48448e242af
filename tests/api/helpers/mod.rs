//! Everything the test modules share, and the only place they import shared code from: no test
//! module uses another's helpers.
//!
//! - `app`: the real application on a fresh database per test ([`spawn_app`] and its variants,
//!   restart and stop), requests to it with or without a token ([`TestApp::request`]), and the
//!   `geotrack` binary.
//! - `fixtures`: fixes and fence features, the calls that store them, vector tiles decoded.
//! - `wait`: bounded waits for what the server does in the background.
//! - `ws`: a WebSocket client with a deadline on every read.
//! - `nats`: cluster mode on the local NATS, a prefix per test, and its clean-up.
//! - `process`: the `geotrack serve` binary as a child process, to kill, pause or stop.
//! - `proxy`: a TCP proxy to PostgreSQL that a test cuts and restores.

mod app;
mod fixtures;
mod nats;
mod process;
mod proxy;
mod wait;
mod ws;

pub use app::{
    TestApp, admin_exec, database_url, geotrack, json_with_status, new_database, spawn_app, spawn_on,
    spawn_with,
};
pub use fixtures::{
    check_crossing_alerts, circle, corridor, create_fence, fix, fix_at, in_and_out, named, names, names_at,
    polygon, post_fix, replace_fence, square, tile, tile_of,
};
pub use nats::{NATS_URL, cluster_config, cluster_prefix, destroy_cluster};
pub use process::ServerProcess;
pub use proxy::TcpProxy;
pub use wait::{eventually, poll_until, wait_for_alerts, wait_for_fence_index, wait_until};
pub use ws::{Next, WsClient};
