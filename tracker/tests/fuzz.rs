//! Fuzzing of every ingest decoder: `decode::positions` (JSON, arrays, GeoJSON, NDJSON), the
//! OsmAnd parameters and the Traccar Client 9.x JSON body, OwnTracks, Overland, strict form
//! decoding, the timestamp parsers and the GPX reader. Each decoder gets (a) arbitrary bytes
//! and soups of its syntax's tokens, (b) mutations of seeds (bit flips, insertions,
//! deletions, repeats, truncation, splices of two seeds) from the corpus in
//! `tests/data/fuzz/` and the request fixtures of `tests/data/protocols/` and
//! `tests/data/gpx/`, and (c) generated documents shaped like real requests, with extreme
//! numbers, odd timestamps, wrong types and random nesting.
//!
//! The properties: nothing panics; an error is an error (a message, never a fix); a fix a
//! decoder returns and `RawFix::validate` accepts is sound (finite coordinates in range, a time
//! inside the window, an id `fences::check_id` takes, no NUL in `attrs`); valid generated
//! fixes and GPX documents decode to exactly what they hold.
//!
//! Runs are deterministic (a fixed RNG seed, no failure persistence), so CI never flakes; the
//! case counts keep this file at 10 to 15 s in a debug build on two cores. To hunt locally:
//! `GEOTRACK_FUZZ_CASES=50000 cargo test --release -p tracker --test fuzz` runs that many
//! cases per property, and `GEOTRACK_FUZZ_SEED=<u64>` explores another part of the input
//! space. A failure prints the shrunk input: keep it as a regression seed in
//! `tests/data/fuzz/` (see its `README.md`).

use std::path::Path;
use std::sync::LazyLock;

use chrono::{DateTime, Datelike, Duration, SecondsFormat, SubsecRound, Utc};
use proptest::collection::vec;
use proptest::option::weighted;
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Number, Value};
use tracker::decode::{self, BodyFormat, DecodeError, time};
use tracker::fix::{Fix, Limits, RawFix};
use tracker::gpx;
use tracker::protocols::osmand::{self, SpeedUnit};
use tracker::protocols::owntracks::{self, Identity};
use tracker::protocols::{Message, form, overland};

#[path = "../../tests/support/fuzz_kit.rs"]
mod kit;

use kit::{Bytes, Corpus, read_seeds};

// ------------------------------------------------------------------------------------------
// Running: a fixed seed, case counts that a developer can raise.
// ------------------------------------------------------------------------------------------

/// "geotrack" in ASCII.
const SEED: u64 = 0x6765_6f74_7261_636b;

/// Runs `test` on `cases` inputs (see [`kit::run`]).
fn fuzz<S: Strategy>(cases: u32, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>) {
    kit::run(SEED, cases, strategy, test);
}

/// The server clock of every run: 2024-06-01T12:00:00Z.
fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_717_243_200, 0).expect("2024-06-01")
}

// ------------------------------------------------------------------------------------------
// The corpus.
// ------------------------------------------------------------------------------------------

static POSITIONS: Corpus = LazyLock::new(|| read_seeds(&["fuzz/json", "fuzz/positions"]));
static OSMAND: Corpus = LazyLock::new(|| read_seeds(&["protocols/osmand", "fuzz/osmand"]));
static TRACCAR_JSON: Corpus =
    LazyLock::new(|| read_seeds(&["protocols/traccar-client-9x", "fuzz/traccar-json", "fuzz/json"]));
static OWNTRACKS: Corpus =
    LazyLock::new(|| read_seeds(&["protocols/owntracks", "fuzz/owntracks", "fuzz/json"]));
static OVERLAND: Corpus = LazyLock::new(|| read_seeds(&["protocols/overland", "fuzz/overland", "fuzz/json"]));
static GPX: Corpus = LazyLock::new(|| read_seeds(&["gpx", "fuzz/gpx"]));

/// Fragments of every syntax the decoders read, for insertions and token soups.
#[rustfmt::skip]
const TOKENS: &[&str] = &[
    "{", "}", "[", "]", ",", ":", "\"", "\\", "null", "true", "false", "0", "-1", "-0", "1.5", "90", "-90",
    "180", "-180", "540", "1e308", "1e400", "-1e400", "5e-324", "NaN", "Infinity", "\"NaN\"", "\"-inf\"",
    "9223372036854775808", "18446744073709551616", "1717243140", "1717243140000", "2147483647",
    "\"2024-06-01T12:00:00Z\"", "\"\\u0000\"", "\"\\ud800\"", "\"type\"", "\"Feature\"",
    "\"FeatureCollection\"", "\"features\"", "\"geometry\"", "\"Point\"", "\"coordinates\"",
    "\"properties\"", "\"device\"", "\"lat\"", "\"lon\"", "\"ts\"", "\"_type\"", "\"location\"", "\"tst\"",
    "\"topic\"", "\"locations\"", "\"coords\"", "\"latitude\"", "\"longitude\"", "\"device_id\"",
    "\"timestamp\"", "\n", "\r\n", " ", "\u{feff}", "é", "\u{202e}", "\u{1d11e}", "<", ">", "</", "/>",
    "<![CDATA[", "]]>", "<!--", "-->", "<?xml version=\"1.0\"?>", "&amp;", "&#48;", "&#x0;", "&#xD800;",
    "&unknown;", "<gpx>", "</gpx>", "<trk>", "<trkseg>", "<trkpt lat=\"1\" lon=\"2\">", "</trkpt>",
    "<wpt lat=\"-90\" lon=\"180\"/>", "<time>", "</time>", "<ele>", "</ele>", "<speed>", "</speed>",
    "<extensions>", "&", "=", "%", "%FF", "%C3", "%00", "%2C", "+", "id=", "lat=", "lon=", "timestamp=",
    "location=", "cell=", "wifi=", "speed=", "T", "Z", "+02:00", "-0700", "[Europe/Paris]",
];

// ------------------------------------------------------------------------------------------
// What every decoded fix must satisfy.
// ------------------------------------------------------------------------------------------

/// The GPX import's limits: history of any age, the usual future limit.
fn import_limits() -> Limits {
    Limits {
        max_age: Duration::days(365 * 200),
        ..Limits::default()
    }
}

/// Validates `raw` at the fixed server time and, so that more fixes get through, a minute
/// after its own time; every fix that passes must be sound.
fn check_raw(raw: &RawFix, limits: &Limits) -> Result<(), TestCaseError> {
    let mut times = vec![now()];
    if let Some(ts) = raw.ts.filter(|t| (1900..=9000).contains(&t.year())) {
        times.push(ts + Duration::minutes(1));
    }
    for received_at in times {
        if let Ok(fix) = raw.clone().validate(received_at, limits) {
            check_fix(&fix, received_at, limits)?;
        }
    }
    Ok(())
}

fn check_fix(fix: &Fix, received_at: DateTime<Utc>, limits: &Limits) -> Result<(), TestCaseError> {
    let within = |v: f64, lo: f64, hi: f64| v.is_finite() && (lo..=hi).contains(&v);
    prop_assert!(
        within(fix.lat, -90.0, 90.0) && within(fix.lon, -180.0, 180.0),
        "{fix:?}"
    );
    for (value, lo, hi) in [
        (fix.speed_mps, 0.0, 1.0e4),
        (fix.heading_deg, 0.0, 360.0),
        (fix.accuracy_m, 0.0, 1.0e7),
        (fix.altitude_m, -1.2e4, 1.0e6),
        (fix.battery, 0.0, 100.0),
    ] {
        prop_assert!(value.is_none_or(|v| within(v, lo, hi)), "{fix:?}");
    }
    prop_assert!(fences::check_id(&fix.device).is_ok(), "{fix:?}");
    prop_assert_eq!(fix.ts, fix.ts.trunc_subsecs(6));
    prop_assert!(fix.ts <= received_at + limits.max_future && fix.ts >= received_at - limits.max_age);
    let attrs = fix.attrs.clone().map(Value::Object).unwrap_or_default();
    prop_assert!(!holds_nul(&attrs), "{fix:?}");
    Ok(())
}

fn holds_nul(value: &Value) -> bool {
    match value {
        Value::String(text) => text.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        _ => false,
    }
}

fn check_message(message: &Message) -> Result<(), TestCaseError> {
    match message {
        Message::Fixes(fixes) => {
            prop_assert!(!fixes.is_empty());
            for fix in fixes {
                check_raw(fix, &Limits::default())?;
            }
        }
        Message::Ignored { reason } => prop_assert!(!reason.is_empty()),
        Message::Unusable { reason, detail } => prop_assert!(!reason.is_empty() && !detail.is_empty()),
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------
// The decoders, as the HTTP handlers and the import command call them.
// ------------------------------------------------------------------------------------------

const MAX_FIXES: usize = 64;

fn positions(body: &[u8]) -> Result<(), TestCaseError> {
    for format in [BodyFormat::Json, BodyFormat::Ndjson] {
        match decode::positions(body, format, MAX_FIXES) {
            Ok(records) => {
                prop_assert!(records.len() <= MAX_FIXES);
                for record in &records {
                    match record {
                        Ok(raw) => check_raw(raw, &Limits::default())?,
                        Err(rejection) => prop_assert!(!rejection.message.is_empty()),
                    }
                }
            }
            Err(DecodeError::TooManyFixes { count, max }) => prop_assert!(count > max && max == MAX_FIXES),
            Err(error) => prop_assert!(!error.to_string().is_empty()),
        }
    }
    Ok(())
}

/// A query string or form body: strict pair decoding, then the OsmAnd decoder in two units.
fn osmand_form(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(pairs) = form::pairs(bytes) {
        osmand_params(&pairs)?;
    }
    Ok(())
}

fn osmand_params(pairs: &[(String, String)]) -> Result<(), TestCaseError> {
    for unit in [SpeedUnit::Knots, SpeedUnit::Mps] {
        check_message(&osmand::decode_params(pairs, unit, now()))?;
    }
    Ok(())
}

fn traccar_json(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(json) = serde_json::from_slice::<Value>(bytes) {
        check_message(&osmand::decode_json(&json, now()))?;
    }
    Ok(())
}

fn overland_batch(body: &[u8], fallback: Option<&str>) -> Result<(), TestCaseError> {
    match overland::decode(body, fallback) {
        Ok(batch) => {
            for record in &batch.fixes {
                match record {
                    Ok(raw) => check_raw(raw, &Limits::default())?,
                    Err(rejection) => prop_assert!(!rejection.message.is_empty()),
                }
            }
        }
        Err(error) => prop_assert!(!error.to_string().is_empty()),
    }
    Ok(())
}

fn gpx_points(xml: &str) -> Result<(), TestCaseError> {
    if let Ok(points) = gpx::parse(xml) {
        for point in &points {
            check_raw(&gpx::to_raw_fix(point, "gpx-device"), &import_limits())?;
        }
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------
// Generators. A field of a generated request is usually sane (the right type, a plausible
// value, so that whole fixes get through and their checks run), sometimes odd (the right type
// with an extreme or malformed value) and rarely any JSON at all. Numbers are JSON text, so
// that they can be what no f64 prints (`1e400`, `-0`, 30 digits).
// ------------------------------------------------------------------------------------------

/// Numbers at the edges of every range the decoders check, and beyond f64 and i64.
#[rustfmt::skip]
const NUMBERS: &[&str] = &[
    "0", "-0", "0.0", "-0.0", "1", "-1", "90", "-90", "90.0000000001", "180", "-180", "180.0000000001",
    "360", "540", "10000", "-12000", "100", "1e11", "99999999999", "100000000000", "2147483647",
    "2147483648", "9223372036854775807", "9223372036854775808", "-9223372036854775808",
    "-9223372036854775809", "18446744073709551615", "18446744073709551616", "1E+2", "1e19", "9e18",
    "123456789012345678901234567890", "1e308", "1.7976931348623157e308", "-1.7976931348623157e308",
    "5e-324", "1e-400", "1e400", "-1e400", "1717243140.5", "1717243140123.456", "-62135596800",
    "253402300799", "8210298412799", "8210298412800", "-8334632851200",
];

/// Text that is almost a number, or a number only some parsers take.
#[rustfmt::skip]
const NUMBER_TEXTS: &[&str] = &[
    "NaN", "nan", "Infinity", "-Infinity", "inf", "-inf", "+5", ".5", "5.", "5.0E-4", "1_0", "0x1F", " 5 ",
    "", "-", "1e", "e5", "\u{661}", "1,5", "٫5", "5\u{0}",
];

/// Text values: identities, separators, invisible and control characters.
#[rustfmt::skip]
const STRINGS: &[&str] = &[
    "", " ", "a", "truck-7", "true", "TRUE", "false", "1", "null", "\u{0}", "\u{202e}x", "\u{feff}", "é",
    "\u{1d11e}", "a/b/c", "owntracks/user/phone", "owntracks//", "/", "//", "ab", "Z", "T",
    "[Europe/Paris]", ",", "1,2", "90,-180", "1,2,3,4", "1,2,3,4,5", "aa-bb-cc-dd-ee-ff,-70", "%FF",
    "location", "trip", "heartbeat",
];

type Gen = BoxedStrategy<String>;

/// A JSON number literal (a few beyond what `serde_json` reads, which must be an error).
fn json_number() -> Gen {
    prop_oneof![
        4 => (-200.0..200.0f64).prop_map(|v| v.to_string()),
        2 => any::<i64>().prop_map(|v| v.to_string()),
        1 => any::<f64>().prop_map(|v| Number::from_f64(v).map_or_else(|| "0".to_owned(), |n| n.to_string())),
        3 => select(NUMBERS).prop_map(str::to_owned),
        1 => (1_690_000_000i64..1_720_000_000).prop_map(|s| s.to_string()),
        1 => (1_690_000_000_000i64..1_720_000_000_000).prop_map(|ms| ms.to_string()),
    ]
    .boxed()
}

fn number_text() -> Gen {
    prop_oneof![3 => json_number(), 1 => select(NUMBER_TEXTS).prop_map(str::to_owned)].boxed()
}

/// A time as senders write it, valid or not: every field may be out of range, the zone may
/// be any of the forms the parsers know, the fraction may be long.
fn timestamp_text() -> Gen {
    let year = prop_oneof![4 => 1990..2030i32, 1 => -1..10_001i32, 1 => Just(262_143)];
    #[rustfmt::skip]
    let zone = select(&["Z", "z", "+00:00", "-07:00", "-0700", "+02", "+14:00", "-23:59", "+24:00", "", " ",
        "+02:00[Europe/Paris]", "[", "]", "+1:00"][..]);
    (
        (year, 0..14u32, 0..33u32),
        (0..26u32, 0..62u32, 0..62u32),
        weighted(0.4, "[0-9]{1,12}"),
        select(&["T", " ", "t", "+"][..]),
        zone,
    )
        .prop_map(|((y, mo, d), (h, mi, s), fraction, sep, zone)| {
            let fraction = fraction.map(|f| format!(".{f}")).unwrap_or_default();
            format!("{y:04}-{mo:02}-{d:02}{sep}{h:02}:{mi:02}:{s:02}{fraction}{zone}")
        })
        .boxed()
}

fn quoted(text: &str) -> String {
    serde_json::to_string(text).expect("a string serialises")
}

fn json_string() -> Gen {
    prop_oneof![
        6 => select(STRINGS).prop_map(quoted),
        4 => timestamp_text().prop_map(|t| quoted(&t)),
        2 => number_text().prop_map(|t| quoted(&t)),
        2 => any::<String>().prop_map(|t| quoted(&t)),
        1 => select(&["\"\\ud800\"", "\"\\u0000\"", "\"\\ud83d\\ude00\"", "\"a\\tb\"", "\"\\uFEFF\""][..])
            .prop_map(str::to_owned),
    ]
    .boxed()
}

fn json_key() -> Gen {
    let keys: Vec<&'static str> = TOKENS
        .iter()
        .copied()
        .filter(|t| t.len() > 2 && t.starts_with('"'))
        .collect();
    prop_oneof![3 => select(keys).prop_map(str::to_owned), 1 => json_string()].boxed()
}

fn object(members: &[String]) -> String {
    format!("{{{}}}", members.join(","))
}

fn array(items: &[String]) -> String {
    format!("[{}]", items.join(","))
}

/// Any JSON value, nested up to four levels.
fn json_value() -> Gen {
    let leaf = prop_oneof![
        Just("null".to_owned()),
        any::<bool>().prop_map(|b| b.to_string()),
        json_number(),
        json_string(),
    ];
    leaf.prop_recursive(4, 24, 5, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..5).prop_map(|items| array(&items)),
            vec((json_key(), inner), 0..5)
                .prop_map(|m| object(&m.into_iter().map(|(k, v)| format!("{k}:{v}")).collect::<Vec<_>>())),
        ]
    })
    .boxed()
}

/// Usually `sane`, sometimes `odd`, rarely any JSON.
fn field(sane: impl Strategy<Value = String> + 'static, odd: impl Strategy<Value = String> + 'static) -> Gen {
    prop_oneof![12 => sane, 3 => odd, 1 => json_value()].boxed()
}

/// An object with each of `fields` present with its probability, maybe a stray member, in
/// random order.
fn shaped(fields: Vec<(&'static str, f64, Gen)>) -> Gen {
    let members: Vec<BoxedStrategy<Option<String>>> = fields
        .into_iter()
        .map(|(key, presence, value)| {
            let value = if presence < 1.0 {
                weighted(presence, value).boxed()
            } else {
                value.prop_map(Some).boxed()
            };
            value
                .prop_map(move |v| v.map(|v| format!("{}:{v}", quoted(key))))
                .boxed()
        })
        .collect();
    (members, weighted(0.15, (json_key(), json_value())))
        .prop_map(|(members, stray)| {
            let mut all: Vec<String> = members.into_iter().flatten().collect();
            all.extend(stray.map(|(k, v)| format!("{k}:{v}")));
            all
        })
        .prop_shuffle()
        .prop_map(|members| object(&members))
        .boxed()
}

/// A number in `lo..hi`, as JSON text.
fn within(lo: f64, hi: f64) -> Gen {
    (lo..hi).prop_map(|v| v.to_string()).boxed()
}

fn sane_id() -> Gen {
    "[a-zA-Z0-9_./é-]{1,24}".boxed()
}

/// A time inside the default window around [`now`], in the JSON forms senders use.
fn sane_time() -> Gen {
    valid_time()
        .prop_flat_map(|t| {
            let offset = chrono::FixedOffset::east_opt(-7 * 3600).expect("offset");
            select(vec![
                quoted(&t.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
                quoted(
                    &t.with_timezone(&offset)
                        .to_rfc3339_opts(SecondsFormat::Millis, false),
                ),
                t.timestamp().to_string(),
                t.timestamp_millis().to_string(),
                format!("{}.{:03}", t.timestamp(), t.timestamp_subsec_millis()),
            ])
        })
        .boxed()
}

fn odd_time() -> Gen {
    prop_oneof![timestamp_text().prop_map(|t| quoted(&t)), json_number()].boxed()
}

/// A plausible measurement (speed, heading, accuracy, battery) or the `-1` "unknown" marker.
fn measure() -> Gen {
    field(
        prop_oneof![6 => within(0.0, 400.0), 1 => Just("-1".to_owned())],
        json_number(),
    )
}

fn point(lon: Gen, lat: Gen) -> Gen {
    let coordinates = prop_oneof![
        8 => (lon, lat, weighted(0.3, within(-100.0, 5000.0)))
            .prop_map(|(x, y, z)| array(&[Some(x), Some(y), z].into_iter().flatten().collect::<Vec<_>>())),
        1 => vec(json_number(), 0..5).prop_map(|c| array(&c)),
        1 => json_value(),
    ];
    let kind = field(
        Just("\"Point\"".to_owned()),
        select(&["\"LineString\"", "\"point\"", "null"][..]).prop_map(str::to_owned),
    );
    shaped(vec![
        ("type", 0.95, kind),
        ("coordinates", 0.95, coordinates.boxed()),
    ])
}

fn sane_lon() -> Gen {
    field(within(-180.0, 180.0), json_number())
}

fn sane_lat() -> Gen {
    field(within(-90.0, 90.0), json_number())
}

// ------------------------------------------------------------------------------------------
// (a) and (b): noise and mutated seeds, for every decoder.
// ------------------------------------------------------------------------------------------

#[test]
fn every_seed_decodes_without_panicking() {
    for seed in POSITIONS.iter() {
        positions(seed).expect("positions");
    }
    for seed in OSMAND.iter() {
        osmand_form(seed.trim_ascii()).expect("osmand");
    }
    for seed in TRACCAR_JSON.iter() {
        traccar_json(seed).expect("traccar json");
    }
    for seed in OWNTRACKS.iter() {
        check_message(&owntracks::decode(seed, &Identity::default())).expect("owntracks");
    }
    for seed in OVERLAND.iter() {
        overland_batch(seed, Some("fallback")).expect("overland");
    }
    for seed in GPX.iter() {
        gpx_points(&String::from_utf8_lossy(seed)).expect("gpx");
    }
}

/// The bugs the fuzzing found, each with its seed in `tests/data/fuzz/`.
#[test]
fn regressions() {
    let seed = |path: &str| {
        let full = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/data/fuzz")
            .join(path);
        std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full:?}: {e}"))
    };
    // Character and entity references in GPX text were dropped: `<ele>1&#48;</ele>` read as 1.
    let points = gpx::parse(&seed("gpx/entities.gpx")).expect("entities.gpx");
    assert_eq!(points.len(), 2);
    assert_eq!((points[0].ele, points[0].time), (Some(10.5), Some(now())));
    // Any other reference in a number is an error, never another number.
    assert!(gpx::parse(&seed("gpx/attribute-reference.gpx")).is_err());
    assert!(gpx::parse("<gpx><wpt lat=\"1\" lon=\"2\"><ele>1&x;</ele></wpt></gpx>").is_err());
}

#[test]
fn positions_survive_noise_and_mutations() {
    fuzz(6000, kit::input(&POSITIONS, TOKENS), |Bytes(body)| {
        positions(&body)
    });
}

#[test]
fn osmand_survives_noise_and_mutations() {
    fuzz(6000, kit::input(&OSMAND, TOKENS), |Bytes(body)| {
        osmand_form(&body)
    });
}

#[test]
fn traccar_json_survives_noise_and_mutations() {
    fuzz(6000, kit::input(&TRACCAR_JSON, TOKENS), |Bytes(body)| {
        traccar_json(&body)
    });
}

/// What the handler knows of an OwnTracks sender: mostly nothing, sometimes headers.
fn identity() -> impl Strategy<Value = Identity> {
    let part = || {
        weighted(
            0.25,
            prop_oneof![4 => sane_id(), 2 => select(STRINGS).prop_map(str::to_owned), 1 => any::<String>()],
        )
    };
    (part(), part(), part()).prop_map(|(user, device, basic_user)| Identity {
        user,
        device,
        basic_user,
    })
}

#[test]
fn owntracks_survives_noise_and_mutations() {
    fuzz(
        6000,
        (kit::input(&OWNTRACKS, TOKENS), identity()),
        |(Bytes(body), identity)| check_message(&owntracks::decode(&body, &identity)),
    );
}

#[test]
fn overland_survives_noise_and_mutations() {
    let fallback = weighted(0.5, select(STRINGS));
    fuzz(
        6000,
        (kit::input(&OVERLAND, TOKENS), fallback),
        |(Bytes(body), fallback)| overland_batch(&body, fallback),
    );
}

#[test]
fn gpx_survives_noise_and_mutations() {
    fuzz(6000, kit::input(&GPX, TOKENS), |Bytes(xml)| {
        gpx_points(&String::from_utf8_lossy(&xml))
    });
}

// ------------------------------------------------------------------------------------------
// (c): generated requests.
// ------------------------------------------------------------------------------------------

fn fix_fields(with_coordinates: bool) -> Vec<(&'static str, f64, Gen)> {
    let mut fields = vec![
        (
            "device",
            0.9,
            field(quoted_id(), prop_oneof![json_string(), json_number()]),
        ),
        ("ts", 0.9, field(sane_time(), odd_time())),
        ("speed_mps", 0.4, measure()),
        ("heading_deg", 0.4, measure()),
        ("accuracy_m", 0.4, measure()),
        ("altitude_m", 0.3, field(within(-100.0, 9000.0), json_number())),
        ("battery", 0.3, measure()),
        ("attrs", 0.3, json_value()),
    ];
    if with_coordinates {
        fields.extend([("lon", 0.95, sane_lon()), ("lat", 0.95, sane_lat())]);
    }
    fields
}

fn quoted_id() -> Gen {
    sane_id().prop_map(|id| quoted(&id)).boxed()
}

fn fix_record() -> Gen {
    let feature = shaped(vec![
        (
            "type",
            1.0,
            field(Just("\"Feature\"".to_owned()), Just("\"feature\"".to_owned())),
        ),
        ("geometry", 0.95, point(sane_lon(), sane_lat())),
        (
            "properties",
            0.95,
            prop_oneof![6 => shaped(fix_fields(false)), 1 => shaped(fix_fields(true))].boxed(),
        ),
    ]);
    prop_oneof![shaped(fix_fields(true)), feature].boxed()
}

fn positions_body() -> impl Strategy<Value = String> {
    let records = || vec(fix_record(), 0..6);
    let separator = select(&["\n", "\r\n", "\n\n  \n", "\n\u{feff}"][..]);
    prop_oneof![
        fix_record(),
        records().prop_map(|r| array(&r)),
        records().prop_map(|r| format!(r#"{{"type":"FeatureCollection","features":{}}}"#, array(&r))),
        (records(), separator).prop_map(|(r, separator)| r.join(separator)),
    ]
}

#[test]
fn generated_position_bodies() {
    fuzz(1500, positions_body(), |body| positions(body.as_bytes()));
}

/// A time as the OsmAnd protocol carries it: epoch seconds or milliseconds, ISO 8601, or
/// `yyyy-MM-dd HH:mm:ss`.
fn osmand_time() -> Gen {
    valid_time()
        .prop_flat_map(|t| {
            select(vec![
                t.timestamp().to_string(),
                t.timestamp_millis().to_string(),
                t.to_rfc3339_opts(SecondsFormat::Millis, true),
                t.format("%Y-%m-%d %H:%M:%S").to_string(),
            ])
        })
        .boxed()
}

fn osmand_pair(key: &'static str, sane: Gen) -> BoxedStrategy<(String, String)> {
    prop_oneof![8 => sane, 1 => number_text(), 1 => select(STRINGS).prop_map(str::to_owned)]
        .prop_map(move |value| (key.to_owned(), value))
        .boxed()
}

fn osmand_params_strategy() -> impl Strategy<Value = Vec<(String, String)>> {
    let text = |lo: f64, hi: f64| (lo..hi).prop_map(|v| v.to_string()).boxed();
    let cell = vec(-5i64..70_000, 4..6)
        .prop_map(|p| p.iter().map(ToString::to_string).collect::<Vec<_>>().join(","));
    let known = vec![
        (0.9, osmand_pair("id", sane_id())),
        (0.85, osmand_pair("lat", text(-90.0, 90.0))),
        (0.85, osmand_pair("lon", text(-180.0, 180.0))),
        (0.6, osmand_pair("timestamp", osmand_time())),
        (
            0.1,
            osmand_pair(
                "location",
                (text(-90.0, 90.0), text(-180.0, 180.0))
                    .prop_map(|(a, b)| format!("{a},{b}"))
                    .boxed(),
            ),
        ),
        (0.3, osmand_pair("speed", text(-1.0, 300.0))),
        (0.3, osmand_pair("bearing", text(-1.0, 360.0))),
        (0.3, osmand_pair("altitude", text(-100.0, 5000.0))),
        (0.3, osmand_pair("accuracy", text(-1.0, 100.0))),
        (0.3, osmand_pair("batt", text(-1.0, 100.0))),
        (0.2, osmand_pair("hdop", text(0.0, 50.0))),
        (0.1, osmand_pair("cell", cell.boxed())),
        (
            0.1,
            osmand_pair(
                "wifi",
                ("[0-9a-f-]{0,17}", -100i64..0)
                    .prop_map(|(m, r)| format!("{m},{r}"))
                    .boxed(),
            ),
        ),
    ];
    let known: Vec<_> = known.into_iter().map(|(p, s)| weighted(p, s)).collect();
    let extra_key = prop_oneof![
        3 => select(&["rpm", "ignition", "charge", "valid", "driverUniqueId", "token", "", "mock", "alarm"][..]).prop_map(str::to_owned),
        1 => select(&["id", "deviceid", "timestamp", "lat", "lon", "location", "speed", "heading", "cell", "wifi"][..]).prop_map(str::to_owned),
        1 => any::<String>(),
    ];
    let extra_value = prop_oneof![3 => number_text(), 2 => timestamp_text(), 2 => select(STRINGS).prop_map(str::to_owned), 1 => any::<String>()];
    (known, vec((extra_key, extra_value), 0..4))
        .prop_map(|(known, extra)| {
            let mut pairs: Vec<(String, String)> = known.into_iter().flatten().collect();
            pairs.extend(extra);
            pairs
        })
        .prop_shuffle()
}

#[test]
fn generated_osmand_parameters() {
    fuzz(3500, osmand_params_strategy(), |pairs| {
        osmand_params(&pairs)?;
        // The same parameters as the handler receives them: encoded, then strictly decoded.
        let encoded = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&pairs)
            .finish();
        osmand_form(encoded.as_bytes())
    });
}

#[test]
fn form_pairs_round_trip() {
    let text = || prop_oneof![select(STRINGS).prop_map(str::to_owned), any::<String>()];
    fuzz(1200, vec((text(), text()), 1..6), |pairs| {
        let encoded = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&pairs)
            .finish();
        let decoded = form::pairs(encoded.as_bytes());
        prop_assert_eq!(decoded.as_deref(), Ok(&pairs[..]), "{}", encoded);
        Ok(())
    });
}

fn traccar_location() -> Gen {
    let coords = shaped(vec![
        ("latitude", 0.95, sane_lat()),
        ("longitude", 0.95, sane_lon()),
        ("accuracy", 0.5, measure()),
        ("speed", 0.5, measure()),
        ("heading", 0.5, measure()),
        ("altitude", 0.5, field(within(-100.0, 5000.0), json_number())),
        ("speed_accuracy", 0.2, measure()),
        ("floor", 0.1, json_value()),
    ]);
    let battery = shaped(vec![
        ("level", 0.8, field(within(0.0, 1.0), json_number())),
        (
            "is_charging",
            0.8,
            field(any::<bool>().prop_map(|b| b.to_string()), json_value()),
        ),
    ]);
    let extras = shaped(vec![
        ("heartbeat", 0.2, field(Just("true".to_owned()), json_value())),
        ("alarm", 0.1, json_string()),
    ]);
    shaped(vec![
        ("timestamp", 0.8, field(sane_time(), odd_time())),
        ("coords", 0.95, coords),
        ("battery", 0.5, battery),
        (
            "activity",
            0.3,
            shaped(vec![("type", 0.9, json_string()), ("confidence", 0.9, measure())]),
        ),
        ("extras", 0.3, extras),
        ("is_moving", 0.3, json_value()),
        ("odometer", 0.3, measure()),
        ("uuid", 0.3, quoted_id()),
    ])
}

fn traccar_body() -> Gen {
    let location = prop_oneof![
        5 => traccar_location(),
        1 => vec(traccar_location(), 0..4).prop_map(|l| array(&l)),
    ];
    let root = shaped(vec![
        ("device_id", 0.9, field(quoted_id(), json_number())),
        ("location", 0.95, location.boxed()),
        ("_", 0.2, json_string()),
    ]);
    prop_oneof![4 => root.clone(), 1 => vec(root, 0..4).prop_map(|r| array(&r))].boxed()
}

#[test]
fn generated_traccar_json_bodies() {
    fuzz(1750, traccar_body(), |body| traccar_json(body.as_bytes()));
}

fn owntracks_body() -> Gen {
    let topic = prop_oneof![
        4 => (sane_id(), sane_id()).prop_map(|(u, d)| format!("owntracks/{u}/{d}")),
        1 => vec(prop_oneof![select(&["owntracks", "user", " ", "", "é"][..]).prop_map(str::to_owned), any::<String>()], 0..5)
            .prop_map(|segments| segments.join("/")),
    ];
    let tst = field(
        valid_time().prop_map(|t| t.timestamp().to_string()),
        prop_oneof![json_number(), number_text().prop_map(|t| quoted(&t))],
    );
    #[rustfmt::skip]
    let kind = field(Just("\"location\"".to_owned()),
        select(&["\"transition\"", "\"lwt\"", "\"card\"", "\"encrypted\"", "\"x\"", "1"][..]).prop_map(str::to_owned));
    shaped(vec![
        ("_type", 0.95, kind),
        ("lat", 0.95, sane_lat()),
        ("lon", 0.95, sane_lon()),
        ("tst", 0.9, tst),
        ("vel", 0.4, measure()),
        ("cog", 0.4, measure()),
        ("acc", 0.4, measure()),
        ("alt", 0.4, field(within(-100.0, 5000.0), json_number())),
        ("batt", 0.4, measure()),
        (
            "tid",
            0.7,
            field("[a-z]{2}".prop_map(|t| quoted(&t)), json_string()),
        ),
        ("topic", 0.6, field(topic.prop_map(|t| quoted(&t)), json_value())),
        ("inregions", 0.2, json_value()),
        ("image", 0.1, json_string()),
    ])
}

#[test]
fn generated_owntracks_bodies() {
    fuzz(1750, (owntracks_body(), identity()), |(body, identity)| {
        check_message(&owntracks::decode(body.as_bytes(), &identity))
    });
}

fn overland_body() -> Gen {
    let numeric = |lo: f64, hi: f64| {
        field(
            prop_oneof![4 => within(lo, hi), 1 => within(lo, hi).prop_map(|v| quoted(&v))],
            number_text().prop_map(|t| quoted(&t)),
        )
    };
    let overland_time = valid_time()
        .prop_flat_map(|t| {
            let offset = chrono::FixedOffset::west_opt(7 * 3600).expect("offset");
            select(vec![
                t.with_timezone(&offset).format("%Y-%m-%dT%H:%M:%S%z").to_string(),
                t.to_rfc3339_opts(SecondsFormat::Millis, true),
            ])
        })
        .prop_map(|t| quoted(&t));
    let properties = shaped(vec![
        ("timestamp", 0.9, field(overland_time, odd_time())),
        ("altitude", 0.5, numeric(-100.0, 5000.0)),
        ("speed", 0.5, numeric(-1.0, 100.0)),
        ("course", 0.5, numeric(-1.0, 360.0)),
        ("horizontal_accuracy", 0.5, numeric(-1.0, 100.0)),
        ("vertical_accuracy", 0.3, numeric(-1.0, 100.0)),
        ("battery_level", 0.5, numeric(-1.0, 1.0)),
        ("device_id", 0.5, field(quoted_id(), json_string())),
        ("action", 0.05, json_value()),
        (
            "type",
            0.05,
            select(&["\"Feature\"", "\"trip\""][..])
                .prop_map(str::to_owned)
                .boxed(),
        ),
        ("motion", 0.3, json_value()),
    ]);
    let location = shaped(vec![
        ("type", 0.95, field(Just("\"Feature\"".to_owned()), json_string())),
        (
            "geometry",
            0.95,
            prop_oneof![9 => point(sane_lon(), sane_lat()), 1 => Just("null".to_owned())].boxed(),
        ),
        ("properties", 0.95, properties),
    ]);
    let locations = prop_oneof![9 => vec(location, 0..6).prop_map(|l| array(&l)), 1 => json_value()];
    shaped(vec![
        ("locations", 0.95, locations.boxed()),
        ("current", 0.2, json_value()),
        ("trip", 0.1, json_value()),
    ])
}

#[test]
fn generated_overland_bodies() {
    let fallback = weighted(0.5, select(STRINGS));
    fuzz(1750, (overland_body(), fallback), |(body, fallback)| {
        overland_batch(body.as_bytes(), fallback)
    });
}

#[test]
fn timestamp_parsers() {
    fuzz(
        5000,
        (timestamp_text(), any::<i64>(), json_number()),
        |(text, epoch, number)| {
            for parse in [time::parse_flexible, time::parse_naive_utc, time::from_rfc3339] {
                if let Ok(t) = parse(&text)
                    && (1000..=9000).contains(&t.year())
                {
                    let again = time::parse_flexible(&t.to_rfc3339_opts(SecondsFormat::AutoSi, true));
                    prop_assert_eq!(again.ok(), Some(t), "{}", text);
                }
            }
            if let Ok(t) = time::from_epoch_traccar(epoch) {
                prop_assert!(t.timestamp() == epoch || t.timestamp_millis() == epoch);
            }
            if let Ok(n) = serde_json::from_str::<Number>(&number) {
                let _ = time::from_epoch_number(&n);
            }
            Ok(())
        },
    );
}
// ------------------------------------------------------------------------------------------
// Valid inputs must decode to what they hold.
// ------------------------------------------------------------------------------------------

/// A coordinate in range, the edges and their neighbours included.
fn valid_coordinate(limit: f64) -> BoxedStrategy<f64> {
    prop_oneof![
        4 => -limit..=limit,
        1 => select(vec![limit, -limit, 0.0, -0.0, limit.next_down(), (-limit).next_up(), 5e-324]),
    ]
    .boxed()
}

/// A fix time inside the default window around [`now`], at microsecond precision.
fn valid_time() -> impl Strategy<Value = DateTime<Utc>> {
    (-365 * 86_400i64..300, 0..1_000_000i64).prop_map(|(s, us)| {
        now() + Duration::seconds(s) + Duration::microseconds(if s == 300 { 0 } else { us })
    })
}

#[derive(Debug, Clone)]
struct ValidFix {
    device: String,
    ts: DateTime<Utc>,
    lon: f64,
    lat: f64,
    altitude: Option<f64>,
}

fn valid_fix() -> impl Strategy<Value = ValidFix> {
    (
        "[a-zA-Z0-9/_.é-]{1,40}",
        valid_time(),
        valid_coordinate(180.0),
        valid_coordinate(90.0),
        weighted(0.5, -12_000.0..1.0e6),
    )
        .prop_map(|(device, ts, lon, lat, altitude)| ValidFix {
            device,
            ts,
            lon,
            lat,
            altitude,
        })
}

/// The fix as each framing `decode::positions` takes: plain object, Feature, an array,
/// a FeatureCollection and NDJSON.
fn framings(fix: &ValidFix) -> Vec<(String, BodyFormat)> {
    let ts = fix.ts.to_rfc3339_opts(SecondsFormat::AutoSi, true);
    let mut plain = serde_json::json!({"device": fix.device, "ts": ts, "lon": fix.lon, "lat": fix.lat});
    let mut coordinates = vec![fix.lon, fix.lat];
    if let Some(altitude) = fix.altitude {
        plain["altitude_m"] = altitude.into();
        coordinates.push(altitude);
    }
    let feature = serde_json::json!({"type": "Feature", "geometry": {"type": "Point", "coordinates": coordinates},
        "properties": {"device": fix.device, "ts": ts}});
    let collection = serde_json::json!({"type": "FeatureCollection", "features": [feature]});
    vec![
        (plain.to_string(), BodyFormat::Json),
        (feature.to_string(), BodyFormat::Json),
        (format!("[{plain}]"), BodyFormat::Json),
        (collection.to_string(), BodyFormat::Json),
        (format!("\n{plain}\r\n"), BodyFormat::Ndjson),
        (format!("{feature}\n"), BodyFormat::Ndjson),
    ]
}

/// Whether two coordinates are the same number (`serde_json` may round the last bit).
fn same(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * a.abs().max(1.0)
}

#[test]
fn valid_fixes_survive_every_framing() {
    fuzz(1000, valid_fix(), |fix| {
        for (body, format) in framings(&fix) {
            let mut records = decode::positions(body.as_bytes(), format, MAX_FIXES).expect("decodes");
            prop_assert_eq!(records.len(), 1, "{}", body);
            let raw = records
                .remove(0)
                .map_err(|r| TestCaseError::fail(format!("{body}: {r:?}")))?;
            let got = raw
                .validate(now(), &Limits::default())
                .map_err(|r| TestCaseError::fail(format!("{body}: {r:?}")))?;
            prop_assert_eq!(&got.device, &fix.device);
            prop_assert_eq!(got.ts, fix.ts, "{}", body);
            prop_assert!(
                same(got.lon, fix.lon) && same(got.lat, fix.lat),
                "{} -> {:?}",
                body,
                got
            );
            prop_assert!(got.altitude_m.zip(fix.altitude).is_none_or(|(a, b)| same(a, b)));
            prop_assert_eq!(got.altitude_m.is_some(), fix.altitude.is_some());
        }
        Ok(())
    });
}

/// A GPX point as a generator writes it, and what the reader must return for it.
#[derive(Debug, Clone)]
struct GpxPointSpec {
    kind: &'static str,
    point: gpx::GpxPoint,
    /// Write a digit of `<ele>` as a character reference (`&#52;`).
    escaped: bool,
    /// `speed` inside Garmin's extension rather than GPX 1.0's `<speed>` child.
    extension_speed: bool,
    /// `lon` before `lat`, single quotes, a `<name>` and a comment inside.
    decorated: bool,
}

fn gpx_point() -> impl Strategy<Value = GpxPointSpec> {
    let point = (
        valid_coordinate(90.0),
        valid_coordinate(180.0),
        weighted(0.6, -1.0e4..1.0e4),
        weighted(0.6, valid_time()),
        weighted(0.4, 0.0..100.0),
    )
        .prop_map(|(lat, lon, ele, time, speed)| gpx::GpxPoint {
            lon,
            lat,
            ele,
            time,
            speed,
            course: None,
            accuracy: None,
        });
    (
        select(&["trkpt", "trkpt", "rtept", "wpt"][..]),
        point,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(kind, point, escaped, extension_speed, decorated)| GpxPointSpec {
                kind,
                point,
                escaped: escaped && point.ele.is_some(),
                extension_speed,
                decorated,
            },
        )
}

/// `value` with its first digit written as a character reference.
fn escape_a_digit(value: &str) -> String {
    match value.char_indices().find(|(_, c)| c.is_ascii_digit()) {
        Some((at, digit)) => format!("{}&#{};{}", &value[..at], u32::from(digit), &value[at + 1..]),
        None => value.to_owned(),
    }
}

fn write_gpx_point(spec: &GpxPointSpec) -> String {
    let p = &spec.point;
    let mut children: Vec<String> = Vec::new();
    if spec.decorated {
        children.push("<name>a &amp; b <![CDATA[<c>]]></name><!-- <ele>1</ele> -->".to_owned());
    }
    if let Some(ele) = p.ele {
        let text = if spec.escaped {
            escape_a_digit(&ele.to_string())
        } else {
            format!(" {ele:e}\n")
        };
        children.push(format!("<ele>{text}</ele>"));
    }
    if let Some(time) = p.time {
        children.push(format!(
            "<time>{}</time>",
            time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
        ));
    }
    match p.speed {
        Some(speed) if spec.extension_speed => children.push(format!(
            "<extensions><gpxtpx:TrackPointExtension><gpxtpx:speed>{speed}</gpxtpx:speed>\
             </gpxtpx:TrackPointExtension></extensions>"
        )),
        Some(speed) => children.push(format!("<speed>{speed}</speed>")),
        None => {}
    }
    let attributes = if spec.decorated {
        format!("lon='{}' lat='{}'", p.lon, p.lat)
    } else {
        format!("lat=\"{}\" lon=\"{}\"", p.lat, p.lon)
    };
    let element = if children.is_empty() {
        format!("<{} {attributes}/>", spec.kind)
    } else {
        format!(
            "<{} {attributes}>{}</{}>",
            spec.kind,
            children.concat(),
            spec.kind
        )
    };
    match spec.kind {
        "trkpt" => format!("<trk><trkseg>{element}</trkseg></trk>"),
        "rtept" => format!("<rte>{element}</rte>"),
        _ => element,
    }
}

fn gpx_document() -> impl Strategy<Value = (String, Vec<gpx::GpxPoint>)> {
    let header = select(
        &[
            "",
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n",
            "\u{feff}<?xml version=\"1.0\"?>\r\n",
        ][..],
    );
    (header, vec(gpx_point(), 0..8)).prop_map(|(header, specs)| {
        let body: String = specs.iter().map(write_gpx_point).collect::<Vec<_>>().join("\n");
        let xml = format!(
            "{header}<gpx version=\"1.1\" xmlns=\"http://www.topografix.com/GPX/1/1\" \
             xmlns:gpxtpx=\"http://www.garmin.com/xmlschemas/TrackPointExtension/v2\">\n{body}\n</gpx>\n"
        );
        let track: Vec<gpx::GpxPoint> = specs
            .iter()
            .filter(|s| s.kind == "trkpt")
            .map(|s| s.point)
            .collect();
        let expected = if track.is_empty() {
            specs.iter().map(|s| s.point).collect()
        } else {
            track
        };
        (xml, expected)
    })
}

#[test]
fn valid_gpx_documents_give_their_points() {
    fuzz(1200, gpx_document(), |(xml, expected)| {
        let got = gpx::parse(&xml).map_err(|e| TestCaseError::fail(format!("{e}\n{xml}")))?;
        prop_assert_eq!(got, expected, "{}", xml);
        Ok(())
    });
}
