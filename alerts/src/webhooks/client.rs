//! The HTTP client webhooks are delivered with: HTTP/1.1 by hyper over TCP, or over TLS
//! (rustls with the `ring` provider: the default provider, aws-lc-rs, needs cmake to build)
//! for `https://`, trusting the system's certificate authorities (`/etc/ssl/certs`, read by
//! `rustls-native-certs`) and those of `webhooks.ca_file`.
//!
//! It connects only to addresses the [`Policy`] allows, resolved at each delivery; it follows
//! no redirect (a 302 could point anywhere) and uses no proxy from the environment, so the
//! connection goes to the address checked. One connection per delivery: receivers are many and
//! deliveries of one receiver are spread over time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::StatusCode;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, RootCertStore};

use crate::config::WebhooksConfig;
use crate::webhooks::Policy;

/// Why the client cannot be built (said at start-up, where it is built first).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot read webhooks.ca_file {path}: {error}")]
    CaFile { path: String, error: String },
    #[error("webhooks.ca_file {0} holds no PEM certificate")]
    NoCertificate(String),
    #[error("cannot set up TLS for webhooks: {0}")]
    Tls(String),
}

/// Posts webhook requests; cheap to clone.
#[derive(Clone)]
pub struct Client {
    tls: TlsConnector,
    policy: Arc<Policy>,
    timeout: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("policy", &self.policy)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// The delivery client, or why it cannot be built.
    pub fn new(config: &WebhooksConfig, policy: Arc<Policy>) -> Result<Self, ClientError> {
        let mut roots = RootCertStore::empty();
        // The version async-nats uses (one copy of it in the build).
        let found = rustls_native_certs::load_native_certs().unwrap_or_else(|error| {
            tracing::warn!(%error, "the system certificate store could not be read for https:// webhooks");
            Vec::new()
        });
        let (system, _) = roots.add_parsable_certificates(found);
        if let Some(path) = &config.ca_file {
            let shown = path.display().to_string();
            let read = std::fs::read(path).map_err(|error| ClientError::CaFile {
                path: shown.clone(),
                error: error.to_string(),
            })?;
            let extra: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&read)
                .collect::<Result<_, _>>()
                .map_err(|error| ClientError::CaFile {
                    path: shown.clone(),
                    error: error.to_string(),
                })?;
            let (added, _) = roots.add_parsable_certificates(extra);
            if added == 0 {
                return Err(ClientError::NoCertificate(shown));
            }
        }
        if roots.is_empty() {
            tracing::warn!(
                "no certificate authority in the system store and no webhooks.ca_file: https:// webhooks will fail"
            );
        }
        tracing::debug!(
            system,
            trusted = roots.len(),
            "certificate authorities for https:// webhooks"
        );
        #[expect(
            deprecated,
            reason = "ring has no post-quantum key exchange, but the provider that has (aws-lc-rs) needs cmake, which the build machines lack"
        )]
        let provider = rustls::crypto::ring::default_provider();
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
            .with_safe_default_protocol_versions()
            .map_err(|error| ClientError::Tls(error.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            tls: TlsConnector::from(Arc::new(tls)),
            policy,
            timeout: Duration::from_secs(config.timeout_s.max(1)),
        })
    }

    /// POSTs `body` with `headers` to `url` (checked by the policy already); the receiver's
    /// status, or why there is none.
    pub async fn post(
        &self,
        url: &url::Url,
        headers: &[(&str, String)],
        body: Bytes,
    ) -> Result<StatusCode, String> {
        tokio::time::timeout(self.timeout, self.exchange(url, headers, body))
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {} s", self.timeout.as_secs())))
    }

    async fn exchange(
        &self,
        url: &url::Url,
        headers: &[(&str, String)],
        body: Bytes,
    ) -> Result<StatusCode, String> {
        let host = url.host().ok_or("the URL has no host")?;
        let port = url.port_or_known_default().ok_or("the URL has no port")?;
        let addresses = self
            .policy
            .resolve(&host, port)
            .await
            .map_err(|e| e.to_string())?;
        let tcp = connect(&addresses).await?;
        if url.scheme() == "https" {
            let name = ServerName::try_from(host.to_string().trim_matches(['[', ']']).to_owned())
                .map_err(|e| format!("not a TLS server name: {e}"))?;
            let tls = self
                .tls
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS handshake failed: {e}"))?;
            request(tls, url, headers, body).await
        } else {
            request(tcp, url, headers, body).await
        }
    }
}

/// A connection to the first of `addresses` that answers.
async fn connect(addresses: &[SocketAddr]) -> Result<TcpStream, String> {
    let mut last = String::from("no address");
    for address in addresses {
        match TcpStream::connect(address).await {
            Ok(stream) => return Ok(stream),
            Err(error) => last = format!("cannot connect to {address}: {error}"),
        }
    }
    Err(last)
}

/// One HTTP/1.1 POST over `stream`.
async fn request(
    stream: impl AsyncRead + AsyncWrite + Unpin + Send + 'static,
    url: &url::Url,
    headers: &[(&str, String)],
    body: Bytes,
) -> Result<StatusCode, String> {
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake failed: {e}"))?;
    let driver = tokio::spawn(connection);
    let target = match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_owned(),
    };
    let authority = match url.port() {
        Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_owned(),
    };
    let mut builder = hyper::Request::post(target)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::CONTENT_LENGTH, body.len());
    for (name, value) in headers {
        builder = builder.header(*name, value);
    }
    let request = builder
        .body(Full::new(body))
        .map_err(|e| format!("bad request: {e}"))?;
    let status = sender
        .send_request(request)
        .await
        .map(|reply| reply.status())
        .map_err(|e| format!("request failed: {e}"));
    driver.abort();
    status
}
