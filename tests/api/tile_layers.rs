//! The basemap (`countries`), operator tables from config and `tracks`: decoded tiles checked
//! against what the database holds, and never stale after each kind of write.

use serde_json::json;
use tiles::TableLayerConfig;

use crate::helpers::{
    TestApp, eventually, fix, json_with_status, names_at, spawn_app, spawn_with, tile, tile_of,
};

#[tokio::test]
async fn the_basemap_serves_countries_split_at_the_antimeridian_and_reloads_on_import() {
    let app = spawn_app().await;
    let count = tiles::basemap::import(&app.db, geotrack::web::COUNTRIES)
        .await
        .expect("import");
    assert!(count > 170, "{count} countries");
    let outside: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM basemap_countries WHERE ST_XMin(geom) < -180 OR ST_XMax(geom) > 180 OR NOT ST_IsValid(geom)",
    )
    .fetch_one(&app.db)
    .await
    .expect("query");
    assert_eq!(outside, 0, "every country valid and within ±180");
    assert_eq!(names_at(&app, "countries", 2.35, 48.85, 8, "").await, ["France"]);
    // One label point per country, on its mainland: France's in France (not in Guiana), once.
    assert_eq!(
        names_at(&app, "country_labels", 2.41, 46.67, 8, "").await,
        ["France"]
    );
    assert!(
        !names_at(&app, "country_labels", -53.0, 4.0, 5, "")
            .await
            .contains(&"France".to_owned()),
        "no second label in Guiana"
    );
    let world = app.get("/tiles/countries/0/0/0").await;
    assert_eq!(world.status(), 200);
    assert_eq!(
        world.headers()["cache-control"],
        "public, max-age=3600",
        "clients keep basemap tiles an hour"
    );
    // Chukotka lies west of the antimeridian: Russia reaches it only if it was split correctly.
    assert!(
        names_at(&app, "countries", -175.0, 66.0, 6, "")
            .await
            .contains(&"Russia".to_owned())
    );
    assert!(
        names_at(&app, "countries", 178.0, -17.8, 7, "")
            .await
            .contains(&"Fiji".to_owned())
    );
    // Nothing sweeps the Pacific: the middle of the ocean is empty.
    assert!(names_at(&app, "countries", -150.0, 0.0, 5, "").await.is_empty());
    let world = app.get("/tiles/countries/0/0/0").await;
    assert_eq!(world.status(), 200);
    let size = world.bytes().await.expect("bytes").len();
    assert!(size < 200_000, "z0 stays small: {size} bytes");
    let tilejson = json_with_status(app.get("/tiles/countries").await, 200).await;
    assert_eq!(
        tilejson["vector_layers"][0]["fields"],
        json!({"name": "String", "iso_n3": "String"})
    );
    assert!(
        tilejson["attribution"]
            .as_str()
            .expect("attribution")
            .contains("Natural Earth")
    );
    let [w, s, e, n] = [0, 1, 2, 3].map(|i| tilejson["bounds"][i].as_f64().expect("bounds"));
    assert!(
        w < -170.0 && e > 170.0 && s < -50.0 && n > 70.0,
        "the import analysed the table: {}",
        tilejson["bounds"]
    );

    // A re-import (here France renamed) reaches the cached tile through NOTIFY geotrack_tiles.
    let renamed = std::str::from_utf8(geotrack::web::COUNTRIES)
        .expect("utf-8")
        .replace("\"France\"", "\"République française\"");
    tiles::basemap::import(&app.db, renamed.as_bytes())
        .await
        .expect("re-import");
    assert!(
        eventually(async || names_at(&app, "countries", 2.35, 48.85, 8, "").await == ["République française"])
            .await,
        "the cached tile was dropped on import"
    );
    assert_eq!(
        names_at(&app, "country_labels", 2.41, 46.67, 8, "").await,
        ["République française"],
        "the labels' cached tile too"
    );
    app.stop().await;
}

/// A `[[tiles.tables]]` entry with the defaults.
fn table_layer(name: &str, table: &str) -> TableLayerConfig {
    TableLayerConfig {
        name: name.into(),
        table: table.into(),
        geometry: None,
        columns: None,
        id: None,
        description: String::new(),
        attribution: String::new(),
        minzoom: 0,
        maxzoom: 22,
        ttl_s: 60,
    }
}

/// A table in Lambert-93 (SRID 2154) served through `[[tiles.tables]]`.
async fn roads_app() -> TestApp {
    let app = spawn_with(|c| {
        c.tiles.tables = vec![TableLayerConfig {
            description: "Roads".into(),
            attribution: "© Roads Inc.".into(),
            minzoom: 5,
            maxzoom: 16,
            ttl_s: 3600,
            id: Some("gid".into()),
            ..table_layer("roads", "public.roads")
        }];
    })
    .await;
    for statement in [
        "CREATE TABLE roads (gid serial PRIMARY KEY, name text, lanes integer, opened date,
                             geom geometry(LineString, 2154))",
        "INSERT INTO roads (name, lanes, opened, geom) VALUES
            ('Quai', 2, '1900-01-01', ST_Transform(ST_SetSRID(ST_MakeLine(ST_MakePoint(2.34, 48.85), ST_MakePoint(2.36, 48.86)), 4326), 2154))",
    ] {
        sqlx::query(statement).execute(&app.db).await.expect("roads");
    }
    app
}

#[tokio::test]
async fn tilejson_gives_an_operator_table_its_bounds_centre_and_attribution_and_describes_joined_layers() {
    let app = roads_app().await;
    let tilejson = json_with_status(app.get("/tiles/roads").await, 200).await;
    assert_eq!(tilejson["attribution"], "© Roads Inc.");
    assert_eq!(
        tilejson["bounds"],
        json!([-180.0, -85.051_129, 180.0, 85.051_129]),
        "no statistics yet: the world"
    );
    // Once analysed, the table's estimated extent (Lambert-93 back to WGS 84) and its centre.
    sqlx::query("ANALYZE roads")
        .execute(&app.db)
        .await
        .expect("analyze");
    let tilejson = json_with_status(app.get("/tiles/roads").await, 200).await;
    let [west, south, east, north] = [0, 1, 2, 3].map(|i| tilejson["bounds"][i].as_f64().expect("bounds"));
    assert!(
        west < 2.341 && east > 2.359 && south < 48.851 && north > 48.859,
        "{}",
        tilejson["bounds"]
    );
    assert!(east - west < 0.1 && north - south < 0.1, "{}", tilejson["bounds"]);
    let centre = &tilejson["center"];
    assert!((centre[0].as_f64().expect("lon") - 2.35).abs() < 0.01, "{centre}");
    assert!((5..=16).contains(&centre[2].as_u64().expect("zoom")), "{centre}");
    // Layers joined: one TileJSON for the composite tile URL, every layer listed.
    let joined = json_with_status(app.get("/tiles/fences,roads").await, 200).await;
    assert_eq!(joined["name"], "fences,roads");
    assert!(
        joined["tiles"][0]
            .as_str()
            .expect("url")
            .contains("/tiles/fences,roads/{z}/{x}/{y}.mvt")
    );
    let ids: Vec<&str> = joined["vector_layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["fences", "roads"]);
    assert_eq!(
        (joined["minzoom"].as_u64(), joined["maxzoom"].as_u64()),
        (Some(0), Some(u64::from(tiles::MAX_ZOOM)))
    );
    assert_eq!(joined["attribution"], "© Roads Inc.");
    assert_eq!(app.get("/tiles/fences,nowhere").await.status(), 404);
    app.stop().await;
}

/// `POST /tiles/roads/invalidate?bbox=...`, expecting `status`; the JSON reply.
async fn invalidate_roads(app: &TestApp, bbox: &str, status: u16) -> serde_json::Value {
    let path = format!("/tiles/roads/invalidate?bbox={bbox}");
    json_with_status(
        app.send_json(reqwest::Method::POST, &path, &json!({})).await,
        status,
    )
    .await
}

#[tokio::test]
async fn an_operator_table_is_a_layer_with_its_columns_its_zooms_and_an_invalidate_endpoint() {
    let app = roads_app().await;
    let (x, y) = tile_of(2.35, 48.855, 12);
    let path = format!("/tiles/roads/12/{x}/{y}");
    let (status, decoded) = tile(&app, &path).await;
    assert_eq!(status, 200);
    let features = &decoded.expect("tile")["roads"];
    assert_eq!(features.len(), 1);
    let (id, props) = &features[0];
    assert_eq!(*id, 1, "the gid column is the feature id");
    assert_eq!(
        props
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect::<Vec<_>>(),
        [("lanes", "2"), ("name", "Quai"), ("opened", "1900-01-01")]
    );
    let tilejson = json_with_status(app.get("/tiles/roads").await, 200).await;
    assert_eq!(
        tilejson["vector_layers"][0]["fields"],
        json!({"name": "String", "lanes": "Number", "opened": "String"})
    );
    assert_eq!(
        (tilejson["minzoom"].as_u64(), tilejson["maxzoom"].as_u64()),
        (Some(5), Some(16))
    );
    assert_eq!(app.get("/tiles/roads/4/8/5").await.status(), 204, "below minzoom");

    // A write behind geotrack's back shows once invalidated (the TTL is an hour).
    sqlx::query("UPDATE roads SET name = 'Quai neuf'")
        .execute(&app.db)
        .await
        .expect("update");
    assert_eq!(
        names_at(&app, "roads", 2.35, 48.855, 12, "").await,
        ["Quai"],
        "cached"
    );
    assert_eq!(
        invalidate_roads(&app, "100,10,101,11", 200).await["bboxes"],
        json!([[100.0, 10.0, 101.0, 11.0]])
    );
    assert_eq!(
        names_at(&app, "roads", 2.35, 48.855, 12, "").await,
        ["Quai"],
        "not touched"
    );
    invalidate_roads(&app, "2.3,48.8,2.4,48.9", 200).await;
    assert_eq!(names_at(&app, "roads", 2.35, 48.855, 12, "").await, ["Quai neuf"]);
    // From a trigger or a script: NOTIFY geotrack_tiles, '<layer>'.
    sqlx::query("UPDATE roads SET name = 'Quai vieux'")
        .execute(&app.db)
        .await
        .expect("update");
    sqlx::query("NOTIFY geotrack_tiles, 'roads'")
        .execute(&app.db)
        .await
        .expect("notify");
    assert!(eventually(async || names_at(&app, "roads", 2.35, 48.855, 12, "").await == ["Quai vieux"]).await);

    assert_eq!(
        invalidate_roads(&app, "1,2,3", 400).await["error"]["code"],
        "invalid_bbox"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_misconfigured_table_layer_is_a_503_that_says_why() {
    let app = spawn_with(|c| {
        c.tiles.tables = vec![table_layer("ghost", "nowhere")];
    })
    .await;
    let reply = json_with_status(app.get("/tiles/ghost/1/0/0").await, 503).await;
    assert_eq!(reply["error"]["code"], "layer_unavailable");
    let message = reply["error"]["message"].as_str().expect("message");
    assert!(
        message.contains("public.nowhere has no geometry column"),
        "{message}"
    );
    app.stop().await;
}

#[tokio::test]
async fn tracks_are_lines_per_device_over_a_window_and_never_stale_after_ingest() {
    let app = spawn_app().await;
    let now = chrono::Utc::now();
    // A bus drove through Paris between 2 h and 1 h ago, one fix a minute.
    let fixes: Vec<serde_json::Value> = (0..60)
        .map(|i| fix("bus-7", 7_200 - i * 60, 2.30 + i as f64 * 0.001, 48.85))
        .collect();
    json_with_status(app.post_json(&json!(fixes)).await, 202).await;
    let window = format!(
        "?from={}&to={}",
        (now - chrono::Duration::hours(3)).timestamp(),
        (now - chrono::Duration::minutes(30)).timestamp()
    );
    let (x, y) = tile_of(2.33, 48.85, 12);
    let path = format!("/tiles/tracks/12/{x}/{y}{window}");
    let (status, decoded) = tile(&app, &path).await;
    assert_eq!(status, 200);
    let features = &decoded.expect("tile")["tracks"];
    assert_eq!(features.len(), 1);
    assert_eq!(features[0].1["device"], "bus-7");
    assert_eq!(features[0].1["fixes"], "60");
    let etag = app.get(&path).await.headers()["etag"].clone();
    assert_eq!(
        app.get(&path).await.headers()["cache-control"],
        "public, no-cache",
        "an absolute window is cacheable"
    );

    // Late fixes inside the window change the cached tile at once.
    let late = json!([
        fix("bus-7", 3_000, 2.365, 48.85),
        fix("bus-7", 2_900, 2.37, 48.85)
    ]);
    json_with_status(app.post_json(&late).await, 202).await;
    let (_, decoded) = tile(&app, &path).await;
    assert_eq!(decoded.expect("tile")["tracks"][0].1["fixes"], "62");
    assert_ne!(app.get(&path).await.headers()["etag"], etag);

    // Outside the window, another place, or before it: nothing.
    let before = format!(
        "?from={}&to={}",
        (now - chrono::Duration::hours(9)).timestamp(),
        (now - chrono::Duration::hours(8)).timestamp()
    );
    assert_eq!(
        app.get(&format!("/tiles/tracks/12/{x}/{y}{before}"))
            .await
            .status(),
        204
    );
    assert_eq!(
        app.get(&format!("/tiles/tracks/12/100/100{window}"))
            .await
            .status(),
        204
    );
    // Without a window: the last hour (tiles.tracks_window_s), not cached.
    let recent = app.get(&format!("/tiles/tracks/12/{x}/{y}")).await;
    assert_eq!(recent.status(), 200, "the late fixes are within the last hour");
    assert_eq!(recent.headers()["cache-control"], "public, max-age=1");

    for (query, code) in [
        (
            format!("?from={}&to={}", now.timestamp(), now.timestamp() - 1),
            "invalid_window",
        ),
        (
            format!("?from={}&to={}", now.timestamp() - 30 * 86_400, now.timestamp()),
            "invalid_window",
        ),
        ("?from=yesterday".to_owned(), "invalid_time"),
    ] {
        let reply = json_with_status(app.get(&format!("/tiles/tracks/12/{x}/{y}{query}")).await, 400).await;
        assert_eq!(reply["error"]["code"], code, "{query}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_track_hopping_the_antimeridian_does_not_sweep_the_globe() {
    let app = spawn_app().await;
    let fixes = json!([
        fix("ferry", 600, 179.7, -17.0),
        fix("ferry", 540, 179.9, -17.0),
        fix("ferry", 480, -179.9, -17.0),
        fix("ferry", 420, -179.7, -17.0),
    ]);
    json_with_status(app.post_json(&fixes).await, 202).await;
    // Both sides of the antimeridian have their part of the line...
    assert_eq!(names_at(&app, "tracks", 179.8, -17.0, 8, "").await, ["ferry"]);
    assert_eq!(names_at(&app, "tracks", -179.8, -17.0, 8, "").await, ["ferry"]);
    // ...and the rest of the world at that latitude has none of it.
    assert!(names_at(&app, "tracks", 0.0, -17.0, 3, "").await.is_empty());
    assert!(names_at(&app, "tracks", -100.0, -17.0, 3, "").await.is_empty());
    app.stop().await;
}
