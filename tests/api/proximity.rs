//! Proximity rules over a real server: written and read through the API, evaluated on the live
//! index as devices move, with `near` and `apart` alerts on the alert socket and in the history,
//! pair states that survive a restart, and a token's device limit applied to both devices.

use chrono::{DateTime, Duration, SubsecRound, Utc};
use geotrack::auth::TokensSetting;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, WsClient, fix_at, json_with_status, spawn_with, wait_for_alerts, wait_until};

/// The depot every van is measured from.
const DEPOT: (f64, f64) = (2.35, 48.85);

/// The longitude `east_m` metres east of the depot.
fn east_of_depot(east_m: f64) -> f64 {
    DEPOT.0 + east_m / (111_195.0 * DEPOT.1.to_radians().cos())
}

/// Positions `device` `east_m` metres east of the depot at `ts`, and waits until the live index
/// has it there (the roam evaluator reads the index's changes in order).
async fn move_to(app: &TestApp, device: &str, east_m: f64, ts: DateTime<Utc>) {
    let fixes = json!([fix_at(device, ts, east_of_depot(east_m), DEPOT.1)]);
    json_with_status(app.post_json(&fixes).await, 202).await;
    let path = format!(
        "/api/v1/devices/nearby?lon={}&lat={}&prefix={device}&limit=1",
        DEPOT.0, DEPOT.1
    );
    wait_until(
        &format!("the live index has {device} at {east_m} m"),
        async || {
            let reply = app.get(&path).await;
            if reply.status() != 200 {
                return false;
            }
            let found = json_with_status(reply, 200).await;
            found["features"][0]["properties"]["distance_m"]
                .as_f64()
                .is_some_and(|d| (d - east_m).abs() < 1.0)
        },
    )
    .await;
}

async fn put_rule(app: &TestApp, id: &str, body: &Value) -> Value {
    let path = format!("/api/v1/proximity-rules/{id}");
    let reply = app.send_json(Method::PUT, &path, body).await;
    let status = reply.status().as_u16();
    assert!(status == 200 || status == 201, "PUT {path}: {status}");
    reply.json().await.expect("JSON")
}

/// Vans watched against the depot: near within 200 m, apart beyond 250 m.
fn vans_at_the_depot() -> Value {
    json!({"name": "Vans at the depot", "devices": ["van-*"], "near": ["depot"], "radius_m": 200, "hysteresis_m": 50})
}

#[tokio::test]
async fn rules_are_written_read_replaced_and_deleted() {
    let app = spawn_with(|_| {}).await;
    let put = async |body: Value| {
        app.send_json(Method::PUT, "/api/v1/proximity-rules/depot", &body)
            .await
    };
    let created = json_with_status(put(vans_at_the_depot()).await, 201).await;
    assert_eq!(
        created,
        json!({"id": "depot", "name": "Vans at the depot", "devices": ["van-*"], "near": ["depot"],
               "radius_m": 200.0, "hysteresis_m": 50.0})
    );
    let replaced = json_with_status(
        put(json!({"devices": "all", "near": ["group:depots", "hq"], "radius_m": 300})).await,
        200,
    )
    .await;
    assert_eq!(replaced["devices"], "all");
    assert_eq!(replaced["hysteresis_m"], 30.0, "a tenth of the radius by default");
    let read = json_with_status(app.get("/api/v1/proximity-rules/depot").await, 200).await;
    assert_eq!(read["near"], json!(["hq", "group:depots"]));
    let all = json_with_status(app.get("/api/v1/proximity-rules").await, 200).await;
    assert_eq!(all["rules"].as_array().map(Vec::len), Some(1));

    for body in [
        json!({"devices": "all", "near": "all", "radius_m": 0}),
        json!({"devices": "all", "near": "all", "radius_m": 1e9}),
        json!({"devices": "all", "near": "all", "radius_m": 100, "hysteresis_m": 101}),
        json!({"devices": "everyone", "near": "all", "radius_m": 100}),
        json!({"devices": ["a\u{0000}b"], "near": "all", "radius_m": 100}),
        json!({"devices": ["group:"], "near": "all", "radius_m": 100}),
        json!({"devices": "all", "radius_m": 100}),
        json!({"devices": "all", "near": "all", "radius_m": 100, "colour": "red"}),
        json!({"id": "other", "devices": "all", "near": "all", "radius_m": 100}),
        json!([1, 2]),
    ] {
        let refused = json_with_status(put(body.clone()).await, 400).await;
        let code = refused["error"]["code"].as_str().unwrap_or_default().to_owned();
        assert!(
            code == "invalid_rule" || code == "id_mismatch",
            "{body}: {refused}"
        );
    }
    let gone = json_with_status(app.delete("/api/v1/proximity-rules/depot").await, 200).await;
    assert_eq!(gone, json!({"deleted": "depot"}));
    for path in ["/api/v1/proximity-rules/depot"] {
        let missing = json_with_status(app.get(path).await, 404).await;
        assert_eq!(missing["error"]["code"], "rule_not_found");
        json_with_status(app.delete(path).await, 404).await;
    }
}

#[tokio::test]
async fn an_approach_and_a_separation_fire_near_and_apart_on_the_socket_and_in_the_history() {
    let app = spawn_with(|c| c.ws.positions_interval_ms = 50).await;
    put_rule(&app, "depot", &vans_at_the_depot()).await;
    let mut socket = WsClient::connect(&app, "/ws/alerts?since=0").await;
    socket.until_live().await;
    let t0 = Utc::now().trunc_subsecs(0) - Duration::seconds(60);
    move_to(&app, "depot", 0.0, t0).await;
    // 1,000 m, 500 m: far; 150 m: near; 230 m: inside the margin; 300 m: apart.
    for (i, east_m) in [1_000.0, 500.0, 150.0, 230.0, 300.0].into_iter().enumerate() {
        move_to(&app, "van-1", east_m, t0 + Duration::seconds(i as i64 + 1)).await;
    }
    let alerts = socket.alerts(2).await;
    assert_eq!(alerts[0]["kind"], "near", "{alerts:?}");
    assert_eq!(alerts[0]["device"], "van-1");
    assert_eq!(alerts[0]["other"], "depot");
    assert_eq!(alerts[0]["rule"], "depot");
    assert!((alerts[0]["distance_m"].as_f64().expect("distance") - 150.0).abs() < 1.0);
    let when: DateTime<Utc> = alerts[0]["ts"].as_str().and_then(|t| t.parse().ok()).expect("ts");
    assert_eq!(when, t0 + Duration::seconds(3), "the fix that came near");
    assert_eq!(alerts[1]["kind"], "apart", "{alerts:?}");
    assert!((alerts[1]["distance_m"].as_f64().expect("distance") - 300.0).abs() < 1.0);
    assert!(alerts[0].get("fence").is_some_and(Value::is_null));
    let metrics = app.get("/metrics").await.text().await.expect("metrics");
    for expected in [
        "geotrack_alerts_committed_total{kind=\"near\"} 1",
        "geotrack_alerts_committed_total{kind=\"apart\"} 1",
        "geotrack_alerts_proximity_pairs 0",
        "geotrack_alerts_proximity_step_seconds_count ",
        "geotrack_ws_connected 1",
        "geotrack_ws_opened_total 1",
    ] {
        assert!(metrics.contains(expected), "missing {expected}");
    }

    let history = json_with_status(app.get("/api/v1/alerts?rule=depot&device=depot").await, 200).await;
    let kinds: Vec<&str> = history["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .map(|a| a["kind"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(kinds, ["near", "apart"], "`device` matches the other side too");
    let none = json_with_status(app.get("/api/v1/alerts?rule=elsewhere").await, 200).await;
    assert_eq!(none["alerts"], json!([]));
    let pairs: i64 = sqlx::query_scalar("SELECT count(*) FROM proximity_pairs")
        .fetch_one(&app.db)
        .await
        .expect("pairs");
    assert_eq!(pairs, 0, "apart pairs are not stored");
}

#[tokio::test]
async fn a_restart_neither_repeats_near_nor_misses_apart() {
    let app = spawn_with(|c| c.ws.positions_interval_ms = 50).await;
    put_rule(&app, "depot", &vans_at_the_depot()).await;
    let t0 = Utc::now() - Duration::seconds(60);
    move_to(&app, "depot", 0.0, t0).await;
    move_to(&app, "van-1", 100.0, t0 + Duration::seconds(1)).await;
    wait_for_alerts(&app, 1).await;

    let app = app.restart(|c| c.ws.positions_interval_ms = 50).await;
    // Still near after the restart: nothing new.
    move_to(&app, "van-1", 120.0, t0 + Duration::seconds(2)).await;
    move_to(&app, "van-1", 400.0, t0 + Duration::seconds(3)).await;
    let alerts = wait_for_alerts(&app, 2).await;
    let kinds: Vec<&str> = alerts.iter().map(|(_, _, kind)| kind.as_str()).collect();
    assert_eq!(kinds, ["near", "apart"]);
    app.stop().await;
}

#[tokio::test]
async fn a_limited_token_sees_a_proximity_alert_only_when_it_may_see_both_devices() {
    const ADMIN: &str = "admin-token-0123456789";
    const VANS: &str = "vans-reader-0123456789";
    let tokens = format!("{ADMIN}=admin;{VANS}=read@van-*");
    let app = spawn_with(|c| {
        c.tokens = TokensSetting::Compact(tokens);
        c.ws.positions_interval_ms = 50;
    })
    .await;
    let as_admin =
        |method: Method, path: &str, body: Value| app.request(method, path).token(ADMIN).json(&body).send();
    for (id, near) in [("depot", json!(["depot"])), ("convoy", json!(["van-*"]))] {
        let rule = json!({"devices": ["van-*"], "near": near, "radius_m": 200});
        let path = format!("/api/v1/proximity-rules/{id}");
        json_with_status(as_admin(Method::PUT, &path, rule).await, 201).await;
    }
    let t0 = Utc::now() - Duration::seconds(60);
    let fixes = json!([
        fix_at("depot", t0, DEPOT.0, DEPOT.1),
        fix_at("van-1", t0, east_of_depot(50.0), DEPOT.1),
        fix_at("van-2", t0, east_of_depot(100.0), DEPOT.1),
    ]);
    json_with_status(as_admin(Method::POST, "/api/v1/positions", fixes).await, 202).await;
    // van-1~depot, van-2~depot (rule depot) and van-1~van-2 (rule convoy).
    wait_for_alerts(&app, 3).await;

    let seen = json_with_status(
        app.request(Method::GET, "/api/v1/alerts")
            .token(VANS)
            .send()
            .await,
        200,
    )
    .await;
    let seen: Vec<(&str, &str)> = seen["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .map(|a| {
            (
                a["device"].as_str().unwrap_or_default(),
                a["other"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [("van-1", "van-2")],
        "the depot is not the vans reader's to see"
    );
    let mut socket = WsClient::connect(&app, &format!("/ws/alerts?since=0&token={VANS}")).await;
    let replayed = socket.until_live().await;
    assert_eq!(replayed.len(), 1, "{replayed:?}");
    assert_eq!(replayed[0]["rule"], "convoy");
    let rules = json_with_status(
        app.request(Method::GET, "/api/v1/proximity-rules/depot")
            .token(VANS)
            .send()
            .await,
        200,
    )
    .await;
    assert_eq!(
        rules["near"],
        json!([]),
        "ids it may not see are left out of a rule"
    );

    // Erasing the depot erases the alerts that name it on either side.
    json_with_status(
        as_admin(Method::DELETE, "/api/v1/devices/depot", json!(null)).await,
        200,
    )
    .await;
    let left: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT device, other_device FROM alerts ORDER BY id")
            .fetch_all(&app.db)
            .await
            .expect("alerts");
    assert_eq!(left, [("van-1".to_owned(), Some("van-2".to_owned()))]);
    let pairs: Vec<(String, String)> = sqlx::query_as("SELECT device, other FROM proximity_pairs")
        .fetch_all(&app.db)
        .await
        .expect("pairs");
    assert_eq!(pairs, [("van-1".to_owned(), "van-2".to_owned())]);
}
