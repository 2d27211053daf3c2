//! The leader-epoch cache of one replica: for every leader epoch whose
//! batches this log holds, the offset where that epoch's first batch is.
//! It answers Kafka's OffsetForLeaderEpoch question — where did epoch E end
//! in this log? — which is how a replica that comes back after a failover
//! finds the point where its log diverges from the new leader's.
//!
//! The log keeps it (`Log::epochs`): every appended batch's leader epoch
//! is assigned at its base offset, a checkpoint (`leader-epochs`) is
//! written with each producer snapshot, and opening rebuilds the rest from
//! the batches replayed after it.

/// A partition's leader epoch: bumped on every leader change.
pub type Epoch = i32;
/// Kafka's "no epoch".
pub const UNDEFINED_EPOCH: Epoch = -1;

use crate::envelope::Envelope;

const ENVELOPE: Envelope = Envelope {
    magic: *b"SLEP",
    version: 1,
};
/// Bytes of one entry in a checkpoint: epoch i32 | start i64.
const ENTRY_BYTES: usize = 12;

/// Epochs strictly increasing, start offsets non-decreasing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EpochCache {
    entries: Vec<(Epoch, i64)>,
}

impl EpochCache {
    pub fn entries(&self) -> &[(Epoch, i64)] {
        &self.entries
    }

    /// The newest epoch and where it starts.
    pub fn latest(&self) -> Option<(Epoch, i64)> {
        self.entries.last().copied()
    }

    /// The newest epoch, or [`UNDEFINED_EPOCH`] for an empty log.
    pub fn latest_epoch(&self) -> Epoch {
        self.latest().map_or(UNDEFINED_EPOCH, |(e, _)| e)
    }

    /// Records that epoch `epoch` starts at `start`: a leader taking over
    /// (at its log end), or a batch of a newer epoch appended. An epoch
    /// already known, or older than the newest, changes nothing.
    pub fn assign(&mut self, epoch: Epoch, start: i64) {
        match self.entries.last() {
            Some(&(last, _)) if epoch <= last => {}
            _ => {
                // An epoch that wrote nothing before the next one starts is
                // dropped: it owns no batch.
                while self.entries.last().is_some_and(|&(_, s)| s >= start) {
                    self.entries.pop();
                }
                self.entries.push((epoch, start));
            }
        }
    }

    /// OffsetForLeaderEpoch: the largest epoch `<= epoch` this log knows,
    /// and the offset where it ended here (the start of the next epoch, or
    /// `log_end` for the newest). `(UNDEFINED_EPOCH, -1)` if every epoch
    /// here is newer.
    pub fn end_offset_for(&self, epoch: Epoch, log_end: i64) -> (Epoch, i64) {
        let at = self.entries.partition_point(|&(e, _)| e <= epoch);
        if at == 0 {
            return (UNDEFINED_EPOCH, -1);
        }
        let found = self.entries[at - 1].0;
        let end = self.entries.get(at).map_or(log_end, |&(_, s)| s);
        (found, end)
    }

    /// The checkpoint file: the crate's [`Envelope`] around count u32 |
    /// count × (epoch i32 | start i64), big-endian.
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        let mut body = Vec::with_capacity(4 + self.entries.len() * ENTRY_BYTES);
        body.extend_from_slice(&(self.entries.len() as u32).to_be_bytes());
        for &(epoch, start) in &self.entries {
            body.extend_from_slice(&epoch.to_be_bytes());
            body.extend_from_slice(&start.to_be_bytes());
        }
        ENVELOPE.seal(&body).map_err(|e| e.to_string())
    }

    /// Reads a checkpoint; any damage is an error (the caller replays).
    pub fn decode(bytes: &[u8]) -> Result<EpochCache, String> {
        let body = ENVELOPE.open(bytes, usize::MAX).map_err(|e| e.to_string())?;
        let (count, entries) = body.split_first_chunk::<4>().ok_or("truncated")?;
        if entries.len() != u32::from_be_bytes(*count) as usize * ENTRY_BYTES {
            return Err("the count does not match the entries".into());
        }
        let mut cache = EpochCache::default();
        for e in entries.chunks_exact(ENTRY_BYTES) {
            let (epoch, start) = e.split_at(4);
            let epoch = i32::from_be_bytes([epoch[0], epoch[1], epoch[2], epoch[3]]);
            let mut s = [0u8; 8];
            s.copy_from_slice(start);
            cache.assign(epoch, i64::from_be_bytes(s));
        }
        Ok(cache)
    }

    /// The log was cut to end at `offset`: epochs starting at or after it
    /// are gone.
    pub fn truncate_from_end(&mut self, offset: i64) {
        while self.entries.last().is_some_and(|&(_, s)| s >= offset) {
            self.entries.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_offsets_follow_kafkas_offset_for_leader_epoch() {
        let mut c = EpochCache::default();
        assert_eq!(c.end_offset_for(3, 0), (UNDEFINED_EPOCH, -1));
        c.assign(1, 0);
        c.assign(2, 10);
        c.assign(2, 15); // known: no change
        c.assign(5, 20);
        assert_eq!(c.entries(), &[(1, 0), (2, 10), (5, 20)]);
        assert_eq!(c.end_offset_for(0, 30), (UNDEFINED_EPOCH, -1));
        assert_eq!(c.end_offset_for(1, 30), (1, 10));
        assert_eq!(c.end_offset_for(2, 30), (2, 20));
        // Epochs 3 and 4 never wrote here: the answer is epoch 2's end.
        assert_eq!(c.end_offset_for(4, 30), (2, 20));
        assert_eq!(c.end_offset_for(5, 30), (5, 30));
        assert_eq!(c.end_offset_for(9, 30), (5, 30));
        c.truncate_from_end(12);
        assert_eq!(c.entries(), &[(1, 0), (2, 10)]);
        // An epoch that starts where the previous one would have (it wrote
        // nothing) replaces it.
        c.assign(6, 12);
        c.assign(7, 12);
        assert_eq!(c.entries(), &[(1, 0), (2, 10), (7, 12)]);
    }

    #[test]
    fn checkpoints_round_trip_and_damage_is_refused() {
        let mut c = EpochCache::default();
        c.assign(1, 0);
        c.assign(4, 100);
        let bytes = c.encode().expect("encodes");
        assert_eq!(EpochCache::decode(&bytes), Ok(c));
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x08;
            assert!(EpochCache::decode(&bad).is_err(), "flip at {at}");
        }
        let lying = ENVELOPE.seal(&9u32.to_be_bytes()).expect("seals");
        assert!(EpochCache::decode(&lying).is_err());
    }
}
