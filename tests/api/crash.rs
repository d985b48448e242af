//! `kill -9` mid-drive: the server runs as a child process (the real binary), devices drive in
//! and out of a fence, the process is killed with SIGKILL while requests are in flight, a new
//! process starts on the same database, and the devices re-send what was not acknowledged (as
//! device apps do). Afterwards every device has exactly the alerts its fixes call for, each once, and
//! a subscriber that resumed with its cursor has seen exactly the table.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::helpers::{
    Next, ServerProcess, WsClient, admin_exec, check_crossing_alerts, database_url, fix_at, in_and_out,
    new_database, poll_until, square,
};

const DEVICES: usize = 6;
const FIXES: usize = 30;
/// Acknowledged fixes after which the server is killed.
const KILL_AFTER: usize = 50;

/// The fix `i` of a device: inside the fence at even `i`, outside at odd `i`, one second apart.
fn fix(device: usize, i: usize, start: DateTime<Utc>) -> Value {
    let (lon, lat) = in_and_out(i);
    fix_at(
        &format!("dev-{device}"),
        start + chrono::Duration::seconds(i as i64),
        lon,
        lat,
    )
}

/// Posts a device's fixes from `next` on, one request each, until one is not acknowledged.
/// Returns the first fix not acknowledged (`FIXES` when all were).
async fn drive(
    server_url: String,
    device: usize,
    mut next: usize,
    start: DateTime<Utc>,
    acks: Arc<AtomicUsize>,
) -> usize {
    let client = reqwest::Client::new();
    while next < FIXES {
        let sent = client
            .post(format!("{server_url}/api/v1/positions"))
            .json(&fix(device, next, start))
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        match sent {
            Ok(reply) if reply.status() == 202 => {
                next += 1;
                acks.fetch_add(1, Ordering::Relaxed);
            }
            _ => return next,
        }
    }
    next
}

/// Collects alerts until the socket closes.
async fn collect(mut socket: WsClient) -> Vec<Value> {
    let mut alerts = Vec::new();
    loop {
        match socket.next().await {
            Next::Json(m) if m["type"] == "alert" => alerts.push(m),
            Next::Json(_) => {}
            Next::Closed(_) => return alerts,
        }
    }
}

#[tokio::test]
async fn sigkill_mid_drive_loses_and_doubles_no_alert() {
    let db_name = new_database().await;
    let server = ServerProcess::start(&db_name, &[]).await;
    let client = reqwest::Client::new();
    let created = client
        .post(server.url("/api/v1/fences"))
        .json(&square("a", 10.0025, 10.0, 0.0025))
        .send()
        .await
        .expect("sent");
    assert_eq!(created.status(), 201);

    let subscriber = WsClient::try_connect_url(&format!("ws://127.0.0.1:{}/ws/alerts?since=0", server.port))
        .await
        .expect("subscribed");
    let before_kill = tokio::spawn(collect(subscriber));

    let start = DateTime::from_timestamp(Utc::now().timestamp() - FIXES as i64 - 5, 0).expect("time");
    let acks = Arc::new(AtomicUsize::new(0));
    let drives: Vec<_> = (0..DEVICES)
        .map(|d| tokio::spawn(drive(server.url(""), d, 0, start, acks.clone())))
        .collect();
    // Looked at often, so that the kill comes while the devices are still driving.
    let enough = poll_until(Duration::from_secs(20), Duration::from_millis(2), async || {
        acks.load(Ordering::Relaxed) >= KILL_AFTER
    })
    .await;
    assert!(
        enough,
        "only {} of {KILL_AFTER} fixes acknowledged in 20 s",
        acks.load(Ordering::Relaxed)
    );
    server.kill().await;
    let mut resume = Vec::new();
    for d in drives {
        resume.push(d.await.expect("drive"));
    }
    assert!(
        resume.iter().any(|&n| n < FIXES),
        "the kill interrupted the drive"
    );
    let seen_before = before_kill.await.expect("subscriber");

    let server = ServerProcess::start(&db_name, &[]).await;
    let cursor = seen_before.last().map_or(0, |a| a["id"].as_i64().expect("id"));
    let mut subscriber = WsClient::try_connect_url(&format!(
        "ws://127.0.0.1:{}/ws/alerts?since={cursor}",
        server.port
    ))
    .await
    .expect("resubscribed");
    let drives: Vec<_> = resume
        .iter()
        .enumerate()
        .map(|(d, &next)| tokio::spawn(drive(server.url(""), d, next, start, acks.clone())))
        .collect();
    for d in drives {
        assert_eq!(
            d.await.expect("drive"),
            FIXES,
            "every fix acknowledged after the restart"
        );
    }

    let db = sqlx::PgPool::connect(&database_url(&db_name))
        .await
        .expect("pool");
    let expected_total = DEVICES * FIXES;
    let mut seen = seen_before;
    seen.extend(subscriber.until_live().await);
    while seen.len() < expected_total {
        let more = subscriber.alerts(1).await;
        seen.extend(more);
    }
    let stored = check_crossing_alerts(&db, DEVICES, FIXES, start).await;
    let streamed: Vec<i64> = seen.iter().map(|a| a["id"].as_i64().expect("id")).collect();
    assert_eq!(streamed, stored, "the subscriber saw the table, each alert once");

    db.close().await;
    drop(subscriber);
    server.kill().await;
    admin_exec(&format!("DROP DATABASE IF EXISTS \"{db_name}\" WITH (FORCE)")).await;
}
