//! The GeoJSON the API answers with, typed for the OpenAPI document: a [`Feature`] is kept as
//! the domain crates build it (a JSON value) and only described; a [`FeatureCollection`] is
//! assembled here.

use serde::Serialize;
use serde_json::Value;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};
use utoipa::{PartialSchema, ToSchema};

/// A GeoJSON Feature (RFC 7946): a device's position or a fence, as the domain crates build it.
#[derive(Debug, Serialize)]
#[serde(transparent)]
pub struct Feature(pub Value);

impl PartialSchema for Feature {
    fn schema() -> RefOr<Schema> {
        let object = || ObjectBuilder::new().schema_type(Type::Object);
        object()
            .description(Some("A GeoJSON Feature (RFC 7946)"))
            .property(
                "type",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(["Feature"])),
            )
            .required("type")
            .property("id", ObjectBuilder::new().schema_type(SchemaType::AnyValue))
            .property("geometry", object().description(Some("A GeoJSON geometry")))
            .required("geometry")
            .property("properties", object())
            .required("properties")
            .into()
    }
}

impl ToSchema for Feature {}

/// A GeoJSON FeatureCollection, with this API's extra members.
#[derive(Debug, Serialize, ToSchema)]
pub struct FeatureCollection {
    #[schema(value_type = String, pattern = "^FeatureCollection$")]
    r#type: &'static str,
    /// The fence these features are inside (`GET /api/v1/fences/{id}/devices`).
    #[serde(skip_serializing_if = "Option::is_none")]
    fence: Option<String>,
    features: Vec<Feature>,
    /// The URL of the next page, while more follow (`GET /api/v1/devices`).
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

impl FeatureCollection {
    pub fn new(features: Vec<Feature>) -> Self {
        Self {
            r#type: "FeatureCollection",
            fence: None,
            features,
            next: None,
        }
    }

    #[must_use]
    pub fn with_next(self, next: String) -> Self {
        Self {
            next: Some(next),
            ..self
        }
    }

    #[must_use]
    pub fn inside(self, fence: String) -> Self {
        Self {
            fence: Some(fence),
            ..self
        }
    }
}
