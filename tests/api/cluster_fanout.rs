//! Cluster mode: what one node takes, the other serves. Two nodes (in-process applications) on
//! one database and the local NATS: a fence written on one is in the other's fence tiles, and
//! fixes posted to one are in the other's `tracks` tiles, on its `/ws/positions` and in its
//! dispatch queries, within the bounds the README states (pinned here with room for a loaded
//! machine).

use std::time::{Duration, Instant};

use chrono::Utc;

use crate::helpers::{
    TestApp, WsClient, cluster_config, cluster_prefix, create_fence, destroy_cluster, named, names_at,
    new_database, poll_until, post_fix, spawn_on, square,
};

const PARTITIONS: u16 = 2;
/// How long a fence change may take to reach the other node's tiles (a PostgreSQL
/// notification: milliseconds).
const FENCE_LAG: Duration = Duration::from_secs(1);
/// How long a fix acknowledged by one node may take to reach the other's `tracks` tiles (the
/// owner stores it, then a NATS message: tens of milliseconds).
const TRACKS_LAG: Duration = Duration::from_secs(2);

async fn two_nodes(prefix: &str) -> (TestApp, TestApp) {
    let db_name = new_database().await;
    let a = spawn_on(db_name.clone(), |c| {
        c.cluster = cluster_config(prefix, "a", PARTITIONS, 2);
    })
    .await;
    let b = spawn_on(db_name, |c| {
        c.cluster = cluster_config(prefix, "b", PARTITIONS, 2);
    })
    .await;
    let claimed = poll_until(Duration::from_secs(10), Duration::from_millis(50), async || {
        let owners: i64 = sqlx::query_scalar("SELECT count(DISTINCT node) FROM partition_owners")
            .fetch_one(&a.db)
            .await
            .expect("owners");
        owners == 2
    })
    .await;
    assert!(claimed, "the partitions never spread over both nodes");
    (a, b)
}

async fn stop(a: TestApp, b: TestApp, prefix: &str) {
    let mut b = b;
    b.shutdown().await;
    a.stop().await;
    destroy_cluster(prefix, PARTITIONS).await;
}

#[tokio::test]
async fn a_fence_written_on_one_node_is_in_the_others_tiles_within_a_second() {
    let prefix = cluster_prefix("fanout-fence");
    let (a, b) = two_nodes(&prefix).await;
    // Node b has the tile cached, without the fence.
    assert!(names_at(&b, "fences", 10.0025, 10.0, 12, "").await.is_empty());
    create_fence(&a, &named(square("depot", 10.0025, 10.0, 0.0025), "Depot")).await;
    let written = Instant::now();
    let seen = poll_until(FENCE_LAG, Duration::from_millis(5), async || {
        names_at(&b, "fences", 10.0025, 10.0, 12, "").await == ["Depot"]
    })
    .await;
    println!(
        "fence on node b's tiles {:?} after its write on node a",
        written.elapsed()
    );
    assert!(
        seen,
        "node b still served the tile without the fence after {FENCE_LAG:?}"
    );
    assert_eq!(b.get("/api/v1/fences/depot").await.status(), 200);
    stop(a, b, &prefix).await;
}

#[tokio::test]
async fn fixes_posted_on_one_node_reach_the_others_tracks_tiles_and_live_positions() {
    let prefix = cluster_prefix("fanout-fixes");
    let (a, b) = two_nodes(&prefix).await;
    let now = Utc::now();
    let window = format!(
        "?from={}&to={}",
        (now - chrono::Duration::hours(1)).timestamp(),
        (now + chrono::Duration::minutes(5)).timestamp()
    );
    let mut live = WsClient::connect(&b, "/ws/positions?bbox=9,9,11,11").await;
    assert_eq!(live.json().await["type"], "snapshot");
    assert!(names_at(&b, "tracks", 10.0, 10.0, 12, &window).await.is_empty());

    post_fix(&a, "bus", now - chrono::Duration::seconds(60), 10.0, 10.0).await;
    post_fix(&a, "bus", now - chrono::Duration::seconds(30), 10.001, 10.0).await;
    let posted = Instant::now();
    let seen = poll_until(TRACKS_LAG, Duration::from_millis(5), async || {
        names_at(&b, "tracks", 10.0, 10.0, 12, &window).await == ["bus"]
    })
    .await;
    println!(
        "track on node b's tiles {:?} after node a acknowledged it",
        posted.elapsed()
    );
    assert!(
        seen,
        "node b still served the tracks tile without the fixes after {TRACKS_LAG:?}"
    );

    let moved = live.json().await;
    assert_eq!(moved["type"], "positions", "{moved}");
    assert_eq!(moved["positions"][0]["device"], "bus", "{moved}");
    assert_eq!(
        moved["positions"][0]["position"],
        serde_json::json!([10.001, 10.0])
    );
    // Node b's live index has it too: its dispatch queries see devices every node stores.
    let near = poll_until(TRACKS_LAG, Duration::from_millis(5), async || {
        let reply = b.get("/api/v1/devices/nearby?lon=10.001&lat=10&radius_m=1").await;
        let body: serde_json::Value = reply.json().await.expect("json");
        body["features"][0]["id"] == "bus"
    })
    .await;
    assert!(near, "node b's nearby query never found the bus");
    // Erased on node a, it leaves node b's index at once, not at b's next reload.
    let erased = a
        .request(reqwest::Method::DELETE, "/api/v1/devices/bus")
        .send()
        .await;
    assert_eq!(erased.status(), 200);
    let gone = poll_until(TRACKS_LAG, Duration::from_millis(5), async || {
        let reply = b.get("/api/v1/devices/nearby?lon=10.001&lat=10&radius_m=1").await;
        let body: serde_json::Value = reply.json().await.expect("json");
        body["features"].as_array().is_some_and(Vec::is_empty)
    })
    .await;
    assert!(gone, "node b's nearby query still found the erased bus");
    stop(a, b, &prefix).await;
}

#[tokio::test]
async fn proximity_alerts_come_once_and_survive_a_change_of_the_evaluating_node() {
    let prefix = cluster_prefix("fanout-roam");
    let (mut a, mut b) = two_nodes(&prefix).await;
    let rule =
        serde_json::json!({"devices": ["van-*"], "near": ["depot"], "radius_m": 200, "hysteresis_m": 50});
    let created = a
        .send_json(reqwest::Method::PUT, "/api/v1/proximity-rules/depot", &rule)
        .await;
    assert_eq!(created.status(), 201);
    // 1 m east is 1 / 109,640 degrees of longitude at latitude 10.
    let east = |m: f64| 10.0 + m / 109_640.0;
    let t0 = Utc::now() - chrono::Duration::seconds(60);
    post_fix(&b, "depot", t0, east(0.0), 10.0).await;
    post_fix(&a, "van-1", t0 + chrono::Duration::seconds(1), east(100.0), 10.0).await;
    let kinds = async |app: &TestApp| -> Vec<String> {
        sqlx::query_scalar("SELECT kind FROM alerts ORDER BY id")
            .fetch_all(&app.db)
            .await
            .expect("alerts")
    };
    let near = poll_until(Duration::from_secs(10), Duration::from_millis(50), async || {
        kinds(&a).await == ["near"]
    })
    .await;
    assert!(near, "no near alert: {:?}", kinds(&a).await);

    // The node evaluating proximity (partition 0's owner) stops; the other takes over from the
    // stored pairs: no second `near`, and the separation is seen.
    let evaluator: String = sqlx::query_scalar("SELECT node FROM partition_owners WHERE partition = 0")
        .fetch_one(&a.db)
        .await
        .expect("owner");
    let survivor = if evaluator == "a" {
        a.shutdown().await;
        &b
    } else {
        b.shutdown().await;
        &a
    };
    post_fix(
        survivor,
        "van-1",
        t0 + chrono::Duration::seconds(2),
        east(120.0),
        10.0,
    )
    .await;
    post_fix(
        survivor,
        "van-1",
        t0 + chrono::Duration::seconds(3),
        east(400.0),
        10.0,
    )
    .await;
    let apart = poll_until(Duration::from_secs(15), Duration::from_millis(50), async || {
        kinds(survivor).await.len() >= 2
    })
    .await;
    assert!(apart, "no apart alert: {:?}", kinds(survivor).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(kinds(survivor).await, ["near", "apart"]);
    stop(a, b, &prefix).await;
}
