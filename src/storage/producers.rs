//! Idempotent-producer state of one partition, Kafka's rules: per producer
//! id, its current epoch and the sequence ranges and offsets of the last
//! few batches it wrote. A batch from a known producer must continue its
//! sequence exactly; a retried batch that is already in the log is
//! recognised and answered with its original offsets instead of being
//! appended again.
//!
//! Sans-IO: [`ProducerStates::check`] judges a batch before it is appended
//! and [`ProducerStates::record`] takes it in once it has its offsets, both
//! under the log's append order, so no other append can slip between. The
//! log rebuilds the table at open from a snapshot ([`encode`](ProducerStates::encode)
//! / [`decode`](ProducerStates::decode)) plus the batches after it, so a
//! retry after a broker restart is still caught.

use std::collections::{HashMap, VecDeque};

use crate::envelope::Envelope;
use crate::record::BatchHeader;

/// Batches remembered per producer: Kafka's limit on in-flight requests of
/// an idempotent producer, so any retry it can make is recognised.
pub const BATCHES_KEPT: usize = 5;

/// Where one batch of a producer landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BatchMeta {
    first_seq: i32,
    last_seq: i32,
    base_offset: i64,
    last_offset: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Producer {
    epoch: i16,
    /// Oldest first; at most [`BATCHES_KEPT`].
    batches: VecDeque<BatchMeta>,
    /// Broker wall-clock time of its last batch, for expiry. Not the
    /// batch's own timestamps: a client's clock must not decide how long
    /// the broker remembers it.
    last_seen_ms: i64,
}

impl Producer {
    fn last_seq(&self) -> Option<i32> {
        self.batches.back().map(|b| b.last_seq)
    }
}

/// What to do with a batch that passed [`ProducerStates::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// New data: append it.
    Append,
    /// A retry of a batch already in the log at these offsets: answer with
    /// them and append nothing.
    Duplicate { base_offset: i64, last_offset: i64 },
}

/// Why a batch of an idempotent producer is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SequenceError {
    #[error("producer {producer_id} epoch {epoch} is older than its current epoch {current}")]
    StaleEpoch { producer_id: i64, epoch: i16, current: i16 },
    #[error("producer {producer_id} epoch {epoch}: expected sequence {expected}, got {got}")]
    OutOfOrder {
        producer_id: i64,
        epoch: i16,
        expected: i32,
        got: i32,
    },
    #[error("producer {producer_id} is unknown here and its batch starts at sequence {got}, not 0")]
    UnknownProducer { producer_id: i64, got: i32 },
    #[error("batch of producer {producer_id} has epoch {epoch} and sequence {seq}: both must be >= 0")]
    Invalid { producer_id: i64, epoch: i16, seq: i32 },
}

/// The sequence after `seq`; sequences wrap from i32::MAX to 0 (Kafka).
fn next_seq(seq: i32) -> i32 {
    if seq == i32::MAX {
        0
    } else {
        seq + 1
    }
}

/// The sequence of the last record of a batch.
fn last_seq_of(h: &BatchHeader) -> i32 {
    // Wraps like Kafka's DefaultRecordBatch.lastSequence.
    let last = i64::from(h.base_sequence) + i64::from(h.last_offset_delta);
    if last > i64::from(i32::MAX) {
        (last - i64::from(i32::MAX) - 1) as i32
    } else {
        last as i32
    }
}

/// Producer states of one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerStates {
    producers: HashMap<i64, Producer>,
}

const ENVELOPE: Envelope = Envelope {
    magic: *b"SLPS",
    version: 1,
};
/// A snapshot file is read whole: this bounds it.
const SNAPSHOT_BYTES_MAX: usize = 256 << 20;
const BATCH_BYTES: usize = 4 + 4 + 8 + 8;

impl ProducerStates {
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// Judges `h` against the producer's state. Batches without a producer
    /// id are not idempotent and always appended.
    pub fn check(&self, h: &BatchHeader) -> Result<Verdict, SequenceError> {
        let producer_id = h.producer_id;
        if producer_id < 0 {
            return Ok(Verdict::Append);
        }
        let (epoch, got) = (h.producer_epoch, h.base_sequence);
        if epoch < 0 || got < 0 {
            return Err(SequenceError::Invalid {
                producer_id,
                epoch,
                seq: got,
            });
        }
        let Some(p) = self.producers.get(&producer_id) else {
            // The first batch of a producer starts at 0. Anything else is a
            // producer whose state is gone (expired, or its batches removed
            // by retention): the client resets on UNKNOWN_PRODUCER_ID.
            return if got == 0 {
                Ok(Verdict::Append)
            } else {
                Err(SequenceError::UnknownProducer { producer_id, got })
            };
        };
        if epoch < p.epoch {
            return Err(SequenceError::StaleEpoch {
                producer_id,
                epoch,
                current: p.epoch,
            });
        }
        if epoch > p.epoch {
            // A bumped epoch starts its sequences again.
            return if got == 0 {
                Ok(Verdict::Append)
            } else {
                Err(SequenceError::OutOfOrder {
                    producer_id,
                    epoch,
                    expected: 0,
                    got,
                })
            };
        }
        let last = last_seq_of(h);
        if let Some(b) = p.batches.iter().find(|b| b.first_seq == got && b.last_seq == last) {
            return Ok(Verdict::Duplicate {
                base_offset: b.base_offset,
                last_offset: b.last_offset,
            });
        }
        let expected = p.last_seq().map_or(0, next_seq);
        if got == expected {
            Ok(Verdict::Append)
        } else {
            Err(SequenceError::OutOfOrder {
                producer_id,
                epoch,
                expected,
                got,
            })
        }
    }

    /// Takes in a batch that is now in the log (`h` carries its stored
    /// offsets), at broker time `now_ms`. Also used to replay the log,
    /// which is trusted as it is (a replayed producer counts as seen at the
    /// replay: expiry bounds memory, it is not a promise to forget).
    pub fn record(&mut self, h: &BatchHeader, now_ms: i64) {
        if h.producer_id < 0 {
            return;
        }
        let meta = BatchMeta {
            first_seq: h.base_sequence,
            last_seq: last_seq_of(h),
            base_offset: h.base_offset,
            last_offset: h.last_offset(),
        };
        let p = self.producers.entry(h.producer_id).or_insert_with(|| Producer {
            epoch: h.producer_epoch,
            batches: VecDeque::with_capacity(BATCHES_KEPT),
            last_seen_ms: now_ms,
        });
        if h.producer_epoch != p.epoch {
            p.epoch = h.producer_epoch;
            p.batches.clear();
        }
        if p.batches.len() == BATCHES_KEPT {
            p.batches.pop_front();
        }
        p.batches.push_back(meta);
        p.last_seen_ms = p.last_seen_ms.max(now_ms);
    }

    /// Forgets producers that have written nothing for `idle_ms` (Kafka's
    /// producer.id.expiration.ms). Returns how many were forgotten.
    pub fn expire(&mut self, now_ms: i64, idle_ms: u64) -> usize {
        let before = self.producers.len();
        let idle = i64::try_from(idle_ms).unwrap_or(i64::MAX);
        self.producers
            .retain(|_, p| now_ms.saturating_sub(p.last_seen_ms) <= idle);
        before - self.producers.len()
    }

    /// The snapshot file for this state as of `offset` (the state after
    /// every batch below it), in the crate's [`Envelope`]; the body is
    /// offset i64 | count u32 | entries, each entry producer id i64 |
    /// epoch i16 | last seen (ms) i64 | batches u8 | batches × (first seq
    /// i32 | last seq i32 | base offset i64 | last offset i64).
    /// Big-endian; producers in id order so the bytes are deterministic.
    pub fn encode(&self, offset: i64) -> Result<Vec<u8>, String> {
        let mut ids: Vec<i64> = self.producers.keys().copied().collect();
        ids.sort_unstable();
        let mut body = Vec::with_capacity(12 + ids.len() * (19 + BATCHES_KEPT * BATCH_BYTES));
        body.extend_from_slice(&offset.to_be_bytes());
        body.extend_from_slice(&(ids.len() as u32).to_be_bytes());
        for id in &ids {
            let p = &self.producers[id];
            body.extend_from_slice(&id.to_be_bytes());
            body.extend_from_slice(&p.epoch.to_be_bytes());
            body.extend_from_slice(&p.last_seen_ms.to_be_bytes());
            body.push(p.batches.len() as u8);
            for b in &p.batches {
                body.extend_from_slice(&b.first_seq.to_be_bytes());
                body.extend_from_slice(&b.last_seq.to_be_bytes());
                body.extend_from_slice(&b.base_offset.to_be_bytes());
                body.extend_from_slice(&b.last_offset.to_be_bytes());
            }
        }
        ENVELOPE.seal(&body).map_err(|e| e.to_string())
    }

    /// Parses a snapshot: the offset it was taken at and the state. Any
    /// damage (the envelope's checks, a count that does not match) is an
    /// error; the caller then falls back to an older snapshot or to
    /// replaying the log.
    pub fn decode(bytes: &[u8]) -> Result<(i64, ProducerStates), String> {
        let body = ENVELOPE.open(bytes, SNAPSHOT_BYTES_MAX).map_err(|e| e.to_string())?;
        let mut r = Reader { buf: body };
        let offset = r.i64()?;
        let count = r.u32()? as usize;
        // Each entry takes at least 19 bytes: bound the count before
        // reserving anything for it.
        if count > r.buf.len() / 19 {
            return Err(format!("{count} producers cannot fit in {} bytes", r.buf.len()));
        }
        let mut producers = HashMap::with_capacity(count);
        for _ in 0..count {
            let id = r.i64()?;
            let epoch = r.i16()?;
            let last_seen_ms = r.i64()?;
            let n = r.u8()? as usize;
            if n > BATCHES_KEPT || id < 0 {
                return Err(format!("bad entry for producer {id}"));
            }
            let mut batches = VecDeque::with_capacity(BATCHES_KEPT);
            for _ in 0..n {
                batches.push_back(BatchMeta {
                    first_seq: r.i32()?,
                    last_seq: r.i32()?,
                    base_offset: r.i64()?,
                    last_offset: r.i64()?,
                });
            }
            let p = Producer {
                epoch,
                batches,
                last_seen_ms,
            };
            if producers.insert(id, p).is_some() {
                return Err(format!("producer {id} appears twice"));
            }
        }
        if !r.buf.is_empty() {
            return Err(format!("{} trailing bytes", r.buf.len()));
        }
        Ok((offset, ProducerStates { producers }))
    }
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let (head, rest) = self.buf.split_first_chunk::<N>().ok_or("truncated")?;
        self.buf = rest;
        Ok(*head)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take::<1>()?[0])
    }
    fn i16(&mut self) -> Result<i16, String> {
        self.take().map(i16::from_be_bytes)
    }
    fn u32(&mut self) -> Result<u32, String> {
        self.take().map(u32::from_be_bytes)
    }
    fn i32(&mut self) -> Result<i32, String> {
        self.take().map(i32::from_be_bytes)
    }
    fn i64(&mut self) -> Result<i64, String> {
        self.take().map(i64::from_be_bytes)
    }
}

#[cfg(test)]
mod tests;
