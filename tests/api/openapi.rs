//! `/api/openapi.json` lists every route the server serves, and the server serves every
//! operation the document lists.

use std::collections::BTreeSet;

use crate::helpers::{json_with_status, spawn_app};

/// Every route of the service, as the README documents them.
const ROUTES: [(&str, &str); 54] = [
    ("get", "/"),
    ("post", "/"),
    ("get", "/osmand"),
    ("post", "/osmand"),
    ("put", "/osmand"),
    ("post", "/owntracks"),
    ("post", "/overland"),
    ("post", "/api/v1/positions"),
    ("get", "/api/v1/devices"),
    ("get", "/api/v1/devices/nearby"),
    ("get", "/api/v1/devices/within"),
    ("post", "/api/v1/devices/within"),
    ("put", "/api/v1/devices/{id}"),
    ("get", "/api/v1/groups"),
    ("get", "/api/v1/groups/{id}"),
    ("put", "/api/v1/groups/{id}"),
    ("delete", "/api/v1/groups/{id}"),
    ("get", "/api/v1/proximity-rules"),
    ("get", "/api/v1/proximity-rules/{id}"),
    ("put", "/api/v1/proximity-rules/{id}"),
    ("delete", "/api/v1/proximity-rules/{id}"),
    ("get", "/api/v1/devices/{id}/trips"),
    ("get", "/api/v1/devices/{id}/stops"),
    ("get", "/api/v1/devices/{id}/summary"),
    ("get", "/api/v1/devices/{id}"),
    ("delete", "/api/v1/devices/{id}"),
    ("get", "/api/v1/devices/{id}/track"),
    ("get", "/api/v1/fences"),
    ("post", "/api/v1/fences"),
    ("post", "/api/v1/fences/import"),
    ("get", "/api/v1/fence-imports/{job}"),
    ("get", "/api/v1/fences/{id}"),
    ("put", "/api/v1/fences/{id}"),
    ("delete", "/api/v1/fences/{id}"),
    ("get", "/api/v1/fences/{id}/devices"),
    ("get", "/api/v1/alerts"),
    ("get", "/ws/alerts"),
    ("get", "/ws/positions"),
    ("get", "/tiles/{layer}/{z}/{x}/{y}"),
    ("post", "/tiles/{layer}/invalidate"),
    ("get", "/ws/tiles"),
    ("get", "/tiles"),
    ("get", "/tiles/{layer}"),
    ("get", "/styles/{file}"),
    ("get", "/fonts/{fontstack}/{range}"),
    ("get", "/health"),
    ("get", "/ogc"),
    ("get", "/ogc/conformance"),
    ("get", "/ogc/collections"),
    ("get", "/ogc/collections/{collection}"),
    ("get", "/ogc/collections/{collection}/items"),
    ("get", "/ogc/collections/{collection}/items/{id}"),
    ("get", "/ready"),
    ("get", "/metrics"),
];

#[tokio::test]
async fn the_openapi_document_lists_exactly_the_routes_served() {
    let app = spawn_app().await;
    let spec = json_with_status(app.get("/api/openapi.json").await, 200).await;
    assert!(
        spec["openapi"].as_str().expect("version").starts_with("3."),
        "{}",
        spec["openapi"]
    );
    let mut listed = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for method in item
            .as_object()
            .expect("path item")
            .keys()
            .filter(|k| *k != "parameters")
        {
            listed.insert((method.clone(), path.clone()));
        }
    }
    let expected: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(listed, expected);

    for (method, path) in &listed {
        // `/` is a device endpoint only for requests that name a device.
        let probe = if path == "/" {
            "/?id=probe".to_owned()
        } else {
            path.replace("{id}", "x")
        };
        let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
        let reply = app.request(method.clone(), &probe).send().await;
        let status = reply.status();
        let body = reply.text().await.expect("body");
        assert_ne!(status, 405, "{method} {path} is listed but not served");
        assert!(
            !body.contains("\"no_route\""),
            "{method} {path} is listed but not served: {body}"
        );
    }
    for name in ["bearer", "basic", "token"] {
        assert!(
            spec["components"]["securitySchemes"][name].is_object(),
            "security scheme {name}"
        );
    }
    app.stop().await;
}

/// Runs `scripts/openapi-validate.sh` on a document; its exit status and its report.
fn validate(document: &serde_json::Value, name: &str) -> (bool, String) {
    let file = std::env::temp_dir().join(format!("geotrack-openapi-{}-{name}.json", std::process::id()));
    std::fs::write(&file, document.to_string()).expect("written");
    let output = std::process::Command::new("bash")
        .arg("scripts/openapi-validate.sh")
        .arg(&file)
        .output()
        .expect("bash runs");
    let _ = std::fs::remove_file(&file);
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), report)
}

#[tokio::test]
async fn the_document_passes_openapi_spec_validator() {
    let app = spawn_app().await;
    let spec = json_with_status(app.get("/api/openapi.json").await, 200).await;
    app.stop().await;
    let (valid, report) = validate(&spec, "served");
    assert!(valid, "openapi-spec-validator: {report}");

    // The validator is no rubber stamp: two operations with one id are refused.
    let mut broken = spec.clone();
    let first = broken["paths"]["/api/v1/devices"]["get"]["operationId"].clone();
    assert!(first.is_string(), "operations have ids");
    broken["paths"]["/api/v1/fences"]["get"]["operationId"] = first;
    let (valid, report) = validate(&broken, "duplicate");
    assert!(!valid, "a duplicate operation id passed: {report}");
}
