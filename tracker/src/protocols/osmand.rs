//! The OsmAnd protocol as Traccar defines and parses it (`tracker/PROTOCOLS.md` 1.2): what the
//! OsmAnd app, Traccar Client up to 8.x (query string) and 10.x (form body) send, plus the
//! JSON body of Traccar Client 9.x ([`decode_json`], section 2.2).
//!
//! [`decode_params`] takes the parameters the handler extracted: the query string, or the
//! form body when the query string is empty (Traccar's rule). Repeated keys are processed in
//! order, so the last one wins, except `cell` and `wifi`, which accumulate. A parameter
//! geotrack understands but cannot parse makes the message [`Message::Unusable`], as Traccar
//! answers it with an error; unknown parameters never do, they become attributes.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde_json::{Map, Number, Value};

use super::{Message, into_attrs, known, known_accuracy};
use crate::decode::time;
use crate::fix::RawFix;

/// The unit of the `speed` parameter, an operator setting per endpoint (Traccar's
/// `osmand.speed`). Traccar Client sends knots, the OsmAnd app metres per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SpeedUnit {
    /// Traccar's default, and what Traccar Client 8.x and 10.x send.
    #[default]
    Knots,
    /// What the OsmAnd app's `{5}` placeholder holds.
    Mps,
    Kmh,
    Mph,
}

impl SpeedUnit {
    /// The speed in metres per second.
    pub fn to_mps(self, value: f64) -> f64 {
        match self {
            Self::Knots => value * 1852.0 / 3600.0,
            Self::Mps => value,
            Self::Kmh => value / 3.6,
            Self::Mph => value * 0.447_04,
        }
    }
}

impl FromStr for SpeedUnit {
    type Err = OsmandError;

    /// `knots`/`kn`, `mps`/`ms`, `kmh`/`kph`, `mph` (any case).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "knots" | "kn" => Ok(Self::Knots),
            "mps" | "ms" => Ok(Self::Mps),
            "kmh" | "kph" => Ok(Self::Kmh),
            "mph" => Ok(Self::Mph),
            other => Err(OsmandError::UnknownSpeedUnit(other.to_owned())),
        }
    }
}

/// A speed unit, a parameter or a JSON field that cannot be read. For a parameter or field the
/// message becomes the detail of [`Message::Unusable`] (`invalid_field`), which handlers log and
/// count; for a speed unit it reaches whoever configured it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OsmandError {
    /// A speed unit that is none of those [`SpeedUnit`] parses (as lowercased).
    #[error("unknown speed unit {0:?}; expected knots, mps, kmh or mph")]
    UnknownSpeedUnit(String),
    /// A numeric parameter (`lat`, `speed`, ...) that holds other text.
    #[error("`{key}` {value:?} is not a number")]
    NotANumber { key: String, value: String },
    /// A `location` parameter without the comma of `lat,lon`.
    #[error("`location` {0:?} is not `lat,lon`")]
    Location(String),
    /// A `timestamp` parameter in none of the accepted forms; the text says why.
    #[error("`timestamp`: {0}")]
    Timestamp(String),
    /// A `cell` parameter with fewer than four or more than five parts.
    #[error("`cell` {0:?} is not `mcc,mnc,lac,cid[,rssi]`")]
    Cell(String),
    /// A part of a `cell` parameter that is not an integer.
    #[error("`cell` {value:?}: {name} {part:?} is not an integer")]
    CellPart {
        value: String,
        name: &'static str,
        part: String,
    },
    /// A `wifi` parameter without the comma of `mac,rssi`.
    #[error("`wifi` {0:?} is not `mac,rssi`")]
    Wifi(String),
    /// The signal strength of a `wifi` parameter is not an integer.
    #[error("`wifi` {value:?}: rssi {rssi:?} is not an integer")]
    WifiRssi { value: String, rssi: String },
    /// A JSON `location.timestamp` text or number that is not a usable time; the text says why.
    #[error("`location.timestamp`: {0}")]
    JsonTimestamp(String),
    /// A JSON `location.timestamp` that is neither text nor a number.
    #[error("`location.timestamp` {0} is not a time")]
    JsonNotATime(Value),
    /// A numeric JSON field (`coords.latitude`, `battery.level`, ...) holding another type.
    #[error("`{key}` {value} is not a number")]
    JsonNotANumber { key: &'static str, value: Value },
}

/// Decodes one OsmAnd-protocol request from its parameters, in request order.
///
/// - `id` or `deviceid` is the device; without it the message is unusable (`missing_device`).
/// - `timestamp`: an integer is epoch seconds below `i32::MAX`, else milliseconds; text with a
///   `T` is ISO 8601 with a zone; otherwise `yyyy-MM-dd HH:mm:ss`, read as UTC (Traccar uses the
///   server's zone); missing means `received_at`.
/// - `lat`/`lon` or `location=lat,lon`. No coordinates at all is a heartbeat (Traccar Client
///   10.x) and [`Message::Ignored`]; cell or wifi data without coordinates, or only one
///   coordinate, is `missing_coordinates`: geotrack has no cell/wifi geolocation.
/// - `speed` in `speed_unit`; `bearing`/`heading`; `altitude`; `accuracy` (metres, `0` is "not
///   reported"); `batt` (percent). Negative values mean unknown.
/// - `hdop` is kept as the attribute `hdop`, as Traccar does, although the OsmAnd app's `{3}`
///   placeholder named hdop actually holds `Location.getAccuracy()` in metres.
/// - `charge` and `valid` (`true`/`1`) become boolean attributes; a `valid=false` fix is still
///   stored. `cell=mcc,mnc,lac,cid[,rssi]` and `wifi=mac,rssi` accumulate into the `cell` and
///   `wifi` attribute arrays. `driverUniqueId` is kept as text.
/// - `token` (geotrack's own authentication parameter) and `notificationToken` (a push token)
///   are secrets and never stored.
/// - Every other parameter becomes an attribute: `true`/`false` as booleans, numbers as
///   numbers (integers only when lossless: `0123` and 20-digit ids stay text), else text.
///   Floats in Java's `toString()` form, `5.0E-4` included, parse everywhere.
pub fn decode_params(
    params: &[(String, String)],
    speed_unit: SpeedUnit,
    received_at: DateTime<Utc>,
) -> Message {
    let mut request = Request::default();
    for (key, value) in params {
        if let Err(detail) = request.apply(key, value, speed_unit) {
            return Message::unusable("invalid_field", detail.to_string());
        }
    }
    request.into_message(received_at)
}

/// The parameters read so far.
#[derive(Default)]
struct Request {
    device: Option<String>,
    ts: Option<DateTime<Utc>>,
    lat: Option<f64>,
    lon: Option<f64>,
    speed_mps: Option<f64>,
    heading_deg: Option<f64>,
    altitude_m: Option<f64>,
    accuracy_m: Option<f64>,
    battery: Option<f64>,
    attrs: Map<String, Value>,
    cells: Vec<Value>,
    wifi: Vec<Value>,
}

impl Request {
    fn apply(&mut self, key: &str, value: &str, speed_unit: SpeedUnit) -> Result<(), OsmandError> {
        match key {
            "id" | "deviceid" => self.device = Some(value.to_owned()).filter(|v| !v.trim().is_empty()),
            "timestamp" => {
                if let Some(text) = non_empty(value) {
                    self.ts = Some(parse_timestamp(text)?);
                }
            }
            "lat" => self.lat = float(key, value)?,
            "lon" => self.lon = float(key, value)?,
            "location" => {
                let (lat, lon) = value
                    .split_once(',')
                    .ok_or_else(|| OsmandError::Location(value.to_owned()))?;
                self.lat = float(key, lat)?;
                self.lon = float(key, lon)?;
            }
            "speed" => self.speed_mps = known(finite(float(key, value)?).map(|v| speed_unit.to_mps(v))),
            "bearing" | "heading" => self.heading_deg = known(finite(float(key, value)?)),
            "altitude" => self.altitude_m = finite(float(key, value)?),
            "accuracy" => self.accuracy_m = known_accuracy(finite(float(key, value)?)),
            "batt" => self.battery = known(finite(float(key, value)?)),
            "hdop" => {
                if let Some(hdop) = finite(float(key, value)?).and_then(Number::from_f64) {
                    self.attrs.insert("hdop".into(), Value::Number(hdop));
                }
            }
            "charge" | "valid" => {
                self.attrs.insert(key.into(), Value::Bool(truthy(value)));
            }
            "cell" => self.cells.push(parse_cell(value)?),
            "wifi" => self.wifi.push(parse_wifi(value)?),
            "driverUniqueId" => {
                self.attrs.insert(key.into(), Value::String(value.into()));
            }
            "" | "token" | "notificationToken" => {}
            _ => {
                self.attrs.insert(key.into(), text_value(value));
            }
        }
        Ok(())
    }

    fn into_message(mut self, received_at: DateTime<Utc>) -> Message {
        let Some(device) = self.device else {
            return Message::unusable(
                "missing_device",
                "the request has no `id` (or `deviceid`) parameter naming the device",
            );
        };
        let (lat, lon) = match (self.lat, self.lon) {
            (Some(lat), Some(lon)) => (lat, lon),
            (None, None) if self.cells.is_empty() && self.wifi.is_empty() => {
                return Message::Ignored { reason: "heartbeat" };
            }
            (None, None) => {
                return Message::unusable(
                    "missing_coordinates",
                    format!("device {device:?} sent only cell/wifi data; geotrack cannot geolocate it"),
                );
            }
            _ => {
                return Message::unusable(
                    "missing_coordinates",
                    format!("device {device:?} sent only one of `lat` and `lon`"),
                );
            }
        };
        if !self.cells.is_empty() {
            self.attrs.insert("cell".into(), Value::Array(self.cells));
        }
        if !self.wifi.is_empty() {
            self.attrs.insert("wifi".into(), Value::Array(self.wifi));
        }
        Message::Fixes(vec![RawFix {
            device: Some(device),
            ts: Some(self.ts.unwrap_or(received_at)),
            lon: Some(lon),
            lat: Some(lat),
            speed_mps: self.speed_mps,
            heading_deg: self.heading_deg,
            accuracy_m: self.accuracy_m,
            altitude_m: self.altitude_m,
            battery: self.battery,
            attrs: into_attrs(self.attrs),
        }])
    }
}

fn non_empty(value: &str) -> Option<&str> {
    Some(value.trim()).filter(|v| !v.is_empty())
}

/// A float parameter; empty means absent. Accepts Java's `toString()` forms (`5.0E-4`, `NaN`).
fn float(key: &str, value: &str) -> Result<Option<f64>, OsmandError> {
    non_empty(value)
        .map(|text| {
            text.parse::<f64>().map_err(|_| OsmandError::NotANumber {
                key: key.to_owned(),
                value: value.to_owned(),
            })
        })
        .transpose()
}

/// Optional measurements that are not finite (Java's `NaN`, `Infinity`) are unknown.
fn finite(value: Option<f64>) -> Option<f64> {
    value.filter(|v| v.is_finite())
}

/// Traccar's reading of `valid` and `charge`: `true` (any case) or `1`.
fn truthy(value: &str) -> bool {
    let value = value.trim();
    value.eq_ignore_ascii_case("true") || value == "1"
}

fn parse_timestamp(text: &str) -> Result<DateTime<Utc>, OsmandError> {
    let parsed = if let Ok(epoch) = text.parse::<i64>() {
        time::from_epoch_traccar(epoch)
    } else if text.contains('T') {
        time::parse_flexible(text)
    } else {
        time::parse_naive_utc(text)
    };
    parsed.map_err(|rejection| OsmandError::Timestamp(rejection.message))
}

/// `cell=mcc,mnc,lac,cid[,rssi]`.
fn parse_cell(value: &str) -> Result<Value, OsmandError> {
    let parts: Vec<&str> = value.split(',').map(str::trim).collect();
    if !(4..=5).contains(&parts.len()) {
        return Err(OsmandError::Cell(value.to_owned()));
    }
    let mut cell = Map::new();
    for (name, part) in ["mcc", "mnc", "lac", "cid", "rssi"].into_iter().zip(parts) {
        let number: i64 = part.parse().map_err(|_| OsmandError::CellPart {
            value: value.to_owned(),
            name,
            part: part.to_owned(),
        })?;
        cell.insert(name.into(), Value::from(number));
    }
    Ok(Value::Object(cell))
}

/// `wifi=mac,rssi`, the MAC written with dashes (stored with colons, as Traccar does).
fn parse_wifi(value: &str) -> Result<Value, OsmandError> {
    let (mac, rssi) = value
        .split_once(',')
        .ok_or_else(|| OsmandError::Wifi(value.to_owned()))?;
    let rssi: i64 = rssi.trim().parse().map_err(|_| OsmandError::WifiRssi {
        value: value.to_owned(),
        rssi: rssi.to_owned(),
    })?;
    let mut wifi = Map::new();
    wifi.insert("mac".into(), Value::String(mac.trim().replace('-', ":")));
    wifi.insert("rssi".into(), Value::from(rssi));
    Ok(Value::Object(wifi))
}

/// An unknown parameter as an attribute: `true`/`false` as booleans; integers when they fit
/// an `i64` and have no leading zero (identifiers such as ICCIDs keep every digit); other
/// finite floats as numbers; anything else as text.
fn text_value(text: &str) -> Value {
    match text {
        "true" => return Value::Bool(true),
        "false" => return Value::Bool(false),
        _ => {}
    }
    let digits = text.strip_prefix('-').unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        if (digits.len() == 1 || !digits.starts_with('0'))
            && let Ok(integer) = text.parse::<i64>()
        {
            return Value::from(integer);
        }
        return Value::String(text.to_owned());
    }
    text.parse::<f64>()
        .ok()
        .and_then(Number::from_f64)
        .map_or_else(|| Value::String(text.to_owned()), Value::Number)
}

/// Decodes a Traccar Client 9.x JSON body (`tracker/PROTOCOLS.md` 2.2):
/// `{"device_id": …, "location": {…}}`, where `location` may also be an array (the SDK's batch
/// sync), or a top-level array of such objects.
///
/// - `location.timestamp` is ISO 8601 (an epoch number is accepted too); missing means
///   `received_at`.
/// - `coords.{latitude, longitude, accuracy, speed (m/s), heading, altitude}`; `-1` is unknown.
///   A location without coordinates is a heartbeat ([`Message::Ignored`]) when its
///   `extras.heartbeat` is `true`, else `missing_coordinates`.
/// - `battery.level` (0..1) becomes a percentage; `battery.is_charging` the attribute
///   `charge` (the name the query-string form uses).
/// - `is_moving`, `odometer`, `event`, `activity.type` (as `activity`), `activity.confidence`
///   (as `activity_confidence`), `mock`, `alarm`, `uuid`, `age`, the `*_accuracy` fields,
///   `ellipsoidal_altitude` and `floor` become attributes (nulls and negative accuracies are
///   left out); then `extras` is copied in without overwriting any of them.
/// - The top-level `"_"` field (a form-encoded copy for old servers) is ignored.
///
/// In a batch, the result is [`Message::Fixes`] with every usable location when there is at
/// least one (heartbeats and unusable locations among them are dropped; the SDK's batch sync
/// is off in Traccar Client), otherwise the classification of the first location.
pub fn decode_json(body: &Value, received_at: DateTime<Utc>) -> Message {
    match body {
        Value::Array(items) => batch(items.iter().map(|item| json_message(item, received_at))),
        Value::Object(_) => json_message(body, received_at),
        _ => Message::unusable(
            "malformed_body",
            "a Traccar Client JSON body must be an object or an array of objects",
        ),
    }
}

fn batch(messages: impl Iterator<Item = Message>) -> Message {
    let mut fixes = Vec::new();
    let mut first_other = None;
    for message in messages {
        match message {
            Message::Fixes(more) => fixes.extend(more),
            other => {
                first_other.get_or_insert(other);
            }
        }
    }
    if fixes.is_empty() {
        first_other.unwrap_or(Message::Ignored { reason: "empty_body" })
    } else {
        Message::Fixes(fixes)
    }
}

fn json_message(root: &Value, received_at: DateTime<Utc>) -> Message {
    let Some(root) = root.as_object() else {
        return Message::unusable("malformed_body", "a batch element is not a JSON object");
    };
    let device = match root.get("device_id") {
        Some(Value::String(id)) if !id.trim().is_empty() => Some(id.clone()),
        Some(Value::Number(id)) => Some(id.to_string()),
        _ => None,
    };
    match root.get("location") {
        Some(Value::Array(locations)) => batch(
            locations
                .iter()
                .map(|location| json_location(device.as_deref(), location, received_at)),
        ),
        Some(location @ Value::Object(_)) => json_location(device.as_deref(), location, received_at),
        _ => Message::unusable("malformed_body", "the JSON body has no `location` object"),
    }
}

fn json_location(device: Option<&str>, location: &Value, received_at: DateTime<Utc>) -> Message {
    match json_fix(device, location, received_at) {
        Ok(message) => message,
        Err(detail) => Message::unusable("invalid_field", detail.to_string()),
    }
}

/// One location of a Traccar Client 9.x body: a fix, a heartbeat, or unusable. `Err` is a field
/// that does not parse (`invalid_field`); the checks run in the order the fields were always
/// read, so a location with several bad fields names the same one.
fn json_fix(
    device: Option<&str>,
    location: &Value,
    received_at: DateTime<Utc>,
) -> Result<Message, OsmandError> {
    let Some(device) = device else {
        return Ok(Message::unusable(
            "missing_device",
            "the JSON body has no `device_id`",
        ));
    };
    let empty = Value::Null;
    let coords = location.get("coords").unwrap_or(&empty);
    let battery = location.get("battery").unwrap_or(&empty);
    let extras = location.get("extras").and_then(Value::as_object);
    let (lat, lon) = match (
        json_number(coords, "latitude")?,
        json_number(coords, "longitude")?,
    ) {
        (Some(lat), Some(lon)) => (lat, lon),
        (None, None) if extras.and_then(|e| e.get("heartbeat")) == Some(&Value::Bool(true)) => {
            return Ok(Message::Ignored { reason: "heartbeat" });
        }
        _ => {
            return Ok(Message::unusable(
                "missing_coordinates",
                format!("device {device:?} sent a location without `coords.latitude`/`longitude`"),
            ));
        }
    };
    let ts = json_timestamp(location.get("timestamp"), received_at)?;
    let attrs = json_attrs(location, coords, battery, extras);
    Ok(Message::Fixes(vec![RawFix {
        device: Some(device.to_owned()),
        ts: Some(ts),
        lon: Some(lon),
        lat: Some(lat),
        speed_mps: known(json_number(coords, "speed")?),
        heading_deg: known(json_number(coords, "heading")?),
        accuracy_m: known_accuracy(json_number(coords, "accuracy")?),
        altitude_m: json_number(coords, "altitude")?,
        battery: known(json_number(battery, "level")?).map(|level| level * 100.0),
        attrs: into_attrs(attrs),
    }]))
}

/// `location.timestamp`: ISO 8601 text or an epoch number; missing or `null` is `received_at`.
fn json_timestamp(
    timestamp: Option<&Value>,
    received_at: DateTime<Utc>,
) -> Result<DateTime<Utc>, OsmandError> {
    match timestamp {
        None | Some(Value::Null) => Ok(received_at),
        Some(Value::String(text)) => {
            time::parse_flexible(text).map_err(|r| OsmandError::JsonTimestamp(r.message))
        }
        Some(Value::Number(epoch)) => {
            time::from_epoch_number(epoch).map_err(|r| OsmandError::JsonTimestamp(r.message))
        }
        Some(other) => Err(OsmandError::JsonNotATime(other.clone())),
    }
}

/// The attributes of a JSON location (see [`decode_json`] for which fields): `charge`, fields
/// of the location, those the SDK may put in `coords` or beside it, `activity`, and last
/// `extras`, which never overwrites any of them.
fn json_attrs(
    location: &Value,
    coords: &Value,
    battery: &Value,
    extras: Option<&Map<String, Value>>,
) -> Map<String, Value> {
    let mut attrs = Map::new();
    if let Some(charging) = battery.get("is_charging").filter(|v| !v.is_null()) {
        attrs.insert("charge".into(), charging.clone());
    }
    for key in ["is_moving", "odometer", "event", "mock", "alarm", "uuid", "age"] {
        copy_non_null(&mut attrs, key, location.get(key));
    }
    // The SDK puts these in `coords`; accept them beside it too.
    for key in [
        "ellipsoidal_altitude",
        "floor",
        "speed_accuracy",
        "heading_accuracy",
        "altitude_accuracy",
    ] {
        let value = coords.get(key).or_else(|| location.get(key));
        let unknown = key.ends_with("_accuracy") && value.and_then(Value::as_f64).is_some_and(|v| v < 0.0);
        if !unknown {
            copy_non_null(&mut attrs, key, value);
        }
    }
    if let Some(activity) = location.get("activity") {
        copy_non_null(&mut attrs, "activity", activity.get("type"));
        copy_non_null(&mut attrs, "activity_confidence", activity.get("confidence"));
    }
    for (key, value) in extras.into_iter().flatten() {
        if !value.is_null() {
            attrs.entry(key.clone()).or_insert_with(|| value.clone());
        }
    }
    attrs
}

/// A numeric field: absent or `null` is `None`, any other non-number is an error.
fn json_number(object: &Value, key: &'static str) -> Result<Option<f64>, OsmandError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(other) => Err(OsmandError::JsonNotANumber {
            key,
            value: other.clone(),
        }),
    }
}

fn copy_non_null(attrs: &mut Map<String, Value>, key: &str, value: Option<&Value>) {
    if let Some(value) = value.filter(|v| !v.is_null()) {
        attrs.insert(key.to_owned(), value.clone());
    }
}

#[cfg(test)]
mod tests;
