//! The binary's logs and flags: `--log-format json` writes one JSON object per line on standard
//! error, every response gets an access line (route, status, duration; never the query), no
//! colour codes reach a pipe, and server-only flags are refused by the other commands.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::helpers::{ServerProcess, admin_exec, database_url, geotrack, new_database, poll_until};

/// `geotrack <global_args> serve` with `GEOTRACK_LOG=info`, standard error piped (to be read,
/// or not).
fn serve(db_name: &str, global_args: &[&str]) -> ServerProcess {
    let env = [("GEOTRACK_LOG", "info".to_owned())];
    ServerProcess::spawn(db_name, global_args, &env, Stdio::piped())
}

/// The lines a server writes on standard error, as they come.
fn collect_stderr(server: &mut ServerProcess) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let mut reader = BufReader::new(server.stderr()).lines();
    let sink = lines.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = reader.next_line().await {
            sink.lock().expect("lines").push(line);
        }
    });
    lines
}

/// The access line of a response to `path`, once it is written.
async fn access_line(lines: &Mutex<Vec<String>>, path: &str) -> Value {
    let mut found = None;
    let written = poll_until(Duration::from_secs(10), Duration::from_millis(20), async || {
        found = lines.lock().expect("lines").iter().find_map(|line| {
            let entry: Value = serde_json::from_str(line).ok()?;
            (entry["target"] == "geotrack::access" && entry["span"]["path"] == path).then_some(entry)
        });
        found.is_some()
    })
    .await;
    assert!(
        written,
        "no access line for {path}: {:?}",
        lines.lock().expect("lines")
    );
    found.expect("found")
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_with_an_access_line_per_response_and_no_query() {
    let db_name = new_database().await;
    let mut server = serve(&db_name, &["--log-format", "json"]);
    let lines = collect_stderr(&mut server);
    let client = reqwest::Client::new();
    let url = |path: &str| server.url(path);
    assert!(
        server.ready().await,
        "the server never got ready: {:?}",
        lines.lock().expect("lines")
    );

    let secret = "hunter2-in-the-query";
    let device = client
        .get(url(&format!("/api/v1/devices/van-1?token={secret}")))
        .send()
        .await
        .expect("request");
    assert_eq!(device.status(), 404, "no such device yet");
    let nowhere = client
        .get(url(&format!("/no/such/route?token={secret}")))
        .send()
        .await
        .expect("request");
    assert_eq!(nowhere.status(), 404);
    // Matched in front of the router (`routes::tile_front`), logged under the same template.
    let tile = client
        .get(url(&format!("/tiles/fences/0/0/0?token={secret}")))
        .send()
        .await
        .expect("request");
    assert_eq!(tile.status(), 204, "no fence yet");

    let routed = access_line(&lines, "/api/v1/devices/van-1").await;
    assert_eq!(routed["route"], "/api/v1/devices/{id}", "{routed}");
    assert_eq!(routed["status"], 404, "{routed}");
    assert_eq!(routed["level"], "INFO", "{routed}");
    assert_eq!(routed["span"]["method"], "GET", "{routed}");
    assert!(
        routed["duration_ms"].as_f64().is_some_and(|ms| ms >= 0.0),
        "{routed}"
    );
    assert!(
        routed["span"]["id"].as_str().is_some_and(|id| id.len() > 8),
        "{routed}"
    );
    let unmatched = access_line(&lines, "/no/such/route").await;
    assert_eq!(unmatched["route"], "unmatched", "{unmatched}");
    let tile = access_line(&lines, "/tiles/fences/0/0/0").await;
    assert_eq!(tile["route"], "/tiles/{layer}/{z}/{x}/{y}", "{tile}");
    assert_eq!(tile["status"], 204, "{tile}");

    server.kill().await;
    let lines = lines.lock().expect("lines").clone();
    assert!(lines.len() > 3, "{lines:?}");
    for line in &lines {
        let entry: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        for field in ["timestamp", "level", "target"] {
            assert!(entry[field].is_string(), "{field} missing: {line}");
        }
        assert!(!line.contains(secret), "the query was logged: {line}");
    }
    admin_exec(&format!("DROP DATABASE IF EXISTS \"{db_name}\" WITH (FORCE)")).await;
}

#[tokio::test]
async fn text_logs_reach_a_pipe_without_colour_and_server_flags_belong_to_serve() {
    let db_name = new_database().await;
    let migrated = Command::new(env!("CARGO_BIN_EXE_geotrack"))
        .args(["migrate", "--database-url", &database_url(&db_name)])
        .env("GEOTRACK_LOG", "info")
        .env_remove("NO_COLOR")
        .output()
        .await
        .expect("the binary runs");
    admin_exec(&format!("DROP DATABASE IF EXISTS \"{db_name}\" WITH (FORCE)")).await;
    let log = String::from_utf8_lossy(&migrated.stderr);
    assert!(migrated.status.success(), "{migrated:?}");
    assert!(
        migrated.stdout.is_empty(),
        "logs go to standard error: {migrated:?}"
    );
    assert!(
        log.contains("INFO") && log.contains("database is migrated"),
        "{log}"
    );
    assert!(!log.contains('\u{1b}'), "colour codes on a pipe: {log:?}");

    let misplaced = geotrack(&["migrate", "--bind", "127.0.0.1:1"]).await;
    assert_eq!(misplaced.status.code(), Some(2), "{misplaced:?}");
    let refusal = String::from_utf8_lossy(&misplaced.stderr);
    assert!(refusal.contains("unexpected argument '--bind'"), "{refusal}");
    let misplaced = geotrack(&["import", "gpx", "x.gpx", "--device", "d", "--insecure"]).await;
    assert_eq!(misplaced.status.code(), Some(2), "{misplaced:?}");

    let help = geotrack(&["--help"]).await;
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("--database-url") && help.contains("DATABASE_URL"),
        "{help}"
    );
    assert!(!help.contains("--bind"), "--bind is a flag of serve: {help}");
    let serve_help = geotrack(&["serve", "--help"]).await;
    let serve_help = String::from_utf8_lossy(&serve_help.stdout);
    assert!(
        serve_help.contains("--bind") && serve_help.contains("GEOTRACK_BIND"),
        "{serve_help}"
    );
    assert!(serve_help.contains("--log-format"), "{serve_help}");
}

/// Standard error's pipe holds 64 KiB; a reader that stops reading used to stop every request
/// at its access line once it was full. Now the server goes on answering, drops the lines its
/// queue cannot hold, and counts them.
#[tokio::test]
async fn a_log_reader_that_stops_reading_does_not_stop_the_server() {
    let db_name = new_database().await;
    let mut server = serve(&db_name, &[]);
    // Held and never read: the pipe fills after a few hundred access lines.
    let _unread = server.stderr();
    let client = reqwest::Client::new();
    let port = server.port;
    let url = move |path: &str| format!("http://127.0.0.1:{port}{path}");
    assert!(server.ready().await, "the server never got ready");
    // More access lines than the pipe and the queue hold together.
    let requests = geotrack::log_sink::QUEUED_LINES + 4_000;
    let connections = 8;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let client = client.clone();
        tasks.spawn(async move {
            for _ in 0..requests / connections {
                let reply = client
                    .get(url("/health"))
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await
                    .expect("/health answers while nobody reads the logs");
                assert_eq!(reply.status(), 200);
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("a request task");
    }
    let metrics = client
        .get(url("/metrics"))
        .send()
        .await
        .expect("/metrics")
        .text()
        .await
        .expect("body");
    let dropped: u64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("geotrack_log_lines_dropped_total "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no dropped-lines counter in:\n{metrics}"));
    assert!(
        dropped > 0,
        "{requests} access lines, none dropped with an unread pipe"
    );
    server.kill().await;
    admin_exec(&format!("DROP DATABASE IF EXISTS \"{db_name}\" WITH (FORCE)")).await;
}
