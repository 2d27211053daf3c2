//! Which cluster a data directory belongs to, and as which node: checked
//! at start before anything else touches the directory, so a node started
//! with the wrong id, the wrong voter list or another node's data refuses
//! with a clear message instead of corrupting a cluster.
//!
//! `<data>/meta/node` (an envelope like the other node files) records the
//! mode (single node, or a member of a cluster with its voters) and the
//! node id, written on the first start, and the cluster id the quorum
//! issued, recorded once this node learns it (see `runtime`: peers of
//! another cluster are refused, and a node whose voters all name another
//! cluster stops).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::replica::NodeId;
use crate::envelope::{self, Envelope};

/// One controller voter: its node id and inter-broker address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Voter {
    pub id: NodeId,
    /// HOST:PORT.
    pub addr: String,
}

/// Parses `--voters 1@host:port,2@host:port,...` (KRaft's
/// controller.quorum.voters): ids unique, at least one voter.
pub fn parse_voters(text: &str) -> Result<Vec<Voter>, String> {
    let mut voters: Vec<Voter> = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('@')
            .ok_or_else(|| format!("voter {part:?} is not ID@HOST:PORT"))?;
        let id: NodeId = id.parse().map_err(|_| format!("voter {part:?}: bad node id {id:?}"))?;
        crate::config::parse_host_port(addr).map_err(|e| format!("voter {part:?}: {e}"))?;
        if voters.iter().any(|v| v.id == id) {
            return Err(format!("voter id {id} appears twice"));
        }
        voters.push(Voter {
            id,
            addr: addr.to_string(),
        });
    }
    if voters.is_empty() {
        return Err("the voter list is empty".into());
    }
    voters.sort_by_key(|v| v.id);
    Ok(voters)
}

/// How this node runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum NodeRole {
    Single { node_id: NodeId },
    Cluster { node_id: NodeId, voters: Vec<Voter> },
}

impl NodeRole {
    pub fn node_id(&self) -> NodeId {
        match self {
            NodeRole::Single { node_id } | NodeRole::Cluster { node_id, .. } => *node_id,
        }
    }
}

/// What the data directory records about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The cluster's id, once learned (cluster mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    #[serde(flatten)]
    pub role: NodeRole,
}

const FILE: &str = "node";
const ENVELOPE: Envelope = Envelope {
    magic: *b"SLNI",
    version: 1,
};
const BODY_BYTES_MAX: usize = 1 << 20;

/// Checks `role` against what `data_dir` records; records it if the
/// directory has no identity yet. Refuses (touching nothing) when they
/// differ: another node's data, single-node data started as a cluster
/// member or the reverse, or a different voter list.
pub fn check_or_record(data_dir: &Path, role: &NodeRole) -> Result<Identity, String> {
    let dir = data_dir.join("meta");
    let path = dir.join(FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let body = ENVELOPE
                .open(&bytes, BODY_BYTES_MAX)
                .map_err(|e| format!("{} is damaged ({e}); refusing to start", path.display()))?;
            let text = std::str::from_utf8(body).map_err(|e| format!("{}: {e}", path.display()))?;
            let recorded: Identity = toml::from_str(text).map_err(|e| format!("{}: {e}", path.display()))?;
            check(&recorded.role, role)
                .map_err(|why| format!("refusing to start: {why} (recorded in {})", path.display()))?;
            Ok(recorded)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let identity = Identity {
                cluster_id: None,
                role: role.clone(),
            };
            record(data_dir, &identity)?;
            Ok(identity)
        }
        Err(e) => Err(format!("reading {}: {e}", path.display())),
    }
}

/// Records the cluster id this node learned (the role was checked at
/// start). Blocking; once per data directory.
pub fn record_cluster_id(data_dir: &Path, role: &NodeRole, cluster_id: &str) -> Result<(), String> {
    record(
        data_dir,
        &Identity {
            cluster_id: Some(cluster_id.to_string()),
            role: role.clone(),
        },
    )
}

/// Records `identity`.
fn record(data_dir: &Path, identity: &Identity) -> Result<(), String> {
    let dir = data_dir.join("meta");
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let body = toml::to_string(identity).map_err(|e| e.to_string())?;
    let sealed = ENVELOPE.seal(body.as_bytes()).map_err(|e| e.to_string())?;
    envelope::replace_file(&dir, FILE, &sealed).map_err(|e| format!("writing {}: {e}", dir.join(FILE).display()))
}

fn check(recorded: &NodeRole, now: &NodeRole) -> Result<(), String> {
    match (recorded, now) {
        (NodeRole::Single { node_id: a }, NodeRole::Single { node_id: b }) if a != b => {
            Err(format!("this data directory is node {a}'s, not node {b}'s"))
        }
        (NodeRole::Single { .. }, NodeRole::Single { .. }) => Ok(()),
        (NodeRole::Single { .. }, NodeRole::Cluster { .. }) => Err(
            "this data directory holds a single node's data; start it without cluster flags, \
             or give the cluster member an empty data directory"
                .into(),
        ),
        (NodeRole::Cluster { .. }, NodeRole::Single { .. }) => Err(
            "this data directory belongs to a cluster member; start it with its --node-id, \
             --cluster-addr and --voters"
                .into(),
        ),
        (NodeRole::Cluster { node_id: a, voters: va }, NodeRole::Cluster { node_id: b, voters: vb }) => {
            if a != b {
                Err(format!("this data directory is node {a}'s, not node {b}'s"))
            } else if va != vb {
                Err(format!(
                    "the voters were {}, now {}; changing the quorum is not supported",
                    show(va),
                    show(vb)
                ))
            } else {
                Ok(())
            }
        }
    }
}

fn show(voters: &[Voter]) -> String {
    voters
        .iter()
        .map(|v| format!("{}@{}", v.id, v.addr))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(node_id: NodeId, voters: &str) -> NodeRole {
        NodeRole::Cluster {
            node_id,
            voters: parse_voters(voters).expect("parses"),
        }
    }

    #[test]
    fn voter_lists_parse_strictly() {
        let v = parse_voters("2@127.0.0.1:9302, 1@localhost:9301").expect("parses");
        assert_eq!(v.iter().map(|v| v.id).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(v[1].addr, "127.0.0.1:9302");
        for bad in [
            "",
            "1",
            "1@",
            "x@h:1",
            "1@h",
            "1@h:0",
            "1@:9",
            "1@h:1,1@h:2",
            "1@h:99999",
        ] {
            assert!(parse_voters(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_mismatched_start_is_refused_and_touches_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let me = cluster(1, "1@127.0.0.1:9301,2@127.0.0.1:9302,3@127.0.0.1:9303");
        check_or_record(dir.path(), &me).expect("first start records");
        let path = dir.path().join("meta/node");
        let before = std::fs::read(&path).expect("recorded");
        check_or_record(dir.path(), &me).expect("the same start is fine");
        let wrong = [
            cluster(2, "1@127.0.0.1:9301,2@127.0.0.1:9302,3@127.0.0.1:9303"),
            cluster(1, "1@127.0.0.1:9301,2@127.0.0.1:9302"),
            NodeRole::Single { node_id: 1 },
        ];
        for role in wrong {
            let e = check_or_record(dir.path(), &role).expect_err("refused");
            assert!(e.contains("refusing to start"), "{e}");
            assert_eq!(std::fs::read(&path).expect("still there"), before, "touched");
        }
        let single = tempfile::tempdir().expect("tempdir");
        check_or_record(single.path(), &NodeRole::Single { node_id: 0 }).expect("records");
        assert!(check_or_record(single.path(), &me).is_err());
        std::fs::write(single.path().join("meta/node"), b"junk").expect("damage");
        assert!(check_or_record(single.path(), &NodeRole::Single { node_id: 0 })
            .expect_err("damaged")
            .contains("damaged"));
    }

    #[test]
    fn the_cluster_id_is_recorded_once_learned_and_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A broker that is not a voter records the voters too.
        let me = cluster(4, "1@127.0.0.1:9301,2@127.0.0.1:9302,3@127.0.0.1:9303");
        assert_eq!(check_or_record(dir.path(), &me).expect("records").cluster_id, None);
        record_cluster_id(dir.path(), &me, "0b5c3f2e-9a7d-4c1e-8f00-5d4b3a2c1e0f").expect("records");
        let again = check_or_record(dir.path(), &me).expect("same start");
        assert_eq!(
            again.cluster_id.as_deref(),
            Some("0b5c3f2e-9a7d-4c1e-8f00-5d4b3a2c1e0f")
        );
        assert_eq!(again.role, me);
        assert!(check_or_record(dir.path(), &cluster(4, "1@127.0.0.1:9301")).is_err());
    }
}
