//! OGC API – Features (Part 1: Core, GeoJSON) over the fences and the live devices, so QGIS,
//! GDAL/OGR (`OAPIF:` driver) and other GIS clients open them directly: a landing page
//! (`/ogc`), the conformance classes, the collections `fences` and `devices`, and their items
//! (`items`, paged by `next` links, filtered by `bbox`; devices also by `datetime`).
//! Tokens: `Authorization: Bearer`, or HTTP Basic with the token as password (what GIS
//! clients' authentication settings offer); a token limited to some devices sees only those.
//! Links are absolute, on the address the client reached (`Host`, `X-Forwarded-*`).

pub mod items;

use axum::Json;
use axum::http::HeaderMap;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::{Authorized, BearerOrBasic, scope};
use crate::error::{ApiError, ErrorBody, TokenRefusals};
use crate::extract::PathId;

/// A reader of the OGC routes.
type GisReader = Authorized<scope::Read, BearerOrBasic>;

const JSON: &str = "application/json";
const GEOJSON: &str = "application/geo+json";
const CRS84: &str = "http://www.opengis.net/def/crs/OGC/1.3/CRS84";

/// A link of an OGC API document.
#[derive(Debug, Serialize, ToSchema)]
pub struct Link {
    href: String,
    rel: &'static str,
    r#type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    title: Option<&'static str>,
}

impl Link {
    fn new(href: String, rel: &'static str, r#type: &'static str) -> Self {
        Self {
            href,
            rel,
            r#type,
            title: None,
        }
    }

    fn titled(self, title: &'static str) -> Self {
        Self {
            title: Some(title),
            ..self
        }
    }
}

/// The collections served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Collection {
    Fences,
    Devices,
}

impl Collection {
    const ALL: [Self; 2] = [Self::Fences, Self::Devices];

    fn id(self) -> &'static str {
        match self {
            Self::Fences => "fences",
            Self::Devices => "devices",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Self::Fences => "Geofences",
            Self::Devices => "Devices at their last position",
        }
    }

    fn description(self) -> &'static str {
        match self {
            Self::Fences => {
                "The geofences (polygons, multipolygons, circles, corridors); circles and corridors as \
                             their defining geometry with radius_m / buffer_m, as the fence API stores them"
            }
            Self::Devices => "Every device's live position (the newest fix), with its time in `ts`",
        }
    }

    /// 404 `collection_not_found` for any other name.
    fn named(name: &str) -> Result<Self, ApiError> {
        Self::ALL.into_iter().find(|c| c.id() == name).ok_or_else(|| {
            ApiError::not_found(
                "collection_not_found",
                format!("there is no collection {name:?}; the collections are fences and devices"),
            )
        })
    }

    fn describe(self, base: &str) -> CollectionInfo {
        let url = format!("{base}/ogc/collections/{}", self.id());
        CollectionInfo {
            id: self.id(),
            title: self.title(),
            description: self.description(),
            item_type: "feature",
            crs: vec![CRS84],
            extent: Extent {
                spatial: Spatial {
                    bbox: vec![[-180.0, -90.0, 180.0, 90.0]],
                    crs: CRS84,
                },
            },
            links: vec![
                Link::new(url.clone(), "self", JSON),
                Link::new(format!("{url}/items"), "items", GEOJSON).titled("The features"),
            ],
        }
    }
}

/// The landing page.
#[derive(Debug, Serialize, ToSchema)]
pub struct Landing {
    title: &'static str,
    description: &'static str,
    links: Vec<Link>,
}

/// `GET /ogc`: the OGC API landing page.
#[utoipa::path(get, path = "/ogc", operation_id = "ogc_landing", tag = "ogc", security(("bearer" = []), ("basic" = [])),
    responses((status = 200, description = "Links to the API description, the conformance classes and the collections", body = Landing),
        TokenRefusals))]
pub async fn landing(_reader: GisReader, headers: HeaderMap) -> Json<Landing> {
    let base = super::base_url(&headers);
    Json(Landing {
        title: "geotrack",
        description: "Geofences and live device positions as OGC API – Features",
        links: vec![
            Link::new(format!("{base}/ogc"), "self", JSON),
            Link::new(
                format!("{base}/api/openapi.json"),
                "service-desc",
                "application/vnd.oai.openapi+json;version=3.1",
            )
            .titled("The API description (OpenAPI 3.1)"),
            Link::new(format!("{base}/ogc/conformance"), "conformance", JSON),
            Link::new(format!("{base}/ogc/collections"), "data", JSON).titled("The collections"),
        ],
    })
}

/// The conformance classes implemented.
#[derive(Debug, Serialize, ToSchema)]
pub struct Conformance {
    #[serde(rename = "conformsTo")]
    conforms_to: [&'static str; 2],
}

/// `GET /ogc/conformance`.
#[utoipa::path(get, path = "/ogc/conformance", operation_id = "ogc_conformance", tag = "ogc", security(("bearer" = []), ("basic" = [])),
    responses((status = 200, description = "The OGC API – Features conformance classes implemented", body = Conformance),
        TokenRefusals))]
pub async fn conformance(_reader: GisReader) -> Json<Conformance> {
    Json(Conformance {
        conforms_to: [
            "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
            "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
        ],
    })
}

/// A collection's metadata.
#[derive(Debug, Serialize, ToSchema)]
pub struct CollectionInfo {
    id: &'static str,
    title: &'static str,
    description: &'static str,
    #[serde(rename = "itemType")]
    item_type: &'static str,
    crs: Vec<&'static str>,
    extent: Extent,
    links: Vec<Link>,
}

/// Where a collection's features may be.
#[derive(Debug, Serialize, ToSchema)]
pub struct Extent {
    spatial: Spatial,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Spatial {
    bbox: Vec<[f64; 4]>,
    crs: &'static str,
}

/// The collections.
#[derive(Debug, Serialize, ToSchema)]
pub struct Collections {
    links: Vec<Link>,
    collections: Vec<CollectionInfo>,
}

/// `GET /ogc/collections`.
#[utoipa::path(get, path = "/ogc/collections", operation_id = "ogc_collections", tag = "ogc", security(("bearer" = []), ("basic" = [])),
    responses((status = 200, description = "The collections: fences and devices", body = Collections),
        TokenRefusals))]
pub async fn collections(_reader: GisReader, headers: HeaderMap) -> Json<Collections> {
    let base = super::base_url(&headers);
    Json(Collections {
        links: vec![Link::new(format!("{base}/ogc/collections"), "self", JSON)],
        collections: Collection::ALL.iter().map(|c| c.describe(&base)).collect(),
    })
}

/// `GET /ogc/collections/{collection}`.
#[utoipa::path(get, path = "/ogc/collections/{collection}", operation_id = "ogc_collection", tag = "ogc",
    security(("bearer" = []), ("basic" = [])),
    params(("collection" = String, Path, description = "fences or devices")),
    responses((status = 200, description = "The collection's metadata", body = CollectionInfo),
        (status = 400, description = "Not a collection name", body = ErrorBody),
        (status = 404, description = "No such collection", body = ErrorBody),
        TokenRefusals))]
pub async fn collection(
    _reader: GisReader,
    PathId(name): PathId,
    headers: HeaderMap,
) -> Result<Json<CollectionInfo>, ApiError> {
    let collection = Collection::named(&name)?;
    Ok(Json(collection.describe(&super::base_url(&headers))))
}
