//! OGC API – Features (`/ogc`): the landing page, conformance and collections; items paged by
//! `next` links, filtered by bbox and datetime, as `application/geo+json`; a token limited to
//! some devices sees only those (Basic auth, as GIS clients send it); and GDAL's OAPIF driver
//! (what QGIS uses) reads both collections, page by page.

use std::collections::BTreeSet;

use chrono::{Duration, Utc};
use geotrack::auth::TokensSetting;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, circle, fix_at, json_with_status, spawn_with, square};

const ADMIN: &str = "ogc-admin-token-0123456789";
const VANS: &str = "ogc-vans-reader-0123456789";

/// Six devices (three `van-*`, three `car-*`) with fixes a minute apart, and two fences.
async fn seeded(app: &TestApp) {
    let now = Utc::now();
    let fixes: Vec<Value> = (0..6)
        .map(|i| {
            let device = if i < 3 {
                format!("van-{i}")
            } else {
                format!("car-{i}")
            };
            fix_at(&device, now - Duration::minutes(i), 2.30 + 0.01 * i as f64, 48.85)
        })
        .collect();
    let reply = app
        .request(Method::POST, "/api/v1/positions")
        .token(ADMIN)
        .json(&fixes)
        .send()
        .await;
    json_with_status(reply, 202).await;
    for fence in [
        square("depot", 2.30, 48.85, 0.001),
        circle("yard", 2.35, 48.86, 200.0),
    ] {
        let reply = app
            .request(Method::POST, "/api/v1/fences")
            .token(ADMIN)
            .json(&fence)
            .send()
            .await;
        json_with_status(reply, 201).await;
    }
}

async fn get(app: &TestApp, url: &str, token: &str) -> reqwest::Response {
    app.request_url(Method::GET, url)
        .basic_token("qgis", token)
        .send()
        .await
}

/// Every feature id of `collection` reached by following `next` links from `query`.
async fn walk(app: &TestApp, collection: &str, query: &str, token: &str) -> (Vec<String>, usize) {
    let mut url = app.url(&format!("/ogc/collections/{collection}/items{query}"));
    let (mut ids, mut pages) = (Vec::new(), 0);
    loop {
        let reply = get(app, &url, token).await;
        assert_eq!(reply.headers()["content-type"], "application/geo+json");
        let page = json_with_status(reply, 200).await;
        pages += 1;
        let features = page["features"].as_array().expect("features");
        assert_eq!(page["numberReturned"], features.len(), "{page}");
        ids.extend(features.iter().map(|f| f["id"].as_str().expect("id").to_owned()));
        let next = page["links"]
            .as_array()
            .expect("links")
            .iter()
            .find(|l| l["rel"] == "next");
        match next {
            Some(link) => link["href"].as_str().expect("href").clone_into(&mut url),
            None => return (ids, pages),
        }
    }
}

fn tokens() -> TokensSetting {
    TokensSetting::Compact(format!("{ADMIN}=admin;{VANS}=read@van-*"))
}

#[tokio::test]
async fn collections_page_by_next_links_and_keep_limited_tokens_to_their_devices() {
    let app = spawn_with(|c| c.tokens = tokens()).await;
    seeded(&app).await;

    let landing = json_with_status(get(&app, &app.url("/ogc"), VANS).await, 200).await;
    let rels: BTreeSet<&str> = landing["links"]
        .as_array()
        .expect("links")
        .iter()
        .filter_map(|l| l["rel"].as_str())
        .collect();
    assert!(
        ["self", "service-desc", "conformance", "data"]
            .iter()
            .all(|r| rels.contains(r)),
        "{landing}"
    );
    assert!(
        landing["links"][0]["href"]
            .as_str()
            .expect("href")
            .starts_with("http://127.0.0.1:"),
        "absolute links"
    );
    let conformance = json_with_status(get(&app, &app.url("/ogc/conformance"), VANS).await, 200).await;
    assert!(
        conformance["conformsTo"]
            .to_string()
            .contains("ogcapi-features-1/1.0/conf/core"),
        "{conformance}"
    );
    let collections = json_with_status(get(&app, &app.url("/ogc/collections"), VANS).await, 200).await;
    let names: Vec<&str> = collections["collections"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|c| c["id"].as_str())
        .collect();
    assert_eq!(names, ["fences", "devices"]);
    json_with_status(get(&app, &app.url("/ogc/collections/trucks"), VANS).await, 404).await;

    // The admin walks all six devices two at a time, each once; the vans reader sees its three.
    let (ids, pages) = walk(&app, "devices", "?limit=2", ADMIN).await;
    assert_eq!(ids, ["car-3", "car-4", "car-5", "van-0", "van-1", "van-2"]);
    assert_eq!(pages, 3);
    let (ids, _) = walk(&app, "devices", "?limit=2", VANS).await;
    assert_eq!(ids, ["van-0", "van-1", "van-2"]);
    json_with_status(
        get(&app, &app.url("/ogc/collections/devices/items/car-3"), VANS).await,
        404,
    )
    .await;
    let van = get(&app, &app.url("/ogc/collections/devices/items/van-1"), VANS).await;
    assert_eq!(van.headers()["content-type"], "application/geo+json");
    let van = json_with_status(van, 200).await;
    assert_eq!(van["geometry"]["coordinates"], json!([2.30 + 0.01, 48.85]));
    assert!(
        van["links"].to_string().contains("/ogc/collections/devices"),
        "{van}"
    );

    app.stop().await;
}

#[tokio::test]
async fn items_filter_by_bbox_and_datetime_and_refuse_bad_parameters_with_reasons() {
    let app = spawn_with(|c| c.tokens = tokens()).await;
    seeded(&app).await;
    // bbox and datetime filter; fences ignore datetime.
    let (ids, _) = walk(&app, "devices", "?bbox=2.305,48.8,2.335,48.9", ADMIN).await;
    assert_eq!(ids, ["car-3", "van-1", "van-2"]);
    let since = (Utc::now() - Duration::seconds(150)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (ids, _) = walk(&app, "devices", &format!("?datetime={since}/.."), ADMIN).await;
    assert_eq!(ids, ["van-0", "van-1", "van-2"], "the fixes of the last 150 s");
    let (ids, _) = walk(&app, "fences", &format!("?datetime={since}/..&limit=1"), ADMIN).await;
    assert_eq!(ids, ["depot", "yard"]);
    let (ids, _) = walk(&app, "fences", "?bbox=2.34,48.85,2.36,48.87", VANS).await;
    assert_eq!(ids, ["yard"]);

    // A limit above the maximum is lowered; bad parameters are 400s with a reason.
    let page = json_with_status(
        get(&app, &app.url("/ogc/collections/fences/items?limit=99999"), VANS).await,
        200,
    )
    .await;
    assert!(
        page["links"][0]["href"]
            .as_str()
            .expect("self")
            .contains("limit=10000"),
        "{page}"
    );
    for bad in [
        "limit=0",
        "f=html",
        "datetime=yesterday",
        "bbox=1,2,3",
        "bbox-crs=EPSG:3857",
        "colour=red",
    ] {
        let reply = get(
            &app,
            &app.url(&format!("/ogc/collections/devices/items?{bad}")),
            VANS,
        )
        .await;
        let error = json_with_status(reply, 400).await;
        assert!(error["error"]["message"].is_string(), "{bad}: {error}");
    }

    // No token: 401, with a challenge GIS clients answer with Basic credentials.
    let refused = app.request(Method::GET, "/ogc/collections").send().await;
    assert_eq!(refused.status(), 401);
    let challenges: Vec<&str> = refused
        .headers()
        .get_all("www-authenticate")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert!(
        challenges.iter().any(|c| c.starts_with("Basic")),
        "{challenges:?}"
    );
    app.stop().await;
}

/// `ogrinfo` on a layer of the server's `/ogc`, with the vans reader's token as Basic auth;
/// returns the `id` of every feature it read.
async fn ogrinfo(app: &TestApp, layer: &str) -> BTreeSet<String> {
    let found = std::process::Command::new("bash")
        .arg("scripts/gdal.sh")
        .output()
        .expect("bash runs");
    assert!(
        found.status.success(),
        "scripts/gdal.sh: {}",
        String::from_utf8_lossy(&found.stderr)
    );
    let ogrinfo = String::from_utf8_lossy(&found.stdout).trim().to_owned();
    // Not std's Command: the server runs on this test's runtime, which must keep serving.
    let output = tokio::process::Command::new(ogrinfo)
        .args(["-ro", "-al", "-q", "-oo", "PAGE_SIZE=2"])
        .args([
            "--config",
            "GDAL_HTTP_AUTH",
            "BASIC",
            "--config",
            "GDAL_HTTP_USERPWD",
            &format!("qgis:{VANS}"),
        ])
        .arg(format!("OAPIF:{}", app.url("/ogc")))
        .arg(layer)
        .output()
        .await
        .expect("ogrinfo runs");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "ogrinfo: {text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(text.contains(&format!("Layer name: {layer}")), "{text}");
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("id (String) = "))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn gdal_reads_both_collections_page_by_page() {
    let app = spawn_with(|c| c.tokens = tokens()).await;
    seeded(&app).await;
    let expected: BTreeSet<String> = ["van-0", "van-1", "van-2"].map(String::from).into();
    let devices = ogrinfo(&app, "devices").await;
    assert_eq!(
        devices, expected,
        "GDAL read the devices the token may see, over two pages"
    );
    let fences = ogrinfo(&app, "fences").await;
    assert_eq!(fences, ["depot", "yard"].map(String::from).into());
    app.stop().await;
}
