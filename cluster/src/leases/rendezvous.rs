//! Which node should own each partition: rendezvous (highest random weight) hashing with
//! bounded loads. Every node computes the same assignment from the same live set without
//! talking. Plain rendezvous hashing is only as even as random placement (16 partitions over
//! 3 nodes can land 13/3/0); here each node takes exactly its fair share (`floor(P / N)`, and
//! `P mod N` of them one more): the (partition, node) pairs are taken in decreasing weight, and
//! a pair is kept when the partition is still free and the node has room. A node joining or leaving moves mostly the
//! partitions it gains or held, and a few more between the others to keep the shares even.

use xxhash_rust::xxh3::Xxh3;

/// The desired owner of every partition `0..partitions` among `nodes` (`None` without nodes).
/// `nodes` is a set: neither its order nor a name given twice changes anything (a listing of
/// the node bucket can give a key twice, when a heartbeat lands while it is read).
pub fn owners(partitions: u16, nodes: &[String]) -> Vec<Option<&str>> {
    let mut assigned: Vec<Option<&str>> = vec![None; usize::from(partitions)];
    let mut nodes: Vec<&str> = nodes.iter().map(String::as_str).collect();
    nodes.sort_unstable();
    nodes.dedup();
    if nodes.is_empty() {
        return assigned;
    }
    // Every node takes `floor` partitions, and `extra` of them one more.
    let (floor, mut extra) = (
        usize::from(partitions) / nodes.len(),
        usize::from(partitions) % nodes.len(),
    );
    let mut pairs: Vec<(u64, &str, u16)> = (0..partitions)
        .flat_map(|p| nodes.iter().map(move |&n| (weight(n, p), n, p)))
        .collect();
    // Heaviest first; ties (equal hashes) by name, then partition, so the result is unique.
    pairs.sort_unstable_by(|a, b| b.cmp(a));
    let mut load: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (_, node, partition) in pairs {
        let slot = &mut assigned[usize::from(partition)];
        let taken = load.entry(node).or_default();
        let room = *taken < floor || (*taken == floor && extra > 0);
        if slot.is_none() && room {
            if *taken == floor {
                extra -= 1;
            }
            *slot = Some(node);
            *taken += 1;
        }
    }
    assigned
}

fn weight(node: &str, partition: u16) -> u64 {
    let mut hasher = Xxh3::new();
    hasher.update(node.as_bytes());
    // Fixed width, so (name, partition) pairs cannot collide by concatenation.
    hasher.update(&partition.to_le_bytes());
    hasher.digest()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(names: &[&str]) -> Vec<String> {
        names.iter().map(|&n| n.to_owned()).collect()
    }

    fn counts(partitions: u16, nodes: &[String]) -> Vec<usize> {
        let owners = owners(partitions, nodes);
        nodes
            .iter()
            .map(|node| owners.iter().filter(|o| **o == Some(node.as_str())).count())
            .collect()
    }

    #[test]
    fn every_node_gets_its_fair_share_whatever_the_names() {
        for s in 0..200 {
            for (partitions, n) in [(4_u16, 3_usize), (16, 3), (32, 3), (16, 5), (1024, 8), (2, 3)] {
                let set: Vec<String> = (0..n).map(|i| format!("host-{s}-{i}")).collect();
                let counts = counts(partitions, &set);
                assert_eq!(counts.iter().sum::<usize>(), usize::from(partitions));
                let (low, high) = (usize::from(partitions) / n, usize::from(partitions).div_ceil(n));
                assert!(
                    counts.iter().all(|&c| (low..=high).contains(&c)),
                    "{set:?}: {counts:?}"
                );
            }
        }
    }

    #[test]
    fn a_joining_or_leaving_node_moves_little() {
        let three = names(&["a", "b", "c"]);
        let four = names(&["a", "b", "c", "d"]);
        let (before, after) = (owners(256, &three), owners(256, &four));
        let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
        let to_d = after.iter().filter(|a| **a == Some("d")).count();
        assert_eq!(to_d, 64);
        assert!(moved <= 64 + 32, "{moved} of 256 moved for a fourth node");
        let two = names(&["a", "c"]);
        let after = owners(256, &two);
        let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
        let held_by_b = before.iter().filter(|b| **b == Some("b")).count();
        assert!(moved <= held_by_b + 32, "{moved} moved, b held {held_by_b}");
    }

    #[test]
    fn order_does_not_matter_and_no_nodes_no_owner() {
        let one = names(&["a", "b", "c"]);
        let other = names(&["c", "a", "b"]);
        assert_eq!(owners(64, &one), owners(64, &other));
        assert_eq!(owners(3, &[]), vec![None, None, None]);
    }

    #[test]
    fn a_node_listed_twice_counts_once() {
        // Counted twice, `a` would cut every share to 12 / 3 and leave 4 partitions unowned.
        let twice = names(&["a", "b", "a"]);
        let once = names(&["a", "b"]);
        assert_eq!(owners(12, &twice), owners(12, &once));
        assert!(owners(12, &twice).iter().all(Option::is_some));
    }
}
