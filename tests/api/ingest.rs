//! `POST /api/v1/positions`: every body format, every rejection path, duplicates, late fixes.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{fix, fix_at, json_with_status, spawn_app, spawn_with, wait_until};

#[derive(Debug, PartialEq, sqlx::FromRow)]
struct StoredFix {
    lon: f64,
    lat: f64,
    speed_mps: Option<f64>,
    heading_deg: Option<f64>,
    accuracy_m: Option<f64>,
    altitude_m: Option<f64>,
    battery: Option<f64>,
    attrs: Option<Value>,
}

/// Each shard writer opens its connection at start and runs its one-statement write with no
/// fixes: the first fixes after a restart then find the backend ready instead of paying for it.
#[tokio::test]
async fn every_ingest_writer_opens_its_connection_at_start_and_stores_nothing() {
    let app = spawn_app().await;
    let warmed = async || -> i64 {
        // A backend shows the last statement it ran; the writers' statement opens so.
        sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = $1 AND query LIKE 'WITH f AS (SELECT * FROM unnest($1::text[]%'",
        )
        .bind(&app.db_name)
        .fetch_one(&app.db)
        .await
        .expect("pg_stat_activity")
    };
    wait_until("both shard writers' backends ran their write", async || {
        warmed().await == 2
    })
    .await;
    for table in ["positions", "devices_latest", "devices"] {
        let rows: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&app.db)
            .await
            .expect("count");
        assert_eq!(rows, 0, "{table} holds rows after the warm-up");
    }
    // The warmed writers then store fixes as before.
    let reply = json_with_status(app.post_json(&fix("after-warm-up", 0, 1.0, 2.0)).await, 202).await;
    assert_eq!(reply["accepted"], 1);
    assert_eq!(app.stored().await, 1);
}

#[tokio::test]
async fn every_body_format_is_stored() {
    let app = spawn_app().await;
    let now = chrono::Utc::now().timestamp();

    let object = json!({"device": "obj", "ts": now, "lon": 1.0, "lat": 2.0, "speed_mps": 3.5,
                        "heading_deg": 90, "accuracy_m": 5, "altitude_m": 12.5, "battery": 80,
                        "attrs": {"ignition": true}});
    let array = json!([fix("arr", 2, 1.0, 2.0), fix("arr", 1, 1.1, 2.1)]);
    let feature = json!({"type": "Feature", "geometry": {"type": "Point", "coordinates": [3.0, 4.0, 100.0]},
                         "properties": {"device": "feat", "ts": (now - 1) * 1000}});
    let collection = json!({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [5.0, 6.0]},
         "properties": {"device": "fc", "ts": now - 3}},
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [5.1, 6.1]},
         "properties": {"device": "fc", "ts": now - 2}}]});
    for (body, expected) in [(&object, 1), (&array, 2), (&feature, 1), (&collection, 2)] {
        let reply = json_with_status(app.post_json(body).await, 202).await;
        assert_eq!(
            reply,
            json!({"accepted": expected, "rejected": []}),
            "body {body}"
        );
    }
    let geojson = app
        .post_raw(
            "application/geo+json; charset=utf-8",
            fix("geo", 0, 7.0, 8.0).to_string(),
        )
        .await;
    assert_eq!(json_with_status(geojson, 202).await["accepted"], 1);
    let ndjson = format!("{}\n\n{}\n", fix("nd", 2, 9.0, 10.0), fix("nd", 1, 9.5, 10.5));
    let reply = json_with_status(app.post_raw("application/x-ndjson", ndjson).await, 202).await;
    assert_eq!(reply["accepted"], 2);

    assert_eq!(app.stored().await, 9);
    let row: StoredFix = sqlx::query_as(
        "SELECT ST_X(geom) AS lon, ST_Y(geom) AS lat, speed_mps, heading_deg, accuracy_m, altitude_m,
                battery, attrs
         FROM positions WHERE device = 'obj'",
    )
    .fetch_one(&app.db)
    .await
    .expect("row");
    let expected = StoredFix {
        lon: 1.0,
        lat: 2.0,
        speed_mps: Some(3.5),
        heading_deg: Some(90.0),
        accuracy_m: Some(5.0),
        altitude_m: Some(12.5),
        battery: Some(80.0),
        attrs: Some(json!({"ignition": true})),
    };
    assert_eq!(row, expected);
    let altitude: Option<f64> = sqlx::query_scalar("SELECT altitude_m FROM positions WHERE device = 'feat'")
        .fetch_one(&app.db)
        .await
        .expect("feature row");
    assert_eq!(altitude, Some(100.0), "the third coordinate is the altitude");
    app.stop().await;
}

#[tokio::test]
async fn a_partly_bad_batch_stores_the_good_fixes_and_reports_the_bad_by_index() {
    let app = spawn_app().await;
    let future = (chrono::Utc::now() + chrono::Duration::minutes(10)).to_rfc3339();
    let body = json!([
        fix("good", 3, 1.0, 1.0),
        {"device": "bad", "ts": future, "lon": 1.0, "lat": 1.0},
        {"device": "bad", "ts": "2001-01-01T00:00:00Z", "lon": 1.0, "lat": 1.0},
        {"device": "bad", "ts": "now", "lon": 1.0, "lat": 1.0},
        fix("bad", 1, 181.0, 1.0),
        fix("bad", 1, 1.0, -91.0),
        fix("", 1, 1.0, 1.0),
        {"ts": 1, "lon": 1, "lat": 1},
        {"device": "bad", "lat": "north"},
        "not an object",
        fix("good", 2, 1.0, 1.0),
    ]);
    let reply = json_with_status(app.post_json(&body).await, 202).await;
    assert_eq!(reply["accepted"], 2);
    let codes: Vec<(u64, String)> = reply["rejected"]
        .as_array()
        .expect("rejected")
        .iter()
        .map(|r| {
            assert!(r["reason"].as_str().is_some_and(|s| !s.is_empty()), "{r}");
            (
                r["index"].as_u64().expect("index"),
                r["code"].as_str().expect("code").to_owned(),
            )
        })
        .collect();
    let expected = [
        (1, "ts_in_future"),
        (2, "ts_too_old"),
        (3, "invalid_ts"),
        (4, "invalid_lon"),
        (5, "invalid_lat"),
        (6, "invalid_device"),
        (7, "missing_device"),
        (8, "invalid_fix"),
        (9, "invalid_fix"),
    ];
    let expected: Vec<(u64, String)> = expected.iter().map(|(i, c)| (*i, (*c).to_owned())).collect();
    assert_eq!(codes, expected);
    assert_eq!(app.stored().await, 2);
    app.stop().await;
}

#[tokio::test]
async fn whole_request_errors_are_json_with_the_right_status() {
    let app = spawn_with(|c| {
        c.ingest.max_request_fixes = 3;
        c.ingest.max_body_bytes = 2_000;
    })
    .await;
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("application/json", "{\"device\":".into(), 400, "malformed_body"),
        ("application/json", "17".into(), 400, "unsupported_body"),
        (
            "text/plain",
            fix("a", 0, 0.0, 0.0).to_string(),
            415,
            "unsupported_content_type",
        ),
        (
            "",
            fix("a", 0, 0.0, 0.0).to_string(),
            415,
            "unsupported_content_type",
        ),
        (
            "application/json",
            json!([{}, {}, {}, {}]).to_string(),
            413,
            "too_many_fixes",
        ),
        (
            "application/json",
            format!("[{}]", "1,".repeat(1_500) + "1"),
            413,
            "body_too_large",
        ),
    ];
    for (content_type, body, status, code) in cases {
        let response = if content_type.is_empty() {
            app.request(Method::POST, "/api/v1/positions")
                .body(body)
                .send()
                .await
        } else {
            app.post_raw(content_type, body).await
        };
        let reply = json_with_status(response, status).await;
        assert_eq!(reply["error"]["code"], code, "{reply}");
        assert!(reply["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    assert_eq!(app.stored().await, 0);
    app.stop().await;
}

#[tokio::test]
async fn a_resent_fix_is_acknowledged_and_stored_once() {
    let app = spawn_app().await;
    let one = fix("dup", 5, 10.0, 20.0);
    let batch = json!([one, one, fix("dup", 4, 10.1, 20.1)]);
    assert_eq!(
        json_with_status(app.post_json(&batch).await, 202).await["accepted"],
        3
    );
    assert_eq!(
        json_with_status(app.post_json(&one).await, 202).await["accepted"],
        1
    );
    assert_eq!(app.stored().await, 2);
    let duplicates = app.state.ingest.pipeline.metrics().duplicates.get();
    assert_eq!(duplicates, 2, "one duplicate inside the batch, one re-sent");
    app.stop().await;
}

#[tokio::test]
async fn a_late_fix_goes_to_history_but_does_not_move_the_live_position() {
    let app = spawn_app().await;
    json_with_status(app.post_json(&fix("late", 10, 1.0, 1.0)).await, 202).await;
    json_with_status(app.post_json(&fix("late", 60, 2.0, 2.0)).await, 202).await;
    assert_eq!(app.stored().await, 2);
    let live = json_with_status(app.get("/api/v1/devices/late").await, 200).await;
    assert_eq!(live["geometry"]["coordinates"], json!([1.0, 1.0]));

    // In one batch, the newest fix wins whatever its place in the batch.
    let batch = json!([fix("late", 3, 5.0, 5.0), fix("late", 8, 4.0, 4.0)]);
    json_with_status(app.post_json(&batch).await, 202).await;
    let live = json_with_status(app.get("/api/v1/devices/late").await, 200).await;
    assert_eq!(live["geometry"]["coordinates"], json!([5.0, 5.0]));

    // Of two fixes at the same time in one batch, the first is kept, in history and live.
    let at = chrono::Utc::now() - chrono::Duration::seconds(5);
    let batch = json!([fix_at("tie", at, 1.0, 1.0), fix_at("tie", at, 2.0, 2.0)]);
    json_with_status(app.post_json(&batch).await, 202).await;
    let live = json_with_status(app.get("/api/v1/devices/tie").await, 200).await;
    assert_eq!(live["geometry"]["coordinates"], json!([1.0, 1.0]));
    let stored: (f64, i64) =
        sqlx::query_as("SELECT ST_X(geom), count(*) OVER () FROM positions WHERE device = 'tie'")
            .fetch_one(&app.db)
            .await
            .expect("history");
    assert_eq!(stored, (1.0, 1));
    app.stop().await;
}

/// A small batch is stored by one statement, a larger one by a binary `COPY`, or, when it holds
/// a duplicate, by an `INSERT` that skips it: all three must store a fix to the microsecond and
/// the bit, live row and registry too.
#[tokio::test]
async fn every_write_path_stores_a_fix_exactly_alike() {
    // One shard, so a request is one batch: up to two fixes one statement, more a `COPY`.
    let app = spawn_with(|c| {
        c.ingest.shards = 1;
        c.ingest.statement_max_fixes = 2;
    })
    .await;
    let at = chrono::Utc::now() - chrono::Duration::minutes(3);
    let ts = at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
    let full = |device: &str| {
        json!({"device": device, "ts": ts, "lon": -179.999_999_9, "lat": 0.1 + 0.2,
               "speed_mps": 1e-300, "heading_deg": 359.5, "altitude_m": -412.25, "battery": 0.0,
               "attrs": {"note": "tab\there \\ \"quoted\" ünï", "n": [1, 2.5, null]}})
    };
    let bare = |device: &str| json!({"device": device, "ts": ts, "lon": 1.0, "lat": 2.0});
    let batches = [
        // A `COPY`.
        json!([full("copied"), bare("copied-bare"), bare("filler")]),
        // One statement.
        json!([full("statement"), bare("statement-bare")]),
        // The re-sent fix makes the `COPY` fail; the new ones go in by the `INSERT`.
        json!([full("inserted"), full("copied"), bare("inserted-bare")]),
        // One statement skips a re-sent fix by itself.
        json!([full("statement"), full("statement-2")]),
    ];
    for body in &batches {
        let accepted = json_with_status(app.post_json(body).await, 202).await["accepted"].clone();
        assert_eq!(accepted, json!(body.as_array().map_or(0, Vec::len)), "{body}");
    }
    assert_eq!(app.stored().await, 8);
    let metrics = app.state.ingest.pipeline.metrics();
    assert_eq!(metrics.duplicates.get(), 2);
    assert_eq!(
        metrics.rewritten_batches.get(),
        1,
        "only the `COPY` with the re-sent fix"
    );

    let row = |table: &'static str, device: &'static str| {
        let db = app.db.clone();
        async move {
            let sql = format!(
                "SELECT to_jsonb(t) - 'device' - 'received_at' - 'seq' - 'geom'
                        || jsonb_build_object('geom', ST_AsEWKB(geom)::text)
                 FROM {table} t WHERE device = $1"
            );
            let row: Value = sqlx::query_scalar(&sql)
                .bind(device)
                .fetch_one(&db)
                .await
                .expect("row");
            row
        }
    };
    for table in ["positions", "devices_latest"] {
        let copied = row(table, "copied").await;
        for other in ["inserted", "statement", "statement-2"] {
            assert_eq!(copied, row(table, other).await, "{table}: {other}");
        }
        // `extract` is an exact numeric since PostgreSQL 14: no float rounding in between.
        let sql = format!("SELECT (extract(epoch FROM ts) * 1000000)::int8 FROM {table} WHERE device = $1");
        let micros: i64 = sqlx::query_scalar(&sql)
            .bind("copied")
            .fetch_one(&app.db)
            .await
            .expect("ts");
        assert_eq!(micros, at.timestamp_micros(), "{table}: to the microsecond");
        let copied = row(table, "copied-bare").await;
        for other in ["inserted-bare", "statement-bare"] {
            assert_eq!(
                copied,
                row(table, other).await,
                "{table} without optional fields: {other}"
            );
        }
    }
    let devices = [
        "copied",
        "copied-bare",
        "filler",
        "statement",
        "statement-bare",
        "inserted",
        "inserted-bare",
        "statement-2",
    ];
    let registered: i64 = sqlx::query_scalar("SELECT count(*) FROM devices WHERE id = ANY($1)")
        .bind(&devices[..])
        .fetch_one(&app.db)
        .await
        .expect("devices");
    assert_eq!(registered, 8);
    app.stop().await;
}
