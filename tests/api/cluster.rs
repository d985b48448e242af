//! Cluster mode: three `geotrack serve` processes against one database and the local NATS
//! (a prefix of their own, deleted at the end). Devices post through every node, as behind a
//! round-robin load balancer that retries another node when one fails; nodes are killed
//! (SIGKILL), stopped gracefully (SIGTERM: drain) and paused past their lease (SIGSTOP). After
//! each story every acknowledged fix is stored once, every alert the fixes call for exists
//! once, in order, and every node's subscribers saw exactly the alerts table (those of a node
//! that went away resume on another node with their cursor).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;

use crate::helpers::{
    NATS_URL, Next, ServerProcess, WsClient, admin_exec, check_crossing_alerts, cluster_prefix, database_url,
    destroy_cluster, fix_at, in_and_out, new_database, poll_until, square,
};

const NODES: usize = 3;
const PARTITIONS: u16 = 4;
const LEASE_S: u64 = 3;
const DEVICES: usize = 6;
const FIXES: usize = 30;

/// Three nodes on a fresh database, and what the test needs to look at them.
struct Cluster {
    db_name: String,
    prefix: String,
    db: PgPool,
    nodes: Vec<Option<ServerProcess>>,
    client: reqwest::Client,
}

impl Cluster {
    async fn start(test: &str) -> Self {
        let db_name = new_database().await;
        let prefix = cluster_prefix(test);
        // The first node migrates the database; the others start once it is ready.
        let mut nodes = vec![Some(ServerProcess::start(&db_name, &node_env(&prefix, 0)).await)];
        for n in 1..NODES {
            nodes.push(Some(ServerProcess::start(&db_name, &node_env(&prefix, n)).await));
        }
        let db = PgPool::connect(&database_url(&db_name)).await.expect("pool");
        let cluster = Self {
            db_name,
            prefix,
            db,
            nodes,
            client: reqwest::Client::new(),
        };
        let spread = poll_until(Duration::from_secs(20), Duration::from_millis(100), async || {
            let owners = cluster.owners().await;
            owners.len() == usize::from(PARTITIONS) && distinct(&owners) == NODES
        })
        .await;
        assert!(
            spread,
            "partitions never spread over the nodes: {:?}",
            cluster.owners().await
        );
        cluster
    }

    fn node(&self, n: usize) -> &ServerProcess {
        self.nodes[n].as_ref().expect("the node runs")
    }

    /// The URLs of the nodes still running, for the load balancer of [`drive`].
    fn urls(&self) -> Vec<String> {
        self.nodes.iter().flatten().map(|node| node.url("")).collect()
    }

    /// (partition, owner node) of every claimed partition.
    async fn owners(&self) -> Vec<(i16, String)> {
        sqlx::query_as("SELECT partition, node FROM partition_owners ORDER BY partition")
            .fetch_all(&self.db)
            .await
            .expect("owners")
    }

    /// Waits (20 s at most) until every partition is owned by one of `nodes`; how long it took.
    async fn wait_for_owners(&self, nodes: &[&str]) -> Duration {
        let started = Instant::now();
        let moved = poll_until(Duration::from_secs(20), Duration::from_millis(20), async || {
            let owners = self.owners().await;
            owners.iter().all(|(_, node)| nodes.contains(&node.as_str()))
        })
        .await;
        assert!(
            moved,
            "partitions never all on {nodes:?}: {:?}",
            self.owners().await
        );
        started.elapsed()
    }

    /// Creates the fence every device drives through and waits until every node has it.
    async fn create_fence(&self) {
        let created = self
            .client
            .post(self.node(0).url("/api/v1/fences"))
            .json(&square("a", 10.0025, 10.0, 0.0025))
            .send()
            .await
            .expect("sent");
        assert_eq!(created.status(), 201);
        for node in self.nodes.iter().flatten() {
            let listed = poll_until(Duration::from_secs(10), Duration::from_millis(50), async || {
                let reply = self.client.get(node.url("/api/v1/fences/a")).send().await;
                reply.is_ok_and(|r| r.status() == 200)
            })
            .await;
            assert!(listed, "node on port {} never loaded the fence", node.port);
        }
    }

    /// Subscribes to every node's alerts from the start.
    async fn subscribe_all(&self) -> Vec<tokio::task::JoinHandle<Vec<Value>>> {
        let mut collectors = Vec::new();
        for node in self.nodes.iter().flatten() {
            let socket = WsClient::try_connect_url(&node.ws_url("/ws/alerts?since=0"))
                .await
                .expect("subscribed");
            collectors.push(tokio::spawn(collect(socket, DEVICES * FIXES)));
        }
        collectors
    }

    /// Waits until the alerts table holds every alert the drive calls for and checks it: per
    /// device, one enter at every even fix and one exit at every odd one, in order, each once.
    /// Also checks every fix is stored once. Returns the alert ids in order.
    async fn check_stored(&self, start: DateTime<Utc>) -> Vec<i64> {
        let expected_total = DEVICES * FIXES;
        // Waits, then lets the check say what is missing, if anything.
        poll_until(Duration::from_secs(30), Duration::from_millis(100), async || {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM alerts")
                .fetch_one(&self.db)
                .await
                .expect("count");
            n >= expected_total as i64
        })
        .await;
        let table = check_crossing_alerts(&self.db, DEVICES, FIXES, start).await;
        let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM positions")
            .fetch_one(&self.db)
            .await
            .expect("count");
        assert_eq!(
            stored, expected_total as i64,
            "every acknowledged fix stored once"
        );
        table
    }

    /// Kills what is left and deletes the database and the NATS stream and buckets.
    async fn stop(mut self) {
        for node in self.nodes.iter_mut().filter_map(Option::take) {
            node.kill().await;
        }
        self.db.close().await;
        admin_exec(&format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            self.db_name
        ))
        .await;
        destroy_cluster(&self.prefix, PARTITIONS).await;
    }
}

fn node_env(prefix: &str, n: usize) -> Vec<(&'static str, String)> {
    vec![
        ("GEOTRACK_CLUSTER__NATS_URL", NATS_URL.into()),
        ("GEOTRACK_CLUSTER__NODE", format!("n{n}")),
        ("GEOTRACK_CLUSTER__PREFIX", prefix.into()),
        ("GEOTRACK_CLUSTER__PARTITIONS", PARTITIONS.to_string()),
        ("GEOTRACK_CLUSTER__LEASE_S", LEASE_S.to_string()),
        ("GEOTRACK_SHUTDOWN_TIMEOUT_S", "5".into()),
    ]
}

fn distinct(owners: &[(i16, String)]) -> usize {
    let mut nodes: Vec<&str> = owners.iter().map(|(_, n)| n.as_str()).collect();
    nodes.sort_unstable();
    nodes.dedup();
    nodes.len()
}

/// The fix `i` of a device: inside the fence at even `i`, outside at odd `i`, one second apart.
fn fix(device: usize, i: usize, start: DateTime<Utc>) -> Value {
    let (lon, lat) = in_and_out(i);
    fix_at(
        &format!("dev-{device}"),
        start + chrono::Duration::seconds(i as i64),
        lon,
        lat,
    )
}

/// Posts every fix of a device, one request each, spread over `urls` like a round-robin load
/// balancer that tries the next node when one fails; returns once all are acknowledged.
async fn drive(urls: Vec<String>, device: usize, start: DateTime<Utc>, acks: Arc<AtomicUsize>) {
    let client = reqwest::Client::new();
    for i in 0..FIXES {
        let mut attempt = 0;
        loop {
            let url = &urls[(device + i + attempt) % urls.len()];
            let sent = client
                .post(format!("{url}/api/v1/positions"))
                .json(&fix(device, i, start))
                .timeout(Duration::from_secs(5))
                .send()
                .await;
            if sent.is_ok_and(|reply| reply.status() == 202) {
                acks.fetch_add(1, Ordering::Relaxed);
                break;
            }
            attempt += 1;
            assert!(attempt < 200, "dev-{device} fix {i} never acknowledged");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Collects alerts until `n` arrived or the socket closed.
async fn collect(mut socket: WsClient, n: usize) -> Vec<Value> {
    let mut alerts = Vec::new();
    while alerts.len() < n {
        match socket.next().await {
            Next::Json(m) if m["type"] == "alert" => alerts.push(m),
            Next::Json(_) => {}
            Next::Closed(_) => break,
        }
    }
    alerts
}

fn ids(alerts: &[Value]) -> Vec<i64> {
    alerts.iter().map(|a| a["id"].as_i64().expect("id")).collect()
}

/// A subscriber whose node went away resumes on another node with its cursor; what it saw
/// before and after must be the table, each alert once.
async fn resume_elsewhere(node: &ServerProcess, seen: Vec<Value>, table: &[i64]) {
    let cursor = seen.last().map_or(0, |a| a["id"].as_i64().expect("id"));
    let mut socket = WsClient::try_connect_url(&node.ws_url(&format!("/ws/alerts?since={cursor}")))
        .await
        .expect("resubscribed");
    let mut all = seen;
    all.extend(socket.until_live().await);
    assert_eq!(
        ids(&all),
        table,
        "resumed with its cursor: the table, each alert once"
    );
}

async fn wait_for_acks(acks: &AtomicUsize, n: usize) {
    let reached = poll_until(Duration::from_secs(30), Duration::from_millis(2), async || {
        acks.load(Ordering::Relaxed) >= n
    })
    .await;
    assert!(
        reached,
        "only {} of {n} fixes acknowledged",
        acks.load(Ordering::Relaxed)
    );
}

#[tokio::test]
async fn a_killed_node_and_a_drained_one_lose_and_double_nothing() {
    let mut cluster = Cluster::start("kill-drain").await;
    cluster.create_fence().await;
    let subscribers = cluster.subscribe_all().await;
    let start = DateTime::from_timestamp(Utc::now().timestamp() - FIXES as i64 - 5, 0).expect("time");
    let acks = Arc::new(AtomicUsize::new(0));
    let drives: Vec<_> = (0..DEVICES)
        .map(|d| tokio::spawn(drive(cluster.urls(), d, start, acks.clone())))
        .collect();

    wait_for_acks(&acks, 40).await;
    let killed = cluster.nodes[2].take().expect("node 2");
    killed.kill().await;
    let taken = cluster.wait_for_owners(&["n0", "n1"]).await;
    println!("n2's partitions taken over {taken:?} after SIGKILL (lease {LEASE_S} s)");
    assert!(
        taken < Duration::from_secs(LEASE_S * 2 + 2),
        "takeover took {taken:?}"
    );

    wait_for_acks(&acks, 100).await;
    let drained = cluster.nodes[1].take().expect("node 1");
    drained.signal("TERM").await;
    let handover = cluster.wait_for_owners(&["n0"]).await;
    println!("n1's partitions on n0 {handover:?} after SIGTERM of n1 (lease {LEASE_S} s)");
    assert!(
        handover < Duration::from_secs(LEASE_S),
        "a drain hands over before the lease could expire, not after: {handover:?}"
    );
    assert!(
        drained.exited(Duration::from_secs(15)).await,
        "the drained node exits cleanly"
    );

    for d in drives {
        d.await.expect("drive");
    }
    let table = cluster.check_stored(start).await;
    let mut subscribers = subscribers.into_iter();
    let survivor = subscribers.next().expect("n0").await.expect("collector");
    assert_eq!(
        ids(&survivor),
        table,
        "n0's subscriber saw the table, each alert once"
    );
    for gone in subscribers {
        let seen = gone.await.expect("collector");
        resume_elsewhere(cluster.node(0), seen, &table).await;
    }
    cluster.stop().await;
}

#[tokio::test]
async fn a_paused_owner_commits_nothing_once_its_lease_is_taken() {
    let cluster = Cluster::start("pause").await;
    cluster.create_fence().await;
    let paused = cluster.node(1);
    let before: Vec<(i16, String)> = cluster.owners().await;
    let paused_partitions: Vec<i16> = before
        .iter()
        .filter(|(_, node)| node == "n1")
        .map(|(p, _)| *p)
        .collect();
    paused.signal("STOP").await;
    let start = DateTime::from_timestamp(Utc::now().timestamp() - FIXES as i64 - 5, 0).expect("time");
    let acks = Arc::new(AtomicUsize::new(0));
    // The live nodes take the load; the paused node's partitions move after its lease.
    let urls = vec![cluster.node(0).url(""), cluster.node(2).url("")];
    let drives: Vec<_> = (0..DEVICES)
        .map(|d| tokio::spawn(drive(urls.clone(), d, start, acks.clone())))
        .collect();
    let taken = poll_until(Duration::from_secs(20), Duration::from_millis(50), async || {
        let owners = cluster.owners().await;
        owners.iter().all(|(_, node)| node != "n1")
    })
    .await;
    assert!(taken, "n1's partitions {paused_partitions:?} never taken over");
    wait_for_acks(&acks, 100).await;
    // Back from the pause, it must notice it lost its leases before committing anything.
    paused.signal("CONT").await;
    for d in drives {
        d.await.expect("drive");
    }
    let table = cluster.check_stored(start).await;
    // Every node, the paused one included, streams the same alerts in the same order.
    for node in cluster.nodes.iter().flatten() {
        let mut socket = WsClient::try_connect_url(&node.ws_url("/ws/alerts?since=0"))
            .await
            .expect("subscribed");
        assert_eq!(
            ids(&socket.until_live().await),
            table,
            "node on port {}",
            node.port
        );
    }
    cluster.stop().await;
}
