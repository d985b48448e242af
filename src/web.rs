//! The web map, served from the binary: `web/` (the page, its scripts and style), the Leaflet
//! and OpenLayers example pages (`web/examples`), MapLibre GL JS, Leaflet, maplibre-gl-leaflet,
//! OpenLayers and ol-mapbox-style vendored from npm (`web/vendor`; its glyphs are served by
//! `routes::glyphs`) and the Natural Earth countries for the basemap (`web/data`), embedded at
//! compile time so the server needs no files and no internet.

use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

/// Path, media type, bytes.
const ASSETS: [(&str, &str, &[u8]); 19] = [
    (
        "/",
        "text/html; charset=utf-8",
        include_bytes!("../web/index.html"),
    ),
    (
        "/app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../web/app.js"),
    ),
    (
        "/app.css",
        "text/css; charset=utf-8",
        include_bytes!("../web/app.css"),
    ),
    (
        "/draw.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../web/draw.js"),
    ),
    (
        "/replay.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../web/replay.js"),
    ),
    (
        "/nearby.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../web/nearby.js"),
    ),
    (
        "/trips.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../web/trips.js"),
    ),
    (
        "/examples/leaflet.html",
        "text/html; charset=utf-8",
        include_bytes!("../web/examples/leaflet.html"),
    ),
    (
        "/examples/openlayers.html",
        "text/html; charset=utf-8",
        include_bytes!("../web/examples/openlayers.html"),
    ),
    (
        "/vendor/maplibre-gl.mjs",
        "text/javascript; charset=utf-8",
        include_bytes!("../web/vendor/maplibre-gl.mjs"),
    ),
    (
        "/vendor/maplibre-gl-worker.mjs",
        "text/javascript; charset=utf-8",
        include_bytes!("../web/vendor/maplibre-gl-worker.mjs"),
    ),
    (
        "/vendor/maplibre-gl.css",
        "text/css; charset=utf-8",
        include_bytes!("../web/vendor/maplibre-gl.css"),
    ),
    (
        "/vendor/leaflet.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../web/vendor/leaflet.js"),
    ),
    (
        "/vendor/leaflet.css",
        "text/css; charset=utf-8",
        include_bytes!("../web/vendor/leaflet.css"),
    ),
    (
        "/vendor/leaflet-maplibre-gl.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../web/vendor/leaflet-maplibre-gl.js"),
    ),
    (
        "/vendor/ol.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../web/vendor/ol.js"),
    ),
    (
        "/vendor/olms.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../web/vendor/olms.js"),
    ),
    (
        "/vendor/ol.css",
        "text/css; charset=utf-8",
        include_bytes!("../web/vendor/ol.css"),
    ),
    ("/data/countries.geojson", "application/geo+json", COUNTRIES),
];

/// Natural Earth 1:110m countries (public domain): the web map's GeoJSON fallback, and the
/// basemap `geotrack import basemap` and `serve --demo` load when given no file.
pub const COUNTRIES: &[u8] = include_bytes!("../web/data/countries.geojson");

/// The paths served, for the router.
pub fn paths() -> impl Iterator<Item = &'static str> {
    ASSETS.iter().map(|(path, _, _)| *path).filter(|p| *p != "/")
}

/// The asset at the request's path (404 JSON when there is none).
pub async fn asset(uri: Uri) -> Response {
    serve(uri.path())
}

/// The page itself.
pub fn index() -> Response {
    serve("/")
}

fn serve(path: &str) -> Response {
    let Some((_, media_type, bytes)) = ASSETS.iter().find(|(p, _, _)| *p == path) else {
        return crate::error::ApiError::not_found("no_route", "no such file").into_response();
    };
    let mut response = (StatusCode::OK, *bytes).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(media_type));
    // Vendored files change only with a new binary; the page and its script revalidate.
    let cache = if path.starts_with("/vendor/") || path.starts_with("/data/") {
        "public, max-age=3600"
    } else {
        "no-cache"
    };
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    response
}
