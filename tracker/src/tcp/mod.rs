//! Binary protocols of hardware trackers that talk TCP, as pure `tokio_util` codecs: each
//! frames a byte stream into whole messages whatever the TCP segmentation, checks them, and
//! turns their positions into unchecked [`crate::fix::RawFix`] values. No sockets here: the
//! binary's listeners own the connections, authentication and acknowledgements.

pub mod gt06;
pub mod metrics;
pub mod teltonika;

/// A framing error of a tracker protocol.
pub trait FrameError: std::error::Error {
    /// A short, stable label for metrics.
    fn reason(&self) -> &'static str;
}
