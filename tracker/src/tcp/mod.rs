//! Binary protocols of hardware trackers that talk TCP, as pure `tokio_util` codecs: each
//! frames a byte stream into whole messages whatever the TCP segmentation, checks them, and
//! turns their positions into unchecked [`crate::fix::RawFix`] values. No sockets here: the
//! binary's listeners own the connections, authentication and acknowledgements.

pub mod gt06;
pub mod metrics;
pub mod teltonika;
