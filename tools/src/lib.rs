//! Clients of a running geotrack, kept out of the service: the fleet simulator
//! ([`simulate`], also the demo fleet of `geotrack serve --demo`) and the load benchmarks
//! ([`bench_ingest`], [`bench_alerts`], [`bench_overload`], [`bench_cluster`]). They speak to the server only over
//! HTTP and WebSockets, as any client would (and, for a benchmark's ceiling or its check of what
//! was stored, to PostgreSQL directly); the `geotrack` binary exposes them as subcommands. Every
//! failure is an [`Error`].

pub mod bench_alerts;
pub mod bench_cluster;
pub mod bench_ingest;
pub mod bench_overload;
mod error;
pub mod process;
pub mod simulate;

pub use error::Error;
