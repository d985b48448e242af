//! Vector tiles built by PostGIS: decoded and checked feature by feature.

use std::collections::BTreeMap;

use geozero::mvt::{Message, Tile};
use serde_json::json;

use crate::helpers::{TestApp, fix, json_with_status, spawn_app};

/// Layer name -> features as (id, properties) of a decoded tile.
type Decoded = BTreeMap<String, Vec<(u64, BTreeMap<String, String>)>>;

async fn tile(app: &TestApp, path: &str) -> (u16, Option<Decoded>) {
    let reply = app.get(path).await;
    let status = reply.status().as_u16();
    if status != 200 {
        return (status, None);
    }
    assert_eq!(
        reply.headers()["content-type"],
        "application/vnd.mapbox-vector-tile"
    );
    let bytes = reply.bytes().await.expect("bytes");
    let decoded = Tile::decode(bytes.as_ref()).expect("a valid vector tile");
    let mut layers = BTreeMap::new();
    for layer in decoded.layers {
        assert_eq!(layer.extent, Some(4096));
        let features = layer
            .features
            .iter()
            .map(|feature| {
                let props = feature
                    .tags
                    .chunks(2)
                    .map(|pair| {
                        let value = &layer.values[pair[1] as usize];
                        let text = value
                            .string_value
                            .clone()
                            .or_else(|| value.double_value.map(|v| v.to_string()))
                            .unwrap_or_default();
                        (layer.keys[pair[0] as usize].clone(), text)
                    })
                    .collect();
                assert!(!feature.geometry.is_empty(), "every feature has a geometry");
                (feature.id.expect("feature ids are set"), props)
            })
            .collect();
        layers.insert(layer.name, features);
    }
    (status, Some(layers))
}

#[tokio::test]
async fn fences_and_positions_tiles_hold_the_stored_features() {
    let app = spawn_app().await;
    let square = json!({"type": "Feature", "id": "yard", "geometry": {"type": "Polygon",
        "coordinates": [[[10.0, 10.0], [11.0, 10.0], [11.0, 11.0], [10.0, 11.0], [10.0, 10.0]]]},
        "properties": {"name": "Yard"}});
    let polar = json!({"type": "Feature", "id": "pole", "geometry": {"type": "Point", "coordinates": [0.0, -89.9]},
        "properties": {"radius_m": 800_000}});
    for fence in [&square, &polar] {
        let reply = app
            .client
            .post(app.url("/api/v1/fences"))
            .json(fence)
            .send()
            .await
            .expect("sent");
        json_with_status(reply, 201).await;
    }
    json_with_status(
        app.post_json(&json!([
            fix("truck-1", 1, 10.5, 10.5),
            fix("truck-2", 1, -120.0, 40.0)
        ]))
        .await,
        202,
    )
    .await;

    let (status, layers) = tile(&app, "/tiles/fences/0/0/0").await;
    assert_eq!(status, 200);
    let fences = &layers.expect("tile")["fences"];
    assert_eq!(
        fences.len(),
        2,
        "the polar fence is clipped to Web Mercator, not dropped: {fences:?}"
    );
    let yard = fences.iter().find(|(_, p)| p["id"] == "yard").expect("yard");
    assert_eq!(
        (yard.1["name"].as_str(), yard.1["kind"].as_str()),
        ("Yard", "polygon")
    );
    assert_ne!(fences[0].0, fences[1].0, "distinct feature ids");

    // z=4 tile 8/7 covers lon 0..22.5, lat 0..21.9: the yard and truck-1 only.
    let (_, layers) = tile(&app, "/tiles/positions/4/8/7.mvt").await;
    let positions = &layers.expect("tile")["positions"];
    assert_eq!(positions.len(), 1);
    assert_eq!(positions[0].1["device"], "truck-1");
    assert!(positions[0].1["ts"].ends_with('Z'), "{:?}", positions[0].1);
    let (_, again) = tile(&app, "/tiles/positions/4/8/7.pbf").await;
    assert_eq!(
        again.expect("tile")["positions"][0].0,
        positions[0].0,
        "ids are stable"
    );

    assert_eq!(tile(&app, "/tiles/fences/4/0/0").await.0, 204, "an empty tile");
    app.stop().await;
}

#[tokio::test]
async fn bad_tile_addresses_are_json_errors() {
    let app = spawn_app().await;
    for (path, status, code) in [
        ("/tiles/roads/0/0/0", 404, "unknown_layer"),
        ("/tiles/fences/23/0/0", 400, "invalid_tile"),
        ("/tiles/fences/2/4/0", 400, "invalid_tile"),
        ("/tiles/fences/1/0/0.png", 400, "invalid_tile"),
    ] {
        assert_eq!(
            json_with_status(app.get(path).await, status).await["error"]["code"],
            code,
            "{path}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn browsers_on_other_origins_may_fetch_tiles() {
    let app = spawn_app().await;
    let preflight = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/tiles/fences/0/0/0"))
        .header("origin", "http://maps.example")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .expect("sent");
    assert!(preflight.status().is_success(), "{}", preflight.status());
    assert_eq!(preflight.headers()["access-control-allow-origin"], "*");
    let reply = app
        .client
        .get(app.url("/tiles/fences/0/0/0"))
        .header("origin", "http://maps.example")
        .send()
        .await
        .expect("sent");
    assert_eq!(reply.headers()["access-control-allow-origin"], "*");
    app.stop().await;
}
