//! The application under test: a fresh database per test (created from template1, which
//! `scripts/ensure-postgis.sh` gives PostGIS), the real `Application` on 127.0.0.1:0, requests
//! to it with or without a token ([`TestRequest`]), the `geotrack` binary, and a `stop` that
//! shuts the server down like SIGTERM and drops the database. Databases of tests that failed are
//! left behind and purged by `make test` on the next run.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};

use geotrack::StartError;
use geotrack::state::AppState;
use geotrack::{Application, Config};
use reqwest::Method;
use serde_json::Value;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::wait::wait_for_fence_index;

/// Server URL without a database name; override with `PG_TEST_URL`.
pub(super) fn server_url() -> String {
    std::env::var("PG_TEST_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

pub struct TestApp {
    pub addr: SocketAddr,
    /// The Teltonika listener's address, when `tcp.teltonika` is configured.
    pub teltonika: Option<SocketAddr>,
    /// The GT06 listener's address, when `tcp.gt06` is configured.
    pub gt06: Option<SocketAddr>,
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
    let teltonika = app.tcp_addr("teltonika");
    let gt06 = app.tcp_addr("gt06");
    let state = app.state().clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    if wait_until_ready {
        // Tests start from a ready service: the fence index has been loaded.
        wait_for_fence_index(&state).await;
    }
    TestApp {
        addr,
        teltonika,
        gt06,
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

/// A request to the test server, built like a `reqwest` one and sent with `send`:
/// `app.request(Method::POST, "/api/v1/fences").token("admin-token-1").json(&fence).send().await`.
/// A token goes where the client under test would put it: `token` (the `Authorization` header,
/// as API clients send it), `query_token` (`?token=`, as maps and device apps do) or
/// `basic_token` (the password of basic auth, as `OwnTracks` does).
#[must_use = "a request does nothing until it is sent"]
pub struct TestRequest(reqwest::RequestBuilder);

impl TestRequest {
    /// `Authorization: Bearer <token>`.
    pub fn token(self, token: &str) -> Self {
        Self(self.0.bearer_auth(token))
    }

    /// `token=<token>` appended to the query of the path (percent-encoded).
    pub fn query_token(self, token: &str) -> Self {
        let (client, request) = self.0.build_split();
        let mut request = request.expect("a valid request");
        request.url_mut().query_pairs_mut().append_pair("token", token);
        Self(reqwest::RequestBuilder::from_parts(client, request))
    }

    /// HTTP basic auth with the token as the password.
    pub fn basic_token(self, user: &str, token: &str) -> Self {
        Self(self.0.basic_auth(user, Some(token)))
    }

    pub fn header(self, name: &str, value: &str) -> Self {
        Self(self.0.header(name, value))
    }

    /// A JSON body, with `content-type: application/json`.
    pub fn json(self, body: &(impl serde::Serialize + ?Sized)) -> Self {
        Self(self.0.json(body))
    }

    /// A body as it is, with no content type unless a `header` sets one.
    pub fn body(self, body: impl Into<reqwest::Body>) -> Self {
        Self(self.0.body(body))
    }

    /// Sends the request; panics if no response comes (any status is a response).
    pub async fn send(self) -> reqwest::Response {
        self.try_send().await.expect("request sent")
    }

    /// Sends the request, for a test that looks at the transport error itself.
    pub async fn try_send(self) -> reqwest::Result<reqwest::Response> {
        self.0.send().await
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A request to `path` (with its query) on this server.
    pub fn request(&self, method: Method, path: &str) -> TestRequest {
        self.request_url(method, &self.url(path))
    }

    /// A request to a whole URL, such as one the server handed out (TileJSON, style sources).
    pub fn request_url(&self, method: Method, url: &str) -> TestRequest {
        TestRequest(self.client.request(method, url))
    }

    /// Fixes as JSON to `POST /api/v1/positions`.
    pub async fn post_json(&self, body: &Value) -> reqwest::Response {
        self.post_raw("application/json", body.to_string()).await
    }

    /// A body of any content type to `POST /api/v1/positions`.
    pub async fn post_raw(&self, content_type: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.request(Method::POST, "/api/v1/positions")
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.request(Method::GET, path).send().await
    }

    /// A request with a JSON body.
    pub async fn send_json(&self, method: Method, path: &str, body: &Value) -> reqwest::Response {
        self.request(method, path).json(body).send().await
    }

    /// A GET with one extra header.
    pub async fn get_with(&self, path: &str, name: &str, value: &str) -> reqwest::Response {
        self.request(Method::GET, path).header(name, value).send().await
    }

    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.request(Method::DELETE, path).send().await
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
