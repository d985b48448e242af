//! Unit tests of the OsmAnd-protocol and Traccar Client 9.x JSON decoders; the recorded
//! requests of real apps are in `tracker/tests/protocol_fixtures.rs`.

use super::*;
use serde_json::json;

fn params(query: &[(&str, &str)]) -> Vec<(String, String)> {
    query
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_750_000_000, 0).expect("now")
}

fn one_fix(message: Message) -> RawFix {
    match message {
        Message::Fixes(mut fixes) if fixes.len() == 1 => fixes.remove(0),
        other => panic!("expected one fix, got {other:?}"),
    }
}

fn decode(query: &[(&str, &str)]) -> Message {
    decode_params(&params(query), SpeedUnit::Knots, now())
}

fn attr(fix: &RawFix, key: &str) -> Value {
    fix.attrs
        .as_ref()
        .and_then(|a| a.get(key))
        .cloned()
        .unwrap_or(Value::Null)
}

#[test]
fn speed_units_parse_and_convert() {
    let cases = [
        ("knots", SpeedUnit::Knots, 0.514_444),
        ("kn", SpeedUnit::Knots, 0.514_444),
        ("MPS", SpeedUnit::Mps, 1.0),
        ("ms", SpeedUnit::Mps, 1.0),
        ("kmh", SpeedUnit::Kmh, 0.277_778),
        ("kph", SpeedUnit::Kmh, 0.277_778),
        ("mph", SpeedUnit::Mph, 0.447_04),
    ];
    for (text, unit, one_in_mps) in cases {
        assert_eq!(text.parse::<SpeedUnit>(), Ok(unit), "{text}");
        assert!((unit.to_mps(1.0) - one_in_mps).abs() < 1e-6, "{text}");
    }
    assert!("furlongs".parse::<SpeedUnit>().is_err());
    assert_eq!(SpeedUnit::default(), SpeedUnit::Knots);
}

#[test]
fn the_speed_unit_applies_to_the_speed_parameter() {
    let query = [("id", "a"), ("lat", "1"), ("lon", "2"), ("speed", "10")];
    for (unit, expected) in [
        (SpeedUnit::Knots, 5.144_444),
        (SpeedUnit::Mps, 10.0),
        (SpeedUnit::Kmh, 2.777_778),
        (SpeedUnit::Mph, 4.4704),
    ] {
        let fix = one_fix(decode_params(&params(&query), unit, now()));
        let speed = fix.speed_mps.expect("speed");
        assert!((speed - expected).abs() < 1e-5, "{unit:?}: {speed}");
    }
}

#[test]
fn every_timestamp_form() {
    let cases = [
        ("1700000000", "2023-11-14T22:13:20+00:00"),
        ("0", "1970-01-01T00:00:00+00:00"),
        ("1700000000123", "2023-11-14T22:13:20.123+00:00"),
        ("2016-01-27T18:55:47Z", "2016-01-27T18:55:47+00:00"),
        ("2016-01-27T19:55:47+01:00", "2016-01-27T18:55:47+00:00"),
        ("2014-06-04 09:10:11", "2014-06-04T09:10:11+00:00"),
    ];
    for (text, expected) in cases {
        let fix = one_fix(decode(&[
            ("id", "a"),
            ("lat", "1"),
            ("lon", "2"),
            ("timestamp", text),
        ]));
        assert_eq!(fix.ts.expect("ts").to_rfc3339(), expected, "{text}");
    }
    let fix = one_fix(decode(&[("id", "a"), ("lat", "1"), ("lon", "2")]));
    assert_eq!(fix.ts, Some(now()));
    let message = decode(&[("id", "a"), ("lat", "1"), ("lon", "2"), ("timestamp", "soon")]);
    assert!(
        matches!(message, Message::Unusable { reason: "invalid_field", ref detail } if detail.contains("timestamp")),
        "{message:?}"
    );
}

#[test]
fn scientific_notation_and_java_specials_parse() {
    let fix = one_fix(decode_params(
        &params(&[
            ("id", "a"),
            ("lat", "5.0E-4"),
            ("lon", "-1.5E-5"),
            ("speed", "5.0E-4"),
            ("hdop", "1.0E1"),
            ("altitude", "NaN"),
            ("bearing", "Infinity"),
        ]),
        SpeedUnit::Mps,
        now(),
    ));
    assert_eq!(fix.lat, Some(0.0005));
    assert_eq!(fix.lon, Some(-0.000_015));
    assert_eq!(fix.speed_mps, Some(0.0005));
    assert_eq!(attr(&fix, "hdop"), json!(10.0));
    assert_eq!((fix.altitude_m, fix.heading_deg), (None, None));
}

#[test]
fn repeated_keys_last_wins_but_cell_and_wifi_accumulate() {
    let fix = one_fix(decode(&[
        ("id", "first"),
        ("lat", "1"),
        ("lon", "2"),
        ("id", "second"),
        ("lat", "3"),
        ("cell", "262,1,1234,56789"),
        ("cell", "262,1,1234,56790,-71"),
        ("wifi", "00-11-22-33-44-55,-60"),
        ("wifi", "66-77-88-99-aa-bb,-75"),
        ("fuel", "10"),
        ("fuel", "24"),
    ]));
    assert_eq!(fix.device.as_deref(), Some("second"));
    assert_eq!(fix.lat, Some(3.0));
    assert_eq!(attr(&fix, "fuel"), json!(24));
    assert_eq!(
        attr(&fix, "cell"),
        json!([
            {"mcc": 262, "mnc": 1, "lac": 1234, "cid": 56789},
            {"mcc": 262, "mnc": 1, "lac": 1234, "cid": 56790, "rssi": -71}
        ])
    );
    assert_eq!(
        attr(&fix, "wifi"),
        json!([{"mac": "00:11:22:33:44:55", "rssi": -60}, {"mac": "66:77:88:99:aa:bb", "rssi": -75}])
    );
}

#[test]
fn unknown_parameters_keep_their_type() {
    let fix = one_fix(decode(&[
        ("id", "a"),
        ("lat", "1"),
        ("lon", "2"),
        ("ignition", "true"),
        ("door", "false"),
        ("rpm", "933"),
        ("temp", "-4.5"),
        ("tiny", "5.0E-4"),
        ("iccid", "89490200001234567890"),
        ("pin", "0123"),
        ("alarm", "sos"),
        ("nan", "NaN"),
        ("driverUniqueId", "123"),
        ("token", "secret"),
        ("notificationToken", "push-secret"),
    ]));
    assert_eq!(attr(&fix, "ignition"), json!(true));
    assert_eq!(attr(&fix, "door"), json!(false));
    assert_eq!(attr(&fix, "rpm"), json!(933));
    assert_eq!(attr(&fix, "temp"), json!(-4.5));
    assert_eq!(attr(&fix, "tiny"), json!(0.0005));
    assert_eq!(attr(&fix, "iccid"), json!("89490200001234567890"));
    assert_eq!(attr(&fix, "pin"), json!("0123"));
    assert_eq!(attr(&fix, "alarm"), json!("sos"));
    assert_eq!(attr(&fix, "nan"), json!("NaN"));
    assert_eq!(attr(&fix, "driverUniqueId"), json!("123"));
    assert_eq!(attr(&fix, "token"), Value::Null);
    assert_eq!(attr(&fix, "notificationToken"), Value::Null);
}

#[test]
fn unknown_and_unreported_values_are_none() {
    let fix = one_fix(decode(&[
        ("id", "a"),
        ("lat", "1"),
        ("lon", "2"),
        ("speed", "-1"),
        ("bearing", "-1.0"),
        ("accuracy", "0.0"),
        ("batt", "-100.0"),
        ("altitude", ""),
    ]));
    assert_eq!(
        (
            fix.speed_mps,
            fix.heading_deg,
            fix.accuracy_m,
            fix.battery,
            fix.altitude_m
        ),
        (None, None, None, None, None)
    );
}

#[test]
fn identity_and_coordinates_classify_the_message() {
    assert!(matches!(
        decode(&[("lat", "1"), ("lon", "2")]),
        Message::Unusable {
            reason: "missing_device",
            ..
        }
    ));
    assert!(matches!(
        decode(&[("id", " "), ("lat", "1"), ("lon", "2")]),
        Message::Unusable {
            reason: "missing_device",
            ..
        }
    ));
    assert!(matches!(
        decode(&[("id", "a"), ("timestamp", "1700000000"), ("batt", "80")]),
        Message::Ignored { reason: "heartbeat" }
    ));
    assert!(matches!(
        decode(&[("id", "a"), ("cell", "262,1,1,1")]),
        Message::Unusable {
            reason: "missing_coordinates",
            ..
        }
    ));
    assert!(matches!(
        decode(&[("id", "a"), ("lat", "1")]),
        Message::Unusable {
            reason: "missing_coordinates",
            ..
        }
    ));
    for bad in [
        ("lat", "north"),
        ("location", "1"),
        ("location", "1;2"),
        ("cell", "1,2"),
        ("cell", "a,b,c,d"),
        ("wifi", "00-11"),
        ("wifi", "00-11,loud"),
        ("speed", "fast"),
    ] {
        let message = decode(&[("id", "a"), ("lat", "1"), ("lon", "2"), bad]);
        assert!(
            matches!(
                message,
                Message::Unusable {
                    reason: "invalid_field",
                    ..
                }
            ),
            "{bad:?}: {message:?}"
        );
    }
}

#[test]
fn location_valid_and_charge() {
    let fix = one_fix(decode(&[
        ("id", "a"),
        ("location", "52.5,13.4"),
        ("valid", "0"),
        ("charge", "true"),
    ]));
    assert_eq!((fix.lat, fix.lon), (Some(52.5), Some(13.4)));
    assert_eq!(attr(&fix, "valid"), json!(false));
    assert_eq!(attr(&fix, "charge"), json!(true));
    let fix = one_fix(decode(&[("id", "a"), ("lat", "1"), ("lon", "2"), ("valid", "1")]));
    assert_eq!(attr(&fix, "valid"), json!(true));
}

#[test]
fn json_minimal_location_and_classifications() {
    let body = json!({"device_id": 42, "location": {"coords": {"latitude": 1, "longitude": 2}}});
    let fix = one_fix(decode_json(&body, now()));
    assert_eq!(fix.device.as_deref(), Some("42"));
    assert_eq!(fix.ts, Some(now()));
    assert!(fix.attrs.is_none());

    let cases = [
        (json!("text"), "malformed_body"),
        (json!({"device_id": "a"}), "malformed_body"),
        (
            json!({"location": {"coords": {"latitude": 1, "longitude": 2}}}),
            "missing_device",
        ),
        (json!({"device_id": "a", "location": {}}), "missing_coordinates"),
        (
            json!({"device_id": "a", "location": {"coords": {"latitude": "1", "longitude": 2}}}),
            "invalid_field",
        ),
        (
            json!({"device_id": "a", "location": {"timestamp": "later",
                   "coords": {"latitude": 1, "longitude": 2}}}),
            "invalid_field",
        ),
        (json!([1]), "malformed_body"),
    ];
    for (body, reason) in cases {
        let message = decode_json(&body, now());
        assert!(
            matches!(message, Message::Unusable { reason: r, .. } if r == reason),
            "{body}: {message:?}"
        );
    }
    assert!(matches!(
        decode_json(
            &json!({"device_id": "a", "location": {"extras": {"heartbeat": true}}}),
            now()
        ),
        Message::Ignored { reason: "heartbeat" }
    ));
    assert!(matches!(
        decode_json(&json!([]), now()),
        Message::Ignored { reason: "empty_body" }
    ));
}

#[test]
fn json_location_arrays_share_the_device() {
    let body = json!({"device_id": "a", "location": [
        {"timestamp": "2025-06-15T13:45:12.862Z", "coords": {"latitude": 1, "longitude": 2}},
        {"extras": {"heartbeat": true}},
        {"timestamp": 1_750_000_000, "coords": {"latitude": 3, "longitude": 4}}
    ]});
    let Message::Fixes(fixes) = decode_json(&body, now()) else {
        panic!("fixes")
    };
    assert_eq!(fixes.len(), 2);
    assert!(fixes.iter().all(|f| f.device.as_deref() == Some("a")));
    assert_eq!(fixes[1].ts, Some(now()));
}
