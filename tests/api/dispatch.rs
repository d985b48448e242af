//! Dispatch routes over a real server: nearby and within queries answered from the live index,
//! which follows the live feed (moves, erasures) and is loaded from the database at start-up.

use chrono::{Duration, Utc};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, fix, fix_at, json_with_status, spawn_app, wait_until};

/// The ids of a FeatureCollection's features, in order.
fn ids(collection: &Value) -> Vec<String> {
    collection["features"]
        .as_array()
        .expect("features")
        .iter()
        .map(|f| f["id"].as_str().expect("id").to_owned())
        .collect()
}

/// Posts `fixes` and waits until a nearby query around `(lon, lat)` finds `expected` devices.
async fn post_and_wait(app: &TestApp, fixes: &[Value], (lon, lat): (f64, f64), expected: usize) {
    json_with_status(app.post_json(&json!(fixes)).await, 202).await;
    let path = format!("/api/v1/devices/nearby?lon={lon}&lat={lat}&limit=1000");
    wait_until("the live index has the devices", async || {
        let reply = app.get(&path).await;
        reply.status() == 200 && ids(&json_with_status(reply, 200).await).len() == expected
    })
    .await;
}

/// Ten taxis on a line eastwards from Notre-Dame, 100 m apart, and two buses.
fn fleet() -> Vec<Value> {
    let mut fixes: Vec<Value> = (0..10)
        .map(|i| fix(&format!("taxi-{i}"), 5, 2.3499 + f64::from(i) * 0.001_364, 48.853))
        .collect();
    fixes.push(fix("bus-1", 5, 2.3499, 48.854));
    // A stale bus: its only fix is an hour old.
    fixes.push(fix("bus-2", 3_600, 2.3499, 48.852));
    fixes
}

#[tokio::test]
async fn nearby_lists_the_nearest_devices_first_with_their_distances() {
    let app = spawn_app().await;
    post_and_wait(&app, &fleet(), (2.3499, 48.853), 12).await;

    let near = json_with_status(
        app.get("/api/v1/devices/nearby?lon=2.3499&lat=48.853&limit=4")
            .await,
        200,
    )
    .await;
    assert_eq!(ids(&near).len(), 4);
    assert_eq!(ids(&near)[0], "taxi-0");
    let distances: Vec<f64> = near["features"]
        .as_array()
        .expect("features")
        .iter()
        .map(|f| f["properties"]["distance_m"].as_f64().expect("distance_m"))
        .collect();
    assert!(distances.windows(2).all(|w| w[0] <= w[1]), "{distances:?}");
    assert!(distances[0] < 0.01, "{distances:?}");
    // The two buses are 111 m north and south; taxi-1 is 100 m east.
    assert!((distances[1] - 100.0).abs() < 1.0, "{distances:?}");
    assert_eq!(near["features"][0]["geometry"]["type"], "Point");

    let within_450 = "/api/v1/devices/nearby?lon=2.3499&lat=48.853&radius_m=450&limit=100";
    assert_eq!(
        ids(&json_with_status(app.get(within_450).await, 200).await).len(),
        7,
        "taxi-0..4 and both buses"
    );
    let taxis = "/api/v1/devices/nearby?lon=2.3499&lat=48.853&prefix=taxi-&limit=100";
    assert_eq!(ids(&json_with_status(app.get(taxis).await, 200).await).len(), 10);
    let fresh = "/api/v1/devices/nearby?lon=2.3499&lat=48.853&max_age_s=600&limit=100";
    let fresh = ids(&json_with_status(app.get(fresh).await, 200).await);
    assert_eq!(fresh.len(), 11);
    assert!(
        !fresh.contains(&"bus-2".to_owned()),
        "a stale position is left out"
    );

    for (bad, code) in [
        ("lon=200&lat=0", "invalid_point"),
        ("lon=2&lat=48&radius_m=-5", "invalid_radius"),
        ("lon=2&lat=48&limit=0", "invalid_limit"),
        ("lon=2&lat=48&limit=100000", "invalid_limit"),
        ("lat=48", "invalid_query"),
        ("lon=2&lat=48&colour=red", "invalid_query"),
    ] {
        let reply = app.get(&format!("/api/v1/devices/nearby?{bad}")).await;
        assert_eq!(json_with_status(reply, 400).await["error"]["code"], code, "{bad}");
    }
    app.stop().await;
}

#[tokio::test]
async fn within_pages_through_a_box_that_crosses_the_antimeridian() {
    let app = spawn_app().await;
    let fixes: Vec<Value> = (0..25)
        .map(|i| {
            fix(
                &format!("ship-{i:02}"),
                5,
                if i % 2 == 0 { 179.9 } else { -179.9 },
                -17.0,
            )
        })
        .chain([fix("ship-far", 5, 170.0, -17.0)])
        .collect();
    post_and_wait(&app, &fixes, (180.0, -17.0), 26).await;

    let mut next = Some("/api/v1/devices/within?bbox=179.5,-18,-179.5,-16&limit=10".to_owned());
    let mut seen = Vec::new();
    while let Some(path) = next {
        let page = json_with_status(app.get(&path).await, 200).await;
        seen.extend(ids(&page));
        next = page["next"].as_str().map(str::to_owned);
    }
    let expected: Vec<String> = (0..25).map(|i| format!("ship-{i:02}")).collect();
    assert_eq!(
        seen, expected,
        "every ship in the box once, in id order, and not ship-far"
    );

    for bad in ["/api/v1/devices/within", "/api/v1/devices/within?bbox=1,2,3"] {
        assert_eq!(app.get(bad).await.status(), 400, "{bad}");
    }
    app.stop().await;
}

#[tokio::test]
async fn within_an_area_tests_polygons_with_holes_circles_and_corridors_exactly() {
    let app = spawn_app().await;
    // A 3 x 3 grid of devices 0.01° apart around (10, 10).
    let fixes: Vec<Value> = (0..9)
        .map(|i| {
            fix(
                &format!("g{i}"),
                5,
                9.99 + f64::from(i % 3) * 0.01,
                9.99 + f64::from(i / 3) * 0.01,
            )
        })
        .collect();
    post_and_wait(&app, &fixes, (10.0, 10.0), 9).await;
    let within = async |query: &str, body: &Value| {
        let reply = app
            .request(Method::POST, &format!("/api/v1/devices/within{query}"))
            .json(body)
            .send()
            .await;
        ids(&json_with_status(reply, 200).await)
    };
    let ring = |half: f64| {
        let (w, s, e, n) = (10.0 - half, 10.0 - half, 10.0 + half, 10.0 + half);
        json!([[w, s], [e, s], [e, n], [w, n], [w, s]])
    };
    // A square holding the grid, with a hole around its centre (g4).
    let holed = json!({"type": "Polygon", "coordinates": [ring(0.015), ring(0.005)]});
    let found = within("", &holed).await;
    assert_eq!(found.len(), 8);
    assert!(!found.contains(&"g4".to_owned()));
    // A circle of 1,200 m: the centre and its four neighbours at 1,095-1,113 m, not the corners.
    let centre = json!({"type": "Point", "coordinates": [10.0, 10.0]});
    assert_eq!(
        within("?radius_m=1200", &centre).await,
        ["g1", "g3", "g4", "g5", "g7"]
    );
    // A fence-shaped Feature works as well, and its own radius counts.
    let feature = json!({"type": "Feature", "geometry": centre, "properties": {"radius_m": 10}});
    assert_eq!(within("", &feature).await, ["g4"]);
    // A corridor along the middle row.
    let line = json!({"type": "LineString", "coordinates": [[9.98, 10.0], [10.02, 10.0]]});
    assert_eq!(within("?buffer_m=100", &line).await, ["g3", "g4", "g5"]);

    for (body, code) in [
        (
            json!({"type": "Point", "coordinates": [10.0, 10.0]}),
            "invalid_area",
        ),
        (json!({"coordinates": []}), "invalid_area"),
        (
            json!({"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [0, 1], [1, 0], [0, 0]]]}),
            "invalid_area",
        ),
    ] {
        let reply = app
            .request(Method::POST, "/api/v1/devices/within")
            .json(&body)
            .send()
            .await;
        assert_eq!(
            json_with_status(reply, 400).await["error"]["code"],
            code,
            "{body}"
        );
    }
    let reply = app
        .request(Method::POST, "/api/v1/devices/within")
        .body("{not json")
        .header("content-type", "application/json")
        .send()
        .await;
    assert_eq!(
        json_with_status(reply, 400).await["error"]["code"],
        "malformed_body"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_index_follows_moves_and_erasures_and_is_reloaded_at_start_up() {
    let app = spawn_app().await;
    let t0 = Utc::now() - Duration::seconds(30);
    post_and_wait(
        &app,
        &[fix_at("van", t0, 5.0, 45.0), fix_at("car", t0, 5.1, 45.0)],
        (5.0, 45.0),
        2,
    )
    .await;

    // The van drives 30 km north; the next query sees it there.
    json_with_status(
        app.post_json(&fix_at("van", t0 + Duration::seconds(10), 5.0, 45.27))
            .await,
        202,
    )
    .await;
    wait_until("the van's move reached the index", async || {
        let near = json_with_status(
            app.get("/api/v1/devices/nearby?lon=5&lat=45.27&limit=1").await,
            200,
        )
        .await;
        ids(&near) == ["van"]
    })
    .await;
    // An older fix arriving late does not move it back: once a later marker is in the index,
    // the van is still in the north.
    json_with_status(
        app.post_json(&fix_at("van", t0 + Duration::seconds(5), 5.0, 45.0))
            .await,
        202,
    )
    .await;
    post_and_wait(&app, &[fix("marker", 1, 6.0, 45.0)], (5.0, 45.0), 3).await;
    let van = json_with_status(
        app.get("/api/v1/devices/nearby?lon=5&lat=45.27&limit=1").await,
        200,
    )
    .await;
    assert_eq!(ids(&van), ["van"]);
    assert!(
        van["features"][0]["properties"]["distance_m"]
            .as_f64()
            .expect("distance")
            < 1.0
    );

    let erased = app.request(Method::DELETE, "/api/v1/devices/car").send().await;
    json_with_status(erased, 200).await;
    let everyone = json_with_status(app.get("/api/v1/devices/within?bbox=-180,-90,180,90").await, 200).await;
    assert_eq!(
        ids(&everyone),
        ["marker", "van"],
        "an erased device is gone at once"
    );

    let app = app.restart(|_| {}).await;
    wait_until("the restarted index is loaded", async || {
        app.get("/api/v1/devices/nearby?lon=5&lat=45&limit=5")
            .await
            .status()
            == 200
    })
    .await;
    let near = json_with_status(
        app.get("/api/v1/devices/nearby?lon=5&lat=45.27&limit=5").await,
        200,
    )
    .await;
    assert_eq!(
        ids(&near),
        ["van", "marker"],
        "loaded from the database, where the van is"
    );
    assert!(
        near["features"][0]["properties"]["distance_m"]
            .as_f64()
            .expect("distance")
            < 1.0
    );
    app.stop().await;
}
