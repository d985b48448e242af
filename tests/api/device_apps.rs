//! Device-app endpoints, fed with the requests the apps send (fixtures under `tests/data/protocols`,
//! sources in its README): the replies each app needs, units normalised to m/s, ignored and
//! unusable messages answered with success, auth failures and "not durable" as the only errors.

use geotrack::auth::TokensSetting;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, admin_exec, spawn_with};

fn fixture(path: &str) -> String {
    let full = format!("{}/tests/data/protocols/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full)
        .unwrap_or_else(|e| panic!("{full}: {e}"))
        .trim_end()
        .to_owned()
}

/// The recorded requests carry fix times up to years old: accept them as history.
async fn app() -> TestApp {
    spawn_with(|c| c.ingest.max_age_days = 36_500).await
}

#[derive(Debug, PartialEq, sqlx::FromRow)]
struct Stored {
    device: String,
    lon: f64,
    lat: f64,
    speed_mps: Option<f64>,
    accuracy_m: Option<f64>,
    battery: Option<f64>,
}

async fn stored(app: &TestApp) -> Vec<Stored> {
    sqlx::query_as(
        "SELECT device, ST_X(geom) AS lon, ST_Y(geom) AS lat, speed_mps, accuracy_m, battery
         FROM positions ORDER BY device, ts",
    )
    .fetch_all(&app.db)
    .await
    .expect("rows")
}

async fn metrics(app: &TestApp) -> String {
    app.get("/metrics").await.text().await.expect("metrics")
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-3)
}

#[tokio::test]
async fn traccar_client_8x_posts_the_query_with_an_empty_body_and_speed_in_knots() {
    let app = app().await;
    let query = fixture("osmand/traccar-client-android-8x-query.txt");
    let reply = app.request(Method::POST, &format!("/?{query}")).send().await;
    assert_eq!(reply.status(), 200);
    assert_eq!(
        reply.text().await.expect("body"),
        "",
        "OsmAnd-protocol replies are empty"
    );
    let rows = stored(&app).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].device, "123456");
    assert!(
        close(rows[0].speed_mps, 12.5 * 1852.0 / 3600.0),
        "knots -> m/s: {:?}",
        rows[0].speed_mps
    );
    assert_eq!(rows[0].accuracy_m, None, "accuracy 0.0 means not reported");
    assert_eq!(rows[0].battery, Some(76.0));

    // The same request again (the app retries until it sees a 2xx): acknowledged, stored once.
    let again = app
        .request(Method::POST, &format!("/osmand?{query}"))
        .send()
        .await;
    assert_eq!(again.status(), 200);
    assert_eq!(stored(&app).await.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn the_osmand_app_sends_metres_per_second_selected_by_speed_unit() {
    let app = app().await;
    let query = fixture("osmand/osmand-app-with-id.txt");
    let reply = app.get(&format!("/osmand?{query}&speed_unit=mps")).await;
    assert_eq!(reply.status(), 200);
    let rows = stored(&app).await;
    assert_eq!(rows[0].device, "osmand-phone");
    assert!(close(rows[0].speed_mps, 1.39));
    let page = app.get("/").await;
    assert_eq!(page.status(), 200, "a plain GET / is a browser: it gets the map");
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .starts_with("text/html")
    );
    let head = app.request(Method::HEAD, "/").send().await;
    assert_eq!(head.status(), 200, "HEAD / answers as GET / does");
    app.stop().await;
}

#[tokio::test]
async fn traccar_client_10x_form_posts_and_heartbeats() {
    let app = app().await;
    let post_form = |body: String| {
        app.request(Method::POST, "/")
            .header("content-type", "application/x-www-form-urlencoded; charset=UTF-8")
            .body(body)
            .send()
    };
    assert_eq!(
        post_form(fixture("osmand/traccar-client-10x-form.txt"))
            .await
            .status(),
        200
    );
    assert_eq!(
        post_form(fixture("osmand/traccar-client-10x-heartbeat-form.txt"))
            .await
            .status(),
        200
    );
    let rows = stored(&app).await;
    assert_eq!(rows.len(), 1, "the heartbeat has no position to store");
    assert!(close(rows[0].speed_mps, 2.43 * 1852.0 / 3600.0));
    let text = metrics(&app).await;
    assert!(
        text.contains("geotrack_ingest_messages_ignored_total{protocol=\"osmand\",reason=\"heartbeat\"} 1"),
        "{text}"
    );
    app.stop().await;
}

#[tokio::test]
async fn traccar_client_9x_json_is_stored_with_metres_per_second() {
    let app = app().await;
    let reply = app
        .request(Method::POST, "/")
        .header("content-type", "application/json")
        .body(fixture("traccar-client-9x/location.json"))
        .send()
        .await;
    assert_eq!(reply.status(), 200);
    let rows = stored(&app).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].device, "12345678");
    assert!(close(rows[0].speed_mps, 1.42));
    assert!(close(rows[0].battery, 63.0), "level 0..1 -> percent");
    app.stop().await;
}

#[tokio::test]
async fn unusable_osmand_requests_are_answered_200_counted_and_not_stored() {
    let app = app().await;
    let missing_id = fixture("osmand/traccar-missing-id.txt");
    assert_eq!(app.get(&format!("/osmand?{missing_id}")).await.status(), 200);
    let bad_unit = fixture("osmand/osmand-app-with-id.txt");
    assert_eq!(
        app.get(&format!("/osmand?{bad_unit}&speed_unit=furlongs"))
            .await
            .status(),
        200
    );
    let garbage = app
        .request(Method::POST, "/osmand")
        .header("content-type", "application/json")
        .body("{oops");
    assert_eq!(garbage.send().await.status(), 200);
    assert!(stored(&app).await.is_empty());
    let text = metrics(&app).await;
    for reason in ["missing_device", "invalid_speed_unit", "malformed_body"] {
        let line =
            format!("geotrack_ingest_fixes_rejected_total{{protocol=\"osmand\",reason=\"{reason}\"}} 1");
        assert!(text.contains(&line), "missing {line}");
    }
    app.stop().await;
}

#[tokio::test]
async fn owntracks_locations_are_stored_and_every_message_is_answered_with_an_empty_array() {
    let app = app().await;
    let post = |body: String| {
        app.request(Method::POST, "/owntracks")
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    for body in [
        fixture("owntracks/android-location.json"),
        fixture("owntracks/card.json"),
        String::new(),
    ] {
        let reply = post(body).await;
        assert_eq!(reply.status(), 200);
        assert!(
            reply.headers()["content-type"]
                .to_str()
                .expect("ascii")
                .starts_with("application/json")
        );
        assert_eq!(reply.json::<Value>().await.expect("json"), json!([]));
    }
    let rows = stored(&app).await;
    assert_eq!(rows.len(), 1, "only the location is stored");
    assert_eq!(
        rows[0].device, "jane/pixel",
        "from the topic owntracks/jane/pixel"
    );
    assert_eq!(rows[0].speed_mps, Some(0.0));

    // Headers name the device; km/h become m/s.
    let body = json!({"_type": "location", "lat": 1.5, "lon": 2.5, "tst": chrono::Utc::now().timestamp(),
                      "vel": 36, "tid": "jp"});
    let reply = app
        .request(Method::POST, "/owntracks")
        .header("x-limit-u", "Jane")
        .header("x-limit-d", "iPhone 12")
        .json(&body)
        .send()
        .await;
    assert_eq!(reply.status(), 200);
    let rows = stored(&app).await;
    let phone = rows
        .iter()
        .find(|r| r.device == "Jane/iPhone 12")
        .expect("case and spaces kept");
    assert!(close(phone.speed_mps, 10.0));
    app.stop().await;
}

#[tokio::test]
async fn overland_batches_reply_result_ok_and_skip_non_fixes() {
    let app = app().await;
    let post = |path: &str, body: String| {
        app.request(Method::POST, path)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let reply = post("/overland", fixture("overland/ios-batch.json")).await;
    assert_eq!(reply.status(), 200);
    assert!(
        reply.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("application/json")
    );
    assert_eq!(
        reply.json::<Value>().await.expect("json"),
        json!({"result": "ok"})
    );
    let ios = stored(&app)
        .await
        .into_iter()
        .filter(|r| r.device == "jane-iphone")
        .count();
    assert!(ios > 0, "the batch's fixes are stored");

    // The README sample has an empty device_id: without ?device= the app must be told why.
    let reply = post("/overland", fixture("overland/readme-sample.json")).await;
    let body = reply.json::<Value>().await.expect("json");
    assert!(
        body["error"].as_str().expect("error").contains("?device="),
        "{body}"
    );
    let reply = post("/overland?device=sample", fixture("overland/readme-sample.json")).await;
    assert_eq!(
        reply.json::<Value>().await.expect("json"),
        json!({"result": "ok"})
    );
    let sample: Vec<Stored> = stored(&app)
        .await
        .into_iter()
        .filter(|r| r.device == "sample")
        .collect();
    assert_eq!(sample.len(), 2);
    assert!(close(Some(sample[0].lon), -122.621) && close(sample[0].speed_mps, 4.0));

    let reply = post("/overland", fixture("overland/not-an-envelope.json")).await;
    assert!(reply.json::<Value>().await.expect("json")["error"].is_string());
    app.stop().await;
}

#[tokio::test]
async fn device_endpoints_take_the_token_in_the_url_or_basic_auth() {
    let app = spawn_with(|c| {
        c.ingest.max_age_days = 36_500;
        c.tokens = TokensSetting::Compact("phone-token-000001=ingest@123456|jane/*".into());
    })
    .await;
    let query = fixture("osmand/traccar-client-android-8x-query.txt");
    let denied = app.request(Method::POST, &format!("/?{query}")).send().await;
    assert_eq!(denied.status(), 401);
    let allowed = app
        .request(Method::POST, &format!("/?{query}"))
        .query_token("phone-token-000001")
        .send()
        .await;
    assert_eq!(allowed.status(), 200);

    let owntracks = |user: &str| {
        app.request(Method::POST, "/owntracks")
            .basic_token(user, "phone-token-000001")
            .header("content-type", "application/json")
            .body(fixture("owntracks/android-location.json"))
            .send()
    };
    assert_eq!(owntracks("jane").await.status(), 200);
    let wrong = app
        .request(Method::POST, "/owntracks")
        .basic_token("jane", "wrong-token")
        .body(fixture("owntracks/android-location.json"))
        .send()
        .await;
    assert_eq!(wrong.status(), 401);
    let devices: Vec<String> = stored(&app).await.into_iter().map(|r| r.device).collect();
    assert_eq!(devices, ["123456", "jane/pixel"]);
    app.stop().await;
}

#[tokio::test]
async fn a_fix_that_cannot_be_made_durable_is_a_503_so_the_app_retries() {
    let app = app().await;
    admin_exec(&format!("DROP DATABASE \"{}\" WITH (FORCE)", app.db_name)).await;
    let query = fixture("osmand/traccar-client-android-8x-query.txt");
    let reply = app
        .request(Method::POST, &format!("/osmand?{query}"))
        .send()
        .await;
    assert_eq!(reply.status(), 503);
    assert!(reply.headers().contains_key("retry-after"));
    app.stop().await;
}
