//! The fence API: every kind created from GeoJSON, validation errors, replace/delete, the
//! all-or-nothing import with its report, "devices inside", admin-only writes, and an index
//! rebuilt from the database after a restart.

use geotrack::auth::TokensSetting;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{
    circle, corridor, create_fence, fix, json_with_status, polygon, spawn_app, spawn_with, square,
    wait_for_fence_index,
};

/// A square of `size` degrees from (lon, lat) north-east, with free-form properties, for trucks
/// only; without an id (`null`) the server names it.
fn truck_square(id: Option<&str>, lon: f64, lat: f64, size: f64) -> Value {
    let mut fence = polygon(id.unwrap_or_default(), [lon, lat, lon + size, lat + size]);
    fence["id"] = json!(id);
    fence["properties"] =
        json!({"name": "square", "colour": "red", "dwell_s": 60, "applies_to": ["truck-*"]});
    fence
}

#[tokio::test]
async fn fences_of_every_kind_are_created_read_replaced_and_deleted() {
    let app = spawn_app().await;
    let created = create_fence(&app, &truck_square(None, 10.0, 10.0, 1.0)).await;
    let generated = created["id"].as_str().expect("generated id").to_owned();
    assert!(generated.starts_with('f'), "{created}");
    assert_eq!(created["properties"]["kind"], "polygon");
    assert_eq!(
        created["properties"]["colour"], "red",
        "free-form properties are kept"
    );
    assert_eq!(created["properties"]["applies_to"], json!(["truck-*"]));

    create_fence(&app, &circle("depot", 2.35, 48.85, 500.0)).await;
    let mut road = corridor("road", &[[0.0, 0.0], [0.1, 0.1]], 50.0);
    road["properties"]["speed_limit_mps"] = json!(13.9);
    create_fence(&app, &road).await;
    let conflict = app
        .send_json(Method::POST, "/api/v1/fences", &circle("depot", 0.0, 0.0, 5.0))
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
    create_fence(&app, &circle("depot", 2.35, 48.85, 500.0)).await;
    let replaced = app
        .send_json(
            Method::PUT,
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
            Method::PUT,
            "/api/v1/fences/new-one",
            &circle("new-one", 1.0, 1.0, 10.0),
        )
        .await;
    assert_eq!(created_by_put.status(), 201);
    let mismatch = app
        .send_json(
            Method::PUT,
            "/api/v1/fences/depot",
            &circle("other", 1.0, 1.0, 10.0),
        )
        .await;
    assert_eq!(
        json_with_status(mismatch, 400).await["error"]["code"],
        "id_mismatch"
    );

    let deleted = app.delete("/api/v1/fences/depot").await;
    assert_eq!(json_with_status(deleted, 200).await, json!({"deleted": "depot"}));
    assert_eq!(app.get("/api/v1/fences/depot").await.status(), 404);
    assert_eq!(app.delete("/api/v1/fences/depot").await.status(), 404);
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
        let reply = json_with_status(app.send_json(Method::POST, "/api/v1/fences", &body).await, 400).await;
        let message = reply["error"]["message"].as_str().expect("message");
        assert!(message.contains(needle), "{needle}: {message}");
    }
    let malformed = app.request(Method::POST, "/api/v1/fences").body("{").send().await;
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
        truck_square(None, 0.0, 0.0, 1.0),
        circle("a", 1.0, 1.0, 100.0),
    ]});
    let reply = json_with_status(
        app.send_json(Method::POST, "/api/v1/fences/import", &bad).await,
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
    assert_eq!(
        indexes,
        [1, 3],
        "a feature without an id gets one; an id twice is invalid"
    );
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
        app.send_json(Method::POST, "/api/v1/fences/import", &good).await,
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
    create_fence(&app, &truck_square(Some("yard"), 10.0, 10.0, 1.0)).await;
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
    let app = spawn_with(|c| {
        c.tokens = TokensSetting::Compact("admin-token-00000=admin;reader-token-0000=read".into());
    })
    .await;
    let create_as = |token: &str| {
        app.request(Method::POST, "/api/v1/fences")
            .token(token)
            .json(&circle("x", 0.0, 0.0, 10.0))
            .send()
    };
    assert_eq!(create_as("reader-token-0000").await.status(), 403);
    assert_eq!(create_as("admin-token-00000").await.status(), 201);
    let read = app
        .request(Method::GET, "/api/v1/fences/x")
        .token("reader-token-0000")
        .send()
        .await;
    assert_eq!(read.status(), 200);
    assert_eq!(app.get("/api/v1/fences").await.status(), 401);
    app.stop().await;
}

#[tokio::test]
async fn the_index_is_rebuilt_from_the_database_after_a_restart() {
    let mut app = spawn_app().await;
    create_fence(&app, &circle("kept", 5.0, 5.0, 1000.0)).await;
    app.shutdown().await;

    let config = geotrack::Config {
        bind: "127.0.0.1:0".parse().expect("address"),
        database_url: app.db_url.clone(),
        ..geotrack::Config::default()
    };
    let restarted = geotrack::Application::build(config).await.expect("restart");
    let state = restarted.state().clone();
    wait_for_fence_index(&state).await;
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

/// Every `bbox=` query filters through `geotrack_bbox_meets`; the planner must inline it so the
/// GiST index serves both a plain box and one crossing the antimeridian, in a generic plan too.
#[tokio::test]
async fn the_bbox_filter_uses_the_gist_index() {
    let app = spawn_app().await;
    let mut conn = app.db.acquire().await.expect("connection");
    for sql in [
        "SET enable_seqscan = off",
        "SET plan_cache_mode = force_generic_plan",
        "PREPARE fences_in(float8, float8, float8, float8) AS
         SELECT id FROM fences WHERE geotrack_bbox_meets(geom, $1, $2, $3, $4)",
    ] {
        sqlx::raw_sql(sql).execute(&mut *conn).await.expect(sql);
    }
    for bbox in ["2, 48, 3, 49", "170, -10, -170, 10"] {
        let plan: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN EXECUTE fences_in({bbox})"))
            .fetch_all(&mut *conn)
            .await
            .expect("plan");
        let plan = plan.join("\n");
        assert!(
            plan.contains("fences_geom_gist"),
            "{bbox}: no GiST index in\n{plan}"
        );
        assert!(!plan.contains("Seq Scan"), "{bbox}: a sequential scan in\n{plan}");
    }
    drop(conn);
    app.stop().await;
}

/// A star of 20,000 vertices: valid, and once 3.6 s of quadratic validation on a worker thread
/// (holding the fence write lock), then again at every start-up before `/ready`.
fn star(id: &str, vertices: u32) -> serde_json::Value {
    let mut ring: Vec<[f64; 2]> = (0..vertices)
        .map(|i| {
            let angle = std::f64::consts::TAU * f64::from(i) / f64::from(vertices);
            let radius = if i % 2 == 0 { 0.5 } else { 0.3 };
            [20.0 + radius * angle.cos(), 40.0 + radius * angle.sin()]
        })
        .collect();
    ring.push(ring[0]);
    json!({"type": "Feature", "id": id, "geometry": {"type": "Polygon", "coordinates": [ring]},
           "properties": {"name": id}})
}

#[tokio::test]
async fn a_large_fence_is_prepared_off_the_workers_and_stored_fences_are_trusted_at_start() {
    let app = spawn_app().await;
    let health = async {
        // The server keeps answering while the fence is validated and covered.
        let mut slowest = std::time::Duration::ZERO;
        for _ in 0..20 {
            let started = std::time::Instant::now();
            assert_eq!(app.get("/health").await.status(), 200);
            slowest = slowest.max(started.elapsed());
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        slowest
    };
    let fence = star("star", 20_000);
    let (created, slowest) = tokio::join!(app.send_json(Method::POST, "/api/v1/fences", &fence), health);
    json_with_status(created, 201).await;
    assert!(
        slowest < std::time::Duration::from_millis(500),
        "/health waited {slowest:?}"
    );
    // A stored fence is not validated again at start: one that the checks of today would
    // refuse (written when they were laxer, or by hand) is loaded instead of blocking `/ready`.
    let bow_tie = json!([[[0.0, 0.0], [1.0, 1.0], [1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]]);
    let mut legacy = square("legacy", 0.5, 0.5, 0.5);
    legacy["geometry"]["coordinates"] = bow_tie.clone();
    let refused = app.send_json(Method::PUT, "/api/v1/fences/legacy", &legacy).await;
    assert_eq!(refused.status(), 400, "the API refuses it today");
    create_fence(&app, &square("legacy", 0.5, 0.5, 0.5)).await;
    sqlx::query(
        "UPDATE fences SET definition = jsonb_set(definition, '{kind,rings}', $1) WHERE id = 'legacy'",
    )
    .bind(&bow_tie)
    .execute(&app.db)
    .await
    .expect("made invalid by hand");
    let restarted = app.restart(|_| {}).await;
    json_with_status(restarted.get("/api/v1/fences/legacy").await, 200).await;
    json_with_status(restarted.get("/api/v1/fences/star").await, 200).await;
    restarted.stop().await;
}

#[tokio::test]
async fn a_bent_corridor_is_stored_as_one_area_with_its_joints() {
    let app = spawn_app().await;
    let bends = [[10.0, 45.0], [10.05, 45.08], [9.98, 45.12], [10.06, 45.15]];
    create_fence(&app, &corridor("bent", &bends, 150.0)).await;
    let (parts, holes, area_m2, covered): (i32, i32, f64, bool) = sqlx::query_as(
        "SELECT ST_NumGeometries(geom), ST_NumInteriorRings(ST_GeometryN(geom, 1)), ST_Area(geom::geography),
                ST_Covers(geom, ST_Buffer(ST_GeomFromText($1, 4326)::geography, 140)::geometry)
         FROM fences WHERE id = 'bent'",
    )
    .bind("LINESTRING(10 45, 10.05 45.08, 9.98 45.12, 10.06 45.15)")
    .fetch_one(&app.db)
    .await
    .expect("stored area");
    assert_eq!(
        (parts, holes),
        (1, 0),
        "the capsules are united, not cut at their overlaps"
    );
    assert!(
        covered,
        "the area covers everything within the buffer, joints included"
    );
    assert!(area_m2 > 7.5e6, "{area_m2} m²");
    app.stop().await;
}
