//! Node-level tests: a small quorum driven by hand (every message
//! delivered at once), file storage across restarts and damage, and bad
//! bytes into `step`. The adversarial, seeded simulation is in
//! `tests/cluster_raft_sim.rs`.

use std::collections::VecDeque;
use std::path::Path;

use protobuf::Message as _;
use raft::prelude::{Entry, HardState, Message, MessageType, Snapshot};

use super::frame::{self, MAGIC_MESSAGE};
use super::*;

pub(super) use super::testkit::{Ledger, Put};

type Node<St> = QuorumNode<Ledger, St>;

/// splitmix64: a seeded source for the tests' random input.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn config(id: u64, voters: &[u64]) -> QuorumConfig {
    let mut c = QuorumConfig::new(id, voters.to_vec());
    c.snapshot_interval_entries = 8;
    c.log_retained_entries = 2;
    c.election_seed = 7;
    c
}

/// Delivers every message at once until nothing moves; `down` nodes drop
/// what is sent to them.
fn settle<St: LogStorage>(nodes: &mut [Option<Node<St>>]) {
    let mut queue: VecDeque<(u64, Outgoing)> = VecDeque::new();
    for _ in 0..10_000 {
        for n in nodes.iter_mut().flatten() {
            let out = n.poll().expect("poll");
            queue.extend(out.messages.into_iter().map(|m| (n.node_id(), m)));
        }
        let Some((from, msg)) = queue.pop_front() else { return };
        if let Some(Some(to)) = nodes.get_mut(msg.to as usize - 1) {
            to.step(from, &msg.bytes).expect("a correct peer's message is accepted");
        }
    }
    panic!("the quorum did not settle");
}

/// Ticks every node until one is leader; returns its id.
fn elect<St: LogStorage>(nodes: &mut [Option<Node<St>>]) -> u64 {
    for _ in 0..200 {
        for n in nodes.iter_mut().flatten() {
            n.tick().expect("tick");
        }
        settle(nodes);
        if let Some(leader) = nodes.iter().flatten().find(|n| n.is_leader()) {
            return leader.node_id();
        }
    }
    panic!("no leader elected");
}

fn propose<St: LogStorage>(nodes: &mut [Option<Node<St>>], leader: u64, values: impl IntoIterator<Item = u64>) {
    for v in values {
        let node = nodes[leader as usize - 1].as_mut().expect("leader is up");
        node.propose(&Put(v)).expect("the leader accepts");
        settle(nodes);
    }
}

fn mem_cluster(n: u64) -> (Vec<MemDisk>, Vec<Option<Node<MemStorage>>>) {
    let voters: Vec<u64> = (1..=n).collect();
    let disks: Vec<MemDisk> = voters.iter().map(|_| MemDisk::new()).collect();
    let nodes = voters
        .iter()
        .map(|&id| Some(Node::new(config(id, &voters), MemStorage::open(&disks[id as usize - 1])).expect("node")))
        .collect();
    (disks, nodes)
}

#[test]
fn single_voter_commits_and_restarts_from_its_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut nodes = vec![Some(
        Node::new(config(1, &[1]), FileStorage::open(dir.path()).expect("open")).expect("node"),
    )];
    assert_eq!(elect(&mut nodes), 1);
    propose(&mut nodes, 1, 1..=20);
    let before = nodes[0].as_ref().map(|n| *n.state()).expect("node");
    assert_eq!(before.count, 20);
    let (first, last) = {
        let cache = nodes[0].as_ref().map(|n| n.storage().cache().clone()).expect("node");
        (cache.first_index(), cache.last_index())
    };
    assert!(
        first > 1 && last - first < 8 + 2 + 2,
        "the log is compacted: [{first}, {last}]"
    );
    drop(nodes);

    let mut node: Node<FileStorage> =
        Node::new(config(1, &[1]), FileStorage::open(dir.path()).expect("reopen")).expect("node");
    node.poll().expect("replay");
    assert_eq!(
        node.state(),
        &before,
        "restart restores the snapshot and replays the committed tail"
    );
    let mut nodes = vec![Some(node)];
    elect(&mut nodes);
    propose(&mut nodes, 1, [99]);
    assert_eq!(nodes[0].as_ref().map(|n| n.state().count), Some(21));
}

#[test]
fn three_voters_on_files_survive_a_full_restart() {
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().expect("tempdir")).collect();
    let open = |id: u64| {
        Some(
            Node::new(
                config(id, &[1, 2, 3]),
                FileStorage::open(dirs[id as usize - 1].path()).expect("open"),
            )
            .expect("node"),
        )
    };
    let mut nodes: Vec<_> = (1..=3).map(open).collect();
    let leader = elect(&mut nodes);
    propose(&mut nodes, leader, 1..=30);
    let want = nodes[0].as_ref().map(|n| *n.state()).expect("node");
    assert!(nodes.iter().flatten().all(|n| n.state() == &want));
    drop(nodes);

    let mut nodes: Vec<_> = (1..=3).map(open).collect();
    let leader = elect(&mut nodes);
    propose(&mut nodes, leader, [31]);
    for n in nodes.iter().flatten() {
        assert_eq!(n.state().count, 31, "node {} lost or repeated entries", n.node_id());
    }
}

#[test]
fn a_far_behind_follower_is_caught_up_by_snapshot() {
    let (_disks, mut nodes) = mem_cluster(3);
    let leader = elect(&mut nodes);
    let away = if leader == 3 { 2 } else { 3 };
    let parked = nodes[away as usize - 1].take();
    propose(&mut nodes, leader, 1..=40);
    nodes[away as usize - 1] = parked;
    for _ in 0..30 {
        for n in nodes.iter_mut().flatten() {
            n.tick().expect("tick");
        }
        settle(&mut nodes);
    }
    let want = nodes[leader as usize - 1].as_ref().map(|n| *n.state()).expect("leader");
    let follower = nodes[away as usize - 1].as_ref().expect("follower");
    assert_eq!(follower.state(), &want);
    assert!(follower.snapshot_index() > 0, "caught up by snapshot");
    assert!(follower.storage().cache().entries().len() < 8 + 2 + 2);
}

#[test]
fn only_the_leader_takes_proposals() {
    let (_disks, mut nodes) = mem_cluster(3);
    let leader = elect(&mut nodes);
    let follower = if leader == 1 { 2 } else { 1 };
    let got = nodes[follower as usize - 1].as_mut().map(|n| n.propose(&Put(1)));
    assert_eq!(
        got,
        Some(Err(ProposeError::NotLeader {
            leader_hint: Some(leader)
        }))
    );
    let proposal = nodes[leader as usize - 1]
        .as_mut()
        .map(|n| n.propose(&Put(5)))
        .expect("leader")
        .expect("accepted");
    settle(&mut nodes);
    let node = nodes[leader as usize - 1].as_ref().expect("leader");
    assert!(node.applied_index() >= proposal.index && node.term() == proposal.term);
}

/// A correct message from the leader to a follower, to damage.
fn a_heartbeat(nodes: &mut [Option<Node<MemStorage>>], leader: u64, to: u64) -> Message {
    let mut m = Message::default();
    m.set_msg_type(MessageType::MsgHeartbeat);
    m.from = leader;
    m.to = to;
    m.term = nodes[leader as usize - 1].as_ref().map(|n| n.term()).unwrap_or(1);
    m
}

fn framed(m: &Message) -> Vec<u8> {
    frame::encode(MAGIC_MESSAGE, &m.write_to_bytes().expect("encode")).expect("frame")
}

#[test]
fn bad_bytes_into_step_are_refused_and_the_quorum_keeps_working() {
    let (_disks, mut nodes) = mem_cluster(3);
    let leader = elect(&mut nodes);
    let f = if leader == 1 { 2 } else { 1 };
    let good = a_heartbeat(&mut nodes, leader, f);
    let mut bad: Vec<(u64, Vec<u8>)> = vec![
        (leader, Vec::new()),
        (leader, vec![0xff; 3]),
        (leader, framed(&good)[..20].to_vec()),
        (
            leader,
            frame::encode(MAGIC_MESSAGE, &[0xff, 0xff, 0xff]).expect("frame"),
        ),
        (9, framed(&good)),
        (f, framed(&good)),
    ];
    let mut flipped = framed(&good);
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    bad.push((leader, flipped));
    type Damage = Box<dyn Fn(&mut Message)>;
    let mut variants: Vec<Damage> = vec![
        Box::new(|m| m.from = 3 - m.from.min(2)),
        Box::new(|m| m.to = 7),
        Box::new(|m| m.term = 0),
        Box::new(|m| m.set_msg_type(MessageType::MsgPropose)),
        Box::new(|m| m.set_msg_type(MessageType::MsgHup)),
        Box::new(|m| m.commit = 1 << 40),
        Box::new(|m| {
            m.set_msg_type(MessageType::MsgAppend);
            m.index = 1 << 30;
            m.log_term = 0;
        }),
        Box::new(|m| {
            m.set_msg_type(MessageType::MsgAppend);
            m.entries.push(Entry {
                index: 5,
                term: 1,
                ..Default::default()
            });
        }),
        Box::new(|m| {
            m.set_msg_type(MessageType::MsgAppend);
            m.entries.push(Entry {
                index: 1,
                term: 1,
                data: vec![1, 2, 3].into(),
                ..Default::default()
            });
        }),
        Box::new(|m| {
            m.set_msg_type(MessageType::MsgSnapshot);
            let mut s = Snapshot::default();
            s.mut_metadata().index = 1000;
            s.mut_metadata().term = 1;
            s.mut_metadata().mut_conf_state().voters = vec![1, 2, 3];
            s.data = vec![1, 2].into();
            m.set_snapshot(s);
        }),
        Box::new(|m| {
            m.set_msg_type(MessageType::MsgSnapshot);
            let mut s = Snapshot::default();
            s.mut_metadata().index = 1000;
            s.mut_metadata().term = 1;
            s.mut_metadata().mut_conf_state().voters = vec![1, 2, 4];
            s.data = Ledger::default().snapshot().unwrap_or_default().into();
            m.set_snapshot(s);
        }),
    ];
    for v in variants.drain(..) {
        let mut m = good.clone();
        v(&mut m);
        bad.push((leader, framed(&m)));
    }
    let node = nodes[f as usize - 1].as_mut().expect("follower");
    for (i, (from, bytes)) in bad.iter().enumerate() {
        match node.step(*from, bytes) {
            Err(Error::Message(e)) => assert!(!e.to_string().is_empty()),
            other => panic!("bad message {i} was not refused: {other:?}"),
        }
    }
    let mut seed = 0x5eed_u64;
    for len in 0..300 {
        let junk: Vec<u8> = (0..len).map(|_| (next(&mut seed) >> 56) as u8).collect();
        assert!(matches!(node.step(leader, &junk), Err(Error::Message(_))));
    }
    assert!(node.halted().is_none());
    propose(&mut nodes, leader, 1..=3);
    assert!(nodes.iter().flatten().all(|n| n.state().count == 3));
}

/// Structurally valid messages with random fields from a voter: whatever
/// raft-rs makes of them, nothing unwinds out of `step`.
#[test]
fn random_messages_from_a_voter_never_unwind() {
    let mut seed = 0xfeed_u64;
    let types = [
        MessageType::MsgAppend,
        MessageType::MsgAppendResponse,
        MessageType::MsgRequestVote,
        MessageType::MsgRequestVoteResponse,
        MessageType::MsgRequestPreVote,
        MessageType::MsgRequestPreVoteResponse,
        MessageType::MsgHeartbeat,
        MessageType::MsgHeartbeatResponse,
        MessageType::MsgTimeoutNow,
    ];
    for _ in 0..40 {
        let (_disks, mut nodes) = mem_cluster(3);
        let leader = elect(&mut nodes);
        propose(&mut nodes, leader, 1..=5);
        for _ in 0..50 {
            let mut r = || next(&mut seed);
            let from = 1 + r() % 3;
            let to = 1 + r() % 3;
            if from == to {
                continue;
            }
            let mut m = Message::default();
            m.set_msg_type(types[(r() % types.len() as u64) as usize]);
            m.from = from;
            m.to = to;
            m.term = 1 + r() % 4;
            m.log_term = r() % 4;
            m.index = r() % 12;
            m.commit = r() % 12;
            m.reject = r() % 2 == 0;
            m.reject_hint = r() % 12;
            for i in 0..r() % 3 {
                let e = Entry {
                    index: m.index + 1 + i,
                    term: m.log_term.max(1) + r() % 2,
                    ..Default::default()
                };
                m.entries.push(e);
            }
            if let Some(node) = nodes[to as usize - 1].as_mut() {
                let _ = node.step(from, &framed(&m));
                let _ = node.poll();
                // Raft is not Byzantine-tolerant: a lying voter may stop a
                // node (it halts, fail-stop), but never unwinds through us.
                if node.halted().is_some() {
                    nodes[to as usize - 1] = None;
                }
            }
        }
    }
}

#[test]
fn a_failed_disk_halts_the_node_and_reopening_recovers() {
    let (disks, mut nodes) = mem_cluster(3);
    let leader = elect(&mut nodes);
    propose(&mut nodes, leader, 1..=3);
    disks[leader as usize - 1].fail_writes(true);
    let node = nodes[leader as usize - 1].as_mut().expect("leader");
    node.propose(&Put(4)).expect("accepted in memory");
    assert!(matches!(node.poll(), Err(Error::Halted { .. })));
    assert!(matches!(node.tick(), Err(Error::Halted { .. })));
    assert!(matches!(node.propose(&Put(5)), Err(ProposeError::Halted(_))));
    disks[leader as usize - 1].fail_writes(false);
    let voters = [1, 2, 3];
    nodes[leader as usize - 1] =
        Some(Node::new(config(leader, &voters), MemStorage::open(&disks[leader as usize - 1])).expect("reopen"));
    let new_leader = elect(&mut nodes);
    propose(&mut nodes, new_leader, [6]);
    let want = nodes[new_leader as usize - 1]
        .as_ref()
        .map(|n| *n.state())
        .expect("leader");
    assert!(nodes.iter().flatten().all(|n| n.state() == &want));
    assert!(want.count >= 4, "nothing committed before the failure was lost");
}

#[test]
fn configuration_is_checked() {
    for (id, voters) in [(4, vec![1, 2, 3]), (1, vec![1, 1, 2]), (0, vec![0]), (1, vec![])] {
        assert!(matches!(
            Node::new(config(id, &voters), MemStorage::new()),
            Err(Error::Config(_))
        ));
    }
    let mut c = config(1, &[1]);
    c.election_ticks = 1;
    assert!(matches!(Node::new(c, MemStorage::new()), Err(Error::Config(_))));
    let mut c = config(1, &[1]);
    c.command_bytes_max = c.message_bytes_max;
    assert!(matches!(Node::new(c, MemStorage::new()), Err(Error::Config(_))));
}

#[test]
fn a_voter_list_that_does_not_match_the_stored_one_is_refused() {
    let (disks, mut nodes) = mem_cluster(3);
    let leader = elect(&mut nodes);
    propose(&mut nodes, leader, 1..=10);
    drop(nodes);
    let got = Node::new(config(1, &[1, 2, 4]), MemStorage::open(&disks[0]));
    assert!(matches!(got, Err(Error::Config(msg)) if msg.contains("do not match")));
}

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        data: vec![1, 0, 0, 0, 0, 0, 0, 0, index as u8].into(),
        ..Default::default()
    }
}

fn snapshot(index: u64, term: u64) -> Snapshot {
    let mut s = Snapshot::default();
    s.mut_metadata().index = index;
    s.mut_metadata().term = term;
    s.mut_metadata().mut_conf_state().voters = vec![1, 2, 3];
    s.data = Ledger::default().snapshot().unwrap_or_default().into();
    s
}

fn hard_state(term: u64, vote: u64, commit: u64) -> HardState {
    HardState {
        term,
        vote,
        commit,
        ..Default::default()
    }
}

fn filled(dir: &Path) -> FileStorage {
    let mut st = FileStorage::open(dir).expect("open");
    st.append(&(1..=10).map(|i| entry(i, 1 + i / 6)).collect::<Vec<_>>())
        .expect("append");
    st.set_hard_state(&hard_state(2, 3, 9)).expect("hard state");
    st.compact(&snapshot(7, 2), 5).expect("compact");
    st.append(&[entry(11, 2), entry(12, 2)]).expect("append");
    st.append(&[entry(12, 3)]).expect("overwrite the tail");
    st
}

#[test]
fn file_storage_recovers_hard_state_log_and_snapshot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let want = filled(dir.path()).cache().clone();
    let got = FileStorage::open(dir.path()).expect("reopen");
    let got = got.cache();
    assert_eq!(got.hard_state(), &hard_state(2, 3, 9));
    assert_eq!(got.boundary(), (5, 1));
    assert_eq!(got.entries(), want.entries());
    assert_eq!((got.first_index(), got.last_index()), (6, 12));
    assert_eq!(got.term(12), Some(3));
    assert_eq!(got.snapshot().map(|s| s.get_metadata().index), Some(7));
    assert_eq!(got.snapshot(), want.snapshot());
}

#[test]
fn a_torn_tail_is_cut_and_the_log_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(filled(dir.path()));
    let log = dir.path().join("raft/log");
    let len = std::fs::metadata(&log).expect("stat").len();
    let bytes = std::fs::read(&log).expect("read");
    // A last record cut in the middle.
    std::fs::write(&log, &bytes[..bytes.len() - 3]).expect("write");
    let mut st = FileStorage::open(dir.path()).expect("a torn tail is not an error");
    assert_eq!(st.cache().last_index(), 11);
    st.append(&[entry(12, 4)]).expect("append after the cut");
    drop(st);
    // Zeros where a record should be (the file grew, the data never landed).
    let mut bytes = std::fs::read(&log).expect("read");
    bytes.extend_from_slice(&[0; 40]);
    std::fs::write(&log, &bytes).expect("write");
    let st = FileStorage::open(dir.path()).expect("zeros are a torn tail");
    assert_eq!((st.cache().last_index(), st.cache().term(12)), (12, Some(4)));
    assert!(std::fs::metadata(&log).expect("stat").len() >= len - 3);
}

#[test]
fn damaged_files_are_clear_errors_and_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(filled(dir.path()));
    let raft_dir = dir.path().join("raft");
    let damage = |name: &str, at: usize| {
        let path = raft_dir.join(name);
        let mut bytes = std::fs::read(&path).expect("read");
        let pristine = bytes.clone();
        bytes[at] ^= 0x10;
        std::fs::write(&path, &bytes).expect("write");
        let err = FileStorage::open(dir.path()).expect_err("damage is detected");
        assert!(matches!(err, StorageError::Corrupt { .. }), "{name}@{at}: {err}");
        assert!(err.to_string().contains(name), "the error names the file: {err}");
        assert_eq!(std::fs::read(&path).expect("read"), bytes, "opening changed nothing");
        std::fs::write(&path, pristine).expect("restore");
    };
    damage("hard_state", 20); // payload: checksum
    damage("hard_state", 4); // version
    damage("snapshot", 0); // magic
    damage("snapshot", 30); // payload: checksum
    damage("log", 10); // header: length
    damage("log", 40); // first record: checksum, with records after it
    FileStorage::open(dir.path()).expect("pristine files open again");
    std::fs::write(raft_dir.join("hard_state"), b"short").expect("write");
    assert!(matches!(
        FileStorage::open(dir.path()),
        Err(StorageError::Corrupt { .. })
    ));
}

#[test]
fn a_crash_between_snapshot_and_log_rewrite_is_reconciled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("raft/log");
    let mut st = FileStorage::open(dir.path()).expect("open");
    st.append(&(1..=10).map(|i| entry(i, 1)).collect::<Vec<_>>())
        .expect("append");
    st.set_hard_state(&hard_state(1, 1, 10)).expect("hard state");
    let old_log = std::fs::read(&log).expect("read");
    // Own compaction: the snapshot is durable, the log rewrite is lost.
    st.compact(&snapshot(8, 1), 6).expect("compact");
    drop(st);
    std::fs::write(&log, &old_log).expect("undo the rewrite");
    let st = FileStorage::open(dir.path()).expect("reopen");
    assert_eq!((st.cache().first_index(), st.cache().last_index()), (1, 10));
    assert_eq!(st.cache().snapshot().map(|s| s.get_metadata().index), Some(8));
    drop(st);
    // A leader's snapshot replacing a divergent log: the old log does not
    // hold the snapshot's index with its term, so it is discarded.
    let mut st = FileStorage::open(dir.path()).expect("reopen");
    st.install_snapshot(&snapshot(20, 4)).expect("install");
    drop(st);
    std::fs::write(&log, &old_log).expect("undo the rewrite");
    let st = FileStorage::open(dir.path()).expect("reopen");
    assert_eq!((st.cache().first_index(), st.cache().last_index()), (21, 20));
    assert_eq!(st.cache().hard_state().commit, 20);
}
