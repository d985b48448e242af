//! Decoders for what device apps send: the OsmAnd protocol (OsmAnd, Traccar Client 8.x and
//! 10.x, and the Traccar Client 9.x JSON body), OwnTracks HTTP mode and Overland batches.
//!
//! The decoders are pure: the HTTP handler extracts parameters, headers and the body, a
//! decoder turns them into unchecked [`RawFix`] values or says why the message holds none, and
//! the handler validates each fix with [`RawFix::validate`]. Apps retry any non-2xx answer
//! forever (`tracker/PROTOCOLS.md` section 5), so a message that is not a position
//! ([`Message::Ignored`]) and one that cannot be used ([`Message::Unusable`]) are both answered
//! with success; the two variants exist so that handlers count and log them apart.
//!
//! Conventions shared by all decoders: the `-1` (or any negative) "unknown" markers of speed,
//! heading, accuracy and battery become `None`; an accuracy of exactly `0` is "not reported"
//! (Traccar Client for Android sends `0.0`); everything a protocol sends beyond the [`RawFix`]
//! columns goes into `attrs` under the sender's own field name.

pub mod form;
pub mod osmand;
pub mod overland;
pub mod owntracks;

use serde_json::{Map, Value};

use crate::fix::RawFix;

/// What one device message turned out to be.
#[derive(Debug, Clone)]
pub enum Message {
    /// Position fixes to store (unchecked; the caller validates each).
    Fixes(Vec<RawFix>),
    /// Understood, but not a position (an OwnTracks card, transition or waypoint, an encrypted
    /// payload, a heartbeat without coordinates, an empty body): answer success, store nothing.
    /// `reason` is a stable metrics label, e.g. `heartbeat`, `owntracks_card`, `empty_body`.
    Ignored { reason: &'static str },
    /// A position message that cannot be used (no device identity, no coordinates on a
    /// position, an unparseable body or field): answer success, store nothing, count and log.
    /// `reason` is a stable metrics label (`missing_device`, `missing_coordinates`,
    /// `malformed_body`, `invalid_field`, ...), `detail` a sentence for the log.
    Unusable { reason: &'static str, detail: String },
}

impl Message {
    fn unusable(reason: &'static str, detail: impl Into<String>) -> Self {
        Self::Unusable {
            reason,
            detail: detail.into(),
        }
    }
}

/// A speed, heading or battery value where any negative number means "unknown".
fn known(value: Option<f64>) -> Option<f64> {
    value.filter(|v| *v >= 0.0)
}

/// An accuracy, where negative means "unknown" and `0` means "not reported".
fn known_accuracy(value: Option<f64>) -> Option<f64> {
    value.filter(|v| *v > 0.0)
}

/// The number a JSON value holds, if it is a number.
fn number(value: Option<&Value>) -> Option<f64> {
    value.and_then(Value::as_f64)
}

/// `attrs` as [`RawFix`] wants it: `None` rather than an empty map.
fn into_attrs(attrs: Map<String, Value>) -> Option<Map<String, Value>> {
    (!attrs.is_empty()).then_some(attrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_markers_become_none() {
        assert_eq!(known(Some(-1.0)), None);
        assert_eq!(known(Some(0.0)), Some(0.0));
        assert_eq!(known_accuracy(Some(0.0)), None);
        assert_eq!(known_accuracy(Some(-1.0)), None);
        assert_eq!(known_accuracy(Some(4.5)), Some(4.5));
        assert_eq!(number(Some(&Value::from(37))), Some(37.0));
        assert_eq!(number(Some(&Value::from("37"))), None);
        assert!(into_attrs(Map::new()).is_none());
    }
}
