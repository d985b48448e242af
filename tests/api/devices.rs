//! `GET /api/v1/devices/{id}`: the live position as a GeoJSON Feature.

use serde_json::json;

use crate::helpers::{json_with_status, spawn_app};

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
async fn an_unknown_device_is_a_json_404() {
    let app = spawn_app().await;
    let reply = json_with_status(app.get("/api/v1/devices/nobody").await, 404).await;
    assert_eq!(reply["error"]["code"], "device_not_found");
    app.stop().await;
}
