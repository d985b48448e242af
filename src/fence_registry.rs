//! [`FenceRegistry`]: the one owner of fence writes and reloads. A write is validated and
//! prepared (off the async workers: a large fence is CPU work), stored in one transaction, then
//! put in the in-memory index, and the fence tiles it touches are invalidated before it is
//! acknowledged (the next tile request sees it). Storing and indexing are serialised (fence
//! writes are rare, and one at a time keeps database and index in the same order); a reload
//! from the table (at start, and when another process announces a change) takes the same lock,
//! so the index never goes back to an older table state.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use alerts::SharedIndex;
use alerts::fence_store::{self, Conditional};
use alerts::webhooks::Policy;
use fences::collection::{CollectionError, IdSource, ids_to_generate, prepare_collection};
use fences::feature::{fence_from_feature, to_feature};
use fences::{Bbox, Fence, FenceError, FenceLimits, IndexedFence, PreparedFence};
use serde_json::{Value, json};
use sqlx::PgPool;
use tiles::{Change, LayerId, TileStore};

/// Why a fence write was refused.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("the fence index is not loaded yet")]
    Loading,
    #[error("{0}")]
    Invalid(FenceError),
    /// A webhook the policy refuses (see `alerts::webhooks::check_url`).
    #[error("{0}")]
    Webhook(alerts::Error),
    #[error("fence {0:?} names webhooks, but the server has no webhooks.secret to sign them with")]
    Unsigned(String),
    #[error("fence {0:?} exists; PUT /api/v1/fences/{{id}} replaces it")]
    Exists(String),
    #[error("there is no fence {0:?}")]
    NotFound(String),
    /// `If-Match` / `If-None-Match` were not met by the stored version (`current`, `None`
    /// when there is no such fence).
    #[error(
        "fence {id:?} is not in the version the request's If-Match or If-None-Match names; read it again"
    )]
    Precondition { id: String, current: Option<String> },
    #[error("the Feature's id {given} differs from the path's {path:?}")]
    IdMismatch { given: Value, path: String },
    #[error("{0}")]
    Collection(CollectionError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// The fence index, its loaded flag, the limits fences are checked against and the write lock.
#[derive(Debug)]
pub struct FenceRegistry {
    pool: PgPool,
    index: SharedIndex,
    loaded: AtomicBool,
    limits: FenceLimits,
    /// Serialises writes and reloads.
    writes: tokio::sync::Mutex<()>,
    tiles: Arc<TileStore>,
    webhooks: Webhooks,
    /// Signs this process's fence change announcements.
    origin: String,
}

/// What fences' webhooks are checked against.
#[derive(Debug, Clone)]
pub struct Webhooks {
    /// A webhook secret is configured, so fences may name webhook URLs.
    pub signed: bool,
    /// Where webhooks may be delivered.
    pub policy: Arc<Policy>,
}

impl FenceRegistry {
    /// An empty registry; nothing is served until the first [`Self::reload`].
    pub fn new(
        pool: PgPool,
        index: SharedIndex,
        limits: FenceLimits,
        tiles: Arc<TileStore>,
        webhooks: Webhooks,
    ) -> Self {
        Self {
            pool,
            index,
            loaded: AtomicBool::new(false),
            limits,
            writes: tokio::sync::Mutex::new(()),
            tiles,
            webhooks,
            origin: alerts::instance_tag(),
        }
    }

    /// The name this registry signs its fence change announcements with (it skips its own).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The index every lookup uses.
    pub fn index(&self) -> &SharedIndex {
        &self.index
    }

    /// The fence `id` as it is now (for reads that need its geometry).
    pub fn prepared(&self, id: &str) -> Result<PreparedFence, RegistryError> {
        self.loaded()?;
        self.index
            .read()
            .get(id)
            .cloned()
            .ok_or_else(|| RegistryError::NotFound(id.to_owned()))
    }

    /// Whether the index has been loaded from the database (`/ready` waits for it).
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    pub fn limits(&self) -> &FenceLimits {
        &self.limits
    }

    /// 503 until the index is loaded: an empty answer would say there are no fences.
    fn loaded(&self) -> Result<(), RegistryError> {
        if self.is_loaded() {
            Ok(())
        } else {
            Err(RegistryError::Loading)
        }
    }

    /// The fence with that id, as a Feature.
    pub fn feature(&self, id: &str) -> Result<Value, RegistryError> {
        self.loaded()?;
        let index = self.index.read();
        index
            .get(id)
            .map(|f| to_feature(f.fence()))
            .ok_or_else(|| RegistryError::NotFound(id.to_owned()))
    }

    /// The fence `id` as stored, as a Feature, with its version (the database's copy, so that
    /// the version and the Feature always agree, whichever node wrote it last).
    pub async fn versioned(&self, id: &str) -> Result<(Value, String), RegistryError> {
        self.loaded()?;
        let (definition, version) = fence_store::stored_with_version(&self.pool, id)
            .await?
            .ok_or_else(|| RegistryError::NotFound(id.to_owned()))?;
        let fence: Fence = serde_json::from_value(definition)
            .map_err(|e| RegistryError::Database(sqlx::Error::Decode(Box::new(e))))?;
        Ok((to_feature(&fence), version))
    }

    /// A page of the fences (those whose area meets `bbox`, when given) as Features: the first
    /// `limit` after the id `after`, in byte order of their ids.
    pub async fn page(
        &self,
        bbox: Option<Bbox>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page, RegistryError> {
        self.loaded()?;
        let mut ids: Vec<String> = if let Some(bbox) = bbox {
            fence_store::ids_in_bbox(&self.pool, bbox, after, limit + 1).await?
        } else {
            let index = self.index.read();
            index
                .ids_after(after, limit + 1)
                .into_iter()
                .map(str::to_owned)
                .collect()
        };
        let more = ids.len() > limit;
        ids.truncate(limit);
        let index = self.index.read();
        Ok(Page {
            features: ids
                .iter()
                .filter_map(|id| index.get(id))
                .map(|f| to_feature(f.fence()))
                .collect(),
            next_after: if more { ids.pop() } else { None },
        })
    }

    /// Creates a fence from a Feature (an id is generated when it has none); refuses an id that
    /// exists. Returns the stored Feature.
    pub async fn create(&self, feature: &Value) -> Result<(Value, String), RegistryError> {
        let generated = fence_store::next_id(&self.pool).await?;
        let fence = self.prepare(fence_from_feature(feature, || generated)).await?;
        let _writing = self.writes.lock().await;
        let id = fence.id().to_owned();
        let (feature, version, _) =
            self.write(fence, &Expected::absent())
                .await
                .map_err(|error| match error {
                    RegistryError::Precondition { .. } => RegistryError::Exists(id),
                    other => other,
                })?;
        Ok((feature, version))
    }

    /// Creates or replaces the fence `id` if its stored version is `expected`; returns the
    /// stored Feature, its new version and whether it existed.
    pub async fn put(
        &self,
        id: &str,
        mut feature: Value,
        expected: &Expected,
    ) -> Result<(Value, String, bool), RegistryError> {
        match feature.get("id") {
            None | Some(Value::Null) => {}
            Some(given) if given.as_str() == Some(id) || *given == json!(id) => {}
            Some(given) => {
                return Err(RegistryError::IdMismatch {
                    given: given.clone(),
                    path: id.to_owned(),
                });
            }
        }
        if let Some(object) = feature.as_object_mut() {
            object.insert("id".into(), json!(id));
        }
        let fence = self
            .prepare(fence_from_feature(&feature, || id.to_owned()))
            .await?;
        let _writing = self.writes.lock().await;
        self.write(fence, expected).await
    }

    /// Deletes the fence `id` if its stored version is `expected`.
    pub async fn delete(&self, id: &str, expected: &Expected) -> Result<(), RegistryError> {
        let _writing = self.writes.lock().await;
        match fence_store::delete_if(&self.pool, &self.origin, id, |v| expected.allows(v)).await? {
            Conditional::Done { .. } => {}
            Conditional::Refused(None) => return Err(RegistryError::NotFound(id.to_owned())),
            Conditional::Refused(current) => {
                return Err(RegistryError::Precondition {
                    id: id.to_owned(),
                    current,
                });
            }
        }
        self.apply(Vec::new(), &[id]);
        Ok(())
    }

    /// Imports a FeatureCollection, all or nothing; returns the fences' ids in feature order.
    /// Ids come from `id_property` when given, else from the Features (generated when absent).
    /// `progress` counts the features prepared.
    pub async fn import(
        &self,
        collection: Value,
        id_property: Option<String>,
        progress: Arc<AtomicUsize>,
    ) -> Result<Vec<String>, RegistryError> {
        self.loaded()?;
        let missing = ids_to_generate(&collection, IdSource::from_property(id_property.as_deref()));
        let generated = fence_store::next_ids(&self.pool, missing).await?;
        let (limits, policy) = (self.limits.clone(), self.webhooks.policy.clone());
        let prepared = off_workers(move || {
            prepare_collection(
                &collection,
                IdSource::from_property(id_property.as_deref()),
                generated,
                &limits,
                webhook_check(&policy),
                || {
                    progress.fetch_add(1, Ordering::Relaxed);
                },
            )
        })
        .await
        .map_err(RegistryError::Collection)?;
        let ids = prepared.iter().map(|f| f.id().to_owned()).collect();
        let _writing = self.writes.lock().await;
        // The database stores the fences while the other core builds their covers.
        let config = self.index.read().config().clone();
        let for_index = prepared.clone();
        let indexing = off_workers(move || fences::index::build_all(for_index, &config));
        let to_store: Vec<&PreparedFence> = prepared.iter().collect();
        let (stored, indexed) = tokio::join!(self.store(&to_store), indexing);
        stored?;
        self.apply(indexed.map_err(RegistryError::Invalid)?, &[]);
        Ok(ids)
    }

    /// Reloads the fences `ids` from the table after another process announced it changed them
    /// (another node of a cluster, the import CLI): updates or removes each in the index and
    /// drops the tiles their old and new extents touch. Returns how many are stored.
    pub async fn refresh(&self, ids: &[String]) -> Result<usize, alerts::Error> {
        let _writing = self.writes.lock().await;
        let rows = fence_store::stored_by_ids(&self.pool, ids).await?;
        let config = self.index.read().config().clone();
        let prepared = off_workers(move || fence_store::index_stored(rows, &config)).await?;
        let count = prepared.len();
        let kept: std::collections::HashSet<&str> = prepared.iter().map(IndexedFence::id).collect();
        let gone: Vec<&str> = ids
            .iter()
            .map(String::as_str)
            .filter(|id| !kept.contains(id))
            .collect();
        self.apply(prepared, &gone);
        Ok(count)
    }

    /// Rebuilds the index from the `fences` table (at start, and after a change announced by
    /// another process); returns how many fences it holds.
    pub async fn reload(&self) -> Result<usize, alerts::Error> {
        let _writing = self.writes.lock().await;
        let stored = fence_store::stored(&self.pool).await?;
        let index = off_workers(move || fence_store::index(stored)).await?;
        let count = index.len();
        self.index.update(|current| *current = index);
        self.tiles.cache().invalidate_layer(LayerId::FENCES);
        self.loaded.store(true, Ordering::Release);
        Ok(count)
    }

    /// Validates and prepares a fence and builds its index structures (geometry checks and H3
    /// covers: CPU work, done off the async workers and outside the index lock, so a large
    /// fence never stalls other requests or lookups).
    async fn prepare(&self, fence: Result<Fence, FenceError>) -> Result<IndexedFence, RegistryError> {
        let fence = fence.map_err(RegistryError::Invalid)?;
        webhook_check(&self.webhooks.policy)(&fence).map_err(RegistryError::Webhook)?;
        let limits = self.limits.clone();
        let config = self.index.read().config().clone();
        off_workers(move || IndexedFence::new(PreparedFence::new(fence, &limits)?, &config))
            .await
            .map_err(RegistryError::Invalid)
    }

    /// Stores `fence` if its stored version is `expected`, then puts it in the index and
    /// invalidates the tiles its old and new extents touch. Returns its Feature, its new
    /// version and whether a version of it was stored before. Call with the write lock.
    async fn write(
        &self,
        fence: IndexedFence,
        expected: &Expected,
    ) -> Result<(Value, String, bool), RegistryError> {
        self.writable(&[fence.fence()])?;
        let written =
            fence_store::store_if(&self.pool, &self.origin, fence.fence(), |v| expected.allows(v)).await?;
        // Whether it existed is the database's answer: another node's write may not have
        // reached this node's index yet.
        let (version, existed) = match written {
            Conditional::Done { previous, version } => (version.unwrap_or_default(), previous.is_some()),
            Conditional::Refused(current) => {
                return Err(RegistryError::Precondition {
                    id: fence.id().to_owned(),
                    current,
                });
            }
        };
        let feature = to_feature(fence.fence().fence());
        // Before the reply: the next tile request must see this write.
        self.apply(vec![fence], &[]);
        Ok((feature, version, existed))
    }

    /// Stores `fences` in one transaction and announces them. Call with the write lock.
    async fn store(&self, fences: &[&PreparedFence]) -> Result<(), RegistryError> {
        self.writable(fences)?;
        fence_store::store_and_announce(&self.pool, &self.origin, fences).await?;
        Ok(())
    }

    /// Whether `fences` may be stored now: the index is loaded (a write before would be lost
    /// by the load), and webhooks are named only when they can be signed.
    fn writable(&self, fences: &[&PreparedFence]) -> Result<(), RegistryError> {
        self.loaded()?;
        match fences.iter().find(|f| !f.fence().webhooks.is_empty()) {
            Some(fence) if !self.webhooks.signed => Err(RegistryError::Unsigned(fence.id().to_owned())),
            _ => Ok(()),
        }
    }

    /// Puts `fences` (already stored) into the index in place of their old versions, removes
    /// the fences `gone` (already deleted), and drops the cached tiles the old and new extents
    /// touch. Call with the write lock.
    fn apply(&self, fences: Vec<IndexedFence>, gone: &[&str]) {
        let touched = self.index.update(|index| {
            let mut touched = Vec::new();
            for fence in fences {
                touched.extend(fence.fence().extents());
                let old = index.put(fence);
                touched.extend(old.iter().flat_map(PreparedFence::extents));
            }
            for id in gone {
                touched.extend(index.remove(id).iter().flat_map(PreparedFence::extents));
            }
            touched
        });
        if !touched.is_empty() {
            self.tiles
                .cache()
                .invalidate(LayerId::FENCES, Change::within(touched));
        }
    }
}

/// What a write asks of the fence's stored version, from `If-Match` and `If-None-Match`
/// (RFC 9110, 13.1.1 and 13.1.2): versions are compared as entity tags (`"..."`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expected {
    /// `If-Match`: one of these tags (strong comparison), or `*` (any stored version).
    pub if_match: Option<Vec<String>>,
    /// `If-None-Match`: none of these tags (weak comparison), or `*` (no stored version).
    pub if_none_match: Option<Vec<String>>,
}

impl Expected {
    /// Only when there is no such fence yet (`If-None-Match: *`).
    pub fn absent() -> Self {
        Self {
            if_match: None,
            if_none_match: Some(vec!["*".into()]),
        }
    }

    /// Whether a fence whose stored version is `current` (`None`: not stored) may be written.
    pub fn allows(&self, current: Option<&str>) -> bool {
        let tag = current.map(entity_tag);
        let if_match = self.if_match.as_ref().is_none_or(|tags| {
            tag.as_ref()
                .is_some_and(|tag| tags.iter().any(|t| t == "*" || t == tag))
        });
        let if_none_match = self.if_none_match.as_ref().is_none_or(|tags| {
            tag.as_ref().is_none_or(|tag| {
                !tags
                    .iter()
                    .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == tag)
            })
        });
        if_match && if_none_match
    }
}

/// A stored version as the entity tag `ETag`, `If-Match` and `If-None-Match` carry (`"v"`).
pub fn entity_tag(version: &str) -> String {
    format!("\"{version}\"")
}

/// One page of the fence listing.
#[derive(Debug)]
pub struct Page {
    pub features: Vec<Value>,
    /// The id to ask for the next page after, while more follow.
    pub next_after: Option<String>,
}

/// Runs CPU-bound `work` on the blocking pool and waits for it. A panic in it is resumed here.
async fn off_workers<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        // Cancelled: only when the runtime shuts down, which drops this future too.
        Err(_) => std::future::pending().await,
    }
}

/// The check every webhook a fence names must pass: deliverable under `policy`.
pub fn webhook_check(policy: &Policy) -> impl Fn(&Fence) -> Result<(), alerts::Error> + '_ {
    move |fence| {
        fence
            .webhooks
            .iter()
            .try_for_each(|url| policy.check_url(url).map(drop))
    }
}
