//! One Teltonika connection: the IMEI handshake (`0x01` when the listener's token may write
//! that device, else `0x00` and the connection closes), then AVL packets, each acknowledged
//! with its record count once its records are committed.
//!
//! - Records that fail validation (time out of the window, no GPS fix...) are counted as
//!   rejected and the packet is still acknowledged when the rest committed: the device would
//!   otherwise send the same unstorable records forever, blocking the ones behind them.
//! - A packet that cannot be made durable now (queue full, database or fix log down, the
//!   device over its rate limit, or no commit within `request_timeout_s`) gets no
//!   acknowledgement and the connection closes: the device keeps the records and resends them.
//! - A framing error (bad CRC, unknown codec, garbage) gets no acknowledgement, stores nothing,
//!   and closes the connection: past it the stream cannot be trusted to be in step.

use std::net::SocketAddr;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tracker::metrics::ProtocolLabel;
use tracker::tcp::teltonika::{Frame, Packet, TeltonikaCodec};

use super::{Context, Device};

const PROTOCOL: &str = "teltonika";
const LABEL: ProtocolLabel = ProtocolLabel { protocol: PROTOCOL };

/// Serves one connection until the device closes it, an error, the idle timeout or shutdown.
pub(super) async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    context: &Context,
    shutdown: &CancellationToken,
) {
    let (read, mut write) = stream.into_split();
    let mut frames = FramedRead::new(read, TeltonikaCodec::new());
    let mut device: Option<Device> = None;
    loop {
        let imei = device.as_ref().map(|d| d.imei.as_str());
        let Some(frame) = super::next_frame(&mut frames, context, PROTOCOL, peer, imei, shutdown).await
        else {
            return;
        };
        let open = match frame {
            Frame::Imei(imei) => handshake(context, peer, imei, &mut write, &mut device).await,
            Frame::Packet(packet) => match &device {
                Some(device) => store(context, device, packet, &mut write).await,
                // The codec yields the handshake first: a packet cannot come before it.
                None => false,
            },
        };
        if !open {
            return;
        }
    }
}

/// Answers the handshake; whether the connection stays open.
async fn handshake(
    context: &Context,
    peer: SocketAddr,
    imei: String,
    write: &mut OwnedWriteHalf,
    device: &mut Option<Device>,
) -> bool {
    let Some(principal) = super::admit(context, PROTOCOL, peer, &imei) else {
        let _ = write.write_all(&[0x00]).await;
        return false;
    };
    tracing::debug!(%peer, imei, "tracker connected");
    *device = Some(Device { imei, principal });
    write.write_all(&[0x01]).await.is_ok()
}

/// Stores a packet's records and acknowledges them once committed; whether the connection
/// stays open.
async fn store(context: &Context, device: &Device, packet: Packet, write: &mut OwnedWriteHalf) -> bool {
    let count = packet.records.len();
    context.metrics.records.get_or_create(&LABEL).inc_by(count as u64);
    let records = packet.records.iter().map(|r| r.raw_fix(&device.imei)).collect();
    if super::store(context, PROTOCOL, &device.principal, &device.imei, records)
        .await
        .is_none()
    {
        return false;
    }
    let ack = u32::try_from(count).unwrap_or(u32::MAX).to_be_bytes();
    write.write_all(&ack).await.is_ok()
}
