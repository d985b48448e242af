//! The HTTP surface: one module per group of routes, assembled by [`router`].

mod alerts;
mod device_apps;
mod devices;
mod fences;
mod ingest;
mod live;
mod ops;
mod positions;
mod tile_meta;
mod tiles;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::{Json, Router};
use tower_http::compression::CompressionLayer;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};
use utoipa_axum::routes;

use crate::error::ApiError;
use crate::state::AppState;

/// Every route of the service, with response compression but without the other middleware
/// (see `app::router`). All routes are registered through the OpenAPI router, so
/// `/api/openapi.json` lists exactly what is served.
pub fn router(state: AppState) -> Router {
    let (router, mut spec) = documented_routes(state.ingest.max_body_bytes).split_for_parts();
    // Tiles are kept compressed in every coding they are served in and negotiate it themselves
    // (`content_coding`, which also knows brotli): the compression layer only parses the
    // request's `Accept-Encoding` again, on the route that serves the most requests.
    let (tiles, tiles_spec) = OpenApiRouter::new()
        .routes(routes!(tiles::tile))
        .split_for_parts();
    spec.merge(tiles_spec);
    let spec = Arc::new(spec);
    let router = crate::web::paths().fold(router, |router, path| router.route(path, get(crate::web::asset)));
    router
        .route(
            "/api/openapi.json",
            get(move || async move { Json(spec.as_ref().clone()) }),
        )
        .fallback(not_found)
        .layer(CompressionLayer::new())
        .merge(tiles)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

fn documented_routes(max_body: usize) -> OpenApiRouter<AppState> {
    let limited = |(schemas, paths, methods): UtoipaMethodRouter<AppState>| {
        (schemas, paths, methods.layer(DefaultBodyLimit::max(max_body)))
    };
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(limited(routes!(positions::post)))
        .routes(limited(routes!(device_apps::osmand)))
        .routes(limited(routes!(device_apps::root)))
        .routes(limited(routes!(device_apps::owntracks)))
        .routes(limited(routes!(device_apps::overland)))
        .routes(routes!(devices::list))
        .routes(routes!(devices::get_one, devices::erase))
        .routes(routes!(devices::track))
        .routes(routes!(fences::list, fences::create))
        .routes(limited(routes!(fences::import)))
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
        .routes(routes!(ops::health))
        .routes(routes!(ops::ready))
        .routes(routes!(ops::metrics))
}

#[derive(OpenApi)]
#[openapi(
    info(title = "geotrack", description = "Real-time geo-tracking, geofencing and vector tiles on PostGIS"),
    modifiers(&SecuritySchemes)
)]
struct ApiDoc;

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

/// A `{id}` path segment, or 400 when it cannot be read (e.g. invalid percent-encoding).
fn path_id(
    id: Result<axum::extract::Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<String, ApiError> {
    id.map(|axum::extract::Path(id)| id)
        .map_err(|e| ApiError::bad_request("invalid_path", e.body_text()))
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
