//! PostgreSQL going away under load, through a proxy the test cuts and restores (so only this
//! server loses its database): ingest answers 503 with `Retry-After` while it is away, recovers
//! by itself when it is back, and loses nothing it acknowledged; the evaluator resumes where it
//! stopped, so every crossing gets its alert exactly once, and a subscriber connected across the
//! outage sees each of them once; a basemap re-import announced while this server could not
//! hear it still reaches its cached tiles.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::helpers::{
    TcpProxy, TestApp, WsClient, create_fence, database_url, eventually, fix_at, in_and_out, names_at,
    new_database, spawn_on, square,
};

const FIXES: usize = 40;
/// Acknowledged fixes after which the database goes away.
const CUT_AFTER: usize = 15;
/// How long it stays away.
const OUTAGE: Duration = Duration::from_secs(3);

/// What the device saw while posting its fixes one at a time, retrying each until acknowledged
/// as a device app does.
struct Drive {
    start: DateTime<Utc>,
    refused: usize,
    refused_without_retry_after: usize,
}

impl Drive {
    /// Posts fix `i` until it is acknowledged; 503s are counted, any other status fails.
    async fn post_until_acknowledged(&mut self, app: &TestApp, i: usize, mut before_each: impl FnMut()) {
        let (lon, lat) = in_and_out(i);
        let fix = fix_at("d", self.start + chrono::Duration::seconds(i as i64), lon, lat);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            before_each();
            let reply = app.post_json(&fix).await;
            match reply.status().as_u16() {
                202 => return,
                503 => {
                    self.refused += 1;
                    if !reply.headers().contains_key("retry-after") {
                        self.refused_without_retry_after += 1;
                    }
                }
                other => panic!("fix {i}: {other} {}", reply.text().await.unwrap_or_default()),
            }
            assert!(
                Instant::now() < deadline,
                "fix {i} never acknowledged: no recovery"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Another process re-imports the basemap, France renamed.
async fn rename_france(db: &sqlx::PgPool) {
    let renamed = std::str::from_utf8(geotrack::web::COUNTRIES)
        .expect("utf-8")
        .replace("\"France\"", "\"République française\"");
    tiles::basemap::import(db, renamed.as_bytes())
        .await
        .expect("re-import");
}

#[tokio::test]
async fn when_postgres_goes_away_nothing_acknowledged_is_lost_and_alerts_resume_without_a_gap() {
    let db_name = new_database().await;
    let proxy = TcpProxy::to_postgres().await;
    let via_proxy = proxy.database_url(&db_name);
    let app = spawn_on(db_name.clone(), |c| c.database_url = via_proxy).await;
    let direct = sqlx::PgPool::connect(&database_url(&db_name))
        .await
        .expect("pool");
    create_fence(&app, &square("a", 10.0025, 10.0, 0.0025)).await;
    tiles::basemap::import(&direct, geotrack::web::COUNTRIES)
        .await
        .expect("import");
    assert_eq!(
        names_at(&app, "countries", 2.35, 48.85, 8, "").await,
        ["France"],
        "cached"
    );
    let mut subscriber = WsClient::connect(&app, "/ws/alerts?since=0").await;
    subscriber.until_live().await;

    let start = DateTime::from_timestamp(Utc::now().timestamp() - FIXES as i64 - 5, 0).expect("time");
    let mut drive = Drive {
        start,
        refused: 0,
        refused_without_retry_after: 0,
    };
    for i in 0..CUT_AFTER {
        drive.post_until_acknowledged(&app, i, || {}).await;
    }
    proxy.cut();
    let cut_at = Instant::now();
    // Its NOTIFY reaches nobody here.
    rename_france(&direct).await;
    let mut restored_at = None;
    for i in CUT_AFTER..FIXES {
        let restore = || {
            if restored_at.is_none() && cut_at.elapsed() >= OUTAGE {
                proxy.restore();
                restored_at = Some(Instant::now());
            }
        };
        drive.post_until_acknowledged(&app, i, restore).await;
    }
    assert!(drive.refused > 0, "the outage was noticed");
    assert_eq!(
        drive.refused_without_retry_after, 0,
        "every 503 says when to retry"
    );
    let recovered = restored_at.expect("restored").elapsed();

    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM positions WHERE device = 'd'")
        .fetch_one(&direct)
        .await
        .expect("count");
    assert_eq!(stored, FIXES as i64, "every acknowledged fix is stored, once");

    let mut seen = Vec::new();
    while seen.len() < FIXES {
        seen.extend(subscriber.alerts(1).await);
    }
    let rows: Vec<(i64, String, DateTime<Utc>)> =
        sqlx::query_as("SELECT id, kind, ts FROM alerts WHERE device = 'd' ORDER BY id")
            .fetch_all(&direct)
            .await
            .expect("alerts");
    let expected: Vec<(String, DateTime<Utc>)> = (0..FIXES)
        .map(|i| {
            let kind = if i.is_multiple_of(2) { "enter" } else { "exit" };
            (kind.to_owned(), start + chrono::Duration::seconds(i as i64))
        })
        .collect();
    let got: Vec<(String, DateTime<Utc>)> = rows.iter().map(|r| (r.1.clone(), r.2)).collect();
    assert_eq!(got, expected, "one alert per crossing, each once, in order");
    let streamed: Vec<i64> = seen
        .iter()
        .map(|a: &Value| a["id"].as_i64().expect("id"))
        .collect();
    let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
    assert_eq!(
        streamed, ids,
        "the subscriber saw every alert once (recovered in {recovered:?})"
    );
    assert_eq!(app.get("/ready").await.status(), 200, "ready again");
    assert!(
        eventually(async || names_at(&app, "countries", 2.35, 48.85, 8, "").await == ["République française"])
            .await,
        "cached tiles dropped when listening resumed"
    );

    direct.close().await;
    subscriber.close().await;
    app.stop().await;
}
