//! `GET /fonts/{fontstack}/{range}`: the SDF glyph ranges that MapLibre styles name in their
//! `glyphs` URL (`{base}/fonts/{fontstack}/{range}.pbf`), so maps can draw labels without an
//! outside font server. The glyphs are embedded in the binary: Noto Sans Regular (SIL OFL 1.1,
//! vendored from npm in `web/vendor/fonts`), for Latin, Latin Extended, IPA, Greek, Cyrillic and
//! general punctuation. A range of another block is answered with no glyphs (clients draw those
//! characters as nothing) rather than an error: MapLibre drops a whole tile's symbols when one of
//! its glyph ranges fails to load.

use axum::extract::Path;
use axum::extract::rejection::PathRejection;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, ErrorBody};

/// Glyph ranges of one font: the first code point of each 256 and the range's PBF.
type Ranges = [(u32, &'static [u8]); 7];

macro_rules! ranges {
    ($font:literal: $($start:literal - $end:literal),* $(,)?) => {
        [$((
            $start,
            include_bytes!(concat!("../../web/vendor/fonts/", $font, "/", $start, "-", $end, ".pbf")) as &[u8],
        )),*]
    };
}

/// Font name (as styles name it in `text-font`), its glyph ranges.
const FONTS: [(&str, Ranges); 1] = [(
    "Noto Sans Regular",
    ranges!("Noto Sans Regular": 0-255, 256-511, 512-767, 768-1023, 1024-1279, 1280-1535, 8192-8447),
)];

/// Glyphs never change for a font name: clients keep them a year.
const CACHE_CONTROL: &str = "public, max-age=31536000, immutable";

/// `GET /fonts/{fontstack}/{range}`: the glyphs of the first font of the stack that this server
/// has, for 256 code points.
#[utoipa::path(get, path = "/fonts/{fontstack}/{range}", operation_id = "get_glyphs", tag = "tiles",
    params(("fontstack" = String, Path, description = "Font names separated by commas (a style's `text-font`); the \
            first one this server has is used (see GET /fonts/x/0-255.pbf's 404 for the list)"),
        ("range" = String, Path, description = "`START-END.pbf`: 256 code points from a multiple of 256, e.g. `0-255.pbf`")),
    responses((status = 200, description = "A glyphs protobuf (`fontstack` with the font's name, the range and its SDF \
            glyphs; none for a range the font has no glyphs for)", content_type = "application/x-protobuf",
            headers(("Cache-Control" = String, description = "A year: glyphs never change"))),
        (status = 400, description = "The path cannot be read (bad percent-encoding)", body = ErrorBody),
        (status = 404, description = "No font of the stack is served (`unknown_font`), or the range is not a range of 256 \
            code points (`unknown_glyph_range`)", body = ErrorBody)))]
pub async fn glyphs(path: Result<Path<(String, String)>, PathRejection>) -> Result<Response, ApiError> {
    let Path((fontstack, range)) = path.map_err(|e| ApiError::bad_request("invalid_path", e.body_text()))?;
    let Some((font, ranges)) = fontstack
        .split(',')
        .find_map(|name| FONTS.iter().find(|(font, _)| *font == name.trim()))
    else {
        let known: Vec<&str> = FONTS.iter().map(|(font, _)| *font).collect();
        return Err(ApiError::not_found(
            "unknown_font",
            format!("no font of {fontstack:?} is served; fonts: {}", known.join(", ")),
        ));
    };
    let Some(start) = range_start(&range) else {
        return Err(ApiError::not_found(
            "unknown_glyph_range",
            format!(
                "{range:?} is no glyph range: START-END.pbf, 256 code points from a multiple of 256 up to 65535"
            ),
        ));
    };
    let body = ranges
        .iter()
        .find(|(first, _)| *first == start)
        .map_or_else(|| no_glyphs(font, start), |(_, bytes)| bytes.to_vec());
    let headers = [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-protobuf"),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static(CACHE_CONTROL)),
    ];
    Ok((headers, body).into_response())
}

/// The first code point of `START-END.pbf` (or `START-END`) when it is a range of 256 code
/// points of the Basic Multilingual Plane starting at a multiple of 256, as MapLibre asks.
fn range_start(range: &str) -> Option<u32> {
    let (start, end) = range.strip_suffix(".pbf").unwrap_or(range).split_once('-')?;
    let digits = |text: &str| !text.is_empty() && text.len() <= 5 && text.bytes().all(|b| b.is_ascii_digit());
    if !digits(start) || !digits(end) {
        return None;
    }
    let (start, end) = (start.parse::<u32>().ok()?, end.parse::<u32>().ok()?);
    (start.is_multiple_of(256) && end == start + 255 && end <= 0xFFFF).then_some(start)
}

/// A glyphs protobuf holding `font`'s range from `start` with no glyph: message `glyphs`,
/// field 1 (`fontstack`) = { 1: name, 2: range }.
fn no_glyphs(font: &str, start: u32) -> Vec<u8> {
    let range = format!("{start}-{}", start + 255);
    let mut stack = Vec::new();
    for (field, text) in [(1u8, font), (2, range.as_str())] {
        stack.push(field << 3 | 2);
        varint(&mut stack, text.len());
        stack.extend_from_slice(text.as_bytes());
    }
    let mut message = vec![1 << 3 | 2];
    varint(&mut message, stack.len());
    message.extend(stack);
    message
}

fn varint(out: &mut Vec<u8>, mut value: usize) {
    while value >= 0x80 {
        out.push((value & 0x7F) as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_256_code_points_from_a_multiple_of_256() {
        assert_eq!(range_start("0-255.pbf"), Some(0));
        assert_eq!(range_start("1024-1279.pbf"), Some(1024));
        assert_eq!(range_start("65280-65535"), Some(65_280));
        for bad in [
            "0-256.pbf",
            "1-256.pbf",
            "65536-65791.pbf",
            "-255.pbf",
            "0-255.png",
            "a-b.pbf",
            "+0-255.pbf",
            "",
        ] {
            assert_eq!(range_start(bad), None, "{bad}");
        }
    }

    #[test]
    fn every_embedded_range_is_the_glyphs_of_its_font_and_range() {
        for (font, ranges) in FONTS {
            for (start, bytes) in ranges {
                let header = no_glyphs(font, start);
                // The embedded file starts with the same fontstack fields, then its glyphs.
                let name_and_range = &header[2..];
                let length_end = 2 + bytes[1..].iter().position(|b| b & 0x80 == 0).expect("length");
                let inner = &bytes[length_end..];
                assert!(inner.starts_with(name_and_range), "{font} {start}");
            }
        }
    }

    #[test]
    fn an_empty_range_names_its_font_and_range() {
        let bytes = no_glyphs("Noto Sans Regular", 19_968);
        assert_eq!(bytes[0], 0x0a);
        assert_eq!(usize::from(bytes[1]), bytes.len() - 2);
        assert_eq!(&bytes[2..4], &[0x0a, 17]);
        assert_eq!(&bytes[4..21], b"Noto Sans Regular");
        assert_eq!(&bytes[21..23], &[0x12, 11]);
        assert_eq!(&bytes[23..], b"19968-20223");
    }
}
