//! The features of a collection (`/ogc/collections/{collection}/items`) and one feature
//! (`.../items/{id}`), as GeoJSON with OGC links. Paging is by keyset, as in the API: a page's
//! `next` link carries `after` (the last id), so a page never repeats or skips a feature while
//! others are written. `limit` above the maximum is lowered to it (the standard allows that),
//! `bbox` is in CRS84, and `datetime` (an RFC 3339 instant, or an interval `start/end` with
//! `..` for an open end) keeps the devices whose last fix falls in it; fences have no time, so
//! they ignore it.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::ToSchema;

use super::{CRS84, Collection, GEOJSON, GisReader, JSON, Link};
use crate::error::{ApiError, ErrorBody, FencesUnavailable, TokenRefusals};
use crate::extract::{Params, checked_id};
use crate::fence_registry::FenceRegistry;
use crate::routes::geojson::Feature;
use crate::routes::paging::{MAX_PAGE, Paging};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemsParams {
    bbox: Option<String>,
    #[serde(rename = "bbox-crs")]
    bbox_crs: Option<String>,
    limit: Option<i64>,
    after: Option<String>,
    datetime: Option<String>,
    f: Option<String>,
}

/// A page of features.
#[derive(Debug, Serialize, ToSchema)]
pub struct Items {
    #[schema(value_type = String, pattern = "^FeatureCollection$")]
    r#type: &'static str,
    features: Vec<Feature>,
    links: Vec<Link>,
    #[serde(rename = "numberReturned")]
    number_returned: usize,
    #[serde(rename = "timeStamp")]
    #[schema(value_type = String, format = DateTime)]
    time_stamp: DateTime<Utc>,
}

/// `GET /ogc/collections/{collection}/items?bbox=&limit=&after=&datetime=`.
#[utoipa::path(get, path = "/ogc/collections/{collection}/items", operation_id = "ogc_items", tag = "ogc",
    security(("bearer" = []), ("basic" = [])),
    params(("collection" = String, Path, description = "fences or devices"),
        ("bbox" = Option<String>, Query, description = "minLon,minLat,maxLon,maxLat (CRS84)"),
        ("bbox-crs" = Option<String>, Query, description = "Only CRS84 is offered"),
        ("limit" = Option<i64>, Query, description = "Page size from 1 (default 1000; above 10000, 10000)"),
        ("after" = Option<String>, Query, description = "Last feature id of the previous page (from the `next` link)"),
        ("datetime" = Option<String>, Query, description = "Devices: an RFC 3339 instant or `start/end` interval (`..` open) \
            their last fix falls in; fences have no time and ignore it"),
        ("f" = Option<String>, Query, description = "json or geojson (the only format)")),
    responses((status = 200, description = "A page of features, with a `next` link while more follow", body = Items,
            content_type = "application/geo+json"),
        (status = 400, description = "Not a collection name, bad bbox, bbox-crs, limit, after, datetime or f, or an unknown parameter",
            body = ErrorBody),
        (status = 404, description = "No such collection", body = ErrorBody),
        FencesUnavailable,
        TokenRefusals))]
pub async fn items(
    State(fences): State<Arc<FenceRegistry>>,
    State(db): State<PgPool>,
    reader: GisReader,
    Path(name): Path<String>,
    Params(params): Params<ItemsParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let collection = Collection::named(checked_id("the collection", &name)?)?;
    check_format(params.f.as_deref())?;
    if params.bbox_crs.as_deref().is_some_and(|crs| crs != CRS84) {
        return Err(ApiError::bad_request(
            "invalid_bbox_crs",
            format!("bbox-crs must be {CRS84}, the only one offered"),
        ));
    }
    let limit = params
        .limit
        .map(|n| n.min(i64::try_from(MAX_PAGE).unwrap_or(i64::MAX)));
    let paging = Paging::new(limit, params.after.clone())?;
    let bbox = params.bbox.as_deref().map(crate::extract::bbox).transpose()?;
    let window = params.datetime.as_deref().map(window).transpose()?;
    let (features, next_after) = match collection {
        Collection::Fences => {
            let page = fences.page(bbox, paging.after.as_deref(), paging.limit).await?;
            let features = page
                .features
                .into_iter()
                .map(|f| Feature(super::super::fences::for_reader(f, &reader)))
                .collect();
            (features, page.next_after)
        }
        Collection::Devices => devices(&db, &reader, &paging, bbox, window).await?,
    };
    let base = super::super::base_url(&headers);
    let url = format!("{base}/ogc/collections/{}/items", collection.id());
    let mut links = vec![
        Link::new(
            format!("{url}{}", query_of(&params, paging.after.as_deref(), &paging)),
            "self",
            GEOJSON,
        ),
        Link::new(
            format!("{base}/ogc/collections/{}", collection.id()),
            "collection",
            JSON,
        ),
    ];
    if let Some(last) = next_after {
        links.push(Link::new(
            format!("{url}{}", query_of(&params, Some(&last), &paging)),
            "next",
            GEOJSON,
        ));
    }
    let items = Items {
        r#type: "FeatureCollection",
        number_returned: features.len(),
        features,
        links,
        time_stamp: Utc::now(),
    };
    Ok(geojson(&items))
}

/// A page of live positions the reader may see, and the id to continue after.
async fn devices(
    db: &PgPool,
    reader: &GisReader,
    paging: &Paging,
    bbox: Option<fences::Bbox>,
    window: Option<Window>,
) -> Result<(Vec<Feature>, Option<String>), ApiError> {
    let (positions, next_after) =
        super::super::devices::live_page(db, paging, bbox, reader.device_filter().cloned()).await?;
    let features = positions
        .iter()
        .filter(|p| window.is_none_or(|w| w.contains(p.ts)))
        .map(|p| Feature(tracker::latest::to_feature(p)))
        .collect();
    Ok((features, next_after))
}

/// The query string of a page's link: the request's filters, the page size and `after`.
fn query_of(params: &ItemsParams, after: Option<&str>, paging: &Paging) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("limit", &paging.limit.to_string());
    for (name, value) in [
        ("after", after),
        ("bbox", params.bbox.as_deref()),
        ("datetime", params.datetime.as_deref()),
    ] {
        if let Some(value) = value {
            query.append_pair(name, value);
        }
    }
    format!("?{}", query.finish())
}

/// `GET /ogc/collections/{collection}/items/{id}`.
#[utoipa::path(get, path = "/ogc/collections/{collection}/items/{id}", operation_id = "ogc_item", tag = "ogc",
    security(("bearer" = []), ("basic" = [])),
    params(("collection" = String, Path, description = "fences or devices"), ("id" = String, Path, description = "Fence or device id")),
    responses((status = 200, description = "The feature, with links", body = Feature, content_type = "application/geo+json"),
        (status = 400, description = "Not a collection name or not an id", body = ErrorBody),
        (status = 404, description = "No such collection or feature (or a device the token may not see)", body = ErrorBody),
        FencesUnavailable,
        TokenRefusals))]
pub async fn item(
    State(fences): State<Arc<FenceRegistry>>,
    State(db): State<PgPool>,
    reader: GisReader,
    Path((name, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let collection = Collection::named(checked_id("the collection", &name)?)?;
    checked_id("the feature id", &id)?;
    let missing = || {
        ApiError::not_found(
            "feature_not_found",
            format!("there is no feature {id:?} in {}", collection.id()),
        )
    };
    let mut feature = match collection {
        Collection::Fences => match fences.feature(&id) {
            Ok(feature) => super::super::fences::for_reader(feature, &reader),
            Err(crate::fence_registry::RegistryError::NotFound(_)) => return Err(missing()),
            Err(error) => return Err(error.into()),
        },
        Collection::Devices if !reader.allows_device(&id) => return Err(missing()),
        Collection::Devices => tracker::latest::get(&db, &id)
            .await?
            .map(|p| tracker::latest::to_feature(&p))
            .ok_or_else(missing)?,
    };
    let base = super::super::base_url(&headers);
    let collection_url = format!("{base}/ogc/collections/{}", collection.id());
    let links = [
        Link::new(format!("{collection_url}/items/{id}"), "self", GEOJSON),
        Link::new(collection_url, "collection", JSON),
    ];
    if let Some(object) = feature.as_object_mut() {
        object.insert("links".into(), serde_json::to_value(links).unwrap_or_default());
    }
    Ok(geojson(&Feature(feature)))
}

/// `body` as `application/geo+json`.
fn geojson(body: &impl Serialize) -> Response {
    let mut response = Json(body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(GEOJSON));
    response
}

/// 400 unless `f` is absent or names GeoJSON.
fn check_format(f: Option<&str>) -> Result<(), ApiError> {
    match f {
        None | Some("json" | "geojson") => Ok(()),
        Some(other) => Err(ApiError::bad_request(
            "invalid_format",
            format!("f={other:?}: only json (GeoJSON) is offered"),
        )),
    }
}

/// The times a `datetime` parameter keeps, ends included; `None` for an open end.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
}

impl Window {
    fn contains(self, ts: DateTime<Utc>) -> bool {
        self.start.is_none_or(|start| start <= ts) && self.end.is_none_or(|end| ts <= end)
    }
}

/// Reads `datetime`: an instant, or `start/end` where either end may be `..` or empty (open),
/// but not both; 400 `invalid_datetime` otherwise.
fn window(text: &str) -> Result<Window, ApiError> {
    let invalid = || {
        ApiError::bad_request(
            "invalid_datetime",
            format!("datetime {text:?} must be an RFC 3339 time, or start/end with .. for an open end"),
        )
    };
    let time = |part: &str| DateTime::parse_from_rfc3339(part).map(|t| t.with_timezone(&Utc));
    let bound = |part: &str| match part {
        "" | ".." => Ok(None),
        part => time(part).map(Some),
    };
    let window = match text.split_once('/') {
        None => {
            let instant = time(text).map_err(|_| invalid())?;
            Window {
                start: Some(instant),
                end: Some(instant),
            }
        }
        Some((start, end)) => Window {
            start: bound(start).map_err(|_| invalid())?,
            end: bound(end).map_err(|_| invalid())?,
        },
    };
    match (window.start, window.end) {
        (None, None) if text.contains('/') && text != "../.." => Err(invalid()),
        (Some(start), Some(end)) if end < start => Err(invalid()),
        _ => Ok(window),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetime_is_an_instant_or_an_interval_open_at_either_end() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&Utc);
        let instant = window("2026-01-02T03:04:05Z").expect("instant");
        assert!(instant.contains(at("2026-01-02T03:04:05Z")));
        assert!(!instant.contains(at("2026-01-02T03:04:06Z")));
        let closed = window("2026-01-01T00:00:00Z/2026-01-02T00:00:00+00:00").expect("interval");
        assert!(closed.contains(at("2026-01-01T12:00:00Z")) && !closed.contains(at("2026-01-03T00:00:00Z")));
        let open_start = window("../2026-01-02T00:00:00Z").expect("open start");
        assert!(open_start.contains(at("1990-01-01T00:00:00Z")));
        let open_end = window("2026-01-02T00:00:00Z/").expect("open end");
        assert!(
            open_end.contains(at("2099-01-01T00:00:00Z")) && !open_end.contains(at("2025-01-01T00:00:00Z"))
        );
        assert!(window("../..").is_ok(), "both open: everything");
        for bad in [
            "yesterday",
            "2026-01-02",
            "/",
            "2026-01-02T00:00:00Z/2026-01-01T00:00:00Z",
            "a/b",
        ] {
            assert!(window(bad).is_err(), "{bad}");
        }
    }
}
