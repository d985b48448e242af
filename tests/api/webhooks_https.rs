//! Webhooks to `https://` receivers: a receiver whose certificate comes from the CA in
//! `webhooks.ca_file` gets every alert with both signatures (geotrack's and Standard Webhooks',
//! which stock libraries verify); one whose certificate nobody trusts gets nothing, and the
//! delivery says why; a `ca_file` without certificates stops the start.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::HeaderMap;
use chrono::Utc;
use geotrack::{Application, Config};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

use crate::helpers::{create_fence, post_fix, spawn_with, square, wait_until};

/// A Standard Webhooks secret (`whsec_` + base64 of the key).
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A TLS listener for `axum::serve`: the handshake happens at accept.
struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                continue;
            };
            // A client that refuses the certificate ends here; wait for the next one.
            if let Ok(tls) = self.acceptor.accept(tcp).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

/// A CA and a certificate for `localhost` it issued: the CA as PEM, the server's TLS config.
fn certificates() -> (String, rustls::ServerConfig) {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA");
    let server_key = rcgen::KeyPair::generate().expect("server key");
    let server = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .expect("server params")
        .signed_by(&server_key, &ca)
        .expect("server certificate");
    #[expect(
        deprecated,
        reason = "the ring provider, as the server under test uses (aws-lc-rs needs cmake)"
    )]
    let provider = rustls::crypto::ring::default_provider();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_no_client_auth()
        .with_single_cert(
            vec![server.der().clone()],
            rustls::pki_types::PrivateKeyDer::try_from(server_key.serialize_der()).expect("key"),
        )
        .expect("server config");
    (ca.pem(), config)
}

type Received = Arc<Mutex<Vec<(HeaderMap, String)>>>;

/// An https receiver on a free port of localhost; its base URL and what it was sent.
async fn receiver(config: rustls::ServerConfig) -> (String, Received) {
    let received: Received = Arc::default();
    let app = axum::Router::new()
        .route(
            "/{name}",
            axum::routing::post(
                |State(r): State<Received>, headers: HeaderMap, body: String| async move {
                    r.lock().expect("lock").push((headers, body));
                },
            ),
        )
        .with_state(received.clone());
    let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("https://localhost:{}", tcp.local_addr().expect("addr").port());
    let listener = TlsListener {
        tcp,
        acceptor: TlsAcceptor::from(Arc::new(config)),
    };
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, received)
}

/// A file in the temporary directory holding `text`, named for this test run.
fn temporary(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("geotrack-{}-{name}", std::process::id()));
    std::fs::write(&path, text).expect("write");
    path
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_receiver_with_a_certificate_from_the_configured_ca_gets_both_signatures() {
    let (ca_pem, server) = certificates();
    let (base, received) = receiver(server).await;
    let ca_file = temporary("ca.pem", &ca_pem);
    let app = spawn_with(|c| {
        c.webhooks.urls = vec![format!("{base}/hook")];
        c.webhooks.secret = Some(SECRET.into());
        c.webhooks.allowed_networks = vec!["127.0.0.1".into(), "::1".into()];
        c.webhooks.ca_file = Some(ca_file.clone());
    })
    .await;
    create_fence(&app, &square("a", 10.0025, 10.0, 0.0025)).await;
    post_fix(&app, "car", Utc::now(), 10.0025, 10.0).await;
    wait_until("the https receiver got no alert", async || {
        !received.lock().expect("lock").is_empty()
    })
    .await;
    let (headers, body) = received.lock().expect("lock")[0].clone();
    let id = header(&headers, "webhook-id");
    assert_eq!(id, header(&headers, "x-geotrack-alert-id"));
    let timestamp: i64 = header(&headers, "webhook-timestamp").parse().expect("timestamp");
    let key = alerts::webhooks::standard_key(SECRET);
    assert_eq!(
        header(&headers, "webhook-signature"),
        alerts::webhooks::standard_signature(&key, id, timestamp, body.as_bytes())
    );
    assert_eq!(
        header(&headers, "x-geotrack-signature"),
        alerts::webhooks::signature(SECRET.as_bytes(), timestamp, body.as_bytes())
    );
    app.stop().await;
    let _ = std::fs::remove_file(ca_file);
}

#[tokio::test]
async fn a_receiver_nobody_trusts_gets_nothing_and_the_delivery_says_why() {
    let (_, server) = certificates();
    let (base, received) = receiver(server).await;
    let app = spawn_with(|c| {
        c.webhooks.urls = vec![format!("{base}/hook")];
        c.webhooks.secret = Some(SECRET.into());
        c.webhooks.retry_base_ms = 60_000;
        c.webhooks.allowed_networks = vec!["127.0.0.1".into(), "::1".into()];
    })
    .await;
    create_fence(&app, &square("a", 10.0025, 10.0, 0.0025)).await;
    post_fix(&app, "car", Utc::now(), 10.0025, 10.0).await;
    let mut error = String::new();
    wait_until("the delivery was not attempted", async || {
        let row: Option<(i32, Option<String>)> =
            sqlx::query_as("SELECT attempts, last_error FROM webhook_deliveries")
                .fetch_optional(&app.db)
                .await
                .expect("delivery");
        error = row.as_ref().and_then(|(_, e)| e.clone()).unwrap_or_default();
        row.is_some_and(|(attempts, _)| attempts == 1)
    })
    .await;
    assert!(error.to_lowercase().contains("certificate"), "{error}");
    assert!(received.lock().expect("lock").is_empty());
    app.stop().await;
}

#[tokio::test]
async fn a_ca_file_without_certificates_stops_the_start() {
    let path = temporary("empty-ca.pem", "not a certificate\n");
    let config = Config {
        bind: "127.0.0.1:0".parse().expect("addr"),
        migrate_on_start: false,
        webhooks: alerts::WebhooksConfig {
            ca_file: Some(path.clone()),
            ..Default::default()
        },
        ..Config::default()
    };
    let error = Application::build(config).await.expect_err("refused").to_string();
    assert!(error.contains("webhooks.ca_file"), "{error}");
    let _ = std::fs::remove_file(path);
}
