//! Webhooks against a local receiver: every alert reaches the configured URL and its fence's
//! own URL, signed, with its id for de-duplication, retried after a failure; unsigned webhooks
//! are refused.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use geotrack::{Application, Config};
use serde_json::{Value, json};

use crate::helpers::{create_fence, json_with_status, post_fix, spawn_app, spawn_with, square, wait_until};

/// What the receiver was sent: path, headers, body.
type Received = Arc<Mutex<Vec<(String, HeaderMap, String)>>>;

/// Records a request; the first one to `/flaky` fails, `/moved` redirects to `/target`.
async fn hook(State(received): State<Received>, uri: Uri, headers: HeaderMap, body: String) -> Response {
    let mut all = received.lock().expect("lock");
    let first_flaky = uri.path() == "/flaky" && !all.iter().any(|(p, _, _)| p == "/flaky");
    all.push((uri.path().to_owned(), headers, body));
    if uri.path() == "/moved" {
        (StatusCode::FOUND, [(header::LOCATION, "/target")]).into_response()
    } else if first_flaky {
        StatusCode::INTERNAL_SERVER_ERROR.into_response()
    } else {
        StatusCode::OK.into_response()
    }
}

/// A receiver on a free port; `/flaky` fails its first request with 500.
async fn receiver() -> (String, Received) {
    let received: Received = Arc::default();
    let app = axum::Router::new()
        .route("/{name}", axum::routing::post(hook))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, received)
}

#[tokio::test]
async fn alerts_are_delivered_signed_to_global_and_fence_urls_and_retried_after_a_failure() {
    let (base, received) = receiver().await;
    let app = spawn_with(|c| {
        c.webhooks.urls = vec![format!("{base}/all")];
        c.webhooks.secret = Some("hook-secret".into());
        c.webhooks.retry_base_ms = 50;
        // The receiver runs on loopback, which webhooks may reach only when allowed.
        c.webhooks.allowed_networks = vec!["127.0.0.1".into()];
    })
    .await;
    let mut fence = square("a", 10.0025, 10.0, 0.0025);
    fence["properties"]["webhooks"] = json!([format!("{base}/flaky")]);
    create_fence(&app, &fence).await;
    post_fix(&app, "car", Utc::now(), 10.0025, 10.0).await;

    wait_until("deliveries did not complete", async || {
        let delivered: i64 =
            sqlx::query_scalar("SELECT count(*) FROM webhook_deliveries WHERE delivered_at IS NOT NULL")
                .fetch_one(&app.db)
                .await
                .expect("count");
        delivered == 2
    })
    .await;
    let alert_id: i64 = sqlx::query_scalar("SELECT id FROM alerts")
        .fetch_one(&app.db)
        .await
        .expect("alert");
    let metrics = app.get("/metrics").await.text().await.expect("metrics");
    for expected in [
        "geotrack_alerts_webhook_deliveries_total{outcome=\"delivered\"} 2",
        "geotrack_alerts_webhook_deliveries_total{outcome=\"failed\"} 1",
        "geotrack_alerts_webhook_deliveries_total{outcome=\"given_up\"} 0",
        "geotrack_alerts_webhooks_queued ",
    ] {
        assert!(metrics.contains(expected), "missing {expected}");
    }
    let received = received.lock().expect("lock").clone();
    let paths: Vec<&str> = received.iter().map(|(p, _, _)| p.as_str()).collect();
    assert_eq!(paths.iter().filter(|p| **p == "/all").count(), 1, "{paths:?}");
    assert_eq!(
        paths.iter().filter(|p| **p == "/flaky").count(),
        2,
        "retried once: {paths:?}"
    );
    for (_, headers, body) in &received {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
        };
        assert_eq!(header("x-geotrack-alert-id"), alert_id.to_string());
        let timestamp: i64 = header("x-geotrack-timestamp").parse().expect("timestamp");
        assert!((Utc::now().timestamp() - timestamp).abs() < 60);
        let expected = alerts::webhooks::signature(b"hook-secret", timestamp, body.as_bytes());
        assert_eq!(
            header("x-geotrack-signature"),
            expected,
            "signed over the timestamp and body"
        );
        let alert: Value = serde_json::from_str(body).expect("JSON");
        assert_eq!(
            (alert["kind"].as_str(), alert["fence"].as_str()),
            (Some("enter"), Some("a"))
        );
    }
    let attempts: Vec<i32> = sqlx::query_scalar("SELECT attempts FROM webhook_deliveries ORDER BY url")
        .fetch_all(&app.db)
        .await
        .expect("attempts");
    assert_eq!(attempts, [1, 2]);
    app.stop().await;
}

#[tokio::test]
async fn webhooks_without_a_signing_secret_are_refused() {
    let app = spawn_app().await;
    let mut fence = square("a", 10.0, 10.0, 0.01);
    fence["properties"]["webhooks"] = json!(["http://hooks.example.org/hook"]);
    let reply = app
        .send_json(reqwest::Method::POST, "/api/v1/fences", &fence)
        .await;
    let body = json_with_status(reply, 400).await;
    assert_eq!(body["error"]["code"], "webhooks_unsigned");
    fence["properties"]["webhooks"] = json!(["ftp://example.org/hook"]);
    let reply = app
        .send_json(reqwest::Method::POST, "/api/v1/fences", &fence)
        .await;
    let body = json_with_status(reply, 400).await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("https://host/path"),
        "{body}"
    );
    app.stop().await;

    let config = Config {
        bind: "127.0.0.1:0".parse().expect("addr"),
        migrate_on_start: false,
        webhooks: alerts::WebhooksConfig {
            urls: vec!["http://hooks.example.org/hook".into()],
            ..Default::default()
        },
        ..Config::default()
    };
    let error = Application::build(config).await.expect_err("refused");
    assert!(error.to_string().contains("webhooks.secret"), "{error}");
}

/// A receiver that redirects gets no second request: a redirect could point anywhere, past
/// the checks made on the URL.
#[tokio::test]
async fn redirects_are_not_followed() {
    let (base, received) = receiver().await;
    let app = spawn_with(|c| {
        c.webhooks.secret = Some("hook-secret".into());
        c.webhooks.retry_base_ms = 60_000;
        c.webhooks.allowed_networks = vec!["127.0.0.1".into()];
    })
    .await;
    let mut fence = square("a", 10.0025, 10.0, 0.0025);
    fence["properties"]["webhooks"] = json!([format!("{base}/moved")]);
    create_fence(&app, &fence).await;
    post_fix(&app, "car", Utc::now(), 10.0025, 10.0).await;
    wait_until("the delivery was not attempted", async || {
        let attempts: Option<i32> = sqlx::query_scalar("SELECT attempts FROM webhook_deliveries")
            .fetch_optional(&app.db)
            .await
            .expect("attempts");
        attempts == Some(1)
    })
    .await;
    let (error, delivered): (Option<String>, bool) =
        sqlx::query_as("SELECT last_error, delivered_at IS NOT NULL FROM webhook_deliveries")
            .fetch_one(&app.db)
            .await
            .expect("delivery");
    assert!(
        !delivered && error.as_deref().unwrap_or_default().contains("302"),
        "{error:?}"
    );
    let paths: Vec<String> = received
        .lock()
        .expect("lock")
        .iter()
        .map(|(p, _, _)| p.clone())
        .collect();
    assert_eq!(paths, ["/moved"], "the redirect target was never requested");
    app.stop().await;
}
