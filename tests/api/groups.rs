//! Device groups over a real server: written and read through the API, reloaded when another
//! process writes the table, used as the `group=` filter of the dispatch queries, and named by
//! fences' `applies_to` and by tokens' device limits, with membership changes applied at once.

use chrono::Utc;
use geotrack::auth::TokensSetting;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{
    WsClient, create_fence, eventually, fix, json_with_status, post_fix, spawn_app, spawn_with, square,
    wait_for_alerts, wait_until,
};

fn ids(collection: &Value) -> Vec<String> {
    collection["features"]
        .as_array()
        .expect("features")
        .iter()
        .map(|f| f["id"].as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test]
async fn groups_are_written_read_replaced_and_deleted() {
    let app = spawn_app().await;
    let put = async |body: Value| app.send_json(Method::PUT, "/api/v1/groups/taxis", &body).await;
    let created = json_with_status(
        put(json!({"name": "Taxis", "prefixes": ["taxi-"], "devices": ["spare-3"]})).await,
        201,
    )
    .await;
    assert_eq!(
        created,
        json!({"id": "taxis", "name": "Taxis", "devices": ["spare-3"], "prefixes": ["taxi-"]})
    );
    let replaced = json_with_status(
        put(json!({"id": "taxis", "name": "Cabs", "prefixes": ["taxi-", "cab-"]})).await,
        200,
    )
    .await;
    assert_eq!(replaced["devices"], json!([]));
    assert_eq!(
        json_with_status(app.get("/api/v1/groups/taxis").await, 200).await["name"],
        "Cabs"
    );
    let all = json_with_status(app.get("/api/v1/groups").await, 200).await;
    assert_eq!(all["groups"].as_array().map(Vec::len), Some(1));

    for (body, code) in [
        (json!({"prefixes": [""]}), "invalid_group"),
        (json!({"devices": ["a\u{0000}b"]}), "invalid_group"),
        (json!({"id": "buses"}), "id_mismatch"),
        (json!({"members": []}), "invalid_group"),
        (json!(["taxi-"]), "invalid_group"),
    ] {
        assert_eq!(
            json_with_status(put(body.clone()).await, 400).await["error"]["code"],
            code,
            "{body}"
        );
    }

    json_with_status(app.delete("/api/v1/groups/taxis").await, 200).await;
    assert_eq!(
        json_with_status(app.get("/api/v1/groups/taxis").await, 404).await["error"]["code"],
        "group_not_found"
    );
    assert_eq!(app.delete("/api/v1/groups/taxis").await.status(), 404);
    app.stop().await;
}

#[tokio::test]
async fn a_group_filters_the_dispatch_queries() {
    let app = spawn_app().await;
    let fixes = json!([
        fix("taxi-1", 5, 2.35, 48.85),
        fix("taxi-2", 5, 2.36, 48.85),
        fix("spare-3", 5, 2.37, 48.85),
        fix("spare-4", 5, 2.351, 48.85),
        fix("bus-1", 5, 2.352, 48.85)
    ]);
    json_with_status(app.post_json(&fixes).await, 202).await;
    let group = json!({"prefixes": ["taxi-"], "devices": ["spare-3"]});
    json_with_status(
        app.send_json(Method::PUT, "/api/v1/groups/taxis", &group).await,
        201,
    )
    .await;
    wait_until("the live index has the fleet", async || {
        let reply = app.get("/api/v1/devices/within?bbox=2,48,3,49").await;
        reply.status() == 200 && ids(&json_with_status(reply, 200).await).len() == 5
    })
    .await;

    let near = json_with_status(
        app.get("/api/v1/devices/nearby?lon=2.35&lat=48.85&group=taxis")
            .await,
        200,
    )
    .await;
    assert_eq!(
        ids(&near),
        ["taxi-1", "taxi-2", "spare-3"],
        "nearest first, members only"
    );
    let inside = json_with_status(
        app.get("/api/v1/devices/within?bbox=2,48,3,49&group=taxis&limit=2")
            .await,
        200,
    )
    .await;
    assert_eq!(ids(&inside), ["spare-3", "taxi-1"]);
    assert!(
        inside["next"].as_str().expect("next").contains("group=taxis"),
        "{inside}"
    );
    let circle = app
        .request(Method::POST, "/api/v1/devices/within?radius_m=5000&group=taxis")
        .json(&json!({"type": "Point", "coordinates": [2.35, 48.85]}))
        .send()
        .await;
    assert_eq!(
        ids(&json_with_status(circle, 200).await),
        ["spare-3", "taxi-1", "taxi-2"]
    );
    let unknown = app
        .get("/api/v1/devices/nearby?lon=2.35&lat=48.85&group=vans")
        .await;
    assert_eq!(
        json_with_status(unknown, 404).await["error"]["code"],
        "group_not_found"
    );

    // Membership changes apply to the next query.
    let group = json!({"devices": ["bus-1"]});
    json_with_status(
        app.send_json(Method::PUT, "/api/v1/groups/taxis", &group).await,
        200,
    )
    .await;
    let near = json_with_status(
        app.get("/api/v1/devices/nearby?lon=2.35&lat=48.85&group=taxis")
            .await,
        200,
    )
    .await;
    assert_eq!(ids(&near), ["bus-1"]);
    app.stop().await;
}

#[tokio::test]
async fn a_group_written_by_another_process_is_picked_up() {
    let app = spawn_app().await;
    // Another node of the cluster writes the table (and announces it) through the same store.
    let group = dispatch::Group {
        id: "night".into(),
        name: "Night shift".into(),
        devices: ["taxi-9".to_owned()].into(),
        prefixes: std::collections::BTreeSet::new(),
    };
    dispatch::group_store::put(&app.db, &group)
        .await
        .expect("written");
    let seen = eventually(async || app.get("/api/v1/groups/night").await.status() == 200).await;
    assert!(seen, "the server never reloaded its groups");
    dispatch::group_store::delete(&app.db, "night")
        .await
        .expect("deleted");
    let gone = eventually(async || app.get("/api/v1/groups/night").await.status() == 404).await;
    assert!(gone, "the server kept a group deleted elsewhere");
    app.stop().await;
}

#[tokio::test]
async fn a_fence_applies_to_the_members_of_a_group_as_they_are_now() {
    let app = spawn_app().await;
    let night = json!({"devices": ["cab-1"]});
    json_with_status(
        app.send_json(Method::PUT, "/api/v1/groups/night", &night).await,
        201,
    )
    .await;
    let mut depot = square("depot", 10.0, 10.0, 0.01);
    depot["properties"]["applies_to"] = json!(["group:night"]);
    let stored = create_fence(&app, &depot).await;
    assert_eq!(stored["properties"]["applies_to"], json!(["group:night"]));

    // Both cabs drive in; the fence applies to the night shift only.
    let now = Utc::now();
    for device in ["cab-1", "cab-2"] {
        post_fix(&app, device, now - chrono::Duration::seconds(20), 10.05, 10.0).await;
        post_fix(&app, device, now - chrono::Duration::seconds(10), 10.0, 10.0).await;
    }
    let alerts = wait_for_alerts(&app, 1).await;
    assert_eq!(
        alerts,
        [("cab-1".to_owned(), Some("depot".to_owned()), "enter".to_owned())]
    );

    // cab-2 joins the night shift: the fence now applies to it, and it is inside.
    let night = json!({"devices": ["cab-1", "cab-2"]});
    json_with_status(
        app.send_json(Method::PUT, "/api/v1/groups/night", &night).await,
        200,
    )
    .await;
    let alerts = wait_for_alerts(&app, 2).await;
    assert_eq!(
        alerts[1],
        ("cab-2".to_owned(), Some("depot".to_owned()), "enter".to_owned())
    );

    let mut refused = square("bad", 10.0, 10.0, 0.01);
    refused["properties"]["applies_to"] = json!(["group:"]);
    let reply = app.send_json(Method::POST, "/api/v1/fences", &refused).await;
    assert_eq!(
        json_with_status(reply, 400).await["error"]["code"],
        "invalid_fence"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_token_limited_to_a_group_sees_its_members_as_they_are_now() {
    const ADMIN: &str = "admin-token-0123456789";
    const NIGHT: &str = "night-reader-0123456789";
    const GHOST: &str = "ghost-reader-0123456789";
    let tokens = format!("{ADMIN}=admin;{NIGHT}=read@group:night;{GHOST}=read@group:ghosts");
    let app = spawn_with(|c| c.tokens = TokensSetting::Compact(tokens)).await;
    let as_admin =
        |method: Method, path: &str, body: Value| app.request(method, path).token(ADMIN).json(&body).send();
    let fixes = json!([fix("cab-1", 5, 10.0, 10.0), fix("cab-2", 5, 10.001, 10.0)]);
    json_with_status(as_admin(Method::POST, "/api/v1/positions", fixes).await, 202).await;
    json_with_status(
        as_admin(Method::PUT, "/api/v1/groups/night", json!({"devices": ["cab-1"]})).await,
        201,
    )
    .await;
    let read = |token: &'static str, path: &str| app.request(Method::GET, path).token(token).send();

    let listed = json_with_status(read(NIGHT, "/api/v1/devices").await, 200).await;
    assert_eq!(ids(&listed), ["cab-1"]);
    assert_eq!(read(NIGHT, "/api/v1/devices/cab-2").await.status(), 403);
    wait_until("the live index has both cabs", async || {
        let all = app
            .request(Method::GET, "/api/v1/devices/within?bbox=9,9,11,11")
            .token(ADMIN)
            .send()
            .await;
        all.status() == 200 && ids(&json_with_status(all, 200).await).len() == 2
    })
    .await;
    let near = json_with_status(read(NIGHT, "/api/v1/devices/nearby?lon=10&lat=10").await, 200).await;
    assert_eq!(ids(&near), ["cab-1"]);
    // A group that does not exist limits the token to nothing, not to everything.
    let ghost = json_with_status(read(GHOST, "/api/v1/devices").await, 200).await;
    assert_eq!(ids(&ghost), Vec::<String>::new());
    assert_eq!(read(GHOST, "/api/v1/devices/cab-1").await.status(), 403);

    // cab-2 joins the group: the next request sees it.
    let members = json!({"devices": ["cab-1", "cab-2"]});
    json_with_status(as_admin(Method::PUT, "/api/v1/groups/night", members).await, 200).await;
    let listed = json_with_status(read(NIGHT, "/api/v1/devices").await, 200).await;
    assert_eq!(ids(&listed), ["cab-1", "cab-2"]);
    assert_eq!(read(NIGHT, "/api/v1/devices/cab-2").await.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn the_device_list_alerts_and_sockets_filter_by_group() {
    let app = spawn_app().await;
    json_with_status(
        app.send_json(
            Method::PUT,
            "/api/v1/groups/night",
            &json!({"devices": ["cab-1"]}),
        )
        .await,
        201,
    )
    .await;
    create_fence(&app, &square("depot", 10.0, 10.0, 0.01)).await;
    let now = Utc::now();
    for device in ["cab-1", "cab-2"] {
        post_fix(&app, device, now - chrono::Duration::seconds(20), 10.05, 10.0).await;
        post_fix(&app, device, now - chrono::Duration::seconds(10), 10.0, 10.0).await;
    }
    wait_for_alerts(&app, 2).await;
    let devices_of = |alerts: &Value| -> Vec<String> {
        alerts
            .as_array()
            .expect("alerts")
            .iter()
            .map(|a| a["device"].as_str().expect("device").to_owned())
            .collect()
    };

    let listed = json_with_status(app.get("/api/v1/devices?group=night").await, 200).await;
    assert_eq!(ids(&listed), ["cab-1"]);
    let alerts = json_with_status(app.get("/api/v1/alerts?group=night").await, 200).await;
    assert_eq!(devices_of(&alerts["alerts"]), ["cab-1"]);
    let mut positions = WsClient::connect(&app, "/ws/positions?group=night").await;
    let snapshot = positions.json().await;
    assert_eq!(devices_of(&snapshot["positions"]), ["cab-1"]);
    let mut stream = WsClient::connect(&app, "/ws/alerts?since=0&group=night").await;
    assert_eq!(devices_of(&Value::Array(stream.until_live().await)), ["cab-1"]);
    for path in ["/api/v1/alerts?group=nobody", "/api/v1/devices?group=nobody"] {
        assert_eq!(
            json_with_status(app.get(path).await, 404).await["error"]["code"],
            "group_not_found",
            "{path}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn a_limited_token_reads_groups_without_the_devices_it_may_not_see() {
    const ADMIN: &str = "admin-token-0123456789";
    const CABS: &str = "cabs-reader-0123456789";
    let tokens = format!("{ADMIN}=admin;{CABS}=read@cab-*");
    let app = spawn_with(|c| c.tokens = TokensSetting::Compact(tokens)).await;
    let group = json!({"devices": ["cab-1", "van-9"], "prefixes": ["taxi-"]});
    let written = app
        .request(Method::PUT, "/api/v1/groups/mixed")
        .token(ADMIN)
        .json(&group)
        .send()
        .await;
    assert_eq!(
        json_with_status(written, 201).await["devices"],
        json!(["cab-1", "van-9"])
    );
    for path in ["/api/v1/groups/mixed", "/api/v1/groups"] {
        let read = json_with_status(app.request(Method::GET, path).token(CABS).send().await, 200).await;
        let group = if read["groups"].is_array() {
            read["groups"][0].clone()
        } else {
            read
        };
        assert_eq!(group["devices"], json!(["cab-1"]), "{path}");
        assert_eq!(group["prefixes"], json!(["taxi-"]), "{path}");
    }
    app.stop().await;
}
