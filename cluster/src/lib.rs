//! Cluster mode for geotrack on NATS JetStream: several `geotrack serve` processes against one
//! PostgreSQL, any of them serving any request.
//!
//! - [`fixlog`]: JetStream is the log of acknowledged fixes. A node answers a client once
//!   JetStream has stored every fix of the request, on one subject per partition (the stable
//!   device hash of [`tracker::shard`]).
//! - [`leases`]: each partition has one owner at a time, by a lease in a JetStream KV bucket,
//!   spread over the live nodes by rendezvous hashing. The owner reads its partitions' fixes in
//!   order, writes them to PostgreSQL, evaluates them and commits alerts; the lease's epoch
//!   fences those writes in PostgreSQL, so a deposed owner cannot commit.
//! - [`owner`]: for each partition it owns, a node claims it in PostgreSQL and stores its fixes
//!   through the ingest pipeline, fenced by the lease's epoch.
//! - [`fanout`]: what every node must see of the others' work (live positions, tile changes)
//!   goes over core NATS subjects.
//!
//! Nothing here knows HTTP; the service crate wires it to the pipeline and evaluators.

pub mod config;
pub mod error;
pub mod fanout;
pub mod fixlog;
pub mod leases;
pub mod names;
pub mod nats;
pub mod owner;

pub use config::ClusterConfig;
pub use error::ClusterError;
pub use names::Names;
