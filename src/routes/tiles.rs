//! `GET /tiles/{layer}/{z}/{x}/{y}` (also `.mvt` / `.pbf`): one Mapbox Vector Tile built by
//! PostGIS. 204 for an empty tile, 400 for a tile that does not exist, 404 for an unknown layer.
//! Tiles show where devices are, so they need the `read` scope (map clients may pass the token
//! as `?token=`), and a token limited to some devices gets `positions` and `tracks` tiles of
//! those devices only (kept apart in the cache). Tiles come from the cache (`tiles::cache`),
//! sent as kept there: brotli or gzip as the client's `Accept-Encoding` allows
//! (`tiles::coding`), with a strong `ETag` per coding (`If-None-Match` with any of them gives
//! 304). `/tiles/fences,positions/...` returns several layers in one tile, compressed when
//! joined. The service's compression layer is not in front of tiles (`routes::router`): it
//! would only parse `Accept-Encoding` again. Also here: `POST /tiles/{layer}/invalidate` and
//! `WS /ws/tiles`.

use std::borrow::Cow;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{RawPathParams, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use fences::Bbox;
use serde::Serialize;
use serde_json::json;
use smallvec::SmallVec;
use tiles::{Change, Coding, LayerId, Tile, TileCoord, TileStore, Validators, Window};
use tokio::sync::broadcast::error::RecvError;
use utoipa::ToSchema;

use crate::auth::{Authorized, BearerOrQuery, DeviceApp, Principal, scope};
use crate::error::{ApiError, DeviceAppRefusals, ErrorBody, TokenRefusals};
use crate::extract::PathId;
use crate::ws::{Gone, Sessions};

#[utoipa::path(get, path = "/tiles/{layer}/{z}/{x}/{y}", operation_id = "get_tile", tag = "tiles", security(("bearer" = []), ("token" = [])),
    params(("layer" = String, Path, description = "A layer (see GET /tiles), or several separated by commas"), ("z" = u8, Path, description = "Zoom, 0 to 22"),
        ("x" = u32, Path, description = "Column"), ("y" = String, Path, description = "Row, optionally with .mvt or .pbf"),
        ("from" = Option<String>, Query, description = "tracks: start of the window (RFC 3339 or epoch); default: `to` minus tiles.tracks_window_s"),
        ("to" = Option<String>, Query, description = "tracks: end of the window (default: now). Tiles are cached only when both are given"),
        ("If-None-Match" = Option<String>, Header, description = "ETags of copies the client has (or `*`): 304 when one is current")),
    responses((status = 200, description = "The tile: a Mapbox Vector Tile, brotli- or gzip-coded as `Accept-Encoding` allows",
            content_type = "application/vnd.mapbox-vector-tile",
            headers(("ETag" = String, description = "Strong, one per coding"), ("Cache-Control" = String), ("Vary" = String),
                ("Content-Encoding" = String, description = "`br` or `gzip` when coded"))),
        (status = 204, description = "No feature in this tile", headers(("ETag" = String), ("Cache-Control" = String))),
        (status = 304, description = "The client's copy (`If-None-Match`) is current", headers(("ETag" = String), ("Cache-Control" = String))),
        (status = 400, description = "No such tile, bad path, too many layers, or a bad time window", body = ErrorBody),
        (status = 404, description = "Unknown layer", body = ErrorBody),
        (status = 406, description = "`Accept-Encoding` refuses br, gzip and identity", body = ErrorBody),
        (status = 503, description = "A layer's table cannot be read, the database is unavailable, or the token is over its \
            rate limit: retry after Retry-After", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
        DeviceAppRefusals))]
pub async fn tile(
    State(tiles): State<Arc<TileStore>>,
    reader: Authorized<scope::Read, DeviceApp>,
    params: Result<RawPathParams, RawPathParamsRejection>,
    // The whole request, not `HeaderMap` and `Uri` extractors: those clone what they take.
    request: Request,
) -> Result<Response, ApiError> {
    let params = params.map_err(|e| ApiError::bad_request("invalid_path", e.body_text()))?;
    let path = ["layer", "z", "x", "y"].map(|name| {
        params
            .iter()
            .find_map(|(key, value)| (key == name).then_some(value))
            .unwrap_or("")
    });
    serve(&tiles, &reader, path, request.uri(), request.headers()).await
}

/// The tile at `[layer, z, x, y]` (the path's parameters, percent-decoded) for `reader`: the
/// route's work, whether the router matched it ([`tile`]) or `tile_front` did.
pub(super) async fn serve(
    tiles: &TileStore,
    reader: &Principal,
    [layer, z, x, y]: [&str; 4],
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let catalog = tiles.catalog();
    let layers = layer_list(catalog, layer)?;
    let tile = TileCoord::parse(z, x, y)?;
    // Only `tracks` is drawn over a time window; other layers ignore `from` and `to`.
    let window = if layers.contains(&LayerId::TRACKS) {
        Some(window(tiles, uri)?)
    } else {
        None
    };
    let mut built = SmallVec::<[Arc<Tile>; 4]>::new();
    for &layer in &layers {
        let info = catalog.get(layer);
        if !(info.minzoom..=info.maxzoom).contains(&tile.z) {
            continue;
        }
        built.push(tiles.tile(layer, tile, window, reader.device_filter()).await?);
    }
    Ok(tile_response(&built, cache_control(&layers, window), headers))
}

/// How long clients may keep a tile of `layers`.
fn cache_control(layers: &[LayerId], window: Option<Window>) -> &'static str {
    if layers.contains(&LayerId::POSITIONS) || window.is_some_and(|w| !w.absolute) {
        // Live positions change every second; the tile cache keeps them that long too.
        "public, max-age=1"
    } else if layers
        .iter()
        .all(|&layer| layer == LayerId::COUNTRIES || layer == LayerId::COUNTRY_LABELS)
    {
        // The basemap changes only when an operator imports another: kept an hour.
        "public, max-age=3600"
    } else {
        // Edited whenever someone writes: clients revalidate (a 304 is cheap).
        "public, no-cache"
    }
}

/// Most layers one tile request may join.
const MAX_LAYERS: usize = 16;

/// The layers of `a,b,c`, each once, in the order first named (a layer named twice would be
/// built twice); at most [`MAX_LAYERS`].
pub(super) fn layer_list(catalog: &tiles::Catalog, names: &str) -> Result<SmallVec<[LayerId; 4]>, ApiError> {
    let mut layers = SmallVec::new();
    for name in names.split(',') {
        let layer = catalog.layer(name)?;
        if !layers.contains(&layer) {
            if layers.len() == MAX_LAYERS {
                return Err(ApiError::bad_request(
                    "too_many_layers",
                    format!("a tile joins at most {MAX_LAYERS} layers"),
                ));
            }
            layers.push(layer);
        }
    }
    Ok(layers)
}

/// The response carrying `built` (one layer's kept tile, or several joined), in the best coding
/// the client accepts, or 304 when the client's copy is current.
fn tile_response(built: &[Arc<Tile>], cache_control: &'static str, headers: &HeaderMap) -> Response {
    let (etags, body) = match built {
        [one] => (Cow::Borrowed(&one.etags), Body::Kept(one)),
        many => {
            // A tile's layers are a repeated field, so tiles concatenate into one.
            let tags: Vec<u8> = many
                .iter()
                .flat_map(|t| t.etags.get(Coding::Identity).as_bytes().iter().copied())
                .collect();
            let etags = Validators::new(&format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&tags)));
            let identity: Vec<u8> = many.iter().flat_map(|t| t.identity.iter().copied()).collect();
            (Cow::Owned(etags), Body::Composite(identity))
        }
    };
    let coding = Coding::negotiate(headers);
    // Room for every header the response ends with (these, CORS's, the request id), so the
    // map is allocated once instead of grown (growing reallocates and rehashes it).
    let mut response_headers = HeaderMap::with_capacity(RESPONSE_HEADERS);
    let content_type = HeaderValue::from_static(tiles::CONTENT_TYPE);
    let mut response = match (body, coding) {
        // A copy in any coding is current: the client has this content.
        _ if client_has(headers, &etags) => StatusCode::NOT_MODIFIED.into_response(),
        (Body::Kept(tile), _) if tile.identity.is_empty() => StatusCode::NO_CONTENT.into_response(),
        (Body::Composite(identity), _) if identity.is_empty() => StatusCode::NO_CONTENT.into_response(),
        (_, None) => return not_acceptable(),
        (body, Some(coding)) => {
            let bytes = match body {
                Body::Kept(tile) => tile.body(coding).clone(),
                // Composites are not kept: compressed now, in the one coding asked for.
                Body::Composite(identity) if coding == Coding::Identity => Bytes::from(identity),
                Body::Composite(identity) => Bytes::from(coding.encode(&identity)),
            };
            response_headers.insert(header::CONTENT_TYPE, content_type);
            if let Some(encoding) = coding.header() {
                response_headers.insert(header::CONTENT_ENCODING, encoding);
            }
            Response::new(axum::body::Body::from(bytes))
        }
    };
    response_headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache_control));
    response_headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    let etag = etags.get(coding.unwrap_or(Coding::Identity)).clone();
    response_headers.insert(header::ETAG, etag);
    *response.headers_mut() = response_headers;
    response
}

/// 406, for a request whose `Accept-Encoding` refuses identity and every coding tiles are kept in.
fn not_acceptable() -> Response {
    let error = ApiError::new(
        StatusCode::NOT_ACCEPTABLE,
        "not_acceptable",
        "Accept-Encoding refuses every coding tiles come in (br, gzip, identity)",
    );
    (
        [(header::VARY, HeaderValue::from_static("accept-encoding"))],
        error,
    )
        .into_response()
}

/// Headers a tile response may end with: 5 of its own, 2 of CORS, `x-request-id`, and spare.
const RESPONSE_HEADERS: usize = 12;

/// What a tile response sends: one layer's tile as kept, or several joined now.
enum Body<'a> {
    Kept(&'a Tile),
    Composite(Vec<u8>),
}

/// Whether `If-None-Match` names one of `etags` (or `*`), compared weakly.
fn client_has(headers: &HeaderMap, etags: &Validators) -> bool {
    super::conditional::client_has(headers, |tag| etags.any_is(tag))
}

/// The `tracks` time window of a request (`?from=&to=`).
fn window(tiles: &TileStore, uri: &Uri) -> Result<Window, ApiError> {
    let read = |name: &str| {
        query_param(uri, name)
            .map(|text| crate::extract::time(name, &text))
            .transpose()
    };
    let mut window = tiles.windows().window(read("from")?, read("to")?)?;
    // A default `from` (`to` minus the default length) may fall before what the database holds.
    window.from = window.from.max(crate::extract::earliest_stored());
    Ok(window)
}

/// The first value of a query parameter.
fn query_param(uri: &Uri, name: &str) -> Option<String> {
    form_urlencoded::parse(uri.query()?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// `POST /tiles/{layer}/invalidate?bbox=minLon,minLat,maxLon,maxLat` (admin): the layer's data
/// changed outside geotrack (an operator table); drops its cached tiles within `bbox` (all of
/// them without one) and announces the change on `WS /ws/tiles`.
#[utoipa::path(post, path = "/tiles/{layer}/invalidate", operation_id = "invalidate_tiles", tag = "tiles", security(("bearer" = [])),
    params(("layer" = String, Path, description = "A layer"), ("bbox" = Option<String>, Query, description = "minLon,minLat,maxLon,maxLat; minLon > maxLon crosses the antimeridian")),
    responses((status = 200, description = "What was invalidated", body = Invalidated),
        (status = 400, description = "Not a layer name, or a bad bbox", body = ErrorBody),
        (status = 404, description = "Unknown layer", body = ErrorBody),
        TokenRefusals))]
pub async fn invalidate(
    State(tiles): State<Arc<TileStore>>,
    _admin: Authorized<scope::Admin>,
    PathId(layer): PathId,
    uri: Uri,
) -> Result<Json<Invalidated>, ApiError> {
    let layer = tiles.catalog().layer(&layer)?;
    let change = match query_param(&uri, "bbox") {
        None => Change::default(),
        // A box crossing the antimeridian is two boxes.
        Some(text) => Change::within(crate::extract::bbox(&text)?.halves().collect()),
    };
    let bboxes = change.boxes.clone();
    tiles.cache().invalidate(layer, change);
    let name = &tiles.catalog().get(layer).name;
    tracing::info!(layer = %name, ?bboxes, "tiles invalidated on request");
    Ok(Json(Invalidated {
        layer: name.clone(),
        bboxes: bboxes.as_deref().unwrap_or(&[Bbox::WORLD]).to_vec(),
    }))
}

/// What `POST /tiles/{layer}/invalidate` dropped from the cache.
#[derive(Debug, Serialize, ToSchema)]
pub struct Invalidated {
    layer: String,
    /// `[minLon, minLat, maxLon, maxLat]` boxes (the world without `bbox`).
    #[schema(value_type = Vec<[f64; 4]>)]
    bboxes: Vec<Bbox>,
}

/// `WS /ws/tiles?token=`: `{"type":"changed","layer":"fences","bboxes":[[w,s,e,n],...]}` after
/// every committed write that changed tiles, so a map refetches only the tiles meeting those
/// extents. A subscriber that falls behind gets the whole world as changed. `positions` and
/// `tracks` tiles are not announced: they change with every fix.
#[utoipa::path(get, path = "/ws/tiles", operation_id = "tile_changes_socket", tag = "tiles", security(("bearer" = []), ("token" = [])),
    params(("token" = Option<String>, Query, description = "Token, for browsers")),
    responses((status = 101, description = "WebSocket of tile changes"),
        (status = 400, description = "Not a WebSocket upgrade request (axum's plain-text answer)", body = String, content_type = "text/plain"),
        TokenRefusals))]
pub async fn changes(
    State(tiles): State<Arc<TileStore>>,
    State(sessions): State<Sessions>,
    _reader: Authorized<scope::Read, BearerOrQuery>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let mut changes = tiles.cache().subscribe();
    Ok(sessions.accept(upgrade, move |mut socket| async move {
        let gone = loop {
            let sent = tokio::select! {
                change = changes.recv() => match change {
                    Ok(change) => socket.send_json(&json!({"type": "changed", "layer": change.layer, "bboxes": change.bboxes})).await,
                    Err(RecvError::Lagged(_)) => {
                        socket.lagged();
                        socket.send_json(&json!({"type": "changed", "layer": "*", "bboxes": [Bbox::WORLD]})).await
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
