//! What a map's style leads it to besides tiles: the glyph ranges of `GET /fonts/...` (decoded
//! from the protobuf wire format by hand) and the outside basemap of `[tiles] basemap_style`.

use reqwest::Method;
use serde_json::Value;

use crate::helpers::{TestApp, json_with_status, spawn_app, spawn_with};

/// A protobuf field: number and payload (varints as their value, length-delimited as bytes).
#[derive(Debug)]
enum Field<'a> {
    Varint(u32, u64),
    Bytes(u32, &'a [u8]),
}

fn read_varint(bytes: &[u8], at: &mut usize) -> u64 {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = bytes[*at];
        *at += 1;
        value |= u64::from(byte & 0x7F) << shift;
        if byte & 0x80 == 0 {
            return value;
        }
    }
    panic!("varint too long");
}

/// The fields of one message; panics on wire types a glyphs protobuf does not use.
fn fields(bytes: &[u8]) -> Vec<Field<'_>> {
    let mut at = 0;
    let mut out = Vec::new();
    while at < bytes.len() {
        let key = read_varint(bytes, &mut at);
        let number = u32::try_from(key >> 3).expect("field number");
        match key & 7 {
            0 => out.push(Field::Varint(number, read_varint(bytes, &mut at))),
            2 => {
                let len = usize::try_from(read_varint(bytes, &mut at)).expect("length");
                out.push(Field::Bytes(number, &bytes[at..at + len]));
                at += len;
            }
            other => panic!("wire type {other} at {at}"),
        }
    }
    out
}

/// A decoded `glyphs` message: its one fontstack's name and range, and the glyph ids.
fn decode_glyphs(bytes: &[u8]) -> (String, String, Vec<u64>) {
    let top = fields(bytes);
    let [Field::Bytes(1, stack)] = top.as_slice() else {
        panic!("not one fontstack: {top:?}");
    };
    let (mut name, mut range, mut ids) = (None, None, Vec::new());
    for field in fields(stack) {
        match field {
            Field::Bytes(1, text) => name = Some(String::from_utf8(text.to_vec()).expect("name")),
            Field::Bytes(2, text) => range = Some(String::from_utf8(text.to_vec()).expect("range")),
            Field::Bytes(3, glyph) => {
                let glyph = fields(glyph);
                let id = glyph.iter().find_map(|f| match f {
                    Field::Varint(1, id) => Some(*id),
                    _ => None,
                });
                let bitmap = glyph
                    .iter()
                    .any(|f| matches!(f, Field::Bytes(2, b) if !b.is_empty()));
                let advance = glyph.iter().any(|f| matches!(f, Field::Varint(7, _)));
                assert!(advance, "glyph {id:?} without an advance");
                if id == Some(u64::from(b'A')) {
                    assert!(bitmap, "A has an SDF bitmap");
                }
                ids.push(id.expect("glyph id"));
            }
            other => panic!("unexpected fontstack field {other:?}"),
        }
    }
    (name.expect("name"), range.expect("range"), ids)
}

async fn glyphs(app: &TestApp, path: &str) -> (String, String, Vec<u64>) {
    let reply = app.get(path).await;
    assert_eq!(reply.status(), 200, "{path}");
    assert_eq!(reply.headers()["content-type"], "application/x-protobuf");
    assert!(
        reply.headers()["cache-control"]
            .to_str()
            .expect("cache-control")
            .contains("max-age=31536000"),
        "glyphs are cached long"
    );
    decode_glyphs(&reply.bytes().await.expect("body"))
}

#[tokio::test]
async fn glyph_ranges_of_the_style_font_are_served_as_glyphs_protobuf() {
    let app = spawn_app().await;
    let style = json_with_status(app.get("/styles/default.json").await, 200).await;
    // The style's template, filled in as MapLibre does (fontstack URI-encoded).
    let template = style["glyphs"].as_str().expect("glyphs");
    assert!(template.starts_with(&app.url("/fonts/")), "{template}");
    let url = template
        .replace("{fontstack}", "Noto%20Sans%20Regular")
        .replace("{range}", "0-255");
    let reply = app.request_url(Method::GET, &url).send().await;
    assert_eq!(reply.status(), 200, "{url}");
    let (name, range, ids) = decode_glyphs(&reply.bytes().await.expect("body"));
    assert_eq!((name.as_str(), range.as_str()), ("Noto Sans Regular", "0-255"));
    assert!(ids.len() > 150, "{} glyphs", ids.len());
    assert!(ids.iter().all(|id| *id <= 255), "{ids:?}");
    assert!(
        [u64::from(b'A'), u64::from(b'z'), 0xE9]
            .iter()
            .all(|c| ids.contains(c)),
        "A, z and é"
    );

    // Every font a label layer asks for is served.
    for layer in style["layers"].as_array().expect("layers") {
        for font in layer["layout"]["text-font"].as_array().into_iter().flatten() {
            let font = font.as_str().expect("font name");
            let path = format!("/fonts/{}/0-255.pbf", font.replace(' ', "%20"));
            assert_eq!(glyphs(&app, &path).await.0, font, "{}", layer["id"]);
        }
    }
    // Cyrillic; a stack is served by the first font this server has.
    let (name, range, ids) = glyphs(&app, "/fonts/Nope%20Sans,Noto%20Sans%20Regular/1024-1279.pbf").await;
    assert_eq!(
        (name.as_str(), range.as_str()),
        ("Noto Sans Regular", "1024-1279")
    );
    assert!(ids.contains(&0x0416), "Ж");
    // A block the font does not cover: its range with no glyphs, not an error that would
    // drop a map tile's labels.
    let (name, range, ids) = glyphs(&app, "/fonts/Noto%20Sans%20Regular/19968-20223.pbf").await;
    assert_eq!(
        (name.as_str(), range.as_str(), ids.len()),
        ("Noto Sans Regular", "19968-20223", 0)
    );

    for (path, code) in [
        ("/fonts/Comic%20Sans/0-255.pbf", "unknown_font"),
        ("/fonts/Nope,Other/0-255.pbf", "unknown_font"),
        ("/fonts/Noto%20Sans%20Regular/0-300.pbf", "unknown_glyph_range"),
        (
            "/fonts/Noto%20Sans%20Regular/65536-65791.pbf",
            "unknown_glyph_range",
        ),
        ("/fonts/Noto%20Sans%20Regular/latin.pbf", "unknown_glyph_range"),
    ] {
        let error = json_with_status(app.get(path).await, 404).await;
        assert_eq!(error["error"]["code"], code, "{path}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_configured_basemap_style_reaches_the_style_maps_load() {
    // Through the configuration file, as an operator sets it.
    let file = std::env::temp_dir().join(format!("geotrack-basemap-{}.toml", std::process::id()));
    std::fs::write(
        &file,
        "[tiles]\nbasemap_style = \"https://tiles.openfreemap.org/styles/liberty\"\n",
    )
    .expect("config file");
    let loaded = geotrack::Config::load(Some(&file), &geotrack::config::Overrides::default());
    std::fs::remove_file(&file).expect("remove config file");
    let tiles = loaded.expect("config").tiles;
    assert_eq!(
        tiles.basemap_style.as_deref(),
        Some("https://tiles.openfreemap.org/styles/liberty")
    );

    let app = spawn_with(|config| config.tiles = tiles).await;
    let style = json_with_status(app.get("/styles/default.json?token=t").await, 200).await;
    assert_eq!(
        style["metadata"]["geotrack:basemap"],
        "https://tiles.openfreemap.org/styles/liberty"
    );
    // The style is otherwise the usual one: the layers the basemap replaces are marked, and
    // geotrack's own still point at this server.
    let marked: Vec<&str> = style["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .filter(|l| l["metadata"]["geotrack:basemap"] == Value::Bool(true))
        .filter_map(|l| l["id"].as_str())
        .collect();
    assert_eq!(marked, ["sea", "land", "borders", "country-labels"]);
    assert_eq!(
        style["sources"]["fences"]["url"],
        app.url("/tiles/fences?token=t")
    );
    app.stop().await;

    let plain = spawn_app().await;
    let style = json_with_status(plain.get("/styles/default.json").await, 200).await;
    assert!(
        style["metadata"].get("geotrack:basemap").is_none(),
        "{}",
        style["metadata"]
    );
    plain.stop().await;
}

#[tokio::test]
async fn a_basemap_style_that_is_no_web_url_is_refused_at_start() {
    let mut config = geotrack::Config {
        bind: "127.0.0.1:0".parse().expect("addr"),
        migrate_on_start: false,
        ..geotrack::Config::default()
    };
    config.tiles.basemap_style = Some("file:///etc/passwd".into());
    let error = geotrack::Application::build(config).await.expect_err("refused");
    assert!(error.to_string().contains("basemap_style"), "{error}");
}
