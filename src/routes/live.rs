//! `WS /ws/positions?bbox=&group=`: live positions inside a map view (of a device group's
//! members, when one is named).
//!
//! The session starts with a snapshot of the live table inside the view
//! (`{"type":"snapshot","positions":[...]}`), then sends the devices that moved inside it, at
//! most once per device per interval (`{"type":"positions","positions":[...]}`). The client
//! changes its view by sending `{"bbox":[minLon,minLat,maxLon,maxLat]}` (or `{"bbox":null}` for
//! the whole world) and gets a snapshot of the new view. Falling behind also brings a snapshot.

use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::response::Response;
use std::sync::Arc;

use dispatch::Dispatch;
use fences::{Bbox, DeviceFilter};
use serde::Deserialize;
use serde_json::json;
use sqlx::PgPool;
use tokio::sync::broadcast::error::RecvError;
use tracker::latest::ListQuery;
use tracker::live::{LiveFeed, LivePosition};

use crate::auth::{Authorized, BearerOrQuery, scope};
use crate::error::{ApiError, ErrorBody, TokenRefusals};
use crate::extract::Params;
use crate::ws::{Gone, Sessions, Socket};

/// Most positions in a snapshot; zoom in to see the rest.
const SNAPSHOT_MAX: i64 = 10_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveParams {
    bbox: Option<String>,
    group: Option<String>,
    #[allow(dead_code, reason = "declared so that `?token=` is not an unknown parameter")]
    token: Option<String>,
}

/// What a client may send.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ViewChange {
    bbox: Option<Bbox>,
}

/// `WS /ws/positions?bbox=&token=`.
#[utoipa::path(get, path = "/ws/positions", operation_id = "positions_socket", tag = "read", security(("bearer" = []), ("token" = [])),
    params(("bbox" = Option<String>, Query, description = "minLon,minLat,maxLon,maxLat (default: the world)"),
        ("group" = Option<String>, Query, description = "Only the members of this device group (as they are when the socket opens)"),
        ("token" = Option<String>, Query, description = "Token, for browsers")),
    responses((status = 101, description = "WebSocket of live positions"),
        (status = 400, description = "Bad filter or unknown parameter (JSON), or not a WebSocket upgrade request (axum's plain-text answer)",
            content((ErrorBody = "application/json"), (String = "text/plain"))),
        (status = 404, description = "Unknown group", body = ErrorBody),
        TokenRefusals))]
pub async fn socket(
    State(db): State<PgPool>,
    State(live): State<LiveFeed>,
    State(sessions): State<Sessions>,
    State(dispatch): State<Arc<Dispatch>>,
    Authorized { principal, .. }: Authorized<scope::Read, BearerOrQuery>,
    Params(params): Params<LiveParams>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let bbox = params.bbox.as_deref().map(crate::extract::bbox).transpose()?;
    let devices = super::groups::narrowed(
        principal.device_filter(),
        &dispatch.groups,
        params.group.as_deref(),
    )?;
    Ok(sessions.accept(upgrade, move |mut socket| async move {
        let mut session = Session {
            db,
            live,
            devices,
            bbox,
        };
        let gone = session.serve(&mut socket).await;
        socket.close(gone, "server shutting down").await;
    }))
}

struct Session {
    db: PgPool,
    live: LiveFeed,
    /// The devices shown: the token's, narrowed to the group asked for (`None`: all).
    devices: Option<DeviceFilter>,
    bbox: Option<Bbox>,
}

impl Session {
    async fn serve(&mut self, socket: &mut Socket) -> Gone {
        let mut frames = self.live.subscribe();
        if let Err(gone) = self.snapshot(socket).await {
            return gone;
        }
        loop {
            let sent = tokio::select! {
                frame = frames.recv() => match frame {
                    Ok(frame) => self.forward(socket, &frame).await,
                    Err(RecvError::Lagged(_)) => {
                        socket.lagged();
                        self.snapshot(socket).await
                    }
                    Err(RecvError::Closed) => Err(Gone::Shutdown),
                },
                incoming = socket.recv() => match incoming {
                    Ok(text) => self.change_view(socket, &text).await,
                    Err(gone) => Err(gone),
                },
            };
            if let Err(gone) = sent {
                return gone;
            }
        }
    }

    async fn snapshot(&self, socket: &mut Socket) -> Result<(), Gone> {
        let query = ListQuery {
            after: None,
            limit: SNAPSHOT_MAX,
            bbox: self.bbox,
            devices: self.devices.clone(),
        };
        let positions: Vec<LivePosition> = match tracker::latest::list(&self.db, &query).await {
            Ok(rows) => rows.iter().map(LivePosition::from).collect(),
            Err(error) => {
                tracing::warn!(%error, "cannot read live positions for a subscriber");
                let message = json!({"type": "error", "message": "cannot read live positions now"});
                return socket.send_json(&message).await;
            }
        };
        socket
            .send_json(&json!({"type": "snapshot", "positions": positions}))
            .await
    }

    async fn forward(&self, socket: &mut Socket, frame: &[LivePosition]) -> Result<(), Gone> {
        let visible: Vec<&LivePosition> = frame
            .iter()
            .filter(|p| {
                self.bbox.is_none_or(|b| p.within(&b))
                    && self.devices.as_ref().is_none_or(|d| d.allows(&p.device))
            })
            .collect();
        if visible.is_empty() {
            return Ok(());
        }
        socket
            .send_json(&json!({"type": "positions", "positions": visible}))
            .await
    }

    async fn change_view(&mut self, socket: &mut Socket, text: &str) -> Result<(), Gone> {
        let bbox = serde_json::from_str::<ViewChange>(text)
            .map(|change| change.bbox)
            .map_err(|e| e.to_string());
        match bbox {
            Ok(bbox) => {
                self.bbox = bbox;
                self.snapshot(socket).await
            }
            Err(reason) => {
                let message = json!({"type": "error", "message": format!(
                    "send {{\"bbox\":[minLon,minLat,maxLon,maxLat]}} or {{\"bbox\":null}}: {reason}"
                )});
                socket.send_json(&message).await
            }
        }
    }
}
