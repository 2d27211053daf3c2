//! The data of a raft entry: a format byte, then the command's codec bytes.
//!
//! An entry with no data is raft's own no-op (a new leader's first entry)
//! and reaches no state machine. The format byte lets a later release
//! change the framing; an unknown one is refused, never guessed at.

use super::state_machine::{CodecError, CommandCodec};

/// The only entry format this build writes and reads.
pub(crate) const ENTRY_FORMAT_V1: u8 = 1;

/// The entry data for `cmd`.
pub(crate) fn encode<C: CommandCodec>(cmd: &C) -> Result<Vec<u8>, CodecError> {
    let mut data = vec![ENTRY_FORMAT_V1];
    cmd.encode(&mut data)?;
    Ok(data)
}

/// The command in an entry's data; `None` for raft's no-op.
pub(crate) fn decode<C: CommandCodec>(data: &[u8]) -> Result<Option<C>, CodecError> {
    match data.split_first() {
        None => Ok(None),
        Some((&ENTRY_FORMAT_V1, rest)) => C::decode(rest).map(Some),
        Some((format, _)) => Err(CodecError::new(format!("unknown entry format {format}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Word(u32);

    impl CommandCodec for Word {
        fn encode(&self, out: &mut Vec<u8>) -> Result<(), CodecError> {
            out.extend_from_slice(&self.0.to_le_bytes());
            Ok(())
        }
        fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
            let b: [u8; 4] = bytes
                .try_into()
                .map_err(|_| CodecError::new(format!("{} bytes, want 4", bytes.len())))?;
            Ok(Word(u32::from_le_bytes(b)))
        }
    }

    #[test]
    fn round_trip_noop_and_bad_input() {
        assert_eq!(decode::<Word>(&encode(&Word(7)).expect("encodes")), Ok(Some(Word(7))));
        assert_eq!(decode::<Word>(&[]), Ok(None));
        assert!(decode::<Word>(&[2, 0, 0, 0, 0]).is_err(), "unknown format");
        assert!(decode::<Word>(&[ENTRY_FORMAT_V1, 1]).is_err(), "codec error");
    }
}
