//! The HTTP surface: one module per group of routes, assembled by [`router`].

mod alerts;
mod conditional;
mod device_apps;
mod devices;
mod dispatch;
mod fences;
mod geojson;
mod glyphs;
mod groups;
mod live;
mod ogc;
mod ops;
mod paging;
mod positions;
mod proximity;
mod tile_front;
mod tile_meta;
mod tiles;
mod trips;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tower::ServiceBuilder;
use tower::util::BoxCloneSyncService;
use tower_http::compression::CompressionLayer;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};
use utoipa_axum::routes;

use crate::access_log::AccessLogLayer;
use crate::catch_panic::CatchPanicLayer;
use crate::connection::HttpService;
use crate::cors::CorsLayer;
use crate::deadline::DeadlineLayer;
use crate::error::{ApiError, ErrorBody, ErrorDetail};
use crate::guard::LocalOnly;
use crate::http_metrics::{self, HttpMetrics};
use crate::ingest::Ingest;
use crate::request_id::RequestIdLayer;
use crate::state::AppState;

/// The routes with the middleware every request goes through. `local_only` (for a server
/// without tokens) refuses other host names and cross-site requests, and no CORS is offered;
/// with tokens, CORS is open.
///
/// The middleware wraps the router once, as one service, rather than through `Router::layer`,
/// which wraps every route in a boxed service per layer: each request then cloned a chain of
/// eight boxes (an allocation and a virtual call each), about a quarter of the instructions
/// of a `/health` request (`scripts/callgrind-requests.sh`).
pub fn router(
    state: AppState,
    metrics: HttpMetrics,
    request_timeout: Duration,
    local_only: Option<LocalOnly>,
) -> HttpService {
    let track = http_metrics::TrackLayer::new(metrics);
    let routes = routes(state.clone()).route_layer(track.clone());
    let routes = tile_front::TileFront::new(routes, state, track);
    let (guard, cors) = match local_only {
        Some(guard) => (Some(guard), None),
        // Maps and dashboards on other origins read tiles and the API. Safe to allow any origin
        // when tokens are on: credentials are explicit tokens, never cookies, so there is
        // nothing ambient to abuse.
        None => (None, Some(CorsLayer)),
    };
    let stack = ServiceBuilder::new()
        .layer(RequestIdLayer::default())
        .layer(AccessLogLayer)
        .layer(CatchPanicLayer)
        .layer(DeadlineLayer::new(request_timeout))
        .option_layer(cors)
        .option_layer(guard)
        .service(routes);
    BoxCloneSyncService::new(stack)
}

/// Every route of the service, with response compression but without the other middleware.
/// All routes are registered through the OpenAPI router, so `/api/openapi.json` lists exactly
/// what is served.
fn routes(state: AppState) -> Router {
    let (router, mut spec) = documented_routes(&state.ingest).split_for_parts();
    // Not behind the compression layer, which parses every request's `Accept-Encoding` and
    // wraps every response body: tiles, kept compressed in every coding they are served in,
    // negotiate it themselves (`content_coding`, which also knows brotli), on the route that
    // serves the most requests; `/health` and `/ready` answer a few bytes, probed often.
    let (uncompressed, uncompressed_spec) = OpenApiRouter::new()
        .routes(routes!(tiles::tile))
        .routes(routes!(ops::health))
        .routes(routes!(ops::ready))
        .split_for_parts();
    spec.merge(uncompressed_spec);
    unique_operation_ids(&mut spec);
    let spec = Arc::new(spec);
    let router = crate::web::paths().fold(router, |router, path| router.route(path, get(crate::web::asset)));
    router
        .route(
            "/api/openapi.json",
            get(move || async move { Json(spec.as_ref().clone()) }),
        )
        .fallback(not_found)
        .layer(CompressionLayer::new())
        .merge(uncompressed)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

fn documented_routes(ingest: &Arc<Ingest>) -> OpenApiRouter<AppState> {
    let max_body = ingest.config.max_body_bytes;
    let limited = |(schemas, paths, methods): UtoipaMethodRouter<AppState>| {
        (schemas, paths, methods.layer(DefaultBodyLimit::max(max_body)))
    };
    // Ingest routes refuse at once while the pipeline is saturated (`ingest::shed`).
    let ingest_route = |route: UtoipaMethodRouter<AppState>| {
        let (schemas, paths, methods) = limited(route);
        let shed = middleware::from_fn_with_state(ingest.clone(), crate::ingest::shed);
        (schemas, paths, methods.layer(shed))
    };
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(ingest_route(routes!(positions::post)))
        .routes(ingest_route(routes!(device_apps::osmand)))
        .routes(ingest_route(routes!(
            device_apps::root_get,
            device_apps::root_post
        )))
        .routes(ingest_route(routes!(device_apps::owntracks)))
        .routes(ingest_route(routes!(device_apps::overland)))
        .routes(routes!(devices::list))
        .routes(routes!(dispatch::nearby))
        .routes(routes!(groups::list))
        .routes(limited(routes!(groups::get_one, groups::put, groups::delete)))
        .routes(routes!(proximity::list))
        .routes(limited(routes!(
            proximity::get_one,
            proximity::put,
            proximity::delete
        )))
        .routes(limited(routes!(dispatch::within, dispatch::within_area)))
        .routes(routes!(devices::get_one, devices::put, devices::erase))
        .routes(routes!(devices::track))
        .routes(routes!(trips::trips))
        .routes(routes!(trips::stops))
        .routes(routes!(trips::summary))
        .routes(routes!(fences::list, fences::create))
        .routes(limited(routes!(fences::import)))
        .routes(routes!(fences::import_status))
        .routes(routes!(fences::get_one, fences::put, fences::delete))
        .routes(routes!(fences::devices_inside))
        .routes(routes!(alerts::list))
        .routes(routes!(alerts::socket))
        .routes(routes!(live::socket))
        .routes(routes!(tiles::invalidate))
        .routes(routes!(tiles::changes))
        .routes(routes!(tile_meta::catalog))
        .routes(routes!(tile_meta::tilejson))
        .routes(routes!(tile_meta::style))
        .routes(routes!(ogc::landing))
        .routes(routes!(ogc::conformance))
        .routes(routes!(ogc::collections))
        .routes(routes!(ogc::collection))
        .routes(routes!(ogc::items::items))
        .routes(routes!(ogc::items::item))
        .routes(routes!(glyphs::glyphs))
        .routes(routes!(ops::metrics))
}

#[derive(OpenApi)]
#[openapi(
    info(title = "geotrack", description = "Real-time geo-tracking, geofencing and vector tiles on PostGIS"),
    // Referenced by the shared refusals (`TokenRefusals`, `DeviceAppRefusals`), which do not
    // register the schemas they name.
    components(schemas(ErrorBody, ErrorDetail)),
    modifiers(&SecuritySchemes)
)]
struct ApiDoc;

/// A handler serving several methods (`/osmand`) gives each the handler's name as its
/// `operationId`, which OpenAPI requires to be unique: those get the method as a suffix
/// (`osmand_get`, `osmand_post`...).
fn unique_operation_ids(spec: &mut utoipa::openapi::OpenApi) {
    let mut seen = std::collections::HashMap::<String, usize>::new();
    for item in spec.paths.paths.values_mut() {
        for (_, operation) in operations(item) {
            if let Some(id) = &operation.operation_id {
                *seen.entry(id.clone()).or_default() += 1;
            }
        }
    }
    for item in spec.paths.paths.values_mut() {
        for (method, operation) in operations(item) {
            if let Some(id) = operation.operation_id.as_mut()
                && seen.get(id.as_str()).is_some_and(|&n| n > 1)
            {
                *id = format!("{id}_{method}");
            }
        }
    }
}

/// The operations of a path, by method.
fn operations(item: &mut PathItem) -> impl Iterator<Item = (&'static str, &mut Operation)> {
    [
        ("get", &mut item.get),
        ("put", &mut item.put),
        ("post", &mut item.post),
        ("delete", &mut item.delete),
        ("options", &mut item.options),
        ("head", &mut item.head),
        ("patch", &mut item.patch),
        ("trace", &mut item.trace),
        ("query", &mut item.query),
    ]
    .into_iter()
    .filter_map(|(method, operation)| operation.as_mut().map(|operation| (method, operation)))
}

/// The ways a token can be presented (see `auth`).
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
        components.add_security_scheme("basic", SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)));
        components.add_security_scheme(
            "token",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::new("token"))),
        );
    }
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

/// The answer to a `PUT` that stores `body`: 201 when it created the resource, 200 when it
/// replaced one.
fn put_reply(created: bool, body: impl serde::Serialize) -> Response {
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (status, Json(body)).into_response()
}

async fn not_found() -> ApiError {
    ApiError::not_found("no_route", "no such endpoint; see the README for the API")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not accept that method",
    )
}
