//! Which partition a produced record goes to.
//!
//! Keyed records: Kafka's default partitioner, exactly as the Java client
//! computes it: `toPositive(murmur2(key)) % partitions`, so a key lands on
//! the same partition whether a Kafka client or this one produced it.
//! Unkeyed records: a sticky partitioner: every unkeyed record of a topic
//! goes to one partition until a batch for that partition is sent, then the
//! next unkeyed record picks another partition at random. Batches fill up
//! instead of spreading one record per partition.
//!
//! Pure logic, no I/O; the random source is a seeded xorshift so tests are
//! deterministic.
use std::collections::HashMap;

/// Kafka's `Utils.murmur2`: 32-bit MurmurHash2 with seed 0x9747b28c, the
/// tail bytes folded in little-endian, as the Java client does it (Java's
/// `int` arithmetic is wrapping; `>>>` is the unsigned shift used here).
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    // Java: `int h = seed ^ length`; the length wraps into an int.
    let mut h: u32 = SEED ^ (data.len() as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    // Java's fall-through switch on length % 4.
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// Kafka's `Utils.toPositive(murmur2(key)) % partitions`. Panics if
/// `partitions` is 0 (a topic always has at least one).
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    assert!(partitions > 0, "a topic has at least one partition");
    ((murmur2(key) & 0x7fff_ffff) as u32) % partitions
}

/// A small, seeded xorshift64* generator: random enough to spread sticky
/// partitions, deterministic under test.
#[derive(Debug, Clone)]
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        XorShift(seed | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u32) -> u32 {
        debug_assert!(n > 0);
        ((self.next() >> 32) % u64::from(n)) as u32
    }
}

/// The sticky choice of one topic.
#[derive(Debug, Clone, Copy, Default)]
struct Sticky {
    /// Where unkeyed records go now; `None` after its batch was sent.
    current: Option<u32>,
    /// The choice before, avoided by the next pick.
    previous: Option<u32>,
}

/// Chooses partitions for records: murmur2 for keyed ones, sticky for
/// unkeyed ones.
#[derive(Debug, Clone)]
pub struct Partitioner {
    sticky: HashMap<String, Sticky>,
    rng: XorShift,
}

impl Default for Partitioner {
    fn default() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Partitioner::with_seed(nanos ^ u64::from(std::process::id()).rotate_left(32))
    }
}

impl Partitioner {
    /// A partitioner whose random choices follow `seed`.
    pub fn with_seed(seed: u64) -> Self {
        Partitioner {
            sticky: HashMap::new(),
            rng: XorShift::new(seed),
        }
    }

    /// The partition of a record of `topic` (which has `partitions`
    /// partitions) with `key`.
    pub fn partition(&mut self, topic: &str, key: Option<&[u8]>, partitions: u32) -> u32 {
        assert!(partitions > 0, "a topic has at least one partition");
        if let Some(key) = key {
            return partition_for_key(key, partitions);
        }
        if !self.sticky.contains_key(topic) {
            self.sticky.insert(topic.to_string(), Sticky::default());
        }
        let Some(sticky) = self.sticky.get_mut(topic) else {
            unreachable!("inserted above");
        };
        if let Some(p) = sticky.current.filter(|&p| p < partitions) {
            return p;
        }
        let mut p = self.rng.below(partitions);
        if partitions > 1 && Some(p) == sticky.previous {
            p = (p + 1) % partitions;
        }
        sticky.current = Some(p);
        p
    }

    /// A batch of `topic`'s `partition` was sent: if unkeyed records were
    /// sticking to it, the next one picks another partition.
    pub fn batch_sent(&mut self, topic: &str, partition: u32) {
        if let Some(sticky) = self.sticky.get_mut(topic) {
            if sticky.current == Some(partition) {
                sticky.previous = sticky.current.take();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kafka's `UtilsTest.testMurmur2` vectors, the empty array, and
    /// librdkafka's `rdmurmur2.c` vectors (which match the Java client).
    #[test]
    fn murmur2_matches_kafkas_java_client() {
        let cases: [(&[u8], i32); 11] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58_897_971),
            (b"abc", 479_470_107),
            (b"", 275_646_681),
            (b"kafka", -798_503_068),
            (b"giberish123456789", -1_890_243_828),
            (b"1234", -1_614_185_708),
            (b"34", -2_026_295_078),
        ];
        for (input, expected) in cases {
            assert_eq!(
                murmur2(input),
                expected,
                "murmur2({:?})",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn keyed_partition_is_the_positive_hash_modulo() {
        // toPositive(-790332482) = 1357151166; % 50 = 16.
        assert_eq!(partition_for_key(b"foobar", 50), 16);
        assert_eq!(partition_for_key(b"foobar", 1), 0);
        let mut p = Partitioner::with_seed(7);
        for n in 1..20 {
            assert_eq!(p.partition("t", Some(b"key-9"), n), partition_for_key(b"key-9", n));
        }
    }

    #[test]
    fn keyed_records_spread_evenly() {
        let partitions = 8u32;
        let mut counts = [0u32; 8];
        for i in 0..80_000 {
            counts[partition_for_key(format!("key-{i}").as_bytes(), partitions) as usize] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "uneven spread: {counts:?}");
        }
    }

    #[test]
    fn unkeyed_records_stick_until_a_batch_is_sent() {
        let mut p = Partitioner::with_seed(42);
        let first = p.partition("t", None, 6);
        for _ in 0..100 {
            assert_eq!(p.partition("t", None, 6), first);
        }
        // A batch of another partition changes nothing.
        p.batch_sent("t", (first + 1) % 6);
        assert_eq!(p.partition("t", None, 6), first);
        p.batch_sent("t", first);
        let second = p.partition("t", None, 6);
        assert_ne!(second, first, "moves on after its batch was sent");
        assert_eq!(p.partition("t", None, 6), second);
        // Topics stick independently.
        let other = p.partition("u", None, 6);
        p.batch_sent("u", other);
        assert_eq!(p.partition("t", None, 6), second);
    }

    #[test]
    fn sticky_choices_spread_over_all_partitions() {
        let mut p = Partitioner::with_seed(1);
        let mut counts = [0u32; 5];
        for _ in 0..10_000 {
            let chosen = p.partition("t", None, 5);
            counts[chosen as usize] += 1;
            p.batch_sent("t", chosen);
        }
        for c in counts {
            assert!((1_600..2_400).contains(&c), "uneven sticky spread: {counts:?}");
        }
    }

    #[test]
    fn one_partition_topic_always_gets_zero() {
        let mut p = Partitioner::with_seed(3);
        for _ in 0..10 {
            assert_eq!(p.partition("t", None, 1), 0);
            p.batch_sent("t", 0);
        }
    }

    #[test]
    fn partition_count_shrinking_below_the_sticky_choice_repicks() {
        let mut p = Partitioner::with_seed(9);
        let _ = p.partition("t", None, 100);
        for _ in 0..20 {
            assert!(p.partition("t", None, 2) < 2);
        }
    }
}
