//! What a hostile or careless client must not get: another device's data through a limited
//! token, webhooks aimed inside the network, ids the database cannot store, and work
//! multiplied by repetition. Each test pins one hole found by probing the release server.

use chrono::Utc;
use geotrack::auth::TokensSetting;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{WsClient, circle, fix, json_with_status, names_at, spawn_with, square, tile, tile_of};

const ADMIN: &str = "admin-token-0123456789";
const FLEET_READER: &str = "fleet-reader-0123456789";
const FLEET_ADMIN: &str = "fleet-admin-0123456789";

fn tokens() -> TokensSetting {
    TokensSetting::Compact(format!(
        "{ADMIN}=admin;{FLEET_READER}=read@fleet-*;{FLEET_ADMIN}=admin@fleet-*"
    ))
}

/// A token limited to `fleet-*` sees `fleet-1` and nothing of `other-1`, on every read path.
#[tokio::test]
async fn a_device_limited_token_sees_only_its_devices_on_every_read_path() {
    let app = spawn_with(|c| c.tokens = tokens()).await;
    let fence = circle("depot", 10.0, 10.0, 500.0);
    let reply = app
        .request(Method::POST, "/api/v1/fences")
        .token(ADMIN)
        .json(&fence)
        .send()
        .await;
    json_with_status(reply, 201).await;
    let since = Utc::now() - chrono::Duration::minutes(5);
    for device in ["fleet-1", "other-1"] {
        let body = json!([fix(device, 120, 10.1, 10.1), fix(device, 60, 10.0, 10.0)]);
        let reply = app
            .request(Method::POST, "/api/v1/positions")
            .token(ADMIN)
            .json(&body)
            .send()
            .await;
        assert_eq!(json_with_status(reply, 202).await["accepted"], 2);
    }
    let read = |path: &str| app.request(Method::GET, path).token(FLEET_READER).send();

    let devices = json_with_status(read("/api/v1/devices").await, 200).await;
    assert_eq!(ids(&devices["features"], "id"), ["fleet-1"]);
    assert_eq!(read("/api/v1/devices/other-1").await.status(), 403);
    assert_eq!(read("/api/v1/devices/other-1/track").await.status(), 403);
    let inside = json_with_status(read("/api/v1/fences/depot/devices").await, 200).await;
    assert_eq!(ids(&inside["features"], "id"), ["fleet-1"]);
    crate::helpers::wait_until("both devices entered the depot", async || {
        let all = app
            .request(Method::GET, "/api/v1/alerts?kind=enter")
            .token(ADMIN)
            .send()
            .await;
        json_with_status(all, 200).await["alerts"]
            .as_array()
            .map_or(0, Vec::len)
            == 2
    })
    .await;
    let alerts = json_with_status(read("/api/v1/alerts").await, 200).await;
    assert_eq!(devices_of(&alerts["alerts"]), ["fleet-1"]);

    // Tiles: the live positions and the tracks of the fleet only.
    let query = format!("?token={FLEET_READER}");
    assert_eq!(
        names_at(&app, "positions", 10.0, 10.0, 10, &query).await,
        ["fleet-1"]
    );
    let window = format!(
        "{query}&from={}&to={}",
        since.timestamp(),
        Utc::now().timestamp() + 60
    );
    assert_eq!(
        names_at(&app, "tracks", 10.0, 10.0, 10, &window).await,
        ["fleet-1"]
    );
    let everyone = format!("?token={ADMIN}");
    assert_eq!(
        names_at(&app, "positions", 10.0, 10.0, 10, &everyone).await,
        ["fleet-1", "other-1"],
        "an unlimited token sees both (and the limited one's cached tile is not shared)"
    );
    let (x, y) = tile_of(10.0, 10.0, 10);
    let (_, joined) = tile(&app, &format!("/tiles/fences,positions/10/{x}/{y}{query}")).await;
    assert_eq!(crate::helpers::names(joined.as_ref(), "positions"), ["fleet-1"]);

    dispatch_and_reports_see_only_the_fleet(&app).await;

    // WebSockets: the live map's snapshot and the alert stream.
    let mut live = WsClient::connect(&app, &format!("/ws/positions{query}")).await;
    let snapshot = live.json().await;
    assert_eq!(devices_of(&snapshot["positions"]), ["fleet-1"]);
    let mut stream = WsClient::connect(&app, &format!("/ws/alerts?since=0&token={FLEET_READER}")).await;
    let replayed = stream.until_live().await;
    assert_eq!(devices_of(&Value::Array(replayed)), ["fleet-1"]);
    app.stop().await;
}

/// The dispatch queries and the history reports, for the fleet reader of the test above.
async fn dispatch_and_reports_see_only_the_fleet(app: &crate::helpers::TestApp) {
    let read = |path: &str| app.request(Method::GET, path).token(FLEET_READER).send();
    for report in ["trips", "stops", "summary"] {
        let other = read(&format!("/api/v1/devices/other-1/{report}")).await;
        assert_eq!(other.status(), 403);
        let own = read(&format!("/api/v1/devices/fleet-1/{report}")).await;
        assert_eq!(own.status(), 200);
    }
    // Dispatch: nearby and within, answered from the live index.
    crate::helpers::wait_until("the live index has both devices", async || {
        let all = app
            .request(Method::GET, "/api/v1/devices/within?bbox=9,9,11,11")
            .token(ADMIN)
            .send()
            .await;
        all.status() == 200 && ids(&json_with_status(all, 200).await["features"], "id").len() == 2
    })
    .await;
    let near = json_with_status(read("/api/v1/devices/nearby?lon=10&lat=10&limit=10").await, 200).await;
    assert_eq!(ids(&near["features"], "id"), ["fleet-1"]);
    let boxed = json_with_status(read("/api/v1/devices/within?bbox=9,9,11,11").await, 200).await;
    assert_eq!(ids(&boxed["features"], "id"), ["fleet-1"]);
    let area = app
        .request(Method::POST, "/api/v1/devices/within?radius_m=1000")
        .token(FLEET_READER)
        .json(&json!({"type": "Point", "coordinates": [10.0, 10.0]}))
        .send()
        .await;
    assert_eq!(
        ids(&json_with_status(area, 200).await["features"], "id"),
        ["fleet-1"]
    );
}

/// An admin token limited to `fleet-*` erases and renames only those devices.
#[tokio::test]
async fn a_device_limited_admin_cannot_erase_or_rename_other_devices() {
    let app = spawn_with(|c| c.tokens = tokens()).await;
    for device in ["fleet-2", "other-2"] {
        let reply = app
            .request(Method::POST, "/api/v1/positions")
            .token(ADMIN)
            .json(&fix(device, 10, 1.0, 1.0))
            .send()
            .await;
        json_with_status(reply, 202).await;
    }
    let erase = |device: &str| {
        app.request(Method::DELETE, &format!("/api/v1/devices/{device}"))
            .token(FLEET_ADMIN)
            .send()
    };
    assert_eq!(
        json_with_status(erase("other-2").await, 403).await["error"]["code"],
        "forbidden"
    );
    assert_eq!(app.stored().await, 2, "nothing of other-2 was erased");
    let rename = |device: &str| {
        app.request(Method::PUT, &format!("/api/v1/devices/{device}"))
            .token(FLEET_ADMIN)
            .json(&json!({"name": "mine now"}))
            .send()
    };
    assert_eq!(rename("other-2").await.status(), 403);
    json_with_status(rename("fleet-2").await, 200).await;
    json_with_status(erase("fleet-2").await, 200).await;
    assert_eq!(app.stored().await, 1);
    app.stop().await;
}

/// `positions,positions,...` builds and sends the layer once (each repeat used to be built and
/// joined again); a list of more than 16 layers is refused unread.
#[tokio::test]
async fn repeated_layers_are_built_once_and_the_list_is_capped() {
    use geozero::mvt::{Message, Tile};
    let tables: Vec<String> = (0..17).map(|i| format!("t{i}")).collect();
    let configured = tables.clone();
    let app = spawn_with(move |c| {
        c.tiles.tables = configured
            .iter()
            .map(|name| tiles::TableLayerConfig {
                name: name.clone(),
                table: "nowhere".into(),
                geometry: None,
                columns: None,
                id: None,
                description: String::new(),
                attribution: String::new(),
                minzoom: 0,
                maxzoom: 22,
                ttl_s: 60,
            })
            .collect();
    })
    .await;
    json_with_status(app.post_json(&fix("car", 1, 10.0, 10.0)).await, 202).await;
    let repeated = vec!["positions"; 200].join(",");
    let reply = app.get(&format!("/tiles/{repeated}/0/0/0")).await;
    let bytes = reply.bytes().await.expect("tile");
    let layers = Tile::decode(bytes.as_ref()).expect("a vector tile").layers;
    assert_eq!(layers.len(), 1, "one layer, not 200 copies of it");
    let reply = app.get(&format!("/tiles/{}/0/0/0", tables.join(","))).await;
    assert_eq!(
        json_with_status(reply, 400).await["error"]["code"],
        "too_many_layers"
    );
    let reply = app.get(&format!("/tiles/{}/0/0/0", tables[..16].join(","))).await;
    assert_eq!(
        json_with_status(reply, 503).await["error"]["code"],
        "layer_unavailable",
        "16 layers pass the cap (and their missing table is reported)"
    );
    app.stop().await;
}

/// Ids and filters with NUL or control characters, or too long, are 400s with a reason, not
/// 500s from the database.
#[tokio::test]
async fn ids_and_filters_with_nul_or_control_characters_are_refused() {
    let app = spawn_with(|_| {}).await;
    for path in [
        "/api/v1/devices/a%00b",
        "/api/v1/devices/a%00b/track",
        "/api/v1/devices?after=%00",
        "/api/v1/alerts?fence=%00",
        "/api/v1/alerts?device=a%01",
        "/api/v1/fences/a%00b",
        "/api/v1/fences/a%0Ab/devices",
    ] {
        let reply = app.get(path).await;
        assert_eq!(
            json_with_status(reply, 400).await["error"]["code"],
            "invalid_id",
            "{path}"
        );
    }
    let refused = WsClient::try_connect(&app, "/ws/alerts?fences=%00").await;
    assert!(
        refused.is_err(),
        "the upgrade is refused, not accepted and then closed"
    );

    let long_id = "x".repeat(10_000);
    for (what, feature) in [
        ("NUL in the id", named_id(&square("a", 1.0, 1.0, 0.1), "a\u{0}b")),
        (
            "control character in the id",
            named_id(&square("a", 1.0, 1.0, 0.1), "a\u{7}b"),
        ),
        (
            "bidi override in the id",
            named_id(&square("a", 1.0, 1.0, 0.1), "ab\u{202E}c"),
        ),
        ("a 10 kB id", named_id(&square("a", 1.0, 1.0, 0.1), &long_id)),
        (
            "NUL in the name",
            with_property(&square("b", 1.0, 1.0, 0.1), "name", json!("x\u{0}")),
        ),
        (
            "NUL in a property",
            with_property(&square("c", 1.0, 1.0, 0.1), "note", json!(["ok", {"k": "\u{0}"}])),
        ),
    ] {
        let reply = app.send_json(Method::POST, "/api/v1/fences", &feature).await;
        let body = json_with_status(reply, 400).await;
        assert_eq!(body["error"]["code"], "invalid_fence", "{what}: {body}");
    }
    app.stop().await;
}

/// Webhook URLs must not reach inside the network, follow no redirect, and are shown to admin
/// tokens only; a secret must not be empty.
#[tokio::test]
async fn webhooks_reach_only_allowed_addresses_and_their_urls_stay_private() {
    let app = spawn_with(|c| {
        c.tokens = tokens();
        c.webhooks.secret = Some("hook-secret-0123456789".into());
    })
    .await;
    for url in [
        "http://169.254.169.254/latest/meta-data/",
        "http://127.0.0.1:5432/",
        "http://[::1]:22/",
        "http://0x7f000001/",
        "http://user:secret@hooks.example.org/",
    ] {
        let mut fence = square("w", 1.0, 1.0, 0.1);
        fence["properties"]["webhooks"] = json!([url]);
        let reply = app
            .request(Method::POST, "/api/v1/fences")
            .token(ADMIN)
            .json(&fence)
            .send()
            .await;
        let body = json_with_status(reply, 400).await;
        assert_eq!(body["error"]["code"], "invalid_fence", "{url}: {body}");
    }
    let mut fence = square("w", 1.0, 1.0, 0.1);
    fence["properties"]["webhooks"] = json!(["http://hooks.example.org/geotrack?key=abc"]);
    let reply = app
        .request(Method::POST, "/api/v1/fences")
        .token(ADMIN)
        .json(&fence)
        .send()
        .await;
    json_with_status(reply, 201).await;
    let as_reader = app
        .request(Method::GET, "/api/v1/fences/w")
        .token(FLEET_READER)
        .send()
        .await;
    let seen = json_with_status(as_reader, 200).await;
    assert!(seen["properties"].get("webhooks").is_none(), "{seen}");
    let listed = app
        .request(Method::GET, "/api/v1/fences")
        .token(FLEET_READER)
        .send()
        .await;
    assert!(
        !json_with_status(listed, 200)
            .await
            .to_string()
            .contains("hooks.example.org")
    );
    let as_admin = app
        .request(Method::GET, "/api/v1/fences/w")
        .token(ADMIN)
        .send()
        .await;
    assert_eq!(
        json_with_status(as_admin, 200).await["properties"]["webhooks"],
        json!(["http://hooks.example.org/geotrack?key=abc"])
    );
    app.stop().await;

    let mut config = geotrack::Config {
        bind: "127.0.0.1:0".parse().expect("addr"),
        migrate_on_start: false,
        ..geotrack::Config::default()
    };
    config.webhooks.urls = vec!["http://hooks.example.org/all".into()];
    config.webhooks.secret = Some(String::new());
    let error = geotrack::Application::build(config)
        .await
        .expect_err("an empty secret");
    assert!(error.to_string().contains("webhooks.secret"), "{error}");
}

/// Fence reads wait for the index: before it is loaded they answer 503, not an empty list.
#[tokio::test]
async fn fence_reads_answer_503_until_the_index_is_loaded() {
    // Not migrated and not migrating: the index can never load.
    let app = spawn_with(|c| c.migrate_on_start = false).await;
    for path in ["/api/v1/fences", "/api/v1/fences/a", "/api/v1/fences/a/devices"] {
        let reply = app.get(path).await;
        assert_eq!(
            reply
                .headers()
                .get("retry-after")
                .map(reqwest::header::HeaderValue::as_bytes),
            Some(&b"2"[..]),
            "{path}"
        );
        assert_eq!(
            json_with_status(reply, 503).await["error"]["code"],
            "fences_loading",
            "{path}"
        );
    }
    app.stop().await;
}

/// Bodies past the limit get the JSON error shape; a FeatureCollection whose `features` is not
/// an array is named as such; `+1` is not a zoom.
#[tokio::test]
async fn bad_requests_say_what_is_wrong_in_json() {
    let app = spawn_with(|_| {}).await;
    let huge = json!({"type": "Feature", "geometry": null, "properties": {"pad": "x".repeat(3 << 20)}});
    let reply = app.send_json(Method::POST, "/api/v1/fences", &huge).await;
    assert_eq!(
        json_with_status(reply, 413).await["error"]["code"],
        "body_too_large"
    );
    let reply = app
        .post_json(&json!({"type": "FeatureCollection", "features": {"a": 1}}))
        .await;
    let body = json_with_status(reply, 400).await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("`features` array"),
        "{body}"
    );
    let reply = app.get("/tiles/fences/+1/0/0").await;
    assert_eq!(
        json_with_status(reply, 400).await["error"]["code"],
        "invalid_tile"
    );
    app.stop().await;
}

/// Overland batches above `max_request_fixes` are refused whole with the error Overland shows;
/// a device over its burst is charged for everything it sent.
#[tokio::test]
async fn overland_respects_the_batch_limit_and_devices_pay_for_their_whole_burst() {
    let app = spawn_with(|c| {
        c.ingest.max_request_fixes = 10;
        c.limits.device_fixes_per_s = 1.0;
        c.limits.device_burst = 5.0;
    })
    .await;
    let location = |i: i64| {
        let ts = (Utc::now() - chrono::Duration::seconds(100 - i)).to_rfc3339();
        json!({"type": "Feature", "geometry": {"type": "Point", "coordinates": [1.0, 1.0]},
               "properties": {"timestamp": ts, "device_id": "phone"}})
    };
    let batch = json!({"locations": (0..11).map(location).collect::<Vec<_>>()});
    let reply = app.send_json(Method::POST, "/overland", &batch).await;
    let body = json_with_status(reply, 200).await;
    assert!(
        body["error"].as_str().unwrap_or_default().contains("batch size"),
        "{body}"
    );
    assert_eq!(app.stored().await, 0);

    let ten = json!({"locations": (0..10).map(location).collect::<Vec<_>>()});
    let reply = app.send_json(Method::POST, "/overland", &ten).await;
    assert_eq!(
        json_with_status(reply, 200).await["result"],
        "ok",
        "a full bucket lets a burst through"
    );
    let more = json!([fix("phone", 1, 1.0, 1.0)]);
    let reply = app.post_json(&more).await;
    let retry_after: u64 = reply.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert_eq!(reply.status(), 429);
    assert!(
        retry_after >= 5,
        "the 10 fixes of a burst of 5 are paid for: {retry_after} s"
    );
    app.stop().await;
}

/// OsmAnd ids that are not UTF-8, or hold invisible characters, are not stored (the app still
/// gets its 200).
#[tokio::test]
async fn osmand_ids_must_be_valid_visible_text() {
    let app = spawn_with(|_| {}).await;
    let now = Utc::now().timestamp();
    for id in ["caf%E9", "caf%FF", "truck%E2%80%8B7", "admin%E2%80%AE1"] {
        let reply = app
            .get(&format!("/osmand?id={id}&lat=1&lon=1&timestamp={now}"))
            .await;
        assert_eq!(reply.status(), 200, "{id}");
    }
    assert_eq!(app.stored().await, 0, "no id was stored, none became U+FFFD");
    app.stop().await;
}

fn ids(features: &Value, key: &str) -> Vec<String> {
    let mut ids: Vec<String> = features
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f[key].as_str().map(str::to_owned))
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

fn devices_of(items: &Value) -> Vec<String> {
    ids(items, "device")
}

fn named_id(feature: &Value, id: &str) -> Value {
    let mut feature = feature.clone();
    feature["id"] = json!(id);
    feature
}

fn with_property(feature: &Value, key: &str, value: Value) -> Value {
    let mut feature = feature.clone();
    feature["properties"][key] = value;
    feature
}
