//! Subscriptions: the OpenMessaging Benchmark's consumer groups. With
//! `subscriptions = N`, a run has N groups `sluice-loadgen-<run id>-sub-<i>`
//! of `consumers` members each; every member subscribes to every topic of
//! the run, so each group reads every message once.
//!
//! Members start at the log end (`OffsetReset::Latest`; the run's groups
//! and topics are new, nothing is committed), so producers may start only
//! once every group has settled. A member publishes a [`MemberView`] after
//! each poll in which its assignment or start positions changed, and the
//! main thread runs [`barrier`] over the views (the ready barrier). A group
//! has settled when all its members are in one generation, every partition
//! of the run is assigned to exactly one of them, and each member knows
//! where its partitions start.
//!
//! Invariant: the assignments of one generation are disjoint and name only
//! the run's partitions; anything else is a coordination bug and fails the
//! run instead of being waited out.
//!
//! Shard: a [`Member`] lives on the executor that created it (`!Send`); the
//! views cross to the main thread through `Control::members`.
use std::cell::Cell;
use std::collections::{BTreeSet, HashSet};
use std::rc::Rc;
use std::time::Duration;

use sluice::client::{Client, ClientError, ConsumedRecord, ConsumerConfig, GroupConfig, GroupConsumer, OffsetReset};

/// The generation of a member not in one (joining, or not yet polled).
const NO_GENERATION: i32 = -1;
/// Members heartbeat this often (Kafka's default is 3 s): a rebalance
/// started by a late joiner reaches the others within it, which bounds how
/// long the ready barrier takes when members join one by one.
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);

/// The consumer group of subscription `index` in run `run_id`.
pub fn group_id(run_id: &str, index: u32) -> String {
    format!("sluice-loadgen-{run_id}-sub-{index}")
}

/// What one member last told the ready barrier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    /// The member's generation; -1 while joining or before its first poll.
    pub generation: i32,
    /// The partitions of `generation` it fetches, sorted.
    pub partitions: Vec<(String, u32)>,
    /// Every partition in `partitions` has its start position.
    pub positioned: bool,
}

impl MemberView {
    /// A member that has not joined yet.
    pub fn unjoined() -> MemberView {
        MemberView {
            generation: NO_GENERATION,
            partitions: Vec::new(),
            positioned: false,
        }
    }
}

/// Where the ready barrier stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Barrier {
    /// Every group has settled: producers may start.
    Settled,
    /// A group is still settling; why, for the timeout message.
    Waiting(String),
}

/// The ready barrier over every member's view: `views` holds `consumers`
/// views per subscription, subscription by subscription; `topics` x
/// `partitions` are the run's partitions. `Err` if a group broke the
/// invariant (overlapping or foreign assignments in one generation).
pub fn barrier(views: &[MemberView], consumers: usize, topics: &[String], partitions: u32) -> Result<Barrier, String> {
    assert!(
        consumers > 0 && views.len() % consumers == 0,
        "{} views are not whole groups of {consumers}",
        views.len()
    );
    for (sub, members) in views.chunks(consumers).enumerate() {
        if let Some(why) = settling(sub, members, topics, partitions)? {
            return Ok(Barrier::Waiting(why));
        }
    }
    Ok(Barrier::Settled)
}

/// Why subscription `sub` has not settled yet (`None`: it has). The cheap
/// checks come first: the main thread runs this every few milliseconds.
fn settling(sub: usize, members: &[MemberView], topics: &[String], partitions: u32) -> Result<Option<String>, String> {
    let generations: BTreeSet<i32> = members.iter().map(|m| m.generation).collect();
    let generation = match generations.iter().collect::<Vec<_>>()[..] {
        [&g] if g != NO_GENERATION => g,
        _ => {
            let joining = members.iter().filter(|m| m.generation == NO_GENERATION).count();
            return Ok(Some(format!(
                "sub-{sub}: {joining} of {} member(s) joining, generations seen {generations:?}",
                members.len()
            )));
        }
    };
    let unpositioned = members.iter().filter(|m| !m.positioned).count();
    if unpositioned > 0 {
        return Ok(Some(format!(
            "sub-{sub}: {unpositioned} member(s) of generation {generation} resolving their start offsets"
        )));
    }
    let total = topics.len() * partitions as usize;
    let assigned: usize = members.iter().map(|m| m.partitions.len()).sum();
    if assigned < total {
        return Ok(Some(format!(
            "sub-{sub}: {assigned} of {total} partitions assigned in generation {generation}"
        )));
    }
    let run_topics: HashSet<&str> = topics.iter().map(String::as_str).collect();
    let mut seen = HashSet::with_capacity(total);
    for (topic, partition) in members.iter().flat_map(|m| &m.partitions) {
        if !run_topics.contains(topic.as_str()) || *partition >= partitions {
            return Err(format!(
                "sub-{sub}: generation {generation} assigned {topic}/{partition}, not a partition of this run"
            ));
        }
        if !seen.insert((topic.as_str(), *partition)) {
            return Err(format!(
                "sub-{sub}: generation {generation} assigned {topic}/{partition} to two members"
            ));
        }
    }
    // Every assigned partition is one of the run's `total`, none twice,
    // and there are at least `total` of them: exactly the run's partitions.
    debug_assert_eq!(seen.len(), total);
    Ok(None)
}

/// One member of a subscription's group, and what it last published.
pub struct Member {
    consumer: GroupConsumer,
    /// The subscription (group) it belongs to.
    pub subscription: usize,
    /// Its slot in `Control::members`.
    pub slot: usize,
    /// A rebalance happened since the last view.
    changed: Rc<Cell<bool>>,
    /// The last view published had every partition positioned.
    positioned: bool,
}

impl Member {
    /// A member of `group_id` subscribed to `topics`, starting at the log
    /// end of partitions without a committed offset. It joins on its first
    /// poll.
    pub fn new(client: &Client, group_id: &str, topics: &[String], subscription: usize, slot: usize) -> Member {
        let consumer_config = ConsumerConfig {
            reset: OffsetReset::Latest,
            ..ConsumerConfig::default()
        };
        let group_config = GroupConfig {
            heartbeat_interval: HEARTBEAT_INTERVAL,
            ..GroupConfig::new(group_id)
        };
        let mut consumer = GroupConsumer::new(client.clone(), consumer_config, group_config);
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics);
        let changed = Rc::new(Cell::new(true));
        let flag = changed.clone();
        consumer.on_rebalance(move |_| flag.set(true));
        Member {
            consumer,
            subscription,
            slot,
            changed,
            positioned: false,
        }
    }

    /// Records from its partitions (joining or rejoining first if needed).
    pub async fn poll(&mut self, limit: Duration) -> Result<Vec<ConsumedRecord>, ClientError> {
        self.consumer.poll(limit).await
    }

    /// Its view, if the barrier has not seen it yet: after a rebalance, and
    /// until every partition has its start position (resolved by a poll).
    pub fn view_if_changed(&mut self) -> Option<MemberView> {
        if !self.changed.replace(false) && self.positioned {
            return None;
        }
        let partitions = self.consumer.assignment();
        let positioned = partitions.iter().all(|(t, p)| self.consumer.position(t, *p).is_some());
        self.positioned = positioned;
        Some(MemberView {
            generation: self.consumer.generation(),
            partitions,
            positioned,
        })
    }

    /// Leaves the group (committing its positions first).
    pub async fn close(self) -> Result<(), ClientError> {
        self.consumer.close().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics() -> Vec<String> {
        vec!["a".to_string(), "b".to_string()]
    }

    fn member(generation: i32, partitions: &[(&str, u32)]) -> MemberView {
        MemberView {
            generation,
            partitions: partitions.iter().map(|(t, p)| (t.to_string(), *p)).collect(),
            positioned: true,
        }
    }

    fn waiting(views: &[MemberView], consumers: usize) -> String {
        match barrier(views, consumers, &topics(), 2) {
            Ok(Barrier::Waiting(why)) => why,
            other => panic!("expected waiting, got {other:?}"),
        }
    }

    #[test]
    fn settles_when_one_generation_covers_every_partition_once() {
        let views = [
            member(3, &[("a", 0), ("a", 1)]),
            member(3, &[("b", 0), ("b", 1)]),
            member(1, &[("a", 0), ("a", 1), ("b", 0), ("b", 1)]),
            member(1, &[]),
        ];
        assert_eq!(barrier(&views, 2, &topics(), 2), Ok(Barrier::Settled));
        assert_eq!(barrier(&views[2..3], 1, &topics(), 2), Ok(Barrier::Settled));
    }

    #[test]
    fn waits_for_joins_generations_positions_and_coverage() {
        let why = waiting(&[member(1, &[("a", 0)]), MemberView::unjoined()], 2);
        assert!(why.contains("sub-0: 1 of 2 member(s) joining"), "{why}");
        let why = waiting(
            &[
                member(1, &[("a", 0), ("a", 1), ("b", 0), ("b", 1)]),
                member(2, &[("a", 0), ("a", 1)]),
            ],
            2,
        );
        assert!(why.contains("generations seen {1, 2}"), "{why}");
        let mut unpositioned = member(2, &[("b", 0), ("b", 1)]);
        unpositioned.positioned = false;
        let why = waiting(&[member(2, &[("a", 0), ("a", 1)]), unpositioned], 2);
        assert!(why.contains("1 member(s) of generation 2 resolving"), "{why}");
        let why = waiting(&[member(2, &[("a", 0), ("a", 1)]), member(2, &[("b", 0)])], 2);
        assert!(why.contains("3 of 4 partitions assigned in generation 2"), "{why}");
        // The first subscription settled, the second not.
        let all = member(1, &[("a", 0), ("a", 1), ("b", 0), ("b", 1)]);
        let why = waiting(&[all, MemberView::unjoined()], 1);
        assert!(why.starts_with("sub-1:"), "{why}");
    }

    #[test]
    fn overlapping_or_foreign_assignments_fail() {
        let overlap = [
            member(4, &[("a", 0), ("a", 1), ("b", 0)]),
            member(4, &[("b", 0), ("b", 1)]),
        ];
        let e = barrier(&overlap, 2, &topics(), 2).unwrap_err();
        assert!(e.contains("assigned b/0 to two members"), "{e}");
        let foreign = [member(4, &[("a", 0), ("a", 1), ("b", 0), ("c", 0)])];
        let e = barrier(&foreign, 1, &topics(), 2).unwrap_err();
        assert!(e.contains("c/0, not a partition of this run"), "{e}");
        let out_of_range = [member(4, &[("a", 0), ("a", 1), ("b", 0), ("b", 2)])];
        assert!(barrier(&out_of_range, 1, &topics(), 2).is_err());
    }

    #[test]
    fn group_ids_name_the_run_and_the_subscription() {
        assert_eq!(group_id("0000abcd", 3), "sluice-loadgen-0000abcd-sub-3");
    }
}
