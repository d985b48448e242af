//! The HTTP server loop, in place of `axum::serve`, because a service exposed without a proxy
//! must not let idle or slow clients exhaust it:
//!
//! - every connection has a **header-read timeout** (`http.header_read_timeout_s`): a client
//!   that opens a socket and sends nothing, or half a request line, or stays idle between
//!   keep-alive requests, is disconnected;
//! - connections are **capped** in all (`http.max_connections`, never more than the open-file
//!   limit allows) and per client address (`http.max_connections_per_ip`); a connection over a
//!   cap is accepted and closed at once, so its file descriptor is freed immediately; an
//!   upgraded connection (a WebSocket) counts until its socket closes;
//! - accept errors (out of file descriptors) **back off** instead of spinning;
//! - each request carries the client's address (`ConnectInfo`, [`ConnectionService`]) for
//!   per-address limits.
//!
//! HTTP/1.1 only: browsers speak HTTP/2 only over TLS, which a proxy in front terminates.
//! Shutdown is graceful: no new connection is accepted, open ones finish their request.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioIo, TokioTimer};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_util::sync::CancellationToken;

use crate::connection::{ConnectionService, HttpService};

/// Connection limits and timeouts (`[http]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Longest wait for a request's headers, and for the next request on an idle connection.
    pub header_read_timeout_s: u64,
    /// Open connections at most (WebSockets included); lowered to what the open-file limit
    /// leaves room for.
    pub max_connections: usize,
    /// Open connections from one client address at most (0: no limit). Behind a proxy every
    /// client has the proxy's address: raise it, or limit at the proxy.
    pub max_connections_per_ip: usize,
    /// Without tokens, the host names the server answers to besides `localhost` and its own
    /// address (see `guard`).
    pub allowed_hosts: Vec<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            header_read_timeout_s: 10,
            max_connections: 20_000,
            max_connections_per_ip: 4_096,
            allowed_hosts: Vec::new(),
        }
    }
}

/// File descriptors kept for everything but client connections (the database pool, files,
/// the listener itself).
const RESERVED_FDS: u64 = 256;

/// Raises the process's soft open-file limit to its hard limit and returns the connections
/// that leave room for: `config.max_connections` at most.
pub fn connection_cap(config: &HttpConfig) -> usize {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(error) => {
            tracing::warn!(%error, "cannot read or raise the open-file limit");
            return config.max_connections;
        }
    };
    let room = usize::try_from(limit.saturating_sub(RESERVED_FDS)).unwrap_or(usize::MAX);
    if room < config.max_connections {
        tracing::warn!(
            open_file_limit = limit,
            connections = room,
            "the open-file limit allows fewer connections than http.max_connections"
        );
    }
    room.min(config.max_connections).max(1)
}

/// Serves `router` on `listener` until `shutdown`, then waits for open connections to finish.
pub async fn serve(
    listener: TcpListener,
    router: HttpService,
    config: &HttpConfig,
    max_connections: usize,
    shutdown: CancellationToken,
) {
    let limits = Arc::new(Limits {
        all: Arc::new(Semaphore::new(max_connections)),
        per_ip: Mutex::new(HashMap::new()),
        max_per_ip: config.max_connections_per_ip,
    });
    let timeout = Duration::from_secs(config.header_read_timeout_s.max(1));
    // Dropped when every connection task has ended.
    let (open_tx, open_rx) = watch::channel(());
    let mut accept_errors = Backoff::default();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    accept_errors.wait(&error, &shutdown).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        accept_errors.reset();
        let Some(slot) = limits.admit(peer.ip()) else {
            refuse(stream, peer);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let io = Counted { stream, _slot: slot };
        let router = router.clone();
        let (shutdown, open) = (shutdown.clone(), open_rx.clone());
        tokio::spawn(async move {
            serve_connection(io, peer, router, timeout, shutdown).await;
            drop(open);
        });
    }
    drop(open_rx);
    open_tx.closed().await;
}

/// One connection: HTTP/1.1 with upgrades, until it closes or shutdown asks it to finish.
async fn serve_connection(
    io: Counted,
    peer: SocketAddr,
    router: HttpService,
    timeout: Duration,
    shutdown: CancellationToken,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(timeout);
    let connection = http
        .serve_connection(TokioIo::new(io), ConnectionService::new(router, peer))
        .with_upgrades();
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => log_end(result, peer),
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            log_end(connection.await, peer);
        }
    }
}

fn log_end(result: Result<(), hyper::Error>, peer: SocketAddr) {
    if let Err(error) = result {
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
}

/// A connection over a cap: closed at once (the file descriptor is freed now; the client sees
/// its connection reset and may retry later).
fn refuse(stream: TcpStream, peer: SocketAddr) {
    tracing::debug!(%peer, "connection refused: too many open connections");
    drop(stream);
}

/// The connection caps.
struct Limits {
    all: Arc<Semaphore>,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    max_per_ip: usize,
}

impl Limits {
    /// A slot for a new connection from `ip`, or `None` over a cap.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let permit = self.all.clone().try_acquire_owned().ok()?;
        if self.max_per_ip > 0 {
            let mut open = self.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
            let count = open.entry(ip).or_default();
            if *count >= self.max_per_ip {
                return None;
            }
            *count += 1;
        }
        Some(Slot {
            limits: self.clone(),
            ip,
            _permit: permit,
        })
    }
}

/// A connection's place under the caps, given back when the connection (or the WebSocket it
/// was upgraded to) closes.
struct Slot {
    limits: Arc<Limits>,
    ip: IpAddr,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.limits.max_per_ip == 0 {
            return;
        }
        let mut open = self.limits.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// A client socket holding its [`Slot`]: hyper hands the socket to a WebSocket on upgrade, so
/// the slot lives exactly as long as the socket.
struct Counted {
    stream: TcpStream,
    _slot: Slot,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Waits after an accept error (typically out of file descriptors) so the loop does not spin,
/// and logs at most once every ten seconds.
#[derive(Debug, Default)]
struct Backoff {
    delay: Option<Duration>,
    last_log: Option<Instant>,
}

impl Backoff {
    async fn wait(&mut self, error: &io::Error, shutdown: &CancellationToken) {
        let delay = self
            .delay
            .map_or(Duration::from_millis(10), |d| (d * 2).min(Duration::from_secs(1)));
        self.delay = Some(delay);
        if self
            .last_log
            .is_none_or(|at| at.elapsed() > Duration::from_secs(10))
        {
            tracing::warn!(%error, ?delay, "cannot accept connections; backing off");
            self.last_log = Some(Instant::now());
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = shutdown.cancelled() => {}
        }
    }

    fn reset(&mut self) {
        self.delay = None;
    }
}
