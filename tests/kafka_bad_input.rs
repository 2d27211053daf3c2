//! Hostile and broken input on the Kafka port of a real broker: frames with
//! a negative or oversized size, unknown API keys, unsupported versions,
//! bodies cut short, arrays claiming two billion elements, a client that
//! vanishes mid-frame. Each gets an error answer or a closed connection,
//! never a crash, and the broker keeps serving everyone else.

mod common;

use std::io::Write;
use std::net::TcpStream;

use bytes::{Buf, BufMut};
use common::{closed_by_broker, create_topic_cli, kafka_wire, Broker};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse};
use kafka_protocol::protocol::Decodable;

const UNSUPPORTED_VERSION: i16 = 35;

/// A fresh connection gets ApiVersions and the topic's metadata.
fn still_serves(broker: &Broker) {
    let mut s = kafka_wire::connect(broker.kafka_addr());
    let versions: ApiVersionsResponse =
        kafka_wire::call(&mut s, ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    assert_eq!(versions.error_code, 0);
    let meta: MetadataResponse = kafka_wire::call(
        &mut s,
        ApiKey::Metadata,
        12,
        &MetadataRequest::default().with_topics(None),
    );
    assert!(meta
        .topics
        .iter()
        .any(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == "bad")));
}

fn send(broker: &Broker, bytes: &[u8]) -> TcpStream {
    let mut s = kafka_wire::connect(broker.kafka_addr());
    s.write_all(bytes).expect("write");
    s
}

#[test]
fn broken_and_hostile_kafka_frames_never_take_the_broker_down() {
    let broker = Broker::start(2, &[]);
    create_topic_cli(&broker, "bad", 2);
    still_serves(&broker);

    // Sizes: negative, and far beyond frame_bytes_max: closed at once.
    for size in [-1i32, i32::MAX] {
        let mut s = send(&broker, &size.to_be_bytes());
        assert!(closed_by_broker(&mut s), "size {size}");
    }
    // An API key Kafka does not have: the header cannot be parsed; closed.
    let mut frame = bytes::BytesMut::new();
    frame.put_i32(10);
    frame.put_i16(999);
    frame.put_i16(0);
    frame.put_i32(1);
    frame.put_i16(-1);
    let mut s = send(&broker, &frame);
    assert!(closed_by_broker(&mut s), "unknown api key");

    // An API we do not serve, and a version we do not serve: answered, and
    // the connection goes on. (A version no Kafka has, such as Metadata v99,
    // has no answer format: that connection is closed, as Kafka does.)
    let mut s = kafka_wire::connect(broker.kafka_addr());
    let frame = kafka_wire::seal(kafka_wire::header_frame(ApiKey::EndTxn, 3));
    s.write_all(&frame).expect("write");
    let mut body = kafka_wire::read_answer(&mut s, ApiKey::EndTxn, 3);
    // EndTxn v3 answers: throttle_time_ms i32, error_code i16, tagged fields.
    body.advance(4);
    assert_eq!(body.get_i16(), UNSUPPORTED_VERSION);
    // Metadata v0 exists in Kafka but is older than we serve (1-12).
    let frame = kafka_wire::seal(kafka_wire::header_frame(ApiKey::Metadata, 0));
    s.write_all(&frame).expect("write");
    let mut body = kafka_wire::read_answer(&mut s, ApiKey::Metadata, 0);
    let resp = MetadataResponse::decode(&mut body, 0).expect("decodes");
    assert!(resp.topics.is_empty(), "an empty answer: the error is the version");
    let versions: ApiVersionsResponse =
        kafka_wire::call(&mut s, ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    assert_eq!(versions.error_code, 0, "same connection still served");

    // Arrays claiming ~2^31 elements (non-flexible i32 count, flexible
    // varint count) and a few bytes after them: decoding fails on the
    // missing elements and the request is answered with an error.
    for (version, count) in [
        (1i16, &i32::MAX.to_be_bytes()[..]),
        (12, &[0xff, 0xff, 0xff, 0xff, 0x0f][..]),
    ] {
        let mut s = kafka_wire::connect(broker.kafka_addr());
        let mut frame = kafka_wire::header_frame(ApiKey::Metadata, version);
        frame.extend_from_slice(count);
        frame.extend_from_slice(&[0u8; 16]);
        s.write_all(&kafka_wire::seal(frame)).expect("write");
        let mut body = kafka_wire::read_answer(&mut s, ApiKey::Metadata, version);
        // Metadata's error frame: every topic-level field absent; the
        // decoder accepts it, with no topics.
        let resp = MetadataResponse::decode(&mut body, version).expect("an error answer decodes");
        assert!(resp.topics.is_empty(), "v{version}");
        still_serves(&broker);
    }

    // A body cut short, then a client gone mid-frame.
    let mut s = kafka_wire::connect(broker.kafka_addr());
    let mut frame = kafka_wire::header_frame(ApiKey::Metadata, 12);
    frame.extend_from_slice(&[0x05, 0x00]);
    s.write_all(&kafka_wire::seal(frame)).expect("write");
    drop(kafka_wire::read_answer(&mut s, ApiKey::Metadata, 12));
    let mut s = send(&broker, &1000i32.to_be_bytes());
    s.write_all(&[0u8; 100]).expect("half a frame");
    drop(s);

    still_serves(&broker);
}

#[test]
fn a_version_no_kafka_has_closes_only_that_connection() {
    let broker = Broker::start(1, &[]);
    create_topic_cli(&broker, "bad", 1);
    let mut s = kafka_wire::connect(broker.kafka_addr());
    s.write_all(&kafka_wire::seal(kafka_wire::header_frame(ApiKey::Metadata, 99)))
        .expect("write");
    assert!(closed_by_broker(&mut s));
    still_serves(&broker);
}
