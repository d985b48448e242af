//! Timestamp forms senders use: epoch seconds or milliseconds (as JSON numbers), RFC 3339,
//! and the looser ISO 8601 and zone-less forms that device apps send.
//!
//! Epoch numbers below 10^11 are seconds (that is every date before the year 5138), larger
//! ones milliseconds (every date after March 1973): the two ranges do not overlap for any fix
//! a real device sends, so no unit flag is needed. The OsmAnd protocol has its own rule, taken
//! from Traccar ([`from_epoch_traccar`]).

use chrono::{DateTime, NaiveDateTime, Utc};
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

/// An epoch integer as Traccar's OsmAnd decoder reads it: seconds when below `i32::MAX`
/// (2038-01-19), milliseconds otherwise.
pub fn from_epoch_traccar(value: i64) -> Result<DateTime<Utc>, Rejection> {
    let parsed = if value < i64::from(i32::MAX) {
        DateTime::from_timestamp(value, 0)
    } else {
        DateTime::from_timestamp_millis(value)
    };
    parsed.ok_or_else(|| Rejection::new("invalid_ts", format!("{value} is not a usable epoch time")))
}

/// An ISO 8601 date-time with a zone: RFC 3339 (`2024-05-01T12:00:00.250Z`, `+02:00`), an
/// offset without a colon or without minutes (`2015-10-01T08:00:00-0700`, `+02`, as Overland
/// and other iOS formatters write it), and Java's `ISO_ZONED_DATE_TIME` with a trailing region
/// (`2016-01-27T18:55:47+01:00[Europe/Paris]`, whose offset already fixes the instant).
pub fn parse_flexible(text: &str) -> Result<DateTime<Utc>, Rejection> {
    let trimmed = text.trim();
    let without_region = match trimmed.find('[') {
        Some(start) if trimmed.ends_with(']') => &trimmed[..start],
        _ => trimmed,
    };
    DateTime::parse_from_rfc3339(without_region)
        .or_else(|_| DateTime::parse_from_str(without_region, "%Y-%m-%dT%H:%M:%S%.f%#z"))
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            Rejection::new(
                "invalid_ts",
                format!("{text:?} is not an ISO 8601 time with a zone (e.g. 2024-05-01T12:00:00Z): {e}"),
            )
        })
}

/// `yyyy-MM-dd HH:mm:ss` (optionally with a fraction) without any zone, read as **UTC**.
///
/// Traccar reads this form in the server's default zone; geotrack's servers run in UTC and a
/// result must not depend on the host's settings, so UTC is the fixed choice.
pub fn parse_naive_utc(text: &str) -> Result<DateTime<Utc>, Rejection> {
    NaiveDateTime::parse_from_str(text.trim(), "%Y-%m-%d %H:%M:%S%.f")
        .map(|t| t.and_utc())
        .map_err(|e| {
            Rejection::new(
                "invalid_ts",
                format!("{text:?} is not a time of the form yyyy-MM-dd HH:mm:ss: {e}"),
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

    #[test]
    fn traccar_epochs_switch_to_milliseconds_at_i32_max() {
        let t = from_epoch_traccar(1_700_000_000).expect("s");
        assert_eq!(t.timestamp(), 1_700_000_000);
        let t = from_epoch_traccar(1_700_000_000_123).expect("ms");
        assert_eq!(t.timestamp_millis(), 1_700_000_000_123);
        assert_eq!(
            from_epoch_traccar(2_147_483_646).expect("s").timestamp(),
            2_147_483_646
        );
        assert_eq!(
            from_epoch_traccar(2_147_483_647).expect("ms").timestamp_millis(),
            2_147_483_647
        );
        assert_eq!(from_epoch_traccar(0).expect("zero").timestamp(), 0);
        assert!(from_epoch_traccar(i64::MAX).is_err());
    }

    #[test]
    fn flexible_iso_accepts_every_offset_form() {
        let expected = from_rfc3339("2015-10-01T15:00:00Z").expect("ts");
        for text in [
            "2015-10-01T15:00:00Z",
            "2015-10-01T08:00:00-07:00",
            "2015-10-01T08:00:00-0700",
            "2015-10-01T08:00:00-07",
            "2015-10-01T17:00:00+02:00[Europe/Paris]",
            " 2015-10-01T15:00:00.000Z ",
        ] {
            assert_eq!(parse_flexible(text).expect(text), expected, "{text}");
        }
        let ms = parse_flexible("2025-06-15T13:45:12.862Z").expect("ms");
        assert_eq!(ms.timestamp_subsec_millis(), 862);
        for bad in ["2015-10-01T15:00:00", "2015-10-01", "yesterday", ""] {
            assert_eq!(parse_flexible(bad).expect_err(bad).code, "invalid_ts", "{bad}");
        }
    }

    #[test]
    fn zoneless_times_are_utc() {
        let t = parse_naive_utc("2014-06-04 09:10:11").expect("ts");
        assert_eq!(t.to_rfc3339(), "2014-06-04T09:10:11+00:00");
        assert!(parse_naive_utc("2014-06-04T09:10:11").is_err());
    }
}
