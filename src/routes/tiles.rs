//! `GET /tiles/{layer}/{z}/{x}/{y}` (also `.mvt` / `.pbf`): one Mapbox Vector Tile built by
//! PostGIS. 204 for an empty tile, 400 for a tile that does not exist, 404 for an unknown layer.
//! Tiles show where devices are, so they need the `read` scope; map clients may pass the token
//! as `?token=`. Tiles come from the cache (`tile_cache`), gzipped when the client accepts it,
//! with a strong `ETag` (`If-None-Match` gives 304). `/tiles/fences,positions/...` returns
//! several layers in one tile.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tiles::{Layer, TileCoord};
use tokio::sync::broadcast::error::RecvError;

use crate::auth::{DeviceAuth, Scope, SocketAuth};
use crate::error::ApiError;
use crate::state::AppState;
use crate::tile_cache::TileKey;
use crate::ws::{self, Gone};

#[utoipa::path(get, path = "/tiles/{layer}/{z}/{x}/{y}", tag = "tiles", security(("bearer" = []), ("token" = [])),
    params(("layer" = String, Path, description = "fences, positions, or several separated by commas"), ("z" = u8, Path, description = "Zoom, 0 to 22"),
        ("x" = u32, Path, description = "Column"), ("y" = String, Path, description = "Row, optionally with .mvt or .pbf")),
    responses((status = 200, description = "The tile", content_type = "application/vnd.mapbox-vector-tile"),
        (status = 204, description = "No feature in this tile"), (status = 400, description = "No such tile"),
        (status = 404, description = "Unknown layer")))]
pub async fn tile(
    State(state): State<AppState>,
    DeviceAuth(principal): DeviceAuth,
    path: Result<Path<(String, String, String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    principal.require(Scope::Read)?;
    let Path((layer, z, x, y)) = path.map_err(|e| ApiError::bad_request("invalid_path", e.body_text()))?;
    let layers = layer
        .split(',')
        .map(known_layer)
        .collect::<Result<Vec<Layer>, ApiError>>()?;
    let tile =
        TileCoord::parse(&z, &x, &y).map_err(|e| ApiError::bad_request("invalid_tile", e.to_string()))?;
    let pool = &state.pool;
    let mut built = Vec::with_capacity(layers.len());
    for &layer in &layers {
        let one = state
            .tiles
            .get(TileKey { layer, tile }, || build(pool, layer, tile))
            .await
            .map_err(|e| ApiError::from(&*e))?;
        built.push(one);
    }
    // Several layers: a tile's layers are a repeated field, so tiles concatenate into one.
    let (etag, identity, gzip) = match built.as_slice() {
        [one] => (one.etag.clone(), one.identity.clone(), Some(one.gzip.clone())),
        many => {
            let tags: String = many.iter().map(|t| t.etag.as_str()).collect();
            let etag = format!("\"{:016x}\"", xxhash_rust::xxh3::xxh3_64(tags.as_bytes()));
            let identity: Vec<u8> = many.iter().flat_map(|t| t.identity.iter().copied()).collect();
            // Left to the response compression layer: composites are not cached as such.
            (etag, bytes::Bytes::from(identity), None)
        }
    };
    let cache_control = if layers.contains(&Layer::Positions) {
        // Live positions change every second; the tile cache keeps them that long too.
        "public, max-age=1"
    } else {
        // Fences change whenever someone edits them: clients revalidate (a 304 is cheap).
        "public, no-cache"
    };
    let mut response = if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else if identity.is_empty() {
        StatusCode::NO_CONTENT.into_response()
    } else if let Some(gzip) = gzip.filter(|_| accepts_gzip(&headers)) {
        (
            [
                (header::CONTENT_TYPE, tiles::CONTENT_TYPE),
                (header::CONTENT_ENCODING, "gzip"),
            ],
            gzip,
        )
            .into_response()
    } else {
        ([(header::CONTENT_TYPE, tiles::CONTENT_TYPE)], identity).into_response()
    };
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache_control));
    headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, etag);
    }
    Ok(response)
}

/// The layer of that name, or 404 listing the layers.
fn known_layer(name: &str) -> Result<Layer, ApiError> {
    Layer::from_name(name).ok_or_else(|| {
        let known: Vec<&str> = Layer::ALL.iter().map(|l| l.name()).collect();
        ApiError::not_found(
            "unknown_layer",
            format!("no layer {name:?}; layers: {}", known.join(", ")),
        )
    })
}

/// Runs the layer's query for one tile.
async fn build(pool: &sqlx::PgPool, layer: Layer, tile: TileCoord) -> Result<Vec<u8>, sqlx::Error> {
    sqlx::query_scalar(layer.sql())
        .bind(i32::from(tile.z))
        // ST_TileEnvelope takes integers; x and y stay below 2^22.
        .bind(i32::try_from(tile.x).unwrap_or(i32::MAX))
        .bind(i32::try_from(tile.y).unwrap_or(i32::MAX))
        .fetch_one(pool)
        .await
}

/// Whether `Accept-Encoding` allows gzip (`gzip` or `*` with a non-zero quality).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|entry| {
            let mut parts = entry.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let zero = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !zero
        })
}

/// `WS /ws/tiles?token=`: `{"type":"changed","layer":"fences","bboxes":[[w,s,e,n],...]}` after
/// every committed write that changed tiles, so a map refetches only the tiles meeting those
/// extents. A subscriber that falls behind gets the whole world as changed. `positions` tiles
/// are not announced: they change every second and live one second.
#[utoipa::path(get, path = "/ws/tiles", tag = "tiles", security(("bearer" = []), ("token" = [])),
    params(("token" = Option<String>, Query, description = "Token, for browsers")),
    responses((status = 101, description = "WebSocket of tile changes"), (status = 401, description = "No valid token")))]
pub async fn changes(
    State(state): State<AppState>,
    SocketAuth(principal): SocketAuth,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    principal.require(Scope::Read)?;
    let mut changes = state.tiles.subscribe();
    Ok(ws::accept(&state, upgrade, move |mut socket| async move {
        let gone = loop {
            let sent = tokio::select! {
                change = changes.recv() => match change {
                    Ok(change) => socket.send_json(&json!({"type": "changed", "layer": change.layer, "bboxes": change.bboxes})).await,
                    Err(RecvError::Lagged(_)) => {
                        socket.send_json(&json!({"type": "changed", "layer": "*", "bboxes": [[-180.0, -90.0, 180.0, 90.0]]})).await
                    }
                    Err(RecvError::Closed) => Err(Gone::Shutdown),
                },
                incoming = socket.recv() => incoming.map(drop),
            };
            if let Err(gone) = sent {
                break gone;
            }
        };
        socket.close(gone, "server shutting down").await;
    }))
}

/// `GET /tiles`: the catalog of layers, each with its TileJSON URL.
#[utoipa::path(get, path = "/tiles", tag = "tiles", security(("bearer" = []), ("token" = [])),
    responses((status = 200, description = "{tiles: {layer: {content_type, description, tilejson}}}")))]
pub async fn catalog(
    DeviceAuth(principal): DeviceAuth,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Read)?;
    let base = base_url(&headers);
    let query = token_query(&uri);
    let tiles: serde_json::Map<String, Value> = Layer::ALL
        .iter()
        .map(|layer| {
            let entry = json!({
                "content_type": tiles::CONTENT_TYPE,
                "description": layer.description(),
                "tilejson": format!("{base}/tiles/{}{query}", layer.name()),
            });
            (layer.name().to_owned(), entry)
        })
        .collect();
    Ok(Json(json!({ "tiles": tiles })))
}

/// `GET /tiles/{layer}`: TileJSON 3.0 for a layer. Tile URLs use the address the request came to
/// (`Host`, and `X-Forwarded-Proto` behind a proxy) and carry the request's `?token=`.
#[utoipa::path(get, path = "/tiles/{layer}", tag = "tiles", security(("bearer" = []), ("token" = [])),
    params(("layer" = String, Path, description = "fences or positions")),
    responses((status = 200, description = "TileJSON 3.0"), (status = 404, description = "Unknown layer")))]
pub async fn tilejson(
    DeviceAuth(principal): DeviceAuth,
    layer: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Read)?;
    let layer = known_layer(&crate::routes::path_id(layer)?)?;
    let base = base_url(&headers);
    let query = token_query(&uri);
    let fields: serde_json::Map<String, Value> = layer
        .fields()
        .iter()
        .map(|(name, kind)| ((*name).to_owned(), json!(kind)))
        .collect();
    Ok(Json(json!({
        "tilejson": "3.0.0",
        "name": layer.name(),
        "description": layer.description(),
        "scheme": "xyz",
        "tiles": [format!("{base}/tiles/{}/{{z}}/{{x}}/{{y}}.mvt{query}", layer.name())],
        "minzoom": 0,
        "maxzoom": tiles::MAX_ZOOM,
        "bounds": [-180.0, -85.051_129, 180.0, 85.051_129],
        "vector_layers": [{
            "id": layer.name(),
            "description": layer.description(),
            "fields": fields,
            "minzoom": 0,
            "maxzoom": tiles::MAX_ZOOM,
        }],
    })))
}

/// `http(s)://host[:port]` as the client reached the server.
fn base_url(headers: &HeaderMap) -> String {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let host = text("x-forwarded-host")
        .or_else(|| text(header::HOST.as_str()))
        .unwrap_or("127.0.0.1:8080");
    let scheme = match text("x-forwarded-proto") {
        Some("https") => "https",
        _ => "http",
    };
    format!("{scheme}://{host}")
}

/// `?token=...` when the request carried one, for URLs handed back to the same client.
fn token_query(uri: &axum::http::Uri) -> String {
    uri.query()
        .and_then(|q| form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "token"))
        .map(|(_, token)| {
            let pair = form_urlencoded::Serializer::new(String::new())
                .append_pair("token", &token)
                .finish();
            format!("?{pair}")
        })
        .unwrap_or_default()
}

/// Styles embedded from `styles/`: name, document.
const STYLES: [(&str, &str); 1] = [("default", include_str!("../../styles/default.json"))];

/// `GET /styles/{name}.json`: a MapLibre style whose tile and data URLs point at this server
/// (as the client reached it) and carry the request's `?token=`.
#[utoipa::path(get, path = "/styles/{file}", tag = "tiles",
    params(("file" = String, Path, description = "Style file name, e.g. default.json")),
    responses((status = 200, description = "MapLibre style JSON"), (status = 404, description = "Unknown style")))]
pub async fn style(
    file: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Result<Response, ApiError> {
    let file = crate::routes::path_id(file)?;
    let name = file.strip_suffix(".json").unwrap_or(&file);
    let Some((_, document)) = STYLES.iter().find(|(n, _)| *n == name) else {
        let known: Vec<String> = STYLES.iter().map(|(n, _)| format!("{n}.json")).collect();
        return Err(ApiError::not_found(
            "unknown_style",
            format!("no style {file:?}; styles: {}", known.join(", ")),
        ));
    };
    // Both go inside JSON strings, so they are escaped as such (a Host header could hold a quote).
    let inside_string = |text: String| {
        let quoted = serde_json::to_string(&text).unwrap_or_default();
        quoted[1..quoted.len() - 1].to_owned()
    };
    let body = document
        .replace("{base}", &inside_string(base_url(&headers)))
        .replace("{token}", &inside_string(token_query(&uri)));
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}
