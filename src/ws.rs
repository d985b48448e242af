//! WebSocket plumbing shared by `/ws/alerts` and `/ws/positions`.
//!
//! A session is a tracked task, awaited at shutdown (axum's graceful shutdown does not wait
//! for upgraded connections). Every send has a deadline, so a peer that stops reading is
//! dropped instead of holding its task forever. A ping goes out every interval and a peer not
//! heard from for two intervals is closed. At shutdown the peer gets a Close frame (1001).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use axum::response::Response;
use futures_util::SinkExt;
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::config::WsConfig;

/// Why a session ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gone {
    /// The peer closed the socket or the connection broke.
    Peer,
    /// The peer stopped answering pings or taking messages.
    Unresponsive,
    /// The server is shutting down.
    Shutdown,
}

/// A session's socket with its housekeeping.
#[derive(Debug)]
pub struct Socket {
    inner: WebSocket,
    send_timeout: Duration,
    ping_every: Duration,
    pings: Interval,
    last_heard: Instant,
    shutdown: CancellationToken,
    counters: Counters,
}

/// What happened to sessions (`geotrack_ws_*_total`).
#[derive(Debug, Clone, Default)]
struct Counters {
    opened: Counter,
    /// Closed by the server because the peer stopped answering pings or taking messages.
    dropped: Counter,
    /// Fell behind their feed (told to resume from a cursor, or sent a fresh snapshot).
    lagged: Counter,
}

/// Where WebSocket sessions (and other work that outlives a request) run: tracked tasks, awaited
/// at shutdown, and the token that tells them to stop.
#[derive(Debug, Clone)]
pub struct Sessions {
    pub tasks: TaskTracker,
    pub shutdown: CancellationToken,
    pub config: Arc<WsConfig>,
    /// WebSocket sessions open now (`geotrack_ws_connected`).
    connected: Gauge,
    counters: Counters,
}

/// Counts a session as connected while it lives.
struct Connected(Gauge);

impl Drop for Connected {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Sessions {
    /// No sessions yet, with their own task tracker and shutdown token; their metrics are
    /// registered in `registry`.
    pub fn new(config: &WsConfig, registry: &mut Registry) -> Self {
        let sessions = Self {
            tasks: TaskTracker::new(),
            shutdown: CancellationToken::new(),
            config: Arc::new(config.clone()),
            connected: Gauge::default(),
            counters: Counters::default(),
        };
        let registry = registry.sub_registry_with_prefix("geotrack_ws");
        registry.register(
            "connected",
            "WebSocket sessions open now (alerts, positions, tiles)",
            sessions.connected.clone(),
        );
        let counters = &sessions.counters;
        registry.register("opened", "WebSocket sessions opened", counters.opened.clone());
        registry.register(
            "dropped",
            "Sessions closed because the peer stopped answering pings or taking messages",
            counters.dropped.clone(),
        );
        registry.register(
            "lagged",
            "Times a session fell behind its feed (resumed from a cursor or sent a new snapshot)",
            counters.lagged.clone(),
        );
        sessions
    }

    /// Upgrades to a WebSocket and runs `session` on it as a tracked task.
    pub fn accept<F, Fut>(&self, upgrade: WebSocketUpgrade, session: F) -> Response
    where
        F: FnOnce(Socket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let tasks = self.tasks.clone();
        let shutdown = self.shutdown.clone();
        let ping_every = Duration::from_secs(self.config.ping_s.max(1));
        let send_timeout = Duration::from_secs(self.config.send_timeout_s.max(1));
        // Small buffers: an idle subscriber should cost kilobytes, not the 128 KiB read buffer
        // tungstenite allocates by default. Clients only ever send small control messages.
        let upgrade = upgrade
            .read_buffer_size(4 * 1024)
            .write_buffer_size(8 * 1024)
            .max_message_size(64 * 1024)
            .max_frame_size(64 * 1024);
        let (connected, counters) = (self.connected.clone(), self.counters.clone());
        upgrade.on_upgrade(move |inner| {
            counters.opened.inc();
            connected.inc();
            let counted = Connected(connected);
            let mut pings = tokio::time::interval_at(Instant::now() + ping_every, ping_every);
            pings.set_missed_tick_behavior(MissedTickBehavior::Delay);
            let socket = Socket {
                inner,
                send_timeout,
                ping_every,
                pings,
                last_heard: Instant::now(),
                shutdown,
                counters,
            };
            tasks.track_future(async move {
                session(socket).await;
                drop(counted);
            })
        })
    }
}

impl Socket {
    /// Sends a text message within the send timeout.
    pub async fn send(&mut self, text: Utf8Bytes) -> Result<(), Gone> {
        self.send_message(Message::Text(text)).await
    }

    /// Sends a JSON value.
    pub async fn send_json(&mut self, value: &serde_json::Value) -> Result<(), Gone> {
        self.send(value.to_string().into()).await
    }

    /// Sends several text messages with one flush, within the send timeout.
    pub async fn send_all(&mut self, texts: Vec<Utf8Bytes>) -> Result<(), Gone> {
        if texts.is_empty() {
            return Ok(());
        }
        let inner = &mut self.inner;
        let write = async move {
            for text in texts {
                inner.feed(Message::Text(text)).await?;
            }
            inner.flush().await
        };
        match tokio::time::timeout(self.send_timeout, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Gone::Peer),
            Err(_) => Err(Gone::Unresponsive),
        }
    }

    async fn send_message(&mut self, message: Message) -> Result<(), Gone> {
        match tokio::time::timeout(self.send_timeout, self.inner.send(message)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Gone::Peer),
            Err(_) => Err(Gone::Unresponsive),
        }
    }

    /// The next text message from the peer, answering pings and sending ours meanwhile.
    /// Cancel-safe: a caller may `select!` it against its own sources.
    pub async fn recv(&mut self) -> Result<Utf8Bytes, Gone> {
        loop {
            tokio::select! {
                message = self.inner.recv() => {
                    self.last_heard = Instant::now();
                    match message {
                        Some(Ok(Message::Text(text))) => return Ok(text),
                        Some(Ok(Message::Close(_)) | Err(_)) | None => return Err(Gone::Peer),
                        // Pongs are answered by the library; anything heard proves the peer is alive.
                        Some(Ok(_)) => {}
                    }
                }
                _ = self.pings.tick() => {
                    if self.last_heard.elapsed() > self.ping_every * 2 {
                        return Err(Gone::Unresponsive);
                    }
                    self.send_message(Message::Ping(bytes::Bytes::new())).await?;
                }
                () = self.shutdown.cancelled() => return Err(Gone::Shutdown),
            }
        }
    }

    /// Counts that the session fell behind its feed.
    pub fn lagged(&self) {
        self.counters.lagged.inc();
    }

    /// Ends the session with a Close frame saying why (best effort: the peer may be gone).
    pub async fn close(mut self, why: Gone, reason: &'static str) {
        let code = match why {
            Gone::Peer => return,
            Gone::Unresponsive => {
                self.counters.dropped.inc();
                close_code::POLICY
            }
            Gone::Shutdown => close_code::AWAY,
        };
        let frame = CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        };
        let _ = self.send_message(Message::Close(Some(frame))).await;
    }

    /// Ends the session normally (1000) with a reason.
    pub async fn close_normally(mut self, reason: &'static str) {
        let frame = CloseFrame {
            code: close_code::NORMAL,
            reason: Utf8Bytes::from_static(reason),
        };
        let _ = self.send_message(Message::Close(Some(frame))).await;
    }
}
