//! Test harness: a fresh database per test (created from template1, which
//! `scripts/ensure-postgis.sh` gives PostGIS), the real `Application` on 127.0.0.1:0, a real
//! HTTP client, and a `stop` that shuts the server down like SIGTERM and drops the database.
//! Databases of tests that failed are left behind and purged by `make test` on the next run.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};

use geotrack::StartError;
use geotrack::state::AppState;
use geotrack::{Application, Config};
use serde_json::Value;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Server URL without a database name; override with `PG_TEST_URL`.
fn server_url() -> String {
    std::env::var("PG_TEST_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    /// A pool of the test's own, to look at what the server stored.
    pub db: PgPool,
    pub db_name: String,
    pub db_url: String,
    pub state: AppState,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<Result<(), StartError>>>,
}

pub async fn spawn_app() -> TestApp {
    spawn_with(|_| {}).await
}

/// Starts the application with the default test configuration changed by `tweak`.
pub async fn spawn_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
    let db_name = new_database().await;
    spawn_on(db_name, tweak).await
}

/// Creates an empty test database and returns its name.
pub async fn new_database() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let db_name = format!(
        "gt_test_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        chrono::Utc::now().timestamp_micros() % 1_000_000
    );
    admin_exec(&format!("CREATE DATABASE \"{db_name}\"")).await;
    db_name
}

/// The connection string of a test database.
pub fn database_url(db_name: &str) -> String {
    format!("{}/{db_name}", server_url())
}

/// Starts the application on an existing test database (a restart keeps its data).
pub async fn spawn_on(db_name: String, tweak: impl FnOnce(&mut Config)) -> TestApp {
    let mut config = Config {
        bind: "127.0.0.1:0".parse().expect("address"),
        database_url: database_url(&db_name),
        db_max_connections: 8,
        shutdown_timeout_s: 10,
        ..Config::default()
    };
    config.ingest.shards = 2;
    tweak(&mut config);
    let db_url = config.database_url.clone();

    let wait_until_ready = config.migrate_on_start;
    let app = Application::build(config).await.expect("the application starts");
    let addr = app.local_addr();
    let state = app.state().clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    if wait_until_ready {
        // Tests start from a ready service: the fence index has been loaded.
        let started = std::time::Instant::now();
        while !state.fences.is_loaded() {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(10),
                "fence index never loaded"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
    TestApp {
        addr,
        client: reqwest::Client::new(),
        db: PgPool::connect(&db_url).await.expect("test pool"),
        db_name,
        db_url,
        state,
        stop: Some(stop),
        server: Some(server),
    }
}

/// Runs a statement on the `postgres` maintenance database.
pub async fn admin_exec(sql: &str) {
    let mut conn = PgConnection::connect(&format!("{}/postgres", server_url()))
        .await
        .expect("PostgreSQL is reachable (run scripts/ensure-postgis.sh)");
    sqlx::raw_sql(sql).execute(&mut conn).await.expect(sql);
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn post_json(&self, body: &Value) -> reqwest::Response {
        self.post_raw("application/json", body.to_string()).await
    }

    pub async fn post_raw(&self, content_type: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.client
            .post(self.url("/api/v1/positions"))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request sent")
    }

    /// A request with a JSON body.
    pub async fn send_json(&self, method: reqwest::Method, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .request(method, self.url(path))
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    /// A GET with one extra header.
    pub async fn get_with(&self, path: &str, name: &str, value: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .header(name, value)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.client
            .delete(self.url(path))
            .send()
            .await
            .expect("request sent")
    }

    /// Rows in `positions`.
    pub async fn stored(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM positions")
            .fetch_one(&self.db)
            .await
            .expect("count")
    }

    /// Asks the server to shut down (as SIGTERM does) and waits until it has.
    pub async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("clean shutdown");
        }
    }

    /// Shuts the server down cleanly and starts a new one on the same database.
    pub async fn restart(mut self, tweak: impl FnOnce(&mut Config)) -> TestApp {
        self.shutdown().await;
        self.db.close().await;
        spawn_on(self.db_name.clone(), tweak).await
    }

    /// Shuts the server down and drops the test database.
    pub async fn stop(mut self) {
        self.shutdown().await;
        self.db.close().await;
        admin_exec(&format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            self.db_name
        ))
        .await;
    }
}

/// A fix as JSON, timestamped `age_s` seconds ago.
pub fn fix(device: &str, age_s: i64, lon: f64, lat: f64) -> Value {
    let ts = chrono::Utc::now() - chrono::Duration::seconds(age_s);
    serde_json::json!({"device": device, "ts": ts.to_rfc3339(), "lon": lon, "lat": lat})
}

/// The JSON body of a response, asserting its status first.
pub async fn json_with_status(response: reqwest::Response, status: u16) -> Value {
    let actual = response.status().as_u16();
    let body = response.text().await.expect("body");
    assert_eq!(actual, status, "unexpected status; body: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// Runs the `geotrack` binary with `args` to completion (logs go to its stderr).
pub async fn geotrack(args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_geotrack"))
        .args(args)
        .env("GEOTRACK_LOG", "warn")
        .output()
        .await
        .expect("the geotrack binary runs")
}
