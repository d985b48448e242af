//! A TCP proxy between the server under test and PostgreSQL (or NATS), which a test cuts (every
//! open connection dropped, new ones refused) and restores: the database or the message bus
//! "goes away" for one server only, so tests running in parallel on the same services are not
//! disturbed.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::app::server_url;

pub struct TcpProxy {
    pub addr: SocketAddr,
    cut: watch::Sender<bool>,
    accepting: JoinHandle<()>,
}

impl TcpProxy {
    /// Starts forwarding 127.0.0.1:<some port> to the PostgreSQL the tests use.
    pub async fn to_postgres() -> Self {
        let upstream = server_url();
        let upstream = reqwest::Url::parse(&upstream).expect("PG_TEST_URL is a URL");
        Self::to(format!(
            "{}:{}",
            upstream.host_str().unwrap_or("127.0.0.1"),
            upstream.port().unwrap_or(5432)
        ))
        .await
    }

    /// Starts forwarding 127.0.0.1:<some port> to `upstream` (`host:port`).
    pub async fn to(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy port");
        let addr = listener.local_addr().expect("proxy address");
        let (cut, _) = watch::channel(false);
        let accepting = tokio::spawn(accept(listener, upstream, cut.clone()));
        Self { addr, cut, accepting }
    }

    /// The connection string of `db_name` through the proxy.
    pub fn database_url(&self, db_name: &str) -> String {
        let mut url = reqwest::Url::parse(&server_url()).expect("PG_TEST_URL is a URL");
        url.set_port(Some(self.addr.port())).expect("a port");
        url.set_host(Some("127.0.0.1")).expect("a host");
        format!("{}/{db_name}", url.as_str().trim_end_matches('/'))
    }

    /// Drops every open connection and refuses new ones until [`TcpProxy::restore`].
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    pub fn restore(&self) {
        self.cut.send_replace(false);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut.send_replace(true);
        self.accepting.abort();
    }
}

async fn accept(listener: TcpListener, upstream: String, cut: watch::Sender<bool>) {
    while let Ok((client, _)) = listener.accept().await {
        if *cut.borrow() {
            continue; // dropped: the connection is refused
        }
        let upstream = upstream.clone();
        let mut cut = cut.subscribe();
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(&upstream).await else {
                return;
            };
            let (mut client, mut server) = (client, server);
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                _ = cut.wait_for(|cut| *cut) => {}
            }
        });
    }
}
