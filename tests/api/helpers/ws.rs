//! A WebSocket client for tests (tokio-tungstenite), with deadlines on every wait so a missing
//! message fails the test instead of hanging it.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::app::TestApp;

pub struct WsClient {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// What the server sent next.
#[derive(Debug)]
pub enum Next {
    Json(Value),
    Closed(Option<CloseFrame>),
}

impl WsClient {
    /// Connects to `path` (with its query) on the test server.
    pub async fn connect(app: &TestApp, path: &str) -> Self {
        Self::try_connect(app, path)
            .await
            .unwrap_or_else(|e| panic!("WebSocket {path}: {e}"))
    }

    pub async fn try_connect(
        app: &TestApp,
        path: &str,
    ) -> Result<Self, tokio_tungstenite::tungstenite::Error> {
        Self::try_connect_url(&format!("ws://{}{path}", app.addr)).await
    }

    pub async fn try_connect_url(url: &str) -> Result<Self, tokio_tungstenite::tungstenite::Error> {
        let (stream, _) = tokio_tungstenite::connect_async(url).await?;
        Ok(Self { stream })
    }

    /// The next message (pings are answered by the library), within 10 s.
    pub async fn next(&mut self) -> Next {
        loop {
            let message = tokio::time::timeout(Duration::from_secs(10), self.stream.next())
                .await
                .expect("a message within 10 s");
            match message {
                Some(Ok(Message::Text(text))) => {
                    return Next::Json(serde_json::from_str(&text).expect("messages are JSON"));
                }
                Some(Ok(Message::Close(frame))) => return Next::Closed(frame),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Next::Closed(None),
            }
        }
    }

    /// The next JSON message; panics on close.
    pub async fn json(&mut self) -> Value {
        match self.next().await {
            Next::Json(value) => value,
            Next::Closed(frame) => panic!("socket closed: {frame:?}"),
        }
    }

    /// Reads up to the `{"type":"live"}` message; returns the alerts replayed before it.
    pub async fn until_live(&mut self) -> Vec<Value> {
        let mut replayed = Vec::new();
        loop {
            let message = self.json().await;
            match message["type"].as_str() {
                Some("live") => return replayed,
                Some("alert") => replayed.push(message),
                other => panic!("unexpected message before live: {other:?} {message}"),
            }
        }
    }

    /// The next `n` alerts.
    pub async fn alerts(&mut self, n: usize) -> Vec<Value> {
        let mut alerts = Vec::with_capacity(n);
        while alerts.len() < n {
            let message = self.json().await;
            assert_eq!(message["type"], "alert", "{message}");
            alerts.push(message);
        }
        alerts
    }

    pub async fn send_text(&mut self, text: &str) {
        self.stream.send(Message::text(text)).await.expect("sent");
    }

    pub async fn close(mut self) {
        let _ = self.stream.close(None).await;
    }
}
