//! Replica assignment, as Kafka places replicas without racks: the
//! brokers sorted by id, replica 0 (the preferred leader) of partition `i`
//! on broker `(i + s) mod n` and replica `j` on broker `(i + j + s) mod n`,
//! `s` a per-topic start so that many topics do not all lead on the
//! lowest broker. Replicas of a partition are always on distinct brokers,
//! and preferred leaders are spread evenly (counts differ by at most one).

use super::replica::NodeId;

/// Why a topic cannot be placed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error("replication factor {rf} is larger than the {brokers} available brokers")]
    TooFewBrokers { rf: usize, brokers: usize },
    #[error("replication factor must be at least 1")]
    ZeroReplicationFactor,
}

/// Kafka's random start offset `s` of a topic's placement, here drawn
/// from its name: deterministic (a retried creation places the same way),
/// and different topics start on different brokers.
pub fn start_offset(topic: &str) -> u32 {
    topic
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)))
}

/// The replicas of partitions `first..first + count` (first: when adding
/// partitions to a topic, so they continue its pattern), preferred leader
/// first.
pub fn assign(
    brokers: &[NodeId],
    first: u32,
    count: u32,
    rf: usize,
    start: u32,
) -> Result<Vec<Vec<NodeId>>, PlacementError> {
    if rf == 0 {
        return Err(PlacementError::ZeroReplicationFactor);
    }
    let mut sorted = brokers.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let n = sorted.len();
    if rf > n {
        return Err(PlacementError::TooFewBrokers { rf, brokers: n });
    }
    let at = |i: u64, j: u64| sorted[((i + j + u64::from(start)) % n as u64) as usize];
    Ok((first..first.saturating_add(count))
        .map(|p| (0..rf as u64).map(|j| at(u64::from(p), j)).collect())
        .collect())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn follows_the_documented_pattern() {
        let a = assign(&[3, 1, 2], 0, 4, 2, 0).expect("fits");
        assert_eq!(a, vec![vec![1, 2], vec![2, 3], vec![3, 1], vec![1, 2]]);
        let shifted = assign(&[1, 2, 3], 0, 2, 3, 1).expect("fits");
        assert_eq!(shifted, vec![vec![2, 3, 1], vec![3, 1, 2]]);
        // Added partitions continue the pattern.
        assert_eq!(assign(&[1, 2, 3], 3, 1, 2, 0).expect("fits"), vec![vec![1, 2]]);
        assert_eq!(
            assign(&[1, 2], 0, 1, 3, 0),
            Err(PlacementError::TooFewBrokers { rf: 3, brokers: 2 })
        );
        assert_eq!(assign(&[1], 0, 1, 0, 0), Err(PlacementError::ZeroReplicationFactor));
    }

    proptest! {
        #[test]
        fn replicas_are_distinct_and_leaders_even(
            brokers in prop::collection::btree_set(0u32..1000, 1..12),
            partitions in 1u32..200,
            rf_seed in 0usize..12,
            start in 0u32..1000,
        ) {
            let brokers: Vec<NodeId> = brokers.into_iter().collect();
            let rf = 1 + rf_seed % brokers.len();
            let a = assign(&brokers, 0, partitions, rf, start).expect("fits");
            prop_assert_eq!(a.len(), partitions as usize);
            let mut leaders: BTreeMap<NodeId, usize> = BTreeMap::new();
            let mut replicas: BTreeMap<NodeId, usize> = BTreeMap::new();
            for r in &a {
                let mut distinct = r.clone();
                distinct.sort_unstable();
                distinct.dedup();
                prop_assert_eq!(distinct.len(), rf);
                prop_assert!(r.iter().all(|b| brokers.contains(b)));
                *leaders.entry(r[0]).or_default() += 1;
                for b in r {
                    *replicas.entry(*b).or_default() += 1;
                }
            }
            let spread = |m: &BTreeMap<NodeId, usize>| {
                let counts: Vec<usize> = brokers.iter().map(|b| m.get(b).copied().unwrap_or(0)).collect();
                counts.iter().max().copied().unwrap_or(0) - counts.iter().min().copied().unwrap_or(0)
            };
            prop_assert!(spread(&leaders) <= 1, "leaders {:?}", leaders);
            prop_assert!(spread(&replicas) <= rf, "replicas {:?}", replicas);
        }
    }
}
