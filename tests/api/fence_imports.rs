//! Fence imports at scale and the listing: ids taken from a property (a re-import replaces)
//! or generated and reported, imports run as jobs (202 and a status URL, never cut by the
//! request timeout), and `GET /api/v1/fences` a page at a time.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{circle, json_with_status, named, spawn_app, spawn_with, wait_until};

fn collection(features: Vec<Value>) -> Value {
    json!({"type": "FeatureCollection", "features": Value::Array(features)})
}

/// A circle with no id, named `name`.
fn anonymous(name: &str, lon: f64, radius_m: f64) -> Value {
    let mut feature = named(circle("", lon, 45.0, radius_m), name);
    feature.as_object_mut().expect("feature").remove("id");
    feature
}

fn ids(reply: &Value) -> Vec<String> {
    reply["ids"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|id| id.as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test]
async fn imports_take_ids_from_a_property_or_generate_and_report_them() {
    let app = spawn_app().await;
    let file = |radius_m| {
        collection(vec![
            anonymous("Oslo", 10.0, radius_m),
            anonymous("Bergen", 5.0, radius_m),
            anonymous("Tromsø", 19.0, radius_m),
        ])
    };
    let generated = json_with_status(
        app.send_json(Method::POST, "/api/v1/fences/import", &file(100.0))
            .await,
        200,
    )
    .await;
    let generated = ids(&generated);
    assert_eq!(generated.len(), 3);
    assert!(generated.iter().all(|id| id.starts_with('f')), "{generated:?}");
    let fence = json_with_status(app.get(&format!("/api/v1/fences/{}", generated[1])).await, 200).await;
    assert_eq!(
        fence["properties"]["name"], "Bergen",
        "ids are reported in feature order"
    );

    for radius_m in [100.0, 250.0] {
        let reply = json_with_status(
            app.send_json(
                Method::POST,
                "/api/v1/fences/import?id_property=name",
                &file(radius_m),
            )
            .await,
            200,
        )
        .await;
        assert_eq!(ids(&reply), ["Oslo", "Bergen", "Tromsø"]);
    }
    let listed = json_with_status(app.get("/api/v1/fences").await, 200).await;
    assert_eq!(
        listed["features"].as_array().expect("features").len(),
        6,
        "importing with id_property again replaced its fences"
    );
    let oslo = json_with_status(app.get("/api/v1/fences/Oslo").await, 200).await;
    assert_eq!(oslo["properties"]["radius_m"], 250.0, "{oslo}");

    let refused = json_with_status(
        app.send_json(
            Method::POST,
            "/api/v1/fences/import?id_property=iso",
            &file(100.0),
        )
        .await,
        400,
    )
    .await;
    assert_eq!(refused["error"]["code"], "invalid_features");
    let reason = refused["invalid"][0]["reason"].as_str().expect("reason");
    assert!(reason.contains("\"iso\""), "{reason}");
    let empty = json_with_status(
        app.send_json(Method::POST, "/api/v1/fences/import?id_property=", &file(100.0))
            .await,
        400,
    )
    .await;
    assert_eq!(empty["error"]["code"], "invalid_id_property");
    app.stop().await;
}

#[tokio::test]
async fn an_import_that_takes_longer_than_the_wait_answers_202_and_its_job_tells_the_outcome() {
    let app = spawn_with(|c| c.fences.import_wait_ms = 0).await;
    let features = (0..200)
        .map(|i| circle(&format!("c{i:03}"), f64::from(i) * 0.01, 45.0, 300.0))
        .collect();
    let reply = app
        .request(Method::POST, "/api/v1/fences/import")
        .json(&collection(features))
        .send()
        .await;
    assert_eq!(reply.status(), 202);
    let location = reply.headers()["location"].to_str().expect("location").to_owned();
    assert!(location.starts_with("/api/v1/fence-imports/"), "{location}");
    let accepted: Value = reply.json().await.expect("json");
    assert_eq!(accepted["total"], 200);
    let done = wait_for_job(&app, &location).await;
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["prepared"], 200);
    assert_eq!(ids(&done).len(), 200);
    assert_eq!(app.get("/api/v1/fences/c199").await.status(), 200);

    // Refused imports say why in the job, as a synchronous import would have answered.
    let bad = collection(vec![circle("ok", 1.0, 1.0, 10.0), circle("bad", 1.0, 1.0, -1.0)]);
    let reply = app
        .request(Method::POST, "/api/v1/fences/import")
        .header("prefer", "respond-async")
        .json(&bad)
        .send()
        .await;
    assert_eq!(reply.status(), 202);
    let location = reply.headers()["location"].to_str().expect("location").to_owned();
    let failed = wait_for_job(&app, &location).await;
    assert_eq!(failed["state"], "failed", "{failed}");
    assert_eq!(failed["error"]["error"]["code"], "invalid_features");
    assert_eq!(failed["error"]["invalid"][0]["index"], 1);
    assert_eq!(app.get("/api/v1/fences/ok").await.status(), 404);

    for unknown in ["/api/v1/fence-imports/999999", "/api/v1/fence-imports/x"] {
        let missing = json_with_status(app.get(unknown).await, 404).await;
        assert_eq!(missing["error"]["code"], "import_not_found");
    }
    app.stop().await;
}

async fn wait_for_job(app: &crate::helpers::TestApp, location: &str) -> Value {
    let mut status = Value::Null;
    wait_until("the import job never finished", async || {
        status = json_with_status(app.get(location).await, 200).await;
        status["state"] != "running"
    })
    .await;
    status
}

#[tokio::test]
async fn the_fence_listing_comes_a_page_at_a_time_in_id_order() {
    let app = spawn_app().await;
    // Ids whose byte order differs from a locale's order (upper case before lower case).
    let mut expected: Vec<String> = (0..23).map(|i| format!("p{i:02}")).collect();
    expected.extend(["Z1".to_owned(), "a1".to_owned()]);
    let features = expected
        .iter()
        .enumerate()
        .map(|(i, id)| circle(id, 2.0 + i as f64 * 0.001, 48.0, 50.0))
        .collect();
    json_with_status(
        app.send_json(Method::POST, "/api/v1/fences/import", &collection(features))
            .await,
        200,
    )
    .await;
    expected.sort();
    for path in [
        "/api/v1/fences?limit=10",
        "/api/v1/fences?limit=10&bbox=1,47,3,49",
    ] {
        let mut seen = Vec::new();
        let mut next = Some(path.to_owned());
        let mut pages = 0;
        while let Some(page) = next {
            let reply = json_with_status(app.get(&page).await, 200).await;
            seen.extend(
                reply["features"]
                    .as_array()
                    .expect("features")
                    .iter()
                    .map(|f| f["id"].as_str().expect("id").to_owned()),
            );
            next = reply["next"].as_str().map(str::to_owned);
            pages += 1;
        }
        assert_eq!(seen, expected, "{path}");
        assert_eq!(pages, 3, "{path}");
    }
    let elsewhere = json_with_status(app.get("/api/v1/fences?bbox=100,0,101,1").await, 200).await;
    assert_eq!(elsewhere["features"], json!([]));
    assert!(elsewhere.get("next").is_none());
    for bad in [
        "/api/v1/fences?limit=0",
        "/api/v1/fences?limit=10001",
        "/api/v1/fences?after=",
    ] {
        json_with_status(app.get(bad).await, 400).await;
    }
    app.stop().await;
}
