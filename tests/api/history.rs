//! Position history kept in weekly partitions: made ahead of time, dropped a week at a time
//! past the retention (never row by row), and rows that landed in the default partition are
//! moved into their week's partition when it is made.

use chrono::{Duration, Utc};
use serde_json::json;

use crate::helpers::{fix, json_with_status, spawn_app};

/// Runs the upkeep, waiting out the server's own run if it holds the lock at that moment.
async fn upkeep(app: &crate::helpers::TestApp, retention: Option<Duration>) -> tracker::history::Upkeep {
    let now = Utc::now();
    for _ in 0..100 {
        let done = tracker::history::maintain(&app.db, now, now - Duration::days(366), retention)
            .await
            .expect("upkeep");
        if done.ran {
            return done;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the upkeep lock was never free");
}

async fn partition_of(app: &crate::helpers::TestApp, device: &str) -> Option<String> {
    sqlx::query_scalar("SELECT tableoid::regclass::text FROM positions WHERE device = $1")
        .bind(device)
        .fetch_optional(&app.db)
        .await
        .expect("query")
}

#[tokio::test]
async fn history_past_the_retention_is_dropped_by_week_and_partitions_are_made_ahead() {
    let app = spawn_app().await;
    let body = json!([fix("old", 30 * 86_400, 1.0, 1.0), fix("recent", 3_600, 1.0, 1.0)]);
    assert_eq!(
        json_with_status(app.post_json(&body).await, 202).await["accepted"],
        2
    );
    // Older than ingest accepts (an import of years ago): stays in the default partition.
    sqlx::query(
        "INSERT INTO positions (device, ts, geom, received_at, shard)
         VALUES ('ancient', now() - interval '2 years', ST_SetSRID(ST_MakePoint(1, 1), 4326), now(), 0)",
    )
    .execute(&app.db)
    .await
    .expect("insert");
    let done = upkeep(&app, None).await;
    assert!(done.dropped.is_empty(), "{done:?}");
    assert!(
        partition_of(&app, "old")
            .await
            .is_some_and(|p| p.starts_with("positions_p")),
        "moved to its week"
    );
    assert_eq!(
        partition_of(&app, "ancient").await.as_deref(),
        Some("positions_default")
    );

    let done = upkeep(&app, Some(Duration::days(14))).await;
    assert_eq!(done.dropped.len(), 1, "the week of `old`: {done:?}");
    assert_eq!(done.deleted, 1, "the ancient fix in the default partition");
    let now = Utc::now();
    assert_eq!(partition_of(&app, "old").await, None, "its week was dropped");
    assert_eq!(partition_of(&app, "ancient").await, None);
    assert!(partition_of(&app, "recent").await.is_some());
    let (first, last): (chrono::DateTime<Utc>, chrono::DateTime<Utc>) = sqlx::query_as(
        "SELECT min(lower), max(upper) FROM (
             SELECT (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'FROM \\(''([^'']+)''\\)'))[1]::timestamptz AS lower,
                    (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'TO \\(''([^'']+)''\\)'))[1]::timestamptz AS upper
             FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = 'positions'::regclass AND c.relname <> 'positions_default') w",
    )
    .fetch_one(&app.db)
    .await
    .expect("bounds");
    assert!(
        first + Duration::weeks(1) > now - Duration::days(14),
        "nothing wholly past the retention: {first}"
    );
    assert!(last >= now + Duration::weeks(4), "weeks ready ahead: {last}");
    app.stop().await;
}

#[tokio::test]
async fn a_past_week_gets_its_partition_when_fixes_land_in_the_default_one() {
    let app = spawn_app().await;
    let ts = Utc::now() - Duration::weeks(10);
    let week: String = sqlx::query_scalar(
        "SELECT 'positions_p' || to_char(date_trunc('week', $1 AT TIME ZONE 'UTC'), 'YYYYMMDD')",
    )
    .bind(ts)
    .fetch_one(&app.db)
    .await
    .expect("name");
    let body = json!([{"device": "late", "ts": ts.to_rfc3339(), "lon": 1.0, "lat": 1.0}]);
    assert_eq!(
        json_with_status(app.post_json(&body).await, 202).await["accepted"],
        1
    );
    assert_eq!(
        partition_of(&app, "late").await.as_deref(),
        Some("positions_default"),
        "no partition for that week yet"
    );
    upkeep(&app, None).await;
    assert_eq!(
        partition_of(&app, "late").await,
        Some(week),
        "moved into its week"
    );
    assert_eq!(app.stored().await, 1, "nothing lost or doubled");
    app.stop().await;
}
