//! Ingest for geotrack: turns what devices and programs post into validated [`Fix`] values,
//! writes them durably into PostGIS through a sharded batch writer, reads live positions
//! ([`latest`]) and feeds them to map views ([`live`]).
//!
//! Nothing here knows HTTP: the binary's handlers call [`decode`] to parse a body, hand the
//! accepted fixes to a [`Pipeline`], and answer only once the pipeline says they are committed.

pub mod decode;
pub mod export;
pub mod fix;
pub mod gpx;
pub mod history;
pub mod latest;
pub mod live;
pub mod metrics;
pub mod outbox;
pub mod ownership;
pub mod pipeline;
pub mod protocols;
pub mod registry;
pub mod shard;
mod writer;

pub use fix::{Fix, Limits, Rejection};
pub use pipeline::{CommitHook, Pipeline, PipelineConfig, SubmitError, Submitted};
