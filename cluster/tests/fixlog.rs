//! The fix log against the local NATS: what is appended is read back by partition, in order,
//! once; a retried request is de-duplicated; reading resumes after a stored sequence; purged
//! messages are gone. Each test uses its own prefix and deletes what it created.

use std::time::Duration;

use chrono::{TimeZone, Utc};
use cluster::fixlog::{FixLog, PartitionReader};
use cluster::nats::Nats;
use cluster::{ClusterConfig, ClusterError};
use tracker::Fix;

async fn connect(test: &str, partitions: u16) -> Nats {
    let config = ClusterConfig {
        nats_url: Some("nats://127.0.0.1:4222".into()),
        node: Some("n1".into()),
        prefix: format!("t-{test}-{}", std::process::id()),
        partitions,
        ..ClusterConfig::default()
    };
    Nats::connect(&config)
        .await
        .expect("the local NATS with JetStream")
}

fn fix(device: &str, second: i64) -> Fix {
    let ts = Utc
        .timestamp_opt(1_700_000_000 + second, 0)
        .single()
        .expect("time");
    Fix {
        device: device.into(),
        ts,
        lon: 2.35,
        lat: 48.85,
        speed_mps: Some(1.5),
        heading_deg: None,
        accuracy_m: None,
        altitude_m: None,
        battery: None,
        attrs: serde_json::json!({"k": "v"}).as_object().cloned(),
        received_at: ts,
    }
}

/// Everything the partition holds after `stored`, read until it stays quiet.
async fn read_all(nats: &Nats, partition: u16, stored: u64) -> (Vec<Fix>, Option<u64>) {
    let mut reader = PartitionReader::open(nats, partition, stored)
        .await
        .expect("open");
    let (mut fixes, mut last) = (Vec::new(), None);
    loop {
        let batch = reader.next_batch(Duration::from_millis(500)).await.expect("read");
        if batch.fixes.is_empty() && batch.last_seq.is_none() {
            return (fixes, last);
        }
        fixes.extend(batch.fixes);
        last = batch.last_seq.or(last);
    }
}

#[tokio::test]
async fn appended_fixes_come_back_once_per_partition_in_order() {
    let nats = connect("order", 4).await;
    let log = FixLog::new(&nats, 100_000);
    // 2,500 fixes of 10 devices: several messages per partition.
    let fixes: Vec<Fix> = (0..2_500).map(|i| fix(&format!("dev-{}", i % 10), i)).collect();
    log.append(&fixes[..1_200]).await.expect("append");
    log.append(&fixes[1_200..]).await.expect("append");
    // The same request again (a client retry): de-duplicated by message id.
    log.append(&fixes[1_200..]).await.expect("append again");

    let mut seen = 0;
    for partition in 0..4 {
        let (read, _) = read_all(&nats, partition, 0).await;
        let expected: Vec<&Fix> = fixes
            .iter()
            .filter(|f| log.partition_of(&f.device) == partition)
            .collect();
        assert_eq!(read.iter().collect::<Vec<_>>(), expected, "partition {partition}");
        seen += read.len();
    }
    assert_eq!(seen, fixes.len());
    nats.destroy().await.expect("clean up");
}

#[tokio::test]
async fn reading_resumes_after_the_stored_sequence_and_purged_messages_are_gone() {
    let nats = connect("resume", 1).await;
    let log = FixLog::new(&nats, 100_000);
    let first: Vec<Fix> = (0..10).map(|i| fix("a", i)).collect();
    let second: Vec<Fix> = (10..20).map(|i| fix("a", i)).collect();
    log.append(&first).await.expect("append");
    let (_, stored) = read_all(&nats, 0, 0).await;
    let stored = stored.expect("a sequence");
    log.append(&second).await.expect("append");

    let (after, _) = read_all(&nats, 0, stored).await;
    assert_eq!(after, second, "resumes after the stored message");

    log.purge_stored(0, stored).await.expect("purge");
    let (all, _) = read_all(&nats, 0, 0).await;
    assert_eq!(all, second, "the stored message was purged, the later one kept");
    nats.destroy().await.expect("clean up");
}

#[tokio::test]
async fn a_node_with_another_partition_count_is_refused() {
    let nats = connect("mismatch", 4).await;
    let config = ClusterConfig {
        nats_url: Some("nats://127.0.0.1:4222".into()),
        prefix: nats.names.prefix().to_owned(),
        partitions: 8,
        ..ClusterConfig::default()
    };
    let refused = Nats::connect(&config).await;
    assert!(
        matches!(&refused, Err(ClusterError::Mismatch(m)) if m.contains("4 partitions")),
        "{refused:?}"
    );
    nats.destroy().await.expect("clean up");
}

#[tokio::test]
async fn an_unreachable_server_is_a_clear_error() {
    let config = ClusterConfig {
        nats_url: Some("nats://127.0.0.1:1".into()),
        ..ClusterConfig::default()
    };
    let error = Nats::connect(&config)
        .await
        .expect_err("nothing listens on port 1");
    assert!(error.to_string().contains("cannot connect"), "{error}");
}
