//! Where log lines go: standard error, written by a thread of their own from a bounded queue.
//!
//! Written in place, a log line blocks the task that logs it (an access line: every request)
//! while standard error does: a pipe whose reader stopped (a stuck log shipper, a terminal
//! paused with Ctrl-S) fills after 64 KiB, and then every worker thread waits on it and the
//! server stops answering. Here a line is queued; when [`QUEUED_LINES`] are waiting, further
//! lines are dropped and counted (`geotrack_log_lines_dropped_total`), and the server goes on.
//! Whatever is queued is written before the process exits, as long as the [`Flush`] guard
//! returned by [`stderr`] lives until then.

use std::sync::OnceLock;

use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, NonBlockingBuilder, WorkerGuard};

/// Lines waiting to be written, at most: a few MiB, seconds of access lines at full load.
pub const QUEUED_LINES: usize = 16_384;

/// Writes the queued lines out when dropped (at the end of `main`).
pub type Flush = WorkerGuard;

/// The count of lines dropped by the sink made by [`stderr`].
static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// The writer of the log lines, and its guard.
pub fn stderr() -> (NonBlocking, Flush) {
    let (writer, flush) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(QUEUED_LINES)
        .thread_name("geotrack-log")
        .finish(std::io::stderr());
    // Only the first sink is counted (`main` makes one).
    let _ = DROPPED.set(writer.error_counter());
    (writer, flush)
}

/// Log lines dropped so far because the queue was full.
pub fn dropped_lines() -> u64 {
    DROPPED.get().map_or(0, |counter| {
        u64::try_from(counter.dropped_lines()).unwrap_or(u64::MAX)
    })
}
