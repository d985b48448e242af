//! OwnTracks HTTP mode (`tracker/PROTOCOLS.md` section 3): one JSON object per request,
//! dispatched on `_type`. Only `location` carries a fix; every other type is understood and
//! ignored, because the apps POST everything they would publish over MQTT to the same URL.
//!
//! The device id is `<user>/<device>` (3.6), resolved in this order: the `X-Limit-U` and
//! `X-Limit-D` headers (or the Recorder's `?u=&d=`); the body's `topic`
//! (`owntracks/<user>/<device>`); the Basic-auth user (or a lone `X-Limit-U`) as `<user>` with
//! the device from `X-Limit-D` or the topic's last segment; finally the two-letter `tid`.
//! Case and spaces are kept as sent: the Recorder lowercases, but two users differing only in
//! case are distinct in every other part of geotrack, and lowercasing cannot be undone.

use serde_json::{Map, Number, Value};

use super::{Message, into_attrs, known, known_accuracy, number};
use crate::decode::time;
use crate::fix::RawFix;

/// Who sent the message, as far as the request outside the body tells. The handler fills it:
/// `user`/`device` from `X-Limit-U`/`X-Limit-D`, falling back to the `u`/`d` query parameters;
/// `basic_user` from the `Authorization: Basic` header.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    pub user: Option<String>,
    pub device: Option<String>,
    pub basic_user: Option<String>,
}

/// A location field that cannot be read. Its message becomes the detail of
/// [`Message::Unusable`] (`invalid_field`), which the handler logs and counts.
#[derive(Debug, thiserror::Error)]
enum FieldError {
    /// `lat` or `lon` holds something other than a number.
    #[error("`{key}` {value} is not a number")]
    NotANumber { key: &'static str, value: Value },
    /// `tst` is text that is not a number.
    #[error("`tst` {0:?} is not an epoch time")]
    TstText(String),
    /// `tst` is neither a number nor text.
    #[error("`tst` {0} is not an epoch time")]
    TstType(Value),
    /// `tst` is 0.
    #[error("`tst` is 0, which the OwnTracks apps use for \"no time\"")]
    TstZero,
    /// `tst` is a number, but not a time geotrack can store; `code` says why.
    #[error("`tst` {epoch} is not a usable epoch time: {code}")]
    TstUnusable { epoch: Number, code: &'static str },
}

/// Fields of a location that map to [`RawFix`] columns or are dropped; all others are attrs.
const NOT_ATTRS: [&str; 10] = [
    "_type", "lat", "lon", "tst", "vel", "cog", "acc", "alt", "batt",
    // A base64 photo of a POI (tens of kB): kept out of the fix; `imagename` stays.
    "image",
];

/// Decodes one OwnTracks HTTP request body.
///
/// - An empty or whitespace body (sent when a friend is deleted) is ignored (`empty_body`).
/// - A body that is not a JSON object is `malformed_body`; an object without a string `_type`
///   is `missing_type`.
/// - `_type` other than `location` is ignored with the label `owntracks_<type>` (`encrypted`
///   for encrypted payloads, which need the shared secret; `owntracks_unknown` for types not in
///   the booklet).
/// - A location needs `lat`, `lon` (numbers, integers allowed) and `tst` (epoch seconds, a
///   number or numeric text); a missing coordinate is `missing_coordinates`, a missing `tst`
///   `missing_timestamp`, and `tst = 0` (which the apps treat as invalid) `invalid_field`.
/// - `vel` is km/h; `vel`, `cog`, `batt` of `-1` and `acc` of `0` or less are unknown. `alt` is
///   kept as sent, `0.0` included.
/// - All other fields (`tid`, `t`, `conn`, `bs`, `vac`, `created_at`, `inregions`, `SSID`,
///   `topic`, Queclink extras, ...) become attributes, except `image` and `null` values.
pub fn decode(body: &[u8], identity: &Identity) -> Message {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Message::Ignored { reason: "empty_body" };
    }
    let object = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => object,
        Ok(other) => {
            return Message::unusable(
                "malformed_body",
                format!(
                    "an OwnTracks body must be a JSON object, not {}",
                    json_kind(&other)
                ),
            );
        }
        Err(e) => return Message::unusable("malformed_body", format!("the body is not JSON: {e}")),
    };
    let Some(kind) = object.get("_type").and_then(Value::as_str) else {
        return Message::unusable("missing_type", "the OwnTracks object has no string `_type`");
    };
    match kind {
        "location" => location(object, identity),
        other => Message::Ignored {
            reason: ignored_reason(other),
        },
    }
}

/// The metrics label of a message type that carries no fix (every `_type` but `location`).
fn ignored_reason(kind: &str) -> &'static str {
    match kind {
        "encrypted" => "encrypted",
        "transition" => "owntracks_transition",
        "waypoint" => "owntracks_waypoint",
        "waypoints" => "owntracks_waypoints",
        "card" => "owntracks_card",
        "status" => "owntracks_status",
        "steps" => "owntracks_steps",
        "beacon" => "owntracks_beacon",
        "configuration" => "owntracks_configuration",
        "lwt" => "owntracks_lwt",
        "request" => "owntracks_request",
        "cmd" => "owntracks_cmd",
        _ => "owntracks_unknown",
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn location(mut object: Map<String, Value>, identity: &Identity) -> Message {
    let Some(device) = device_id(&object, identity) else {
        return Message::unusable(
            "missing_device",
            "no X-Limit-U/X-Limit-D (or u/d), `topic`, Basic-auth user or `tid` names the device",
        );
    };
    let (lat, lon) = match (coordinate(&object, "lat"), coordinate(&object, "lon")) {
        (Ok(Some(lat)), Ok(Some(lon))) => (lat, lon),
        (Err(detail), _) | (_, Err(detail)) => return Message::unusable("invalid_field", detail.to_string()),
        _ => {
            return Message::unusable(
                "missing_coordinates",
                format!("the location of {device:?} has no `lat`/`lon`"),
            );
        }
    };
    let ts = match object.get("tst") {
        None | Some(Value::Null) => {
            return Message::unusable(
                "missing_timestamp",
                format!("the location of {device:?} has no `tst`"),
            );
        }
        Some(tst) => match timestamp(tst) {
            Ok(ts) => ts,
            Err(detail) => return Message::unusable("invalid_field", detail.to_string()),
        },
    };
    let fix = RawFix {
        device: Some(device),
        ts: Some(ts),
        lon: Some(lon),
        lat: Some(lat),
        speed_mps: known(number(object.get("vel"))).map(|kmh| kmh / 3.6),
        heading_deg: known(number(object.get("cog"))),
        accuracy_m: known_accuracy(number(object.get("acc"))),
        altitude_m: number(object.get("alt")),
        battery: known(number(object.get("batt"))),
        attrs: None,
    };
    object.retain(|key, value| !value.is_null() && !NOT_ATTRS.contains(&key.as_str()));
    Message::Fixes(vec![RawFix {
        attrs: into_attrs(object),
        ..fix
    }])
}

fn coordinate(object: &Map<String, Value>, key: &'static str) -> Result<Option<f64>, FieldError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(other) => Err(FieldError::NotANumber {
            key,
            value: other.clone(),
        }),
    }
}

/// `tst`: epoch seconds as a number, or as text (as `lwt` messages carry it).
fn timestamp(tst: &Value) -> Result<chrono::DateTime<chrono::Utc>, FieldError> {
    let epoch: Number = match tst {
        Value::Number(n) => n.clone(),
        Value::String(text) => text
            .trim()
            .parse()
            .map_err(|_| FieldError::TstText(text.clone()))?,
        other => return Err(FieldError::TstType(other.clone())),
    };
    if epoch.as_f64() == Some(0.0) {
        return Err(FieldError::TstZero);
    }
    time::from_epoch_number(&epoch).map_err(|r| FieldError::TstUnusable { epoch, code: r.code })
}

/// The device id, by the precedence in the module documentation.
fn device_id(object: &Map<String, Value>, identity: &Identity) -> Option<String> {
    let header_user = present(identity.user.as_deref());
    let header_device = present(identity.device.as_deref());
    if let (Some(user), Some(device)) = (header_user, header_device) {
        return Some(format!("{user}/{device}"));
    }
    let segments: Vec<&str> = object
        .get("topic")
        .and_then(Value::as_str)
        .map(|topic| topic.split('/').collect())
        .unwrap_or_default();
    if let [_, user, device, ..] = segments.as_slice()
        && let (Some(user), Some(device)) = (present(Some(user)), present(Some(device)))
    {
        return Some(format!("{user}/{device}"));
    }
    let user = present(identity.basic_user.as_deref()).or(header_user);
    let device = header_device.or_else(|| segments.last().copied().filter(|_| segments.len() >= 2));
    if let (Some(user), Some(device)) = (user, present(device)) {
        return Some(format!("{user}/{device}"));
    }
    object
        .get("tid")
        .and_then(Value::as_str)
        .and_then(|tid| present(Some(tid)))
        .map(str::to_owned)
}

fn present(value: Option<&str>) -> Option<&str> {
    value.filter(|v| !v.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fix(body: &Value, identity: &Identity) -> RawFix {
        match decode(body.to_string().as_bytes(), identity) {
            Message::Fixes(mut fixes) if fixes.len() == 1 => fixes.remove(0),
            other => panic!("expected one fix, got {other:?}"),
        }
    }

    fn location(extra: &Value) -> Value {
        let mut body = json!({"_type": "location", "lat": 52.5, "lon": 13.4, "tst": 1_700_000_000});
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        body
    }

    fn reason(body: &[u8], identity: &Identity) -> &'static str {
        match decode(body, identity) {
            Message::Ignored { reason } | Message::Unusable { reason, .. } => reason,
            Message::Fixes(_) => "fixes",
        }
    }

    fn identity(user: Option<&str>, device: Option<&str>, basic_user: Option<&str>) -> Identity {
        Identity {
            user: user.map(str::to_owned),
            device: device.map(str::to_owned),
            basic_user: basic_user.map(str::to_owned),
        }
    }

    #[test]
    fn identity_precedence_headers_topic_basic_user_tid() {
        let topic = json!({"topic": "owntracks/Jane/iPhone 12 Pro", "tid": "jp"});
        let body = location(&topic);
        let cases = [
            (identity(Some("Bob"), Some("pixel"), Some("basic")), "Bob/pixel"),
            (identity(Some("Bob"), None, Some("basic")), "Jane/iPhone 12 Pro"),
            (identity(None, None, Some("basic")), "Jane/iPhone 12 Pro"),
            (Identity::default(), "Jane/iPhone 12 Pro"),
        ];
        for (who, expected) in cases {
            assert_eq!(fix(&body, &who).device.as_deref(), Some(expected), "{who:?}");
        }

        let no_topic = location(&json!({"tid": "jp"}));
        let cases = [
            (identity(None, Some("pixel"), Some("basic")), "basic/pixel"),
            (identity(Some("Bob"), Some(" "), Some("basic")), "jp"),
            (identity(None, None, Some("basic")), "jp"),
            (identity(None, Some("pixel"), None), "jp"),
            (Identity::default(), "jp"),
        ];
        for (who, expected) in cases {
            assert_eq!(fix(&no_topic, &who).device.as_deref(), Some(expected), "{who:?}");
        }

        let short_topic = location(&json!({"topic": "owntracks/overland-phone"}));
        assert_eq!(
            fix(&short_topic, &identity(None, None, Some("basic")))
                .device
                .as_deref(),
            Some("basic/overland-phone")
        );
        assert_eq!(
            reason(short_topic.to_string().as_bytes(), &Identity::default()),
            "missing_device"
        );
    }

    #[test]
    fn units_and_unknown_markers() {
        let f = fix(
            &location(&json!({"vel": 36, "cog": 270, "acc": 12, "alt": 0.0, "batt": 85, "tid": "jp"})),
            &Identity::default(),
        );
        assert!((f.speed_mps.expect("speed") - 10.0).abs() < 1e-9);
        assert_eq!(
            (f.heading_deg, f.accuracy_m, f.altitude_m, f.battery),
            (Some(270.0), Some(12.0), Some(0.0), Some(85.0))
        );
        let f = fix(
            &location(&json!({"vel": -1, "cog": -1, "acc": 0, "batt": -1, "tid": "jp"})),
            &Identity::default(),
        );
        assert_eq!(
            (f.speed_mps, f.heading_deg, f.accuracy_m, f.battery),
            (None, None, None, None)
        );
    }

    #[test]
    fn other_fields_become_attrs_except_image_and_nulls() {
        let f = fix(
            &location(
                &json!({"tid": "jp", "t": "u", "conn": "w", "bs": 2, "inregions": ["home"],
                              "image": "iVBORw0KGgo=", "imagename": "poi.jpg", "poi": "Cafe", "SSID": null}),
            ),
            &Identity::default(),
        );
        let attrs = f.attrs.expect("attrs");
        assert_eq!(attrs.get("tid"), Some(&json!("jp")));
        assert_eq!(attrs.get("inregions"), Some(&json!(["home"])));
        assert_eq!(attrs.get("imagename"), Some(&json!("poi.jpg")));
        for gone in ["image", "SSID", "lat", "tst", "_type", "vel"] {
            assert!(!attrs.contains_key(gone), "{gone}");
        }
    }

    #[test]
    fn timestamps() {
        let who = identity(Some("u"), Some("d"), None);
        let f = fix(&location(&json!({"tst": "1700000000"})), &who);
        assert_eq!(f.ts.map(|t| t.timestamp()), Some(1_700_000_000));
        let mut no_tst = location(&json!({}));
        no_tst.as_object_mut().map(|o| o.remove("tst"));
        assert_eq!(reason(no_tst.to_string().as_bytes(), &who), "missing_timestamp");
        for bad in [json!(0), json!("soon"), json!(true), json!(1e300)] {
            let body = location(&json!({ "tst": bad }));
            assert_eq!(
                reason(body.to_string().as_bytes(), &who),
                "invalid_field",
                "{bad}"
            );
        }
    }

    #[test]
    fn every_other_type_is_ignored_with_its_label() {
        let who = Identity::default();
        let cases = [
            ("transition", "owntracks_transition"),
            ("waypoint", "owntracks_waypoint"),
            ("waypoints", "owntracks_waypoints"),
            ("card", "owntracks_card"),
            ("status", "owntracks_status"),
            ("steps", "owntracks_steps"),
            ("beacon", "owntracks_beacon"),
            ("configuration", "owntracks_configuration"),
            ("lwt", "owntracks_lwt"),
            ("request", "owntracks_request"),
            ("cmd", "owntracks_cmd"),
            ("encrypted", "encrypted"),
            ("dump", "owntracks_unknown"),
        ];
        for (kind, label) in cases {
            let body = json!({ "_type": kind });
            assert_eq!(reason(body.to_string().as_bytes(), &who), label, "{kind}");
        }
    }

    #[test]
    fn malformed_and_incomplete_bodies() {
        let who = identity(Some("u"), Some("d"), None);
        assert_eq!(reason(b"", &who), "empty_body");
        assert_eq!(reason(b" \r\n", &who), "empty_body");
        assert_eq!(reason(b"lat=1&lon=2", &who), "malformed_body");
        assert_eq!(reason(b"[]", &who), "malformed_body");
        assert_eq!(reason(b"{\"lat\":1}", &who), "missing_type");
        assert_eq!(reason(b"{\"_type\":7}", &who), "missing_type");
        assert_eq!(reason(b"{\"_type\":\"location\"}", &who), "missing_coordinates");
        assert_eq!(
            reason(b"{\"_type\":\"location\",\"lat\":\"1\",\"lon\":2}", &who),
            "invalid_field"
        );
    }
}
