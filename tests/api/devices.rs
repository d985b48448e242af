//! `GET /api/v1/devices/{id}`: the live position as a GeoJSON Feature.

use serde_json::json;

use crate::helpers::{fix, json_with_status, spawn_app};

#[tokio::test]
async fn the_live_position_is_a_feature_with_all_fields() {
    let app = spawn_app().await;
    let now = chrono::Utc::now().to_rfc3339();
    let body = json!({"device": "truck 7/α", "ts": now, "lon": -3.7, "lat": 40.4, "speed_mps": 12.5,
                      "heading_deg": 270, "battery": 55, "attrs": {"driver": "ana"}});
    json_with_status(app.post_json(&body).await, 202).await;

    let feature = json_with_status(app.get("/api/v1/devices/truck%207%2F%CE%B1").await, 200).await;
    assert_eq!(feature["type"], "Feature");
    assert_eq!(feature["id"], "truck 7/α");
    assert_eq!(
        feature["geometry"],
        json!({"type": "Point", "coordinates": [-3.7, 40.4]})
    );
    let props = &feature["properties"];
    assert_eq!(props["speed_mps"], 12.5);
    assert_eq!(props["heading_deg"], 270.0);
    assert_eq!(props["battery"], 55.0);
    assert_eq!(props["attrs"], json!({"driver": "ana"}));
    assert!(props["received_at"].is_string());
    let stored: chrono::DateTime<chrono::Utc> = props["ts"].as_str().expect("ts").parse().expect("rfc3339");
    let sent: chrono::DateTime<chrono::Utc> = now.parse().expect("rfc3339");
    assert_eq!(stored.timestamp_micros(), sent.timestamp_micros());
    app.stop().await;
}

#[tokio::test]
async fn numbers_at_the_ends_of_the_double_range_read_back_as_they_were_written() {
    // PostgreSQL prints a jsonb number in full (309 digits for 1.7976931348623155e308): it
    // must parse back to the same double, in the registry and in a fix's attributes.
    let app = spawn_app().await;
    let numbers = json!({"max": f64::MAX, "near_min": -1.797_693_134_862_315_5e308,
                         "tiny": 5e-324, "small": -2.225_073_858_507_201_4e-308, "third": 1.0 / 3.0});
    let registered = json_with_status(
        app.send_json(
            reqwest::Method::PUT,
            "/api/v1/devices/extreme",
            &json!({"attributes": numbers}),
        )
        .await,
        201,
    )
    .await;
    assert_eq!(registered["attributes"], numbers);
    let body = json!({"device": "extreme", "ts": chrono::Utc::now().to_rfc3339(), "lon": 1.0,
                      "lat": 2.0, "attrs": numbers});
    json_with_status(app.post_json(&body).await, 202).await;
    let feature = json_with_status(app.get("/api/v1/devices/extreme").await, 200).await;
    assert_eq!(feature["properties"]["attrs"], numbers);
    assert_eq!(feature["properties"]["attributes"], numbers);
    app.stop().await;
}

#[tokio::test]
async fn an_unknown_device_is_a_json_404() {
    let app = spawn_app().await;
    let reply = json_with_status(app.get("/api/v1/devices/nobody").await, 404).await;
    assert_eq!(reply["error"]["code"], "device_not_found");
    app.stop().await;
}

#[tokio::test]
async fn the_fleet_list_pages_by_device_id_and_filters_by_bbox() {
    let app = spawn_app().await;
    let fixes: Vec<serde_json::Value> = (0..25)
        .map(|i| fix(&format!("dev-{i:02}"), 1, -10.0 + f64::from(i), 0.0))
        .collect();
    json_with_status(app.post_json(&json!(fixes)).await, 202).await;

    let mut next = Some("/api/v1/devices?limit=10".to_owned());
    let mut seen = Vec::new();
    while let Some(path) = next {
        let page = json_with_status(app.get(&path).await, 200).await;
        assert_eq!(page["type"], "FeatureCollection");
        for feature in page["features"].as_array().expect("features") {
            seen.push(feature["id"].as_str().expect("id").to_owned());
        }
        next = page["next"].as_str().map(str::to_owned);
    }
    let expected: Vec<String> = (0..25).map(|i| format!("dev-{i:02}")).collect();
    assert_eq!(seen, expected, "every device exactly once, in id order");

    let inside = json_with_status(app.get("/api/v1/devices?bbox=-5.5,-1,0.5,1").await, 200).await;
    assert_eq!(
        inside["features"].as_array().expect("features").len(),
        6,
        "lon -5..0"
    );
    for bad in ["1,2,3", "a,b,c,d", "0,10,1,5", "-181,0,0,1"] {
        let reply = app.get(&format!("/api/v1/devices?bbox={bad}")).await;
        assert_eq!(
            json_with_status(reply, 400).await["error"]["code"],
            "invalid_bbox",
            "{bad}"
        );
    }
    assert_eq!(app.get("/api/v1/devices?limit=0").await.status(), 400);
    app.stop().await;
}

#[tokio::test]
async fn a_bbox_across_the_antimeridian_covers_both_sides() {
    let app = spawn_app().await;
    let fixes = json!([
        fix("east", 1, 179.5, 10.0),
        fix("west", 1, -179.5, 10.0),
        fix("far", 1, 0.0, 10.0)
    ]);
    json_with_status(app.post_json(&fixes).await, 202).await;
    let page = json_with_status(app.get("/api/v1/devices?bbox=179,5,-179,15").await, 200).await;
    let ids: Vec<&str> = page["features"]
        .as_array()
        .expect("features")
        .iter()
        .map(|f| f["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["east", "west"]);
    app.stop().await;
}

#[tokio::test]
async fn a_track_exports_as_geojson_gpx_and_csv() {
    let app = spawn_app().await;
    let fixes = json!([
        {"device": "trk", "ts": "2026-11-20T10:00:00Z", "lon": 1.0, "lat": 2.0, "altitude_m": 5.0, "speed_mps": 3.0},
        {"device": "trk", "ts": "2026-11-20T10:01:00Z", "lon": 1.1, "lat": 2.1},
        {"device": "trk", "ts": "2026-11-20T10:02:00Z", "lon": 1.2, "lat": 2.2},
    ]);
    json_with_status(app.post_json(&fixes).await, 202).await;
    let window = "from=2026-11-20T10:00:00Z&to=2026-11-20T10:02:00Z";

    let geojson = app.get(&format!("/api/v1/devices/trk/track?{window}")).await;
    assert_eq!(geojson.headers()["content-type"], "application/geo+json");
    let collection = json_with_status(geojson, 200).await;
    let features = collection["features"].as_array().expect("features");
    assert_eq!(features.len(), 2, "`to` is exclusive");
    assert_eq!(features[0]["properties"]["speed_mps"], 3.0);

    let csv = app
        .get(&format!("/api/v1/devices/trk/track?{window}&format=csv"))
        .await
        .text()
        .await
        .expect("csv");
    assert_eq!(
        csv,
        "device,ts,lon,lat,speed_mps,heading_deg,accuracy_m,altitude_m,battery,attrs\n\
         trk,2026-11-20T10:00:00Z,1,2,3,,,5,,\ntrk,2026-11-20T10:01:00Z,1.1,2.1,,,,,,\n"
    );
    let by_accept = app
        .get_with(
            &format!("/api/v1/devices/trk/track?{window}"),
            "accept",
            "text/csv, */*;q=0.1",
        )
        .await;
    assert_eq!(by_accept.headers()["content-type"], "text/csv; charset=utf-8");
    assert_eq!(
        by_accept.text().await.expect("csv"),
        csv,
        "Accept chooses without `format`"
    );
    let gpx = app
        .get("/api/v1/devices/trk/track?from=1795168800&to=1795176000&format=gpx")
        .await;
    assert_eq!(gpx.headers()["content-type"], "application/gpx+xml");
    let gpx = gpx.text().await.expect("gpx");
    assert_eq!(gpx.matches("<trkpt ").count(), 3, "{gpx}");
    assert!(
        gpx.contains(
            "<trkpt lat=\"2\" lon=\"1\"><ele>5</ele><time>2026-11-20T10:00:00Z</time><extensions>\
             <gpxtpx:TrackPointExtension><gpxtpx:speed>3</gpxtpx:speed></gpxtpx:TrackPointExtension>\
             </extensions></trkpt>"
        ),
        "{gpx}"
    );

    let default_window = json_with_status(app.get("/api/v1/devices/trk/track").await, 200).await;
    assert_eq!(
        default_window["features"].as_array().expect("features").len(),
        0,
        "older than 24 h"
    );
    for (query, code) in [
        ("format=kml", "invalid_format"),
        ("from=tomorrow", "invalid_time"),
        (
            "from=2026-11-21T00:00:00Z&to=2026-11-20T00:00:00Z",
            "invalid_range",
        ),
    ] {
        let reply = app.get(&format!("/api/v1/devices/trk/track?{query}")).await;
        assert_eq!(
            json_with_status(reply, 400).await["error"]["code"],
            code,
            "{query}"
        );
    }
    assert_eq!(app.get("/api/v1/devices/nobody/track").await.status(), 404);
    app.stop().await;
}

/// Peak resident memory of this process so far, in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM");
    line.split_whitespace()
        .nth(1)
        .expect("value")
        .parse()
        .expect("number")
}

#[tokio::test]
async fn a_million_point_export_streams_in_bounded_memory() {
    let app = spawn_app().await;
    json_with_status(app.post_json(&fix("big", 1, 0.0, 0.0)).await, 202).await;
    sqlx::query(
        "INSERT INTO positions (device, ts, geom, speed_mps, received_at, shard)
         SELECT 'big', now() - interval '20 hours' + i * interval '50 ms',
                ST_SetSRID(ST_MakePoint(i * 1e-6, 45), 4326), 10, now(), 0
         FROM generate_series(1, 1000000) AS i",
    )
    .execute(&app.db)
    .await
    .expect("a million fixes");

    let before = peak_rss_kib();
    let mut reply = app.get("/api/v1/devices/big/track?format=csv").await;
    assert_eq!(reply.status(), 200);
    let (mut bytes, mut lines) = (0usize, 0usize);
    while let Some(chunk) = reply.chunk().await.expect("chunk") {
        bytes += chunk.len();
        lines += chunk.split(|b| *b == b'\n').count() - 1;
    }
    let growth_mib = (peak_rss_kib().saturating_sub(before)) / 1024;
    println!(
        "exported 1,000,001 points: {} MiB of CSV; peak RSS grew by {growth_mib} MiB",
        bytes >> 20
    );
    assert_eq!(lines, 1 + 1_000_001, "header + every point");
    assert!(
        growth_mib < 64,
        "the export is buffered, not streamed: +{growth_mib} MiB for {} MiB",
        bytes >> 20
    );
    app.stop().await;
}

#[tokio::test]
async fn erasing_a_device_removes_its_history_and_live_position() {
    let app = spawn_app().await;
    let fixes = json!([
        fix("gone", 3, 1.0, 1.0),
        fix("gone", 2, 1.0, 1.0),
        fix("kept", 1, 1.0, 1.0)
    ]);
    json_with_status(app.post_json(&fixes).await, 202).await;
    let erased = app.delete("/api/v1/devices/gone").await;
    assert_eq!(
        json_with_status(erased, 200).await,
        json!({"device": "gone", "erased_positions": 2})
    );
    assert_eq!(app.get("/api/v1/devices/gone").await.status(), 404);
    let again = app.delete("/api/v1/devices/gone").await;
    assert_eq!(again.status(), 404);
    assert_eq!(app.stored().await, 1, "other devices keep their history");
    let registered: i64 = sqlx::query_scalar("SELECT count(*) FROM devices WHERE id = 'gone'")
        .fetch_one(&app.db)
        .await
        .expect("count");
    assert_eq!(registered, 0);
    app.stop().await;
}

#[tokio::test]
async fn a_device_is_named_and_described_in_the_registry() {
    let app = spawn_app().await;
    let put = async |body: serde_json::Value| {
        app.send_json(reqwest::Method::PUT, "/api/v1/devices/van-7", &body)
            .await
    };
    let created = json_with_status(
        put(json!({"name": "Van 7", "attributes": {"plate": "AB-123-CD"}})).await,
        201,
    )
    .await;
    assert_eq!(created["id"], "van-7");
    assert_eq!(created["attributes"], json!({"plate": "AB-123-CD"}));
    assert!(created["created_at"].is_string());
    // Not reported yet: no live position to show.
    assert_eq!(app.get("/api/v1/devices/van-7").await.status(), 404);

    json_with_status(app.post_json(&fix("van-7", 1, 2.35, 48.85)).await, 202).await;
    let replaced = json_with_status(
        put(json!({"name": "Van 7 (Lyon)", "attributes": {"plate": "AB-123-CD", "capacity_kg": 800}})).await,
        200,
    )
    .await;
    assert_eq!(replaced["name"], "Van 7 (Lyon)");
    let feature = json_with_status(app.get("/api/v1/devices/van-7").await, 200).await;
    assert_eq!(feature["properties"]["name"], "Van 7 (Lyon)");
    assert_eq!(feature["properties"]["attributes"]["capacity_kg"], 800);

    let huge = "x".repeat(20_000);
    for (body, needle) in [
        (json!(["Van 7"]), "JSON object"),
        (json!({"name": "bad\u{202e}name"}), "invisible"),
        (json!({"name": "x".repeat(201)}), "200 characters"),
        (json!({"attributes": {"notes": huge}}), "limit"),
        (json!({"owner": "me"}), "unknown field"),
        (json!({"attributes": {"a": ["ok", {"b\u{0}": 1}]}}), "NUL"),
    ] {
        let reply = json_with_status(put(body.clone()).await, 400).await;
        assert_eq!(reply["error"]["code"], "invalid_device", "{body}");
        assert!(
            reply["error"]["message"]
                .as_str()
                .expect("message")
                .contains(needle),
            "{reply}"
        );
    }
    // Erasing a device forgets its registration too.
    json_with_status(app.delete("/api/v1/devices/van-7").await, 200).await;
    assert_eq!(
        json_with_status(put(json!({})).await, 201).await["name"],
        serde_json::Value::Null
    );
    app.stop().await;
}
