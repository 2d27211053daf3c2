//! A toy replicated state for the quorum's tests and simulations (unit
//! tests here, `tests/cluster_raft_sim.rs`): a chained digest of every
//! command applied, so two nodes agree exactly when they applied the same
//! commands at the same indexes. Not for production use.

use super::{CodecError, CommandCodec, StateMachine};

/// The digest after applying `value` at `index` to `digest`.
pub fn chain(digest: u64, index: u64, value: u64) -> u64 {
    (digest ^ value ^ (index << 32))
        .wrapping_mul(0x100_0000_01b3)
        .rotate_left(17)
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Ledger {
    pub last_index: u64,
    pub digest: u64,
    pub count: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Put(pub u64);

impl CommandCodec for Put {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        out.extend_from_slice(&self.0.to_le_bytes());
        Ok(())
    }
    fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        let b: [u8; 8] = bytes
            .try_into()
            .map_err(|_| CodecError::new(format!("a Put is 8 bytes, got {}", bytes.len())))?;
        Ok(Put(u64::from_le_bytes(b)))
    }
}

impl StateMachine for Ledger {
    type Command = Put;
    type Outcome = ();
    fn apply(&mut self, index: u64, cmd: &Put) {
        assert!(index > self.last_index, "applied {index} after {}", self.last_index);
        self.last_index = index;
        self.digest = chain(self.digest, index, cmd.0);
        self.count += 1;
    }
    fn snapshot(&self) -> Result<Vec<u8>, CodecError> {
        Ok([self.last_index, self.digest, self.count]
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .collect())
    }
    fn restore(bytes: &[u8]) -> Result<Self, CodecError> {
        let words: Vec<u64> = bytes
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
            .collect();
        match words[..] {
            [last_index, digest, count] if bytes.len() == 24 => Ok(Ledger {
                last_index,
                digest,
                count,
            }),
            _ => Err(CodecError::new(format!(
                "a Ledger snapshot is 24 bytes, got {}",
                bytes.len()
            ))),
        }
    }
}
