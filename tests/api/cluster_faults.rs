//! Cluster mode when a service goes away, through proxies the tests cut and restore (so only
//! this node loses it): without NATS, ingest answers 503 with `Retry-After` and `/ready` says
//! why, and both recover by themselves; without PostgreSQL, ingest still acknowledges (into the
//! fix log) and the partitions' owner stores everything once the database is back, each alert
//! once.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::helpers::{
    NATS_URL, TcpProxy, TestApp, cluster_config, cluster_prefix, create_fence, database_url, destroy_cluster,
    fix_at, in_and_out, json_with_status, new_database, poll_until, spawn_on, square,
};

const PARTITIONS: u16 = 2;

/// A one-node cluster whose NATS (and database) connections go through proxies.
async fn node_via(prefix: &str, nats: &TcpProxy, db: Option<&TcpProxy>) -> TestApp {
    let db_name = new_database().await;
    let url = db.map_or_else(|| database_url(&db_name), |proxy| proxy.database_url(&db_name));
    let mut cluster = cluster_config(prefix, "n0", PARTITIONS, 2);
    cluster.nats_url = Some(format!("nats://{}", nats.addr));
    let app = spawn_on(db_name, |c| {
        c.database_url = url;
        c.cluster = cluster;
    })
    .await;
    let owned = poll_until(Duration::from_secs(10), Duration::from_millis(50), async || {
        let owners: i64 = sqlx::query_scalar("SELECT count(*) FROM partition_owners")
            .fetch_one(&app.db)
            .await
            .expect("owners");
        owners == i64::from(PARTITIONS)
    })
    .await;
    assert!(owned, "the node never claimed its partitions");
    app
}

fn nats_upstream() -> String {
    NATS_URL.trim_start_matches("nats://").to_owned()
}

fn fix(i: usize, start: DateTime<Utc>) -> Value {
    let (lon, lat) = in_and_out(i);
    fix_at("d", start + chrono::Duration::seconds(i as i64), lon, lat)
}

async fn stored_reaches(app: &TestApp, n: i64) -> bool {
    poll_until(Duration::from_secs(15), Duration::from_millis(50), async || {
        app.stored().await == n
    })
    .await
}

#[tokio::test]
async fn without_nats_ingest_is_refused_with_retry_after_and_both_recover() {
    let prefix = cluster_prefix("no-nats");
    let nats = TcpProxy::to(nats_upstream()).await;
    let app = node_via(&prefix, &nats, None).await;
    let start = DateTime::from_timestamp(Utc::now().timestamp() - 60, 0).expect("time");
    assert_eq!(app.post_json(&fix(0, start)).await.status(), 202);
    assert!(stored_reaches(&app, 1).await, "the acknowledged fix is stored");

    nats.cut();
    let refused = poll_until(Duration::from_secs(10), Duration::from_millis(100), async || {
        let reply = app.post_json(&fix(1, start)).await;
        if reply.status() != 503 {
            return false;
        }
        assert!(
            reply.headers().contains_key("retry-after"),
            "a 503 says when to retry"
        );
        let body = json_with_status(reply, 503).await;
        assert_eq!(body["error"]["code"], "log_unavailable", "{body}");
        true
    })
    .await;
    assert!(refused, "ingest kept acknowledging without NATS");
    let unready = poll_until(Duration::from_secs(10), Duration::from_millis(100), async || {
        let reply = app.get("/ready").await;
        reply.status() == 503 && reply.text().await.unwrap_or_default().contains("NATS")
    })
    .await;
    assert!(unready, "/ready never said NATS was away");

    nats.restore();
    let recovered = poll_until(Duration::from_secs(20), Duration::from_millis(200), async || {
        app.post_json(&fix(1, start)).await.status() == 202
    })
    .await;
    assert!(recovered, "ingest never recovered after NATS came back");
    assert!(
        stored_reaches(&app, 2).await,
        "the fix acknowledged after recovery is stored"
    );
    assert_eq!(app.get("/ready").await.status(), 200);
    app.stop().await;
    destroy_cluster(&prefix, PARTITIONS).await;
}

#[tokio::test]
async fn without_postgres_fixes_are_acknowledged_into_the_log_and_stored_once_it_is_back() {
    let prefix = cluster_prefix("no-pg");
    let nats = TcpProxy::to(nats_upstream()).await;
    let pg = TcpProxy::to_postgres().await;
    let app = node_via(&prefix, &nats, Some(&pg)).await;
    create_fence(&app, &square("a", 10.0025, 10.0, 0.0025)).await;
    let start = DateTime::from_timestamp(Utc::now().timestamp() - 60, 0).expect("time");
    for i in 0..10 {
        assert_eq!(app.post_json(&fix(i, start)).await.status(), 202);
    }
    assert!(stored_reaches(&app, 10).await);

    pg.cut();
    for i in 10..30 {
        let reply = app.post_json(&fix(i, start)).await;
        assert_eq!(
            reply.status(),
            202,
            "fix {i}: the log takes it while PostgreSQL is away"
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    pg.restore();
    assert!(stored_reaches(&app, 30).await, "the owner caught up from the log");
    let alerts = poll_until(Duration::from_secs(15), Duration::from_millis(100), async || {
        let kinds: Vec<String> = sqlx::query_scalar("SELECT kind FROM alerts ORDER BY id")
            .fetch_all(&app.db)
            .await
            .expect("alerts");
        kinds.len() >= 30
    })
    .await;
    let kinds: Vec<String> = sqlx::query_scalar("SELECT kind FROM alerts ORDER BY id")
        .fetch_all(&app.db)
        .await
        .expect("alerts");
    assert!(alerts, "{} of 30 alerts", kinds.len());
    let expected: Vec<&str> = (0..30)
        .map(|i: usize| if i.is_multiple_of(2) { "enter" } else { "exit" })
        .collect();
    assert_eq!(kinds, expected, "one alert per crossing, each once, in order");
    app.stop().await;
    destroy_cluster(&prefix, PARTITIONS).await;
}

#[tokio::test]
async fn a_cluster_created_again_on_a_kept_database_takes_its_partitions_back() {
    let prefix = cluster_prefix("recreated");
    let config = |c: &mut geotrack::Config| c.cluster = cluster_config(&prefix, "n0", PARTITIONS, 2);
    let db_name = new_database().await;
    let start = DateTime::from_timestamp(Utc::now().timestamp() - 60, 0).expect("time");
    let mut first = spawn_on(db_name.clone(), config).await;
    assert_eq!(first.post_json(&fix(0, start)).await.status(), 202);
    assert!(stored_reaches(&first, 1).await);
    first.shutdown().await;
    // A long-lived cluster has high epochs and log positions.
    sqlx::query("UPDATE partition_owners SET epoch = epoch + 1000, stored_seq = stored_seq + 1000")
        .execute(&first.db)
        .await
        .expect("aged");
    // The operator deletes the cluster's stream and buckets; the database keeps the old
    // epochs and log positions, which mean nothing to the new stream and buckets (whose
    // revisions and sequences start over).
    destroy_cluster(&prefix, PARTITIONS).await;
    let second = spawn_on(db_name, config).await;
    for i in 1..5 {
        assert_eq!(second.post_json(&fix(i, start)).await.status(), 202);
    }
    assert!(
        stored_reaches(&second, 5).await,
        "the new cluster stores its fixes"
    );
    second.stop().await;
    destroy_cluster(&prefix, PARTITIONS).await;
}
