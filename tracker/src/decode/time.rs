//! Timestamp forms senders use: epoch seconds or milliseconds (as JSON numbers) and RFC 3339.
//!
//! Epoch numbers below 10^11 are seconds (that is every date before the year 5138), larger
//! ones milliseconds (every date after March 1973): the two ranges do not overlap for any fix
//! a real device sends, so no unit flag is needed.

use chrono::{DateTime, Utc};
use serde_json::Number;

use crate::fix::Rejection;

/// Epoch values at or above this are milliseconds.
const MILLIS_THRESHOLD: f64 = 1.0e11;

/// A JSON number of epoch seconds or milliseconds (fractions allowed).
pub fn from_epoch_number(n: &Number) -> Result<DateTime<Utc>, Rejection> {
    let parsed = if let Some(i) = n.as_i64() {
        if (i as f64) < MILLIS_THRESHOLD {
            DateTime::from_timestamp(i, 0)
        } else {
            DateTime::from_timestamp_millis(i)
        }
    } else {
        n.as_f64().and_then(from_epoch_f64)
    };
    parsed.ok_or_else(|| Rejection::new("invalid_ts", format!("`ts` {n} is not a usable epoch time")))
}

fn from_epoch_f64(value: f64) -> Option<DateTime<Utc>> {
    if !value.is_finite() {
        return None;
    }
    let micros = if value < MILLIS_THRESHOLD {
        value * 1e6
    } else {
        value * 1e3
    };
    if micros.abs() > 9.0e18 {
        return None;
    }
    DateTime::from_timestamp_micros(micros.round() as i64)
}

/// An RFC 3339 timestamp with an offset, e.g. `2024-05-01T12:00:00.250+02:00`.
pub fn from_rfc3339(text: &str) -> Result<DateTime<Utc>, Rejection> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            Rejection::new(
                "invalid_ts",
                format!("`ts` {text:?} is not RFC 3339 (e.g. 2024-05-01T12:00:00Z): {e}"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(text: &str) -> Number {
        serde_json::from_str(text).expect("number")
    }

    #[test]
    fn seconds_milliseconds_and_fractions() {
        let expected = DateTime::parse_from_rfc3339("2023-11-14T22:13:20Z").expect("ts");
        assert_eq!(from_epoch_number(&num("1700000000")).expect("s"), expected);
        assert_eq!(from_epoch_number(&num("1700000000000")).expect("ms"), expected);
        assert_eq!(
            from_epoch_number(&num("1700000000.5"))
                .expect("fraction")
                .timestamp_subsec_millis(),
            500
        );
        assert_eq!(
            from_epoch_number(&num("1700000000250.0"))
                .expect("fractional ms")
                .timestamp_subsec_millis(),
            250
        );
    }

    #[test]
    fn absurd_numbers_are_rejected_not_panicking() {
        assert!(from_epoch_number(&num("1e300")).is_err());
        assert!(from_epoch_number(&num("9223372036854775807")).is_err());
    }

    #[test]
    fn rfc3339_offsets_are_converted_to_utc() {
        let t = from_rfc3339("2024-05-01T14:00:00+02:00").expect("ts");
        assert_eq!(t.to_rfc3339(), "2024-05-01T12:00:00+00:00");
        assert_eq!(from_rfc3339("yesterday").expect_err("bad").code, "invalid_ts");
    }
}
