//! The real `geotrack serve` binary as a child process on a free port, for tests that kill it
//! (SIGKILL), pause it (SIGSTOP/SIGCONT) or stop it as an operator does (SIGTERM).

use std::net::TcpListener;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, ChildStderr, Command};

use super::app::database_url;
use super::wait::poll_until;

pub struct ServerProcess {
    child: Child,
    pub port: u16,
}

impl ServerProcess {
    /// Starts a server on `db_name` with these extra `GEOTRACK_*` variables, and waits until
    /// `/ready` answers 200 (20 s at most).
    pub async fn start(db_name: &str, env: &[(&str, String)]) -> Self {
        let server = Self::spawn(db_name, &[], env, Stdio::inherit());
        assert!(server.ready().await, "the server never got ready");
        server
    }

    /// Starts `geotrack <global_args> serve` on `db_name` with these extra `GEOTRACK_*`
    /// variables (they override the defaults here), its log lines on `stderr`; does not wait.
    pub fn spawn(db_name: &str, global_args: &[&str], env: &[(&str, String)], stderr: Stdio) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_geotrack"))
            .args(global_args)
            .arg("serve")
            .env("DATABASE_URL", database_url(db_name))
            .env("GEOTRACK_BIND", format!("127.0.0.1:{port}"))
            .env("GEOTRACK_INGEST__SHARDS", "2")
            .env("GEOTRACK_DB_MAX_CONNECTIONS", "8")
            .env("GEOTRACK_LOG", "warn")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .expect("the server binary starts");
        Self { child, port }
    }

    /// Whether `/ready` answers 200 within 20 s.
    pub async fn ready(&self) -> bool {
        let client = reqwest::Client::new();
        poll_until(Duration::from_secs(20), Duration::from_millis(50), async || {
            let reply = client.get(self.url("/ready")).send().await;
            reply.is_ok_and(|reply| reply.status() == 200)
        })
        .await
    }

    /// Its standard error, when spawned with it piped (once).
    pub fn stderr(&mut self) -> ChildStderr {
        self.child.stderr.take().expect("stderr is piped")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{path}", self.port)
    }

    /// SIGKILL, and waits until the process is gone.
    pub async fn kill(mut self) {
        self.child.start_kill().expect("SIGKILL");
        self.child.wait().await.expect("reaped");
    }

    /// Sends a signal by name (`STOP`, `CONT`, `TERM`).
    pub async fn signal(&self, name: &str) {
        let pid = self.child.id().expect("the process runs");
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status()
            .await
            .expect("kill runs");
        assert!(status.success(), "kill -{name} {pid}");
    }

    /// Waits for the process to exit by itself (after SIGTERM); whether it exited cleanly.
    pub async fn exited(mut self, within: Duration) -> bool {
        match tokio::time::timeout(within, self.child.wait()).await {
            Ok(status) => status.is_ok_and(|s| s.success()),
            Err(_) => false,
        }
    }
}
