//! A WebSocket subscriber light enough to take a million messages a second on the cores it
//! shares with the server: it reads the socket in large chunks and walks the frames in place
//! (tungstenite's frame header parser, no message allocated), handing each text payload to a
//! callback as bytes, all of one read with the time that read returned. It answers pings, so
//! the server keeps it; it never sends anything else. [`AlertFields`] finds an alert's id and
//! the time its fix reached the server in such a payload without parsing the rest.
//!
//! A full client (tokio-tungstenite, as `bench-cluster` uses) allocates and validates every
//! message and polls a stream per message: work that, a million times a second, the client
//! would take from the two cores the server needs.

use std::io::Cursor;
use std::time::{Duration, SystemTime};

use bytes::{Buf, BytesMut};
use memchr::memmem::{self, Finder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{Frame, FrameHeader};

use crate::Error;

/// The largest handshake answer read before giving up.
const MAX_HEADERS: usize = 16 * 1024;

/// An open subscription, past its handshake.
pub(crate) struct LightSocket {
    stream: TcpStream,
    /// Bytes read and not yet walked (a frame cut by the end of a read).
    buffer: BytesMut,
    url: String,
}

/// Why a socket stopped being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Closed {
    /// The server sent a close frame or closed the connection.
    ByServer,
    /// The reader asked to stop.
    ByReader,
}

impl LightSocket {
    /// Opens `ws://host:port/path` (`url` as `http://host:port`) with the upgrade handshake.
    pub(crate) async fn connect(url: &str, path: &str) -> Result<Self, Error> {
        let ws_url = format!("{}{path}", url.replacen("http", "ws", 1));
        let fail = |reason: String| Error::Handshake {
            url: ws_url.clone(),
            reason,
        };
        let host = url.trim_start_matches("http://").trim_end_matches('/').to_owned();
        let mut stream = TcpStream::connect(&host)
            .await
            .map_err(|e| fail(format!("cannot connect: {e}")))?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n\r\n",
            generate_key()
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| fail(format!("cannot send the handshake: {e}")))?;
        let mut buffer = BytesMut::with_capacity(64 * 1024);
        let end = loop {
            if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            if buffer.len() > MAX_HEADERS {
                return Err(fail("the handshake answer has no end".into()));
            }
            let read = stream
                .read_buf(&mut buffer)
                .await
                .map_err(|e| fail(format!("cannot read the handshake answer: {e}")))?;
            if read == 0 {
                return Err(fail("closed during the handshake".into()));
            }
        };
        let status = String::from_utf8_lossy(&buffer[..end]);
        if !status.starts_with("HTTP/1.1 101") {
            let line = status.lines().next().unwrap_or_default().to_owned();
            return Err(fail(format!("the server answered {line:?}, not 101")));
        }
        // What follows the answer is the first frames.
        buffer.advance(end);
        Ok(Self {
            stream,
            buffer,
            url: ws_url,
        })
    }

    /// Reads until the first text message that contains `marker` (the server's `live`).
    pub(crate) async fn wait_for(&mut self, marker: &str) -> Result<(), Error> {
        let mut found = false;
        let closed = self
            .read(None, |text, _| {
                found = found || memmem::find(text, marker.as_bytes()).is_some();
                !found
            })
            .await;
        if found {
            return Ok(());
        }
        Err(Error::Handshake {
            url: self.url.clone(),
            reason: format!("closed ({closed:?}) before a message with {marker}"),
        })
    }

    /// Hands every text payload to `each` with the time its read returned, answering pings,
    /// until the server closes or `each` returns false. `pace`: at most this many bytes a read
    /// and this pause before each (a slow consumer); `None` reads as fast as the socket gives.
    pub(crate) async fn read(
        &mut self,
        pace: Option<(usize, Duration)>,
        mut each: impl FnMut(&[u8], SystemTime) -> bool,
    ) -> Closed {
        loop {
            if let Some(closed) = self.walk(&mut each).await {
                return closed;
            }
            let read = match pace {
                Some((bytes, pause)) => {
                    tokio::time::sleep(pause).await;
                    let limit = u64::try_from(bytes).unwrap_or(u64::MAX);
                    (&mut self.stream).take(limit).read_buf(&mut self.buffer).await
                }
                None => self.stream.read_buf(&mut self.buffer).await,
            };
            if !matches!(read, Ok(n) if n > 0) {
                return Closed::ByServer;
            }
        }
    }

    /// Walks the whole frames in the buffer; `Some` once reading should stop.
    async fn walk(&mut self, each: &mut impl FnMut(&[u8], SystemTime) -> bool) -> Option<Closed> {
        let now = SystemTime::now();
        loop {
            let mut cursor = Cursor::new(&self.buffer[..]);
            let (header, length) = match FrameHeader::parse(&mut cursor) {
                Ok(Some(parsed)) => parsed,
                // A header cut by the end of the read: the next read completes it.
                Ok(None) => return None,
                // Not a frame: nothing more can be read from this stream.
                Err(_) => return Some(Closed::ByServer),
            };
            let start = usize::try_from(cursor.position()).unwrap_or(usize::MAX);
            let end = start.saturating_add(usize::try_from(length).unwrap_or(usize::MAX));
            if self.buffer.len() < end {
                self.buffer.reserve(end - self.buffer.len());
                return None;
            }
            let payload = &self.buffer[start..end];
            let stop = match header.opcode {
                OpCode::Data(Data::Text) => (!each(payload, now)).then_some(Closed::ByReader),
                OpCode::Control(Control::Ping) => {
                    let mut pong = Frame::pong(payload.to_vec());
                    // A client's frames are masked; a zero mask leaves the payload as it is.
                    pong.header_mut().mask = Some([0; 4]);
                    let mut out = Vec::with_capacity(payload.len() + 8);
                    let sent = match pong.format(&mut out) {
                        Ok(()) => self.stream.write_all(&out).await.is_ok(),
                        Err(_) => false,
                    };
                    (!sent).then_some(Closed::ByServer)
                }
                OpCode::Control(Control::Close) => Some(Closed::ByServer),
                _ => None,
            };
            self.buffer.advance(end);
            if stop.is_some() {
                return stop;
            }
        }
    }
}

/// Finds an alert message's fields without parsing the rest of it.
pub(crate) struct AlertFields {
    received_at: Finder<'static>,
    lagged: Finder<'static>,
}

/// How an alert message begins (`Published` writes `type` first, then `id`).
const ALERT_PREFIX: &[u8] = b"{\"type\":\"alert\",\"id\":";

impl AlertFields {
    pub(crate) fn new() -> Self {
        Self {
            received_at: Finder::new(b"\"received_at\":\"").into_owned(),
            lagged: Finder::new(b"\"type\":\"lagged\"").into_owned(),
        }
    }

    /// An alert's id and the time its fix reached the server; `None` for other messages.
    pub(crate) fn alert(&self, message: &[u8]) -> Option<(i64, SystemTime)> {
        let rest = message.strip_prefix(ALERT_PREFIX)?;
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let id = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
        let start = self.received_at.find(rest)? + self.received_at.needle().len();
        let length = rest[start..].iter().position(|&b| b == b'"')?;
        let text = std::str::from_utf8(&rest[start..start + length]).ok()?;
        let at = chrono::DateTime::parse_from_rfc3339(text).ok()?;
        Some((id, at.into()))
    }

    pub(crate) fn lagged(&self, message: &[u8]) -> bool {
        self.lagged.find(message).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alert_message_gives_its_id_and_arrival_and_others_nothing() {
        let fields = AlertFields::new();
        let message = br#"{"type":"alert","id":4711,"device":"d","fence":"f","fence_name":null,"kind":"enter","ts":"2026-12-07T10:00:00Z","position":[1.0,2.0],"speed_mps":null,"interpolated":false,"received_at":"2026-12-07T10:00:00.250000Z","created_at":"2026-12-07T10:00:00.260000Z"}"#;
        let (id, at) = fields.alert(message).expect("an alert");
        assert_eq!(id, 4711);
        let expected = chrono::DateTime::parse_from_rfc3339("2026-12-07T10:00:00.25Z").expect("time");
        assert_eq!(at, SystemTime::from(expected));
        assert!(fields.alert(br#"{"type":"live","cursor":3}"#).is_none());
        assert!(fields.lagged(br#"{"type":"lagged","resume_from":9}"#));
        assert!(!fields.lagged(message));
    }
}
