//! Consumer groups against real broker processes: partition ownership and
//! takeover across clean stops and kill -9 of members (the members are
//! `sluice consume --group` processes), at-least-once processing with manual
//! commits through rebalances, and committed offsets that survive broker
//! restarts and crashes.

mod common;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{with_client, Broker};
use sluice::api::{DescribedGroup, TopicConfig};
use sluice::client::{
    Client, ClientConfig, ConsumerConfig, GroupConfig, GroupConsumer, OffsetReset, Producer, ProducerConfig,
};
use sluice::group::consumer_protocol::Assignment;

/// Session timeout of the members in these tests (the broker's minimum).
const SESSION_MS: u64 = 6_000;
/// Broker flags: a short initial rebalance delay keeps the tests quick.
const BROKER_FLAGS: &[&str] = &["--group-initial-rebalance-delay-ms", "200"];

fn group_config(group: &str) -> GroupConfig {
    GroupConfig {
        session_timeout: Duration::from_millis(SESSION_MS),
        heartbeat_interval: Duration::from_millis(SESSION_MS / 3),
        auto_commit: false,
        ..GroupConfig::new(group)
    }
}

fn earliest() -> ConsumerConfig {
    ConsumerConfig {
        reset: OffsetReset::Earliest,
        ..ConsumerConfig::default()
    }
}

/// Produces `values` to `topic` (keyed by value, so every partition gets
/// some; acks=all) and waits for every ack.
async fn produce(client: &Client, topic: &str, values: std::ops::Range<u64>) {
    let producer = Producer::new(client.clone(), ProducerConfig::default());
    let sends: Vec<_> = values
        .map(|i| {
            let v = Bytes::from(i.to_string());
            producer.send(topic, Some(v.clone()), Some(v), Vec::new())
        })
        .collect();
    producer.flush().await;
    for s in sends {
        s.await.expect("acknowledged");
    }
}

/// Partitions each member of `g` owns, decoded from the assignments the
/// coordinator holds.
fn ownership(g: &DescribedGroup) -> Vec<(String, BTreeSet<u32>)> {
    g.members
        .iter()
        .map(|m| {
            let a = Assignment::decode(&m.assignment).expect("assignment decodes");
            let owned = a
                .partitions
                .into_iter()
                .flat_map(|(_, ps)| ps.into_iter().map(|p| p as u32))
                .collect();
            (m.member_id.clone(), owned)
        })
        .collect()
}

/// Polls the group's description until it is Stable with `members` members
/// owning disjoint sets that cover partitions 0..`partitions`, checking
/// every Stable sample on the way for double ownership. Returns how long it
/// took.
fn wait_for_owners(bootstrap: &str, group: &str, members: usize, partitions: u32, limit: Duration) -> Duration {
    let (bootstrap, group) = (bootstrap.to_string(), group.to_string());
    let started = Instant::now();
    with_client(&bootstrap, move |client| async move {
        let deadline = Instant::now() + limit;
        loop {
            let g = client.describe_group(&group).await.expect("describe");
            if g.state == "Stable" {
                let owners = ownership(&g);
                let mut seen = BTreeSet::new();
                for (member, owned) in &owners {
                    for p in owned {
                        assert!(
                            seen.insert(*p),
                            "partition {p} owned twice (by {member} too): {owners:?}"
                        );
                    }
                }
                if owners.len() == members && seen == (0..partitions).collect() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "group {group} did not settle on {members} members in {limit:?}; last: {} with {} members: {:?}",
                g.state,
                g.members.len(),
                ownership(&g)
            );
            glommio::timer::sleep(Duration::from_millis(50)).await;
        }
    });
    started.elapsed()
}

/// A `sluice consume --group` process.
fn spawn_member(bootstrap: &str, topic: &str, group: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["consume", "--bootstrap", bootstrap, "--topic", topic, "--group", group])
        .args(["--session-timeout-ms", &SESSION_MS.to_string()])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("sluice consume starts")
}

/// Kills and reaps the children when the test ends, however it ends.
struct Members(Vec<Child>);

impl Drop for Members {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn three_members_share_six_partitions_and_take_over_after_a_stop_and_a_kill() {
    let broker = Broker::start(2, BROKER_FLAGS);
    let bootstrap = broker.bootstrap();
    with_client(&bootstrap, |client| async move {
        client
            .create_topic("orders", 6, TopicConfig::default())
            .await
            .expect("create");
    });
    let mut members = Members((0..3).map(|_| spawn_member(&bootstrap, "orders", "g1")).collect());
    wait_for_owners(&bootstrap, "g1", 3, 6, Duration::from_secs(30));

    // A clean stop: the member leaves the group, the others take over at
    // once, well within the session timeout.
    let mut stopped = members.0.remove(0);
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(stopped.id() as i32, libc::SIGTERM) };
    let status = stopped.wait().expect("member exits");
    assert!(status.success(), "a SIGTERMed member exits cleanly: {status}");
    let took = wait_for_owners(&bootstrap, "g1", 2, 6, Duration::from_millis(SESSION_MS));
    eprintln!("clean leave: partitions moved in {took:?}");

    // A crash: no LeaveGroup; the coordinator notices when the session
    // times out, then the rest rebalance.
    members.0.push(spawn_member(&bootstrap, "orders", "g1"));
    wait_for_owners(&bootstrap, "g1", 3, 6, Duration::from_secs(30));
    let mut killed = members.0.remove(0);
    killed.kill().expect("kill -9");
    killed.wait().expect("reaped");
    let took = wait_for_owners(
        &bootstrap,
        "g1",
        2,
        6,
        Duration::from_millis(SESSION_MS) + Duration::from_secs(15),
    );
    eprintln!("kill -9: partitions moved in {took:?}");
}

/// What the consumers of one run saw: value -> times processed.
type Seen = Rc<RefCell<HashMap<u64, u32>>>;

/// One member: poll, process (count the values), commit what was
/// processed; until `done` says so.
async fn member_loop(mut c: GroupConsumer, seen: Seen, done: Rc<dyn Fn() -> bool>) -> GroupConsumer {
    while !done() {
        let records = match c.poll(Duration::from_millis(100)).await {
            Ok(r) => r,
            Err(e) => panic!("poll failed: {e}"),
        };
        let mut next = BTreeMap::new();
        for r in &records {
            let v: u64 = std::str::from_utf8(r.value.as_deref().expect("value"))
                .expect("utf8")
                .parse()
                .expect("number");
            *seen.borrow_mut().entry(v).or_default() += 1;
            next.insert((r.topic.clone(), r.partition), r.offset + 1);
        }
        if !next.is_empty() {
            let offsets: Vec<_> = next.into_iter().map(|((t, p), o)| (t, p, o)).collect();
            // A commit refused because the group rebalanced meanwhile is
            // fine: those records will be processed again (at least once).
            let _ = c.commit_offsets(&offsets).await;
        }
    }
    c
}

#[test]
fn manual_commits_through_two_rebalances_lose_nothing_and_replay_from_the_commit() {
    const RECORDS: u64 = 50_000;
    let broker = Broker::start(2, BROKER_FLAGS);
    let bootstrap = broker.bootstrap();
    let b = bootstrap.clone();
    with_client(&bootstrap, move |client| async move {
        client
            .create_topic("events", 6, TopicConfig::default())
            .await
            .expect("create");
        let seen: Seen = Rc::default();
        let member = || async {
            let client = Client::connect(&b, ClientConfig::default()).await.expect("connect");
            let mut c = GroupConsumer::new(client, earliest(), group_config("g2"));
            c.subscribe(&["events"]);
            c
        };
        let all_seen = {
            let seen = seen.clone();
            Rc::new(move || seen.borrow().len() as u64 == RECORDS) as Rc<dyn Fn() -> bool>
        };
        let mut tasks = Vec::new();
        for _ in 0..3 {
            let m = member().await;
            tasks.push(glommio::spawn_local(member_loop(m, seen.clone(), all_seen.clone())));
        }
        // Produce in three parts; a fourth member joins after the first
        // (rebalance 1) and leaves after the second (rebalance 2).
        produce(&client, "events", 0..RECORDS / 3).await;
        let fourth_stop = Rc::new(std::cell::Cell::new(false));
        let extra = {
            let stop = fourth_stop.clone();
            let m = member().await;
            glommio::spawn_local(member_loop(m, seen.clone(), Rc::new(move || stop.get())))
        };
        produce(&client, "events", RECORDS / 3..2 * RECORDS / 3).await;
        fourth_stop.set(true);
        extra.await.close().await.expect("fourth member leaves");
        produce(&client, "events", 2 * RECORDS / 3..RECORDS).await;

        let deadline = Instant::now() + Duration::from_secs(120);
        while !all_seen() {
            assert!(
                Instant::now() < deadline,
                "only {} of {RECORDS} records processed",
                seen.borrow().len()
            );
            glommio::timer::sleep(Duration::from_millis(50)).await;
        }
        for t in tasks {
            t.await.close().await.expect("member leaves");
        }
        let missing: Vec<u64> = (0..RECORDS)
            .filter(|v| !seen.borrow().contains_key(v))
            .take(10)
            .collect();
        assert!(missing.is_empty(), "records never processed: {missing:?}");

        // Everything processed was committed: the committed offsets are the
        // log ends, and a new member of the group starts exactly there.
        let committed = client.group_offsets("g2").await.expect("offsets");
        assert_eq!(committed.len(), 6, "one committed offset per partition: {committed:?}");
        let ends = client
            .list_offsets(
                "events",
                &(0..6).map(|p| (p, sluice::api::OffsetSpec::Latest)).collect::<Vec<_>>(),
            )
            .await
            .expect("ends");
        for (_, p, offset, _) in &committed {
            let end = ends.iter().find(|(q, _)| q == p).and_then(|(_, e)| e.ok());
            assert_eq!(Some(*offset), end, "partition {p} committed up to its end");
        }
        produce(&client, "events", RECORDS..RECORDS + 60).await;
        let mut replay = member().await;
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while got.len() < 60 {
            assert!(Instant::now() < deadline, "replay got {} of 60 new records", got.len());
            for r in replay.poll(Duration::from_millis(100)).await.expect("poll") {
                let (_, _, committed) = committed
                    .iter()
                    .find(|(_, p, ..)| *p == r.partition)
                    .map(|(t, p, o, _)| (t, p, *o))
                    .expect("partition committed");
                assert!(
                    r.offset >= committed,
                    "redelivered {}@{} before the commit {committed}",
                    r.partition,
                    r.offset
                );
                got.push(r.offset);
            }
        }
        assert_eq!(got.len(), 60, "exactly the new records");
        replay.close().await.expect("leave");
    });
}

#[test]
fn committed_offsets_survive_restart_and_kill9_and_groups_are_independent() {
    let mut broker = Broker::start(2, BROKER_FLAGS);
    let bootstrap = broker.bootstrap();
    // Two groups on one topic each read every record, and commit.
    let committed = with_client(&bootstrap, |client| async move {
        client
            .create_topic("ledger", 4, TopicConfig::default())
            .await
            .expect("create");
        produce(&client, "ledger", 0..2_000).await;
        for group in ["audit", "billing"] {
            let mut c = GroupConsumer::new(client.clone(), earliest(), group_config(group));
            c.subscribe(&["ledger"]);
            let mut values = BTreeSet::new();
            let deadline = Instant::now() + Duration::from_secs(60);
            while values.len() < 2_000 {
                assert!(Instant::now() < deadline, "{group} read {} of 2000", values.len());
                for r in c.poll(Duration::from_millis(100)).await.expect("poll") {
                    values.insert(r.value.clone().expect("value"));
                }
            }
            c.commit().await.expect("commit");
            c.close().await.expect("leave");
        }
        let audit = client.group_offsets("audit").await.expect("offsets");
        let billing = client.group_offsets("billing").await.expect("offsets");
        assert_eq!(audit, billing, "both groups committed the same ends");
        assert_eq!(audit.iter().map(|(_, _, o, _)| o).sum::<i64>(), 2_000);
        audit
    });

    broker.stop();
    broker.restart();
    let after_restart = with_client(&bootstrap, |client| async move {
        client.group_offsets("audit").await.expect("offsets")
    });
    assert_eq!(after_restart, committed, "offsets survive a clean restart");

    // Commit something new from outside the group (it has no members),
    // then crash the broker right after the acknowledgement.
    let moved: Vec<(String, u32, i64)> = committed.iter().map(|(t, p, o, _)| (t.clone(), *p, o / 2)).collect();
    let m = moved.clone();
    with_client(&bootstrap, move |client| async move {
        client.set_group_offsets("audit", &m).await.expect("reset");
    });
    broker.kill9();
    broker.restart();
    let after_crash = with_client(&bootstrap, |client| async move {
        let groups = client.list_groups().await.expect("list");
        let ids: Vec<&str> = groups.iter().map(|g| g.group_id.as_str()).collect();
        assert_eq!(ids, vec!["audit", "billing"], "{groups:?}");
        client.group_offsets("audit").await.expect("offsets")
    });
    let got: Vec<(String, u32, i64)> = after_crash.into_iter().map(|(t, p, o, _)| (t, p, o)).collect();
    assert_eq!(got, moved, "an acknowledged commit survives kill -9");

    // The CLI shows the lag the reset created.
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["group", "describe", "audit", "--bootstrap", &bootstrap])
        .output()
        .expect("sluice group describe runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("state: Empty"), "{text}");
    let lag: i64 = text
        .lines()
        .filter(|l| l.starts_with("ledger\t"))
        .map(|l| {
            l.split('\t')
                .nth(4)
                .and_then(|v| v.parse::<i64>().ok())
                .expect("lag column")
        })
        .sum();
    assert_eq!(lag, 2_000 - moved.iter().map(|(_, _, o)| o).sum::<i64>(), "{text}");
}

/// Commits `offset` with a large metadata string for every partition of
/// `topic` (`partitions` of them), from outside the group protocol.
async fn commit_with_metadata(client: &Client, group: &str, topic: &str, partitions: u32, offset: i64) {
    use sluice::api::{ErrorCode, OffsetCommitPartition, OffsetCommitRequest, OffsetCommitTopic, Request, Response};
    let req = Request::OffsetCommit(OffsetCommitRequest {
        group_id: group.to_string(),
        generation_id: -1,
        member_id: String::new(),
        group_instance_id: None,
        topics: vec![OffsetCommitTopic {
            name: topic.to_string(),
            partitions: (0..partitions)
                .map(|p| OffsetCommitPartition {
                    partition: p,
                    offset,
                    leader_epoch: -1,
                    metadata: Some("m".repeat(4000)),
                })
                .collect(),
        }],
    });
    match client.send_any(req).await.expect("commit") {
        Response::OffsetCommit { topics } => {
            for p in topics.iter().flat_map(|t| &t.partitions) {
                assert_eq!(p.error, ErrorCode::None, "commit {group} {p:?}");
            }
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn offsets_history_is_compacted_and_empty_groups_expire() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        "offsets_topic_partitions = 1\noffsets_segment_bytes = 1048576\noffsets_retention_ms = 6000\n\
         retention_check_interval_ms = 200\ngroup_initial_rebalance_delay_ms = 100\n",
    )
    .expect("config");
    let config = config.to_string_lossy().to_string();
    let mut broker = Broker::start(2, &["--config", &config]);
    let bootstrap = broker.bootstrap();

    // About 4 MiB of commits (4 KB each) on the single offsets partition:
    // several 1 MiB segments of history, of which only the last commit per
    // partition is live.
    let b = bootstrap.clone();
    let live = with_client(&bootstrap, move |client| async move {
        client
            .create_topic("t", 8, TopicConfig::default())
            .await
            .expect("create");
        produce(&client, "t", 0..100).await;
        for round in 0..130 {
            commit_with_metadata(&client, "busy", "t", 8, round).await;
        }
        // A group with a live member: its offsets must never expire.
        let member_client = Client::connect(&b, ClientConfig::default()).await.expect("connect");
        let mut live = GroupConsumer::new(member_client, earliest(), group_config("live"));
        live.subscribe(&["t"]);
        let deadline = Instant::now() + Duration::from_secs(30);
        while live.assignment().is_empty() {
            assert!(Instant::now() < deadline, "live member never got partitions");
            live.poll(Duration::from_millis(100)).await.expect("poll");
        }
        live.commit_offsets(&[("t", 0, 1)]).await.expect("commit");
        // The rewrite of the live offsets lets the old segments go.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let info = client.describe_topic("__consumer_offsets").await.expect("describe");
            if info.partitions[0].log_start_offset > 0 {
                break;
            }
            assert!(Instant::now() < deadline, "offsets history never compacted: {info:?}");
            glommio::timer::sleep(Duration::from_millis(100)).await;
        }
        let busy = client.group_offsets("busy").await.expect("offsets");
        assert_eq!(busy.len(), 8);
        assert!(
            busy.iter()
                .all(|(_, _, o, m)| *o == 129 && m.as_deref().map(str::len) == Some(4000)),
            "{busy:?}"
        );

        // "busy" has no members and stops committing: it expires; "live"
        // keeps its offsets while its member heartbeats.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            live.poll(Duration::from_millis(100)).await.expect("poll");
            let groups = client.list_groups().await.expect("list");
            if !groups.iter().any(|g| g.group_id == "busy") {
                break;
            }
            assert!(Instant::now() < deadline, "busy never expired: {groups:?}");
        }
        assert!(client.group_offsets("busy").await.expect("offsets").is_empty());
        let kept = client.group_offsets("live").await.expect("offsets");
        assert_eq!(
            kept.iter().map(|(t, p, o, _)| (t.as_str(), *p, *o)).collect::<Vec<_>>(),
            vec![("t", 0, 1)]
        );
        // A fresh commit just before the crash, so the group (memberless
        // after the restart) is well inside its retention when checked.
        live.commit_offsets(&[("t", 0, 2)]).await.expect("commit");
        client.group_offsets("live").await.expect("offsets")
    });

    // After a crash the replay from the compacted log gives the same view:
    // the expired group stays gone (its tombstones are durable).
    broker.kill9();
    broker.restart();
    let after = with_client(&bootstrap, |client| async move {
        assert!(client.group_offsets("busy").await.expect("offsets").is_empty());
        client.group_offsets("live").await.expect("offsets")
    });
    assert_eq!(after, live);
}
