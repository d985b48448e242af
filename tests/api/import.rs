//! `geotrack import gpx`: a track file becomes history, de-duplicated on re-import, and the
//! GPX export of the API reads back as the same points.

use std::path::PathBuf;

use crate::helpers::{circle, eventually, geotrack, names_at, spawn_with, wait_until};

#[tokio::test]
async fn a_gpx_track_imports_once_and_exports_back_as_the_same_points() {
    let app = spawn_with(|_| {}).await;
    let file =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/gpx/track-1.1-garmin-extensions.gpx");
    let xml = std::fs::read_to_string(&file).expect("fixture");
    let points = tracker::gpx::parse(&xml).expect("fixture parses");
    let timed: Vec<_> = points.iter().filter(|p| p.time.is_some()).collect();
    assert!(
        !timed.is_empty() && timed.len() < points.len(),
        "the fixture has points with and without time"
    );

    let from = timed.iter().filter_map(|p| p.time).min().expect("time");
    let to = timed.iter().filter_map(|p| p.time).max().expect("time") + chrono::Duration::seconds(1);
    // The running server caches the (empty) track tile of the hike's window before the import.
    let window = format!("?from={}&to={}", from.timestamp(), to.timestamp());
    let (lon, lat) = (timed[0].lon, timed[0].lat);
    assert!(names_at(&app, "tracks", lon, lat, 14, &window).await.is_empty());

    let import = || {
        let file = file.to_str().expect("path");
        let args = [
            "import",
            "gpx",
            file,
            "--device",
            "hiker",
            "--database-url",
            &app.db_url,
        ];
        async move {
            let output = geotrack(&args).await;
            assert!(output.status.success(), "{output:?}");
            String::from_utf8(output.stdout).expect("utf-8")
        }
    };
    let skipped = points.len() - timed.len();
    let first = import().await;
    assert!(
        first.contains(&format!(
            ": {} points, {} stored, 0 already stored, {skipped} skipped",
            points.len(),
            timed.len()
        )),
        "points without time are skipped: {first}"
    );
    let second = import().await;
    assert!(
        second.contains(&format!(", 0 stored, {} already stored,", timed.len())),
        "{second}"
    );
    assert_eq!(app.stored().await, timed.len() as i64);

    assert!(
        eventually(async || names_at(&app, "tracks", lon, lat, 14, &window).await == ["hiker"]).await,
        "the server's cached track tile shows the import (NOTIFY geotrack_tiles)"
    );
    let path = format!(
        "/api/v1/devices/hiker/track?format=gpx&from={}&to={}",
        from.timestamp(),
        to.timestamp()
    );
    let exported = app.get(&path).await.text().await.expect("gpx");
    let round_trip = tracker::gpx::parse(&exported).expect("the export is GPX");
    assert_eq!(round_trip.len(), timed.len());
    for (original, back) in timed.iter().zip(&round_trip) {
        assert_eq!(
            (original.lon, original.lat, original.ele, original.time),
            (back.lon, back.lat, back.ele, back.time)
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn importing_fences_from_a_file_reaches_a_running_server() {
    let app = spawn_with(|_| {}).await;
    let dir = std::env::temp_dir().join(format!("geotrack-fences-{}", app.db_name));
    std::fs::create_dir_all(&dir).expect("dir");
    let import = |file: std::path::PathBuf| {
        let db_url = app.db_url.clone();
        async move {
            let file = file.to_str().expect("path").to_owned();
            geotrack(&["import", "fences", &file, "--database-url", &db_url]).await
        }
    };

    let bad = dir.join("bad.geojson");
    let collection = serde_json::json!({"type": "FeatureCollection", "features": [circle("ok", 7.0, 45.0, 100.0), circle("bad", 7.0, 45.0, -5.0)]});
    std::fs::write(&bad, collection.to_string()).expect("write");
    let refused = import(bad).await;
    // The error is logged (to standard error, as every log line of the binary).
    let error = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "an invalid file is an error");
    assert!(error.contains("1 of 2 features are invalid"), "{error}");

    let good = dir.join("good.geojson");
    let collection =
        serde_json::json!({"type": "FeatureCollection", "features": [circle("alps", 7.0, 45.0, 1000.0)]});
    std::fs::write(&good, collection.to_string()).expect("write");
    let imported = import(good).await;
    assert!(imported.status.success(), "{imported:?}");
    assert!(String::from_utf8_lossy(&imported.stdout).ends_with(": 1 fences imported\n"));
    wait_until("the server never reloaded its fences", async || {
        app.get("/api/v1/fences/alps").await.status() == 200
    })
    .await;
    assert_eq!(
        app.get("/api/v1/fences/ok").await.status(),
        404,
        "nothing of the invalid file was stored"
    );

    // Files without ids: generated and listed, or taken from a property (a re-import replaces).
    let mut anonymous = circle("", 8.0, 46.0, 500.0);
    anonymous["properties"]["name"] = serde_json::json!("Bern");
    anonymous.as_object_mut().expect("feature").remove("id");
    let unnamed = dir.join("unnamed.geojson");
    let collection = serde_json::json!({"type": "FeatureCollection", "features": [anonymous]});
    std::fs::write(&unnamed, collection.to_string()).expect("write");
    let generated = import(unnamed.clone()).await;
    let listing = String::from_utf8_lossy(&generated.stdout);
    assert!(
        listing.contains("generated ids (feature index: id):\n0: f"),
        "{listing}"
    );
    let by_name = |file: std::path::PathBuf| {
        let db_url = app.db_url.clone();
        async move {
            let file = file.to_str().expect("path").to_owned();
            geotrack(&[
                "import",
                "fences",
                &file,
                "--id-property",
                "name",
                "--database-url",
                &db_url,
            ])
            .await
        }
    };
    for _ in 0..2 {
        let imported = by_name(unnamed.clone()).await;
        assert!(imported.status.success(), "{imported:?}");
    }
    let stored: Vec<String> = sqlx::query_scalar("SELECT id FROM fences WHERE name = 'Bern' ORDER BY id")
        .fetch_all(&app.db)
        .await
        .expect("ids");
    assert_eq!(
        stored.len(),
        2,
        "one generated, one named Bern (imported twice): {stored:?}"
    );
    assert!(stored.contains(&"Bern".to_owned()), "{stored:?}");
    let _ = std::fs::remove_dir_all(&dir);
    app.stop().await;
}
