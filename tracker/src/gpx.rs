//! GPX import: reads the points of a GPX 1.0 or 1.1 file for the import command.
//!
//! Track points (`trkpt`, of every track and segment, in file order) are the recorded
//! history; only a file without any is read for its route points and waypoints (`rtept`,
//! `wpt`, in file order). A point keeps `ele`, `time` and a speed: GPX 1.0's `<speed>` child or
//! any `speed` element inside the point's extensions (Garmin's `gpxtpx:speed`, OsmAnd's
//! `osmand:speed`), all in m/s. Namespace prefixes are ignored, so any extension schema works.
//! Points without a time are returned; the caller decides what to do with them.

use chrono::{DateTime, Utc};
use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

use crate::decode::time;
use crate::fix::RawFix;

/// One point of a GPX file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GpxPoint {
    pub lon: f64,
    pub lat: f64,
    /// `<ele>`, metres.
    pub ele: Option<f64>,
    /// `<time>`, converted to UTC.
    pub time: Option<DateTime<Utc>>,
    /// `<speed>` (GPX 1.0) or an extension's `speed`, metres per second.
    pub speed: Option<f64>,
}

/// The kinds of point elements.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Track,
    Other,
}

/// A point being read, with the element depth it started at.
struct Open {
    point: GpxPoint,
    kind: Kind,
    depth: usize,
}

/// Reads every point of a GPX document (see the module documentation for which ones).
pub fn parse(xml: &str) -> Result<Vec<GpxPoint>, String> {
    let mut reader = Reader::from_str(xml);
    let mut track = Vec::new();
    let mut other = Vec::new();
    let mut open: Option<Open> = None;
    // Local names of the open elements, innermost last.
    let mut stack: Vec<String> = Vec::new();
    let mut text = String::new();
    let mut seen_gpx = false;
    loop {
        let position = reader.buffer_position();
        let event = reader
            .read_event()
            .map_err(|e| format!("the GPX is not well-formed XML near byte {position}: {e}"))?;
        match event {
            Event::Start(element) => {
                let name = local_name(&element);
                seen_gpx |= name == "gpx";
                if open.is_none()
                    && let Some(kind) = point_kind(&name)
                {
                    open = Some(Open {
                        point: start_point(&element, &name, position)?,
                        kind,
                        depth: stack.len(),
                    });
                }
                stack.push(name);
                text.clear();
            }
            Event::Empty(element) => {
                let name = local_name(&element);
                seen_gpx |= name == "gpx";
                if open.is_none()
                    && let Some(kind) = point_kind(&name)
                {
                    let point = start_point(&element, &name, position)?;
                    push(&mut track, &mut other, kind, point);
                }
            }
            Event::Text(content) => text.push_str(&content.xml10_content()),
            Event::CData(content) => text.push_str(&content.xml10_content()),
            Event::End(_) => {
                let name = stack.pop().unwrap_or_default();
                if let Some(current) = open.as_mut() {
                    if stack.len() == current.depth {
                        let done = open.take().map(|o| (o.kind, o.point));
                        if let Some((kind, point)) = done {
                            push(&mut track, &mut other, kind, point);
                        }
                    } else {
                        let direct_child = stack.len() == current.depth + 1;
                        read_child(&mut current.point, &name, direct_child, text.trim())?;
                    }
                }
                text.clear();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !seen_gpx {
        return Err("the document has no <gpx> element".into());
    }
    Ok(if track.is_empty() { other } else { track })
}

/// The fix a GPX point describes, for `device`. The time stays `None` when the point has
/// none; [`RawFix::validate`] then rejects it unless the caller fills it in.
pub fn to_raw_fix(point: &GpxPoint, device: &str) -> RawFix {
    RawFix {
        device: Some(device.to_owned()),
        ts: point.time,
        lon: Some(point.lon),
        lat: Some(point.lat),
        speed_mps: point.speed.filter(|s| *s >= 0.0),
        altitude_m: point.ele,
        ..RawFix::default()
    }
}

fn local_name(element: &BytesStart<'_>) -> String {
    element.local_name().as_ref().to_owned()
}

fn point_kind(name: &str) -> Option<Kind> {
    match name {
        "trkpt" => Some(Kind::Track),
        "rtept" | "wpt" => Some(Kind::Other),
        _ => None,
    }
}

fn push(track: &mut Vec<GpxPoint>, other: &mut Vec<GpxPoint>, kind: Kind, point: GpxPoint) {
    match kind {
        Kind::Track => track.push(point),
        Kind::Other => other.push(point),
    }
}

fn start_point(element: &BytesStart<'_>, name: &str, position: u64) -> Result<GpxPoint, String> {
    let coordinate = |key: &str| -> Result<f64, String> {
        let attribute = element
            .try_get_attribute(key)
            .map_err(|e| format!("<{name}> near byte {position}: {e}"))?
            .ok_or_else(|| format!("<{name}> near byte {position} has no `{key}` attribute"))?;
        attribute.value.trim().parse().map_err(|_| {
            format!(
                "<{name}> near byte {position}: `{key}` {:?} is not a number",
                attribute.value
            )
        })
    };
    Ok(GpxPoint {
        lat: coordinate("lat")?,
        lon: coordinate("lon")?,
        ele: None,
        time: None,
        speed: None,
    })
}

/// Applies a closed element inside a point: `ele` and `time` as its direct children, `speed`
/// at any depth (GPX 1.0 child or extension).
fn read_child(point: &mut GpxPoint, name: &str, direct_child: bool, text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Ok(());
    }
    let number = || {
        text.parse::<f64>()
            .map_err(|_| format!("<{name}> {text:?} is not a number"))
    };
    match name {
        "ele" if direct_child => point.ele = Some(number()?),
        "time" if direct_child => {
            point.time = Some(time::parse_flexible(text).map_err(|r| format!("<time>: {}", r.message))?);
        }
        "speed" => point.speed = Some(number()?),
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GPX_11: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<gpx version="1.1" creator="test" xmlns="http://www.topografix.com/GPX/1/1"
     xmlns:gpxtpx="http://www.garmin.com/xmlschemas/TrackPointExtension/v2">
  <wpt lat="1" lon="2"><name>ignored when there are track points</name></wpt>
  <trk><name>a &amp; b</name>
    <trkseg>
      <trkpt lat="45.0" lon="13.5"><ele>12.5</ele><time>2024-05-01T12:00:00Z</time>
        <extensions><gpxtpx:TrackPointExtension><gpxtpx:speed>3.5</gpxtpx:speed></gpxtpx:TrackPointExtension></extensions>
      </trkpt>
      <trkpt lat="45.001" lon="13.501"/>
    </trkseg>
    <trkseg><trkpt lat="45.002" lon="13.502"><time>2024-05-01T14:00:01+02:00</time></trkpt></trkseg>
  </trk>
</gpx>"#;

    #[test]
    fn track_points_of_every_segment_with_extensions() {
        let points = parse(GPX_11).expect("parses");
        assert_eq!(points.len(), 3);
        assert_eq!(
            (points[0].lat, points[0].lon, points[0].ele),
            (45.0, 13.5, Some(12.5))
        );
        assert_eq!(points[0].speed, Some(3.5));
        assert_eq!(
            points[0].time.map(|t| t.to_rfc3339()).as_deref(),
            Some("2024-05-01T12:00:00+00:00")
        );
        assert_eq!(points[1].time, None);
        assert_eq!(points[2].time.map(|t| t.timestamp() - 1_714_564_800), Some(1));
    }

    #[test]
    fn routes_and_waypoints_only_without_track_points() {
        let xml = r#"<gpx version="1.1"><wpt lat="1" lon="2"/><rte><rtept lat="3" lon="4"><ele>5</ele></rtept></rte></gpx>"#;
        let points = parse(xml).expect("parses");
        assert_eq!(
            points.iter().map(|p| (p.lat, p.lon)).collect::<Vec<_>>(),
            [(1.0, 2.0), (3.0, 4.0)]
        );
        assert_eq!(points[1].ele, Some(5.0));
    }

    #[test]
    fn errors_name_the_problem() {
        assert!(
            parse("<gpx><trkpt lat=\"1\"/></gpx>")
                .expect_err("lon")
                .contains("lon")
        );
        assert!(
            parse("<gpx><trkpt lat=\"x\" lon=\"1\"/></gpx>")
                .expect_err("lat")
                .contains("lat")
        );
        assert!(
            parse(
                "<gpx><trk><trkseg><trkpt lat=\"1\" lon=\"1\"><time>noon</time></trkpt></trkseg></trk></gpx>"
            )
            .expect_err("time")
            .contains("time")
        );
        assert!(parse("<gpx><trkpt lat=\"1\" lon=\"1\"></gpx>").is_err());
        assert!(parse("<kml/>").expect_err("not gpx").contains("gpx"));
    }

    #[test]
    fn a_point_becomes_an_unchecked_fix() {
        let points = parse(GPX_11).expect("parses");
        let fix = to_raw_fix(&points[0], "bike");
        assert_eq!(fix.device.as_deref(), Some("bike"));
        assert_eq!(
            (fix.lat, fix.lon, fix.altitude_m, fix.speed_mps),
            (Some(45.0), Some(13.5), Some(12.5), Some(3.5))
        );
        assert_eq!(fix.ts, points[0].time);
        assert_eq!(to_raw_fix(&points[1], "bike").ts, None);
    }
}
