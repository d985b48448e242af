//! Hardware trackers over TCP: one listener per configured protocol (`[tcp]`), each with a
//! connection cap, an idle timeout and its own connection tasks, stopped with the server.
//! The protocols' framing lives in `tracker::tcp`; here are the sockets, the device check at
//! the handshake, and the acknowledgement, sent only once the records are durable (through
//! [`crate::ingest::Ingest::store`], exactly as HTTP ingest).

pub mod config;
mod gt06;
mod teltonika;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::net::TcpListener;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::Semaphore;
use tokio_util::codec::{Decoder, FramedRead};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracker::metrics::ProtocolLabel;
use tracker::tcp::FrameError;
use tracker::tcp::metrics::{TcpMetrics, reason};

pub use config::{Protocol, TcpConfig};

use crate::auth::Principal;
use crate::ingest::Outcome;
use crate::state::AppState;

/// What the connections of every listener share.
#[derive(Debug)]
pub struct Context {
    pub state: AppState,
    pub metrics: TcpMetrics,
    /// The token the listeners act as (`tcp.token`).
    pub token: Option<String>,
    pub idle_timeout: Duration,
    /// Longest wait for a packet's records to be committed before the connection is closed
    /// without an acknowledgement.
    pub store_timeout: Duration,
}

/// The bound listeners, not yet accepting.
#[derive(Debug)]
pub struct Listeners {
    bound: Vec<(Protocol, TcpListener)>,
    max_connections: usize,
}

impl Listeners {
    /// Binds every configured listener; the address that could not be bound on failure.
    pub async fn bind(config: &TcpConfig) -> Result<Self, (SocketAddr, std::io::Error)> {
        let mut bound = Vec::new();
        for (protocol, addr) in config.listeners() {
            let listener = TcpListener::bind(addr).await.map_err(|e| (addr, e))?;
            bound.push((protocol, listener));
        }
        Ok(Self {
            bound,
            max_connections: config.max_connections.max(1),
        })
    }

    /// The address a protocol's listener is bound to (the real port when configured with 0).
    pub fn addr(&self, protocol: &str) -> Option<SocketAddr> {
        self.bound
            .iter()
            .find(|(p, _)| p.name() == protocol)
            .and_then(|(_, l)| l.local_addr().ok())
    }

    /// Starts accepting. The returned tracker holds the accept loops and every connection:
    /// after `shutdown`, the loops stop, idle connections close, and a connection storing a
    /// packet finishes it (acknowledging it if it commits) first.
    pub fn spawn(self, context: Context, shutdown: &CancellationToken) -> TaskTracker {
        let tasks = TaskTracker::new();
        let context = Arc::new(context);
        for (protocol, listener) in self.bound {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(protocol = protocol.name(), %addr, "listening for trackers");
            }
            let accept = Accept {
                protocol,
                listener,
                room: Arc::new(Semaphore::new(self.max_connections)),
                context: context.clone(),
                tasks: tasks.clone(),
            };
            tasks.spawn(accept.run(shutdown.clone()));
        }
        tasks
    }
}

/// One listener's accept loop.
struct Accept {
    protocol: Protocol,
    listener: TcpListener,
    room: Arc<Semaphore>,
    context: Arc<Context>,
    tasks: TaskTracker,
}

impl Accept {
    async fn run(self, shutdown: CancellationToken) {
        let name = self.protocol.name();
        let label = ProtocolLabel { protocol: name };
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => return,
                accepted = self.listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, mostly: wait instead of spinning.
                    tracing::warn!(protocol = name, %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            self.context.metrics.connections_total.get_or_create(&label).inc();
            let Ok(permit) = self.room.clone().try_acquire_owned() else {
                self.context.metrics.error(name, reason::OVER_CAPACITY);
                tracing::warn!(protocol = name, %peer, "connection refused: the listener is at max_connections");
                drop(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            let open = Open::new(self.context.metrics.connections.get_or_create(&label).clone());
            let context = self.context.clone();
            let stop = shutdown.clone();
            let protocol = self.protocol;
            self.tasks.spawn(async move {
                match protocol {
                    Protocol::Teltonika => teltonika::connection(stream, peer, &context, &stop).await,
                    Protocol::Gt06 => gt06::connection(stream, peer, &context, &stop).await,
                }
                drop((open, permit));
            });
        }
    }
}

/// Counts a connection as open for as long as it lives (a panicking task included).
struct Open(prometheus_client::metrics::gauge::Gauge);

impl Open {
    fn new(gauge: prometheus_client::metrics::gauge::Gauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The device of a connection, once its handshake (Teltonika) or login (GT06) was accepted.
struct Device {
    imei: String,
    principal: Principal,
}

/// The next frame of a connection, counted; `None` when the connection is to close: on shutdown,
/// when the device closed it, after the idle timeout (counted), or on an unreadable stream
/// (counted and logged; nothing of it is acknowledged, and past a framing error the stream
/// cannot be trusted to be in step).
async fn next_frame<D>(
    frames: &mut FramedRead<OwnedReadHalf, D>,
    context: &Context,
    protocol: &'static str,
    peer: SocketAddr,
    imei: Option<&str>,
    shutdown: &CancellationToken,
) -> Option<D::Item>
where
    D: Decoder,
    D::Error: FrameError,
{
    let next = tokio::select! {
        () = shutdown.cancelled() => return None,
        next = tokio::time::timeout(context.idle_timeout, frames.next()) => next,
    };
    match next {
        Err(_) => {
            context.metrics.error(protocol, reason::IDLE_TIMEOUT);
            tracing::debug!(protocol, %peer, imei, "idle tracker disconnected");
            None
        }
        Ok(None) => None,
        Ok(Some(Err(error))) => {
            context.metrics.error(protocol, error.reason());
            tracing::warn!(protocol, %peer, imei, %error, "unreadable tracker stream; closing, nothing acknowledged");
            None
        }
        Ok(Some(Ok(frame))) => {
            context
                .metrics
                .packets
                .get_or_create(&ProtocolLabel { protocol })
                .inc();
            Some(frame)
        }
    }
}

/// The principal a device may write as, when the listener's token allows its IMEI; counts and
/// logs a refusal.
fn admit(context: &Context, protocol: &'static str, peer: SocketAddr, imei: &str) -> Option<Principal> {
    let principal = context
        .state
        .auth
        .device_listener(context.token.as_deref())
        .filter(|p| p.allows_device(imei));
    if principal.is_none() {
        context.metrics.error(protocol, reason::REFUSED_DEVICE);
        tracing::warn!(protocol, %peer, imei, "tracker refused: tcp.token may not write this IMEI");
    }
    principal
}

/// Stores a packet's records as HTTP ingest does and waits for their commit; `None` (counted
/// and logged) when they cannot be made durable now or not within the store timeout.
async fn store(
    context: &Context,
    protocol: &'static str,
    principal: &Principal,
    imei: &str,
    records: tracker::decode::Records,
) -> Option<Outcome> {
    let stored = tokio::time::timeout(
        context.store_timeout,
        context.state.ingest.store(principal, protocol, records),
    )
    .await;
    let failure = match stored {
        Ok(Ok(outcome)) => {
            for (index, rejection) in &outcome.rejected {
                tracing::debug!(protocol, imei, index, code = rejection.code, reason = %rejection.message, "tracker record not stored");
            }
            return Some(outcome);
        }
        Ok(Err(error)) => error.code(),
        Err(_) => "commit_timeout",
    };
    context.metrics.error(protocol, reason::NOT_STORED);
    tracing::warn!(
        protocol,
        imei,
        code = failure,
        "records not stored; no acknowledgement, closing"
    );
    None
}
