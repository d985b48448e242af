//! Vector tiles built by PostGIS: decoded and checked feature by feature.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{
    TestApp, WsClient, circle, create_fence, fix, json_with_status, named, names, polygon, replace_fence,
    spawn_app, spawn_with, tile,
};

#[tokio::test]
async fn fences_and_positions_tiles_hold_the_stored_features() {
    let app = spawn_app().await;
    let square = named(polygon("yard", [10.0, 10.0, 11.0, 11.0]), "Yard");
    let polar = circle("pole", 0.0, -89.9, 800_000.0);
    for fence in [&square, &polar] {
        create_fence(&app, fence).await;
    }
    json_with_status(
        app.post_json(&json!([
            fix("truck-1", 1, 10.5, 10.5),
            fix("truck-2", 1, -120.0, 40.0)
        ]))
        .await,
        202,
    )
    .await;

    let (status, layers) = tile(&app, "/tiles/fences/0/0/0").await;
    assert_eq!(status, 200);
    let fences = &layers.expect("tile")["fences"];
    assert_eq!(
        fences.len(),
        2,
        "the polar fence is clipped to Web Mercator, not dropped: {fences:?}"
    );
    let yard = fences.iter().find(|(_, p)| p["id"] == "yard").expect("yard");
    assert_eq!(
        (yard.1["name"].as_str(), yard.1["kind"].as_str()),
        ("Yard", "polygon")
    );
    assert_ne!(fences[0].0, fences[1].0, "distinct feature ids");

    // z=4 tile 8/7 covers lon 0..22.5, lat 0..21.9: the yard and truck-1 only.
    let (_, layers) = tile(&app, "/tiles/positions/4/8/7.mvt").await;
    let positions = &layers.expect("tile")["positions"];
    assert_eq!(positions.len(), 1);
    assert_eq!(positions[0].1["device"], "truck-1");
    assert!(positions[0].1["ts"].ends_with('Z'), "{:?}", positions[0].1);
    let (_, again) = tile(&app, "/tiles/positions/4/8/7.pbf").await;
    assert_eq!(
        again.expect("tile")["positions"][0].0,
        positions[0].0,
        "ids are stable"
    );

    assert_eq!(tile(&app, "/tiles/fences/4/0/0").await.0, 204, "an empty tile");
    app.stop().await;
}

#[tokio::test]
async fn bad_tile_addresses_are_json_errors() {
    let app = spawn_app().await;
    for (path, status, code) in [
        ("/tiles/roads/0/0/0", 404, "unknown_layer"),
        ("/tiles/fences/23/0/0", 400, "invalid_tile"),
        ("/tiles/fences/2/4/0", 400, "invalid_tile"),
        ("/tiles/fences/1/0/0.png", 400, "invalid_tile"),
    ] {
        assert_eq!(
            json_with_status(app.get(path).await, status).await["error"]["code"],
            code,
            "{path}"
        );
    }
    app.stop().await;
}

/// Maps on other sites use tiles with a token (a server without tokens refuses other origins:
/// `server::a_server_without_tokens_refuses_other_hosts_and_cross_site_requests`).
#[tokio::test]
async fn browsers_on_other_origins_may_fetch_tiles() {
    let app = spawn_with(|c| {
        c.tokens = geotrack::auth::TokensSetting::Compact("map-token-000000001=read".into());
    })
    .await;
    let preflight = app
        .request(Method::OPTIONS, "/tiles/fences/0/0/0")
        .header("origin", "http://maps.example")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .send()
        .await;
    assert!(preflight.status().is_success(), "{}", preflight.status());
    assert_eq!(preflight.headers()["access-control-allow-origin"], "*");
    // `*` does not cover Authorization (Fetch standard): it must be named.
    let allowed = preflight.headers()["access-control-allow-headers"]
        .to_str()
        .expect("ascii");
    assert!(
        allowed.split(',').any(|h| h.trim() == "authorization"),
        "{allowed}"
    );
    assert_eq!(preflight.headers()["access-control-max-age"], "86400");
    let reply = app
        .request(Method::GET, "/tiles/fences/0/0/0")
        .header("origin", "http://maps.example")
        .query_token("map-token-000000001")
        .send()
        .await;
    assert_eq!(reply.status(), 204);
    assert_eq!(reply.headers()["access-control-allow-origin"], "*");
    let exposed = reply.headers()["access-control-expose-headers"]
        .to_str()
        .expect("ascii");
    assert!(exposed.split(',').any(|h| h.trim() == "etag"), "{exposed}");
    app.stop().await;
}

/// The z10 tile holding (10.5, 10.5).
const Z10: &str = "/tiles/fences/10/541/481";

/// The fence `yard`, 0.2° square from (lon, 10.4): inside `Z10` at lon 10.4.
fn yard(lon: f64) -> Value {
    polygon("yard", [lon, 10.4, lon + 0.2, 10.6])
}

#[tokio::test]
async fn a_cached_tile_is_never_stale_after_a_fence_write() {
    let app = spawn_app().await;
    assert_eq!(tile(&app, Z10).await.0, 204, "nothing there yet");
    create_fence(&app, &named(yard(10.4), "first")).await;
    let (status, decoded) = tile(&app, Z10).await;
    assert_eq!(
        (status, names(decoded.as_ref(), "fences")),
        (200, vec!["first".to_owned()])
    );
    // Cached now; each write is visible to the very next request.
    replace_fence(&app, &named(yard(10.4), "renamed")).await;
    assert_eq!(names(tile(&app, Z10).await.1.as_ref(), "fences"), ["renamed"]);
    replace_fence(&app, &named(yard(50.0), "moved")).await;
    assert_eq!(
        tile(&app, Z10).await.0,
        204,
        "moved away: the old extent was invalidated too"
    );
    assert_eq!(
        names(tile(&app, "/tiles/fences/10/654/481").await.1.as_ref(), "fences"),
        ["moved"]
    );
    json_with_status(app.delete("/api/v1/fences/yard").await, 200).await;
    assert_eq!(tile(&app, "/tiles/fences/10/654/481").await.0, 204);
    app.stop().await;
}

#[tokio::test]
async fn tiles_carry_an_etag_answer_304_and_come_compressed_when_asked() {
    let app = spawn_app().await;
    create_fence(&app, &polygon("yard", [10.4, 10.4, 10.6, 10.6])).await;
    let plain = app.get(Z10).await;
    assert_eq!(plain.status(), 200);
    let etag = plain.headers()["etag"].to_str().expect("etag").to_owned();
    assert!(
        etag.starts_with('"') && etag.ends_with('"'),
        "a strong validator: {etag}"
    );
    assert_eq!(plain.headers()["cache-control"], "public, no-cache");
    assert!(plain.headers().get("content-encoding").is_none());
    let mvt = plain.bytes().await.expect("bytes");

    let revalidated = app.get_with(Z10, "if-none-match", &etag).await;
    assert_eq!(revalidated.status(), 304);
    assert_eq!(revalidated.headers()["etag"], etag.as_str());
    // If-None-Match compares weakly (RFC 9110): a tag a proxy marked weak still matches.
    let weak = app
        .get_with(Z10, "if-none-match", &format!("\"other\", W/{etag}"))
        .await;
    assert_eq!(weak.status(), 304);

    let zipped = app.get_with(Z10, "accept-encoding", "gzip").await;
    assert_eq!(zipped.headers()["content-encoding"], "gzip");
    assert_eq!(zipped.headers()["vary"], "accept-encoding");
    // Each coding is its own representation, with its own strong validator.
    let tag = etag.trim_end_matches('"');
    assert_eq!(zipped.headers()["etag"], format!("{tag}-gzip\"").as_str());
    let mut unzipped = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(zipped.bytes().await.expect("bytes").as_ref()),
        &mut unzipped,
    )
    .expect("gzip");
    assert_eq!(unzipped, mvt.as_ref(), "the same tile, compressed");
    let refused = app.get_with(Z10, "accept-encoding", "gzip;q=0").await;
    assert!(refused.headers().get("content-encoding").is_none());
    // Browsers accept brotli too, and get it: the smallest, kept with the tile.
    let brotli = app
        .get_with(Z10, "accept-encoding", "gzip, deflate, br, zstd")
        .await;
    assert_eq!(brotli.headers()["content-encoding"], "br");
    let brotli_tag = format!("{tag}-br\"");
    assert_eq!(brotli.headers()["etag"], brotli_tag.as_str());
    // A copy in any coding is current: 304, with the validator of the coding asked for now.
    let revalidated = app.get_with(Z10, "if-none-match", &brotli_tag).await;
    assert_eq!(revalidated.status(), 304);
    assert_eq!(revalidated.headers()["etag"], etag.as_str());
    let mut unbrotlied = Vec::new();
    brotli::BrotliDecompress(
        &mut brotli.bytes().await.expect("bytes").as_ref(),
        &mut unbrotlied,
    )
    .expect("brotli");
    assert_eq!(unbrotlied, mvt.as_ref(), "the same tile, compressed");
    // A client that takes brotli only gets it; one that refuses every coding gets a 406.
    let brotli_only = app.get_with(Z10, "accept-encoding", "br, identity;q=0").await;
    assert_eq!(brotli_only.status(), 200);
    assert_eq!(brotli_only.headers()["content-encoding"], "br");
    let refused_all = app.get_with(Z10, "accept-encoding", "identity;q=0").await;
    assert_eq!(refused_all.headers()["vary"], "accept-encoding");
    let refused_all = json_with_status(refused_all, 406).await;
    assert_eq!(refused_all["error"]["code"], "not_acceptable");

    // Another write changes the tile and its validator.
    replace_fence(&app, &polygon("yard", [10.3, 10.3, 10.7, 10.7])).await;
    let changed = app.get_with(Z10, "if-none-match", &etag).await;
    assert_eq!(changed.status(), 200);
    assert_ne!(changed.headers()["etag"], etag.as_str());
    app.stop().await;
}

#[tokio::test]
async fn fence_writes_are_announced_on_the_tiles_socket_with_their_extents() {
    let app = spawn_app().await;
    let mut socket = WsClient::connect(&app, "/ws/tiles").await;
    create_fence(&app, &yard(10.4)).await;
    let created = socket.json().await;
    assert_eq!(created["type"], "changed");
    assert_eq!(created["layer"], "fences");
    assert_eq!(created["bboxes"], json!([[10.4, 10.4, 10.6, 10.6]]));
    replace_fence(&app, &yard(20.0)).await;
    let moved = socket.json().await;
    let mut boxes: Vec<Vec<f64>> = serde_json::from_value(moved["bboxes"].clone()).expect("boxes");
    boxes.sort_by(|a, b| a[0].total_cmp(&b[0]));
    assert_eq!(
        boxes,
        [vec![10.4, 10.4, 10.6, 10.6], vec![20.0, 10.4, 20.2, 10.6]],
        "old and new extents"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_catalog_and_tilejson_lead_a_client_to_working_tile_urls() {
    let app = spawn_with(|c| {
        c.tokens = geotrack::auth::TokensSetting::Compact("map-token-000001=read".into());
    })
    .await;
    let read = |path: &str| {
        app.request(Method::GET, path)
            .query_token("map-token-000001")
            .send()
    };
    let catalog = json_with_status(read("/tiles").await, 200).await;
    for layer in ["fences", "positions"] {
        assert_eq!(
            catalog["tiles"][layer]["content_type"],
            "application/vnd.mapbox-vector-tile"
        );
    }
    let url = catalog["tiles"]["fences"]["tilejson"]
        .as_str()
        .expect("tilejson url")
        .to_owned();
    assert_eq!(url, app.url("/tiles/fences?token=map-token-000001"));
    let reply = app.request_url(Method::GET, &url).send().await;
    assert_eq!(reply.headers()["cache-control"], "public, no-cache");
    let etag = reply.headers()["etag"].to_str().expect("etag").to_owned();
    let tilejson: Value = reply.json().await.expect("json");
    let revalidated = app
        .request_url(Method::GET, &url)
        .header("if-none-match", &format!("W/{etag}"))
        .send()
        .await;
    assert_eq!(revalidated.status(), 304, "the TileJSON is unchanged");
    assert_eq!(revalidated.headers()["etag"], etag.as_str());
    assert_eq!(tilejson["tilejson"], "3.0.0");
    assert_eq!(tilejson["vector_layers"][0]["id"], "fences");
    assert_eq!(tilejson["vector_layers"][0]["fields"]["name"], "String");
    assert_eq!(
        (tilejson["minzoom"].as_u64(), tilejson["maxzoom"].as_u64()),
        (Some(0), Some(22))
    );
    let template = tilejson["tiles"][0].as_str().expect("template");
    let tile_url = template
        .replace("{z}", "3")
        .replace("{x}", "4")
        .replace("{y}", "3");
    let reply = app.request_url(Method::GET, &tile_url).send().await;
    assert_eq!(reply.status(), 204, "{tile_url}: a real, empty tile");
    assert_eq!(read("/tiles/roads").await.status(), 404);
    assert_eq!(app.get("/tiles").await.status(), 401);
    app.stop().await;
}

/// Builds a tile straight from the database, bypassing the cache.
async fn fresh(app: &TestApp, source: tiles::Source, [z, x, y]: [i32; 3]) -> Vec<u8> {
    let max_features = tiles::TilesConfig::default().max_features;
    sqlx::query_scalar(&source.sql("fences", max_features))
        .bind(z)
        .bind(x)
        .bind(y)
        .fetch_one(&app.db)
        .await
        .expect("tile")
}

#[tokio::test]
async fn after_random_fence_writes_every_served_tile_equals_a_fresh_build() {
    let app = spawn_app().await;
    let mut rng = tools::simulate::Rng::new(11);
    // Tiles at several zooms around (10.5, 10.5), where the fences come and go.
    let tiles: Vec<[i32; 3]> = vec![
        [4, 8, 7],
        [7, 67, 60],
        [9, 270, 240],
        [10, 541, 481],
        [10, 540, 481],
        [12, 2165, 1924],
    ];
    for step in 0..40 {
        let id = format!("f{}", (rng.unit() * 6.0) as u32);
        if rng.unit() < 0.2 {
            let _ = app.delete(&format!("/api/v1/fences/{id}")).await;
        } else {
            let (lon, lat) = (10.0 + rng.unit(), 10.0 + rng.unit());
            let size = 0.01 + rng.unit() * 0.3;
            let fence = named(
                polygon(&id, [lon, lat, lon + size, lat + size]),
                &format!("step {step}"),
            );
            let put = app
                .send_json(Method::PUT, &format!("/api/v1/fences/{id}"), &fence)
                .await;
            assert!(put.status().is_success(), "PUT answered {}", put.status());
        }
        for [z, x, y] in &tiles {
            let reply = app.get(&format!("/tiles/fences/{z}/{x}/{y}")).await;
            let served = match reply.status().as_u16() {
                204 => Vec::new(),
                200 => reply.bytes().await.expect("bytes").to_vec(),
                other => panic!("status {other}"),
            };
            assert_eq!(
                served,
                fresh(&app, tiles::Source::Fences, [*z, *x, *y]).await,
                "step {step}, tile {z}/{x}/{y}"
            );
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn the_default_style_points_its_sources_at_this_server_with_the_token() {
    let app = spawn_app().await;
    let style = app
        .request(Method::GET, "/styles/default.json")
        .query_token("abc\"def")
        .send()
        .await;
    let etag = style.headers()["etag"].to_str().expect("etag").to_owned();
    let style = json_with_status(style, 200).await;
    assert_eq!(style["version"], 8);
    let revalidated = app
        .request(Method::GET, "/styles/default.json")
        .query_token("abc\"def")
        .header("if-none-match", &etag)
        .send()
        .await;
    assert_eq!(revalidated.status(), 304);
    let other_token = app
        .request(Method::GET, "/styles/default.json")
        .query_token("other")
        .header("if-none-match", &etag)
        .send()
        .await;
    assert_eq!(
        other_token.status(),
        200,
        "another token's style is another document"
    );
    assert_eq!(
        style["sources"]["fences"]["url"],
        app.url("/tiles/fences?token=abc%22def")
    );
    assert_eq!(
        style["sources"]["countries"]["url"],
        app.url("/tiles/countries,country_labels?token=abc%22def")
    );
    let layers: Vec<&str> = style["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .filter_map(|l| l["id"].as_str())
        .collect();
    assert!(
        ["fences", "positions", "land", "tracks"]
            .iter()
            .all(|l| layers.contains(l)),
        "{layers:?}"
    );
    // Every source URL it names is served.
    for source in ["countries", "fences", "positions", "tracks"] {
        let url = style["sources"][source]["url"].as_str();
        let reply = app.request_url(Method::GET, url.expect("url")).send().await;
        assert_eq!(reply.status(), 200, "{url:?}");
    }
    let unknown = json_with_status(app.get("/styles/nope.json").await, 404).await;
    assert_eq!(unknown["error"]["code"], "unknown_style");
    app.stop().await;
}

#[tokio::test]
async fn several_layers_come_in_one_tile() {
    let app = spawn_app().await;
    create_fence(&app, &named(polygon("yard", [10.4, 10.4, 10.6, 10.6]), "Yard")).await;
    json_with_status(app.post_json(&fix("truck", 1, 10.5, 10.5)).await, 202).await;
    let (status, decoded) = tile(&app, "/tiles/fences,positions/10/541/481.mvt").await;
    assert_eq!(status, 200);
    let decoded = decoded.expect("tile");
    assert_eq!(decoded.keys().collect::<Vec<_>>(), ["fences", "positions"]);
    assert_eq!(names(Some(&decoded), "fences"), ["Yard"]);
    // Joined tiles are compressed as they are joined, in the coding the client prefers.
    let plain = app.get("/tiles/fences,positions/10/541/481").await;
    let plain = plain.bytes().await.expect("bytes");
    for (accept, coding) in [("gzip, deflate, br, zstd", "br"), ("gzip", "gzip")] {
        let reply = app
            .get_with("/tiles/fences,positions/10/541/481", "accept-encoding", accept)
            .await;
        assert_eq!(reply.headers()["content-encoding"], coding);
        let body = reply.bytes().await.expect("bytes");
        let mut decoded = Vec::new();
        if coding == "br" {
            brotli::BrotliDecompress(&mut body.as_ref(), &mut decoded).expect("brotli");
        } else {
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(body.as_ref()), &mut decoded)
                .expect("gzip");
        }
        assert_eq!(decoded, plain.as_ref(), "{coding}");
    }
    let reply = app.get("/tiles/fences,positions/10/541/481").await;
    let etag = reply.headers()["etag"].to_str().expect("etag").to_owned();
    assert_eq!(
        reply.headers()["cache-control"],
        "public, max-age=1",
        "positions set the pace"
    );
    assert_eq!(
        app.get_with("/tiles/fences,positions/10/541/481", "if-none-match", &etag)
            .await
            .status(),
        304
    );
    assert_eq!(tile(&app, "/tiles/fences,positions/3/0/0").await.0, 204);
    assert_eq!(app.get("/tiles/fences,roads/10/541/481").await.status(), 404);
    app.stop().await;
}
