//! Tests of the ConsumerProtocol encodings: every version round-trips,
//! bytes as real clients send them decode, malformed input is an error
//! and never a panic.

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

use super::*;

/// Bytes built from Kafka's documented ConsumerProtocol layout, by hand
/// and without the crate: what librdkafka and the Java client put on the
/// wire.
#[derive(Default)]
struct Wire(Vec<u8>);

impl Wire {
    fn i16(mut self, v: i16) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn i32(mut self, v: i32) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn raw(mut self, b: &[u8]) -> Self {
        self.0.extend_from_slice(b);
        self
    }
    /// i16 length + UTF-8.
    fn string(self, s: &str) -> Self {
        self.i16(i16::try_from(s.len()).unwrap()).raw(s.as_bytes())
    }
    /// i32 length + bytes; `None` is length -1.
    fn bytes(self, b: Option<&[u8]>) -> Self {
        match b {
            Some(b) => self.i32(i32::try_from(b.len()).unwrap()).raw(b),
            None => self.i32(-1),
        }
    }
    /// i32 count + strings.
    fn strings(self, list: &[&str]) -> Self {
        list.iter()
            .fold(self.i32(i32::try_from(list.len()).unwrap()), |w, s| w.string(s))
    }
    /// i32 count + (topic, i32 count + i32 partitions).
    fn topic_partitions(self, list: &[(&str, &[i32])]) -> Self {
        list.iter().fold(
            self.i32(i32::try_from(list.len()).unwrap()),
            |w, (topic, partitions)| {
                partitions
                    .iter()
                    .fold(w.string(topic).i32(i32::try_from(partitions.len()).unwrap()), |w, p| {
                        w.i32(*p)
                    })
            },
        )
    }
}

fn owned(list: &[(&str, &[i32])]) -> Vec<(String, Vec<i32>)> {
    list.iter().map(|(t, p)| (t.to_string(), p.to_vec())).collect()
}

fn topics(list: &[&str]) -> Vec<String> {
    list.iter().map(|t| t.to_string()).collect()
}

fn subscription_at_each_version() -> Vec<(i16, Subscription)> {
    let v0 = Subscription {
        user_data: Some(Bytes::from_static(b"ud")),
        ..Subscription::new(topics(&["a", "b"]))
    };
    let v1 = Subscription {
        owned_partitions: owned(&[("a", &[0, 2]), ("b", &[])]),
        ..v0.clone()
    };
    let v2 = Subscription {
        generation_id: 7,
        ..v1.clone()
    };
    let v3 = Subscription {
        rack_id: Some("rack-1".into()),
        ..v2.clone()
    };
    let v2_no_owned = Subscription {
        generation_id: 0,
        ..Subscription::new(topics(&["a"]))
    };
    let v3_rack_only = Subscription {
        rack_id: Some(String::new()),
        ..Subscription::new(vec![])
    };
    vec![(0, v0), (1, v1), (2, v2), (3, v3), (2, v2_no_owned), (3, v3_rack_only)]
}

#[test]
fn subscription_round_trips_at_each_version() {
    for (version, sub) in subscription_at_each_version() {
        assert_eq!(sub.version(), version, "{sub:?}");
        let bytes = sub.encode().unwrap();
        assert_eq!(bytes[..2], version.to_be_bytes(), "{sub:?}");
        assert_eq!(Subscription::decode(&bytes).unwrap(), sub);
    }
}

#[test]
fn subscription_v0_as_librdkafka_sends_it() {
    let wire = Wire::default().i16(0).strings(&["orders", "payments"]).bytes(None).0;
    let sub = Subscription::decode(&wire).unwrap();
    assert_eq!(sub, Subscription::new(topics(&["orders", "payments"])));
    assert_eq!(sub.encode().unwrap(), wire, "we write what they read");
}

#[test]
fn subscription_v1_as_java_2_4_sends_it() {
    let wire = Wire::default()
        .i16(1)
        .strings(&["t0", "t1"])
        .bytes(Some(&[0, 1]))
        .topic_partitions(&[("t0", &[0, 1]), ("t1", &[2])])
        .0;
    let sub = Subscription::decode(&wire).unwrap();
    assert_eq!(
        sub,
        Subscription {
            topics: topics(&["t0", "t1"]),
            user_data: Some(Bytes::from_static(&[0, 1])),
            owned_partitions: owned(&[("t0", &[0, 1]), ("t1", &[2])]),
            generation_id: GENERATION_ID_UNKNOWN,
            rack_id: None,
        }
    );
    assert_eq!(sub.encode().unwrap(), wire);
}

#[test]
fn subscription_v3_as_java_3_sends_it() {
    let wire = Wire::default()
        .i16(3)
        .strings(&["t0"])
        .bytes(None)
        .topic_partitions(&[("t0", &[3])])
        .i32(12)
        .string("use1-az1")
        .0;
    let sub = Subscription::decode(&wire).unwrap();
    assert_eq!(sub.owned_partitions, owned(&[("t0", &[3])]));
    assert_eq!(sub.generation_id, 12);
    assert_eq!(sub.rack_id.as_deref(), Some("use1-az1"));
    assert_eq!(sub.encode().unwrap(), wire);
}

#[test]
fn subscription_v3_with_null_rack_decodes() {
    let wire = Wire::default()
        .i16(3)
        .strings(&["t0"])
        .bytes(None)
        .topic_partitions(&[])
        .i32(4)
        .i16(-1)
        .0;
    let sub = Subscription::decode(&wire).unwrap();
    assert_eq!(
        sub,
        Subscription {
            generation_id: 4,
            ..Subscription::new(topics(&["t0"]))
        }
    );
}

#[test]
fn subscription_from_a_newer_client_decodes_as_v3() {
    let wire = Wire::default()
        .i16(9)
        .strings(&["t0"])
        .bytes(None)
        .topic_partitions(&[("t0", &[1])])
        .i32(5)
        .string("r")
        .raw(b"fields of v4..v9")
        .0;
    let sub = Subscription::decode(&wire).unwrap();
    assert_eq!(sub.topics, topics(&["t0"]));
    assert_eq!(sub.generation_id, 5);
    assert_eq!(sub.rack_id.as_deref(), Some("r"));
}

#[test]
fn assignment_round_trips() {
    let cases = [
        Assignment::default(),
        Assignment {
            partitions: owned(&[("a", &[0, 1]), ("b", &[])]),
            user_data: None,
        },
        Assignment {
            partitions: owned(&[("a", &[5])]),
            user_data: Some(Bytes::from_static(b"x")),
        },
    ];
    for assignment in cases {
        let bytes = assignment.encode().unwrap();
        assert_eq!(bytes[..2], ASSIGNMENT_VERSION_ENCODED.to_be_bytes());
        assert_eq!(Assignment::decode(&bytes).unwrap(), assignment);
    }
}

#[test]
fn assignment_v0_as_librdkafka_sends_it() {
    let wire = Wire::default()
        .i16(0)
        .topic_partitions(&[("orders", &[0, 1, 2])])
        .bytes(None)
        .0;
    let assignment = Assignment::decode(&wire).unwrap();
    assert_eq!(
        assignment,
        Assignment {
            partitions: owned(&[("orders", &[0, 1, 2])]),
            user_data: None
        }
    );
    assert_eq!(assignment.encode().unwrap(), wire, "we write what they read");
}

#[test]
fn assignment_v3_and_newer_as_java_sends_it() {
    for version in [1, 3, 4] {
        let wire = Wire::default()
            .i16(version)
            .topic_partitions(&[("t0", &[0]), ("t1", &[1, 3])])
            .bytes(Some(b"u"))
            .0;
        let assignment = Assignment::decode(&wire).unwrap();
        assert_eq!(
            assignment.partitions,
            owned(&[("t0", &[0]), ("t1", &[1, 3])]),
            "v{version}"
        );
        assert_eq!(assignment.user_data.as_deref(), Some(&b"u"[..]), "v{version}");
    }
}

#[test]
fn empty_assignment_bytes_are_an_empty_assignment() {
    assert_eq!(Assignment::decode(&[]).unwrap(), Assignment::default());
}

#[test]
fn every_strict_prefix_is_an_error() {
    for (_, sub) in subscription_at_each_version() {
        let bytes = sub.encode().unwrap();
        for len in 0..bytes.len() {
            assert!(Subscription::decode(&bytes[..len]).is_err(), "{sub:?} cut at {len}");
        }
    }
    let assignment = Assignment {
        partitions: owned(&[("a", &[0, 1])]),
        user_data: Some(Bytes::from_static(b"u")),
    };
    let bytes = assignment.encode().unwrap();
    for len in 1..bytes.len() {
        assert!(Assignment::decode(&bytes[..len]).is_err(), "cut at {len}");
    }
}

#[test]
fn huge_counts_are_rejected_before_allocation() {
    let cases = [
        Wire::default().i16(0).i32(i32::MAX).0,
        Wire::default().i16(1).strings(&[]).bytes(None).i32(i32::MAX).0,
        Wire::default()
            .i16(1)
            .strings(&[])
            .bytes(None)
            .i32(1)
            .string("t")
            .i32(i32::MAX)
            .0,
    ];
    for wire in cases {
        let err = Subscription::decode(&wire).unwrap_err();
        assert!(
            matches!(err, ProtocolError::InvalidLength { length: i32::MAX, .. }),
            "{err}"
        );
    }
    let cases = [
        Wire::default().i16(0).i32(i32::MAX).0,
        Wire::default().i16(0).i32(1).string("t").i32(1 << 30).0,
    ];
    for wire in cases {
        let err = Assignment::decode(&wire).unwrap_err();
        assert!(matches!(err, ProtocolError::InvalidLength { .. }), "{err}");
    }
}

#[test]
fn bad_versions_and_lengths_are_errors() {
    let err = Subscription::decode(&Wire::default().i16(-1).strings(&[]).bytes(None).0).unwrap_err();
    assert_eq!(
        err,
        ProtocolError::UnsupportedVersion {
            message: SUBSCRIPTION,
            version: -1
        }
    );
    let err = Assignment::decode(&Wire::default().i16(i16::MIN).0).unwrap_err();
    assert_eq!(
        err,
        ProtocolError::UnsupportedVersion {
            message: ASSIGNMENT,
            version: i16::MIN
        }
    );
    assert!(matches!(
        Assignment::decode(&[0]),
        Err(ProtocolError::Truncated { field: "version", .. })
    ));
    // A null topic name, a null topic array, a negative user data length.
    for wire in [
        Wire::default().i16(0).i32(1).i16(-1).bytes(None).0,
        Wire::default().i16(0).i32(-1).bytes(None).0,
        Wire::default().i16(0).strings(&["t"]).i32(-2).0,
    ] {
        let err = Subscription::decode(&wire).unwrap_err();
        assert!(matches!(err, ProtocolError::InvalidLength { .. }), "{err}");
    }
}

#[test]
fn non_utf8_topic_is_malformed() {
    let wire = Wire::default().i16(0).i32(1).i16(2).raw(&[0xc3, 0x28]).bytes(None).0;
    let err = Subscription::decode(&wire).unwrap_err();
    assert!(matches!(err, ProtocolError::Malformed { version: 0, .. }), "{err}");
}

#[test]
fn oversized_strings_fail_to_encode() {
    let long = "x".repeat(usize::try_from(i16::MAX).unwrap() + 1);
    let err = Subscription::new(vec![long.clone()]).encode().unwrap_err();
    assert!(matches!(err, ProtocolError::Encode { version: 0, .. }), "{err}");
    let err = Assignment {
        partitions: vec![(long, vec![0])],
        user_data: None,
    }
    .encode()
    .unwrap_err();
    assert!(matches!(err, ProtocolError::Encode { .. }), "{err}");
}

fn arb_topic_partitions() -> impl Strategy<Value = Vec<(String, Vec<i32>)>> {
    vec(("[a-z._-]{1,8}", vec(any::<i32>(), 0..6)), 0..4)
}

fn arb_subscription() -> impl Strategy<Value = Subscription> {
    (
        vec("[a-zA-Z0-9._-]{1,12}", 0..5),
        option::of(vec(any::<u8>(), 0..16).prop_map(Bytes::from)),
        arb_topic_partitions(),
        prop_oneof![Just(GENERATION_ID_UNKNOWN), any::<i32>()],
        option::of("\\PC{0,8}"),
    )
        .prop_map(
            |(topics, user_data, owned_partitions, generation_id, rack_id)| Subscription {
                topics,
                user_data,
                owned_partitions,
                generation_id,
                rack_id,
            },
        )
}

proptest! {
    #[test]
    fn subscription_round_trips(sub in arb_subscription()) {
        let bytes = sub.encode().unwrap();
        prop_assert_eq!(Subscription::decode(&bytes).unwrap(), sub);
    }

    #[test]
    fn assignment_round_trips_any(
        partitions in arb_topic_partitions(),
        user_data in option::of(vec(any::<u8>(), 0..16).prop_map(Bytes::from)),
    ) {
        let assignment = Assignment { partitions, user_data };
        let bytes = assignment.encode().unwrap();
        prop_assert_eq!(Assignment::decode(&bytes).unwrap(), assignment);
    }

    #[test]
    fn arbitrary_bytes_never_panic(buf in vec(any::<u8>(), 0..256)) {
        let _ = Subscription::decode(&buf);
        let _ = Assignment::decode(&buf);
    }

    #[test]
    fn garbage_after_a_plausible_version_never_panics(version in -2i16..6, body in vec(any::<u8>(), 0..128)) {
        let buf = Wire::default().i16(version).raw(&body).0;
        let _ = Subscription::decode(&buf);
        let _ = Assignment::decode(&buf);
    }

    #[test]
    fn corrupted_or_cut_encodings_never_panic(
        sub in arb_subscription(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let mut bytes = sub.encode().unwrap().to_vec();
        let i = at.index(bytes.len());
        prop_assert!(Subscription::decode(&bytes[..i]).is_err());
        bytes[i] = byte;
        let _ = Subscription::decode(&bytes);
        let _ = Assignment::decode(&bytes);
    }
}
