//! The client-side partition assignors a consumer group's leader runs on
//! the members' subscriptions to produce everyone's assignment: Kafka's
//! range, round-robin and (eager) sticky strategies, under their Kafka
//! names so Java and librdkafka members agree on the protocol.
//!
//! Invariants of every assignor's output:
//!
//! - every member given has an entry, possibly empty; a topic appears in a
//!   member's entry only with at least one partition, partitions sorted;
//! - every partition of a topic someone subscribes to goes to exactly one
//!   member subscribing to it, and nothing else is assigned; topics missing
//!   from the partition counts are skipped (no metadata yet);
//! - the output is a function of the input as a set: member order does not
//!   matter (members are sorted as Kafka sorts them: static members by
//!   group instance id first, then the rest by member id). Member ids are
//!   unique in a real group; should one repeat, its first entry counts.
//!
//! Pure: no I/O, no clock; runs wherever the leader's client runs.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use super::consumer_protocol::Subscription;

/// A member as the leader sees it in the JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSubscription {
    /// The coordinator-given member id.
    pub member_id: String,
    /// The static member's `group.instance.id`, if any.
    pub group_instance_id: Option<String>,
    /// The member's decoded protocol metadata.
    pub subscription: Subscription,
}

/// member_id -> topic -> sorted partitions; every member that was given in
/// `members` has an entry (possibly empty).
pub type AssignmentMap = BTreeMap<String, BTreeMap<String, Vec<i32>>>;

/// A partition assignment strategy.
pub trait Assignor: Send + Sync {
    /// The protocol name members advertise in JoinGroup.
    fn name(&self) -> &'static str;

    /// Assigns the partitions of the subscribed topics (`topic -> partition
    /// count`) to `members`.
    fn assign(&self, members: &[MemberSubscription], partitions_per_topic: &BTreeMap<String, u32>) -> AssignmentMap;
}

/// Kafka's RangeAssignor: per topic, its subscribers in member order get
/// consecutive ranges; the first `partitions % subscribers` one extra.
#[derive(Debug, Clone, Copy, Default)]
pub struct RangeAssignor;

/// Kafka's RoundRobinAssignor: all subscribed partitions sorted by topic
/// then partition, dealt to the members in order round robin, skipping a
/// member not subscribed to the partition's topic. Balanced (counts differ
/// by at most one) when all subscriptions are identical; with differing
/// subscriptions it can be uneven, as in Kafka.
#[derive(Debug, Clone, Copy, Default)]
pub struct RoundRobinAssignor;

/// Kafka's (eager) StickyAssignor goals, not its exact algorithm:
///
/// 1. balanced: members with identical subscriptions (among the topics
///    that exist) own partition counts that differ by at most one;
/// 2. sticky: a partition stays with its previous owner, from the owned
///    partitions in the subscriptions, as far as balance allows. A claim
///    counts only when it is the newest (highest generation id) for that
///    partition, its topic is still subscribed and the partition exists;
///    two claims of the same newest generation cancel out.
///
/// Partitions without a valid owner go, fewest candidates first, to the
/// candidate owning the fewest partitions (ties: member order), which keeps
/// every balanced class balanced; then partitions move from the fullest to
/// the emptiest member of each class, newly placed ones before kept ones,
/// until the class is balanced. So a member leaving a balanced group costs
/// the others nothing: they keep all they own.
#[derive(Debug, Clone, Copy, Default)]
pub struct StickyAssignor;

/// The assignor names, in the order a member advertises them (most
/// preferred first).
pub const ALL: [&str; 3] = ["range", "roundrobin", "sticky"];

static RANGE: RangeAssignor = RangeAssignor;
static ROUND_ROBIN: RoundRobinAssignor = RoundRobinAssignor;
static STICKY: StickyAssignor = StickyAssignor;

/// The assignor a JoinGroup protocol name stands for.
pub fn by_name(name: &str) -> Option<&'static dyn Assignor> {
    match name {
        "range" => Some(&RANGE),
        "roundrobin" => Some(&ROUND_ROBIN),
        "sticky" => Some(&STICKY),
        _ => None,
    }
}

/// A member with its subscription narrowed to the topics that exist.
struct Member<'a> {
    id: &'a str,
    input: &'a MemberSubscription,
    topics: BTreeSet<&'a str>,
}

/// Kafka's `MemberInfo` order: static members by instance id, before
/// dynamic members by member id.
fn kafka_order_key(m: &MemberSubscription) -> (bool, Option<&str>, &str) {
    (
        m.group_instance_id.is_none(),
        m.group_instance_id.as_deref(),
        &m.member_id,
    )
}

/// Unique members in Kafka order, subscriptions narrowed to known topics.
fn members_in_order<'a>(
    members: &'a [MemberSubscription],
    partitions_per_topic: &'a BTreeMap<String, u32>,
) -> Vec<Member<'a>> {
    let mut seen = BTreeSet::new();
    let mut unique: Vec<&MemberSubscription> = members.iter().filter(|m| seen.insert(&m.member_id)).collect();
    unique.sort_by(|a, b| kafka_order_key(a).cmp(&kafka_order_key(b)));
    unique
        .into_iter()
        .map(|input| Member {
            id: &input.member_id,
            input,
            topics: partitions_per_topic
                .keys()
                .map(String::as_str)
                .filter(|t| input.subscription.topics.iter().any(|s| s == t))
                .collect(),
        })
        .collect()
}

fn empty_assignment(members: &[Member<'_>]) -> AssignmentMap {
    members.iter().map(|m| (m.id.to_owned(), BTreeMap::new())).collect()
}

/// Partition ids `0..count`; Kafka partition ids are i32, so a count over
/// `i32::MAX` (impossible in practice) is capped.
fn partition_ids(count: u32) -> std::ops::Range<i32> {
    0..i32::try_from(count).unwrap_or(i32::MAX)
}

fn give(out: &mut AssignmentMap, member: &str, topic: &str, partitions: impl IntoIterator<Item = i32>) {
    let topics = out.entry(member.to_owned()).or_default();
    let mut partitions = partitions.into_iter().peekable();
    if partitions.peek().is_some() {
        topics.entry(topic.to_owned()).or_default().extend(partitions);
    }
}

impl Assignor for RangeAssignor {
    fn name(&self) -> &'static str {
        "range"
    }

    fn assign(&self, members: &[MemberSubscription], partitions_per_topic: &BTreeMap<String, u32>) -> AssignmentMap {
        let members = members_in_order(members, partitions_per_topic);
        let mut out = empty_assignment(&members);
        for (topic, &count) in partitions_per_topic {
            let subscribers: Vec<&Member> = members.iter().filter(|m| m.topics.contains(topic.as_str())).collect();
            if subscribers.is_empty() {
                continue;
            }
            let ids: Vec<i32> = partition_ids(count).collect();
            let (per_member, extra) = (ids.len() / subscribers.len(), ids.len() % subscribers.len());
            let mut start = 0;
            for (i, member) in subscribers.iter().enumerate() {
                let end = start + per_member + usize::from(i < extra);
                give(&mut out, member.id, topic, ids[start..end].iter().copied());
                start = end;
            }
            assert_eq!(start, ids.len(), "range: every partition of {topic} assigned");
        }
        out
    }
}

impl Assignor for RoundRobinAssignor {
    fn name(&self) -> &'static str {
        "roundrobin"
    }

    fn assign(&self, members: &[MemberSubscription], partitions_per_topic: &BTreeMap<String, u32>) -> AssignmentMap {
        let members = members_in_order(members, partitions_per_topic);
        let mut out = empty_assignment(&members);
        let mut next = 0;
        for (topic, &count) in partitions_per_topic {
            if !members.iter().any(|m| m.topics.contains(topic.as_str())) {
                continue;
            }
            for partition in partition_ids(count) {
                // Terminates: someone subscribes to the topic.
                while !members[next].topics.contains(topic.as_str()) {
                    next = (next + 1) % members.len();
                }
                give(&mut out, members[next].id, topic, [partition]);
                next = (next + 1) % members.len();
            }
        }
        out
    }
}

/// One partition, named by topic and id.
type TopicPartition<'a> = (&'a str, i32);

impl Assignor for StickyAssignor {
    fn name(&self) -> &'static str {
        "sticky"
    }

    fn assign(&self, members: &[MemberSubscription], partitions_per_topic: &BTreeMap<String, u32>) -> AssignmentMap {
        let members = members_in_order(members, partitions_per_topic);
        let owners = valid_owners(&members, partitions_per_topic);
        // held[i]: what member i (in member order) gets.
        let mut held: Vec<BTreeSet<TopicPartition>> = vec![BTreeSet::new(); members.len()];
        for (&tp, &owner) in &owners {
            held[owner].insert(tp);
        }
        place_unowned(&members, partitions_per_topic, &owners, &mut held);
        balance_classes(&members, &owners, &mut held);

        let mut out = empty_assignment(&members);
        for (member, partitions) in members.iter().zip(&held) {
            for &(topic, partition) in partitions {
                give(&mut out, member.id, topic, [partition]);
            }
        }
        out
    }
}

/// Each partition's previous owner (index in member order), where the claim
/// is valid: newest generation for the partition, unique at that
/// generation, topic still subscribed, partition still existing.
fn valid_owners<'a>(
    members: &[Member<'a>],
    partitions_per_topic: &'a BTreeMap<String, u32>,
) -> BTreeMap<TopicPartition<'a>, usize> {
    // partition -> (newest generation, its only claimant if there is one)
    let mut newest: BTreeMap<TopicPartition<'a>, (i32, Option<usize>)> = BTreeMap::new();
    for (i, member) in members.iter().enumerate() {
        let generation = member.input.subscription.generation_id;
        for (topic, partitions) in &member.input.subscription.owned_partitions {
            let Some((topic, &count)) = partitions_per_topic.get_key_value(topic) else {
                continue;
            };
            if !member.topics.contains(topic.as_str()) {
                continue;
            }
            let existing = partition_ids(count);
            for &partition in partitions.iter().filter(|&&p| existing.contains(&p)) {
                let claim = newest
                    .entry((topic.as_str(), partition))
                    .or_insert((generation, Some(i)));
                match generation.cmp(&claim.0) {
                    Ordering::Greater => *claim = (generation, Some(i)),
                    Ordering::Equal if claim.1 != Some(i) => claim.1 = None,
                    _ => {}
                }
            }
        }
    }
    newest
        .into_iter()
        .filter_map(|(tp, (_, owner))| owner.map(|o| (tp, o)))
        .collect()
}

/// Gives every subscribed partition without a valid owner to the candidate
/// holding the fewest (ties: member order), partitions with the fewest
/// candidates first. A candidate with the fewest is the emptiest of its
/// class, so a balanced class stays balanced.
fn place_unowned<'a>(
    members: &[Member<'a>],
    partitions_per_topic: &'a BTreeMap<String, u32>,
    owners: &BTreeMap<TopicPartition<'a>, usize>,
    held: &mut [BTreeSet<TopicPartition<'a>>],
) {
    let candidates: BTreeMap<&str, Vec<usize>> = partitions_per_topic
        .keys()
        .map(|t| {
            (
                t.as_str(),
                (0..members.len())
                    .filter(|&i| members[i].topics.contains(t.as_str()))
                    .collect(),
            )
        })
        .collect();
    let mut unowned: Vec<(usize, TopicPartition<'a>)> = Vec::new();
    for (topic, &count) in partitions_per_topic {
        let n = candidates.get(topic.as_str()).map_or(0, Vec::len);
        if n > 0 {
            let free = partition_ids(count).filter(|&p| !owners.contains_key(&(topic.as_str(), p)));
            unowned.extend(free.map(|p| (n, (topic.as_str(), p))));
        }
    }
    unowned.sort_unstable();
    for (_, tp) in unowned {
        let fewest = candidates
            .get(tp.0)
            .and_then(|c| c.iter().copied().min_by_key(|&i| (held[i].len(), i)));
        if let Some(to) = fewest {
            held[to].insert(tp);
        }
    }
}

/// Within each class of members with identical (narrowed) subscriptions,
/// moves partitions from the fullest member to the emptiest until their
/// counts differ by at most one. Any partition of a member can move within
/// its class; newly placed ones move before ones the member owned.
fn balance_classes<'a>(
    members: &[Member<'a>],
    owners: &BTreeMap<TopicPartition<'a>, usize>,
    held: &mut [BTreeSet<TopicPartition<'a>>],
) {
    let mut classes: BTreeMap<&BTreeSet<&str>, Vec<usize>> = BTreeMap::new();
    for (i, member) in members.iter().enumerate() {
        classes.entry(&member.topics).or_default().push(i);
    }
    for class in classes.values() {
        // Fullest: most held, first in member order; emptiest: fewest, first.
        while let (Some(&from), Some(&to)) = (
            class.iter().max_by_key(|&&i| (held[i].len(), std::cmp::Reverse(i))),
            class.iter().min_by_key(|&&i| (held[i].len(), i)),
        ) {
            if held[from].len() <= held[to].len() + 1 {
                break;
            }
            let newly_placed = held[from]
                .iter()
                .rev()
                .find(|tp| owners.get(tp) != Some(&from))
                .copied();
            let Some(tp) = newly_placed.or_else(|| held[from].last().copied()) else {
                break;
            };
            held[from].remove(&tp);
            held[to].insert(tp);
        }
    }
}

#[cfg(test)]
mod tests;
