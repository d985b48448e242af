//! Fence versions: `GET` gives an `ETag`, and a write with `If-Match` succeeds only on that
//! version (412 otherwise, nothing written), so two editors cannot silently overwrite each
//! other, even at the same moment and through two nodes; `If-None-Match: *` creates only.

use reqwest::Method;
use serde_json::Value;

use crate::helpers::{TestApp, circle, json_with_status, spawn_app, spawn_on, square};

async fn put(app: &TestApp, id: &str, fence: &Value, condition: Option<(&str, &str)>) -> reqwest::Response {
    let mut request = app
        .request(Method::PUT, &format!("/api/v1/fences/{id}"))
        .json(fence);
    if let Some((name, value)) = condition {
        request = request.header(name, value);
    }
    request.send().await
}

fn etag(reply: &reqwest::Response) -> String {
    reply.headers()["etag"].to_str().expect("ascii").to_owned()
}

#[tokio::test]
async fn a_write_with_a_stale_etag_is_refused_and_changes_nothing() {
    let app = spawn_app().await;
    let created = app
        .send_json(
            Method::POST,
            "/api/v1/fences",
            &circle("depot", 2.35, 48.85, 100.0),
        )
        .await;
    assert_eq!(created.status(), 201);
    let first = etag(&created);
    let read = app.get("/api/v1/fences/depot").await;
    assert_eq!(etag(&read), first, "the version written is the version read");
    let unchanged = app
        .get_with("/api/v1/fences/depot", "if-none-match", &first)
        .await;
    assert_eq!(unchanged.status(), 304);

    // Editor A saves with the version it read; editor B, holding the same, is refused.
    let saved = put(
        &app,
        "depot",
        &circle("depot", 2.35, 48.85, 150.0),
        Some(("if-match", &first)),
    )
    .await;
    assert_eq!(saved.status(), 200);
    let second = etag(&saved);
    assert_ne!(second, first);
    let stale = put(
        &app,
        "depot",
        &circle("depot", 2.35, 48.85, 999.0),
        Some(("if-match", &first)),
    )
    .await;
    let refusal = json_with_status(stale, 412).await;
    assert_eq!(refusal["error"]["code"], "precondition_failed", "{refusal}");
    assert_eq!(
        refusal["etag"],
        second.as_str(),
        "the refusal names the current version"
    );
    let stored = json_with_status(app.get("/api/v1/fences/depot").await, 200).await;
    assert_eq!(
        stored["properties"]["radius_m"], 150.0,
        "A's write stands: {stored}"
    );
    let deleted = app
        .request(Method::DELETE, "/api/v1/fences/depot")
        .header("if-match", &first)
        .send()
        .await;
    json_with_status(deleted, 412).await;

    let current = etag(&app.get("/api/v1/fences/depot").await);
    let deleted = app
        .request(Method::DELETE, "/api/v1/fences/depot")
        .header("if-match", &current)
        .send()
        .await;
    json_with_status(deleted, 200).await;
    let gone = app
        .request(Method::DELETE, "/api/v1/fences/depot")
        .header("if-match", &current)
        .send()
        .await;
    json_with_status(gone, 404).await;
    app.stop().await;
}

#[tokio::test]
async fn if_match_compares_strongly_and_if_none_match_star_only_creates() {
    let app = spawn_app().await;
    let created = app
        .send_json(
            Method::POST,
            "/api/v1/fences",
            &circle("depot", 2.35, 48.85, 100.0),
        )
        .await;
    let second = etag(&created);
    // A weak tag never satisfies If-Match (strong comparison); `*` means "any version".
    let weak = put(
        &app,
        "depot",
        &circle("depot", 2.35, 48.85, 200.0),
        Some(("if-match", &format!("W/{second}"))),
    )
    .await;
    json_with_status(weak, 412).await;
    let any = put(
        &app,
        "depot",
        &circle("depot", 2.35, 48.85, 200.0),
        Some(("if-match", "\"x\", *")),
    )
    .await;
    assert_eq!(any.status(), 200);
    // If-Match on a fence that does not exist, and If-None-Match: * on one that does: 412.
    let missing = put(
        &app,
        "nowhere",
        &square("nowhere", 3.0, 48.0, 0.01),
        Some(("if-match", "*")),
    )
    .await;
    json_with_status(missing, 412).await;
    let again = put(
        &app,
        "depot",
        &circle("depot", 2.35, 48.85, 1.0),
        Some(("if-none-match", "*")),
    )
    .await;
    json_with_status(again, 412).await;
    let fresh = put(
        &app,
        "yard",
        &circle("yard", 2.36, 48.86, 50.0),
        Some(("if-none-match", "*")),
    )
    .await;
    assert_eq!(fresh.status(), 201);

    app.stop().await;
}

#[tokio::test]
async fn two_nodes_writing_the_same_version_at_once_let_exactly_one_through() {
    let one = spawn_app().await;
    let mut two = spawn_on(one.db_name.clone(), |_| {}).await;
    let created = one
        .send_json(Method::POST, "/api/v1/fences", &square("zone", 2.0, 48.0, 0.01))
        .await;
    let version = etag(&created);
    for round in 0..5 {
        let version = if round == 0 {
            version.clone()
        } else {
            etag(&one.get("/api/v1/fences/zone").await)
        };
        let (first, second) = (
            square("zone", 2.0, 48.0, 0.02 + f64::from(round)),
            square("zone", 2.0, 48.0, 0.03 + f64::from(round)),
        );
        let (a, b) = tokio::join!(
            put(&one, "zone", &first, Some(("if-match", &version))),
            put(&two, "zone", &second, Some(("if-match", &version))),
        );
        let mut statuses = [a.status().as_u16(), b.status().as_u16()];
        statuses.sort_unstable();
        assert_eq!(
            statuses,
            [200, 412],
            "round {round}: exactly one write of a version"
        );
    }
    two.shutdown().await;
    one.stop().await;
}

/// Whether a `PUT` created or replaced a fence is the database's answer, not the node's index:
/// a fence another node wrote, whose announcement has not reached this node yet, is replaced
/// (200), not created (201).
#[tokio::test]
async fn a_put_over_a_fence_this_node_has_not_heard_of_yet_replaces_it() {
    let app = spawn_app().await;
    let created = app
        .send_json(Method::POST, "/api/v1/fences", &square("heard", 2.0, 48.0, 0.01))
        .await;
    assert_eq!(created.status(), 201);
    // Another node's write that was not announced: a copy of the row under another id.
    sqlx::query(
        "INSERT INTO fences
         SELECT (jsonb_populate_record(f, jsonb_build_object('id', 'unheard', 'definition',
                 CASE WHEN f.definition ? 'id' THEN jsonb_set(f.definition, '{id}', '\"unheard\"')
                      ELSE f.definition END))).*
         FROM fences f WHERE id = 'heard'",
    )
    .execute(&app.db)
    .await
    .expect("a fence written behind the node's back");
    let stored = app.get("/api/v1/fences/unheard").await;
    assert_eq!(stored.status(), 200, "reads go to the database");
    let version = etag(&stored);
    let replaced = put(
        &app,
        "unheard",
        &square("unheard", 2.0, 48.0, 0.02),
        Some(("if-match", &version)),
    )
    .await;
    assert_eq!(replaced.status(), 200, "it was stored: replaced, not created");
    app.stop().await;
}
