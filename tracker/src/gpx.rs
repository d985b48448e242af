//! GPX import: reads the points of a GPX 1.0 or 1.1 file for the import command.
//!
//! Track points (`trkpt`, of every track and segment, in file order) are the recorded
//! history; only a file without any is read for its route points and waypoints (`rtept`,
//! `wpt`, in file order). A point keeps `ele`, `time`, a speed (GPX 1.0's `<speed>` child or any
//! `speed` element inside the point's extensions: Garmin's `gpxtpx:speed`, OsmAnd's
//! `osmand:speed`, m/s), a course (GPX 1.0's `<course>` or an extension's `course`, degrees) and
//! an accuracy (an extension's `accuracy`, metres, as `geotrack`'s GPX export writes it).
//! Namespace prefixes are ignored, so any extension schema works.
//! Points without a time are returned; the caller decides what to do with them.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use quick_xml::Reader;
use quick_xml::escape::resolve_xml_entity;
use quick_xml::events::attributes::AttrError;
use quick_xml::events::{BytesRef, BytesStart, Event};

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
    /// `<course>` (GPX 1.0) or an extension's `course`, degrees clockwise from north.
    pub course: Option<f64>,
    /// An extension's `accuracy`, metres.
    pub accuracy: Option<f64>,
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

/// Why a GPX document cannot be read. The messages reach the user of the import command, so
/// they name the element and, where the reader knows it, the byte offset.
// quick-xml's errors are part of the messages (as they always were) rather than `#[source]`s,
// so that a reporter printing the error chain does not repeat them.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GpxError {
    /// The document is not XML (an unclosed element, a bad character, ...).
    #[error("the GPX is not well-formed XML near byte {position}: {error}")]
    Xml { position: u64, error: quick_xml::Error },
    /// The attributes of a point element cannot be read.
    #[error("<{element}> near byte {position}: {error}")]
    Attribute {
        element: String,
        position: u64,
        error: AttrError,
    },
    /// A point element lacks `lat` or `lon`.
    #[error("<{element}> near byte {position} has no `{key}` attribute")]
    MissingCoordinate {
        element: String,
        position: u64,
        key: &'static str,
    },
    /// A point's `lat` or `lon` is not a number.
    #[error("<{element}> near byte {position}: `{key}` {value:?} is not a number")]
    InvalidCoordinate {
        element: String,
        position: u64,
        key: &'static str,
        value: String,
    },
    /// `<ele>` or a `speed` element holds something other than a number.
    #[error("<{element}> {text:?} is not a number")]
    NotANumber { element: String, text: String },
    /// `<time>` is not an ISO 8601 time; the text says why.
    #[error("<time>: {0}")]
    Time(String),
    /// The document is XML but not GPX.
    #[error("the document has no <gpx> element")]
    NotGpx,
    /// The document ends inside an element (a truncated file).
    #[error("the document ends inside <{0}>: the file is cut short")]
    Truncated(String),
}

/// Reads every point of a GPX document (see the module documentation for which ones).
pub fn parse(xml: &str) -> Result<Vec<GpxPoint>, GpxError> {
    let mut reader = Reader::from_str(xml);
    let mut points = Points::default();
    loop {
        let position = reader.buffer_position();
        let event = reader
            .read_event()
            .map_err(|error| GpxError::Xml { position, error })?;
        match event {
            Event::Start(element) => points.start(&element, position)?,
            Event::Empty(element) => points.empty(&element, position)?,
            Event::Text(content) => points.text.push_str(&content.xml10_content()),
            Event::CData(content) => points.text.push_str(&content.xml10_content()),
            // quick-xml reports `&#48;` and `&amp;` apart from the text around them; ignoring
            // them read `<ele>1&#48;</ele>` as 1, not 10 (found by `tests/fuzz.rs`).
            Event::GeneralRef(reference) => points.text.push_str(&reference_text(&reference)),
            Event::End(_) => points.end()?,
            Event::Eof => break,
            _ => {}
        }
    }
    points.finish()
}

/// The text a character reference or a predefined entity stands for. Any other reference (an
/// entity of a DTD, an invalid character) is kept as written, so that a number holding one is
/// an error rather than another number.
fn reference_text<'a>(reference: &'a BytesRef<'_>) -> Cow<'a, str> {
    match reference.resolve_char_ref() {
        Ok(Some(c)) => Cow::Owned(c.to_string()),
        _ => resolve_xml_entity(reference)
            .map_or_else(|| Cow::Owned(format!("&{};", &**reference)), Cow::Borrowed),
    }
}

/// The state of [`parse`] between two XML events.
#[derive(Default)]
struct Points {
    track: Vec<GpxPoint>,
    other: Vec<GpxPoint>,
    /// The point element being read, if the reader is inside one.
    open: Option<Open>,
    /// Local names of the open elements, innermost last.
    stack: Vec<String>,
    /// Text of the innermost element so far.
    text: String,
    seen_gpx: bool,
}

impl Points {
    /// An opening tag: starts a point unless one is open already (points do not nest).
    fn start(&mut self, element: &BytesStart<'_>, position: u64) -> Result<(), GpxError> {
        let name = local_name(element);
        self.seen_gpx |= name == "gpx";
        if self.open.is_none()
            && let Some(kind) = point_kind(&name)
        {
            self.open = Some(Open {
                point: start_point(element, &name, position)?,
                kind,
                depth: self.stack.len(),
            });
        }
        self.stack.push(name);
        self.text.clear();
        Ok(())
    }

    /// A self-closing tag: a point without children, complete at once.
    fn empty(&mut self, element: &BytesStart<'_>, position: u64) -> Result<(), GpxError> {
        let name = local_name(element);
        self.seen_gpx |= name == "gpx";
        if self.open.is_none()
            && let Some(kind) = point_kind(&name)
        {
            let point = start_point(element, &name, position)?;
            self.push(kind, point);
        }
        Ok(())
    }

    /// A closing tag: completes the open point, or applies one of its children to it.
    fn end(&mut self) -> Result<(), GpxError> {
        let name = self.stack.pop().unwrap_or_default();
        if let Some(current) = self.open.as_mut() {
            if self.stack.len() == current.depth {
                let done = self.open.take().map(|o| (o.kind, o.point));
                if let Some((kind, point)) = done {
                    self.push(kind, point);
                }
            } else {
                let direct_child = self.stack.len() == current.depth + 1;
                read_child(&mut current.point, &name, direct_child, self.text.trim())?;
            }
        }
        self.text.clear();
        Ok(())
    }

    fn push(&mut self, kind: Kind, point: GpxPoint) {
        match kind {
            Kind::Track => self.track.push(point),
            Kind::Other => self.other.push(point),
        }
    }

    /// The track points, or the route points and waypoints of a file without any.
    fn finish(self) -> Result<Vec<GpxPoint>, GpxError> {
        if !self.seen_gpx {
            return Err(GpxError::NotGpx);
        }
        if let Some(open) = self.stack.last() {
            return Err(GpxError::Truncated(open.clone()));
        }
        Ok(if self.track.is_empty() {
            self.other
        } else {
            self.track
        })
    }
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
        heading_deg: point.course,
        accuracy_m: point.accuracy,
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

/// A point element's coordinates; `name` and `position` are for the error messages.
fn start_point(element: &BytesStart<'_>, name: &str, position: u64) -> Result<GpxPoint, GpxError> {
    let coordinate = |key: &'static str| -> Result<f64, GpxError> {
        let attribute = element
            .try_get_attribute(key)
            .map_err(|error| GpxError::Attribute {
                element: name.to_owned(),
                position,
                error,
            })?
            .ok_or_else(|| GpxError::MissingCoordinate {
                element: name.to_owned(),
                position,
                key,
            })?;
        attribute
            .value
            .trim()
            .parse()
            .map_err(|_| GpxError::InvalidCoordinate {
                element: name.to_owned(),
                position,
                key,
                value: attribute.value.clone().into_owned(),
            })
    };
    Ok(GpxPoint {
        lat: coordinate("lat")?,
        lon: coordinate("lon")?,
        ele: None,
        time: None,
        speed: None,
        course: None,
        accuracy: None,
    })
}

/// Applies a closed element inside a point: `ele` and `time` as its direct children, `speed`,
/// `course` and `accuracy` at any depth (GPX 1.0 child or extension).
fn read_child(point: &mut GpxPoint, name: &str, direct_child: bool, text: &str) -> Result<(), GpxError> {
    if text.is_empty() {
        return Ok(());
    }
    let number = || {
        text.parse::<f64>().map_err(|_| GpxError::NotANumber {
            element: name.to_owned(),
            text: text.to_owned(),
        })
    };
    match name {
        "ele" if direct_child => point.ele = Some(number()?),
        "time" if direct_child => {
            point.time = Some(time::parse_flexible(text).map_err(|r| GpxError::Time(r.message))?);
        }
        "speed" => point.speed = Some(number()?),
        "course" => point.course = Some(number()?),
        "accuracy" => point.accuracy = Some(number()?),
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
    fn a_truncated_file_is_an_error_not_fewer_points() {
        let cut = &GPX_11[..GPX_11
            .find("<trkseg><trkpt lat=\"45.002\"")
            .expect("second segment")];
        let error = parse(cut).expect_err("truncated").to_string();
        assert!(error.contains("cut short") && error.contains("<trk>"), "{error}");
        assert!(parse(&GPX_11[..40]).is_err(), "cut inside the <gpx> tag");
    }

    #[test]
    fn errors_name_the_problem() {
        assert!(
            parse("<gpx><trkpt lat=\"1\"/></gpx>")
                .expect_err("lon")
                .to_string()
                .contains("lon")
        );
        assert!(
            parse("<gpx><trkpt lat=\"x\" lon=\"1\"/></gpx>")
                .expect_err("lat")
                .to_string()
                .contains("lat")
        );
        assert!(
            parse(
                "<gpx><trk><trkseg><trkpt lat=\"1\" lon=\"1\"><time>noon</time></trkpt></trkseg></trk></gpx>"
            )
            .expect_err("time")
            .to_string()
            .contains("time")
        );
        assert!(parse("<gpx><trkpt lat=\"1\" lon=\"1\"></gpx>").is_err());
        assert!(matches!(parse("<kml/>"), Err(GpxError::NotGpx)));
        assert!(GpxError::NotGpx.to_string().contains("gpx"));
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
