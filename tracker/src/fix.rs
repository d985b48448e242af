//! The validated position fix and the rules that make a fix acceptable.
//!
//! Every protocol decoder produces a [`RawFix`] (what the sender said, unchecked) and calls
//! [`RawFix::validate`], so one set of rules applies to all ingest paths. A rejected fix carries
//! a stable `code` (a metrics label) and a sentence for the sender.

use chrono::{DateTime, Duration, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A position fix that passed validation: finite numbers, coordinates in range, a usable time.
/// Serialisable for the cluster's fix log, which carries fixes between nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fix {
    pub device: String,
    /// Fix time, truncated to microseconds (PostgreSQL's precision) so de-duplication on
    /// (device, ts) sees exactly what is stored.
    pub ts: DateTime<Utc>,
    pub lon: f64,
    pub lat: f64,
    pub speed_mps: Option<f64>,
    pub heading_deg: Option<f64>,
    pub accuracy_m: Option<f64>,
    pub altitude_m: Option<f64>,
    pub battery: Option<f64>,
    pub attrs: Option<Map<String, Value>>,
    pub received_at: DateTime<Utc>,
}

/// Why one fix was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Short, stable identifier, used as a metrics label (`invalid_lat`, `ts_in_future`, ...).
    pub code: &'static str,
    /// A sentence for the sender.
    pub message: String,
}

impl Rejection {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// Time window a fix must fall in, relative to when it was received.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How far ahead of the receive time a fix may be (clock skew of phones and trackers).
    pub max_future: Duration,
    /// How old a fix may be (buffered history uploaded late is normal; decades-old is a bug).
    pub max_age: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_future: Duration::minutes(5),
            max_age: Duration::days(366),
        }
    }
}

/// A fix as a sender described it, before any check.
#[derive(Debug, Clone, Default)]
pub struct RawFix {
    pub device: Option<String>,
    pub ts: Option<DateTime<Utc>>,
    pub lon: Option<f64>,
    pub lat: Option<f64>,
    pub speed_mps: Option<f64>,
    pub heading_deg: Option<f64>,
    pub accuracy_m: Option<f64>,
    pub altitude_m: Option<f64>,
    pub battery: Option<f64>,
    pub attrs: Option<Map<String, Value>>,
}

impl RawFix {
    /// Checks every rule and returns the fix, or the first rule it breaks.
    pub fn validate(self, received_at: DateTime<Utc>, limits: &Limits) -> Result<Fix, Rejection> {
        let device = validate_device(self.device)?;
        let ts = self
            .ts
            .ok_or_else(|| Rejection::new("missing_ts", "`ts` (the fix time) is required"))?
            .trunc_subsecs(6);
        if ts > received_at + limits.max_future {
            return Err(Rejection::new(
                "ts_in_future",
                format!(
                    "`ts` {} is more than {} s ahead of the server clock ({})",
                    ts.to_rfc3339(),
                    limits.max_future.num_seconds(),
                    received_at.to_rfc3339()
                ),
            ));
        }
        if ts < received_at - limits.max_age {
            return Err(Rejection::new(
                "ts_too_old",
                format!(
                    "`ts` {} is older than the accepted maximum age of {} days",
                    ts.to_rfc3339(),
                    limits.max_age.num_days()
                ),
            ));
        }
        let lat = required_in_range("lat", self.lat, -90.0, 90.0)?;
        let lon = required_in_range("lon", self.lon, -180.0, 180.0)?;
        if let Some(attrs) = &self.attrs {
            check_no_nul(attrs)?;
        }
        Ok(Fix {
            device,
            ts,
            lon,
            lat,
            speed_mps: optional_in_range("speed_mps", self.speed_mps, 0.0, 1.0e4)?,
            heading_deg: optional_in_range("heading_deg", self.heading_deg, 0.0, 360.0)?,
            accuracy_m: optional_in_range("accuracy_m", self.accuracy_m, 0.0, 1.0e7)?,
            altitude_m: optional_in_range("altitude_m", self.altitude_m, -1.2e4, 1.0e6)?,
            battery: optional_in_range("battery", self.battery, 0.0, 100.0)?,
            attrs: self.attrs,
            received_at,
        })
    }
}

fn validate_device(device: Option<String>) -> Result<String, Rejection> {
    let device = device.ok_or_else(|| Rejection::new("missing_device", "`device` is required"))?;
    fences::check_id(&device).map_err(|e| Rejection::new("invalid_device", format!("`device` {e}")))?;
    Ok(device)
}

fn required_in_range(name: &str, value: Option<f64>, min: f64, max: f64) -> Result<f64, Rejection> {
    let value = value.ok_or_else(|| Rejection::new(missing_code(name), format!("`{name}` is required")))?;
    check_range(name, value, min, max)
}

fn optional_in_range(name: &str, value: Option<f64>, min: f64, max: f64) -> Result<Option<f64>, Rejection> {
    value.map(|v| check_range(name, v, min, max)).transpose()
}

fn check_range(name: &str, value: f64, min: f64, max: f64) -> Result<f64, Rejection> {
    if !value.is_finite() {
        return Err(Rejection::new(
            invalid_code(name),
            format!("`{name}` must be a finite number"),
        ));
    }
    if !(min..=max).contains(&value) {
        return Err(Rejection::new(
            invalid_code(name),
            format!("`{name}` is {value}; it must be between {min} and {max}"),
        ));
    }
    Ok(value)
}

/// PostgreSQL's text and jsonb types cannot hold U+0000, so such a fix would fail its whole batch.
fn check_no_nul(attrs: &Map<String, Value>) -> Result<(), Rejection> {
    if fences::fence::map_holds_nul(attrs) {
        return Err(Rejection::new(
            "invalid_attrs",
            "`attrs` contains a NUL character (\\u0000), which cannot be stored",
        ));
    }
    Ok(())
}

fn missing_code(name: &str) -> &'static str {
    match name {
        "lat" => "missing_lat",
        _ => "missing_lon",
    }
}

fn invalid_code(name: &str) -> &'static str {
    match name {
        "lat" => "invalid_lat",
        "lon" => "invalid_lon",
        "speed_mps" => "invalid_speed",
        "heading_deg" => "invalid_heading",
        "accuracy_m" => "invalid_accuracy",
        "altitude_m" => "invalid_altitude",
        _ => "invalid_battery",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(now: DateTime<Utc>) -> RawFix {
        RawFix {
            device: Some("truck-1".into()),
            ts: Some(now),
            lon: Some(13.4),
            lat: Some(52.5),
            ..RawFix::default()
        }
    }

    #[test]
    fn a_complete_fix_passes_and_is_truncated_to_microseconds() {
        let now = Utc::now();
        let fix = raw(now).validate(now, &Limits::default()).expect("valid");
        assert_eq!(fix.ts, now.trunc_subsecs(6));
        assert_eq!((fix.lon, fix.lat), (13.4, 52.5));
    }

    #[test]
    fn each_rule_has_its_own_code() {
        let now = Utc::now();
        let limits = Limits::default();
        let cases: Vec<(RawFix, &str)> = vec![
            (
                RawFix {
                    device: None,
                    ..raw(now)
                },
                "missing_device",
            ),
            (
                RawFix {
                    device: Some(" ".into()),
                    ..raw(now)
                },
                "invalid_device",
            ),
            (
                RawFix {
                    device: Some("a".repeat(129)),
                    ..raw(now)
                },
                "invalid_device",
            ),
            (
                RawFix {
                    device: Some("a\nb".into()),
                    ..raw(now)
                },
                "invalid_device",
            ),
            (RawFix { ts: None, ..raw(now) }, "missing_ts"),
            (
                RawFix {
                    ts: Some(now + Duration::minutes(6)),
                    ..raw(now)
                },
                "ts_in_future",
            ),
            (
                RawFix {
                    ts: Some(now - Duration::days(400)),
                    ..raw(now)
                },
                "ts_too_old",
            ),
            (
                RawFix {
                    lat: None,
                    ..raw(now)
                },
                "missing_lat",
            ),
            (
                RawFix {
                    lon: None,
                    ..raw(now)
                },
                "missing_lon",
            ),
            (
                RawFix {
                    lat: Some(90.5),
                    ..raw(now)
                },
                "invalid_lat",
            ),
            (
                RawFix {
                    lon: Some(f64::NAN),
                    ..raw(now)
                },
                "invalid_lon",
            ),
            (
                RawFix {
                    speed_mps: Some(-1.0),
                    ..raw(now)
                },
                "invalid_speed",
            ),
            (
                RawFix {
                    heading_deg: Some(f64::INFINITY),
                    ..raw(now)
                },
                "invalid_heading",
            ),
            (
                RawFix {
                    battery: Some(101.0),
                    ..raw(now)
                },
                "invalid_battery",
            ),
        ];
        for (fix, code) in cases {
            let err = fix.validate(now, &limits).expect_err(code);
            assert_eq!(err.code, code, "{}", err.message);
        }
    }

    #[test]
    fn nul_characters_in_attrs_are_rejected_anywhere() {
        let now = Utc::now();
        let attrs = serde_json::json!({"a": {"b": ["ok", "bad\u{0}"]}});
        let fix = RawFix {
            attrs: attrs.as_object().cloned(),
            ..raw(now)
        };
        assert_eq!(
            fix.validate(now, &Limits::default()).expect_err("nul").code,
            "invalid_attrs"
        );
    }

    #[test]
    fn the_time_window_edges_are_inclusive() {
        let now = Utc::now().trunc_subsecs(6);
        let limits = Limits::default();
        let edge = RawFix {
            ts: Some(now + limits.max_future),
            ..raw(now)
        };
        assert!(edge.validate(now, &limits).is_ok());
    }
}
