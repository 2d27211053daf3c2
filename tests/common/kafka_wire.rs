//! Speaking the Kafka protocol to a broker as a Kafka client would: the
//! `kafka-protocol` crate's codecs over a blocking TcpStream.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

/// Largest Kafka answer [`call`] reads.
const KAFKA_RESPONSE_BYTES_MAX: usize = 16 << 20;

/// The correlation id of every request sent from here.
const CORRELATION_ID: i32 = 0x5a5a;

/// The size-prefixed frame of a request header alone: append a body (or
/// bytes that pretend to be one) and [`seal`] it.
pub fn header_frame(key: ApiKey, version: i16) -> BytesMut {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(CORRELATION_ID)
        .with_client_id(Some(StrBytes::from_static_str("sluice-test")));
    let mut frame = BytesMut::new();
    frame.put_i32(0); // the size, filled in by `seal`
    header
        .encode(&mut frame, key.request_header_version(version))
        .expect("header encodes");
    frame
}

/// Fills in the size prefix.
pub fn seal(mut frame: BytesMut) -> BytesMut {
    let size = i32::try_from(frame.len() - 4).expect("small request");
    frame[..4].copy_from_slice(&size.to_be_bytes());
    frame
}

/// Reads one answer to a request sent from here: its body, after the header.
pub fn read_answer(stream: &mut TcpStream, key: ApiKey, version: i16) -> Bytes {
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).expect("response size");
    let len = usize::try_from(i32::from_be_bytes(prefix)).expect("non-negative size");
    assert!(len <= KAFKA_RESPONSE_BYTES_MAX, "response of {len} bytes");
    let mut buf = vec![0u8; len];
    stream.read_exact(&mut buf).expect("response body");
    let mut buf = Bytes::from(buf);
    let h = ResponseHeader::decode(&mut buf, key.response_header_version(version)).expect("response header");
    assert_eq!(h.correlation_id, CORRELATION_ID);
    buf
}

/// One Kafka request and its answer's body, on `stream`, encoded and
/// decoded by the `kafka-protocol` crate as a Kafka client would.
pub fn call<Req: Encodable, Resp: Decodable>(stream: &mut TcpStream, key: ApiKey, version: i16, body: &Req) -> Resp {
    let mut frame = header_frame(key, version);
    body.encode(&mut frame, version).expect("body encodes");
    stream.write_all(&seal(frame)).expect("request written");
    let mut buf = read_answer(stream, key, version);
    let resp = Resp::decode(&mut buf, version).expect("response body decodes");
    assert!(!buf.has_remaining(), "{key:?} v{version}: nothing left over");
    resp
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("kafka port");
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    stream
}

/// CreateTopics v5 for one topic with `rf` copies and the given topic
/// configs (e.g. min.insync.replicas); returns the topic's error code.
pub fn create_topic(addr: SocketAddr, name: &str, partitions: i32, rf: i16, configs: &[(&str, &str)]) -> i16 {
    use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
    use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse, TopicName};
    let mut s = connect(addr);
    let configs = configs
        .iter()
        .map(|(k, v)| {
            CreatableTopicConfig::default()
                .with_name(StrBytes::from_string(k.to_string()))
                .with_value(Some(StrBytes::from_string(v.to_string())))
        })
        .collect();
    let topic = CreatableTopic::default()
        .with_name(TopicName(StrBytes::from_string(name.to_string())))
        .with_num_partitions(partitions)
        .with_replication_factor(rf)
        .with_configs(configs);
    let req = CreateTopicsRequest::default()
        .with_topics(vec![topic])
        .with_timeout_ms(30_000);
    let resp: CreateTopicsResponse = call(&mut s, ApiKey::CreateTopics, 5, &req);
    resp.topics[0].error_code
}
