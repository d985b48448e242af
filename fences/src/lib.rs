//! Pure geofence engine for geotrack: the fence model and its validation
//! ([`fence`]), fences as GeoJSON Features ([`feature`]), antimeridian and pole
//! normalisation ([`normalize`]), FeatureCollection imports ([`collection`]), exact point-in-fence tests and metric distances
//! ([`exact`]), an index that answers "which fences contain this point" without
//! testing every fence (a 1° tile pre-filter, exact tests for cheap fences, H3
//! covers for costly ones: [`index`]), the per-(device, fence)
//! enter/exit/dwell/overspeed state machine ([`state`]), and the pure value
//! types every geotrack crate shares: [`Bbox`], the antimeridian-aware box, and
//! [`DeviceFilter`], the devices a reader may see, and [`Groups`], named sets of
//! devices. No I/O: callers persist
//! [`FenceState`] values and feed fixes in.

pub mod bbox;
pub mod collection;
pub mod devices;
pub mod error;
pub mod exact;
pub mod feature;
pub mod fence;
pub mod geodesy;
pub mod groups;
pub mod id;
pub mod index;
pub mod normalize;
pub mod state;
pub mod validity;

pub use bbox::{Bbox, BboxError};
pub use devices::DeviceFilter;
pub use error::FenceError;
pub use exact::PreparedFence;
pub use fence::{AppliesTo, Fence, FenceKind, FenceLimits, Position};
pub use groups::{Group, Groups};
pub use id::{IdError, check_id};
pub use index::{Candidate, FenceIndex, Hit, IndexConfig, IndexStats, IndexedFence};
pub use state::{FenceState, Fix, StateConfig, Status, Transition, TransitionKind, dwell_due_at, step, tick};
