//! What leads a map client to the tiles: `GET /tiles` (the catalog), `GET /tiles/{layer}`
//! (TileJSON 3.0, for one layer or several joined as `a,b`) and `GET /styles/{name}.json`
//! (MapLibre styles from `styles/`, naming the configured outside basemap). URLs handed
//! out use the address the request came to (`Host`, and `X-Forwarded-*` behind a proxy) and
//! carry the request's `?token=` (and, for `tracks`, its `from`/`to`).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use serde_json::{Value, json};
use tiles::TileStore;

use crate::auth::{Authorized, DeviceApp, scope};
use crate::error::{ApiError, DeviceAppRefusals, ErrorBody};
use crate::extract::PathId;
use crate::routes::conditional;

/// `GET /tiles`: the catalog of layers, each with its TileJSON URL.
#[utoipa::path(get, path = "/tiles", operation_id = "get_tile_catalog", tag = "tiles", security(("bearer" = []), ("token" = [])),
    responses((status = 200, description = "`{tiles: {LAYER: {content_type, description, minzoom, maxzoom, tilejson}}}`",
            body = serde_json::Value),
        (status = 503, description = "The token is over its rate limit: retry after Retry-After", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
        DeviceAppRefusals))]
pub async fn catalog(
    State(tiles): State<Arc<TileStore>>,
    _reader: Authorized<scope::Read, DeviceApp>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Json<Value>, ApiError> {
    let base = super::base_url(&headers);
    let query = kept_query(&uri);
    let catalog = tiles.catalog();
    let tiles: serde_json::Map<String, Value> = catalog
        .ids()
        .map(|id| {
            let layer = catalog.get(id);
            let entry = json!({
                "content_type": tiles::CONTENT_TYPE,
                "description": layer.description,
                "minzoom": layer.minzoom,
                "maxzoom": layer.maxzoom,
                "tilejson": format!("{base}/tiles/{}{query}", layer.name),
            });
            (layer.name.clone(), entry)
        })
        .collect();
    Ok(Json(json!({ "tiles": tiles })))
}

/// `GET /tiles/{layer}`: TileJSON 3.0 for a layer, or for layers joined as `/tiles/a,b`.
#[utoipa::path(get, path = "/tiles/{layer}", operation_id = "get_tilejson", tag = "tiles", security(("bearer" = []), ("token" = [])),
    params(("layer" = String, Path, description = "A layer (see GET /tiles), or several joined by commas")),
    responses((status = 200, description = "TileJSON 3.0 (bounds and center from the data where known, attribution), with an \
            ETag (clients revalidate)", body = serde_json::Value, headers(("ETag" = String), ("Cache-Control" = String))),
        (status = 304, description = "The client's copy (If-None-Match) is current", headers(("ETag" = String))),
        (status = 400, description = "Not a layer name, or more than 16 layers", body = ErrorBody),
        (status = 404, description = "Unknown layer", body = ErrorBody),
        (status = 503, description = "The layer's table cannot be read, the database is unavailable, or the token is over its \
            rate limit: retry after Retry-After", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
        DeviceAppRefusals))]
pub async fn tilejson(
    State(tiles): State<Arc<TileStore>>,
    _reader: Authorized<scope::Read, DeviceApp>,
    PathId(names): PathId,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    let catalog = tiles.catalog();
    let ids = super::tiles::layer_list(catalog, &names)?;
    let mut vector_layers = Vec::with_capacity(ids.len());
    let mut attributions: Vec<&str> = Vec::new();
    // The union of the layers' extents; unknown as soon as one layer's is.
    let mut bounds = Some(None::<[f64; 4]>);
    for &id in &ids {
        let described = tiles.describe(id).await?;
        let layer = catalog.get(id);
        let fields: serde_json::Map<String, Value> = described
            .fields
            .iter()
            .map(|field| (field.name.clone(), json!(field.kind.name())))
            .collect();
        vector_layers.push(json!({
            "id": layer.name,
            "description": layer.description,
            "fields": fields,
            "minzoom": layer.minzoom,
            "maxzoom": layer.maxzoom,
        }));
        if !layer.attribution.is_empty() && !attributions.contains(&layer.attribution.as_str()) {
            attributions.push(&layer.attribution);
        }
        let extent = tiles.extent(id).await?;
        bounds = bounds.zip(extent).map(|(sofar, [w, s, e, n])| {
            Some(sofar.map_or([w, s, e, n], |[w0, s0, e0, n0]| {
                [w0.min(w), s0.min(s), e0.max(e), n0.max(n)]
            }))
        });
    }
    let layers: Vec<&tiles::LayerInfo> = ids.iter().map(|&id| catalog.get(id)).collect();
    let minzoom = layers.iter().map(|l| l.minzoom).min().unwrap_or(0);
    let maxzoom = layers.iter().map(|l| l.maxzoom).max().unwrap_or(tiles::MAX_ZOOM);
    let bounds = bounds.flatten().unwrap_or(tiles::extent::WORLD);
    let [w, s, e, n] = bounds;
    let zoom = tiles::extent::fitting_zoom(bounds, minzoom, maxzoom);
    let name = layers
        .iter()
        .map(|l| l.name.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let mut document = json!({
        "tilejson": "3.0.0",
        "name": name,
        "description": layers.iter().map(|l| l.description.as_str()).collect::<Vec<_>>().join("; "),
        "scheme": "xyz",
        "tiles": [format!("{}/tiles/{name}/{{z}}/{{x}}/{{y}}.mvt{}", super::base_url(&headers), kept_query(&uri))],
        "minzoom": minzoom,
        "maxzoom": maxzoom,
        "bounds": bounds,
        "center": [f64::midpoint(w, e), f64::midpoint(s, n), zoom],
        "vector_layers": vector_layers,
    });
    if !attributions.is_empty() {
        document["attribution"] = json!(attributions.join(" · "));
    }
    Ok(conditional::json_document(
        &headers,
        document.to_string().into_bytes(),
    ))
}

/// `?token=...&from=...&to=...` with those the request carried, for URLs handed back to the
/// same client (empty when it carried none).
fn kept_query(uri: &Uri) -> String {
    let mut kept = form_urlencoded::Serializer::new(String::new());
    let mut any = false;
    for (key, value) in uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()))
        .into_iter()
        .flatten()
        .filter(|(k, _)| ["token", "from", "to"].contains(&k.as_ref()))
    {
        kept.append_pair(&key, &value);
        any = true;
    }
    if any {
        format!("?{}", kept.finish())
    } else {
        String::new()
    }
}

/// Styles embedded from `styles/`: name, document.
const STYLES: [(&str, &str); 1] = [("default", include_str!("../../styles/default.json"))];

/// `GET /styles/{name}.json`: a MapLibre style whose tile, data and glyph URLs point at this
/// server (as the client reached it) and carry the request's `?token=`; with `[tiles]
/// basemap_style` configured, its `metadata` names that style as `geotrack:basemap`.
#[utoipa::path(get, path = "/styles/{file}", operation_id = "get_style", tag = "tiles",
    params(("file" = String, Path, description = "Style file name, e.g. default.json")),
    responses((status = 200, description = "MapLibre style JSON, with an ETag (clients revalidate); `metadata.geotrack:basemap`: \
            the configured basemap style (tiles.basemap_style) that maps draw under the layers not marked `geotrack:basemap`",
            body = serde_json::Value,
            headers(("ETag" = String), ("Cache-Control" = String))),
        (status = 304, description = "The client's copy (If-None-Match) is current", headers(("ETag" = String))),
        (status = 400, description = "Not a file name", body = ErrorBody),
        (status = 404, description = "Unknown style", body = ErrorBody)))]
pub async fn style(
    State(tiles): State<Arc<TileStore>>,
    PathId(file): PathId,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
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
    let mut body = document
        .replace("{base}", &inside_string(super::base_url(&headers)))
        .replace("{token}", &inside_string(kept_query(&uri)));
    if let Some(basemap) = tiles.basemap_style() {
        let mut style: Value = serde_json::from_str(&body).map_err(|e| ApiError::internal(&e))?;
        style["metadata"]["geotrack:basemap"] = json!(basemap);
        body = style.to_string();
    }
    Ok(conditional::json_document(&headers, body.into_bytes()))
}
