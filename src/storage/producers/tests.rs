use proptest::prelude::*;

use super::*;

/// A batch of `records` records from producer `pid` at `epoch` starting at
/// sequence `seq`, stored at `base` (ignored by `check`).
fn batch(pid: i64, epoch: i16, seq: i32, records: i32, base: i64) -> BatchHeader {
    BatchHeader {
        base_offset: base,
        batch_length: 0,
        partition_leader_epoch: 0,
        magic: 2,
        crc: 0,
        attributes: 0,
        last_offset_delta: records - 1,
        base_timestamp: 1_000,
        max_timestamp: 1_000 + i64::from(seq),
        producer_id: pid,
        producer_epoch: epoch,
        base_sequence: seq,
        records_count: records,
    }
}

/// Checks and, when appendable, records `h` at `*end`, moving `*end`.
fn offer(s: &mut ProducerStates, mut h: BatchHeader, end: &mut i64) -> Result<Verdict, SequenceError> {
    let v = s.check(&h)?;
    if v == Verdict::Append {
        h.base_offset = *end;
        // Broker time: the batch's own timestamp plus a skew.
        s.record(&h, h.max_timestamp + 5);
        *end = h.next_offset();
    }
    Ok(v)
}

#[test]
fn batches_without_a_producer_are_always_appended() {
    let s = ProducerStates::default();
    assert_eq!(s.check(&batch(-1, -1, -1, 3, 0)), Ok(Verdict::Append));
}

#[test]
fn a_producer_continues_its_sequence_and_retries_are_duplicates() {
    let mut s = ProducerStates::default();
    let mut end = 100;
    assert_eq!(offer(&mut s, batch(7, 0, 0, 3, 0), &mut end), Ok(Verdict::Append));
    assert_eq!(offer(&mut s, batch(7, 0, 3, 2, 0), &mut end), Ok(Verdict::Append));
    assert_eq!(end, 105);
    // A retry of either batch is answered with where it landed.
    assert_eq!(
        s.check(&batch(7, 0, 0, 3, 0)),
        Ok(Verdict::Duplicate {
            base_offset: 100,
            last_offset: 102
        })
    );
    assert_eq!(
        s.check(&batch(7, 0, 3, 2, 0)),
        Ok(Verdict::Duplicate {
            base_offset: 103,
            last_offset: 104
        })
    );
    // A gap, or a batch that overlaps without matching one, is out of order.
    assert_eq!(
        s.check(&batch(7, 0, 6, 1, 0)),
        Err(SequenceError::OutOfOrder {
            producer_id: 7,
            epoch: 0,
            expected: 5,
            got: 6
        })
    );
    assert!(matches!(
        s.check(&batch(7, 0, 1, 2, 0)),
        Err(SequenceError::OutOfOrder { expected: 5, .. })
    ));
}

#[test]
fn only_the_last_five_batches_are_recognised() {
    let mut s = ProducerStates::default();
    let mut end = 0;
    for seq in 0..6 {
        assert_eq!(offer(&mut s, batch(1, 0, seq, 1, 0), &mut end), Ok(Verdict::Append));
    }
    assert!(matches!(
        s.check(&batch(1, 0, 0, 1, 0)),
        Err(SequenceError::OutOfOrder { .. })
    ));
    for seq in 1..6 {
        assert!(matches!(
            s.check(&batch(1, 0, seq, 1, 0)),
            Ok(Verdict::Duplicate { .. })
        ));
    }
}

#[test]
fn epochs_fence_old_producers_and_restart_sequences() {
    let mut s = ProducerStates::default();
    let mut end = 0;
    offer(&mut s, batch(1, 3, 0, 5, 0), &mut end).expect("first");
    assert_eq!(
        s.check(&batch(1, 2, 5, 1, 0)),
        Err(SequenceError::StaleEpoch {
            producer_id: 1,
            epoch: 2,
            current: 3
        })
    );
    assert!(matches!(
        s.check(&batch(1, 4, 5, 1, 0)),
        Err(SequenceError::OutOfOrder {
            expected: 0,
            got: 5,
            ..
        })
    ));
    assert_eq!(offer(&mut s, batch(1, 4, 0, 1, 0), &mut end), Ok(Verdict::Append));
    // The old epoch's batches are forgotten with it.
    assert!(matches!(
        s.check(&batch(1, 3, 0, 5, 0)),
        Err(SequenceError::StaleEpoch { .. })
    ));
}

#[test]
fn an_unknown_producer_must_start_at_zero() {
    let s = ProducerStates::default();
    assert_eq!(s.check(&batch(9, 0, 0, 1, 0)), Ok(Verdict::Append));
    assert_eq!(
        s.check(&batch(9, 0, 42, 1, 0)),
        Err(SequenceError::UnknownProducer {
            producer_id: 9,
            got: 42
        })
    );
    assert!(matches!(
        s.check(&batch(9, -1, 0, 1, 0)),
        Err(SequenceError::Invalid { .. })
    ));
    assert!(matches!(
        s.check(&batch(9, 0, -1, 1, 0)),
        Err(SequenceError::Invalid { .. })
    ));
}

#[test]
fn sequences_wrap_after_i32_max() {
    let mut s = ProducerStates::default();
    let mut end = 0;
    offer(&mut s, batch(1, 0, 0, 1, 0), &mut end).expect("first");
    // Jump near the top by replaying (the log is trusted).
    let mut h = batch(1, 0, i32::MAX - 1, 3, end);
    s.record(&h, 0);
    end = h.next_offset();
    // That batch held MAX-1, MAX, 0: the next one starts at 1.
    assert_eq!(offer(&mut s, batch(1, 0, 1, 1, 0), &mut end), Ok(Verdict::Append));
    h.base_offset = 1;
    assert!(matches!(s.check(&h), Ok(Verdict::Duplicate { base_offset: 1, .. })));
}

#[test]
fn idle_producers_expire() {
    let mut s = ProducerStates::default();
    let mut end = 0;
    offer(&mut s, batch(1, 0, 0, 1, 0), &mut end).expect("a"); // seen at 1005
    offer(&mut s, batch(2, 0, 0, 1, 0), &mut end).expect("b");
    offer(&mut s, batch(2, 0, 1, 1, 0), &mut end).expect("b2"); // seen at 1006
    assert_eq!(s.expire(1_005 + 500, 500), 0);
    assert_eq!(s.expire(1_005 + 501, 500), 1);
    assert_eq!(s.len(), 1);
    assert!(matches!(
        s.check(&batch(1, 0, 1, 1, 0)),
        Err(SequenceError::UnknownProducer { .. })
    ));
}

#[test]
fn snapshots_round_trip_and_damage_is_detected() {
    let mut s = ProducerStates::default();
    let mut end = 0;
    for pid in 0..20 {
        for seq in 0..(pid % 8) as i32 {
            offer(&mut s, batch(pid, (pid % 3) as i16, seq * 2, 2, 0), &mut end).expect("append");
        }
    }
    let bytes = s.encode(end).expect("encodes");
    assert_eq!(ProducerStates::decode(&bytes), Ok((end, s.clone())));
    assert_eq!(bytes, s.clone().encode(end).expect("encodes"), "deterministic");
    for at in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[at] ^= 0x40;
        assert!(ProducerStates::decode(&bad).is_err(), "flip at {at} not detected");
    }
    for len in 0..bytes.len() {
        assert!(
            ProducerStates::decode(&bytes[..len]).is_err(),
            "cut at {len} not detected"
        );
    }
    let empty = ProducerStates::default().encode(7).expect("encodes");
    assert_eq!(ProducerStates::decode(&empty), Ok((7, ProducerStates::default())));
}

#[test]
fn a_snapshot_with_a_huge_count_is_refused_without_allocating() {
    let mut body = Vec::new();
    body.extend_from_slice(&0i64.to_be_bytes());
    body.extend_from_slice(&u32::MAX.to_be_bytes());
    let bytes = ENVELOPE.seal(&body).expect("seals");
    assert!(ProducerStates::decode(&bytes).is_err());
}

/// What the network does to one producer's requests: each step either
/// sends the next new batch, or redelivers (retries) one of the batches
/// still in flight, and the oldest in-flight batch may be acknowledged.
#[derive(Debug, Clone)]
enum Step {
    Send { records: i32 },
    Retry { which: usize },
    Ack,
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        prop_oneof![
            3 => (1..4i32).prop_map(|records| Step::Send { records }),
            2 => (0..BATCHES_KEPT).prop_map(|which| Step::Retry { which }),
            2 => Just(Step::Ack),
        ],
        1..200,
    )
}

proptest! {
    /// Whatever order a producer's batches arrive in, with any number of
    /// retries of its (at most five) in-flight batches: every record lands
    /// exactly once, in sequence order; every duplicate is answered with
    /// the offsets where that batch really is; and a snapshot taken at any
    /// point and replayed gives the same judgements.
    #[test]
    fn retries_never_duplicate_and_never_reorder(steps in steps()) {
        let mut s = ProducerStates::default();
        let mut end = 0i64;
        // The log: sequence of each stored record, by offset.
        let mut log: Vec<i32> = Vec::new();
        // Where each appended batch landed, by first sequence.
        let mut landed: HashMap<i32, (i64, i64)> = HashMap::new();
        let mut in_flight: VecDeque<(i32, i32)> = VecDeque::new();
        let mut next_seq = 0;
        for step in steps {
            let (seq, records) = match step {
                Step::Send { records } if in_flight.len() < BATCHES_KEPT => {
                    in_flight.push_back((next_seq, records));
                    next_seq += records;
                    (next_seq - records, records)
                }
                Step::Retry { which } if which < in_flight.len() => in_flight[which],
                Step::Ack => {
                    // Only a batch that is in the log can be acknowledged.
                    if in_flight.front().is_some_and(|(seq, _)| landed.contains_key(seq)) {
                        in_flight.pop_front();
                    }
                    continue;
                }
                _ => continue,
            };
            let before = end;
            match offer(&mut s, batch(5, 0, seq, records, 0), &mut end) {
                Ok(Verdict::Append) => {
                    prop_assert!(!landed.contains_key(&seq), "sequence {} appended twice", seq);
                    landed.insert(seq, (before, end - 1));
                    log.extend(seq..seq + records);
                }
                Ok(Verdict::Duplicate { base_offset, last_offset }) => {
                    prop_assert_eq!(landed.get(&seq), Some(&(base_offset, last_offset)));
                }
                Err(SequenceError::OutOfOrder { .. }) => {
                    // Only a batch whose predecessor is not in yet.
                    prop_assert!(!landed.contains_key(&seq));
                }
                Err(e) => prop_assert!(false, "unexpected {}", e),
            }
            let expected: Vec<i32> = (0..log.len() as i32).collect();
            prop_assert_eq!(&log, &expected, "the log holds each sequence once, in order");
            let snapshot = s.encode(end).map_err(TestCaseError::fail)?;
            let (at, replayed) = ProducerStates::decode(&snapshot).map_err(TestCaseError::fail)?;
            prop_assert_eq!(at, end);
            prop_assert_eq!(&replayed, &s);
        }
    }
}
