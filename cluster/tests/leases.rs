//! Partition leases against a real NATS server (`GEOTRACK_TEST_NATS`, by default
//! nats://127.0.0.1:4222): sharing, takeover after a crash, drain, a node joining, and loss of
//! a lease, each test in a cluster of its own (a unique prefix) destroyed at its end.
//!
//! Each node runs with a simulated service that logs every event with its time, and after a
//! `HandOver` stops its "worker" and releases the lease. From that log the tests check that no
//! partition ever had two workers at once and that epochs only grow.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cluster::ClusterConfig;
use cluster::leases::{Lease, LeaseEvent, Leases, owners};
use cluster::nats::Nats;
use futures_util::FutureExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, sleep};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

fn nats_url() -> String {
    std::env::var("GEOTRACK_TEST_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// What a simulated service saw.
#[derive(Debug, Clone, Copy)]
enum Seen {
    Event(LeaseEvent),
    /// The worker stopped after a `HandOver`; `release` comes next.
    Stopped(Lease),
}

#[derive(Debug, Clone)]
struct Record {
    at: Instant,
    node: String,
    seen: Seen,
}

/// One test's cluster: its settings and the log of every node's events.
#[derive(Debug, Clone)]
struct Cluster {
    prefix: String,
    partitions: u16,
    lease_s: u64,
    log: Arc<Mutex<Vec<Record>>>,
}

#[derive(Debug)]
struct Node {
    name: String,
    leases: Leases,
    shutdown: CancellationToken,
}

/// Runs `body` in a fresh cluster, then destroys the cluster, even if `body` panicked.
async fn with_cluster<F, Fut>(test: &str, partitions: u16, lease_s: u64, body: F)
where
    F: FnOnce(Cluster) -> Fut,
    Fut: Future<Output = ()>,
{
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    // The lease task's log lines, in the test's output (shown when it fails).
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("cluster=info")
        .try_init();
    let cluster = Cluster {
        prefix: format!("t-leases-{test}-{:x}", nanos & 0xff_ffff_ffff),
        partitions,
        lease_s,
        log: Arc::default(),
    };
    let admin = cluster.connect("admin", &nats_url()).await;
    let outcome = AssertUnwindSafe(body(cluster)).catch_unwind().await;
    admin.destroy().await.expect("destroy the test cluster");
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

impl Cluster {
    fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_s)
    }

    fn tick(&self) -> Duration {
        self.lease() / 3
    }

    async fn connect(&self, node: &str, url: &str) -> Nats {
        Nats::connect(&ClusterConfig {
            nats_url: Some(url.to_owned()),
            node: Some(node.to_owned()),
            prefix: self.prefix.clone(),
            partitions: self.partitions,
            lease_s: self.lease_s,
            ..ClusterConfig::default()
        })
        .await
        .expect("connect to NATS")
    }

    async fn start(&self, name: &str) -> Node {
        self.start_at(name, &nats_url()).await
    }

    /// Starts a node and its simulated service.
    async fn start_at(&self, name: &str, url: &str) -> Node {
        let nats = self.connect(name, url).await;
        let shutdown = CancellationToken::new();
        let (leases, mut events) = Leases::start(&nats, shutdown.clone(), &TaskTracker::new());
        let (log, node, handle) = (Arc::clone(&self.log), name.to_owned(), leases.clone());
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                record(&log, &node, Seen::Event(event));
                if let LeaseEvent::HandOver(lease) = event {
                    let (log, node, leases) = (Arc::clone(&log), node.clone(), handle.clone());
                    tokio::spawn(async move {
                        // Finishing the work in flight.
                        sleep(Duration::from_millis(20)).await;
                        record(&log, &node, Seen::Stopped(lease));
                        leases.release(lease).await;
                    });
                }
            }
        });
        Node {
            name: name.to_owned(),
            leases,
            shutdown,
        }
    }

    fn log(&self) -> Vec<Record> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// When `node` acquired `partition` after `since`, and with which epoch.
    fn acquired(&self, node: &str, partition: u16, since: Instant) -> Option<(Instant, u64)> {
        self.log().into_iter().find_map(|r| match r.seen {
            Seen::Event(LeaseEvent::Acquired(lease))
                if r.node == node && lease.partition == partition && r.at >= since =>
            {
                Some((r.at, lease.epoch))
            }
            _ => None,
        })
    }

    /// Whether each node holds exactly the partitions rendezvous hashing gives it among them.
    fn converged(&self, nodes: &[&Node]) -> bool {
        let names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
        nodes.iter().all(|node| {
            let held: Vec<u16> = node.leases.held().iter().map(|l| l.partition).collect();
            let owners = owners(self.partitions, &names);
            let due: Vec<u16> = (0..self.partitions)
                .filter(|&p| owners[usize::from(p)] == Some(node.name.as_str()))
                .collect();
            held == due
        })
    }

    async fn converge(&self, nodes: &[&Node], within: Duration) {
        let start = Instant::now();
        while !self.converged(nodes) {
            assert!(
                start.elapsed() < within,
                "not converged in {within:?}: {:?}",
                nodes
                    .iter()
                    .map(|n| (&n.name, n.leases.held()))
                    .collect::<Vec<_>>()
            );
            sleep(Duration::from_millis(20)).await;
        }
    }

    /// No partition ever had two workers at once (from Acquired to Lost or Stopped), and each
    /// new owner's epoch is greater than the one before.
    fn check_exclusive(&self) {
        let mut open: HashMap<(String, u16, u64), Instant> = HashMap::new();
        let mut spans: BTreeMap<u16, Vec<Span>> = BTreeMap::new();
        for r in self.log() {
            match r.seen {
                Seen::Event(LeaseEvent::Acquired(l)) => {
                    open.insert((r.node, l.partition, l.epoch), r.at);
                }
                Seen::Event(LeaseEvent::Lost(l)) | Seen::Stopped(l) => {
                    if let Some(start) = open.remove(&(r.node.clone(), l.partition, l.epoch)) {
                        let span = Span {
                            start,
                            end: Some(r.at),
                            node: r.node,
                            epoch: l.epoch,
                        };
                        spans.entry(l.partition).or_default().push(span);
                    }
                }
                Seen::Event(LeaseEvent::HandOver(_)) => {}
            }
        }
        for ((node, partition, epoch), start) in open {
            let span = Span {
                start,
                end: None,
                node,
                epoch,
            };
            spans.entry(partition).or_default().push(span);
        }
        for (partition, mut spans) in spans {
            spans.sort_by_key(|span| span.start);
            for pair in spans.windows(2) {
                let (before, after) = (&pair[0], &pair[1]);
                assert!(
                    before.end.is_some_and(|end| end <= after.start),
                    "partition {partition} held by {} and {} at once: {before:?}, {after:?}",
                    before.node,
                    after.node
                );
                assert!(
                    after.epoch > before.epoch,
                    "partition {partition}: epoch went down"
                );
            }
        }
    }
}

/// A worker's tenure: from Acquired to Lost or Stopped (`None`: still running).
#[derive(Debug)]
struct Span {
    start: Instant,
    end: Option<Instant>,
    node: String,
    epoch: u64,
}

/// Everything that happened to `partition`, for a failure message: milliseconds from `since`
/// (negative before it), node, event.
fn story(log: &[Record], partition: u16, since: Instant) -> Vec<(f64, &str, Seen)> {
    log.iter()
        .filter(|r| {
            let (Seen::Event(LeaseEvent::Acquired(l) | LeaseEvent::Lost(l) | LeaseEvent::HandOver(l))
            | Seen::Stopped(l)) = r.seen;
            l.partition == partition
        })
        .map(|r| {
            let ms = if r.at >= since {
                (r.at - since).as_secs_f64() * 1e3
            } else {
                -(since - r.at).as_secs_f64() * 1e3
            };
            (ms, r.node.as_str(), r.seen)
        })
        .collect()
}

fn record(log: &Mutex<Vec<Record>>, node: &str, seen: Seen) {
    let mut log = log.lock().unwrap_or_else(PoisonError::into_inner);
    log.push(Record {
        at: Instant::now(),
        node: node.to_owned(),
        seen,
    });
}

fn stop(nodes: &[&Node]) {
    for node in nodes {
        node.shutdown.cancel();
    }
}

#[tokio::test]
async fn three_nodes_share_the_partitions() {
    with_cluster("own", 12, 2, |cluster| async move {
        let (a, b, c) = (
            cluster.start("a").await,
            cluster.start("b").await,
            cluster.start("c").await,
        );
        cluster.converge(&[&a, &b, &c], Duration::from_secs(8)).await;
        let mut epochs = Vec::new();
        for node in [&a, &b, &c] {
            let held = node.leases.held();
            assert!((2..=6).contains(&held.len()), "{}: {held:?}", node.name);
            assert!(node.leases.healthy());
            epochs.extend(held.iter().map(|l| l.epoch));
        }
        assert_eq!(epochs.len(), 12);
        epochs.sort_unstable();
        epochs.dedup();
        assert_eq!(epochs.len(), 12, "epochs shared between partitions");
        cluster.check_exclusive();
        stop(&[&a, &b, &c]);
    })
    .await;
}

#[tokio::test]
async fn a_crashed_nodes_partitions_are_taken_over() {
    with_cluster("crash", 12, 3, |cluster| async move {
        let (a, b, c) = (
            cluster.start("a").await,
            cluster.start("b").await,
            cluster.start("c").await,
        );
        cluster.converge(&[&a, &b, &c], Duration::from_secs(10)).await;
        let old = c.leases.held();
        assert!(!old.is_empty());
        let crash = Instant::now();
        c.shutdown.cancel();
        let bound = cluster.lease() + 2 * cluster.tick() + Duration::from_secs(1);
        cluster.converge(&[&a, &b], bound + Duration::from_secs(1)).await;
        let mut slowest = Duration::ZERO;
        for lease in old {
            let (at, epoch) = ["a", "b"]
                .iter()
                .find_map(|n| cluster.acquired(n, lease.partition, crash))
                .expect("taken over");
            let took = at - crash;
            assert!(
                took <= bound,
                "partition {} taken after {took:?}",
                lease.partition
            );
            // Not before the crashed node's lease could have expired on the server.
            let expiry = cluster.lease().saturating_sub(cluster.tick());
            assert!(took + Duration::from_millis(100) >= expiry, "{took:?}");
            assert!(epoch > lease.epoch);
            slowest = slowest.max(took);
        }
        println!("crash: partitions taken over within {slowest:?} (lease 3 s)");
        cluster.check_exclusive();
        stop(&[&a, &b]);
    })
    .await;
}

#[tokio::test]
async fn a_draining_node_hands_its_partitions_over_at_once() {
    with_cluster("drain", 12, 3, |cluster| async move {
        let (a, b, c) = (
            cluster.start("a").await,
            cluster.start("b").await,
            cluster.start("c").await,
        );
        cluster.converge(&[&a, &b, &c], Duration::from_secs(10)).await;
        let old = c.leases.held();
        let start = Instant::now();
        c.leases.drain(Duration::from_secs(5)).await;
        let drained = start.elapsed();
        assert!(c.leases.held().is_empty());
        assert!(drained < Duration::from_secs(1), "drain took {drained:?}");
        cluster.converge(&[&a, &b], Duration::from_secs(3)).await;
        let mut slowest = Duration::ZERO;
        for lease in old {
            let (at, epoch) = ["a", "b"]
                .iter()
                .find_map(|n| cluster.acquired(n, lease.partition, start))
                .expect("taken over");
            slowest = slowest.max(at - start);
            assert!(epoch > lease.epoch);
        }
        // Another node's next round, not the lease expiry.
        assert!(
            slowest <= cluster.tick() + Duration::from_millis(500),
            "{slowest:?}"
        );
        println!("drain: returned in {drained:?}, partitions taken over within {slowest:?}");
        sleep(cluster.tick()).await;
        assert!(!c.leases.healthy(), "the lease task still runs after drain");
        cluster.check_exclusive();
        stop(&[&a, &b]);
    })
    .await;
}

#[tokio::test]
async fn a_joining_node_gets_its_share_by_hand_over() {
    with_cluster("join", 12, 2, |cluster| async move {
        let (node_a, node_b) = (cluster.start("a").await, cluster.start("b").await);
        cluster
            .converge(&[&node_a, &node_b], Duration::from_secs(8))
            .await;
        let before: HashMap<u16, String> = [&node_a, &node_b]
            .iter()
            .flat_map(|n| n.leases.held().into_iter().map(|l| (l.partition, n.name.clone())))
            .collect();
        let joined = Instant::now();
        let node_c = cluster.start("c").await;
        let all = [&node_a, &node_b, &node_c];
        cluster.converge(&all, Duration::from_secs(6)).await;
        println!("join: rebalanced in {:?} (lease 2 s)", joined.elapsed());
        let gained = node_c.leases.held();
        assert!(!gained.is_empty());
        let log = cluster.log();
        for lease in gained {
            let (partition, previous) = (lease.partition, &before[&lease.partition]);
            let step = |wanted: &dyn Fn(&Record) -> bool| {
                log.iter()
                    .position(|r| r.at >= joined && wanted(r))
                    .unwrap_or_else(|| {
                        panic!(
                            "partition {partition}, held by {previous} before the join: a step is missing in {:#?}",
                            story(&log, partition, joined)
                        )
                    })
            };
            let handed = step(&|r| {
                &r.node == previous
                    && matches!(r.seen, Seen::Event(LeaseEvent::HandOver(l)) if l.partition == partition)
            });
            let stopped = step(&|r| {
                &r.node == previous && matches!(r.seen, Seen::Stopped(l) if l.partition == partition)
            });
            let acquired = step(&|r| {
                r.node == "c" && matches!(r.seen, Seen::Event(LeaseEvent::Acquired(l)) if l == lease)
            });
            assert!(
                handed < stopped && stopped < acquired,
                "partition {partition}: out of order"
            );
        }
        cluster.check_exclusive();
        stop(&all);
    })
    .await;
}

#[tokio::test]
async fn a_replaced_lease_is_lost_at_once_then_taken_again() {
    with_cluster("lost", 4, 3, |cluster| async move {
        let a = cluster.start("a").await;
        cluster.converge(&[&a], Duration::from_secs(5)).await;
        let old = a.leases.held()[0];
        let intruder = cluster.connect("intruder", &nats_url()).await;
        let replaced = Instant::now();
        let revision = intruder
            .leases
            .put(format!("p{}", old.partition), "intruder".into())
            .await
            .expect("overwrite the lease");
        let lost = Instant::now() + cluster.tick() + Duration::from_millis(500);
        while !cluster
            .log()
            .iter()
            .any(|r| matches!(r.seen, Seen::Event(LeaseEvent::Lost(l)) if l == old))
        {
            assert!(Instant::now() < lost, "no Lost within a tick");
            sleep(Duration::from_millis(10)).await;
        }
        println!("lost: reported after {:?}", replaced.elapsed());
        assert!(!a.leases.held().contains(&old));
        // Taken again once the intruder's entry expired, with a newer epoch.
        let within = cluster.lease() + cluster.tick() + Duration::from_millis(1500);
        cluster.converge(&[&a], within).await;
        let (_, epoch) = cluster
            .acquired("a", old.partition, replaced)
            .expect("taken again");
        assert!(epoch > revision);
        cluster.check_exclusive();
        stop(&[&a]);
    })
    .await;
}

#[tokio::test]
async fn leases_are_lost_by_their_deadline_when_nats_is_unreachable() {
    with_cluster("unrch", 4, 3, |cluster| async move {
        let cut = CancellationToken::new();
        let url = proxy(cut.clone()).await;
        let a = cluster.start_at("a", &url).await;
        cluster.converge(&[&a], Duration::from_secs(5)).await;
        let held = a.leases.held();
        let cut_at = Instant::now();
        cut.cancel();
        let trusted = cluster.lease().saturating_sub(cluster.lease() / 6);
        sleep(trusted + Duration::from_millis(300)).await;
        let lost: Vec<(Instant, Lease)> = cluster
            .log()
            .into_iter()
            .filter_map(|r| match r.seen {
                Seen::Event(LeaseEvent::Lost(l)) => Some((r.at, l)),
                _ => None,
            })
            .collect();
        assert_eq!(lost.len(), held.len(), "{lost:?}");
        for (at, _) in &lost {
            // Kept while a renewal might still have come through; given up by the deadline.
            let after = *at - cut_at;
            assert!(after >= trusted.saturating_sub(cluster.tick()), "{after:?}");
            println!("unreachable: lost after {after:?} (lease 3 s)");
        }
        assert!(a.leases.held().is_empty());
        sleep(cluster.lease() / 6).await;
        assert!(!a.leases.healthy());
        stop(&[&a]);
    })
    .await;
}

/// A TCP proxy to the NATS server, refusing and dropping every connection once `cut`.
async fn proxy(cut: CancellationToken) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let upstream = nats_url().trim_start_matches("nats://").to_owned();
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = cut.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            let Ok((mut inbound, _)) = accepted else {
                continue;
            };
            let (cut, upstream) = (cut.clone(), upstream.clone());
            tokio::spawn(async move {
                let Ok(mut outbound) = TcpStream::connect(&upstream).await else {
                    return;
                };
                tokio::select! {
                    () = cut.cancelled() => {}
                    _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                }
            });
        }
    });
    format!("nats://{address}")
}

/// What the leases rely on in async-nats 0.40 against this server: `create` after a delete
/// (a release) succeeds with a greater revision, `keys` leaves deleted keys out (a drained
/// node), and `update` on a stale revision fails.
#[tokio::test]
async fn the_kv_bucket_behaves_as_the_leases_assume() {
    with_cluster("kv", 1, 2, |cluster| async move {
        use async_nats::jetstream::kv::{CreateErrorKind, UpdateErrorKind};
        use futures_util::TryStreamExt;

        let nats = cluster.connect("a", &nats_url()).await;
        let kv = &nats.leases;
        let first = kv.create("p0", "a".into()).await.expect("create");
        let again = kv.create("p0", "b".into()).await.expect_err("created twice");
        assert_eq!(again.kind(), CreateErrorKind::AlreadyExists);
        let renewed = kv.update("p0", "a".into(), first).await.expect("update");
        let stale = kv
            .update("p0", "a".into(), first)
            .await
            .expect_err("stale update");
        assert_eq!(stale.kind(), UpdateErrorKind::WrongLastRevision);
        kv.create("p1", "a".into()).await.expect("create p1");
        kv.delete_expect_revision("p0", Some(first))
            .await
            .expect_err("deleted on a stale revision");
        kv.delete_expect_revision("p0", Some(renewed))
            .await
            .expect("delete");
        let keys: Vec<String> = kv.keys().await.expect("keys").try_collect().await.expect("keys");
        assert_eq!(keys, ["p1"]);
        let next = kv.create("p0", "b".into()).await.expect("create after delete");
        assert!(next > renewed);
    })
    .await;
}
