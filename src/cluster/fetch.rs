//! The replica fetch between brokers: a follower's fetcher asks a leader
//! for the batches after each of its partitions' log ends, many partitions
//! in one request (Kafka's replica Fetch, with the KIP-320 epochs).
//!
//! It runs on its own inter-broker connection, request then answer, both
//! ways on the one stream: the follower opens it with a hello of kind
//! [`KIND_HELLO_FETCH`] naming itself (see `handshake`), then sends [`KIND_FETCH`] frames and
//! reads one [`KIND_FETCHED`] frame per request. Frames are those of
//! `runtime` (`len u32 | kind u8 | payload`, big-endian, bounded).
//!
//! Request: `replica u32 | max_wait_ms u32 | max_bytes u32 | n u32 |
//! n × (topic str | partition u32 | leader_epoch i32 | fetch_offset i64 |
//! last_fetched_epoch i32 | high_watermark i64)`.
//! Answer: `n u32 | n × (topic str | partition u32 | tag u8 | body)`, body
//! by tag: 0 records `hw i64 | log_start i64 | len u32 | batches`, 1
//! diverging `epoch i32 | end_offset i64`, 2 error `code i16`, 3 out of
//! range `log_start i64`. `str` is
//! `len u16 | UTF-8`. The batches are the leader's stored bytes, sent
//! without a copy.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::replica::{Epoch, NodeId};
use crate::api::ErrorCode;

/// The hello of a fetcher's connection (see `handshake`).
pub const KIND_HELLO_FETCH: u8 = 6;
pub const KIND_FETCH: u8 = 7;
pub const KIND_FETCHED: u8 = 8;

/// Partitions one request may name: a bound on what a peer can make the
/// leader allocate and look up.
pub const PARTITIONS_MAX: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequest {
    pub replica: NodeId,
    pub max_wait_ms: u32,
    pub max_bytes: u32,
    pub partitions: Vec<FetchPartition>,
}

/// One partition of a replica fetch: where the follower's log ends and
/// which epoch it follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPartition {
    pub topic: String,
    pub partition: u32,
    pub leader_epoch: Epoch,
    pub fetch_offset: i64,
    pub last_fetched_epoch: Epoch,
    /// The follower's high watermark: the leader answers at once when its
    /// own is ahead, so followers learn it without new data.
    pub high_watermark: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// Whole batches from the fetch offset (possibly none).
    Records {
        high_watermark: i64,
        log_start_offset: i64,
        batches: Vec<Bytes>,
    },
    /// Truncate (KIP-279), then fetch again.
    Diverging {
        epoch: Epoch,
        end_offset: i64,
    },
    /// The fetch offset is below the leader's log start (retention removed
    /// it): start the log again at `log_start_offset`.
    OutOfRange {
        log_start_offset: i64,
    },
    Error(ErrorCode),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedPartition {
    pub topic: String,
    pub partition: u32,
    pub fetched: Fetched,
}

impl Fetched {
    /// Whether the answer moves the follower (data, a truncation, a new
    /// high watermark) rather than telling it to wait.
    pub fn is_news(&self, known_hw: i64) -> bool {
        match self {
            Fetched::Records {
                high_watermark,
                batches,
                ..
            } => !batches.is_empty() || *high_watermark > known_hw,
            _ => true,
        }
    }
}

fn put_str(b: &mut BytesMut, s: &str) {
    let n = s.len().min(u16::MAX as usize);
    b.put_u16(n as u16);
    b.put_slice(&s.as_bytes()[..n]);
}

fn get_str(b: &mut Bytes) -> Result<String, String> {
    need(b, 2)?;
    let n = b.get_u16() as usize;
    need(b, n)?;
    String::from_utf8(b.split_to(n).to_vec()).map_err(|_| "a name that is not UTF-8".into())
}

fn need(b: &Bytes, n: usize) -> Result<(), String> {
    if b.remaining() < n {
        Err("truncated replica fetch".into())
    } else {
        Ok(())
    }
}

fn frame_prefix(out: &mut BytesMut, payload_len: usize, kind: u8) {
    out.put_u32((payload_len + 1) as u32);
    out.put_u8(kind);
}

impl FetchRequest {
    /// The whole frame.
    pub fn encode(&self) -> Bytes {
        let mut p = BytesMut::new();
        p.put_u32(self.replica);
        p.put_u32(self.max_wait_ms);
        p.put_u32(self.max_bytes);
        p.put_u32(self.partitions.len() as u32);
        for f in &self.partitions {
            put_str(&mut p, &f.topic);
            p.put_u32(f.partition);
            p.put_i32(f.leader_epoch);
            p.put_i64(f.fetch_offset);
            p.put_i32(f.last_fetched_epoch);
            p.put_i64(f.high_watermark);
        }
        let mut out = BytesMut::with_capacity(5 + p.len());
        frame_prefix(&mut out, p.len(), KIND_FETCH);
        out.extend_from_slice(&p);
        out.freeze()
    }

    /// The payload of a [`KIND_FETCH`] frame.
    pub fn decode(mut b: Bytes) -> Result<FetchRequest, String> {
        need(&b, 16)?;
        let replica = b.get_u32();
        let max_wait_ms = b.get_u32();
        let max_bytes = b.get_u32();
        let n = b.get_u32() as usize;
        if n > PARTITIONS_MAX {
            return Err(format!("a replica fetch of {n} partitions"));
        }
        // Each entry takes at least 30 bytes: the count cannot ask for
        // more memory than the frame brought.
        let mut partitions = Vec::with_capacity(n.min(b.remaining() / 30));
        for _ in 0..n {
            let topic = get_str(&mut b)?;
            need(&b, 28)?;
            partitions.push(FetchPartition {
                topic,
                partition: b.get_u32(),
                leader_epoch: b.get_i32(),
                fetch_offset: b.get_i64(),
                last_fetched_epoch: b.get_i32(),
                high_watermark: b.get_i64(),
            });
        }
        if b.has_remaining() {
            return Err("trailing bytes in a replica fetch".into());
        }
        Ok(FetchRequest {
            replica,
            max_wait_ms,
            max_bytes,
            partitions,
        })
    }
}

/// The whole answer frame as chunks: headers, then each partition's
/// stored batches as they are.
pub fn encode_answer(parts: Vec<FetchedPartition>) -> Vec<Bytes> {
    let mut chunks = Vec::new();
    let mut head = BytesMut::new();
    head.put_u32(parts.len() as u32);
    let mut len = 4usize;
    for p in parts {
        let before = head.len();
        put_str(&mut head, &p.topic);
        head.put_u32(p.partition);
        match p.fetched {
            Fetched::Records {
                high_watermark,
                log_start_offset,
                batches,
            } => {
                head.put_u8(0);
                head.put_i64(high_watermark);
                head.put_i64(log_start_offset);
                let bytes: usize = batches.iter().map(Bytes::len).sum();
                head.put_u32(bytes as u32);
                len += head.len() - before + bytes;
                if !batches.is_empty() {
                    chunks.push(head.split().freeze());
                    chunks.extend(batches);
                }
                continue;
            }
            Fetched::Diverging { epoch, end_offset } => {
                head.put_u8(1);
                head.put_i32(epoch);
                head.put_i64(end_offset);
            }
            Fetched::Error(code) => {
                head.put_u8(2);
                head.put_i16(code.code());
            }
            Fetched::OutOfRange { log_start_offset } => {
                head.put_u8(3);
                head.put_i64(log_start_offset);
            }
        }
        len += head.len() - before;
    }
    if !head.is_empty() {
        chunks.push(head.freeze());
    }
    let mut prefix = BytesMut::with_capacity(5);
    frame_prefix(&mut prefix, len, KIND_FETCHED);
    chunks.insert(0, prefix.freeze());
    chunks
}

/// The payload of a [`KIND_FETCHED`] frame. Batches come back as one
/// region per partition (`batches` holds it whole); the follower splits
/// and checks each batch as it appends.
pub fn decode_answer(mut b: Bytes) -> Result<Vec<FetchedPartition>, String> {
    need(&b, 4)?;
    let n = b.get_u32() as usize;
    if n > PARTITIONS_MAX {
        return Err(format!("a replica fetch answer of {n} partitions"));
    }
    let mut out = Vec::with_capacity(n.min(b.remaining() / 9));
    for _ in 0..n {
        let topic = get_str(&mut b)?;
        need(&b, 5)?;
        let partition = b.get_u32();
        let fetched = match b.get_u8() {
            0 => {
                need(&b, 20)?;
                let high_watermark = b.get_i64();
                let log_start_offset = b.get_i64();
                let len = b.get_u32() as usize;
                need(&b, len)?;
                let region = b.split_to(len);
                Fetched::Records {
                    high_watermark,
                    log_start_offset,
                    batches: if region.is_empty() { Vec::new() } else { vec![region] },
                }
            }
            1 => {
                need(&b, 12)?;
                Fetched::Diverging {
                    epoch: b.get_i32(),
                    end_offset: b.get_i64(),
                }
            }
            2 => {
                need(&b, 2)?;
                Fetched::Error(ErrorCode::from_code(b.get_i16()))
            }
            3 => {
                need(&b, 8)?;
                Fetched::OutOfRange {
                    log_start_offset: b.get_i64(),
                }
            }
            tag => return Err(format!("unknown replica fetch answer tag {tag}")),
        };
        out.push(FetchedPartition {
            topic,
            partition,
            fetched,
        });
    }
    if b.has_remaining() {
        return Err("trailing bytes in a replica fetch answer".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join(chunks: Vec<Bytes>) -> Bytes {
        let mut all = BytesMut::new();
        for c in chunks {
            all.extend_from_slice(&c);
        }
        all.freeze()
    }

    fn payload(frame: Bytes, kind: u8) -> Bytes {
        let mut f = frame;
        let len = f.get_u32() as usize;
        assert_eq!(len, f.len(), "the length prefix counts kind and payload");
        assert_eq!(f.get_u8(), kind);
        f
    }

    #[test]
    fn requests_round_trip_and_damage_is_refused() {
        let req = FetchRequest {
            replica: 3,
            max_wait_ms: 500,
            max_bytes: 1 << 20,
            partitions: vec![
                FetchPartition {
                    topic: "orders".into(),
                    partition: 7,
                    leader_epoch: 4,
                    fetch_offset: 1234,
                    last_fetched_epoch: 3,
                    high_watermark: 1200,
                },
                FetchPartition {
                    topic: "é".into(),
                    partition: 0,
                    leader_epoch: 0,
                    fetch_offset: 0,
                    last_fetched_epoch: -1,
                    high_watermark: 0,
                },
            ],
        };
        let p = payload(req.encode(), KIND_FETCH);
        assert_eq!(FetchRequest::decode(p.clone()), Ok(req));
        for cut in 0..p.len() {
            assert!(FetchRequest::decode(p.slice(..cut)).is_err(), "cut at {cut}");
        }
        let mut long = BytesMut::from(&p[..]);
        long.put_u8(0);
        assert!(FetchRequest::decode(long.freeze()).is_err());
        // A count far above what the frame holds fails without allocating it.
        let mut huge = BytesMut::from(&p[..12]);
        huge.put_u32(PARTITIONS_MAX as u32);
        assert!(FetchRequest::decode(huge.freeze()).is_err());
    }

    #[test]
    fn answers_round_trip_with_the_batches_uncopied() {
        let data = Bytes::from(vec![7u8; 40 << 10]);
        let small = Bytes::from_static(b"0123456789");
        let parts = vec![
            FetchedPartition {
                topic: "t".into(),
                partition: 1,
                fetched: Fetched::Records {
                    high_watermark: 10,
                    log_start_offset: 2,
                    batches: vec![data.clone(), small.clone()],
                },
            },
            FetchedPartition {
                topic: "t".into(),
                partition: 2,
                fetched: Fetched::Records {
                    high_watermark: 5,
                    log_start_offset: 0,
                    batches: Vec::new(),
                },
            },
            FetchedPartition {
                topic: "u".into(),
                partition: 0,
                fetched: Fetched::Diverging {
                    epoch: 2,
                    end_offset: 99,
                },
            },
            FetchedPartition {
                topic: "v".into(),
                partition: 9,
                fetched: Fetched::Error(ErrorCode::NotLeaderOrFollower),
            },
            FetchedPartition {
                topic: "w".into(),
                partition: 3,
                fetched: Fetched::OutOfRange { log_start_offset: 77 },
            },
        ];
        let chunks = encode_answer(parts.clone());
        assert!(
            chunks.iter().any(|c| c.as_ptr() == data.as_ptr()),
            "stored batches go out as they are"
        );
        let p = payload(join(chunks), KIND_FETCHED);
        let mut expected = parts;
        let mut joined = BytesMut::from(&data[..]);
        joined.extend_from_slice(&small);
        expected[0].fetched = Fetched::Records {
            high_watermark: 10,
            log_start_offset: 2,
            batches: vec![joined.freeze()],
        };
        assert_eq!(decode_answer(p.clone()), Ok(expected));
        for cut in [0, 3, 5, 20, 100, p.len() - 1] {
            assert!(decode_answer(p.slice(..cut)).is_err(), "cut at {cut}");
        }
    }
}
