//! Track export: one device's history between two times as GeoJSON (a FeatureCollection of
//! Point features), GPX 1.1 (one track) or CSV (with a header row), streamed in chunks of about
//! 64 KiB through a small bounded channel, so a year of history never sits in memory and a slow
//! reader slows the database cursor instead of growing a buffer.

use std::fmt::Write as _;

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::task::TaskTracker;

const CHUNK_BYTES: usize = 64 * 1024;

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackFormat {
    GeoJson,
    Gpx,
    Csv,
}

impl TrackFormat {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "geojson" | "json" => Some(Self::GeoJson),
            "gpx" => Some(Self::Gpx),
            "csv" => Some(Self::Csv),
            _ => None,
        }
    }

    /// The format an `Accept` header asks for first (by q-value, then order), if it names one:
    /// `application/geo+json` or `application/json`, `application/gpx+xml`, `text/csv`.
    pub fn from_accept(accept: &str) -> Option<Self> {
        let mut best: Option<(f32, Self)> = None;
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.strip_prefix("q="))
                .find_map(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            let format = match media.as_str() {
                "application/geo+json" | "application/json" => Self::GeoJson,
                "application/gpx+xml" => Self::Gpx,
                "text/csv" => Self::Csv,
                _ => continue,
            };
            if q > 0.0 && best.is_none_or(|(b, _)| q > b) {
                best = Some((q, format));
            }
        }
        best.map(|(_, format)| format)
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::GeoJson => "application/geo+json",
            Self::Gpx => "application/gpx+xml",
            Self::Csv => "text/csv; charset=utf-8",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Self::GeoJson => "geojson",
            Self::Gpx => "gpx",
            Self::Csv => "csv",
        }
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
struct Point {
    ts: DateTime<Utc>,
    lon: f64,
    lat: f64,
    speed_mps: Option<f64>,
    heading_deg: Option<f64>,
    accuracy_m: Option<f64>,
    altitude_m: Option<f64>,
    battery: Option<f64>,
    attrs: Option<serde_json::Value>,
}

/// Streams the fixes of `device` with `from <= ts < to`, oldest first, in `format`.
/// The query runs on a task of `tasks`; it stops when the reader goes away.
pub fn stream(
    pool: PgPool,
    tasks: &TaskTracker,
    device: String,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    format: TrackFormat,
) -> ReceiverStream<Result<Bytes, std::io::Error>> {
    let (tx, rx) = mpsc::channel(4);
    tasks.spawn(async move {
        if let Err(error) = produce(&pool, &device, from, to, format, &tx).await {
            tracing::warn!(%device, %error, "track export failed mid-stream");
            let _ = tx.send(Err(std::io::Error::other(error.to_string()))).await;
        }
    });
    ReceiverStream::new(rx)
}

async fn produce(
    pool: &PgPool,
    device: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    format: TrackFormat,
    tx: &mpsc::Sender<Result<Bytes, std::io::Error>>,
) -> Result<(), sqlx::Error> {
    let mut out = String::with_capacity(CHUNK_BYTES + 1024);
    header(format, device, &mut out);
    let mut rows = sqlx::query_as::<_, Point>(
        "SELECT ts, ST_X(geom) AS lon, ST_Y(geom) AS lat, speed_mps, heading_deg, accuracy_m,
                altitude_m, battery, attrs
         FROM positions WHERE device = $1 AND ts >= $2 AND ts < $3 ORDER BY ts",
    )
    .bind(device)
    .bind(from)
    .bind(to)
    .fetch(pool);
    let mut first = true;
    while let Some(point) = rows.next().await {
        point_text(format, device, &point?, first, &mut out);
        first = false;
        if out.len() >= CHUNK_BYTES && !send(tx, &mut out).await {
            return Ok(()); // the reader went away
        }
    }
    footer(format, &mut out);
    send(tx, &mut out).await;
    Ok(())
}

async fn send(tx: &mpsc::Sender<Result<Bytes, std::io::Error>>, out: &mut String) -> bool {
    let chunk = Bytes::from(std::mem::take(out));
    tx.send(Ok(chunk)).await.is_ok()
}

fn header(format: TrackFormat, device: &str, out: &mut String) {
    match format {
        TrackFormat::GeoJson => out.push_str(r#"{"type":"FeatureCollection","features":["#),
        TrackFormat::Gpx => {
            out.push_str(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<gpx version=\"1.1\" creator=\"geotrack\" \
                 xmlns=\"http://www.topografix.com/GPX/1/1\" xmlns:gpxtpx=\"http://www.garmin.com/xmlschemas/TrackPointExtension/v2\" \
                 xmlns:geotrack=\"urn:geotrack:gpx:1\">\n<trk><name>",
            );
            push_xml_escaped(out, device);
            out.push_str("</name><trkseg>\n");
        }
        TrackFormat::Csv => {
            out.push_str("device,ts,lon,lat,speed_mps,heading_deg,accuracy_m,altitude_m,battery,attrs\n");
        }
    }
}

fn footer(format: TrackFormat, out: &mut String) {
    match format {
        TrackFormat::GeoJson => out.push_str("]}\n"),
        TrackFormat::Gpx => out.push_str("</trkseg></trk>\n</gpx>\n"),
        TrackFormat::Csv => {}
    }
}

fn point_text(format: TrackFormat, device: &str, p: &Point, first: bool, out: &mut String) {
    let ts = p.ts.to_rfc3339_opts(SecondsFormat::AutoSi, true);
    match format {
        TrackFormat::GeoJson => {
            let feature = serde_json::json!({
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [p.lon, p.lat]},
                "properties": {
                    "device": device, "ts": ts, "speed_mps": p.speed_mps, "heading_deg": p.heading_deg,
                    "accuracy_m": p.accuracy_m, "altitude_m": p.altitude_m, "battery": p.battery,
                    "attrs": p.attrs,
                }
            });
            if !first {
                out.push(',');
            }
            let _ = write!(out, "\n{feature}");
        }
        TrackFormat::Gpx => {
            let _ = write!(out, "<trkpt lat=\"{}\" lon=\"{}\">", p.lat, p.lon);
            if let Some(ele) = p.altitude_m {
                let _ = write!(out, "<ele>{ele}</ele>");
            }
            let _ = write!(out, "<time>{ts}</time>");
            push_gpx_extensions(out, p);
            out.push_str("</trkpt>\n");
        }
        TrackFormat::Csv => {
            push_csv_field(out, device);
            let _ = write!(out, ",{ts},{},{}", p.lon, p.lat);
            for value in [p.speed_mps, p.heading_deg, p.accuracy_m, p.altitude_m, p.battery] {
                out.push(',');
                if let Some(v) = value {
                    let _ = write!(out, "{v}");
                }
            }
            out.push(',');
            if let Some(attrs) = p
                .attrs
                .as_ref()
                .filter(|a| a.as_object().is_some_and(|o| !o.is_empty()))
            {
                push_csv_field(out, &attrs.to_string());
            }
            out.push('\n');
        }
    }
}

/// Speed and course in Garmin's `TrackPointExtension` (v2), read by most GPX tools and by
/// `geotrack import gpx`, and the accuracy in geotrack's own (`geotrack:accuracy`, metres).
fn push_gpx_extensions(out: &mut String, p: &Point) {
    if p.speed_mps.is_none() && p.heading_deg.is_none() && p.accuracy_m.is_none() {
        return;
    }
    out.push_str("<extensions>");
    if p.speed_mps.is_some() || p.heading_deg.is_some() {
        out.push_str("<gpxtpx:TrackPointExtension>");
        if let Some(speed) = p.speed_mps {
            let _ = write!(out, "<gpxtpx:speed>{speed}</gpxtpx:speed>");
        }
        if let Some(course) = p.heading_deg {
            let _ = write!(out, "<gpxtpx:course>{course}</gpxtpx:course>");
        }
        out.push_str("</gpxtpx:TrackPointExtension>");
    }
    if let Some(accuracy) = p.accuracy_m {
        let _ = write!(out, "<geotrack:accuracy>{accuracy}</geotrack:accuracy>");
    }
    out.push_str("</extensions>");
}

fn push_xml_escaped(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
}

/// A text cell: quoted when it holds a separator, a quote or a line break, and prefixed with `'`
/// when it starts with `=`, `+`, `-`, `@`, a tab or a carriage return, which spreadsheets would
/// run as a formula (OWASP's CSV injection advice; a device id is chosen by whoever posts).
pub fn push_csv_field(out: &mut String, text: &str) {
    let guarded;
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        guarded = format!("'{text}");
        guarded.as_str()
    } else {
        text
    };
    if text.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&text.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point() -> Point {
        Point {
            ts: "2026-01-02T03:04:05.5Z".parse().expect("ts"),
            lon: 1.5,
            lat: -2.0,
            speed_mps: Some(3.0),
            heading_deg: None,
            accuracy_m: None,
            altitude_m: Some(10.0),
            battery: None,
            attrs: None,
        }
    }

    #[test]
    fn csv_quotes_awkward_device_ids_and_leaves_unknowns_empty() {
        let mut out = String::new();
        header(TrackFormat::Csv, "a,\"b\"", &mut out);
        point_text(TrackFormat::Csv, "a,\"b\"", &point(), true, &mut out);
        assert_eq!(
            out,
            "device,ts,lon,lat,speed_mps,heading_deg,accuracy_m,altitude_m,battery,attrs\n\
             \"a,\"\"b\"\"\",2026-01-02T03:04:05.500Z,1.5,-2,3,,,10,,\n"
        );
    }

    #[test]
    fn csv_carries_attrs_and_defuses_formulas() {
        let mut out = String::new();
        let p = Point {
            attrs: Some(serde_json::json!({"note": "=HYPERLINK(\"x\")"})),
            ..point()
        };
        point_text(TrackFormat::Csv, "=cmd|' /C calc'!A0", &p, true, &mut out);
        let cells: Vec<&str> = out.trim_end().splitn(2, ",2026").collect();
        assert_eq!(
            cells[0], "'=cmd|' /C calc'!A0",
            "a device id that would run as a formula"
        );
        assert!(
            out.trim_end()
                .ends_with(",\"{\"\"note\"\":\"\"=HYPERLINK(\\\"\"x\\\"\")\"\"}\""),
            "{out}"
        );
        for (text, cell) in [
            ("@sum", "'@sum"),
            ("+1", "'+1"),
            ("-1", "'-1"),
            ("truck-1", "truck-1"),
        ] {
            let mut out = String::new();
            push_csv_field(&mut out, text);
            assert_eq!(out, cell);
        }
    }

    #[test]
    fn gpx_speed_course_and_accuracy_come_back_through_the_import() {
        let p = Point {
            heading_deg: Some(271.5),
            accuracy_m: Some(4.2),
            ..point()
        };
        let mut out = String::new();
        header(TrackFormat::Gpx, "x", &mut out);
        point_text(TrackFormat::Gpx, "x", &p, true, &mut out);
        footer(TrackFormat::Gpx, &mut out);
        let back = crate::gpx::parse(&out).expect("our GPX reads back");
        assert_eq!(
            (back[0].speed, back[0].course, back[0].accuracy, back[0].ele),
            (Some(3.0), Some(271.5), Some(4.2), Some(10.0))
        );
    }

    #[test]
    fn accept_chooses_the_format_by_preference() {
        let cases = [
            ("text/csv", Some(TrackFormat::Csv)),
            ("application/gpx+xml, text/csv;q=0.5", Some(TrackFormat::Gpx)),
            (
                "text/csv;q=0.4, application/geo+json;q=0.9",
                Some(TrackFormat::GeoJson),
            ),
            ("text/csv;q=0", None),
            ("*/*", None),
            ("text/html", None),
        ];
        for (accept, format) in cases {
            assert_eq!(TrackFormat::from_accept(accept), format, "{accept}");
        }
    }

    #[test]
    fn gpx_escapes_the_name_and_writes_elevation_and_time() {
        let mut out = String::new();
        header(TrackFormat::Gpx, "<truck & co>", &mut out);
        point_text(TrackFormat::Gpx, "x", &point(), true, &mut out);
        footer(TrackFormat::Gpx, &mut out);
        assert!(out.contains("<name>&lt;truck &amp; co&gt;</name>"));
        assert!(out.contains(
            "<trkpt lat=\"-2\" lon=\"1.5\"><ele>10</ele><time>2026-01-02T03:04:05.500Z</time>\
             <extensions><gpxtpx:TrackPointExtension><gpxtpx:speed>3</gpxtpx:speed>\
             </gpxtpx:TrackPointExtension></extensions></trkpt>"
        ));
        assert!(out.ends_with("</gpx>\n"));
    }

    #[test]
    fn geojson_is_a_valid_feature_collection() {
        let mut out = String::new();
        header(TrackFormat::GeoJson, "d", &mut out);
        point_text(TrackFormat::GeoJson, "d", &point(), true, &mut out);
        point_text(TrackFormat::GeoJson, "d", &point(), false, &mut out);
        footer(TrackFormat::GeoJson, &mut out);
        let value: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
        assert_eq!(value["features"].as_array().expect("features").len(), 2);
        assert_eq!(value["features"][0]["properties"]["speed_mps"], 3.0);
    }
}
