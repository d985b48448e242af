//! Tokens: scopes, device limits, where a token may travel, and refusing an open public bind.

use geotrack::Config;
use geotrack::auth::TokensSetting;
use reqwest::Method;
use serde_json::json;

use crate::helpers::{TestApp, fix, json_with_status, spawn_with};

const TOKENS: &str = "admin-token-000001=admin;reader-token-0000=read;phone-1-token-0000=ingest@phone-1;fleet-token-00000=ingest+read@fleet-*";

async fn app() -> TestApp {
    spawn_with(|c| c.tokens = TokensSetting::Compact(TOKENS.into())).await
}

/// Fixes posted with `token` (none at all for `None`).
async fn post_as(app: &TestApp, token: Option<&str>, body: &serde_json::Value) -> reqwest::Response {
    let request = app.request(Method::POST, "/api/v1/positions").json(body);
    match token {
        Some(token) => request.token(token).send().await,
        None => request.send().await,
    }
}

#[tokio::test]
async fn missing_or_unknown_tokens_are_401_with_a_challenge() {
    let app = app().await;
    for token in [None, Some("not-a-token")] {
        let reply = post_as(&app, token, &fix("phone-1", 1, 1.0, 1.0)).await;
        assert_eq!(reply.headers()["www-authenticate"], "Bearer realm=\"geotrack\"");
        assert_eq!(
            json_with_status(reply, 401).await["error"]["code"],
            "unauthorized"
        );
    }
    // The API takes the token in the Authorization header only.
    let reply = app
        .request(Method::GET, "/api/v1/devices")
        .query_token("reader-token-0000")
        .send()
        .await;
    assert_eq!(reply.status(), 401);
    assert_eq!(
        app.get("/health").await.status(),
        200,
        "operations endpoints stay open"
    );
    app.stop().await;
}

#[tokio::test]
async fn scopes_and_device_limits_are_enforced() {
    let app = app().await;
    let reply = post_as(&app, Some("reader-token-0000"), &fix("phone-1", 1, 1.0, 1.0)).await;
    assert_eq!(json_with_status(reply, 403).await["error"]["code"], "forbidden");

    let reply = post_as(&app, Some("phone-1-token-0000"), &fix("phone-1", 1, 1.0, 1.0)).await;
    assert_eq!(json_with_status(reply, 202).await["accepted"], 1);
    let mixed = json!([fix("phone-1", 2, 1.0, 1.0), fix("phone-2", 2, 1.0, 1.0)]);
    let reply = post_as(&app, Some("phone-1-token-0000"), &mixed).await;
    let body = json_with_status(reply, 403).await;
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("phone-2"),
        "{body}"
    );
    assert_eq!(app.stored().await, 1, "nothing of a refused request is stored");

    let fleet = json!([fix("fleet-a", 1, 1.0, 1.0), fix("fleet-b", 1, 2.0, 2.0)]);
    json_with_status(post_as(&app, Some("fleet-token-00000"), &fleet).await, 202).await;
    let read = |path: &str, token: &str| app.request(Method::GET, path).token(token).send();
    let listed = json_with_status(read("/api/v1/devices", "fleet-token-00000").await, 200).await;
    let ids: Vec<&str> = listed["features"]
        .as_array()
        .expect("features")
        .iter()
        .map(|f| f["id"].as_str().expect("id"))
        .collect();
    assert_eq!(
        ids,
        ["fleet-a", "fleet-b"],
        "a limited token lists only its devices"
    );
    assert_eq!(
        read("/api/v1/devices/phone-1", "fleet-token-00000")
            .await
            .status(),
        403
    );
    assert_eq!(
        read("/api/v1/devices/phone-1", "phone-1-token-0000")
            .await
            .status(),
        403,
        "ingest only"
    );
    assert_eq!(
        read("/api/v1/devices/phone-1", "reader-token-0000")
            .await
            .status(),
        200
    );
    let all = json_with_status(read("/api/v1/devices", "admin-token-000001").await, 200).await;
    assert_eq!(all["features"].as_array().expect("features").len(), 3);
    app.stop().await;
}

#[tokio::test]
async fn an_open_server_refuses_a_public_address_unless_insecure() {
    let open_public = Config {
        bind: "0.0.0.0:0".parse().expect("address"),
        migrate_on_start: false,
        ..Config::default()
    };
    let error = geotrack::Application::build(open_public.clone())
        .await
        .expect_err("refused");
    assert!(error.to_string().contains("--insecure"), "{error}");
    let insecure = Config {
        insecure: true,
        ..open_public
    };
    assert!(geotrack::Application::build(insecure).await.is_ok());
}
