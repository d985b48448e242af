//! Clients of a running geotrack, kept out of the service: the fleet simulator
//! ([`simulate`], also the demo fleet of `geotrack serve --demo`) and the load benchmarks
//! ([`bench_ingest`], [`bench_alerts`], [`bench_fanout`], [`bench_overload`], [`bench_cluster`],
//! [`bench_tcp`]).
//! They speak to the server only as any client would: over HTTP and WebSockets, or as a
//! Teltonika tracker over TCP (and, for a benchmark's ceiling or its check of what was stored,
//! to PostgreSQL directly); the `geotrack` binary exposes them as subcommands. Every failure is
//! an [`Error`].

pub mod bench_alerts;
pub mod bench_cluster;
pub mod bench_fanout;
pub mod bench_ingest;
pub mod bench_overload;
pub mod bench_tcp;
mod error;
mod light_socket;
pub mod process;
pub mod simulate;
mod stages;

pub use error::Error;
