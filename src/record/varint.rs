//! Kafka's zigzag varints: `varint` for i32 (at most 5 bytes) and `varlong`
//! for i64 (at most 10 bytes), as used inside v2 records.
//!
//! Invariants: encoders write straight into the caller's buffer (no heap
//! allocation of their own); decoders advance the input slice only on
//! success, reject truncated input and reject encodings longer than the type
//! allows (including a last byte with bits beyond the type's width), so every
//! value has exactly one accepted byte form up to redundant zero groups.
use super::RecordError;

const VARINT_BYTES_MAX: usize = 5;
const VARLONG_BYTES_MAX: usize = 10;

#[inline]
fn zigzag32(v: i32) -> u32 {
    ((v << 1) ^ (v >> 31)) as u32
}

#[inline]
fn zigzag64(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

#[inline]
fn unzigzag32(u: u32) -> i32 {
    ((u >> 1) as i32) ^ -((u & 1) as i32)
}

#[inline]
fn unzigzag64(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

#[inline]
fn unsigned_len(u: u64) -> usize {
    let bits = 64 - (u | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Bytes that `put_varint(v)` writes.
#[inline]
pub(crate) fn varint_len(v: i32) -> usize {
    unsigned_len(u64::from(zigzag32(v)))
}

/// Bytes that `put_varlong(v)` writes.
#[inline]
pub(crate) fn varlong_len(v: i64) -> usize {
    unsigned_len(zigzag64(v))
}

#[inline]
fn put_unsigned(out: &mut Vec<u8>, mut u: u64) {
    let mut scratch = [0u8; VARLONG_BYTES_MAX];
    let mut n = 0;
    while u >= 0x80 {
        scratch[n] = (u as u8) | 0x80;
        u >>= 7;
        n += 1;
    }
    scratch[n] = u as u8;
    out.extend_from_slice(&scratch[..=n]);
}

/// Appends `v` as a zigzag varint.
#[inline]
pub(crate) fn put_varint(out: &mut Vec<u8>, v: i32) {
    put_unsigned(out, u64::from(zigzag32(v)));
}

/// Appends `v` as a zigzag varlong.
#[inline]
pub(crate) fn put_varlong(out: &mut Vec<u8>, v: i64) {
    put_unsigned(out, zigzag64(v));
}

/// Reads an unsigned varint of at most `bytes_max` bytes whose last byte may
/// carry at most `last_max`; advances `input` past it.
#[inline]
fn read_unsigned(input: &mut &[u8], bytes_max: usize, last_max: u8) -> Result<u64, RecordError> {
    let mut value: u64 = 0;
    for (i, &b) in input.iter().take(bytes_max).enumerate() {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            if i == bytes_max - 1 && b > last_max {
                return Err(RecordError::Corrupt("varint overflows its type"));
            }
            *input = &input[i + 1..];
            return Ok(value);
        }
    }
    if input.len() < bytes_max {
        Err(RecordError::Corrupt("truncated varint"))
    } else {
        Err(RecordError::Corrupt("varint too long"))
    }
}

/// Reads a zigzag varint (i32) and advances `input` past it.
#[inline]
pub(crate) fn read_varint(input: &mut &[u8]) -> Result<i32, RecordError> {
    // Fast path: most lengths and deltas fit one byte.
    if let Some(&b) = input.first() {
        if b < 0x80 {
            *input = &input[1..];
            return Ok(unzigzag32(u32::from(b)));
        }
    }
    let u = read_unsigned(input, VARINT_BYTES_MAX, 0x0f)?;
    // The last-byte check above keeps u within 32 bits.
    debug_assert!(u <= u64::from(u32::MAX));
    Ok(unzigzag32(u as u32))
}

/// Reads a zigzag varlong (i64) and advances `input` past it.
#[inline]
pub(crate) fn read_varlong(input: &mut &[u8]) -> Result<i64, RecordError> {
    let u = read_unsigned(input, VARLONG_BYTES_MAX, 0x01)?;
    Ok(unzigzag64(u))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc32(v: i32) -> Vec<u8> {
        let mut out = Vec::new();
        put_varint(&mut out, v);
        assert_eq!(out.len(), varint_len(v), "varint_len({v})");
        out
    }

    fn enc64(v: i64) -> Vec<u8> {
        let mut out = Vec::new();
        put_varlong(&mut out, v);
        assert_eq!(out.len(), varlong_len(v), "varlong_len({v})");
        out
    }

    #[test]
    fn zigzag_known_values() {
        // From the protobuf/Kafka zigzag table.
        assert_eq!(zigzag32(0), 0);
        assert_eq!(zigzag32(-1), 1);
        assert_eq!(zigzag32(1), 2);
        assert_eq!(zigzag32(-2), 3);
        assert_eq!(zigzag32(i32::MAX), 0xffff_fffe);
        assert_eq!(zigzag32(i32::MIN), 0xffff_ffff);
        assert_eq!(zigzag64(i64::MIN), u64::MAX);
        assert_eq!(zigzag64(i64::MAX), u64::MAX - 1);
        for v in [0, 1, -1, 63, -64, 64, i32::MAX, i32::MIN] {
            assert_eq!(unzigzag32(zigzag32(v)), v);
            assert_eq!(unzigzag64(zigzag64(i64::from(v))), i64::from(v));
        }
    }

    #[test]
    fn varint_known_encodings() {
        assert_eq!(enc32(0), [0x00]);
        assert_eq!(enc32(-1), [0x01]);
        assert_eq!(enc32(1), [0x02]);
        assert_eq!(enc32(63), [0x7e]);
        assert_eq!(enc32(-64), [0x7f]);
        assert_eq!(enc32(64), [0x80, 0x01]);
        assert_eq!(enc32(300), [0xd8, 0x04]);
        assert_eq!(enc32(i32::MAX), [0xfe, 0xff, 0xff, 0xff, 0x0f]);
        assert_eq!(enc32(i32::MIN), [0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert_eq!(enc64(i64::MIN).len(), 10);
        assert_eq!(*enc64(i64::MIN).last().unwrap(), 0x01);
        assert_eq!(enc64(i64::MAX).len(), 10);
    }

    #[test]
    fn varint_round_trips_edges() {
        let edges32 = [0, 1, -1, 63, 64, -64, -65, 8191, 8192, i32::MAX, i32::MIN];
        for v in edges32 {
            let bytes = enc32(v);
            let mut input = &bytes[..];
            assert_eq!(read_varint(&mut input).unwrap(), v);
            assert!(input.is_empty());
        }
        let edges64 = [0, -1, 1, i64::from(i32::MAX) + 1, i64::MAX, i64::MIN];
        for v in edges64 {
            let bytes = enc64(v);
            let mut input = &bytes[..];
            assert_eq!(read_varlong(&mut input).unwrap(), v);
            assert!(input.is_empty());
        }
    }

    #[test]
    fn decoder_leaves_trailing_bytes() {
        let mut input: &[u8] = &[0xd8, 0x04, 0xaa];
        assert_eq!(read_varint(&mut input).unwrap(), 300);
        assert_eq!(input, [0xaa]);
    }

    #[test]
    fn rejects_truncated_and_overlong() {
        let mut empty: &[u8] = &[];
        assert!(read_varint(&mut empty).is_err());
        let mut truncated: &[u8] = &[0x80, 0x80];
        assert!(read_varint(&mut truncated).is_err());
        assert_eq!(truncated.len(), 2, "input must not advance on error");
        let mut overlong: &[u8] = &[0x80, 0x80, 0x80, 0x80, 0x80, 0x00];
        assert!(read_varint(&mut overlong).is_err());
        // Fifth byte carrying bits beyond 32.
        let mut wide: &[u8] = &[0xff, 0xff, 0xff, 0xff, 0x1f];
        assert!(read_varint(&mut wide).is_err());
        let mut wide64: &[u8] = &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert!(read_varlong(&mut wide64).is_err());
        let mut long64 = [0x80u8; 11];
        long64[10] = 0;
        assert!(read_varlong(&mut &long64[..]).is_err());
    }
}
