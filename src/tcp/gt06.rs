//! One GT06 connection: a login first (answered when `tcp.token` may write that IMEI, else the
//! connection closes unanswered: the protocol has no refusal), then heartbeats (answered),
//! location packets (stored; the protocol does not answer them) and alarm packets (stored, then
//! answered once committed). A packet before the login closes the connection.
//!
//! A location whose "GPS positioned" bit is clear is not stored: it is counted in
//! `geotrack_ingest_fixes_rejected_total{protocol="gt06",reason="not_positioned"}` and, for an
//! alarm, still answered. As for Teltonika, records that cannot be made durable now, and framing
//! errors (bad CRC, start or stop bytes, length), close the connection unanswered.

use std::net::SocketAddr;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tracker::metrics::ProtocolLabel;
use tracker::tcp::gt06::{Gt06Codec, Gt06Fix, Message, Packet, reply};
use tracker::tcp::metrics::reason;

use super::{Context, Device};

const PROTOCOL: &str = "gt06";
const LABEL: ProtocolLabel = ProtocolLabel { protocol: PROTOCOL };

/// Serves one connection until the device closes it, an error, the idle timeout or shutdown.
pub(super) async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    context: &Context,
    shutdown: &CancellationToken,
) {
    let (read, mut write) = stream.into_split();
    let mut packets = FramedRead::new(read, Gt06Codec);
    let mut device: Option<Device> = None;
    loop {
        let imei = device.as_ref().map(|d| d.imei.as_str());
        let Some(packet) = super::next_frame(&mut packets, context, PROTOCOL, peer, imei, shutdown).await
        else {
            return;
        };
        if !handle(context, peer, packet, &mut write, &mut device).await {
            return;
        }
    }
}

/// Answers, stores or ignores one packet; whether the connection stays open.
async fn handle(
    context: &Context,
    peer: SocketAddr,
    packet: Packet,
    write: &mut OwnedWriteHalf,
    device: &mut Option<Device>,
) -> bool {
    let message = match packet.message() {
        Ok(message) => message,
        Err(detail) => {
            context.metrics.error(PROTOCOL, reason::MALFORMED);
            tracing::warn!(%peer, protocol = packet.protocol, detail, "malformed GT06 packet; closing");
            return false;
        }
    };
    let answer = reply(packet.protocol, packet.serial);
    match (message, device.as_ref()) {
        (Message::Login { imei }, _) => {
            let Some(principal) = super::admit(context, PROTOCOL, peer, &imei) else {
                return false;
            };
            tracing::debug!(%peer, imei, "tracker logged in");
            *device = Some(Device { imei, principal });
            write.write_all(&answer).await.is_ok()
        }
        (_, None) => {
            context.metrics.error(PROTOCOL, reason::BEFORE_LOGIN);
            tracing::warn!(%peer, protocol = packet.protocol, "GT06 packet before a login; closing");
            false
        }
        (Message::Heartbeat, Some(_)) => write.write_all(&answer).await.is_ok(),
        (Message::Position { fix, alarm }, Some(device)) => {
            if !store(context, device, &fix, packet.protocol).await {
                return false;
            }
            !alarm || write.write_all(&answer).await.is_ok()
        }
        (Message::Other, Some(_)) => true,
    }
}

/// Stores a position and waits for its commit; whether it was processed (stored or rejected).
async fn store(context: &Context, device: &Device, fix: &Gt06Fix, protocol: u8) -> bool {
    context.metrics.records.get_or_create(&LABEL).inc();
    let records = vec![fix.raw_fix(&device.imei, protocol)];
    super::store(context, PROTOCOL, &device.principal, &device.imei, records)
        .await
        .is_some()
}
