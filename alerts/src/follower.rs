//! Cluster mode: feeds this node's hub with every alert committed by any node, in id order.
//!
//! Alert commits are serialised in the database ([`crate::store::commit`]) and each
//! one notifies `geotrack_alerts`; this task listens, reads the alerts past the last one it
//! published and publishes them. Reading from the table rather than taking the alerts from
//! the notification (or from a NATS subject) is what makes every node's hub identical: the
//! same alerts, in the same order, none twice, none skipped, whichever node committed them
//! and however messages between nodes are delayed. While the database is away it retries
//! every second and resumes from the last alert it published, so a lost notification loses
//! nothing; a poll every second covers notifications lost while it was listening.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

use crate::hub::{AlertHub, Published};
use crate::store::{self, ALERTS_CHANNEL, AlertQuery};

/// Alerts read per query.
const PAGE: i64 = 5_000;
/// Longest time between two reads when no notification arrives.
const POLL: Duration = Duration::from_secs(1);

/// Publishes on `hub` every alert committed after this task started, until `shutdown`.
pub async fn follow(pool: PgPool, hub: Arc<dyn AlertHub>, shutdown: CancellationToken) {
    let mut cursor = None;
    loop {
        let error = tokio::select! {
            result = follow_once(&pool, hub.as_ref(), &mut cursor) => match result {
                Ok(()) => return,
                Err(error) => error,
            },
            () = shutdown.cancelled() => return,
        };
        tracing::warn!(%error, ?cursor, "cannot follow committed alerts; retrying in 1 s");
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

async fn follow_once(pool: &PgPool, hub: &dyn AlertHub, cursor: &mut Option<i64>) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(ALERTS_CHANNEL).await?;
    let mut last = match *cursor {
        Some(last) => last,
        // Alerts committed before this node started are history, read with `since=`.
        None => *cursor.insert(store::newest_id(pool).await?),
    };
    loop {
        loop {
            let query = AlertQuery {
                since: last,
                limit: PAGE,
                ..AlertQuery::default()
            };
            let alerts = store::page(pool, &query).await?;
            let Some(newest) = alerts.last().map(|a| a.id) else {
                break;
            };
            let full = alerts.len() as i64 == PAGE;
            hub.publish(alerts.into_iter().map(Published::new).collect());
            last = newest;
            *cursor = Some(last);
            if !full {
                break;
            }
        }
        // Either a notification or the poll interval: both mean "read again".
        if let Ok(notification) = tokio::time::timeout(POLL, listener.recv()).await {
            notification?;
        }
    }
}
