//! Operations endpoints and the JSON shape of routing errors.

use crate::helpers::{fix, json_with_status, spawn_app, spawn_with, wait_until};

#[tokio::test]
async fn health_ready_and_metrics() {
    let app = spawn_app().await;
    assert_eq!(
        json_with_status(app.get("/health").await, 200).await["status"],
        "ok"
    );
    assert_eq!(
        json_with_status(app.get("/ready").await, 200).await["status"],
        "ready"
    );

    json_with_status(
        app.post_json(&serde_json::json!([
            fix("m", 1, 1.0, 1.0),
            fix("m", 1, 1.0, 95.0)
        ]))
        .await,
        202,
    )
    .await;
    // Built once, then served from the cache four times (`HEAD` included). Three of the GETs
    // are matched in front of the router (`routes::tile_front`), one by the router (a
    // percent-escaped segment), all counted under the route's template; `HEAD` goes through
    // the router too.
    for path in [
        "/tiles/fences/0/0/0",
        "/tiles/fences/0/0/0",
        "/tiles/fen%63es/0/0/0",
        "/tiles/fences/0/0/0",
    ] {
        assert_eq!(app.get(path).await.status(), 204, "{path}: no fence, no feature");
    }
    let head = app
        .request(reqwest::Method::HEAD, "/tiles/fences/0/0/0")
        .send()
        .await;
    assert_eq!(head.status(), 204);
    let metrics = app.get("/metrics").await;
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.expect("text");
    for expected in [
        "geotrack_ingest_fixes_accepted_total{protocol=\"json\"} 1",
        "geotrack_ingest_fixes_rejected_total{protocol=\"json\",reason=\"invalid_lat\"} 1",
        "geotrack_ingest_fixes_stored_total 1",
        "geotrack_ingest_queue_depth{shard=\"0\"} 0",
        "geotrack_ingest_batch_fixes_count 1",
        "geotrack_ingest_commit_seconds_bucket",
        "geotrack_http_requests_total{method=\"POST\",route=\"/api/v1/positions\",status=\"202\"} 1",
        "geotrack_http_request_seconds_count{method=\"POST\",route=\"/api/v1/positions\",status=\"202\"} 1",
        "geotrack_ingest_write_errors_total{kind=\"transient\"} 0",
        "# TYPE process_cpu_seconds_total counter",
        "process_resident_memory_bytes ",
        "process_open_fds ",
        "geotrack_db_pool_connections_in_use ",
        "geotrack_db_pool_connections_max ",
        "geotrack_http_requests_total{method=\"GET\",route=\"/tiles/{layer}/{z}/{x}/{y}\",status=\"204\"} 4",
        "geotrack_http_requests_total{method=\"HEAD\",route=\"/tiles/{layer}/{z}/{x}/{y}\",status=\"204\"} 1",
        "geotrack_tiles_built_total 1",
        "geotrack_tiles_hits_total 4",
        "geotrack_tiles_evicted_total 0",
        "geotrack_tiles_cached ",
        "geotrack_ws_connected 0",
    ] {
        assert!(text.contains(expected), "missing {expected} in:\n{text}");
    }
    app.stop().await;
}

/// `promtool check metrics` (Prometheus' own checker, fetched by `scripts/promtool.sh`) accepts
/// the default answer; OpenMetrics, for scrapers that ask for it, is well formed too.
#[tokio::test]
async fn metrics_pass_promtool_and_openmetrics_is_negotiated() {
    let app = spawn_app().await;
    json_with_status(
        app.post_json(&serde_json::json!([fix("m", 1, 1.0, 1.0)])).await,
        202,
    )
    .await;
    let reply = app.get("/metrics").await;
    assert_eq!(
        reply.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = reply.text().await.expect("text");
    assert!(text.contains("# TYPE geotrack_ingest_fixes_stored_total counter") && !text.contains("# EOF"));

    let found = std::process::Command::new("bash")
        .arg("scripts/promtool.sh")
        .output()
        .expect("bash runs");
    assert!(
        found.status.success(),
        "scripts/promtool.sh: {}",
        String::from_utf8_lossy(&found.stderr)
    );
    let promtool = String::from_utf8_lossy(&found.stdout).trim().to_owned();
    let mut check = std::process::Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool runs");
    std::io::Write::write_all(&mut check.stdin.take().expect("stdin"), text.as_bytes()).expect("written");
    let checked = check.wait_with_output().expect("promtool ends");
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    let reply = app
        .get_with(
            "/metrics",
            "accept",
            "application/openmetrics-text; version=1.0.0",
        )
        .await;
    assert_eq!(
        reply.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let openmetrics = reply.text().await.expect("text");
    assert!(openmetrics.ends_with("# EOF\n"));
    assert!(openmetrics.contains("# TYPE geotrack_ingest_fixes_stored counter"));
    app.stop().await;
}

#[tokio::test]
async fn ready_is_false_until_migrations_are_applied() {
    let app = spawn_with(|c| c.migrate_on_start = false).await;
    let reply = json_with_status(app.get("/ready").await, 503).await;
    assert!(
        reply["error"]["message"]
            .as_str()
            .expect("message")
            .contains("geotrack migrate"),
        "{reply}"
    );
    geotrack::db::migrate(&app.db_url).await.expect("migrate");
    geotrack::db::migrate(&app.db_url)
        .await
        .expect("migrating twice is a no-op");
    // The fence index loader retries every 2 s; ready once it has loaded.
    wait_until("never became ready", async || {
        app.get("/ready").await.status() == 200
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn unknown_routes_and_methods_are_json_errors() {
    let app = spawn_app().await;
    assert_eq!(
        json_with_status(app.get("/nope").await, 404).await["error"]["code"],
        "no_route"
    );
    let reply = app.delete("/api/v1/positions").await;
    assert_eq!(
        json_with_status(reply, 405).await["error"]["code"],
        "method_not_allowed"
    );
    app.stop().await;
}

/// Every metric the shipped Grafana dashboard queries is one `/metrics` declares (so a renamed
/// metric cannot leave the dashboard blank).
#[tokio::test]
async fn the_grafana_dashboard_queries_only_metrics_the_server_exposes() {
    let app = spawn_app().await;
    // Families with labels appear with their first sample: an accepted fix, a rejected one.
    let fixes = serde_json::json!([fix("m", 1, 1.0, 1.0), fix("m", 1, 1.0, 95.0)]);
    json_with_status(app.post_json(&fixes).await, 202).await;
    let text = app.get("/metrics").await.text().await.expect("metrics");
    let declared: std::collections::HashSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string("docs/grafana/geotrack.json").expect("dashboard"))
            .expect("JSON");
    let mut queried = 0;
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            let names = expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("geotrack_") || w.starts_with("process_"));
            for name in names {
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| name.strip_suffix(suffix))
                    .unwrap_or(name);
                assert!(
                    declared.contains(family),
                    "{:?} queries {name}, which /metrics does not declare",
                    panel["title"]
                );
                queried += 1;
            }
        }
    }
    assert!(queried > 20, "only {queried} metric references");
    app.stop().await;
}
