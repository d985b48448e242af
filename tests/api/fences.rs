//! The fence API: every kind created from GeoJSON, validation errors, replace/delete, the
//! all-or-nothing import with its report, "devices inside", admin-only writes, and an index
//! rebuilt from the database after a restart.

use geotrack::auth::TokensSetting;
use serde_json::{Value, json};

use crate::helpers::{fix, json_with_status, spawn_app, spawn_with};

fn circle(id: &str, lon: f64, lat: f64, radius_m: f64) -> Value {
    json!({"type": "Feature", "id": id, "geometry": {"type": "Point", "coordinates": [lon, lat]},
           "properties": {"name": format!("circle {id}"), "radius_m": radius_m}})
}

fn square(id: Option<&str>, lon: f64, lat: f64, size: f64) -> Value {
    let ring = [
        [lon, lat],
        [lon + size, lat],
        [lon + size, lat + size],
        [lon, lat + size],
        [lon, lat],
    ];
    json!({"type": "Feature", "id": id, "geometry": {"type": "Polygon", "coordinates": [ring]},
           "properties": {"name": "square", "colour": "red", "dwell_s": 60, "applies_to": ["truck-*"]}})
}

#[tokio::test]
async fn fences_of_every_kind_are_created_read_replaced_and_deleted() {
    let app = spawn_app().await;
    let created = json_with_status(
        app.send_json(
            reqwest::Method::POST,
            "/api/v1/fences",
            &square(None, 10.0, 10.0, 1.0),
        )
        .await,
        201,
    )
    .await;
    let generated = created["id"].as_str().expect("generated id").to_owned();
    assert!(generated.starts_with('f'), "{created}");
    assert_eq!(created["properties"]["kind"], "polygon");
    assert_eq!(
        created["properties"]["colour"], "red",
        "free-form properties are kept"
    );
    assert_eq!(created["properties"]["applies_to"], json!(["truck-*"]));

    json_with_status(
        app.send_json(
            reqwest::Method::POST,
            "/api/v1/fences",
            &circle("depot", 2.35, 48.85, 500.0),
        )
        .await,
        201,
    )
    .await;
    let corridor = json!({"type": "Feature", "id": "road", "geometry": {"type": "LineString", "coordinates": [[0.0, 0.0], [0.1, 0.1]]},
                          "properties": {"buffer_m": 50, "speed_limit_mps": 13.9}});
    json_with_status(
        app.send_json(reqwest::Method::POST, "/api/v1/fences", &corridor)
            .await,
        201,
    )
    .await;
    let conflict = app
        .send_json(
            reqwest::Method::POST,
            "/api/v1/fences",
            &circle("depot", 0.0, 0.0, 5.0),
        )
        .await;
    assert_eq!(
        json_with_status(conflict, 409).await["error"]["code"],
        "fence_exists"
    );

    let depot = json_with_status(app.get("/api/v1/fences/depot").await, 200).await;
    assert_eq!(
        depot["geometry"],
        json!({"type": "Point", "coordinates": [2.35, 48.85]})
    );
    assert_eq!(depot["properties"]["radius_m"], 500.0);
    let all = json_with_status(app.get("/api/v1/fences").await, 200).await;
    assert_eq!(all["features"].as_array().expect("features").len(), 3);
    let paris = json_with_status(app.get("/api/v1/fences?bbox=2,48,3,49").await, 200).await;
    let ids: Vec<&str> = paris["features"]
        .as_array()
        .expect("features")
        .iter()
        .map(|f| f["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["depot"]);
    let area: f64 = sqlx::query_scalar("SELECT ST_Area(geom::geography) FROM fences WHERE id = 'depot'")
        .fetch_one(&app.db)
        .await
        .expect("area");
    // The area polygon circumscribes the circle (bounding boxes must cover all of it).
    let circle_area = std::f64::consts::PI * 500.0 * 500.0;
    let ratio = area / circle_area;
    assert!(
        (0.99..1.12).contains(&ratio),
        "stored area {area} vs circle {circle_area}"
    );

    app.stop().await;
}

#[tokio::test]
async fn a_fence_is_replaced_by_put_and_deleted() {
    let app = spawn_app().await;
    json_with_status(
        app.send_json(
            reqwest::Method::POST,
            "/api/v1/fences",
            &circle("depot", 2.35, 48.85, 500.0),
        )
        .await,
        201,
    )
    .await;
    let replaced = app
        .send_json(
            reqwest::Method::PUT,
            "/api/v1/fences/depot",
            &circle("depot", 2.35, 48.85, 800.0),
        )
        .await;
    assert_eq!(
        json_with_status(replaced, 200).await["properties"]["radius_m"],
        800.0
    );
    let created_by_put = app
        .send_json(
            reqwest::Method::PUT,
            "/api/v1/fences/new-one",
            &circle("new-one", 1.0, 1.0, 10.0),
        )
        .await;
    assert_eq!(created_by_put.status(), 201);
    let mismatch = app
        .send_json(
            reqwest::Method::PUT,
            "/api/v1/fences/depot",
            &circle("other", 1.0, 1.0, 10.0),
        )
        .await;
    assert_eq!(
        json_with_status(mismatch, 400).await["error"]["code"],
        "id_mismatch"
    );

    let deleted = app
        .client
        .delete(app.url("/api/v1/fences/depot"))
        .send()
        .await
        .expect("sent");
    assert_eq!(json_with_status(deleted, 200).await, json!({"deleted": "depot"}));
    assert_eq!(app.get("/api/v1/fences/depot").await.status(), 404);
    assert_eq!(
        app.client
            .delete(app.url("/api/v1/fences/depot"))
            .send()
            .await
            .expect("sent")
            .status(),
        404
    );
    app.stop().await;
}

#[tokio::test]
async fn invalid_fences_are_400_with_the_reason() {
    let app = spawn_app().await;
    let bowtie = json!({"type": "Feature", "geometry": {"type": "Polygon",
        "coordinates": [[[0.0, 0.0], [1.0, 1.0], [1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]]}});
    let unclosed = json!({"type": "Feature", "geometry": {"type": "Polygon",
        "coordinates": [[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]]}});
    let triangle_too_short = json!({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]]]}});
    for (body, needle) in [
        (bowtie, "intersect"),
        (unclosed, "not closed"),
        (triangle_too_short, "at least 4"),
        (circle("c", 0.0, 0.0, 0.0), "radius"),
        (circle("c", 0.0, 95.0, 10.0), "atitude"),
        (
            json!({"type": "Feature", "geometry": {"type": "MultiPoint", "coordinates": [[0, 0]]}}),
            "MultiPoint",
        ),
    ] {
        let reply = json_with_status(
            app.send_json(reqwest::Method::POST, "/api/v1/fences", &body)
                .await,
            400,
        )
        .await;
        let message = reply["error"]["message"].as_str().expect("message");
        assert!(message.contains(needle), "{needle}: {message}");
    }
    let malformed = app
        .client
        .post(app.url("/api/v1/fences"))
        .body("{")
        .send()
        .await
        .expect("sent");
    assert_eq!(
        json_with_status(malformed, 400).await["error"]["code"],
        "malformed_body"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_import_is_all_or_nothing_and_reports_every_invalid_feature() {
    let app = spawn_app().await;
    let bad = json!({"type": "FeatureCollection", "features": [
        circle("a", 0.0, 0.0, 100.0),
        circle("b", 0.0, 0.0, -1.0),
        square(None, 0.0, 0.0, 1.0),
        circle("a", 1.0, 1.0, 100.0),
    ]});
    let reply = json_with_status(
        app.send_json(reqwest::Method::POST, "/api/v1/fences/import", &bad)
            .await,
        400,
    )
    .await;
    assert_eq!(reply["error"]["code"], "invalid_features");
    let indexes: Vec<u64> = reply["invalid"]
        .as_array()
        .expect("report")
        .iter()
        .map(|r| r["index"].as_u64().expect("index"))
        .collect();
    assert_eq!(indexes, [1, 2, 3]);
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM fences")
        .fetch_one(&app.db)
        .await
        .expect("count");
    assert_eq!(stored, 0, "nothing of a bad import is stored");

    let features: Vec<Value> = (0..500)
        .map(|i| circle(&format!("c{i}"), f64::from(i) * 0.01, 45.0, 200.0))
        .collect();
    let good = json!({"type": "FeatureCollection", "features": features});
    let reply = json_with_status(
        app.send_json(reqwest::Method::POST, "/api/v1/fences/import", &good)
            .await,
        200,
    )
    .await;
    assert_eq!(reply["imported"], 500);
    let listed = json_with_status(app.get("/api/v1/fences").await, 200).await;
    assert_eq!(listed["features"].as_array().expect("features").len(), 500);
    app.stop().await;
}

#[tokio::test]
async fn devices_inside_a_fence_are_those_whose_live_position_is_in_it() {
    let app = spawn_app().await;
    json_with_status(
        app.send_json(
            reqwest::Method::POST,
            "/api/v1/fences",
            &square(Some("yard"), 10.0, 10.0, 1.0),
        )
        .await,
        201,
    )
    .await;
    let fixes = json!([
        fix("truck-1", 1, 10.5, 10.5),
        fix("truck-2", 1, 12.0, 12.0),
        fix("van-1", 1, 10.5, 10.5),
        fix("truck-3", 5, 10.2, 10.2),
        fix("truck-3", 1, 9.0, 9.0),
    ]);
    json_with_status(app.post_json(&fixes).await, 202).await;
    let inside = json_with_status(app.get("/api/v1/fences/yard/devices").await, 200).await;
    let ids: Vec<&str> = inside["features"]
        .as_array()
        .expect("features")
        .iter()
        .map(|f| f["id"].as_str().expect("id"))
        .collect();
    assert_eq!(
        ids,
        ["truck-1"],
        "van-1 is not covered by applies_to, truck-3 has left"
    );
    assert_eq!(app.get("/api/v1/fences/nope/devices").await.status(), 404);
    app.stop().await;
}

#[tokio::test]
async fn fence_writes_need_admin_and_reads_need_read() {
    let app =
        spawn_with(|c| c.tokens = TokensSetting::Compact("admin-token=admin;reader-token=read".into())).await;
    let as_reader = app
        .client
        .post(app.url("/api/v1/fences"))
        .bearer_auth("reader-token")
        .json(&circle("x", 0.0, 0.0, 10.0))
        .send()
        .await
        .expect("sent");
    assert_eq!(as_reader.status(), 403);
    let as_admin = app
        .client
        .post(app.url("/api/v1/fences"))
        .bearer_auth("admin-token")
        .json(&circle("x", 0.0, 0.0, 10.0))
        .send()
        .await
        .expect("sent");
    assert_eq!(as_admin.status(), 201);
    let read = app
        .client
        .get(app.url("/api/v1/fences/x"))
        .bearer_auth("reader-token")
        .send()
        .await
        .expect("sent");
    assert_eq!(read.status(), 200);
    assert_eq!(app.get("/api/v1/fences").await.status(), 401);
    app.stop().await;
}

#[tokio::test]
async fn the_index_is_rebuilt_from_the_database_after_a_restart() {
    let mut app = spawn_app().await;
    json_with_status(
        app.send_json(
            reqwest::Method::POST,
            "/api/v1/fences",
            &circle("kept", 5.0, 5.0, 1000.0),
        )
        .await,
        201,
    )
    .await;
    app.shutdown().await;

    let config = geotrack::Config {
        bind: "127.0.0.1:0".parse().expect("address"),
        database_url: app.db_url.clone(),
        ..geotrack::Config::default()
    };
    let restarted = geotrack::Application::build(config).await.expect("restart");
    let state = restarted.state().clone();
    let started = std::time::Instant::now();
    while !state.fences.is_loaded() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "index never loaded"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (inside, outside) = {
        let index = state.fences.index().read();
        let inside: Vec<String> = index
            .contains(5.001, 5.001)
            .expect("lookup")
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        (inside, index.contains(5.1, 5.1).expect("lookup").is_empty())
    };
    assert_eq!(inside, ["kept"]);
    assert!(outside);
    app.stop().await;
}
