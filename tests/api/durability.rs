//! "Acknowledged means durable": acks only after commit, one poisonous fix never fails the
//! others, a writer lingers for fuller batches only when requests come often enough, shutdown
//! flushes queued fixes, full queues and a lost database answer 503.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use sqlx::Connection;

use crate::helpers::{TestApp, admin_exec, fix, json_with_status, spawn_app, spawn_with, wait_until};

#[tokio::test]
async fn every_acknowledged_fix_is_in_the_table_when_the_reply_arrives() {
    let app = spawn_app().await;
    let mut requests = Vec::new();
    for client in 0..16 {
        let app_client = app.client.clone();
        let url = app.url("/api/v1/positions");
        let db = app.db.clone();
        requests.push(tokio::spawn(async move {
            for round in 0..10 {
                let device = format!("ack-{client}-{round}");
                let batch: Vec<Value> = (0..20).map(|i| fix(&device, i, 1.0, 1.0)).collect();
                let reply = app_client.post(&url).json(&batch).send().await.expect("sent");
                assert_eq!(reply.status(), 202);
                // Looked at right after the reply: it must already be committed.
                let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM positions WHERE device = $1")
                    .bind(&device)
                    .fetch_one(&db)
                    .await
                    .expect("count");
                assert_eq!(stored, 20, "{device}");
            }
        }));
    }
    for request in requests {
        request.await.expect("client task");
    }
    assert_eq!(app.stored().await, 16 * 10 * 20);
    app.stop().await;
}

#[tokio::test]
async fn one_poisonous_fix_is_isolated_and_the_rest_of_the_batch_is_stored() {
    let app = spawn_app().await;
    // A rule only the database knows: the validation in front of it cannot catch this fix.
    sqlx::query("ALTER TABLE positions ADD CONSTRAINT no_poison CHECK (device <> 'poison')")
        .execute(&app.db)
        .await
        .expect("constraint");
    let mut batch: Vec<Value> = (0..9).map(|i| fix(&format!("ok-{i}"), 1, 1.0, 1.0)).collect();
    batch.insert(6, fix("poison", 1, 1.0, 1.0));
    let reply = json_with_status(app.post_json(&json!(batch)).await, 202).await;
    assert_eq!(reply["accepted"], 9);
    let rejected = reply["rejected"].as_array().expect("rejected");
    assert_eq!(rejected.len(), 1, "{reply}");
    assert_eq!(rejected[0]["index"], 6);
    assert_eq!(rejected[0]["code"], "refused_by_database");
    assert!(
        rejected[0]["reason"]
            .as_str()
            .expect("reason")
            .contains("no_poison")
    );
    assert_eq!(app.stored().await, 9);
    let live: i64 = sqlx::query_scalar("SELECT count(*) FROM devices_latest")
        .fetch_one(&app.db)
        .await
        .expect("count");
    assert_eq!(live, 9, "the poisonous fix moved no live position either");
    app.stop().await;
}

#[tokio::test]
async fn requests_further_apart_than_the_linger_are_not_held_for_it() {
    // A writer lingers for more requests only while they arrive more often than the linger.
    let linger = Duration::from_millis(1_500);
    let app = spawn_with(|c| {
        c.ingest.shards = 1;
        c.ingest.batch_linger_ms = u64::try_from(linger.as_millis()).expect("ms");
    })
    .await;
    let post = async |i: i64| {
        let started = Instant::now();
        let reply = app.post_json(&fix("sparse", 100 - i, 1.0, 1.0)).await;
        assert_eq!(reply.status(), 202);
        started.elapsed()
    };
    assert!(
        post(0).await >= linger,
        "before the rate is known, the writer lingers"
    );
    for i in 1..3 {
        tokio::time::sleep(linger).await;
        let took = post(i).await;
        assert!(
            took < linger / 2,
            "request {i}, {took:?}: a rate below one request per linger is not held for the linger"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn shutdown_commits_queued_fixes_before_the_server_exits() {
    // Writers wait up to a minute for fuller batches: only shutdown's flush can commit them.
    let mut app = spawn_with(|c| {
        c.ingest.batch_linger_ms = 60_000;
        c.ingest.batch_max_fixes = 1_000_000;
    })
    .await;
    let mut requests = Vec::new();
    for i in 0..8 {
        let request =
            app.request(Method::POST, "/api/v1/positions")
                .json(&fix(&format!("sd-{i}"), 1, 1.0, 1.0));
        requests.push(tokio::spawn(request.try_send()));
    }
    wait_until("fixes never queued", async || {
        app.state.ingest.pipeline.queued() >= 8
    })
    .await;
    assert_eq!(
        app.stored().await,
        0,
        "nothing is committed before the linger ends"
    );

    let started = Instant::now();
    app.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "shutdown waited for the linger"
    );
    for request in requests {
        let response = request
            .await
            .expect("task")
            .expect("the in-flight request was answered");
        assert_eq!(response.status(), 202);
    }
    assert_eq!(app.stored().await, 8);
    app.stop().await;
}

/// Holds the writers inside their transaction: a connection of the test's own locks the table
/// they insert into, until [`release`].
async fn hold_the_writers(app: &TestApp) -> sqlx::PgConnection {
    let mut blocker = sqlx::PgConnection::connect(&app.db_url)
        .await
        .expect("blocker connection");
    sqlx::raw_sql("BEGIN; LOCK TABLE positions IN EXCLUSIVE MODE")
        .execute(&mut blocker)
        .await
        .expect("lock");
    blocker
}

async fn release(mut blocker: sqlx::PgConnection) {
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut blocker)
        .await
        .expect("unlock");
}

#[tokio::test]
async fn a_full_queue_answers_503_with_retry_after_and_stores_nothing_of_that_request() {
    let app = spawn_with(|c| {
        c.ingest.shards = 1;
        c.ingest.queue_capacity = 5;
        c.ingest.enqueue_wait_ms = 200;
    })
    .await;
    let lock = hold_the_writers(&app).await;

    let batch: Vec<Value> = (0..5).map(|i| fix("full", i, 1.0, 1.0)).collect();
    let first = app.request(Method::POST, "/api/v1/positions").json(&batch);
    let first = tokio::spawn(first.try_send());
    wait_until("first batch never queued", async || {
        app.state.ingest.pipeline.queued() >= 5
    })
    .await;

    let refused = app.post_json(&fix("full", 30, 1.0, 1.0)).await;
    assert_eq!(refused.status(), 503);
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!(retry_after >= 1);
    assert_eq!(
        json_with_status(refused, 503).await["error"]["code"],
        "queue_full"
    );

    release(lock).await;
    let first = first.await.expect("task").expect("answered");
    assert_eq!(json_with_status(first, 202).await["accepted"], 5);
    assert_eq!(app.stored().await, 5, "the refused fix was not stored");
    assert_eq!(app.state.ingest.pipeline.metrics().queue_full.get(), 1);
    app.stop().await;
}

#[tokio::test]
async fn when_the_database_is_gone_ingest_answers_503_and_ready_turns_false() {
    let app = spawn_app().await;
    json_with_status(app.post_json(&fix("before", 1, 1.0, 1.0)).await, 202).await;
    assert_eq!(app.get("/ready").await.status(), 200);

    admin_exec(&format!("DROP DATABASE \"{}\" WITH (FORCE)", app.db_name)).await;

    let reply = app.post_json(&fix("after", 1, 1.0, 1.0)).await;
    assert_eq!(reply.status(), 503);
    assert!(reply.headers().contains_key("retry-after"));
    assert_eq!(
        json_with_status(reply, 503).await["error"]["code"],
        "database_unavailable"
    );
    let ready = json_with_status(app.get("/ready").await, 503).await;
    assert_eq!(ready["error"]["code"], "not_ready");
    assert_eq!(
        app.get("/health").await.status(),
        200,
        "the process itself is fine"
    );
    app.stop().await;
}

/// Posts `fixes` of device `wait` in the background; the reply comes once they are stored.
fn post_in_background(
    app: &TestApp,
    fixes: std::ops::Range<i64>,
) -> tokio::task::JoinHandle<reqwest::Result<reqwest::Response>> {
    let body: Vec<Value> = fixes.map(|i| fix("wait", i, 1.0, 1.0)).collect();
    tokio::spawn(
        app.request(Method::POST, "/api/v1/positions")
            .json(&body)
            .try_send(),
    )
}

/// Asserts `reply` is a 503 `queue_full` with `Retry-After`, answered without the enqueue wait.
async fn assert_refused_at_once(reply: reqwest::Response, started: Instant) {
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refused without waiting: {:?}",
        started.elapsed()
    );
    assert!(reply.headers().contains_key("retry-after"));
    assert_eq!(json_with_status(reply, 503).await["error"]["code"], "queue_full");
}

#[tokio::test]
async fn past_the_waiting_room_a_request_is_refused_at_once_and_when_full_before_its_body_is_read() {
    let app = spawn_with(|c| {
        c.ingest.shards = 1;
        c.ingest.queue_capacity = 5;
        c.ingest.enqueue_wait_ms = 20_000;
        c.ingest.max_waiting_fixes = 10;
    })
    .await;
    let lock = hold_the_writers(&app).await;
    let queued = post_in_background(&app, 0..5);
    wait_until("first batch never queued", async || {
        app.state.ingest.pipeline.queued() >= 5
    })
    .await;
    let waiting = post_in_background(&app, 5..10);
    wait_until("second batch never waited", async || {
        app.state.ingest.pipeline.waiting() >= 5
    })
    .await;

    // Six more fixes do not fit in the waiting room: refused at once, not after 20 s.
    let started = Instant::now();
    let body: Vec<Value> = (10..16).map(|i| fix("wait", i, 1.0, 1.0)).collect();
    assert_refused_at_once(app.post_json(&json!(body)).await, started).await;
    // A full waiting room: refused before the body is even read (it is not JSON).
    let also_waiting = post_in_background(&app, 20..25);
    wait_until("third batch never waited", async || {
        app.state.ingest.pipeline.waiting() >= 10
    })
    .await;
    let started = Instant::now();
    assert_refused_at_once(app.post_raw("application/json", "not json").await, started).await;
    assert_eq!(
        app.get("/").await.status(),
        200,
        "the web map is no ingest request"
    );

    release(lock).await;
    for reply in [queued, waiting, also_waiting] {
        json_with_status(reply.await.expect("task").expect("answered"), 202).await;
    }
    assert_eq!(
        app.stored().await,
        15,
        "the waiting requests were stored once there was room"
    );
    assert_eq!(app.state.ingest.pipeline.waiting(), 0);
    assert_eq!(app.state.ingest.pipeline.metrics().queue_full.get(), 2);
    app.stop().await;
}
