//! Fence evaluation end to end: fixes posted over HTTP become alerts in the table, on
//! `GET /api/v1/alerts` and on `WS /ws/alerts`, exactly once and in id order, through filters,
//! resumes, a lagging subscriber, restarts, timers and fence edits.

use std::time::Duration;

use chrono::{DateTime, Utc};
use geotrack::auth::TokensSetting;
use serde_json::{Value, json};

use crate::helpers::{
    Next, TestApp, WsClient, circle, corridor, create_fence, fix_at, in_and_out, json_with_status, post_fix,
    replace_fence, spawn_app, spawn_on, spawn_with, square, wait_for_alerts,
};

fn summary(alerts: &[Value]) -> Vec<(String, String, String)> {
    alerts
        .iter()
        .map(|a| {
            (
                a["device"].as_str().unwrap_or_default().to_owned(),
                a["fence"].as_str().unwrap_or_default().to_owned(),
                a["kind"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn owned(expected: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    expected
        .iter()
        .map(|(d, f, k)| ((*d).to_owned(), (*f).to_owned(), (*k).to_owned()))
        .collect()
}

fn ids(alerts: &[Value]) -> Vec<i64> {
    alerts.iter().map(|a| a["id"].as_i64().expect("id")).collect()
}

/// Fence `a` (a square) and `b` (a circle) on the parallel 10°N, and a drive along it that
/// enters and leaves each once: fixes 20 s apart, the last one now.
async fn two_fences_and_a_drive(app: &TestApp) -> Vec<(DateTime<Utc>, f64)> {
    create_fence(app, &square("a", 10.0025, 10.0, 0.0025)).await;
    create_fence(app, &circle("b", 10.02, 10.0, 200.0)).await;
    let stops = [9.995, 10.0025, 10.004, 10.008, 10.02, 10.03];
    // Whole seconds: alert times have millisecond precision.
    let now = Utc::now().timestamp();
    let start = DateTime::from_timestamp(now - 20 * stops.len() as i64, 0).expect("time");
    stops
        .iter()
        .enumerate()
        .map(|(i, lon)| (start + chrono::Duration::seconds(20 * i as i64), *lon))
        .collect()
}

const DRIVE_ALERTS: [(&str, &str, &str); 4] = [
    ("car", "a", "enter"),
    ("car", "a", "exit"),
    ("car", "b", "enter"),
    ("car", "b", "exit"),
];

#[tokio::test]
async fn a_drive_through_two_fences_gives_exactly_enter_and_exit_of_each_on_the_socket_and_the_api() {
    let app = spawn_app().await;
    let drive = two_fences_and_a_drive(&app).await;
    let mut socket = WsClient::connect(&app, "/ws/alerts").await;
    assert!(socket.until_live().await.is_empty());
    for (ts, lon) in &drive {
        post_fix(&app, "car", *ts, *lon, 10.0).await;
    }
    let live = socket.alerts(4).await;
    assert_eq!(summary(&live), owned(&DRIVE_ALERTS));
    let ids = ids(&live);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids grow: {ids:?}");
    assert_eq!(
        live[0]["ts"].as_str(),
        Some(drive[1].0.to_rfc3339().replace("+00:00", "Z").as_str())
    );
    assert_eq!(live[0]["position"], json!([10.0025, 10.0]));
    assert!(live[0]["received_at"].is_string(), "{}", live[0]);

    let page = json_with_status(app.get("/api/v1/alerts").await, 200).await;
    let listed = page["alerts"].as_array().expect("alerts");
    assert_eq!(summary(listed), owned(&DRIVE_ALERTS));
    assert_eq!(page["cursor"], json!(ids[3]));
    assert_eq!(page["more"], false);
    let rest = json_with_status(
        app.get(&format!("/api/v1/alerts?since={}&limit=1", ids[1])).await,
        200,
    )
    .await;
    assert_eq!(rest["alerts"][0]["id"], json!(ids[2]));
    assert_eq!(rest["more"], true);
    socket.close().await;
    app.stop().await;
}

#[tokio::test]
async fn filters_select_fences_devices_and_kinds_on_both_routes() {
    let app = spawn_app().await;
    let drive = two_fences_and_a_drive(&app).await;
    let mut only_b_enters = WsClient::connect(&app, "/ws/alerts?fences=b&kinds=enter").await;
    only_b_enters.until_live().await;
    let mut other_device = WsClient::connect(&app, "/ws/alerts?devices=bus").await;
    other_device.until_live().await;
    for (ts, lon) in &drive {
        post_fix(&app, "car", *ts, *lon, 10.0).await;
    }
    post_fix(&app, "bus", Utc::now(), 10.0025, 10.0).await;
    assert_eq!(
        summary(&only_b_enters.alerts(1).await),
        owned(&[("car", "b", "enter")])
    );
    assert_eq!(
        summary(&other_device.alerts(1).await),
        owned(&[("bus", "a", "enter")])
    );

    let exits = json_with_status(app.get("/api/v1/alerts?kind=exit&device=car").await, 200).await;
    assert_eq!(
        summary(exits["alerts"].as_array().expect("alerts")),
        owned(&[("car", "a", "exit"), ("car", "b", "exit")])
    );
    let bad = json_with_status(app.get("/api/v1/alerts?kind=teleport").await, 400).await;
    assert_eq!(bad["error"]["code"], "invalid_kind");
    assert!(
        WsClient::try_connect(&app, "/ws/alerts?kinds=teleport")
            .await
            .is_err(),
        "a bad filter is refused before the upgrade"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_subscriber_that_resumes_with_its_cursor_misses_nothing_and_sees_nothing_twice() {
    let app = spawn_app().await;
    let drive = two_fences_and_a_drive(&app).await;
    let mut first = WsClient::connect(&app, "/ws/alerts?since=0").await;
    first.until_live().await;
    for (ts, lon) in &drive[..3] {
        post_fix(&app, "car", *ts, *lon, 10.0).await;
    }
    let seen = first.alerts(1).await;
    first.close().await;
    // Alerts happen while the subscriber is away.
    for (ts, lon) in &drive[3..] {
        post_fix(&app, "car", *ts, *lon, 10.0).await;
    }
    wait_for_alerts(&app, 4).await;
    let cursor = seen[0]["id"].as_i64().expect("id");
    let mut again = WsClient::connect(&app, &format!("/ws/alerts?since={cursor}")).await;
    let replayed = again.until_live().await;
    let mut all = seen.clone();
    all.extend(replayed);
    assert_eq!(summary(&all), owned(&DRIVE_ALERTS));
    let ids = ids(&all);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    app.stop().await;
}

#[tokio::test]
async fn a_lagging_subscriber_is_told_where_to_resume_and_then_gets_the_rest_exactly_once() {
    let app = spawn_with(|c| c.alerts.hub_capacity = 4).await;
    create_fence(&app, &square("a", 10.0025, 10.0, 0.0025)).await;
    let mut slow = WsClient::connect(&app, "/ws/alerts").await;
    slow.until_live().await;
    // 300 fixes in one request, alternately inside and outside: 300 alerts in one commit,
    // published at once, far more than the hub keeps for a subscriber.
    let n: usize = 300;
    let start = Utc::now() - chrono::Duration::seconds(n as i64);
    let fixes: Vec<Value> = (0..n)
        .map(|i| {
            let (lon, lat) = in_and_out(i);
            fix_at("blinker", start + chrono::Duration::seconds(i as i64), lon, lat)
        })
        .collect();
    json_with_status(app.post_json(&Value::Array(fixes)).await, 202).await;
    wait_for_alerts(&app, n).await;

    let mut received = Vec::new();
    let resume_from = loop {
        match slow.next().await {
            Next::Json(m) if m["type"] == "alert" => received.push(m),
            Next::Json(m) if m["type"] == "lagged" => break m["resume_from"].as_i64().expect("cursor"),
            other => panic!("expected alerts then lagged, got {other:?}"),
        }
    };
    assert!(received.len() < n, "it lagged");
    assert!(
        matches!(slow.next().await, Next::Closed(_)),
        "then the server closes"
    );
    let metrics = app.get("/metrics").await.text().await.expect("metrics");
    assert!(metrics.contains("geotrack_ws_lagged_total 1"), "{metrics}");
    let last_seen = received.last().map_or(0, |a| a["id"].as_i64().expect("id"));
    assert!(resume_from >= last_seen);

    let mut again = WsClient::connect(&app, &format!("/ws/alerts?since={resume_from}")).await;
    received.extend(again.until_live().await);
    let ids = ids(&received);
    let stored: Vec<i64> = sqlx::query_scalar("SELECT id FROM alerts ORDER BY id")
        .fetch_all(&app.db)
        .await
        .expect("ids");
    assert_eq!(ids, stored, "every alert exactly once, in order");
    app.stop().await;
}

#[tokio::test]
async fn a_restart_mid_drive_neither_refires_nor_misses_an_alert() {
    let app = spawn_app().await;
    let drive = two_fences_and_a_drive(&app).await;
    for (ts, lon) in &drive[..3] {
        post_fix(&app, "car", *ts, *lon, 10.0).await;
    }
    wait_for_alerts(&app, 1).await;
    let app = app.restart(|_| {}).await;
    for (ts, lon) in &drive[3..] {
        post_fix(&app, "car", *ts, *lon, 10.0).await;
    }
    let stored = wait_for_alerts(&app, 4).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stored_after = wait_for_alerts(&app, 4).await;
    assert_eq!(stored, stored_after, "nothing more fires");
    let kinds: Vec<(String, String)> = stored
        .into_iter()
        .map(|(_, f, k)| (f.unwrap_or_default(), k))
        .collect();
    assert_eq!(
        kinds,
        [("a", "enter"), ("a", "exit"), ("b", "enter"), ("b", "exit")]
            .map(|(f, k)| (f.to_owned(), k.to_owned()))
    );
    app.stop().await;
}

#[tokio::test]
async fn fixes_stored_but_not_evaluated_before_a_crash_are_evaluated_at_the_next_start() {
    let app = spawn_app().await;
    create_fence(&app, &square("a", 10.0025, 10.0, 0.0025)).await;
    post_fix(
        &app,
        "car",
        Utc::now() - chrono::Duration::seconds(60),
        9.99,
        10.0,
    )
    .await;
    let inside_at = DateTime::from_timestamp(Utc::now().timestamp() - 30, 0).expect("time");
    post_fix(&app, "car", inside_at, 10.0025, 10.0).await;
    wait_for_alerts(&app, 1).await;
    let mut app = app;
    app.shutdown().await;
    // As if the process had died after the commit of the second fix and before its
    // evaluation: its alert and state are gone and the watermark is put back before it.
    sqlx::query("DELETE FROM alerts")
        .execute(&app.db)
        .await
        .expect("reset");
    sqlx::query("DELETE FROM fence_states")
        .execute(&app.db)
        .await
        .expect("reset");
    sqlx::query(
        "UPDATE eval_watermarks w SET seq = (SELECT min(seq) FROM positions p WHERE p.shard = w.shard) \
         WHERE EXISTS (SELECT 1 FROM positions p WHERE p.shard = w.shard)",
    )
    .execute(&app.db)
    .await
    .expect("rewind");
    let app = spawn_on(app.db_name.clone(), |_| {}).await;
    let stored = wait_for_alerts(&app, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(stored, wait_for_alerts(&app, 1).await);
    assert_eq!(
        stored,
        [("car".to_owned(), Some("a".to_owned()), "enter".to_owned())]
    );
    // Caused by the fix itself (its time, its arrival), not by the start-up re-check of
    // where devices are, which would also say "enter" but at the time of the start.
    let (ts, received): (DateTime<Utc>, Option<DateTime<Utc>>) =
        sqlx::query_as("SELECT ts, received_at FROM alerts")
            .fetch_one(&app.db)
            .await
            .expect("alert");
    assert_eq!(ts, inside_at);
    assert!(received.is_some());
    app.stop().await;
}

#[tokio::test]
async fn alerts_keep_id_order_under_four_shards_with_slow_commits() {
    let app = spawn_with(|c| c.ingest.shards = 4).await;
    create_fence(&app, &square("a", 10.0025, 10.0, 0.0025)).await;
    // Every alert insert sleeps a random while: concurrent writers would now commit out of order.
    sqlx::raw_sql(
        "CREATE FUNCTION slow_down() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN PERFORM pg_sleep(random() * 0.02); RETURN NULL; END $$;
         CREATE TRIGGER slow_alerts AFTER INSERT ON alerts FOR EACH STATEMENT EXECUTE FUNCTION slow_down();",
    )
    .execute(&app.db)
    .await
    .expect("trigger");
    let mut socket = WsClient::connect(&app, "/ws/alerts").await;
    socket.until_live().await;
    let (devices, fixes) = (16_usize, 10_usize);
    let start = Utc::now() - chrono::Duration::seconds(fixes as i64);
    let posts = (0..devices).map(|d| {
        let app = &app;
        async move {
            for i in 0..fixes {
                let (lon, lat) = in_and_out(i);
                post_fix(
                    app,
                    &format!("dev-{d}"),
                    start + chrono::Duration::seconds(i as i64),
                    lon,
                    lat,
                )
                .await;
            }
        }
    });
    futures_util::future::join_all(posts).await;
    let live = socket.alerts(devices * fixes).await;
    let ids = ids(&live);
    let stored: Vec<i64> = sqlx::query_scalar("SELECT id FROM alerts ORDER BY id")
        .fetch_all(&app.db)
        .await
        .expect("ids");
    assert_eq!(ids, stored, "the socket saw every alert once, in id order");
    let shards: i64 = sqlx::query_scalar("SELECT count(DISTINCT shard) FROM positions")
        .fetch_one(&app.db)
        .await
        .expect("shards");
    assert_eq!(shards, 4, "the devices spread over every shard");
    app.stop().await;
}

#[tokio::test]
async fn sockets_need_a_read_token_in_the_header_or_the_query() {
    let app = spawn_with(|c| {
        c.tokens = TokensSetting::Compact("reader-token-000001=read;writer-token-000001=ingest".into());
    })
    .await;
    for path in [
        "/ws/alerts",
        "/ws/positions",
        "/ws/alerts?token=wrong-token-000001",
    ] {
        let refused = WsClient::try_connect(&app, path).await.err().expect("refused");
        assert!(refused.to_string().contains("401"), "{path}: {refused}");
    }
    let forbidden = WsClient::try_connect(&app, "/ws/alerts?token=writer-token-000001")
        .await
        .err()
        .expect("refused");
    assert!(forbidden.to_string().contains("403"), "{forbidden}");
    let mut socket = WsClient::connect(&app, "/ws/alerts?token=reader-token-000001&since=0").await;
    assert!(socket.until_live().await.is_empty());
    let unauthorised = app.get("/api/v1/alerts").await;
    assert_eq!(unauthorised.status(), 401);
    app.stop().await;
}

#[tokio::test]
async fn dwell_and_offline_fire_by_the_clock_for_a_silent_device() {
    let app = spawn_with(|c| {
        c.alerts.tick_ms = 50;
        c.alerts.offline_after_s = 1;
    })
    .await;
    let mut fence = square("a", 10.0025, 10.0, 0.0025);
    fence["properties"]["dwell_s"] = json!(1);
    create_fence(&app, &fence).await;
    let mut socket = WsClient::connect(&app, "/ws/alerts").await;
    socket.until_live().await;
    post_fix(&app, "parked", Utc::now(), 10.0025, 10.0).await;
    let alerts = socket.alerts(3).await;
    assert_eq!(
        summary(&alerts),
        owned(&[
            ("parked", "a", "enter"),
            ("parked", "a", "dwell"),
            ("parked", "", "offline")
        ])
    );
    assert!(alerts[2]["fence"].is_null());
    // Offline fires once until the device reports again.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let offline: i64 = sqlx::query_scalar("SELECT count(*) FROM alerts WHERE kind = 'offline'")
        .fetch_one(&app.db)
        .await
        .expect("count");
    assert_eq!(offline, 1);
    post_fix(&app, "parked", Utc::now(), 10.0025, 10.0).await;
    let back = socket.alerts(1).await;
    assert_eq!(
        summary(&back),
        owned(&[("parked", "", "offline")]),
        "silent again afterwards"
    );
    app.stop().await;
}

#[tokio::test]
async fn editing_and_deleting_fences_re_evaluates_the_devices_in_them() {
    let app = spawn_app().await;
    post_fix(&app, "parked", Utc::now(), 10.0025, 10.0).await;
    let mut socket = WsClient::connect(&app, "/ws/alerts").await;
    socket.until_live().await;
    // Drawn around a parked device: it is inside now.
    create_fence(&app, &square("a", 10.0025, 10.0, 0.0025)).await;
    assert_eq!(
        summary(&socket.alerts(1).await),
        owned(&[("parked", "a", "enter")])
    );
    // Moved away from it: it is outside now.
    replace_fence(&app, &square("a", 11.0, 10.0, 0.0025)).await;
    assert_eq!(
        summary(&socket.alerts(1).await),
        owned(&[("parked", "a", "exit")])
    );
    create_fence(&app, &circle("b", 10.0025, 10.0, 100.0)).await;
    assert_eq!(
        summary(&socket.alerts(1).await),
        owned(&[("parked", "b", "enter")])
    );
    let deleted = app.delete("/api/v1/fences/b").await;
    json_with_status(deleted, 200).await;
    assert_eq!(
        summary(&socket.alerts(1).await),
        owned(&[("parked", "b", "exit")])
    );
    app.stop().await;
}

#[tokio::test]
async fn a_fast_pass_through_a_thin_corridor_and_speeding_inside_a_fence_are_reported() {
    let app = spawn_app().await;
    create_fence(&app, &corridor("road", &[[10.0, 9.99], [10.0, 10.01]], 10.0)).await;
    let mut zone = circle("school", 10.1, 10.0, 300.0);
    zone["properties"]["speed_limit_mps"] = json!(8.0);
    create_fence(&app, &zone).await;
    let t0 = Utc::now() - chrono::Duration::seconds(100);
    // 200 m west of the road, then 200 m east 20 s later: neither fix is in the corridor.
    post_fix(&app, "fast", t0, 9.998_2, 10.0).await;
    post_fix(&app, "fast", t0 + chrono::Duration::seconds(20), 10.001_8, 10.0).await;
    let body = json!({"device": "fast", "ts": (t0 + chrono::Duration::seconds(60)).to_rfc3339(),
                      "lon": 10.1, "lat": 10.0, "speed_mps": 15.0});
    json_with_status(app.post_json(&body).await, 202).await;
    let stored = wait_for_alerts(&app, 4).await;
    let kinds: Vec<(Option<String>, String)> = stored.into_iter().map(|(_, f, k)| (f, k)).collect();
    let expected = [
        ("road", "enter"),
        ("road", "exit"),
        ("school", "enter"),
        ("school", "overspeed"),
    ];
    assert_eq!(kinds, expected.map(|(f, k)| (Some(f.to_owned()), k.to_owned())));
    let interpolated: Vec<bool> = sqlx::query_scalar("SELECT interpolated FROM alerts ORDER BY id")
        .fetch_all(&app.db)
        .await
        .expect("flags");
    assert_eq!(interpolated, [true, true, false, false]);
    app.stop().await;
}

#[tokio::test]
async fn erasing_a_device_erases_its_alerts_and_fence_states() {
    let app = spawn_app().await;
    create_fence(&app, &square("a", 10.0025, 10.0, 0.0025)).await;
    post_fix(&app, "gone", Utc::now(), 10.0025, 10.0).await;
    wait_for_alerts(&app, 1).await;
    let erased = app.delete("/api/v1/devices/gone").await;
    json_with_status(erased, 200).await;
    for table in ["alerts", "fence_states"] {
        let left: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&app.db)
            .await
            .expect("count");
        assert_eq!(left, 0, "{table}");
    }
    app.stop().await;
}

#[tokio::test]
async fn live_positions_come_as_a_snapshot_then_moves_inside_the_view() {
    let app = spawn_with(|c| c.ws.positions_interval_ms = 50).await;
    post_fix(
        &app,
        "here",
        Utc::now() - chrono::Duration::seconds(10),
        10.0,
        10.0,
    )
    .await;
    post_fix(
        &app,
        "far",
        Utc::now() - chrono::Duration::seconds(10),
        50.0,
        10.0,
    )
    .await;
    let mut socket = WsClient::connect(&app, "/ws/positions?bbox=9,9,11,11").await;
    let snapshot = socket.json().await;
    assert_eq!(snapshot["type"], "snapshot");
    let devices: Vec<&str> = snapshot["positions"]
        .as_array()
        .expect("positions")
        .iter()
        .filter_map(|p| p["device"].as_str())
        .collect();
    assert_eq!(devices, ["here"]);
    post_fix(&app, "far", Utc::now(), 50.1, 10.0).await;
    post_fix(&app, "here", Utc::now(), 10.5, 10.5).await;
    // The live feed may still publish the first fix of `here` (its batch can follow the
    // snapshot) before the move: read on until the move, checking that `far` never comes.
    loop {
        let moved = socket.json().await;
        assert_eq!(moved["type"], "positions", "{moved}");
        let positions = moved["positions"].as_array().expect("positions");
        assert!(
            positions.iter().all(|p| p["device"] == "here"),
            "only devices in the view: {moved}"
        );
        if positions.iter().any(|p| p["position"] == json!([10.5, 10.5])) {
            break;
        }
    }
    // A new view brings a snapshot of it.
    socket.send_text(r#"{"bbox":[49,9,51,11]}"#).await;
    let view = socket.json().await;
    assert_eq!(view["type"], "snapshot");
    assert_eq!(view["positions"][0]["device"], "far");
    socket.send_text("nonsense").await;
    assert_eq!(socket.json().await["type"], "error");
    app.stop().await;
}

#[tokio::test]
async fn shutdown_closes_sockets_with_a_going_away_frame() {
    let mut app = spawn_app().await;
    let mut socket = WsClient::connect(&app, "/ws/alerts").await;
    socket.until_live().await;
    let stopping = tokio::spawn(async move {
        app.shutdown().await;
        app
    });
    match socket.next().await {
        Next::Closed(Some(frame)) => assert_eq!(u16::from(frame.code), 1001),
        other => panic!("expected a close frame, got {other:?}"),
    }
    stopping.await.expect("shutdown").stop().await;
}

#[tokio::test]
async fn a_peer_that_stops_answering_pings_is_closed() {
    let app = spawn_with(|c| c.ws.ping_s = 1).await;
    let mut socket = WsClient::connect(&app, "/ws/alerts").await;
    socket.until_live().await;
    // Not reading means not answering pings (the client library answers them as it reads).
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    match socket.next().await {
        Next::Closed(Some(frame)) => assert_eq!(u16::from(frame.code), 1008, "closed as unresponsive"),
        other => panic!("expected a close frame, got {other:?}"),
    }
    let metrics = app.get("/metrics").await.text().await.expect("metrics");
    assert!(metrics.contains("geotrack_ws_dropped_total 1"), "{metrics}");
    // A peer that reads (and so answers pings) stays connected.
    let mut reader = WsClient::connect(&app, "/ws/alerts").await;
    reader.until_live().await;
    let quiet = tokio::time::timeout(Duration::from_millis(3_500), reader.next()).await;
    assert!(
        quiet.is_err(),
        "still open and silent after three ping intervals: {quiet:?}"
    );
    app.stop().await;
}
