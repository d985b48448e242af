//! The alert writer's commit marks: after a COMMIT whose answer was lost, the writer looks its
//! commit up before retrying; the mark must find exactly that commit and its alerts, and
//! nothing for a commit that did not happen.

use alerts::Changes;
use alerts::model::{AlertKind, Event, NewAlert};
use alerts::store::{self, Mark, Merged};

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
    let mut tx = app.db.begin().await.expect("tx");
    store::lock_alert_order(&mut tx).await.expect("lock");
    let stored = store::write(&mut tx, &merged, &[]).await.expect("write");
    store::record_mark(&mut tx, mark, &stored).await.expect("mark");
    tx.commit().await.expect("commit");

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
    let mut tx = app.db.begin().await.expect("tx");
    store::record_mark(&mut tx, empty, &[]).await.expect("mark");
    tx.commit().await.expect("commit");
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
