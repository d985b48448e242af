//! The server against clients that hold connections: idle and half-sent requests are cut at
//! the header timeout, connections are capped per address and in all so one client cannot take
//! them all, guessing tokens is slowed per address, and a server without tokens refuses other
//! host names and cross-site requests.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use geotrack::auth::TokensSetting;
use reqwest::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::helpers::{TestApp, json_with_status, spawn_with};

/// A TCP connection to the server from the loopback address `from` (127.0.0.x).
async fn connect_from(app: &TestApp, from: [u8; 4]) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(IpAddr::from(from), 0))
        .expect("bind a loopback source");
    socket.connect(app.addr).await.expect("connect")
}

/// Whether the server closed `stream` within `within` (a read gives end of file or an error).
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 512];
    loop {
        match tokio::time::timeout(within, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            // A 408 or an error page may come first; then the close.
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn idle_and_half_sent_connections_are_closed_at_the_header_timeout() {
    let app = spawn_with(|c| c.http.header_read_timeout_s = 1).await;
    let mut idle = connect_from(&app, [127, 0, 0, 1]).await;
    let mut half = connect_from(&app, [127, 0, 0, 1]).await;
    half.write_all(b"GET /hea").await.expect("write");
    let started = Instant::now();
    assert!(
        closed_within(&mut idle, Duration::from_secs(5)).await,
        "an idle socket is closed"
    );
    assert!(
        closed_within(&mut half, Duration::from_secs(5)).await,
        "half a request line is cut"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(app.get("/health").await.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn one_address_holding_connections_leaves_room_for_the_others() {
    let app = spawn_with(|c| {
        c.http.max_connections_per_ip = 50;
        c.http.header_read_timeout_s = 30;
    })
    .await;
    // 600 idle connections from one address (the probe's attack): 50 stay, the rest are closed.
    let mut held = Vec::new();
    for _ in 0..600 {
        held.push(connect_from(&app, [127, 0, 0, 2]).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut closed = 0;
    for stream in &mut held {
        if closed_within(stream, Duration::from_millis(20)).await {
            closed += 1;
        }
    }
    assert_eq!(closed, 550, "all but the address's 50 were closed at once");
    let started = Instant::now();
    assert_eq!(
        app.get("/health").await.status(),
        200,
        "another address is served"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    drop(held);
    app.stop().await;
}

#[tokio::test]
async fn the_connection_cap_refuses_extra_connections_until_some_close() {
    let app = spawn_with(|c| {
        c.http.max_connections = 5;
        c.http.max_connections_per_ip = 0;
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(connect_from(&app, [127, 0, 0, 3]).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = connect_from(&app, [127, 0, 0, 1]).await;
    assert!(
        closed_within(&mut extra, Duration::from_secs(2)).await,
        "over the cap: closed"
    );
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        app.get("/health").await.status(),
        200,
        "room again once they closed"
    );
    app.stop().await;
}

#[tokio::test]
async fn guessing_tokens_is_slowed_per_address_and_short_tokens_are_refused() {
    const GOOD: &str = "reader-token-0123456789";
    let app = spawn_with(|c| {
        c.tokens = TokensSetting::Compact(format!("{GOOD}=read"));
        c.limits.failed_auth_burst = 3.0;
        c.limits.failed_auth_per_min = 1.0;
    })
    .await;
    for guess in ["guess-000000000001", "guess-000000000002", "guess-000000000003"] {
        let reply = app
            .request(Method::GET, "/api/v1/devices")
            .token(guess)
            .send()
            .await;
        assert_eq!(reply.status(), 401, "{guess}");
    }
    let reply = app
        .request(Method::GET, "/api/v1/devices")
        .token(GOOD)
        .send()
        .await;
    assert!(reply.headers().contains_key("retry-after"));
    assert_eq!(
        json_with_status(reply, 429).await["error"]["code"],
        "rate_limited",
        "the guessing address is refused, even with a good token"
    );
    let elsewhere = reqwest::Client::builder()
        .local_address(IpAddr::from([127, 0, 0, 4]))
        .build()
        .expect("client");
    let reply = elsewhere
        .get(app.url("/api/v1/devices"))
        .bearer_auth(GOOD)
        .send()
        .await
        .expect("sent");
    assert_eq!(reply.status(), 200, "another address is not affected");
    app.stop().await;

    let short = geotrack::Config {
        bind: "127.0.0.1:0".parse().expect("addr"),
        migrate_on_start: false,
        tokens: TokensSetting::Compact("short-token-1=read".into()),
        ..geotrack::Config::default()
    };
    let error = geotrack::Application::build(short).await.expect_err("too short");
    assert!(error.to_string().contains("shorter than 16"), "{error}");
}

#[tokio::test]
async fn a_server_without_tokens_refuses_other_hosts_and_cross_site_requests() {
    let app = spawn_with(|_| {}).await;
    let reply = app
        .request(Method::GET, "/api/v1/devices")
        .header("host", "evil.example:8080")
        .send()
        .await;
    assert_eq!(
        json_with_status(reply, 403).await["error"]["code"],
        "not_local",
        "DNS rebinding"
    );
    let reply = app
        .request(Method::DELETE, "/api/v1/devices/a")
        .header("sec-fetch-site", "cross-site")
        .header("sec-fetch-mode", "cors")
        .send()
        .await;
    assert_eq!(json_with_status(reply, 403).await["error"]["code"], "not_local");
    let reply = app
        .request(Method::POST, "/osmand?id=planted&lat=1&lon=1")
        .header("origin", "http://evil.example")
        .send()
        .await;
    assert_eq!(reply.status(), 403, "a page cannot plant positions");
    assert_eq!(app.stored().await, 0);
    let preflight = app
        .request(Method::OPTIONS, "/api/v1/devices/a")
        .header("origin", "http://evil.example")
        .header("access-control-request-method", "DELETE")
        .send()
        .await;
    assert!(
        !preflight.headers().contains_key("access-control-allow-origin"),
        "no CORS without tokens"
    );
    let link = app
        .request(Method::GET, "/")
        .header("sec-fetch-site", "cross-site")
        .header("sec-fetch-mode", "navigate")
        .send()
        .await;
    assert_eq!(link.status(), 200, "a link to the map still works");
    app.stop().await;

    let with_tokens =
        spawn_with(|c| c.tokens = TokensSetting::Compact("reader-token-0123456789=read".into())).await;
    let reply = with_tokens
        .request(Method::GET, "/health")
        .header("origin", "http://maps.example")
        .send()
        .await;
    assert_eq!(
        reply.headers()["access-control-allow-origin"],
        "*",
        "with tokens CORS is open"
    );
    with_tokens.stop().await;
}
