//! Seeded simulation: clients that behave like real ones (join, sync when
//! told, heartbeat, commit, leave, crash and restart) against one group,
//! with time advancing at random. Replay a failure with
//! SLUICE_COORDINATOR_SEED=<seed> cargo test --lib group::coordinator.

use super::fixture::{client, join_request, protocols, replies_to, GROUP};
use super::group::Group;
use super::*;
use crate::api::{LeavingMember, MemberAssignment};

const SIM_SEEDS: u64 = 500;
const SIM_STEPS: usize = 200;
const SIM_CLIENTS: usize = 5;
/// Ticks the final drain may take before everything must be answered.
const SIM_DRAIN_TICKS_MAX: usize = 1_000;
/// Protocol sets clients join with; the last one shares nothing with the first.
const SIM_PROTOCOLS: [&[(&str, &str)]; 3] = [
    &[("range", "a")],
    &[("range", "b"), ("roundrobin", "b")],
    &[("roundrobin", "c")],
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SimState {
    /// Not in the group: joins when next picked.
    Out,
    Joining,
    /// Got its JoinGroup answer: syncs when next picked.
    MustSync,
    Syncing,
    /// Has its assignment: heartbeats, commits, leaves, rejoins or crashes.
    Active,
    /// Crashed (or fenced): sends nothing until it restarts.
    Silent,
}

#[derive(Debug)]
struct SimClient {
    client_id: String,
    instance_id: Option<String>,
    session_timeout_ms: u32,
    rebalance_timeout_ms: u32,
    protocols: usize,
    member_id: String,
    generation_id: i32,
    leader: bool,
    members: Vec<String>,
    state: SimState,
    /// The join or sync it waits for; answers to older tokens are stale.
    waiting_for: Option<Token>,
}

/// What the simulation saw, to show it is not vacuous.
#[derive(Debug, Default)]
struct SimStats {
    stable_steps: u64,
    generations: u64,
    emptied: u64,
    /// "join RebalanceInProgress" and the like, for every reply (stale ones too).
    outcomes: BTreeMap<String, u64>,
}

struct Sim {
    rng: SplitMix64,
    coordinator: Coordinator,
    now_ms: u64,
    next_token: Token,
    clients: Vec<SimClient>,
    /// Every token not answered yet, and whose it is.
    unanswered: BTreeMap<Token, usize>,
    /// Generation -> the member told it leads that generation.
    leaders: BTreeMap<i32, String>,
    last_generation: i32,
    stats: SimStats,
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let mut rng = SplitMix64(seed);
        let config = CoordinatorConfig {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 30_000,
            initial_rebalance_delay_ms: if rng.percent(50) { 0 } else { 3_000 },
            max_group_size: 4,
        };
        let clients = (0..SIM_CLIENTS)
            .map(|i| {
                let session_timeout_ms = 6_000 + rng.below(10_001) as u32;
                SimClient {
                    client_id: format!("c{i}"),
                    instance_id: (i < 2).then(|| format!("inst-{i}")),
                    session_timeout_ms,
                    rebalance_timeout_ms: session_timeout_ms + rng.below(20_001) as u32,
                    protocols: rng.below(2) as usize,
                    member_id: String::new(),
                    generation_id: -1,
                    leader: false,
                    members: Vec::new(),
                    state: SimState::Out,
                    waiting_for: None,
                }
            })
            .collect();
        Sim {
            coordinator: Coordinator::new(config, rng.next_u64()),
            rng,
            now_ms: 0,
            next_token: 0,
            clients,
            unanswered: BTreeMap::new(),
            leaders: BTreeMap::new(),
            last_generation: 0,
            stats: SimStats::default(),
        }
    }

    fn token(&mut self, client: usize) -> Token {
        self.next_token += 1;
        self.unanswered.insert(self.next_token, client);
        self.next_token
    }

    fn step(&mut self) {
        let before = self.coordinator.state(GROUP);
        let actions = if self.rng.percent(25) {
            self.now_ms += self.rng.below(3_000);
            self.tick()
        } else {
            let client = self.rng.below(SIM_CLIENTS as u64) as usize;
            self.act(client)
        };
        self.deliver(before, actions);
        self.check();
    }

    fn tick(&mut self) -> Vec<Action> {
        let actions = self.coordinator.tick(self.now_ms);
        let next = self.coordinator.next_deadline();
        assert!(
            next.is_none_or(|at_ms| at_ms > self.now_ms),
            "tick left work due: {next:?}"
        );
        actions
    }

    fn act(&mut self, i: usize) -> Vec<Action> {
        match self.clients[i].state {
            SimState::Out => self.send_join(i),
            // A client that timed out retries its join while the first is held.
            SimState::Joining if self.rng.percent(10) => self.send_join(i),
            // Closed mid-rebalance: the held request is answered as the member leaves.
            SimState::Joining | SimState::Syncing if self.rng.percent(3) => self.send_leave(i),
            SimState::MustSync => self.send_sync(i),
            SimState::Joining | SimState::Syncing => Vec::new(),
            SimState::Active => match self.rng.below(100) {
                0..=59 => self.send_heartbeat(i),
                60..=69 => {
                    self.commit(i);
                    Vec::new()
                }
                70..=73 => self.send_leave(i),
                74..=78 => {
                    self.clients[i].protocols = self.rng.below(SIM_PROTOCOLS.len() as u64) as usize;
                    self.send_join(i)
                }
                79..=83 => {
                    self.clients[i].state = SimState::Silent;
                    Vec::new()
                }
                84..=88 => self.send_sync(i),
                89..=90 if self.clients[i].instance_id.is_some() => self.send_impostor_join(i),
                _ => self.send_join(i),
            },
            SimState::Silent if self.rng.percent(15) => {
                // Restart: a new process knows no member id (a static one keeps its instance id).
                self.clients[i].member_id.clear();
                self.send_join(i)
            }
            SimState::Silent => Vec::new(),
        }
    }

    fn send_join(&mut self, i: usize) -> Vec<Action> {
        let token = self.token(i);
        let c = &mut self.clients[i];
        c.state = SimState::Joining;
        c.waiting_for = Some(token);
        let req = JoinGroupRequest {
            group_id: GROUP.to_owned(),
            session_timeout_ms: c.session_timeout_ms,
            rebalance_timeout_ms: c.rebalance_timeout_ms,
            member_id: c.member_id.clone(),
            group_instance_id: c.instance_id.clone(),
            protocol_type: "consumer".to_owned(),
            protocols: protocols(SIM_PROTOCOLS[c.protocols]),
        };
        let info = client(&c.client_id);
        self.coordinator.join(self.now_ms, token, info, req)
    }

    /// A second process starts with client `i`'s instance id while `i`
    /// keeps running: it takes the seat, and `i` must learn it is fenced.
    /// The impostor then falls silent (its answer is stale for `i`).
    fn send_impostor_join(&mut self, i: usize) -> Vec<Action> {
        let token = self.token(i);
        let c = &self.clients[i];
        let req = JoinGroupRequest {
            session_timeout_ms: c.session_timeout_ms,
            rebalance_timeout_ms: c.rebalance_timeout_ms,
            ..join_request("", c.instance_id.as_deref(), SIM_PROTOCOLS[c.protocols])
        };
        let info = client(&format!("{}-impostor", c.client_id));
        self.coordinator.join(self.now_ms, token, info, req)
    }

    fn send_sync(&mut self, i: usize) -> Vec<Action> {
        let token = self.token(i);
        let c = &mut self.clients[i];
        c.state = SimState::Syncing;
        c.waiting_for = Some(token);
        let assignments = if c.leader {
            c.members
                .iter()
                .map(|member_id| MemberAssignment {
                    member_id: member_id.clone(),
                    assignment: Bytes::from(format!("{}:{member_id}", c.generation_id)),
                })
                .collect()
        } else {
            Vec::new()
        };
        let req = SyncGroupRequest {
            group_id: GROUP.to_owned(),
            generation_id: c.generation_id,
            member_id: c.member_id.clone(),
            group_instance_id: c.instance_id.clone(),
            protocol_type: Some("consumer".to_owned()),
            protocol_name: None,
            assignments,
        };
        self.coordinator.sync(self.now_ms, token, req)
    }

    fn send_heartbeat(&mut self, i: usize) -> Vec<Action> {
        let token = self.token(i);
        let c = &self.clients[i];
        let req = HeartbeatRequest {
            group_id: GROUP.to_owned(),
            generation_id: c.generation_id,
            member_id: c.member_id.clone(),
            group_instance_id: c.instance_id.clone(),
        };
        let actions = self.coordinator.heartbeat(self.now_ms, token, req);
        assert_eq!(replies_to(&actions, token).len(), 1, "heartbeats are answered at once");
        actions
    }

    fn send_leave(&mut self, i: usize) -> Vec<Action> {
        let token = self.token(i);
        let c = &self.clients[i];
        let req = LeaveGroupRequest {
            group_id: GROUP.to_owned(),
            members: vec![LeavingMember {
                member_id: c.member_id.clone(),
                group_instance_id: c.instance_id.clone(),
            }],
        };
        let actions = self.coordinator.leave(self.now_ms, token, req);
        assert_eq!(replies_to(&actions, token).len(), 1, "leaves are answered at once");
        actions
    }

    fn commit(&mut self, i: usize) {
        let c = &self.clients[i];
        let current = self.coordinator.groups.get(GROUP).is_some_and(|group| {
            group.state() == GroupState::Stable
                && group.generation_id == c.generation_id
                && group.members.contains_key(&c.member_id)
        });
        let result = self.coordinator.validate_commit(
            self.now_ms,
            GROUP,
            c.generation_id,
            &c.member_id,
            c.instance_id.as_deref(),
        );
        if current {
            assert_eq!(result, Ok(()), "a current member of a Stable group may commit");
        }
        if let Err(error) = result {
            assert!(matches!(
                error,
                ErrorCode::RebalanceInProgress
                    | ErrorCode::IllegalGeneration
                    | ErrorCode::UnknownMemberId
                    | ErrorCode::FencedInstanceId
            ));
        }
    }

    fn deliver(&mut self, before: Option<GroupState>, actions: Vec<Action>) {
        let mut emptied = 0;
        for action in actions {
            let (token, response) = match action {
                Action::Emptied { group_id } => {
                    assert_eq!(group_id, GROUP);
                    emptied += 1;
                    continue;
                }
                Action::Reply { token, response } => (token, response),
            };
            let Some(i) = self.unanswered.remove(&token) else {
                panic!("token {token} answered twice, or never issued: {response:?}");
            };
            let current = self.clients[i].waiting_for == Some(token);
            let outcome = match &response {
                Response::JoinGroup(r) => format!("join {:?}", r.error),
                Response::SyncGroup(r) => format!("sync {:?}", r.error),
                Response::Heartbeat { error } => format!("heartbeat {error:?}"),
                Response::LeaveGroup(r) => format!("leave {:?}", r.members.first().map(|m| m.error)),
                other => format!("{other:?}"),
            };
            *self.stats.outcomes.entry(outcome).or_default() += 1;
            match response {
                Response::JoinGroup(r) => {
                    self.note_leader(&r);
                    if current {
                        self.on_join(i, r);
                    }
                }
                Response::SyncGroup(r) if current => self.on_sync(i, r),
                Response::SyncGroup(_) => {}
                Response::Heartbeat { error } => self.on_error(i, error),
                Response::LeaveGroup(r) => {
                    assert_eq!(r.error, ErrorCode::None);
                    self.clients[i].member_id.clear();
                    self.clients[i].state = SimState::Out;
                }
                other => panic!("unexpected response {other:?}"),
            }
        }
        let after = self.coordinator.state(GROUP);
        let became_empty = before.is_some_and(|s| s != GroupState::Empty) && after == Some(GroupState::Empty);
        assert_eq!(emptied, usize::from(became_empty), "Emptied iff the group became Empty");
        self.stats.emptied += emptied as u64;
    }

    /// Checks, on every JoinGroup answer (stale or not), that no two
    /// members are told they lead the same generation.
    fn note_leader(&mut self, r: &JoinGroupResponse) {
        if r.error != ErrorCode::None || r.leader != r.member_id {
            assert!(
                r.error != ErrorCode::None || r.members.is_empty(),
                "only the leader gets the members"
            );
            return;
        }
        assert!(
            r.members.iter().any(|m| m.member_id == r.member_id),
            "leader missing from members"
        );
        let first = self
            .leaders
            .entry(r.generation_id)
            .or_insert_with(|| r.member_id.clone());
        assert_eq!(*first, r.member_id, "two leaders of generation {}", r.generation_id);
    }

    fn on_join(&mut self, i: usize, r: JoinGroupResponse) {
        let c = &mut self.clients[i];
        c.waiting_for = None;
        match r.error {
            ErrorCode::None => {
                assert!(r.generation_id >= 1);
                assert_eq!(r.protocol_type.as_deref(), Some("consumer"));
                assert!(r.protocol_name.is_some());
                c.leader = r.leader == r.member_id;
                c.member_id = r.member_id;
                c.generation_id = r.generation_id;
                c.members = r.members.into_iter().map(|m| m.member_id).collect();
                c.state = SimState::MustSync;
            }
            ErrorCode::InconsistentGroupProtocol => {
                c.protocols = 1;
                c.state = SimState::Out;
            }
            ErrorCode::RebalanceInProgress | ErrorCode::GroupMaxSizeReached => c.state = SimState::Out,
            error => self.on_error(i, error),
        }
    }

    fn on_sync(&mut self, i: usize, r: SyncGroupResponse) {
        let c = &mut self.clients[i];
        c.waiting_for = None;
        if r.error == ErrorCode::None {
            let prefix = format!("{}:", c.generation_id);
            assert!(
                r.assignment.starts_with(prefix.as_bytes()),
                "client {i} got {:?} in generation {}",
                r.assignment,
                c.generation_id
            );
            c.state = SimState::Active;
        } else {
            self.on_error(i, r.error);
        }
    }

    /// What a real client does on an error (or `None`) from the coordinator.
    fn on_error(&mut self, i: usize, error: ErrorCode) {
        let c = &mut self.clients[i];
        match error {
            ErrorCode::None => {}
            ErrorCode::RebalanceInProgress | ErrorCode::IllegalGeneration => c.state = SimState::Out,
            ErrorCode::UnknownMemberId => {
                c.member_id.clear();
                c.state = SimState::Out;
            }
            // Another process owns the instance id now: shut down.
            ErrorCode::FencedInstanceId => c.state = SimState::Silent,
            other => panic!("client {i}: unexpected error {other:?}"),
        }
    }

    fn check(&mut self) {
        let coordinator = &self.coordinator;
        for group in coordinator.groups.values() {
            group.verify(&coordinator.config);
            assert_eq!(
                group.timer_ms,
                group.next_deadline(),
                "group {} filed under a stale deadline",
                group.id
            );
        }
        let filed = coordinator.groups.values().filter(|g| g.timer_ms.is_some()).count();
        assert_eq!(coordinator.timers.len(), filed);
        let earliest = coordinator.groups.values().filter_map(Group::next_deadline).min();
        assert_eq!(coordinator.next_deadline(), earliest);
        let Some(group) = coordinator.groups.get(GROUP) else {
            return;
        };
        assert!(group.generation_id >= self.last_generation, "generation went back");
        self.stats.generations += u64::from(group.generation_id > self.last_generation);
        self.last_generation = group.generation_id;
        if group.state() == GroupState::Stable {
            self.stats.stable_steps += 1;
            for member in group.members.values() {
                let current = member
                    .assignment
                    .as_ref()
                    .is_some_and(|a| a.generation_id == group.generation_id);
                assert!(current, "Stable member {} without a current assignment", member.id);
            }
        }
    }

    /// Every client stops; time runs until nothing is scheduled. Every
    /// token must have been answered exactly once, the group must be Empty.
    fn drain(&mut self) {
        for c in &mut self.clients {
            c.state = SimState::Silent;
        }
        for _ in 0..SIM_DRAIN_TICKS_MAX {
            let Some(at_ms) = self.coordinator.next_deadline() else {
                break;
            };
            let before = self.coordinator.state(GROUP);
            self.now_ms = self.now_ms.max(at_ms);
            let actions = self.tick();
            self.deliver(before, actions);
            self.check();
        }
        assert!(self.unanswered.is_empty(), "never answered: {:?}", self.unanswered);
        assert_eq!(self.coordinator.next_deadline(), None);
        assert!(self.coordinator.state(GROUP).is_none_or(|s| s == GroupState::Empty));
    }
}

/// Prints the seed of a failing simulation run.
struct SeedGuard(u64);

impl Drop for SeedGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "coordinator simulation failed at seed {0}: replay with SLUICE_COORDINATOR_SEED={0}",
                self.0
            );
        }
    }
}

#[test]
fn randomized_clients_keep_the_invariants() {
    let seeds: Vec<u64> = match std::env::var("SLUICE_COORDINATOR_SEED") {
        Ok(seed) => vec![seed.parse().expect("SLUICE_COORDINATOR_SEED is a u64")],
        Err(_) => (0..SIM_SEEDS).collect(),
    };
    let mut total = SimStats::default();
    for seed in seeds {
        let _guard = SeedGuard(seed);
        let mut sim = Sim::new(seed);
        for _ in 0..SIM_STEPS {
            sim.step();
        }
        sim.drain();
        total.stable_steps += sim.stats.stable_steps;
        total.generations += sim.stats.generations;
        total.emptied += sim.stats.emptied;
        for (what, count) in sim.stats.outcomes {
            *total.outcomes.entry(what).or_default() += count;
        }
    }
    eprintln!("coordinator simulation: {total:?}");
    if std::env::var("SLUICE_COORDINATOR_SEED").is_err() {
        // The clients reached every interesting corner, not just the happy path.
        assert!(total.stable_steps > 0 && total.generations > 0 && total.emptied > 0);
        for what in [
            "join None",
            "join RebalanceInProgress",
            "join UnknownMemberId",
            "join FencedInstanceId",
            "join InconsistentGroupProtocol",
            "join GroupMaxSizeReached",
            "sync None",
            "sync RebalanceInProgress",
            "sync UnknownMemberId",
            "sync FencedInstanceId",
            "leave Some(None)",
            "heartbeat None",
            "heartbeat RebalanceInProgress",
            "heartbeat UnknownMemberId",
            "heartbeat FencedInstanceId",
        ] {
            assert!(
                total.outcomes.get(what).is_some_and(|n| *n > 0),
                "never saw {what}: {total:?}"
            );
        }
    }
}
