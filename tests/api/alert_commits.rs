//! The alert writer's commits. Its marks: after a COMMIT whose answer was lost, the writer looks
//! its commit up before retrying; the mark must find exactly that commit and its alerts, and
//! nothing for a commit that did not happen. Its fencing (cluster mode): steps of an epoch that
//! no longer owns its partition are left out, the others committed.

use std::sync::Arc;

use alerts::Changes;
use alerts::model::{AlertKind, Event, NewAlert};
use alerts::store::{self, Mark, Merged};
use tracker::ownership::{self, Claimant};

use crate::helpers::spawn_app;

fn offline(device: &str) -> NewAlert {
    NewAlert {
        event: Event {
            device: device.into(),
            fence: None,
            fence_name: None,
            kind: AlertKind::Offline,
            ts: chrono::Utc::now(),
            position: None,
            speed_mps: None,
            interpolated: false,
            received_at: None,
            proximity: None,
        },
        webhooks: Vec::new(),
    }
}

#[tokio::test]
async fn a_commit_is_found_by_its_mark_with_its_alerts_and_no_other_is() {
    let app = spawn_app().await;
    let mut changes = Changes::new(0, None);
    changes.alerts.extend([offline("a"), offline("b"), offline("c")]);
    let mut merged = Merged::default();
    merged.add(&changes);
    let mark = Mark {
        writer: "writer-1",
        commit_id: 7,
    };
    let stored = store::commit(&app.db, &merged, &[], &[], mark)
        .await
        .expect("commit");

    let found = store::committed(&app.db, mark)
        .await
        .expect("lookup")
        .expect("found");
    let ids = |alerts: &[alerts::Alert]| -> Vec<(i64, String)> {
        alerts.iter().map(|a| (a.id, a.event.device.clone())).collect()
    };
    assert_eq!(ids(&found), ids(&stored), "the commit's own alerts, in id order");
    assert_eq!(found.len(), 3);
    for other in [
        Mark {
            writer: "writer-1",
            commit_id: 8,
        },
        Mark {
            writer: "writer-2",
            commit_id: 7,
        },
    ] {
        assert_eq!(
            store::committed(&app.db, other).await.expect("lookup"),
            None,
            "{other:?}"
        );
    }

    // A later commit of the same writer that stored no alert is found, empty.
    let empty = Mark {
        writer: "writer-1",
        commit_id: 9,
    };
    store::commit(&app.db, &Merged::default(), &[], &[], empty)
        .await
        .expect("commit");
    assert_eq!(
        store::committed(&app.db, empty).await.expect("lookup"),
        Some(Vec::new())
    );
    assert_eq!(
        store::committed(&app.db, mark).await.expect("lookup"),
        None,
        "only the last commit is kept"
    );
    app.stop().await;
}

#[tokio::test]
async fn steps_of_a_deposed_epoch_are_left_out_and_the_rest_committed() {
    let app = spawn_app().await;
    let claimant = Claimant {
        epoch: 5,
        node: "n1",
        log_id: "log",
    };
    ownership::claim(&app.db, 0, claimant)
        .await
        .expect("claim")
        .expect("claimed");
    let step = |epoch: i64, device: &str| {
        let mut changes = Changes::new(0, Some(epoch));
        changes.alerts.push(offline(device));
        changes
    };
    // Committed alone, the deposed epoch's step stores nothing, not even the commit's mark.
    let mut deposed = Merged::default();
    deposed.add(&step(4, "old-owner"));
    let mark = Mark {
        writer: "deposed",
        commit_id: 1,
    };
    let refused = store::commit(&app.db, &deposed, &[(0, 4)], &[], mark)
        .await
        .expect_err("a deposed epoch cannot commit");
    assert!(ownership::is_deposed(&refused), "{refused}");
    assert_eq!(store::committed(&app.db, mark).await.expect("lookup"), None);

    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = alerts::AlertMetrics::register(&mut registry);
    let (sender, changes) = tokio::sync::mpsc::channel(8);
    // Queued together, so they go into one transaction: the deposed step and the current one.
    sender.send(step(4, "old-owner")).await.expect("queued");
    sender.send(step(5, "owner")).await.expect("queued");
    drop(sender);
    let writer = alerts::writer::AlertWriter {
        pool: app.db.clone(),
        changes,
        hub: Arc::new(alerts::LocalHub::new(16)),
        webhooks: Vec::new(),
        deliveries: Arc::new(tokio::sync::Notify::new()),
        metrics: metrics.clone(),
        shutdown: tokio_util::sync::CancellationToken::new(),
        publish: false,
    };
    writer.run().await;
    let devices: Vec<String> = sqlx::query_scalar("SELECT device FROM alerts ORDER BY id")
        .fetch_all(&app.db)
        .await
        .expect("alerts");
    assert_eq!(devices, ["owner"], "only the current owner's step is committed");
    assert_eq!(metrics.deposed_steps.get(), 1);
    app.stop().await;
}
