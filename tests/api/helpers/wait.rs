//! Waiting for what the server does in the background (loading the fence index, evaluating
//! alerts, delivering webhooks, reloading on NOTIFY). Every wait polls at a fixed pace and is
//! bounded: a change that never comes fails the test with a message saying what did not happen,
//! instead of hanging the suite.

use std::time::{Duration, Instant};

use geotrack::state::AppState;

use super::app::TestApp;

/// How long `wait_until` waits: ample for work that takes milliseconds on an idle machine.
const WAIT: Duration = Duration::from_secs(10);
/// How often `wait_until` looks again.
const WAIT_EVERY: Duration = Duration::from_millis(10);

/// Polls `check` every `every` until it holds or `within` has passed; whether it held.
pub async fn poll_until(within: Duration, every: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let started = Instant::now();
    loop {
        if check().await {
            return true;
        }
        if started.elapsed() >= within {
            return false;
        }
        tokio::time::sleep(every).await;
    }
}

/// Whether `check` comes to hold within 5 s (looked at every 100 ms): for changes that reach the
/// server by NOTIFY. The caller asserts the result with its own message.
pub async fn eventually(check: impl AsyncFnMut() -> bool) -> bool {
    poll_until(Duration::from_secs(5), Duration::from_millis(100), check).await
}

/// Waits up to 10 s for `check` to hold; panics with `failure` (what never happened) otherwise.
pub async fn wait_until(failure: &str, check: impl AsyncFnMut() -> bool) {
    let held = poll_until(WAIT, WAIT_EVERY, check).await;
    assert!(held, "{failure} (waited {} s)", WAIT.as_secs());
}

/// How long a server may take to load its fence index: seconds for a test's 20,000-vertex
/// fence in a debug build, more while the suite's heaviest tests share the two cores.
const FENCE_INDEX_LOAD: Duration = Duration::from_secs(60);

/// Waits until the server has loaded its fence index from the database.
pub async fn wait_for_fence_index(state: &AppState) {
    let loaded = poll_until(FENCE_INDEX_LOAD, WAIT_EVERY, async || state.fences.is_loaded()).await;
    assert!(
        loaded,
        "fence index never loaded (waited {} s)",
        FENCE_INDEX_LOAD.as_secs()
    );
}

/// Waits until the table holds `n` alerts (10 s at most) and returns (device, fence, kind) of
/// each, in id order.
pub async fn wait_for_alerts(app: &TestApp, n: usize) -> Vec<(String, Option<String>, String)> {
    let mut rows = Vec::new();
    let enough = poll_until(WAIT, WAIT_EVERY, async || {
        rows = sqlx::query_as("SELECT device, fence, kind FROM alerts ORDER BY id")
            .fetch_all(&app.db)
            .await
            .expect("alerts");
        rows.len() >= n
    })
    .await;
    assert!(enough, "expected {n} alerts, have {rows:?}");
    rows
}
