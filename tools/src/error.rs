//! The crate's error: what can stop a client run (a bad argument, a server that does not
//! answer or answers with an unexpected status, the database behind a benchmark's ceiling, a
//! file or a WebSocket), each with the action that failed so the message stands on its own.

use std::fmt;
use std::path::PathBuf;
use std::process::ExitStatus;

use reqwest::StatusCode;

/// Errors of the simulator and the benchmarks.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A command-line value that cannot be used, e.g. `--centre "1"`.
    #[error("{flag} {value:?} {expected}")]
    Argument {
        flag: &'static str,
        value: String,
        expected: &'static str,
    },
    /// The HTTP client could not be built (TLS backend, system configuration).
    #[error("cannot build the HTTP client: {}", Causes(.0))]
    Client(#[source] reqwest::Error),
    /// A request to the server got no (complete) answer: connection refused, timeout, body cut.
    #[error("{action}: {}", Causes(.source))]
    Request { action: String, source: reqwest::Error },
    /// The server answered, but not with the status expected.
    #[error("{action}: the server answered {status}: {body}")]
    Status {
        action: String,
        status: StatusCode,
        body: String,
    },
    /// The server answered with a body that is not the JSON expected.
    #[error("{action}: the reply is not JSON: {source}")]
    Reply {
        action: String,
        source: serde_json::Error,
    },
    /// The server's `/ready` did not succeed in time (or the run was stopped meanwhile).
    #[error("{url} did not become ready after {waited_s} s; last attempt: {last}")]
    NotReady {
        url: String,
        waited_s: u64,
        #[source]
        last: Box<Error>,
    },
    /// The database a benchmark reads or measures its ceiling against.
    #[error("{action}: {source}")]
    Database {
        action: &'static str,
        source: sqlx::Error,
    },
    /// A program the benchmark runs (`psql`) could not be started.
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: &'static str,
        source: std::io::Error,
    },
    /// The raw `COPY` of the ceiling failed (psql printed why on its standard error).
    #[error("psql COPY failed: {0}")]
    Copy(ExitStatus),
    /// A file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    /// A WebSocket to the server could not be opened.
    #[error("cannot subscribe to {url}: {source}")]
    WebSocket {
        url: String,
        source: tokio_tungstenite::tungstenite::Error,
    },
    /// A light subscriber's socket could not be opened or did not go live.
    #[error("cannot subscribe to {url}: {reason}")]
    Handshake { url: String, reason: String },
    /// A WebSocket opened but closed before the server said it was live.
    #[error("{url}: the socket closed before going live")]
    NotLive { url: String },
    /// A task of the run panicked or was cancelled.
    #[error("a {what} task failed: {source}")]
    Task {
        what: &'static str,
        source: tokio::task::JoinError,
    },
    /// The calibration of `bench-overload` got no fix acknowledged: there is no rate to overload.
    #[error("calibration: the server acknowledged no fix in {seconds} s")]
    NothingAcknowledged { seconds: u64 },
    /// `bench-overload` saw the server break a promise it must keep under any load.
    #[error("bench-overload failed: {}", .0.join("; "))]
    OverloadFailed(Vec<String>),
    /// The server acknowledged fewer fixes than were posted.
    #[error("only {accepted} of {sent} fixes were accepted")]
    Incomplete { accepted: usize, sent: usize },
    /// A Teltonika connection of `bench-tcp` failed.
    #[error("Teltonika connection {connection}: {reason}")]
    Tracker { connection: usize, reason: String },
    /// The server acknowledged fixes that are not in `positions`, or stored more.
    #[error("{phase}: {acknowledged} fixes acknowledged but {stored} stored")]
    NotStored {
        phase: &'static str,
        acknowledged: usize,
        stored: i64,
    },
}

impl Error {
    /// For `map_err`: a request for `action` got no answer.
    pub(crate) fn request(action: impl Into<String>) -> impl FnOnce(reqwest::Error) -> Self {
        move |source| Self::Request {
            action: action.into(),
            source,
        }
    }

    /// The server answered `reply` with a status the client did not expect; reads its body.
    pub(crate) async fn status(action: impl Into<String>, reply: reqwest::Response) -> Self {
        let status = reply.status();
        let body = reply
            .text()
            .await
            .unwrap_or_else(|e| format!("(the body could not be read: {})", Causes(&e)));
        Self::Status {
            action: action.into(),
            status,
            body,
        }
    }

    /// For `map_err`: a database step of a benchmark failed.
    pub(crate) fn database(action: &'static str) -> impl FnOnce(sqlx::Error) -> Self {
        move |source| Self::Database { action, source }
    }

    /// For `map_err`: a task of the run panicked or was cancelled.
    pub(crate) fn task(what: &'static str) -> impl FnOnce(tokio::task::JoinError) -> Self {
        move |source| Self::Task { what, source }
    }
}

/// An error followed by its causes, `a: b: c`. reqwest's own message names only the URL
/// ("error sending request for url (...)"); the reason (connection refused, timeout) is in
/// its sources. A cause whose text is already shown is skipped.
struct Causes<'a>(&'a (dyn std::error::Error + 'static));

impl fmt::Display for Causes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.0.to_string();
        let mut next = self.0.source();
        while let Some(cause) = next {
            let text = cause.to_string();
            if !shown.contains(&text) {
                shown = format!("{shown}: {text}");
            }
            next = cause.source();
        }
        f.write_str(&shown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hides its cause, as reqwest's errors do.
    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Hides(#[source] std::io::Error);

    /// Already shows its cause.
    #[derive(Debug, thiserror::Error)]
    #[error("outer: {0}")]
    struct Shows(#[source] std::io::Error);

    #[test]
    fn causes_are_listed_once() {
        let refused = || std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(Causes(&Hides(refused())).to_string(), "outer: refused");
        assert_eq!(Causes(&Shows(refused())).to_string(), "outer: refused");
    }

    #[test]
    fn argument_messages_keep_their_wording() {
        let error = Error::Argument {
            flag: "--centre",
            value: "1".into(),
            expected: "must be lon,lat",
        };
        assert_eq!(error.to_string(), r#"--centre "1" must be lon,lat"#);
    }
}
