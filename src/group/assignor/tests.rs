//! Tests of the assignors: Kafka's documented examples for each, and
//! properties over random groups (valid, order-independent, balanced).

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
