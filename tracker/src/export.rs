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

#[derive(Debug, sqlx::FromRow)]
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
                 xmlns=\"http://www.topografix.com/GPX/1/1\">\n<trk><name>",
            );
            push_xml_escaped(out, device);
            out.push_str("</name><trkseg>\n");
        }
        TrackFormat::Csv => {
            out.push_str("device,ts,lon,lat,speed_mps,heading_deg,accuracy_m,altitude_m,battery\n");
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
            let _ = writeln!(out, "<time>{ts}</time></trkpt>");
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
            out.push('\n');
        }
    }
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

fn push_csv_field(out: &mut String, text: &str) {
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
            "device,ts,lon,lat,speed_mps,heading_deg,accuracy_m,altitude_m,battery\n\
             \"a,\"\"b\"\"\",2026-01-02T03:04:05.500Z,1.5,-2,3,,,10,\n"
        );
    }

    #[test]
    fn gpx_escapes_the_name_and_writes_elevation_and_time() {
        let mut out = String::new();
        header(TrackFormat::Gpx, "<truck & co>", &mut out);
        point_text(TrackFormat::Gpx, "x", &point(), true, &mut out);
        footer(TrackFormat::Gpx, &mut out);
        assert!(out.contains("<name>&lt;truck &amp; co&gt;</name>"));
        assert!(out.contains(
            "<trkpt lat=\"-2\" lon=\"1.5\"><ele>10</ele><time>2026-01-02T03:04:05.500Z</time></trkpt>"
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
