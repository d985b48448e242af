//! Importing a GeoJSON FeatureCollection of fences, all or nothing: where each fence takes its
//! id ([`IdSource`]: the Feature `id`, generated when absent, or a property such as `name` for
//! files that carry no ids, as Natural Earth, OSM exports and QGIS rarely do), and the
//! validation and preparation of every feature, spread over every core (a country's coastline
//! is tens of milliseconds of checks; 1:10m borders are 545,000 vertices).

use std::collections::HashSet;

use rayon::prelude::*;
use serde_json::{Value, json};

use crate::feature::fence_from_feature;
use crate::{Fence, FenceLimits, PreparedFence};

/// Where the fences of an import take their ids from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdSource<'a> {
    /// The Feature's `id`; a feature without one gets a generated id.
    Feature,
    /// This property of every feature (a string or a number), so that importing the same file
    /// again replaces its fences; the Feature `id` is ignored, and a feature without the
    /// property is invalid.
    Property(&'a str),
}

impl<'a> IdSource<'a> {
    /// Ids from `property` when one is named, else from the Features.
    pub fn from_property(property: Option<&'a str>) -> Self {
        property.map_or(Self::Feature, Self::Property)
    }

    /// The id `feature` names, `None` when one is to be generated.
    fn id_of(self, feature: &Value) -> Result<Option<String>, String> {
        let (value, what) = match self {
            Self::Feature => (feature.get("id"), "`id`".to_owned()),
            Self::Property(name) => (
                feature.get("properties").and_then(|p| p.get(name)),
                format!("property {name:?}"),
            ),
        };
        match (value, self) {
            (None | Some(Value::Null), Self::Feature) => Ok(None),
            (None | Some(Value::Null), Self::Property(_)) => {
                Err(format!("the feature has no {what} to take its id from"))
            }
            (Some(Value::String(id)), _) => Ok(Some(id.clone())),
            (Some(Value::Number(n)), _) => Ok(Some(n.to_string())),
            (Some(_), _) => Err(format!("{what} must be a string or a number to be a fence id")),
        }
    }
}

/// Why a FeatureCollection cannot be imported.
#[derive(Debug, thiserror::Error)]
pub enum CollectionError {
    #[error("the body must be a GeoJSON FeatureCollection")]
    NotACollection,
    /// `report`: `{index, id, reason}` for every invalid feature, of `total`.
    #[error("{} of {total} features are invalid; nothing was imported", report.len())]
    Invalid { report: Vec<Value>, total: usize },
    #[error("{needed} ids were to be generated but {given} were given")]
    GeneratedIds { needed: usize, given: usize },
}

/// The features of a FeatureCollection.
fn features(collection: &Value) -> Result<&[Value], CollectionError> {
    match (
        collection.get("type").and_then(Value::as_str),
        collection.get("features"),
    ) {
        (Some("FeatureCollection"), Some(Value::Array(features))) => Ok(features),
        _ => Err(CollectionError::NotACollection),
    }
}

/// How many features of `collection` will need a generated id (0 when it is not a collection).
pub fn ids_to_generate(collection: &Value, source: IdSource) -> usize {
    features(collection).map_or(0, |features| without_ids(features, source))
}

fn without_ids(features: &[Value], source: IdSource) -> usize {
    features
        .iter()
        .filter(|f| matches!(source.id_of(f), Ok(None)))
        .count()
}

/// Validates and prepares every fence of a FeatureCollection, in feature order, or reports
/// every invalid one (all or nothing). Ids come from `source`; features without one take the
/// `generated` ids in order (as many as [`ids_to_generate`] counts). Ids must be unique in the
/// collection, and every fence must pass the caller's `check` (its webhook policy, say).
/// `progress` is called once per feature, from any thread. CPU-bound, on every core.
pub fn prepare_collection<E: std::fmt::Display>(
    collection: &Value,
    source: IdSource,
    generated: Vec<String>,
    limits: &FenceLimits,
    check: impl Fn(&Fence) -> Result<(), E> + Sync,
    progress: impl Fn() + Sync,
) -> Result<Vec<PreparedFence>, CollectionError> {
    let features = features(collection)?;
    let ids = assign_ids(features, source, generated)?;
    let results: Vec<Result<PreparedFence, String>> = features
        .par_iter()
        .zip(ids)
        .map(|(feature, id)| {
            let result = id.and_then(|id| prepare(feature, id, limits, &check));
            progress();
            result
        })
        .collect();
    let mut prepared = Vec::with_capacity(features.len());
    let mut report = Vec::new();
    let mut seen = HashSet::new();
    for (index, result) in results.into_iter().enumerate() {
        let result = result.and_then(|fence| {
            if seen.insert(fence.id().to_owned()) {
                Ok(fence)
            } else {
                Err(format!("id {:?} appears twice in the collection", fence.id()))
            }
        });
        match result {
            Ok(fence) => prepared.push(fence),
            Err(reason) => {
                report.push(json!({"index": index, "id": features[index].get("id"), "reason": reason}));
            }
        }
    }
    if report.is_empty() {
        Ok(prepared)
    } else {
        Err(CollectionError::Invalid {
            report,
            total: features.len(),
        })
    }
}

/// Every feature's id, or why it has none.
fn assign_ids(
    features: &[Value],
    source: IdSource,
    generated: Vec<String>,
) -> Result<Vec<Result<String, String>>, CollectionError> {
    let (needed, given) = (without_ids(features, source), generated.len());
    if needed != given {
        return Err(CollectionError::GeneratedIds { needed, given });
    }
    let mut generated = generated.into_iter();
    Ok(features
        .iter()
        .map(|feature| {
            source
                .id_of(feature)
                .map(|id| id.or_else(|| generated.next()).unwrap_or_default())
        })
        .collect())
}

/// One feature as a prepared fence with id `id`.
fn prepare<E: std::fmt::Display>(
    feature: &Value,
    id: String,
    limits: &FenceLimits,
    check: impl Fn(&Fence) -> Result<(), E>,
) -> Result<PreparedFence, String> {
    let mut fence = fence_from_feature(feature, String::new).map_err(|e| e.to_string())?;
    fence.id = id;
    check(&fence).map_err(|e| e.to_string())?;
    PreparedFence::new(fence, limits).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn circle(id: Option<&str>, name: &str) -> Value {
        let mut feature = json!({"type": "Feature", "geometry": {"type": "Point", "coordinates": [2.0, 3.0]},
            "properties": {"radius_m": 100, "name": name}});
        if let Some(id) = id {
            feature["id"] = json!(id);
        }
        feature
    }

    fn ids(collection: &Value, source: IdSource, generated: &[&str]) -> Result<Vec<String>, CollectionError> {
        let generated = generated.iter().map(|&g| g.to_owned()).collect();
        prepare_collection(
            collection,
            source,
            generated,
            &FenceLimits::default(),
            |_| Ok::<_, String>(()),
            || {},
        )
        .map(|fences| fences.iter().map(|f| f.id().to_owned()).collect())
    }

    #[test]
    fn features_without_ids_take_generated_ones_in_order() {
        let collection = json!({"type": "FeatureCollection",
            "features": [circle(None, "a"), circle(Some("given"), "b"), circle(None, "c")]});
        assert_eq!(ids_to_generate(&collection, IdSource::Feature), 2);
        assert_eq!(
            ids(&collection, IdSource::Feature, &["f7", "f8"]).expect("imported"),
            ["f7", "given", "f8"]
        );
        assert!(matches!(
            ids(&collection, IdSource::Feature, &["f7"]),
            Err(CollectionError::GeneratedIds { needed: 2, given: 1 })
        ));
    }

    #[test]
    fn a_property_names_every_fence() {
        let collection = json!({"type": "FeatureCollection",
            "features": [circle(Some("ignored"), "France"), circle(None, "Spain")]});
        assert_eq!(ids_to_generate(&collection, IdSource::Property("name")), 0);
        assert_eq!(
            ids(&collection, IdSource::Property("name"), &[]).expect("imported"),
            ["France", "Spain"]
        );
        let Err(CollectionError::Invalid { report, .. }) = ids(&collection, IdSource::Property("iso"), &[])
        else {
            panic!("features without the property are invalid");
        };
        assert_eq!(report.len(), 2);
        assert!(
            report[0]["reason"]
                .as_str()
                .is_some_and(|r| r.contains("\"iso\"")),
            "{report:?}"
        );
    }

    #[test]
    fn an_id_twice_is_reported_at_its_second_feature() {
        let collection = json!({"type": "FeatureCollection",
            "features": [circle(None, "x"), circle(None, "y"), circle(None, "x")]});
        let Err(CollectionError::Invalid { report, total }) =
            ids(&collection, IdSource::Property("name"), &[])
        else {
            panic!("a duplicate id is invalid");
        };
        assert_eq!((report.len(), total), (1, 3));
        assert_eq!(report[0]["index"], 2);
    }
}
