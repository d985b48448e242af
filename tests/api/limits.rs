//! Rate limits: a flooding device loses only its own fixes, a token over its rate is told to
//! wait, and device apps are told with a 503 (they drop data on some 4xx).

use geotrack::auth::TokensSetting;
use reqwest::Method;
use serde_json::json;

use crate::helpers::{fix, json_with_status, spawn_with};

#[tokio::test]
async fn a_flooding_device_cannot_starve_the_others() {
    // Refill is negligible during the test: only the burst counts.
    let app = spawn_with(|c| {
        c.limits.device_fixes_per_s = 0.001;
        c.limits.device_burst = 3.0;
    })
    .await;
    let first: Vec<_> = (0..3)
        .map(|i| fix("flood", i, 1.0, 1.0))
        .chain([fix("calm", 0, 2.0, 2.0)])
        .collect();
    assert_eq!(
        json_with_status(app.post_json(&json!(first)).await, 202).await["accepted"],
        4
    );
    let second = json!([
        fix("flood", 5, 1.0, 1.0),
        fix("calm", 5, 2.0, 2.0),
        fix("flood", 6, 1.0, 1.0)
    ]);
    let reply = json_with_status(app.post_json(&second).await, 202).await;
    assert_eq!(reply["accepted"], 1, "the calm device's fix is stored: {reply}");
    let rejected: Vec<(u64, &str)> = reply["rejected"]
        .as_array()
        .expect("rejected")
        .iter()
        .map(|r| {
            (
                r["index"].as_u64().expect("index"),
                r["code"].as_str().expect("code"),
            )
        })
        .collect();
    assert_eq!(rejected, [(0, "rate_limited"), (2, "rate_limited")]);

    let reply = app.post_json(&fix("flood", 10, 1.0, 1.0)).await;
    assert!(reply.headers().contains_key("retry-after"));
    assert_eq!(
        json_with_status(reply, 429).await["error"]["code"],
        "rate_limited"
    );
    assert_eq!(
        json_with_status(app.post_json(&fix("calm", 10, 2.0, 2.0)).await, 202).await["accepted"],
        1
    );

    let over = app.get("/osmand?id=calm&lat=1&lon=1").await;
    assert_eq!(over.status(), 503, "a device app is asked to retry, not refused");
    assert!(over.headers().contains_key("retry-after"));
    assert_eq!(app.stored().await, 6);
    app.stop().await;
}

#[tokio::test]
async fn a_token_over_its_request_rate_gets_429() {
    let app = spawn_with(|c| {
        c.tokens = TokensSetting::Compact("busy-token-000000=read;other-token-00000=read".into());
        c.limits.token_requests_per_s = 0.001;
        c.limits.token_burst = 2.0;
    })
    .await;
    let get = |token: &str| app.request(Method::GET, "/api/v1/devices").token(token).send();
    assert_eq!(get("busy-token-000000").await.status(), 200);
    assert_eq!(get("busy-token-000000").await.status(), 200);
    let refused = get("busy-token-000000").await;
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(
        json_with_status(refused, 429).await["error"]["code"],
        "rate_limited"
    );
    assert_eq!(
        get("other-token-00000").await.status(),
        200,
        "limits are per token"
    );
    app.stop().await;
}
