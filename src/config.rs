//! Configuration: built-in defaults < `geotrack.toml` (or `--config FILE`) < environment
//! (`DATABASE_URL`, then `GEOTRACK_*`, nested keys with `__`, e.g. `GEOTRACK_INGEST__SHARDS=8`)
//! < command-line flags. Unknown keys are errors, so a typo never silently does nothing.
//! Sections of the domain crates (`[alerts]`, `[webhooks]`, `[tiles]`) are their own types.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use alerts::{AlertsConfig, WebhooksConfig};
use cluster::ClusterConfig;
use dispatch::DispatchConfig;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use tiles::TilesConfig;

use crate::auth::TokensSetting;
use crate::limits::LimitsConfig;
use crate::server::HttpConfig;
use crate::tcp::config::TcpConfig;
use crate::upkeep::HistoryConfig;

/// Everything the server can be configured with.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    pub bind: SocketAddr,
    /// PostgreSQL (with PostGIS) connection string.
    pub database_url: String,
    /// Connections in the pool; each ingest shard keeps one for its writer.
    pub db_max_connections: u32,
    /// Apply pending migrations when `serve` starts.
    pub migrate_on_start: bool,
    /// Longest time a request may take before it is answered 408.
    pub request_timeout_s: u64,
    /// After a shutdown signal, longest wait for open connections before closing them.
    pub shutdown_timeout_s: u64,
    /// Bearer tokens (see `auth`); none configured means open access, loopback only.
    #[serde(skip_serializing_if = "crate::config::tokens_unset")]
    pub tokens: TokensSetting,
    /// Allow a non-loopback bind with no tokens configured.
    pub insecure: bool,
    pub http: HttpConfig,
    pub ingest: IngestConfig,
    pub history: HistoryConfig,
    pub limits: LimitsConfig,
    pub fences: FencesConfig,
    pub alerts: AlertsConfig,
    pub ws: WsConfig,
    pub webhooks: WebhooksConfig,
    pub tiles: TilesConfig,
    /// Cluster mode on NATS JetStream (off unless `cluster.nats_url` is set).
    pub cluster: ClusterConfig,
    pub dispatch: DispatchConfig,
    /// Hardware trackers over TCP (each listener off unless given an address).
    pub tcp: TcpConfig,
}

/// WebSocket sessions.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WsConfig {
    /// A ping goes to every socket this often; a peer silent for two intervals is closed.
    pub ping_s: u64,
    /// A peer that does not take a message within this time is closed.
    pub send_timeout_s: u64,
    /// Live positions go out at most this often per device.
    pub positions_interval_ms: u64,
}

impl Default for WsConfig {
    fn default() -> Self {
        Self {
            ping_s: 20,
            send_timeout_s: 10,
            positions_interval_ms: 1_000,
        }
    }
}

/// Limits on fence definitions.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FencesConfig {
    /// Most positions in one fence (a detailed country border has tens of thousands).
    pub max_vertices: usize,
    /// Largest circle radius or corridor half-width, in metres.
    pub max_radius_m: f64,
    /// How long `POST /api/v1/fences/import` waits for its import before answering 202 with
    /// the job's status URL (never more than two thirds of `request_timeout_s`).
    pub import_wait_ms: u64,
}

impl Default for FencesConfig {
    fn default() -> Self {
        let limits = fences::FenceLimits::default();
        Self {
            max_vertices: limits.max_vertices,
            max_radius_m: limits.max_radius_m,
            import_wait_ms: 20_000,
        }
    }
}

impl FencesConfig {
    pub fn limits(&self) -> fences::FenceLimits {
        fences::FenceLimits {
            max_vertices: self.max_vertices,
            max_radius_m: self.max_radius_m,
            ..fences::FenceLimits::default()
        }
    }
}

fn tokens_unset(tokens: &TokensSetting) -> bool {
    matches!(tokens, TokensSetting::None)
}

/// Ingest limits and the sizing of the write pipeline.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Writer shards. Keep it fixed for a database: the shard is stored with every fix.
    pub shards: usize,
    /// Fixes each shard may hold waiting or in flight.
    pub queue_capacity: usize,
    /// How long a request waits for queue room before a 503.
    pub enqueue_wait_ms: u64,
    /// Fixes of all requests waiting for queue room together; beyond it a request gets a 503
    /// at once (bounds memory whatever the number of connections).
    pub max_waiting_fixes: usize,
    /// Largest batch a writer commits at once.
    pub batch_max_fixes: usize,
    /// Batches up to this many fixes are written as one statement, in one round trip to the
    /// database; larger ones by `COPY`, cheaper per fix (0: always `COPY`).
    pub statement_max_fixes: usize,
    /// How long a writer waits for more fixes before committing a partial batch, when requests
    /// reach its shard more often than that (at a lower rate it commits at once).
    pub batch_linger_ms: u64,
    /// Most fixes in one request to `POST /api/v1/positions`.
    pub max_request_fixes: usize,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// How far ahead of the server clock a fix time may be.
    pub max_future_s: u64,
    /// How old a fix may be.
    pub max_age_days: u64,
    /// Unit of `speed` in OsmAnd-protocol requests: `knots` (Traccar Client, the protocol's
    /// default), `mps` (the OsmAnd app), `kmh` or `mph`. `?speed_unit=` overrides it per URL.
    pub osmand_speed_unit: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: "postgres://postgres@127.0.0.1:5432/geotrack".into(),
            db_max_connections: 16,
            migrate_on_start: true,
            request_timeout_s: 30,
            shutdown_timeout_s: 30,
            tokens: TokensSetting::None,
            insecure: false,
            http: HttpConfig::default(),
            ingest: IngestConfig::default(),
            history: HistoryConfig::default(),
            limits: LimitsConfig::default(),
            fences: FencesConfig::default(),
            alerts: AlertsConfig::default(),
            ws: WsConfig::default(),
            webhooks: WebhooksConfig::default(),
            tiles: TilesConfig::default(),
            cluster: ClusterConfig::default(),
            dispatch: DispatchConfig::default(),
            tcp: TcpConfig::default(),
        }
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        let pipeline = tracker::PipelineConfig::default();
        let limits = tracker::Limits::default();
        Self {
            shards: pipeline.shards,
            queue_capacity: pipeline.queue_capacity,
            enqueue_wait_ms: duration_ms(pipeline.enqueue_wait),
            max_waiting_fixes: pipeline.max_waiting_fixes,
            batch_max_fixes: pipeline.batch_max_fixes,
            statement_max_fixes: pipeline.statement_max_fixes,
            batch_linger_ms: duration_ms(pipeline.batch_linger),
            max_request_fixes: 10_000,
            max_body_bytes: 32 * 1024 * 1024,
            max_future_s: limits.max_future.num_seconds().unsigned_abs(),
            max_age_days: limits.max_age.num_days().unsigned_abs(),
            osmand_speed_unit: "knots".into(),
        }
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl IngestConfig {
    pub fn pipeline(&self) -> tracker::PipelineConfig {
        tracker::PipelineConfig {
            shards: self.shards.max(1),
            queue_capacity: self.queue_capacity.max(1),
            enqueue_wait: Duration::from_millis(self.enqueue_wait_ms),
            max_waiting_fixes: self.max_waiting_fixes.max(1),
            batch_max_fixes: self.batch_max_fixes.max(1),
            statement_max_fixes: self.statement_max_fixes,
            batch_linger: Duration::from_millis(self.batch_linger_ms),
        }
    }

    pub fn limits(&self) -> tracker::Limits {
        let seconds = |s: u64| chrono::Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX / 1000));
        tracker::Limits {
            max_future: seconds(self.max_future_s),
            max_age: seconds(self.max_age_days.saturating_mul(86_400)),
        }
    }
}

/// Values given on the command line; they win over everything else.
#[derive(Debug, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
}

impl Config {
    /// Loads the layers. `file` must exist when given; otherwise `geotrack.toml` is read if present.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, Box<figment::Error>> {
        Self::figment(file, overrides).extract().map_err(Box::new)
    }

    fn figment(file: Option<&Path>, overrides: &Overrides) -> Figment {
        let toml = match file {
            Some(path) => Toml::file_exact(path),
            None => Toml::file("geotrack.toml"),
        };
        Figment::from(Serialized::defaults(Config::default()))
            .merge(toml)
            .merge(Env::raw().only(&["DATABASE_URL"]))
            .merge(
                Env::prefixed("GEOTRACK_")
                    .ignore(&["CONFIG", "LOG", "LOG_FORMAT"])
                    .split("__"),
            )
            .merge(Serialized::defaults(overrides))
    }
}

#[cfg(test)]
// `Jail::expect_with` closures must return figment's own (large) error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use figment::Jail;

    #[test]
    fn layers_apply_in_order() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "geotrack.toml",
                "bind = \"127.0.0.1:9000\"\n[ingest]\nshards = 2\nmax_request_fixes = 7\n",
            )?;
            jail.set_env("GEOTRACK_INGEST__SHARDS", "3");
            jail.set_env("DATABASE_URL", "postgres://env/db");
            let config = Config::load(None, &Overrides::default()).map_err(|e| *e)?;
            assert_eq!(config.bind.port(), 9000);
            assert_eq!(config.ingest.shards, 3, "environment beats the file");
            assert_eq!(config.ingest.max_request_fixes, 7, "file beats defaults");
            assert_eq!(config.database_url, "postgres://env/db");

            jail.set_env("GEOTRACK_DATABASE_URL", "postgres://prefixed/db");
            let overrides = Overrides {
                bind: Some("127.0.0.1:9100".parse().expect("addr")),
                ..Overrides::default()
            };
            let config = Config::load(None, &overrides).map_err(|e| *e)?;
            assert_eq!(config.bind.port(), 9100, "flags beat everything");
            assert_eq!(config.database_url, "postgres://prefixed/db");
            Ok(())
        });
    }

    #[test]
    fn tokens_come_from_a_table_list_or_the_compact_variable() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "geotrack.toml",
                "[[tokens]]\ntoken = \"file-token-1\"\nscopes = [\"read\"]\ndevices = [\"a*\"]\n",
            )?;
            let config = Config::load(None, &Overrides::default()).map_err(|e| *e)?;
            let entries = config.tokens.entries().expect("entries");
            assert_eq!(entries.len(), 1);
            assert_eq!(entries[0].devices, vec!["a*".to_owned()]);

            jail.set_env("GEOTRACK_TOKENS", "env-token-1=admin;env-token-2=ingest@dev-1");
            let config = Config::load(None, &Overrides::default()).map_err(|e| *e)?;
            assert_eq!(
                config.tokens.entries().expect("entries").len(),
                2,
                "environment wins"
            );
            Ok(())
        });
    }

    #[test]
    fn tracker_listeners_are_off_until_given_an_address() {
        Jail::expect_with(|jail| {
            let config = Config::load(None, &Overrides::default()).map_err(|e| *e)?;
            assert!(config.tcp.listeners().is_empty());
            jail.set_env("GEOTRACK_TCP__TELTONIKA", "0.0.0.0:5027");
            jail.set_env("GEOTRACK_TCP__IDLE_TIMEOUT_S", "120");
            let config = Config::load(None, &Overrides::default()).map_err(|e| *e)?;
            assert_eq!(
                config.tcp.listeners(),
                vec![(
                    crate::tcp::config::Protocol::Teltonika,
                    "0.0.0.0:5027".parse().expect("addr")
                )]
            );
            assert_eq!(config.tcp.idle_timeout_s, 120);
            Ok(())
        });
    }

    #[test]
    fn typos_and_missing_files_are_errors() {
        Jail::expect_with(|jail| {
            jail.set_env("GEOTRACK_INGEST__SHARSD", "3");
            let err = Config::load(None, &Overrides::default()).expect_err("unknown key");
            assert!(err.to_string().contains("sharsd"), "{err}");
            Ok(())
        });
        Jail::expect_with(|_| {
            let err =
                Config::load(Some(Path::new("nope.toml")), &Overrides::default()).expect_err("missing file");
            assert!(err.to_string().contains("nope.toml"), "{err}");
            Ok(())
        });
    }
}
