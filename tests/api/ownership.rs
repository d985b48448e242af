//! Partition ownership in PostgreSQL (cluster mode): a claim with a newer epoch takes a
//! partition, a stale one is refused, writes fenced by a deposed epoch are refused (through
//! the real pipeline too), and a log created again starts its stored position over.

use chrono::Utc;
use tracker::ownership::{self, Claimant, Fence};
use tracker::{Fix, SubmitError};

use crate::helpers::spawn_app;

fn claimant(epoch: u64, log_id: &str) -> Claimant<'_> {
    Claimant {
        epoch,
        node: "n1",
        log_id,
    }
}

/// A fix of a device that the test server's pipeline (2 shards) writes on shard 0.
fn fix_of_shard_0() -> Fix {
    let device = (0..1_000)
        .map(|i| format!("dev-{i}"))
        .find(|d| tracker::shard::shard_of(d, 2) == 0)
        .expect("some device");
    let ts = Utc::now() - chrono::Duration::seconds(10);
    Fix {
        device,
        ts,
        lon: 2.35,
        lat: 48.85,
        speed_mps: None,
        heading_deg: None,
        accuracy_m: None,
        altitude_m: None,
        battery: None,
        attrs: None,
        received_at: Utc::now(),
    }
}

#[tokio::test]
async fn newer_epochs_take_partitions_and_deposed_ones_write_nothing() {
    let app = spawn_app().await;
    let pool = &app.db;
    let stored = |seq: i64| async move {
        let s: i64 = sqlx::query_scalar("SELECT stored_seq FROM partition_owners WHERE partition = 0")
            .fetch_one(pool)
            .await
            .expect("row");
        assert_eq!(s, seq);
    };
    assert_eq!(
        ownership::claim(pool, 0, claimant(10, "log-1"))
            .await
            .expect("claim"),
        Some(0)
    );

    // The owner's write stores the fix and its log position in one transaction.
    let pipeline = &app.state.ingest.pipeline;
    let fence = Fence {
        epoch: 10,
        stored_seq: Some(42),
    };
    let submitted = pipeline
        .submit_fenced(vec![fix_of_shard_0()], Some(fence))
        .await
        .expect("stored");
    assert_eq!(submitted.accepted, 1);
    stored(42).await;
    assert_eq!(
        ownership::claim(pool, 0, claimant(10, "log-1"))
            .await
            .expect("claim"),
        Some(42),
        "the same lease again"
    );

    // A newer owner takes the partition where the last commit left it; the deposed one can
    // write nothing more, through the pipeline or directly.
    assert_eq!(
        ownership::claim(pool, 0, claimant(11, "log-1"))
            .await
            .expect("claim"),
        Some(42)
    );
    let mut late = fix_of_shard_0();
    late.ts = Utc::now() - chrono::Duration::seconds(5);
    let refused = pipeline
        .submit_fenced(
            vec![late],
            Some(Fence {
                epoch: 10,
                stored_seq: Some(50),
            }),
        )
        .await;
    assert!(
        matches!(&refused, Err(SubmitError::Unavailable(e)) if ownership::is_deposed(e)),
        "{refused:?}"
    );
    assert_eq!(app.stored().await, 1, "the deposed owner's fix was not stored");
    stored(42).await;
    let direct = sqlx::query("SELECT fence_partition(0::int2, 10, NULL)")
        .execute(pool)
        .await;
    assert!(direct.as_ref().is_err_and(ownership::is_deposed), "{direct:?}");

    // A stale lease cannot claim; in a cluster created again (new log, new lease bucket: its
    // epochs start over) the first claim takes the partition and reads the new log from its
    // start, and epochs count again from there.
    let claim = async |epoch, log_id| {
        ownership::claim(pool, 0, claimant(epoch, log_id))
            .await
            .expect("claim")
    };
    assert_eq!(claim(9, "log-1").await, None);
    assert_eq!(claim(3, "log-2").await, Some(0));
    assert_eq!(claim(2, "log-2").await, None);
    app.stop().await;
}
