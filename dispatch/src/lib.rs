//! Dispatch for geotrack: the questions a dispatcher asks of the fleet. Which vehicles are
//! nearest to this pickup, right now? Which are inside this district? (Answered from an
//! in-memory index of every device's newest position ([`LiveIndex`], kept current from the
//! live feed by [`sync::Sync`]), never by scanning a table.) Where did this van go today, and
//! where did it stop?
//!
//! - [`sphere`]: positions as unit vectors, so nearest-neighbour search has no seam at the
//!   antimeridian or the poles;
//! - [`index`]: the index and its exact queries (k nearest within a radius, in a box, in a
//!   polygon or circle);
//! - [`filter`]: what a query may return (age, id prefixes, a token's device limit narrowed to a
//!   group);
//! - [`group_store`]: the table of device groups (`fences::groups`); [`announce`]: the `NOTIFY`
//!   its writes and the proximity rules' commit with;
//! - [`shared`]: the index shared by handlers and the task that updates it;
//! - [`sync`]: that task (load, follow the feed, reload when frames may have been lost);
//! - [`roam`]: proximity rules and the near pairs they find (alerts `near` and `apart`);
//! - [`trips`]: trips, stops and a summary cut from a history; [`history`] streams a device's
//!   fixes into it.
//!
//! No HTTP here: the service crate maps requests to these calls.

pub mod announce;
pub mod config;
pub mod filter;
pub mod group_store;
pub mod history;
pub mod index;
pub mod roam;
pub mod shared;
pub mod sphere;
pub mod sync;
pub mod trips;

pub use config::DispatchConfig;
pub use fences::groups::{Group, Groups};
pub use filter::Filter;
pub use index::{LiveIndex, Nearby, Within};
pub use shared::{IndexChange, SharedLiveIndex};

/// What the dispatch routes share: the index, the groups, the proximity rules and the limits of
/// their queries.
#[derive(Debug)]
pub struct Dispatch {
    pub index: SharedLiveIndex,
    pub groups: Groups,
    pub rules: roam::Rules,
    pub config: DispatchConfig,
}
