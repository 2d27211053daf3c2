//! The first exchange on every inter-broker connection: the opener says
//! who it is and which cluster it belongs to (`Hello`), the listener
//! answers `Welcome` (with its own cluster id) or `Refused` (with the
//! reason), and only then does the connection carry anything else.
//!
//! A node that does not know its cluster id yet (a fresh data directory)
//! says so and is let in; two nodes that both know theirs must agree.
//! Frames are the inter-broker ones: `len u32 | kind u8 | payload`,
//! big-endian.
//!
//! - hello: `node u32 | id_len u8 | cluster id`, of kind
//!   [`KIND_HELLO`] (controller traffic), `fetch::KIND_HELLO_FETCH`
//!   (a follower's fetcher) or [`KIND_HELLO_META`] (a broker that is not
//!   a voter, reading the metadata);
//! - welcome: `id_len u8 | cluster id`;
//! - refused: `id_len u8 | cluster id | reason` (the reason is UTF-8).

use std::net::ToSocketAddrs;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_lite::AsyncWriteExt;
use glommio::net::TcpStream;

use super::replica::NodeId;
use super::runtime::frame;

/// Controller traffic: raft, heartbeats, forwarded proposals.
pub const KIND_HELLO: u8 = 1;
/// A broker that is not a voter, fetching the applied metadata.
pub const KIND_HELLO_META: u8 = 11;
pub const KIND_WELCOME: u8 = 9;
pub const KIND_REFUSED: u8 = 10;

/// Longest cluster id on the wire (a UUID is 36).
const ID_BYTES_MAX: usize = 64;
/// Largest welcome or refusal frame.
pub const ANSWER_BYTES_MAX: usize = 1024;
/// How long an opener waits for the listener's answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// What an opener says first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub kind: u8,
    pub node: NodeId,
    pub cluster_id: Option<String>,
}

/// The listener's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Greeting {
    Welcome { cluster_id: Option<String> },
    Refused { cluster_id: Option<String>, reason: String },
}

fn put_id(b: &mut BytesMut, id: Option<&str>) {
    let id = id.unwrap_or("");
    let n = id.len().min(ID_BYTES_MAX);
    b.put_u8(n as u8);
    b.put_slice(&id.as_bytes()[..n]);
}

fn get_id(b: &mut Bytes) -> Result<Option<String>, String> {
    if !b.has_remaining() {
        return Err("truncated cluster id".into());
    }
    let n = b.get_u8() as usize;
    if n > ID_BYTES_MAX || b.remaining() < n {
        return Err("truncated or oversized cluster id".into());
    }
    let id = String::from_utf8(b.split_to(n).to_vec()).map_err(|_| "a cluster id that is not UTF-8".to_string())?;
    Ok((!id.is_empty()).then_some(id))
}

impl Hello {
    pub fn encode(&self) -> Bytes {
        let mut p = BytesMut::new();
        p.put_u32(self.node);
        put_id(&mut p, self.cluster_id.as_deref());
        frame(self.kind, &p)
    }

    /// From a frame's kind and payload.
    pub fn decode(kind: u8, mut b: Bytes) -> Result<Hello, String> {
        if b.remaining() < 4 {
            return Err("truncated hello".into());
        }
        let node = b.get_u32();
        let cluster_id = get_id(&mut b)?;
        if b.has_remaining() {
            return Err("trailing bytes in a hello".into());
        }
        Ok(Hello { kind, node, cluster_id })
    }
}

impl Greeting {
    pub fn encode(&self) -> Bytes {
        let mut p = BytesMut::new();
        match self {
            Greeting::Welcome { cluster_id } => {
                put_id(&mut p, cluster_id.as_deref());
                frame(KIND_WELCOME, &p)
            }
            Greeting::Refused { cluster_id, reason } => {
                put_id(&mut p, cluster_id.as_deref());
                let room = ANSWER_BYTES_MAX - 1 - p.len();
                let mut end = reason.len().min(room);
                while !reason.is_char_boundary(end) {
                    end -= 1;
                }
                p.put_slice(&reason.as_bytes()[..end]);
                frame(KIND_REFUSED, &p)
            }
        }
    }

    pub fn decode(kind: u8, mut b: Bytes) -> Result<Greeting, String> {
        let cluster_id = get_id(&mut b)?;
        match kind {
            KIND_WELCOME if !b.has_remaining() => Ok(Greeting::Welcome { cluster_id }),
            KIND_REFUSED => Ok(Greeting::Refused {
                cluster_id,
                reason: String::from_utf8_lossy(&b).into_owned(),
            }),
            _ => Err(format!("frame kind {kind} where a welcome was expected")),
        }
    }
}

/// Whether a peer that says it belongs to `theirs` may talk to this node
/// of `ours`: the reason if not.
pub fn check(ours: Option<&str>, theirs: Option<&str>) -> Result<(), String> {
    match (ours, theirs) {
        (Some(a), Some(b)) if a != b => Err(format!("this node belongs to cluster {a}, the peer to cluster {b}")),
        _ => Ok(()),
    }
}

/// Connects to a peer's inter-broker listener at `addr` (HOST:PORT) and
/// says `hello`: the connection and the peer's answer. Every outgoing
/// inter-broker connection starts here.
pub async fn dial(addr: &str, hello: &Hello) -> Result<(TcpStream, Greeting), String> {
    let sock = addr
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| format!("cannot resolve {addr}"))?;
    let mut stream = TcpStream::connect(sock).await.map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    let greeting = greet(&mut stream, hello).await?;
    Ok((stream, greeting))
}

/// The pause between attempts to reach a peer: doubling from 50 ms up
/// to a ceiling, back to 50 ms once through.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(50);

    pub fn new() -> Backoff {
        Backoff { next: Self::FIRST }
    }

    /// Sleeps the current pause (at least `floor`), then doubles it up to
    /// `ceiling`.
    pub async fn wait(&mut self, floor: Duration, ceiling: Duration) {
        glommio::timer::sleep(self.next.max(floor)).await;
        self.next = (self.next * 2).min(ceiling);
    }

    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new()
    }
}

/// Sends the hello on a fresh connection and waits (bounded) for the
/// answer.
async fn greet(stream: &mut TcpStream, hello: &Hello) -> Result<Greeting, String> {
    stream.write_all(&hello.encode()).await.map_err(|e| e.to_string())?;
    let answer = glommio::timer::timeout(ANSWER_TIMEOUT, async {
        Ok(super::runtime::read_frame(stream, ANSWER_BYTES_MAX).await)
    })
    .await;
    match answer {
        Ok(Ok((kind, b))) => Greeting::decode(kind, b),
        Ok(Err(e)) => Err(e),
        Err(_) => Err("no answer to the hello in time".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(mut f: Bytes) -> (u8, Bytes) {
        f.advance(4);
        let kind = f.get_u8();
        (kind, f)
    }

    #[test]
    fn hellos_and_answers_round_trip_and_damage_is_refused() {
        for id in [None, Some("0b5c3f2e-9a7d-4c1e-8f00-5d4b3a2c1e0f".to_string())] {
            let hello = Hello {
                kind: KIND_HELLO_META,
                node: 7,
                cluster_id: id.clone(),
            };
            let (kind, b) = payload(hello.encode());
            assert_eq!(Hello::decode(kind, b.clone()), Ok(hello));
            for len in 0..b.len() {
                assert!(Hello::decode(kind, b.slice(..len)).is_err(), "cut at {len}");
            }
            let welcome = Greeting::Welcome { cluster_id: id.clone() };
            let (kind, b) = payload(welcome.encode());
            assert_eq!(Greeting::decode(kind, b), Ok(welcome));
            let refused = Greeting::Refused {
                cluster_id: id,
                reason: "you are not from here".into(),
            };
            let (kind, b) = payload(refused.encode());
            assert_eq!(Greeting::decode(kind, b), Ok(refused));
        }
        assert!(Greeting::decode(3, Bytes::from_static(&[0])).is_err());
        assert!(Greeting::decode(KIND_WELCOME, Bytes::from_static(&[0, 1])).is_err());
        assert!(Hello::decode(KIND_HELLO, Bytes::from_static(&[0, 0, 0, 1, 200])).is_err());
        // A long reason is cut to fit, on a character boundary.
        let long = Greeting::Refused {
            cluster_id: None,
            reason: "é".repeat(2000),
        };
        let f = long.encode();
        assert!(f.len() <= 4 + ANSWER_BYTES_MAX);
        let (kind, b) = payload(f);
        assert!(matches!(Greeting::decode(kind, b), Ok(Greeting::Refused { reason, .. }) if reason.starts_with('é')));
    }

    #[test]
    fn only_two_known_and_different_ids_disagree() {
        assert!(check(None, None).is_ok());
        assert!(check(Some("a"), None).is_ok());
        assert!(check(None, Some("a")).is_ok());
        assert!(check(Some("a"), Some("a")).is_ok());
        assert!(check(Some("a"), Some("b")).unwrap_err().contains("cluster a"));
    }
}
