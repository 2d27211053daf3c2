//! Bad input against a real broker: each case gets a clear error (a
//! response code, or a closed connection), nothing stored is touched, and a
//! well-formed client still works afterwards.

mod common;

use std::io::Write;
use std::net::TcpStream;

use bytes::Bytes;
use common::{call, closed_by_broker, Broker};
use sluice::api::*;
use sluice::record::{BatchBuilder, Compression};

fn batch(n: usize, value_bytes: usize) -> Bytes {
    let mut b = BatchBuilder::new(Compression::None);
    for i in 0..n {
        b.push(
            1_700_000_000_000 + i as i64,
            Some(b"k"),
            Some(&vec![b'v'; value_bytes]),
            &[],
        );
    }
    b.build().expect("builds").freeze()
}

fn produce(records: Bytes, topic: &str, partition: u32) -> Request {
    Request::Produce {
        acks: Acks::All,
        timeout_ms: 5_000,
        topics: vec![ProduceTopic {
            name: topic.into(),
            partitions: vec![ProducePartition { partition, records }],
        }],
    }
}

fn produce_error(resp: Response) -> (ErrorCode, i64) {
    match resp {
        Response::Produce { topics } => (topics[0].partitions[0].error, topics[0].partitions[0].base_offset),
        other => panic!("expected a produce response, got {other:?}"),
    }
}

fn high_watermark(s: &mut TcpStream, topic: &str) -> i64 {
    match call(
        s,
        99,
        Request::Metadata {
            topics: Some(vec![topic.into()]),
        },
    )
    .expect("metadata")
    {
        Response::Metadata { topics, .. } => topics[0].partitions[0].high_watermark,
        other => panic!("{other:?}"),
    }
}

/// The broker still serves a well-formed client.
fn still_works(b: &Broker, topic: &str) {
    let mut s = TcpStream::connect(b.addr()).expect("connect");
    let before = high_watermark(&mut s, topic);
    let (err, base) = produce_error(call(&mut s, 7, produce(batch(3, 10), topic, 0)).expect("produce"));
    assert_eq!((err, base), (ErrorCode::None, before));
    assert_eq!(high_watermark(&mut s, topic), before + 3);
}

#[test]
fn bad_input_is_refused_clearly_and_the_broker_keeps_serving() {
    let mut b = Broker::start(2, &[]);
    let mut s = TcpStream::connect(b.addr()).expect("connect");
    let created = call(
        &mut s,
        1,
        Request::CreateTopics {
            topics: vec![NewTopic {
                replication: Default::default(),
                name: "t".into(),
                partitions: 2,
                config: TopicConfig {
                    max_message_bytes: Some(64 << 10),
                    ..Default::default()
                },
            }],
        },
    )
    .expect("create");
    assert!(
        matches!(created, Response::CreateTopics { ref topics } if topics[0].error == ErrorCode::None),
        "{created:?}"
    );
    still_works(&b, "t");

    // Unknown topic and unknown partition.
    let (err, _) = produce_error(call(&mut s, 2, produce(batch(1, 1), "nope", 0)).expect("produce"));
    assert_eq!(err, ErrorCode::UnknownTopicOrPartition);
    let (err, _) = produce_error(call(&mut s, 3, produce(batch(1, 1), "t", 9)).expect("produce"));
    assert_eq!(err, ErrorCode::UnknownTopicOrPartition);

    // A batch with a bad CRC: refused, nothing stored.
    let hw = high_watermark(&mut s, "t");
    let mut bad = batch(2, 10).to_vec();
    let n = bad.len();
    bad[n - 2] ^= 0x55;
    let (err, _) = produce_error(call(&mut s, 4, produce(Bytes::from(bad), "t", 0)).expect("produce"));
    assert_eq!(err, ErrorCode::CorruptMessage);
    // A good batch followed by garbage in the same request: all refused.
    let mut mixed = batch(2, 10).to_vec();
    mixed.extend_from_slice(b"garbage after the batch");
    let (err, _) = produce_error(call(&mut s, 5, produce(Bytes::from(mixed), "t", 0)).expect("produce"));
    assert_eq!(err, ErrorCode::CorruptMessage);
    // Over the topic's max message bytes.
    let (err, _) = produce_error(call(&mut s, 6, produce(batch(100, 1024), "t", 0)).expect("produce"));
    assert_eq!(err, ErrorCode::MessageTooLarge);
    assert_eq!(
        high_watermark(&mut s, "t"),
        hw,
        "nothing from a refused produce is stored"
    );

    // Invalid topic names and partition counts.
    let resp = call(
        &mut s,
        8,
        Request::CreateTopics {
            topics: vec![
                NewTopic {
                    replication: Default::default(),
                    name: "bad name".into(),
                    partitions: 1,
                    config: TopicConfig::default(),
                },
                NewTopic {
                    replication: Default::default(),
                    name: "zero".into(),
                    partitions: 0,
                    config: TopicConfig::default(),
                },
                NewTopic {
                    replication: Default::default(),
                    name: "t".into(),
                    partitions: 1,
                    config: TopicConfig::default(),
                },
            ],
        },
    )
    .expect("create");
    match resp {
        Response::CreateTopics { topics } => {
            let codes: Vec<_> = topics.iter().map(|t| t.error).collect();
            assert_eq!(
                codes,
                [
                    ErrorCode::InvalidTopic,
                    ErrorCode::InvalidPartitions,
                    ErrorCode::TopicAlreadyExists
                ]
            );
        }
        other => panic!("{other:?}"),
    }

    // A fetch asking for 4 GiB per partition and in all: served, bounded
    // by the frame limit, and the broker does not fall over encoding it.
    let resp = call(
        &mut s,
        10,
        Request::Fetch {
            max_wait_ms: 0,
            min_bytes: 0,
            max_bytes: u32::MAX,
            topics: vec![FetchTopic {
                name: "t".into(),
                partitions: vec![FetchPartition {
                    partition: 0,
                    offset: 0,
                    max_bytes: u32::MAX,
                }],
            }],
        },
    )
    .expect("fetch");
    match resp {
        Response::Fetch { topics } => {
            let p = &topics[0].partitions[0];
            assert_eq!(p.error, ErrorCode::None);
            assert!(p.records_bytes() > 0, "the stored batches come back");
        }
        other => panic!("{other:?}"),
    }

    // Garbage bytes: the broker closes the connection, serves others.
    let mut g = TcpStream::connect(b.addr()).expect("connect");
    g.write_all(&[0u8, 0, 0, 12, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12])
        .expect("write");
    let resp = common::read_response(&mut g, 0, ApiKey::ApiVersions);
    // Either an Error response (if a correlation id could be read) or a close.
    if let Ok(r) = resp {
        assert!(matches!(r, Response::Error { .. }), "{r:?}");
    }
    still_works(&b, "t");

    // A length prefix over the frame limit: closed without reading it.
    let mut big = TcpStream::connect(b.addr()).expect("connect");
    big.write_all(&u32::MAX.to_be_bytes()).expect("write");
    assert!(closed_by_broker(&mut big), "oversized frame must close the connection");
    still_works(&b, "t");

    // A truncated frame, then the client vanishes mid-request.
    let mut t = TcpStream::connect(b.addr()).expect("connect");
    t.write_all(&[0, 0, 1, 0, 1, 2, 3]).expect("write");
    drop(t);
    // A real produce cut off half-way through its frame.
    let header = RequestHeader {
        correlation_id: 9,
        api: ApiKey::Produce,
        version: 0,
        client_id: "x".into(),
    };
    let chunks = sluice::protocol::native::encode_request(&header, &produce(batch(50, 100), "t", 1));
    let whole: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
    let mut cut = TcpStream::connect(b.addr()).expect("connect");
    cut.write_all(&whole[..whole.len() / 2]).expect("write");
    drop(cut);
    still_works(&b, "t");

    // An unsupported version gets an error response, not a dropped connection.
    let header = RequestHeader {
        correlation_id: 11,
        api: ApiKey::Metadata,
        version: 999,
        client_id: "x".into(),
    };
    let mut v = TcpStream::connect(b.addr()).expect("connect");
    for c in sluice::protocol::native::encode_request(&header, &Request::Metadata { topics: None }) {
        v.write_all(&c).expect("write");
    }
    match common::read_response(&mut v, 11, ApiKey::Metadata).expect("answered") {
        Response::Error { error, .. } => assert_eq!(error, ErrorCode::UnsupportedVersion),
        other => panic!("{other:?}"),
    }

    assert!(b.is_running());
    assert_eq!(b.stop(), 0, "clean shutdown after all that");
}
