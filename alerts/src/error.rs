//! The crate's error: what can go wrong loading fences and state, committing alerts, and
//! checking a webhook receiver.

/// Errors of evaluation, alert storage and webhooks.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// A row of the `fences` table that no longer reads as a valid fence.
    #[error("stored fence {id}: {reason}")]
    StoredFence { id: String, reason: String },
    /// The fence index cannot be built with its configuration.
    #[error("fence index: {0}")]
    Index(fences::FenceError),
    /// A webhook URL that cannot or may not be delivered to.
    #[error("webhook URL {url:?} {reason}")]
    WebhookUrl { url: String, reason: String },
}
