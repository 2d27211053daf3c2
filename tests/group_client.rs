//! The native client's `GroupConsumer` against a real broker: two members of
//! one group split a 4-partition topic (disjoint, covering), consume every
//! record exactly once with manual commits, the survivor takes over every
//! partition well within the session timeout once the other closes, and the
//! committed offsets read back as they were committed.

mod common;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::Broker;
use glommio::{LocalExecutorBuilder, Placement};
use sluice::api::{OffsetSpec, TopicConfig};
use sluice::client::{
    partition_for_key, Client, ClientConfig, ConsumerConfig, GroupConfig, GroupConsumer, OffsetReset, Producer,
    ProducerConfig, Rebalance,
};

const TOPIC: &str = "orders";
const GROUP: &str = "workers";
const PARTITIONS: u32 = 4;
/// Broker flags: a short initial rebalance delay keeps the test quick.
const BROKER_FLAGS: &[&str] = &["--group-initial-rebalance-delay-ms", "100"];
/// The broker's minimum session timeout.
const SESSION: Duration = Duration::from_millis(6_000);
/// Short heartbeats: a rebalance reaches a member within this.
const HEARTBEAT: Duration = Duration::from_millis(300);
const POLL: Duration = Duration::from_millis(100);

/// What one member task last reported, after its latest poll.
#[derive(Debug, Default)]
struct View {
    assignment: Vec<(String, u32)>,
    generation: i32,
    events: Vec<Rebalance>,
}

/// State the test shares with the member tasks.
#[derive(Default)]
struct Shared {
    /// Record value -> times delivered.
    seen: RefCell<HashMap<u64, u32>>,
    /// Partition -> offset committed (acknowledged commits only).
    committed: RefCell<BTreeMap<u32, i64>>,
    views: [RefCell<View>; 2],
    stop: [Cell<bool>; 2],
}

fn group_config() -> GroupConfig {
    GroupConfig {
        session_timeout: SESSION,
        heartbeat_interval: HEARTBEAT,
        auto_commit: false,
        ..GroupConfig::new(GROUP)
    }
}

fn earliest() -> ConsumerConfig {
    ConsumerConfig {
        reset: OffsetReset::Earliest,
        ..ConsumerConfig::default()
    }
}

/// Member `idx`: poll, count what it got, commit it; until told to stop.
/// The group is stable whenever records flow in this test, so every commit
/// must succeed.
async fn run_member(idx: usize, mut c: GroupConsumer, shared: Rc<Shared>) -> GroupConsumer {
    while !shared.stop[idx].get() {
        let records = c.poll(POLL).await.expect("poll");
        let mut next: BTreeMap<u32, i64> = BTreeMap::new();
        for r in &records {
            assert_eq!(&*r.topic, TOPIC);
            let value: u64 = std::str::from_utf8(r.value.as_deref().expect("value"))
                .expect("utf8")
                .parse()
                .expect("number");
            *shared.seen.borrow_mut().entry(value).or_default() += 1;
            next.insert(r.partition, r.offset + 1);
        }
        if !next.is_empty() {
            let offsets: Vec<(&str, u32, i64)> = next.iter().map(|(p, o)| (TOPIC, *p, *o)).collect();
            c.commit_offsets(&offsets)
                .await
                .expect("a commit in a stable group takes");
            shared.committed.borrow_mut().extend(next);
        }
        let mut view = shared.views[idx].borrow_mut();
        view.assignment = c.assignment();
        view.generation = c.generation();
    }
    c
}

/// Polls `cond` every 20 ms until it holds; fails with `what` and the
/// members' views after `limit`. Returns how long it took.
async fn wait_until(shared: &Shared, limit: Duration, what: &str, cond: impl Fn(&Shared) -> bool) -> Duration {
    let started = Instant::now();
    while !cond(shared) {
        assert!(
            started.elapsed() < limit,
            "{what}: not within {limit:?}; views: {:?} / {:?}; {} values seen",
            shared.views[0].borrow(),
            shared.views[1].borrow(),
            shared.seen.borrow().len()
        );
        glommio::timer::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

/// Both members in the same generation own disjoint sets covering every
/// partition, each some. Checks disjointness of every same-generation
/// sample on the way.
fn split_between_two(shared: &Shared) -> bool {
    let (a, b) = (shared.views[0].borrow(), shared.views[1].borrow());
    if a.generation < 0 || a.generation != b.generation {
        return false;
    }
    let a_set: BTreeSet<&(String, u32)> = a.assignment.iter().collect();
    let b_set: BTreeSet<&(String, u32)> = b.assignment.iter().collect();
    assert!(
        a_set.is_disjoint(&b_set),
        "generation {}: {a_set:?} overlaps {b_set:?}",
        a.generation
    );
    let all: BTreeSet<u32> = a_set.union(&b_set).map(|(_, p)| *p).collect();
    !a_set.is_empty() && !b_set.is_empty() && all == (0..PARTITIONS).collect()
}

fn all_partitions() -> Vec<(String, u32)> {
    (0..PARTITIONS).map(|p| (TOPIC.to_string(), p)).collect()
}

/// Produces values `values` keyed `k<value>` and waits for every ack.
async fn produce(client: &Client, values: std::ops::Range<u64>) {
    let producer = Producer::new(client.clone(), ProducerConfig::default());
    let sends: Vec<_> = values
        .map(|i| {
            let key = Bytes::from(format!("k{i}"));
            producer.send(TOPIC, Some(key), Some(Bytes::from(i.to_string())), Vec::new())
        })
        .collect();
    producer.flush().await;
    for s in sends {
        s.await.expect("acknowledged");
    }
}

async fn log_ends(client: &Client) -> BTreeMap<u32, i64> {
    let specs: Vec<(u32, OffsetSpec)> = (0..PARTITIONS).map(|p| (p, OffsetSpec::Latest)).collect();
    client
        .list_offsets(TOPIC, &specs)
        .await
        .expect("list offsets")
        .into_iter()
        .map(|(p, o)| (p, o.expect("end offset")))
        .collect()
}

/// Waits until every value in `0..total` was seen and every commit covers
/// the log ends, then checks each value came exactly once.
async fn wait_consumed_once(shared: &Shared, client: &Client, total: u64) {
    let ends = log_ends(client).await;
    wait_until(
        shared,
        Duration::from_secs(60),
        "every record consumed and committed",
        |s| s.seen.borrow().len() as u64 == total && *s.committed.borrow() == ends,
    )
    .await;
    let seen = shared.seen.borrow();
    let twice: Vec<(&u64, &u32)> = seen.iter().filter(|(_, n)| **n != 1).take(10).collect();
    assert!(twice.is_empty(), "values delivered more than once: {twice:?}");
    assert!((0..total).all(|v| seen.contains_key(&v)), "a value outside 0..{total}");
}

/// The group's committed offsets as the broker's admin API and a
/// `GroupConsumer` that is not a member read them.
async fn committed_everywhere(admin: &Client, observer: &GroupConsumer) -> (BTreeMap<u32, i64>, BTreeMap<u32, i64>) {
    let by_admin = admin
        .group_offsets(GROUP)
        .await
        .expect("group offsets")
        .into_iter()
        .map(|(t, p, o, _)| {
            assert_eq!(t, TOPIC);
            (p, o)
        })
        .collect();
    let mut by_member = BTreeMap::new();
    for p in 0..PARTITIONS {
        if let Some(o) = observer.committed(TOPIC, p).await.expect("committed") {
            by_member.insert(p, o);
        }
    }
    (by_admin, by_member)
}

#[test]
fn two_members_split_a_topic_consume_once_and_the_survivor_takes_over() {
    const FIRST: u64 = 2_000;
    const SECOND: u64 = 500;
    let keyed_partitions: BTreeSet<u32> = (0..FIRST)
        .map(|i| partition_for_key(format!("k{i}").as_bytes(), PARTITIONS))
        .collect();
    assert_eq!(
        keyed_partitions.len(),
        PARTITIONS as usize,
        "the keys reach every partition"
    );

    let broker = Broker::start(2, BROKER_FLAGS);
    let bootstrap = broker.bootstrap();
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(1 << 20)
        .spawn(move || async move {
            let admin = Client::connect(&bootstrap, ClientConfig::default())
                .await
                .expect("connect");
            admin
                .create_topic(TOPIC, PARTITIONS, TopicConfig::default())
                .await
                .expect("create");
            let shared = Rc::new(Shared::default());
            let mut tasks = Vec::new();
            for idx in 0..2 {
                let client = Client::connect(&bootstrap, ClientConfig::default())
                    .await
                    .expect("connect");
                let mut c = GroupConsumer::new(client, earliest(), group_config());
                c.subscribe(&[TOPIC]);
                let s = shared.clone();
                c.on_rebalance(move |e| s.views[idx].borrow_mut().events.push(e.clone()));
                tasks.push(glommio::spawn_local(run_member(idx, c, shared.clone())));
            }

            // 1. The two members split the partitions.
            let took = wait_until(
                &shared,
                Duration::from_secs(30),
                "two members split 4 partitions",
                split_between_two,
            )
            .await;
            eprintln!("two members stable in {took:?}");
            let generation = shared.views[0].borrow().generation;

            // 2. Every record consumed exactly once between them, committed.
            produce(&admin, 0..FIRST).await;
            wait_consumed_once(&shared, &admin, FIRST).await;
            for v in &shared.views {
                assert_eq!(v.borrow().generation, generation, "no rebalance while stable");
            }
            let observer = GroupConsumer::new(admin.clone(), earliest(), group_config());
            let (by_admin, by_member) = committed_everywhere(&admin, &observer).await;
            assert_eq!(
                by_admin,
                *shared.committed.borrow(),
                "committed offsets read back (admin)"
            );
            assert_eq!(
                by_member,
                *shared.committed.borrow(),
                "committed offsets read back (member)"
            );

            // 3. Member 0 closes: member 1 gets every partition, well
            // within the session timeout (LeaveGroup, not expiry).
            let owned_by_0 = shared.views[0].borrow().assignment.clone();
            shared.stop[0].set(true);
            let first = tasks.remove(0).await;
            let closed_at = Instant::now();
            first.close().await.expect("leave the group");
            wait_until(&shared, SESSION, "the survivor owns every partition", |s| {
                s.views[1].borrow().assignment == all_partitions()
            })
            .await;
            eprintln!("takeover {:?} after close", closed_at.elapsed());
            assert_eq!(
                shared.views[0].borrow().events.last(),
                Some(&Rebalance::Revoked(owned_by_0)),
                "close revokes"
            );
            assert_eq!(
                shared.views[1].borrow().events.last(),
                Some(&Rebalance::Assigned(all_partitions())),
                "the survivor is told"
            );
            assert!(shared.views[1].borrow().generation > generation);

            // 4. The survivor continues from the commits: new records once,
            // old ones not again.
            produce(&admin, FIRST..FIRST + SECOND).await;
            wait_consumed_once(&shared, &admin, FIRST + SECOND).await;
            shared.stop[1].set(true);
            let second = tasks.remove(0).await;
            second.close().await.expect("leave the group");

            let ends = log_ends(&admin).await;
            let (by_admin, by_member) = committed_everywhere(&admin, &observer).await;
            assert_eq!(by_admin, ends, "everything consumed is committed");
            assert_eq!(by_member, ends);
            let group = admin.describe_group(GROUP).await.expect("describe");
            assert_eq!(group.state, "Empty", "both members left: {group:?}");
        })
        .expect("executor starts")
        .join()
        .expect("test body does not panic");
}
