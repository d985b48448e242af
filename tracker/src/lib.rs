//! Ingest for geotrack: turns what devices and programs post into validated [`Fix`] values,
//! writes them durably into PostGIS through a sharded batch writer, reads live positions
//! ([`latest`]) and feeds them to map views ([`live`]).
//!
//! Nothing here knows HTTP: the binary's handlers call [`decode`] to parse a body, hand the
//! accepted fixes to a [`Pipeline`], and answer only once the pipeline says they are committed.

mod arrivals;
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
pub mod tcp;
mod writer;

pub use fix::{Fix, Limits, Rejection};
pub use pipeline::{CommitHook, Pipeline, PipelineConfig, SubmitError, Submitted};

/// A name no other writer of the database uses, for one writer of this process (the alert
/// writer's commit marks, the fence registry's and the proximity rules' change announcements):
/// the process id, the time and a counter, so several nodes in one process (tests) get
/// different names too.
pub fn instance_tag() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!(
        "{}-{}-{n}",
        std::process::id(),
        chrono::Utc::now().timestamp_micros()
    )
}
