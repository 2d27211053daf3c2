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
mod tests {
    use proptest::collection::vec;
    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::super::consumer_protocol::GENERATION_ID_UNKNOWN;
    use super::*;

    fn member(id: &str, topics: &[&str]) -> MemberSubscription {
        MemberSubscription {
            member_id: id.to_owned(),
            group_instance_id: None,
            subscription: Subscription::new(topics.iter().map(|t| t.to_string()).collect()),
        }
    }

    fn owning(mut m: MemberSubscription, generation_id: i32, owned: Topics) -> MemberSubscription {
        m.subscription.owned_partitions = owned.iter().map(|(t, p)| (t.to_string(), p.to_vec())).collect();
        m.subscription.generation_id = generation_id;
        m
    }

    fn counts(list: &[(&str, u32)]) -> BTreeMap<String, u32> {
        list.iter().map(|(t, n)| (t.to_string(), *n)).collect()
    }

    /// (topic, partitions) pairs, as written in a test.
    type Topics<'a> = &'a [(&'a str, &'a [i32])];

    fn expected(list: &[(&str, Topics)]) -> AssignmentMap {
        list.iter()
            .map(|(m, topics)| {
                (
                    m.to_string(),
                    topics.iter().map(|(t, p)| (t.to_string(), p.to_vec())).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn range_kafka_doc_example() {
        let members = [member("C0", &["t0", "t1"]), member("C1", &["t0", "t1"])];
        let out = RangeAssignor.assign(&members, &counts(&[("t0", 3), ("t1", 3)]));
        let want = expected(&[
            ("C0", &[("t0", &[0, 1]), ("t1", &[0, 1])]),
            ("C1", &[("t0", &[2]), ("t1", &[2])]),
        ]);
        assert_eq!(out, want);
    }

    #[test]
    fn range_orders_static_members_first_by_instance_id() {
        let mut a = member("m-a", &["t"]);
        a.group_instance_id = Some("z".into());
        let mut b = member("m-b", &["t"]);
        b.group_instance_id = Some("a".into());
        let dynamic = member("m-0", &["t"]);
        let out = RangeAssignor.assign(&[dynamic, a, b], &counts(&[("t", 5)]));
        assert_eq!(
            out,
            expected(&[
                ("m-b", &[("t", &[0, 1])]),
                ("m-a", &[("t", &[2, 3])]),
                ("m-0", &[("t", &[4])])
            ])
        );
    }

    #[test]
    fn roundrobin_kafka_doc_example() {
        let members = [member("C0", &["t0", "t1"]), member("C1", &["t0", "t1"])];
        let out = RoundRobinAssignor.assign(&members, &counts(&[("t0", 3), ("t1", 3)]));
        let want = expected(&[
            ("C0", &[("t0", &[0, 2]), ("t1", &[1])]),
            ("C1", &[("t0", &[1]), ("t1", &[0, 2])]),
        ]);
        assert_eq!(out, want);
    }

    #[test]
    fn roundrobin_kafka_doc_example_with_differing_subscriptions() {
        let members = [
            member("C0", &["t0"]),
            member("C1", &["t0", "t1"]),
            member("C2", &["t0", "t1", "t2"]),
        ];
        let out = RoundRobinAssignor.assign(&members, &counts(&[("t0", 1), ("t1", 2), ("t2", 3)]));
        let want = expected(&[
            ("C0", &[("t0", &[0])]),
            ("C1", &[("t1", &[0])]),
            ("C2", &[("t1", &[1]), ("t2", &[0, 1, 2])]),
        ]);
        assert_eq!(out, want);
    }

    /// As in Kafka: skipping members unsubscribed from a topic can leave two
    /// members with identical subscriptions two partitions apart.
    #[test]
    fn roundrobin_can_be_uneven_with_differing_subscriptions() {
        let members = [member("A", &["a", "c"]), member("B", &["a", "c"]), member("X", &["b"])];
        let out = RoundRobinAssignor.assign(&members, &counts(&[("a", 3), ("b", 1), ("c", 1)]));
        let want = expected(&[
            ("A", &[("a", &[0, 2]), ("c", &[0])]),
            ("B", &[("a", &[1])]),
            ("X", &[("b", &[0])]),
        ]);
        assert_eq!(out, want);
    }

    #[test]
    fn unknown_topics_are_skipped_and_every_member_has_an_entry() {
        let members = [
            member("ghostly", &["ghost"]),
            member("real", &["t", "ghost"]),
            member("none", &[]),
        ];
        for name in ALL {
            let out = by_name(name)
                .unwrap()
                .assign(&members, &counts(&[("t", 2), ("unsubscribed", 4)]));
            assert_eq!(
                out,
                expected(&[("ghostly", &[]), ("none", &[]), ("real", &[("t", &[0, 1])])]),
                "{name}"
            );
        }
    }

    #[test]
    fn no_members_no_assignment() {
        for name in ALL {
            assert!(
                by_name(name).unwrap().assign(&[], &counts(&[("t", 3)])).is_empty(),
                "{name}"
            );
        }
    }

    #[test]
    fn by_name_knows_every_assignor() {
        for name in ALL {
            assert_eq!(by_name(name).map(|a| a.name()), Some(name));
        }
        assert!(by_name("cooperative-sticky").is_none());
    }

    /// Kafka's StickyAssignor javadoc example: C1 leaves; C0 and C2 keep
    /// everything and split C1's partitions.
    #[test]
    fn sticky_kafka_doc_example() {
        let all = ["t0", "t1", "t2", "t3"];
        let partitions = counts(&[("t0", 2), ("t1", 2), ("t2", 2), ("t3", 2)]);
        let c0 = owning(member("C0", &all), 1, &[("t0", &[0]), ("t1", &[1]), ("t3", &[0])]);
        let c1 = owning(member("C1", &all), 1, &[("t0", &[1]), ("t2", &[0]), ("t3", &[1])]);
        let c2 = owning(member("C2", &all), 1, &[("t1", &[0]), ("t2", &[1])]);
        let out = StickyAssignor.assign(&[c0.clone(), c1, c2.clone()], &partitions);
        let want = expected(&[
            ("C0", &[("t0", &[0]), ("t1", &[1]), ("t3", &[0])]),
            ("C1", &[("t0", &[1]), ("t2", &[0]), ("t3", &[1])]),
            ("C2", &[("t1", &[0]), ("t2", &[1])]),
        ]);
        assert_eq!(out, want, "a balanced group keeps its assignment");
        let out = StickyAssignor.assign(&[c0, c2], &partitions);
        let want = expected(&[
            ("C0", &[("t0", &[0]), ("t1", &[1]), ("t2", &[0]), ("t3", &[0])]),
            ("C2", &[("t0", &[1]), ("t1", &[0]), ("t2", &[1]), ("t3", &[1])]),
        ]);
        assert_eq!(out, want);
    }

    #[test]
    fn sticky_new_member_takes_only_its_share() {
        let a = owning(member("A", &["t"]), 3, &[("t", &[0, 1, 2, 3])]);
        let b = owning(member("B", &["t"]), 3, &[("t", &[4, 5, 6, 7])]);
        let c = owning(member("C", &["t"]), 3, &[("t", &[8, 9, 10, 11])]);
        let out = StickyAssignor.assign(&[a, b, c, member("D", &["t"])], &counts(&[("t", 12)]));
        for (m, own) in [("A", 0..4), ("B", 4..8), ("C", 8..12)] {
            let kept = &out[m]["t"];
            assert_eq!(kept.len(), 3, "{m}: {out:?}");
            assert!(kept.iter().all(|p| own.contains(p)), "{m} keeps 3 of its own: {out:?}");
        }
        assert_eq!(out["D"]["t"].len(), 3);
    }

    #[test]
    fn sticky_newest_claim_wins() {
        let stale = owning(member("A", &["t"]), 1, &[("t", &[0])]);
        let fresh = owning(member("B", &["t"]), 2, &[("t", &[0])]);
        let out = StickyAssignor.assign(&[stale, fresh], &counts(&[("t", 2)]));
        assert_eq!(out, expected(&[("A", &[("t", &[1])]), ("B", &[("t", &[0])])]));
    }

    #[test]
    fn sticky_equal_newest_claims_cancel() {
        // Without the cancel, B or C would keep t-0; unowned, it goes to A
        // (first in member order among equals).
        let a = member("A", &["t"]);
        let b = owning(member("B", &["t"]), 5, &[("t", &[0])]);
        let c = owning(member("C", &["t"]), 5, &[("t", &[0])]);
        let out = StickyAssignor.assign(&[a, b, c], &counts(&[("t", 1)]));
        assert_eq!(out, expected(&[("A", &[("t", &[0])]), ("B", &[]), ("C", &[])]));
    }

    #[test]
    fn sticky_ignores_claims_on_unsubscribed_topics_and_missing_partitions() {
        let a = owning(
            member("A", &["t"]),
            GENERATION_ID_UNKNOWN,
            &[("t", &[7, 1]), ("u", &[0]), ("gone", &[0])],
        );
        let b = member("B", &["t", "u"]);
        let out = StickyAssignor.assign(&[a, b], &counts(&[("t", 2), ("u", 1)]));
        // A keeps t-1; u-0 has one candidate (B) so goes first; t-0 then goes
        // to A, first in member order at one partition each.
        assert_eq!(out, expected(&[("A", &[("t", &[0, 1])]), ("B", &[("u", &[0])])]));
    }

    type Scenario = (Vec<MemberSubscription>, BTreeMap<String, u32>);

    /// 1..=8 members, 1..=5 topics of 1..=20 partitions, random
    /// subscriptions (identical ones if `identical`) that may name a topic
    /// without metadata, some static members.
    fn scenario(identical: bool) -> impl Strategy<Value = Scenario> {
        (vec(1u32..=20, 1..=5), 1usize..=8)
            .prop_flat_map(|(partition_counts, member_count)| {
                let masks = vec(vec(any::<bool>(), partition_counts.len() + 1), member_count);
                (Just(partition_counts), masks, vec(any::<bool>(), member_count))
            })
            .prop_map(move |(partition_counts, masks, statics)| {
                let topic = |i: usize| {
                    if i == partition_counts.len() {
                        "ghost".to_owned()
                    } else {
                        format!("t{i}")
                    }
                };
                let members = (0..masks.len())
                    .map(|j| {
                        let mask = if identical { &masks[0] } else { &masks[j] };
                        let topics = (0..mask.len()).filter(|&i| mask[i]).map(topic).collect();
                        MemberSubscription {
                            member_id: format!("member-{j}"),
                            group_instance_id: statics[j].then(|| format!("instance-{}", masks.len() - j)),
                            subscription: Subscription::new(topics),
                        }
                    })
                    .collect();
                let partitions = partition_counts
                    .iter()
                    .enumerate()
                    .map(|(i, n)| (topic(i), *n))
                    .collect();
                (members, partitions)
            })
    }

    fn effective(m: &MemberSubscription, partitions: &BTreeMap<String, u32>) -> BTreeSet<String> {
        m.subscription
            .topics
            .iter()
            .filter(|t| partitions.contains_key(*t))
            .cloned()
            .collect()
    }

    fn total(topics: &BTreeMap<String, Vec<i32>>) -> usize {
        topics.values().map(Vec::len).sum()
    }

    /// Every subscribed partition goes to exactly one subscriber; nothing
    /// else is assigned; every member has an entry; lists sorted, non-empty.
    fn check_valid(members: &[MemberSubscription], partitions: &BTreeMap<String, u32>, out: &AssignmentMap) {
        let ids: BTreeSet<&String> = members.iter().map(|m| &m.member_id).collect();
        assert_eq!(out.keys().collect::<BTreeSet<_>>(), ids);
        let mut owner = BTreeMap::new();
        for m in members {
            let subscribed = effective(m, partitions);
            for (topic, ps) in &out[&m.member_id] {
                assert!(subscribed.contains(topic), "{} got unsubscribed {topic}", m.member_id);
                assert!(!ps.is_empty() && ps.windows(2).all(|w| w[0] < w[1]), "{ps:?}");
                for &p in ps {
                    assert!(p >= 0 && u32::try_from(p).unwrap() < partitions[topic], "{topic}-{p}");
                    assert_eq!(
                        owner.insert((topic.clone(), p), &m.member_id),
                        None,
                        "{topic}-{p} twice"
                    );
                }
            }
        }
        for (topic, &n) in partitions {
            if members.iter().any(|m| effective(m, partitions).contains(topic)) {
                for p in 0..i32::try_from(n).unwrap() {
                    assert!(owner.contains_key(&(topic.clone(), p)), "{topic}-{p} unassigned");
                }
            }
        }
    }

    /// Members with identical effective subscriptions own counts at most one apart.
    fn check_class_balance(members: &[MemberSubscription], partitions: &BTreeMap<String, u32>, out: &AssignmentMap) {
        let mut classes: BTreeMap<BTreeSet<String>, Vec<usize>> = BTreeMap::new();
        for m in members {
            classes
                .entry(effective(m, partitions))
                .or_default()
                .push(total(&out[&m.member_id]));
        }
        for (class, held) in classes {
            let (min, max) = (held.iter().min().unwrap(), held.iter().max().unwrap());
            assert!(max - min <= 1, "{class:?}: {held:?} in {out:?}");
        }
    }

    fn owning_assignment(m: &MemberSubscription, out: &AssignmentMap, generation_id: i32) -> MemberSubscription {
        let mut m = m.clone();
        m.subscription.owned_partitions = out[&m.member_id].iter().map(|(t, p)| (t.clone(), p.clone())).collect();
        m.subscription.generation_id = generation_id;
        m
    }

    proptest! {
        #[test]
        fn every_assignor_is_valid_and_order_independent((members, partitions) in scenario(false), rotate in any::<Index>()) {
            let mut shuffled = members.clone();
            shuffled.reverse();
            shuffled.rotate_left(rotate.index(members.len()));
            for name in ALL {
                let assignor = by_name(name).unwrap();
                let out = assignor.assign(&members, &partitions);
                check_valid(&members, &partitions, &out);
                prop_assert_eq!(&assignor.assign(&members, &partitions), &out, "{} deterministic", name);
                prop_assert_eq!(&assignor.assign(&shuffled, &partitions), &out, "{} order-independent", name);
            }
        }

        #[test]
        fn range_is_balanced_per_topic((members, partitions) in scenario(false)) {
            let out = RangeAssignor.assign(&members, &partitions);
            for topic in partitions.keys() {
                let held: Vec<usize> = members
                    .iter()
                    .filter(|m| effective(m, &partitions).contains(topic))
                    .map(|m| out[&m.member_id].get(topic).map_or(0, Vec::len))
                    .collect();
                if let (Some(min), Some(max)) = (held.iter().min(), held.iter().max()) {
                    prop_assert!(max - min <= 1, "{}: {:?}", topic, held);
                }
            }
        }

        #[test]
        fn roundrobin_is_balanced_with_identical_subscriptions((members, partitions) in scenario(true)) {
            let out = RoundRobinAssignor.assign(&members, &partitions);
            check_valid(&members, &partitions, &out);
            check_class_balance(&members, &partitions, &out);
        }

        #[test]
        fn sticky_balances_members_with_identical_subscriptions((members, partitions) in scenario(false)) {
            check_class_balance(&members, &partitions, &StickyAssignor.assign(&members, &partitions));
        }

        #[test]
        fn sticky_keeps_a_balanced_assignment((members, partitions) in scenario(false)) {
            let before = StickyAssignor.assign(&members, &partitions);
            let owning: Vec<_> = members.iter().map(|m| owning_assignment(m, &before, 1)).collect();
            prop_assert_eq!(StickyAssignor.assign(&owning, &partitions), before);
        }

        #[test]
        fn sticky_survivors_keep_everything_when_a_member_leaves(
            (members, partitions) in scenario(false),
            leaver in any::<Index>(),
        ) {
            let before = StickyAssignor.assign(&members, &partitions);
            let leaver = leaver.index(members.len());
            let survivors: Vec<_> = members
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != leaver)
                .map(|(_, m)| owning_assignment(m, &before, 1))
                .collect();
            let after = StickyAssignor.assign(&survivors, &partitions);
            check_valid(&survivors, &partitions, &after);
            check_class_balance(&survivors, &partitions, &after);
            for m in &survivors {
                for (topic, ps) in &before[&m.member_id] {
                    let kept = after[&m.member_id].get(topic);
                    prop_assert!(ps.iter().all(|p| kept.is_some_and(|k| k.contains(p))), "{} lost {}: {:?}", m.member_id, topic, after);
                }
            }
        }

        #[test]
        fn sticky_survives_arbitrary_claims(
            (members, partitions) in scenario(false),
            claims in vec((0usize..8, 0usize..6, -2i32..25, -1i32..3), 0..40),
        ) {
            let mut members = members;
            for (who, topic, partition, generation) in claims {
                let n = members.len();
                let sub = &mut members[who % n].subscription;
                let topic = if topic == 5 { "ghost".to_owned() } else { format!("t{topic}") };
                sub.owned_partitions.push((topic, vec![partition]));
                sub.generation_id = generation;
            }
            let out = StickyAssignor.assign(&members, &partitions);
            check_valid(&members, &partitions, &out);
            check_class_balance(&members, &partitions, &out);
        }
    }
}
