//! What the configuration must satisfy before anything starts: enough database connections,
//! usable tokens, no open server on a public address unless asked for, deliverable and signed
//! webhooks, a known OsmAnd speed unit. Each failure says what to change.

use tracker::protocols::osmand::SpeedUnit;

use crate::auth::{TokenError, Tokens};
use crate::config::Config;

/// A configuration the service refuses to start with.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "db_max_connections ({connections}) must exceed ingest.shards ({shards}) + 1: each shard writer and the fence listener keep a connection"
    )]
    TooFewConnections { connections: u32, shards: usize },
    #[error("{0}")]
    Tokens(#[from] TokenError),
    #[error(
        "no tokens are configured, so {0} would be open to anyone; configure tokens (GEOTRACK_TOKENS) or pass --insecure"
    )]
    OpenToAnyone(std::net::SocketAddr),
    #[error("webhooks: {0}")]
    WebhookUrl(alerts::Error),
    #[error("webhooks.urls is set but webhooks.secret is not (or is empty): deliveries must be signed")]
    UnsignedWebhooks,
    #[error("{0}")]
    WebhookClient(#[from] alerts::webhooks::client::ClientError),
    #[error("ingest.osmand_speed_unit: {0}")]
    SpeedUnit(String),
    #[error("{0}")]
    Tiles(#[from] tiles::Error),
    #[error("fences: {0}")]
    Fences(#[from] fences::FenceError),
    #[error(
        "tcp.{0} is set, so tcp.token must name a configured token with the ingest scope (the IMEIs it may write are the devices it is limited to)"
    )]
    TcpToken(&'static str),
    #[error("tcp.token is set but no tokens are configured: configure tokens, or remove tcp.token")]
    TcpTokenWithoutTokens,
}

/// Checks everything but the speed unit (see [`osmand_speed_unit`]); returns the tokens.
pub fn configuration(config: &Config) -> Result<Tokens, ConfigError> {
    if config.db_max_connections as usize <= config.ingest.shards + 1 {
        return Err(ConfigError::TooFewConnections {
            connections: config.db_max_connections,
            shards: config.ingest.shards,
        });
    }
    let tokens = access(config)?;
    tcp(config, &tokens)?;
    webhooks(config)?;
    Ok(tokens)
}

/// Tracker listeners follow the HTTP rule: with tokens configured they act as `tcp.token`,
/// which must exist with the ingest scope; without, they may listen on loopback only unless
/// `insecure`.
fn tcp(config: &Config, tokens: &Tokens) -> Result<(), ConfigError> {
    let listeners = config.tcp.listeners();
    if tokens.is_open() {
        if config.tcp.token.is_some() {
            return Err(ConfigError::TcpTokenWithoutTokens);
        }
        if let Some((_, addr)) = listeners.iter().find(|(_, a)| !a.ip().is_loopback())
            && !config.insecure
        {
            return Err(ConfigError::OpenToAnyone(*addr));
        }
        return Ok(());
    }
    for (protocol, _) in listeners {
        let principal = config.tcp.token.as_deref().and_then(|t| tokens.lookup(t));
        if !principal.is_some_and(|p| p.has(crate::auth::Scope::Ingest)) {
            return Err(ConfigError::TcpToken(protocol.name()));
        }
    }
    Ok(())
}

/// Loads the tokens and refuses an open server on a non-loopback address unless `insecure`.
fn access(config: &Config) -> Result<Tokens, ConfigError> {
    let entries = config.tokens.entries()?;
    let tokens = Tokens::from_config(&entries)?;
    if tokens.is_open() {
        if !config.bind.ip().is_loopback() && !config.insecure {
            return Err(ConfigError::OpenToAnyone(config.bind));
        }
        tracing::warn!(
            "NO TOKENS CONFIGURED: anyone who can reach {} can read and write everything",
            config.bind
        );
    } else {
        tracing::info!(tokens = entries.len(), "token authentication on");
    }
    Ok(tokens)
}

/// Every configured webhook URL must be deliverable under the policy, and signed: a non-empty
/// secret is required. A `webhooks.ca_file` must hold certificates (the client is built once
/// here, so a bad file stops the start instead of every delivery).
fn webhooks(config: &Config) -> Result<(), ConfigError> {
    let policy = webhook_policy(config)?;
    for url in &config.webhooks.urls {
        policy.check_url(url).map_err(ConfigError::WebhookUrl)?;
    }
    if !config.webhooks.urls.is_empty() && config.webhooks.secret().is_none() {
        return Err(ConfigError::UnsignedWebhooks);
    }
    if config.webhooks.ca_file.is_some() {
        alerts::webhooks::client::Client::new(&config.webhooks, std::sync::Arc::new(policy))?;
    }
    Ok(())
}

/// Where webhooks may be delivered (`webhooks.allowed_networks`).
pub fn webhook_policy(config: &Config) -> Result<alerts::webhooks::Policy, ConfigError> {
    alerts::webhooks::Policy::new(&config.webhooks.allowed_networks).map_err(ConfigError::WebhookUrl)
}

/// The configured unit of `speed` on `/osmand`.
pub fn osmand_speed_unit(config: &Config) -> Result<SpeedUnit, ConfigError> {
    config
        .ingest
        .osmand_speed_unit
        .parse()
        .map_err(|e: tracker::protocols::osmand::OsmandError| ConfigError::SpeedUnit(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_tracker_listener_must_stay_on_loopback_unless_insecure() {
        let mut config = Config::default();
        config.tcp.teltonika = Some("0.0.0.0:5027".parse().expect("addr"));
        let err = configuration(&config).expect_err("open to anyone");
        assert!(err.to_string().contains("0.0.0.0:5027"), "{err}");
        config.insecure = true;
        assert!(configuration(&config).is_ok());
        config.tcp.token = Some("some-token-0000001".into());
        assert!(matches!(
            configuration(&config),
            Err(ConfigError::TcpTokenWithoutTokens)
        ));
    }
}
