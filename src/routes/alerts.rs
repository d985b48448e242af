//! Alert routes: `GET /api/v1/alerts` (paged history) and `WS /ws/alerts` (replay from a
//! cursor, then live, with no gap and no duplicate).
//!
//! A socket subscribes to the hub *before* it replays `id > since` from the table; after the
//! replay it drops live alerts it already sent. Every alert committed before the subscription
//! is in the table, every one committed after it comes through the hub, so nothing falls in
//! between. A subscriber that falls more than the hub's capacity behind is sent
//! `{"type":"lagged","resume_from":<cursor>}` and closed, and resumes with `since=<cursor>`.

use std::sync::Arc;

use alerts::store::{self, AlertQuery};
use alerts::{AlertKind, Alerting, Published, Subscription};
use axum::Json;
use axum::extract::State;
use axum::extract::ws::{Utf8Bytes, WebSocketUpgrade};
use axum::response::Response;
use dispatch::{Dispatch, Groups};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::PgPool;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use utoipa::ToSchema;

use crate::auth::{Authorized, BearerOrQuery, Principal, scope};
use crate::error::{ApiError, ErrorBody, TokenRefusals};
use crate::extract::{Params, checked_id};
use crate::ws::{Gone, Sessions, Socket};

const DEFAULT_PAGE: i64 = 100;
const MAX_PAGE: i64 = 1_000;
/// Alerts read from the table per query while a socket replays.
const REPLAY_PAGE: i64 = 1_000;
/// Times a socket may fall behind during its replay and replay again before it is told it lagged.
const MAX_REPLAYS: usize = 3;

/// Filters shared by both routes. Lists are comma-separated.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertParams {
    since: Option<i64>,
    limit: Option<i64>,
    #[serde(alias = "device")]
    devices: Option<String>,
    #[serde(alias = "fence")]
    fences: Option<String>,
    /// Only proximity alerts of these rules.
    #[serde(alias = "rule")]
    rules: Option<String>,
    #[serde(alias = "kind")]
    kinds: Option<String>,
    /// Only alerts of the members of this device group.
    group: Option<String>,
    /// The token, for clients that cannot send headers (read by the auth extractor).
    #[allow(dead_code, reason = "declared so that `?token=` is not an unknown parameter")]
    token: Option<String>,
}

impl AlertParams {
    fn query(&self, principal: &Principal, groups: &Groups) -> Result<AlertQuery, ApiError> {
        let list = |name: &str, text: &Option<String>| -> Result<Vec<String>, ApiError> {
            text.as_deref()
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|id| checked_id(name, id).map(str::to_owned))
                .collect()
        };
        let kinds = list("an alert kind", &self.kinds)?
            .iter()
            .map(|k| {
                AlertKind::parse(k).ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_kind",
                        format!("unknown alert kind {k:?}: use enter, exit, dwell, overspeed, offline, near or apart"),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        let since = self.since.unwrap_or(0);
        if since < 0 {
            return Err(ApiError::bad_request(
                "invalid_since",
                "since must be a cursor (0 or more)",
            ));
        }
        Ok(AlertQuery {
            since,
            limit: DEFAULT_PAGE,
            devices: list("a device in `devices`", &self.devices)?,
            fences: list("a fence in `fences`", &self.fences)?,
            rules: list("a rule in `rules`", &self.rules)?,
            kinds,
            allowed: super::groups::narrowed(principal.device_filter(), groups, self.group.as_deref())?,
        })
    }
}

/// `GET /api/v1/alerts?since=&limit=&device=&fence=&kind=`: alerts after the cursor `since`,
/// oldest first, and the cursor to ask for the next page with.
#[utoipa::path(get, path = "/api/v1/alerts", operation_id = "list_alerts", tag = "alerts", security(("bearer" = [])),
    params(("since" = Option<i64>, Query, description = "Cursor: only alerts with a larger id (default 0)"),
        ("limit" = Option<i64>, Query, description = "Page size, 1 to 1000 (default 100)"),
        ("device" = Option<String>, Query, description = "Device ids, comma-separated (a proximity alert names two)"),
        ("fence" = Option<String>, Query, description = "Fence ids, comma-separated"),
        ("rule" = Option<String>, Query, description = "Proximity rule ids, comma-separated"),
        ("kind" = Option<String>, Query, description = "enter, exit, dwell, overspeed, offline, near, apart; comma-separated"),
        ("group" = Option<String>, Query, description = "Only alerts of the members of this device group")),
    responses((status = 200, description = "A page of alerts, oldest first", body = AlertPage),
        (status = 400, description = "Bad filter, limit or an unknown parameter", body = ErrorBody),
        (status = 404, description = "Unknown group", body = ErrorBody),
        (status = 503, description = "The database is unavailable: retry after Retry-After", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
        TokenRefusals))]
pub async fn list(
    State(db): State<PgPool>,
    State(dispatch): State<Arc<Dispatch>>,
    principal: Authorized<scope::Read>,
    Params(params): Params<AlertParams>,
) -> Result<Json<AlertPage>, ApiError> {
    let mut query = params.query(&principal, &dispatch.groups)?;
    let limit = params.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_limit",
            format!("limit must be between 1 and {MAX_PAGE}"),
        ));
    }
    query.limit = limit + 1;
    let mut alerts = store::page(&db, &query).await?;
    let more = alerts.len() as i64 > limit;
    alerts.truncate(usize::try_from(limit).unwrap_or(0));
    let cursor = alerts.last().map_or(query.since, |a| a.id);
    Ok(Json(AlertPage { alerts, cursor, more }))
}

/// A page of `GET /api/v1/alerts`.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertPage {
    /// Alerts as `{id, kind, device, fence, ts, ...}`, oldest first.
    #[schema(value_type = Vec<Object>)]
    alerts: Vec<alerts::model::Alert>,
    /// The `since` to ask for the next page with.
    cursor: i64,
    /// Whether more alerts follow.
    more: bool,
}

/// `WS /ws/alerts?since=&fences=&rules=&devices=&kinds=&token=`: alerts as JSON messages
/// (`{"type":"alert","id":...}`), replayed from `since` when given, then live. After the replay
/// the server sends `{"type":"live","cursor":...}`.
#[utoipa::path(get, path = "/ws/alerts", operation_id = "alerts_socket", tag = "alerts", security(("bearer" = []), ("token" = [])),
    params(("since" = Option<i64>, Query, description = "Replay alerts after this cursor first"),
        ("fences" = Option<String>, Query, description = "Fence ids, comma-separated"),
        ("rules" = Option<String>, Query, description = "Proximity rule ids, comma-separated"),
        ("devices" = Option<String>, Query, description = "Device ids, comma-separated (a proximity alert names two)"),
        ("kinds" = Option<String>, Query, description = "Alert kinds, comma-separated"),
        ("group" = Option<String>, Query, description = "Only alerts of the members of this device group (as they are when the socket opens)"),
        ("token" = Option<String>, Query, description = "Token, for browsers")),
    responses((status = 101, description = "WebSocket of alerts"),
        (status = 400, description = "Bad filter or unknown parameter (JSON), or not a WebSocket upgrade request (axum's plain-text answer)",
            content((ErrorBody = "application/json"), (String = "text/plain"))),
        (status = 404, description = "Unknown group", body = ErrorBody),
        TokenRefusals))]
pub async fn socket(
    State(db): State<PgPool>,
    State(alerting): State<Arc<Alerting>>,
    State(dispatch): State<Arc<Dispatch>>,
    State(sessions): State<Sessions>,
    Authorized { principal, .. }: Authorized<scope::Read, BearerOrQuery>,
    Params(params): Params<AlertParams>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let query = params.query(&principal, &dispatch.groups)?;
    let replay = params.since.is_some();
    Ok(sessions.accept(upgrade, move |socket| async move {
        let session = Session { db, alerting, query };
        session.run(socket, replay).await;
    }))
}

struct Session {
    db: PgPool,
    alerting: Arc<Alerting>,
    /// The filters (`allowed`: the token's devices, narrowed to the group asked for); `since` is the cursor: every alert up to it was sent or filtered out.
    query: AlertQuery,
}

impl Session {
    async fn run(mut self, mut socket: Socket, replay: bool) {
        let why = match self.serve(&mut socket, replay).await {
            Ok(never) => match never {},
            Err(why) => why,
        };
        match why {
            End::Gone(gone) => socket.close(gone, "server shutting down").await,
            End::Lagged => {
                socket.lagged();
                let message = json!({"type": "lagged", "resume_from": self.query.since});
                if socket.send_json(&message).await.is_ok() {
                    socket
                        .close_normally("lagged: resume with since=resume_from")
                        .await;
                }
            }
            End::Failed => socket.close_normally("cannot read alerts; retry later").await,
        }
    }

    async fn serve(&mut self, socket: &mut Socket, replay: bool) -> Result<std::convert::Infallible, End> {
        let mut hub = self.alerting.hub.subscribe();
        let mut pending = None;
        if replay {
            let mut replays = 0;
            loop {
                self.replay(socket).await?;
                match hub.try_recv() {
                    // Fell behind while replaying: subscribe afresh and replay the difference.
                    Err(TryRecvError::Lagged(_)) => {
                        replays += 1;
                        if replays >= MAX_REPLAYS {
                            return Err(End::Lagged);
                        }
                        hub = self.alerting.hub.subscribe();
                    }
                    Ok(alert) => {
                        pending = Some(alert);
                        break;
                    }
                    Err(TryRecvError::Empty | TryRecvError::Closed) => break,
                }
            }
        } else {
            // Live only: start after the newest alert committed before the subscription.
            self.query.since = store::newest_id(&self.db).await.map_err(|error| {
                tracing::warn!(%error, "cannot read the alert cursor for a subscriber");
                End::Failed
            })?;
        }
        socket
            .send_json(&json!({"type": "live", "cursor": self.query.since}))
            .await
            .map_err(End::Gone)?;
        if let Some(alert) = pending {
            self.forward(socket, alert, &mut hub).await?;
        }
        loop {
            tokio::select! {
                live = hub.recv() => match live {
                    Ok(alert) => self.forward(socket, alert, &mut hub).await?,
                    Err(RecvError::Lagged(_)) => return Err(End::Lagged),
                    Err(RecvError::Closed) => return Err(End::Gone(Gone::Shutdown)),
                },
                // Clients have nothing to say; reading keeps pings and closes flowing.
                incoming = socket.recv() => { incoming.map_err(End::Gone)?; }
            }
        }
    }

    /// Sends every stored alert after the cursor, page by page.
    async fn replay(&mut self, socket: &mut Socket) -> Result<(), End> {
        loop {
            let page = AlertQuery {
                limit: REPLAY_PAGE,
                ..self.query.clone()
            };
            let alerts = store::page(&self.db, &page).await.map_err(|error| {
                tracing::warn!(%error, "cannot replay alerts to a subscriber");
                End::Failed
            })?;
            let full = alerts.len() as i64 == REPLAY_PAGE;
            let last = alerts.last().map(|a| a.id);
            let messages = alerts.into_iter().map(|a| text(&Published::new(a))).collect();
            socket.send_all(messages).await.map_err(End::Gone)?;
            if let Some(id) = last {
                self.query.since = id;
            }
            if !full {
                return Ok(());
            }
        }
    }

    /// Sends `first` and every alert already waiting behind it in one write (alerts come in
    /// bursts, one per commit), skipping those replayed or filtered out.
    async fn forward(
        &mut self,
        socket: &mut Socket,
        first: Arc<Published>,
        hub: &mut Subscription,
    ) -> Result<(), End> {
        let mut out = Vec::new();
        let mut next = Some(first);
        let mut lagged = false;
        while let Some(alert) = next.take() {
            let a = &alert.alert;
            if a.id > self.query.since {
                let allowed = |d: &str| self.query.allowed.as_ref().is_none_or(|f| f.allows(d));
                if self.query.matches(a, allowed) {
                    out.push(text(&alert));
                }
                self.query.since = a.id;
            }
            match hub.try_recv() {
                Ok(more) => next = Some(more),
                Err(TryRecvError::Lagged(_)) => lagged = true,
                Err(TryRecvError::Empty | TryRecvError::Closed) => {}
            }
        }
        socket.send_all(out).await.map_err(End::Gone)?;
        if lagged { Err(End::Lagged) } else { Ok(()) }
    }
}

enum End {
    Gone(Gone),
    Lagged,
    Failed,
}

/// An alert's message as a WebSocket text frame (the hub keeps it as bytes of UTF-8 JSON).
fn text(alert: &Published) -> Utf8Bytes {
    Utf8Bytes::try_from(alert.message.clone()).unwrap_or_else(|_| Utf8Bytes::from_static("{}"))
}
