//! Where log lines go and how they look: on standard error (written by a thread of their own,
//! see `geotrack::log_sink`), as text (coloured only when standard error is a terminal and
//! `NO_COLOR` is unset) or as one JSON object per line for log
//! collectors (`--log-format json`); levels from `GEOTRACK_LOG` (`EnvFilter` syntax). Requests
//! are logged at info under the target `geotrack::access` (see `routes::log_response`), so
//! `GEOTRACK_LOG=info,geotrack::access=warn` keeps everything else and drops the access log.

use std::io::IsTerminal;

use clap::ValueEnum;
use geotrack::log_sink;
use tracing_subscriber::EnvFilter;

/// The shape of a log line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `message`, the event's fields
    /// and the request's (`span`: method, path, request id).
    Json,
}

/// The filter when `GEOTRACK_LOG` is unset or invalid.
const DEFAULT_FILTER: &str = "info,sqlx=warn";

/// Installs the global subscriber; call once, first thing, and keep what it returns until the
/// end of `main`: the lines still queued are written when it is dropped.
#[must_use = "queued log lines are written when the guard is dropped"]
pub fn init(format: LogFormat) -> log_sink::Flush {
    let filter = EnvFilter::try_from_env("GEOTRACK_LOG").unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let (writer, flush) = log_sink::stderr();
    let lines = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Text => lines.with_ansi(colours()).init(),
        LogFormat::Json => lines
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
    flush
}

/// Colours only for a person at a terminal, and not when they opted out (no-color.org).
fn colours() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty())
}
