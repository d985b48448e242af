//! The device-protocol decoders against the request fixtures in `tests/data/` (one file per
//! request, written from the sources `tracker/PROTOCOLS.md` cites; see `tests/data/README.md`).
//! Each test decodes fixtures the way the HTTP handler will, checks the decoded values, and
//! validates the fixes with the same rules as every other ingest path.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use tracker::fix::{Limits, RawFix};
use tracker::gpx;
use tracker::protocols::osmand::{self, SpeedUnit};
use tracker::protocols::owntracks::{self, Identity};
use tracker::protocols::{Message, overland};

fn fixture(path: &str) -> Vec<u8> {
    let full = format!("{}/../tests/data/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

fn fixture_text(path: &str) -> String {
    String::from_utf8(fixture(path)).expect("UTF-8 fixture")
}

/// A query string or form body fixture, decoded as the handler's extractor does.
fn params(path: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(fixture_text(path).trim().as_bytes())
        .into_owned()
        .collect()
}

fn at(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339)
        .expect("time")
        .with_timezone(&Utc)
}

fn epoch(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(seconds, 0).expect("epoch")
}

fn osmand(path: &str, unit: SpeedUnit, received_at: DateTime<Utc>) -> Message {
    osmand::decode_params(&params(&format!("protocols/osmand/{path}")), unit, received_at)
}

fn one_fix(message: Message) -> RawFix {
    match message {
        Message::Fixes(mut fixes) if fixes.len() == 1 => fixes.remove(0),
        other => panic!("expected one fix, got {other:?}"),
    }
}

fn fixes(message: Message) -> Vec<RawFix> {
    match message {
        Message::Fixes(fixes) => fixes,
        other => panic!("expected fixes, got {other:?}"),
    }
}

/// The label of a message that holds no fix.
fn label(message: &Message) -> &'static str {
    match message {
        Message::Ignored { reason } | Message::Unusable { reason, .. } => reason,
        Message::Fixes(_) => panic!("expected no fix, got {message:?}"),
    }
}

fn attr(fix: &RawFix, key: &str) -> Value {
    fix.attrs
        .as_ref()
        .and_then(|a| a.get(key))
        .cloned()
        .unwrap_or(Value::Null)
}

fn close(actual: Option<f64>, expected: f64) -> bool {
    actual.is_some_and(|a| (a - expected).abs() < 1e-4)
}

/// Validates as the handler will, with the receive time a minute after the fix.
fn assert_valid(fix: &RawFix) {
    let ts = fix.ts.expect("ts");
    if let Err(rejection) = fix
        .clone()
        .validate(ts + Duration::minutes(1), &Limits::default())
    {
        panic!("{fix:?} is rejected: {rejection:?}");
    }
}

mod osmand_protocol {
    use super::*;

    #[test]
    fn the_osmand_app_sends_milliseconds_and_metres_per_second() {
        let now = at("2024-06-01T12:00:05Z");
        let fix = one_fix(osmand("osmand-app-with-id.txt", SpeedUnit::Mps, now));
        assert_eq!(fix.device.as_deref(), Some("osmand-phone"));
        assert_eq!(fix.ts.map(|t| t.timestamp_millis()), Some(1_717_243_200_123));
        assert_eq!((fix.lat, fix.lon), (Some(52.52001), Some(13.40495)));
        assert!(close(fix.speed_mps, 1.39));
        assert_eq!(fix.altitude_m, Some(48.3));
        assert_eq!(fix.accuracy_m, None, "hdop stays an attribute");
        assert_eq!(attr(&fix, "hdop"), json!(12.5));
        assert_valid(&fix);

        let fix = one_fix(osmand("osmand-app-all-placeholders.txt", SpeedUnit::Mps, now));
        assert!(close(fix.speed_mps, 0.0005));
        assert_eq!(fix.heading_deg, Some(271.5));
        assert_eq!(attr(&fix, "eta"), json!(0));
        assert_eq!(attr(&fix, "edfa"), json!(0));
        assert_valid(&fix);
    }

    #[test]
    fn the_default_template_has_no_device() {
        let message = osmand("osmand-app-default-template.txt", SpeedUnit::Mps, Utc::now());
        assert_eq!(label(&message), "missing_device");
        let message = osmand("traccar-missing-id.txt", SpeedUnit::Knots, Utc::now());
        assert_eq!(label(&message), "missing_device");
    }

    #[test]
    fn traccar_decoder_timestamp_forms() {
        let now = at("2025-01-01T00:00:00Z");
        let cases = [
            ("traccar-iso-escaped.txt", at("2016-01-27T18:55:47Z")),
            ("traccar-ms-epoch.txt", at("2020-08-13T13:01:32Z")),
            ("traccar-zoneless.txt", at("2014-06-04T09:10:11Z")),
            ("traccar-no-timestamp.txt", now),
            ("traccar-deviceid-heading.txt", epoch(1_433_775_000)),
        ];
        for (path, expected) in cases {
            let fix = one_fix(osmand(path, SpeedUnit::Knots, now));
            assert_eq!(fix.ts, Some(expected), "{path}");
            assert_eq!(fix.device.as_deref(), Some("123456"), "{path}");
            assert_eq!((fix.lat, fix.lon), (Some(60.0), Some(30.0)), "{path}");
        }
    }

    #[test]
    fn traccar_decoder_parameter_variants() {
        let now = epoch(1_433_775_060);
        let fix = one_fix(osmand("traccar-deviceid-heading.txt", SpeedUnit::Knots, now));
        assert_eq!(fix.heading_deg, Some(123.4));

        let fix = one_fix(osmand("traccar-location-param.txt", SpeedUnit::Knots, now));
        assert_eq!((fix.lat, fix.lon), (Some(60.0), Some(30.0)));
        assert_valid(&fix);

        let fix = one_fix(osmand("traccar-id-last.txt", SpeedUnit::Knots, now));
        assert_eq!(fix.device.as_deref(), Some("123456"));
        assert_eq!((fix.speed_mps, fix.battery), (Some(0.0), Some(87.0)));
        assert_valid(&fix);

        let fix = one_fix(osmand("traccar-extras.txt", SpeedUnit::Knots, now));
        assert_eq!(attr(&fix, "ignition"), json!(true));
        assert_eq!(attr(&fix, "rpm"), json!(933));
        assert_eq!(attr(&fix, "fuel"), json!(24));
        assert_eq!(attr(&fix, "alarm"), json!("sos"));
        assert_eq!(attr(&fix, "mock"), json!(true));

        let fix = one_fix(osmand("valid-false.txt", SpeedUnit::Knots, now));
        assert_eq!(attr(&fix, "valid"), json!(false));
        assert_valid(&fix);

        let fix = one_fix(osmand("repeated-keys.txt", SpeedUnit::Knots, now));
        assert_eq!(fix.device.as_deref(), Some("123456"));
        assert_eq!(fix.lat, Some(60.0));
        assert_eq!(attr(&fix, "fuel"), json!(2));

        let message = osmand("traccar-cell-wifi-only.txt", SpeedUnit::Knots, now);
        assert_eq!(label(&message), "missing_coordinates");
    }

    #[test]
    fn traccar_client_8x_query_strings() {
        let fix = one_fix(osmand(
            "traccar-client-android-8x-query.txt",
            SpeedUnit::Knots,
            Utc::now(),
        ));
        assert_eq!(fix.ts, Some(epoch(1_717_243_200)));
        assert!(close(fix.speed_mps, 12.5 * 0.514_444));
        assert_eq!(fix.heading_deg, Some(87.0));
        assert_eq!(fix.accuracy_m, None, "Android's 0.0 means not reported");
        assert_eq!(fix.battery, Some(76.0));
        assert_eq!(attr(&fix, "charge"), json!(true));
        assert_eq!(attr(&fix, "mock"), json!(true));
        assert_valid(&fix);

        let fix = one_fix(osmand(
            "traccar-client-ios-8x-query.txt",
            SpeedUnit::Knots,
            Utc::now(),
        ));
        assert_eq!(fix.device.as_deref(), Some("ios-device"));
        assert_eq!((fix.lat, fix.lon), (Some(52.520_008), Some(13.404_954)));
        assert_eq!(fix.heading_deg, None, "iOS omits an unknown bearing");
        assert_eq!(fix.accuracy_m, Some(5.0));
        assert_eq!(attr(&fix, "alarm"), json!("alert message"));
        assert_valid(&fix);

        // Date(0) plus the 1024-week rollover correction: decoded, then too old to store.
        let fix = one_fix(osmand(
            "traccar-client-android-8x-rollover.txt",
            SpeedUnit::Knots,
            Utc::now(),
        ));
        assert_eq!(fix.ts, Some(epoch(619_315_200)));
        assert_eq!((fix.lat, fix.lon), (Some(0.0), Some(0.0)));
        let rejection = fix.validate(Utc::now(), &Limits::default()).expect_err("too old");
        assert_eq!(rejection.code, "ts_too_old");
    }

    #[test]
    fn traccar_client_10x_form_bodies() {
        let fix = one_fix(osmand(
            "traccar-client-10x-form.txt",
            SpeedUnit::Knots,
            Utc::now(),
        ));
        assert_eq!(fix.device.as_deref(), Some("12345678"));
        assert_eq!(fix.ts, Some(epoch(1_780_312_345)));
        assert!(close(fix.speed_mps, 2.43 * 0.514_444));
        assert_eq!(
            (fix.accuracy_m, fix.altitude_m, fix.heading_deg, fix.battery),
            (Some(4.8), Some(41.2), Some(184.0), Some(63.0))
        );
        assert_eq!(attr(&fix, "charge"), json!(false));
        assert_eq!(attr(&fix, "alarm"), json!("sos"));
        assert_valid(&fix);

        let message = osmand(
            "traccar-client-10x-heartbeat-form.txt",
            SpeedUnit::Knots,
            Utc::now(),
        );
        assert!(
            matches!(message, Message::Ignored { reason: "heartbeat" }),
            "{message:?}"
        );
    }
}

mod traccar_client_9x_json {
    use super::*;

    fn decode(path: &str) -> Message {
        let body: Value = serde_json::from_slice(&fixture(&format!("protocols/traccar-client-9x/{path}")))
            .expect("JSON fixture");
        osmand::decode_json(&body, at("2025-06-15T14:00:30Z"))
    }

    #[test]
    fn the_app_body_and_its_trick_field() {
        let fix = one_fix(decode("location.json"));
        assert_eq!(fix.device.as_deref(), Some("12345678"));
        assert_eq!(fix.ts, Some(at("2025-06-15T13:45:12.862Z")));
        assert_eq!((fix.lat, fix.lon), (Some(52.520_008_1), Some(13.404_954_3)));
        assert_eq!(
            (fix.accuracy_m, fix.speed_mps, fix.heading_deg, fix.altitude_m),
            (Some(4.8), Some(1.42), Some(184.3), Some(41.2))
        );
        assert!(close(fix.battery, 63.0));
        assert_eq!(attr(&fix, "charge"), json!(false));
        assert_eq!(attr(&fix, "is_moving"), json!(true));
        assert_eq!(attr(&fix, "odometer"), json!(1234.5));
        assert_eq!(attr(&fix, "event"), json!("motionchange"));
        assert_eq!(attr(&fix, "activity"), json!("walking"));
        assert_eq!(attr(&fix, "_"), Value::Null);
        assert_eq!(attr(&fix, "id"), Value::Null);
        assert_valid(&fix);
    }

    #[test]
    fn sdk_unknowns_become_none() {
        let fix = one_fix(decode("sdk-unknowns.json"));
        assert_eq!((fix.speed_mps, fix.heading_deg, fix.battery), (None, None, None));
        assert_eq!(fix.accuracy_m, Some(15.2));
        assert_eq!(attr(&fix, "mock"), json!(true));
        assert_eq!(attr(&fix, "floor"), Value::Null);
        assert_eq!(attr(&fix, "speed_accuracy"), Value::Null);
        assert_eq!(attr(&fix, "altitude_accuracy"), json!(3.2));
        assert_eq!(attr(&fix, "ellipsoidal_altitude"), json!(79.1));
        assert_eq!(attr(&fix, "activity_confidence"), json!(100));
        assert_eq!(attr(&fix, "age"), json!(38));
        assert_valid(&fix);
    }

    #[test]
    fn typed_extras_are_copied() {
        let fix = one_fix(decode("typed-extras.json"));
        assert_eq!(attr(&fix, "alarm"), json!("sos"));
        assert_eq!(attr(&fix, "manual"), json!(true));
        assert_eq!(attr(&fix, "level"), json!(3));
        assert_eq!(attr(&fix, "charge"), json!(true));
        assert_eq!(fix.battery, Some(100.0));
        assert_valid(&fix);
    }

    #[test]
    fn heartbeats() {
        assert!(matches!(
            decode("heartbeat-no-coords.json"),
            Message::Ignored { reason: "heartbeat" }
        ));
        let fix = one_fix(decode("heartbeat-with-coords.json"));
        assert_eq!(attr(&fix, "heartbeat"), json!(true));
        assert_valid(&fix);
    }

    #[test]
    fn batch_sync_arrays() {
        let all = fixes(decode("batch.json"));
        assert_eq!(all.len(), 2);
        assert!(all[0].ts < all[1].ts);
        all.iter().for_each(assert_valid);
    }
}

mod owntracks_http {
    use super::*;

    fn decode(path: &str, identity: &Identity) -> Message {
        owntracks::decode(&fixture(&format!("protocols/owntracks/{path}")), identity)
    }

    fn headers(user: &str, device: &str) -> Identity {
        Identity {
            user: Some(user.into()),
            device: Some(device.into()),
            basic_user: None,
        }
    }

    #[test]
    fn android_and_ios_locations() {
        let fix = one_fix(decode("android-location.json", &Identity::default()));
        assert_eq!(fix.device.as_deref(), Some("jane/pixel"));
        assert_eq!(fix.ts, Some(epoch(1_717_243_200)));
        assert_eq!(fix.altitude_m, Some(0.0));
        assert_eq!(fix.speed_mps, Some(0.0));
        assert_eq!(attr(&fix, "created_at"), json!(1_717_243_260));
        assert_eq!(attr(&fix, "SSID"), json!("Home Wifi"));
        assert_eq!(attr(&fix, "topic"), json!("owntracks/jane/pixel"));
        assert_valid(&fix);

        let fix = one_fix(decode("ios-location.json", &Identity::default()));
        assert_eq!(fix.device.as_deref(), Some("Jane/iPhone 12 Pro"));
        assert!(close(fix.speed_mps, 5.0), "18 km/h");
        assert_eq!(
            (fix.heading_deg, fix.accuracy_m, fix.battery),
            (Some(271.0), Some(5.0), Some(64.0))
        );
        assert_eq!(attr(&fix, "inregions"), json!(["Home"]));
        assert_eq!(attr(&fix, "t"), json!("u"));
        assert_valid(&fix);
    }

    #[test]
    fn headers_win_over_a_disagreeing_topic() {
        let fix = one_fix(decode("ios-location.json", &headers("user", "device")));
        assert_eq!(fix.device.as_deref(), Some("user/device"));
        let basic = Identity {
            basic_user: Some("jane".into()),
            ..Identity::default()
        };
        let fix = one_fix(decode("ios-location.json", &basic));
        assert_eq!(fix.device.as_deref(), Some("Jane/iPhone 12 Pro"));
        let fix = one_fix(decode("ios-old-unknowns.json", &basic));
        assert_eq!(
            fix.device.as_deref(),
            Some("JP"),
            "tid without topic or device part"
        );
    }

    #[test]
    fn old_ios_unknowns_and_integer_coordinates() {
        let fix = one_fix(decode("ios-old-unknowns.json", &Identity::default()));
        assert_eq!(fix.device.as_deref(), Some("JP"));
        assert_eq!((fix.speed_mps, fix.heading_deg, fix.battery), (None, None, None));
        assert_valid(&fix);

        let fix = one_fix(decode("integer-coordinates.json", &Identity::default()));
        assert_eq!((fix.lat, fix.lon), (Some(37.0), Some(-122.0)));
        assert_eq!(fix.device.as_deref(), Some("user/phone"));
        assert_valid(&fix);
    }

    #[test]
    fn identity_from_topic_alone_or_nowhere() {
        let fix = one_fix(decode("topic-only-no-tid.json", &Identity::default()));
        assert_eq!(fix.device.as_deref(), Some("user/f1c3d2a4b5e6"));
        let message = decode("no-identity.json", &Identity::default());
        assert_eq!(label(&message), "missing_device");
        let fix = one_fix(decode("no-identity.json", &headers("u", "d")));
        assert_eq!(fix.device.as_deref(), Some("u/d"));
    }

    #[test]
    fn unusable_locations() {
        let cases = [
            ("tst-zero.json", "invalid_field"),
            ("tst-missing.json", "missing_timestamp"),
            ("bare-location.json", "missing_coordinates"),
            ("no-type.json", "missing_type"),
        ];
        for (path, expected) in cases {
            assert_eq!(label(&decode(path, &headers("u", "d"))), expected, "{path}");
        }
    }

    #[test]
    fn other_types_are_ignored() {
        let cases = [
            ("lwt-string-tst.json", "owntracks_lwt"),
            ("transition-ios.json", "owntracks_transition"),
            ("transition-android.json", "owntracks_transition"),
            ("transition-beacon.json", "owntracks_transition"),
            ("card.json", "owntracks_card"),
            ("waypoint.json", "owntracks_waypoint"),
            ("encrypted.json", "encrypted"),
            ("empty.txt", "empty_body"),
        ];
        for (path, expected) in cases {
            let message = decode(path, &Identity::default());
            assert!(matches!(message, Message::Ignored { .. }), "{path}: {message:?}");
            assert_eq!(label(&message), expected, "{path}");
        }
    }

    #[test]
    fn poi_image_is_dropped_and_extra_fields_kept() {
        let fix = one_fix(decode("poi-image.json", &Identity::default()));
        assert_eq!(attr(&fix, "image"), Value::Null);
        assert_eq!(attr(&fix, "imagename"), json!("cafe.jpg"));
        assert_eq!(attr(&fix, "poi"), json!("Cafe Einstein"));
        assert_valid(&fix);

        let fix = one_fix(decode("qtripp-queclink.json", &Identity::default()));
        assert_eq!(fix.device.as_deref(), Some("qtripp/860599001234567"));
        assert_eq!(attr(&fix, "ign"), json!(true));
        assert_eq!(attr(&fix, "odometer"), json!(48211.3));
        assert_eq!(attr(&fix, "imei"), json!("860599001234567"));
        assert!(close(fix.speed_mps, 42.0 / 3.6));
        assert_valid(&fix);

        let fix = one_fix(decode("curl-form-urlencoded.json", &Identity::default()));
        assert_eq!(fix.device.as_deref(), Some("cu"));
    }
}

mod overland_batches {
    use super::*;

    fn decode(path: &str, fallback: Option<&str>) -> overland::Batch {
        overland::decode(&fixture(&format!("protocols/overland/{path}")), fallback).expect("envelope")
    }

    #[test]
    fn readme_sample_with_offsets_without_colon() {
        let batch = decode("readme-sample.json", Some("from-url"));
        assert_eq!((batch.fixes.len(), batch.skipped), (2, 0));
        let first = batch.fixes[0].as_ref().expect("fix");
        assert_eq!(first.ts, Some(at("2015-10-01T15:00:00Z")));
        assert_eq!(first.device.as_deref(), Some("from-url"));
        assert_eq!((first.lon, first.lat), (Some(-122.621), Some(45.535)));
        assert_eq!((first.speed_mps, first.accuracy_m), (Some(4.0), Some(30.0)));
        assert!(close(first.battery, 89.0));
        assert_eq!(attr(first, "vertical_accuracy"), Value::Null);
        assert_eq!(attr(first, "battery_state"), json!("charging"));
        assert_eq!(attr(first, "motion"), json!(["driving", "stationary"]));

        let batch = decode("readme-sample.json", None);
        for fix in &batch.fixes {
            assert_eq!(fix.as_ref().expect_err("no device").code, "missing_device");
        }
    }

    #[test]
    fn ios_batch_skips_visits_actions_and_trips_and_never_reads_current() {
        let batch = decode("ios-batch.json", None);
        assert_eq!(batch.skipped, 3);
        assert_eq!(batch.fixes.len(), 2);
        let first = batch.fixes[0].as_ref().expect("fix");
        assert_eq!(first.device.as_deref(), Some("jane-iphone"));
        assert_eq!(
            (first.speed_mps, first.heading_deg, first.altitude_m),
            (Some(12.0), Some(184.0), Some(41.0))
        );
        assert_eq!(
            attr(first, "unique_id"),
            json!("4D1A3B7C-2E5F-4A6B-8C9D-0E1F2A3B4C5D")
        );
        assert_eq!(attr(first, "trip_id"), json!("2024-06-01T11:55:00Z"));
        assert_eq!(attr(first, "course_accuracy"), Value::Null);
        assert_eq!(attr(first, "tracking_mode"), json!("standard"));
        let second = batch.fixes[1].as_ref().expect("fix");
        assert_eq!((second.speed_mps, second.heading_deg), (None, None));
        assert!(
            batch
                .fixes
                .iter()
                .all(|f| f.as_ref().is_ok_and(|f| f.ts < Some(at("2024-06-01T12:10:00Z"))))
        );
        for fix in &batch.fixes {
            assert_valid(fix.as_ref().expect("fix"));
        }
    }

    #[test]
    fn android_batch_with_milliseconds_and_boolean_battery_state() {
        let batch = decode("android-batch.json", None);
        assert_eq!((batch.fixes.len(), batch.skipped), (2, 0));
        let first = batch.fixes[0].as_ref().expect("fix");
        assert_eq!(first.ts, Some(at("2024-06-01T12:00:00.123Z")));
        assert_eq!(attr(first, "battery_state"), json!(true));
        assert_eq!(attr(first, "deferred"), json!("0"));
        assert!(close(first.battery, 42.0));
        let second = batch.fixes[1].as_ref().expect("fix");
        assert_eq!((second.speed_mps, second.heading_deg), (Some(0.0), None));
        for fix in &batch.fixes {
            assert_valid(fix.as_ref().expect("fix"));
        }
    }

    #[test]
    fn a_body_without_locations_is_an_envelope_error() {
        let error = overland::decode(&fixture("protocols/overland/not-an-envelope.json"), None)
            .expect_err("envelope");
        assert!(error.to_string().contains("locations"), "{error}");
    }
}

mod gpx_files {
    use super::*;

    fn points(path: &str) -> Vec<gpx::GpxPoint> {
        gpx::parse(&fixture_text(&format!("gpx/{path}"))).expect("GPX fixture")
    }

    #[test]
    fn gpx_11_tracks_segments_and_garmin_speed() {
        let points = points("track-1.1-garmin-extensions.gpx");
        assert_eq!(points.len(), 5, "every trkpt of both tracks, no wpt");
        assert_eq!((points[0].lat, points[0].lon), (45.2761, 13.7222));
        assert_eq!((points[0].ele, points[0].speed), (Some(241.2), Some(5.25)));
        assert_eq!(points[0].time, Some(at("2024-05-01T10:00:00Z")));
        assert_eq!(points[1].time, Some(at("2024-05-01T10:00:10.500Z")));
        assert_eq!(points[2].time, Some(at("2024-05-01T10:05:00Z")));
        assert_eq!((points[3].time, points[3].ele), (None, Some(246.0)));
        assert_eq!(points[4].time, Some(at("2024-05-01T15:00:00Z")));

        let fix = gpx::to_raw_fix(&points[0], "bike");
        assert_eq!((fix.altitude_m, fix.speed_mps), (Some(241.2), Some(5.25)));
        assert_valid(&fix);
    }

    #[test]
    fn gpx_10_speed_element() {
        let points = points("track-1.0-speed.gpx");
        assert_eq!(points.len(), 3);
        assert_eq!(
            (points[0].speed, points[1].speed, points[2].speed),
            (Some(1.4), Some(1.2), None)
        );
        assert_eq!(points[2].ele, None);
    }

    #[test]
    fn route_and_waypoints_without_a_track() {
        let points = points("route-and-waypoints.gpx");
        assert_eq!(
            points.iter().map(|p| (p.lat, p.lon)).collect::<Vec<_>>(),
            [(45.2761, 13.7222), (45.28, 13.73), (45.285, 13.74)]
        );
        assert_eq!(points[0].time, Some(at("2024-05-01T09:00:00Z")));
        assert_eq!(points[2].ele, Some(260.0));
    }
}
